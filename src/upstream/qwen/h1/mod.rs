//! Our own HTTP/1.1 client for the calls every completion makes (create the chat, stream the
//! answer, delete the chat) when no outbound proxy is set; reqwest serves everything else.
//!
//! reqwest (hyper) reads an upstream connection in a task of its own and hands the body to
//! the response task one HTTP chunk per wake-up, and the site writes one event per chunk.
//! Here the response task reads the socket itself and takes every chunk a read brought in
//! one piece. Connections are kept alive in a pool per serving loop, checked before reuse,
//! and a request that meets a connection closed under it is sent again on a new one.

mod body;
mod conn;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;

pub(crate) use body::Body;
use conn::{Conn, Tls};

/// How long an idle connection is kept (as reqwest's pool).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("connection broke: {0}")]
    Io(String),
    #[error("malformed answer: {0}")]
    Protocol(String),
}

/// Scheme, host and port: what a connection is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Origin {
    https: bool,
    /// As in the URL (an IPv6 address in brackets), for the `host` header and messages.
    host: String,
    ip: Option<IpAddr>,
    port: u16,
}

impl Origin {
    fn of(url: &Url) -> Result<Origin, Error> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(Error::Connect(format!("unsupported scheme {other}"))),
        };
        let host = url
            .host_str()
            .ok_or_else(|| Error::Connect("URL without a host".into()))?
            .to_owned();
        // A parsed URL's IPv6 host is bracketed; a domain never parses as an address.
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Error::Connect("URL without a port".into()))?;
        Ok(Origin {
            https,
            host,
            ip,
            port,
        })
    }

    /// The host without an IPv6 address's brackets (for DNS and TLS names).
    fn host_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// A request: method, URL (with its query), headers and a body.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: &'a Url,
    pub headers: &'a HeaderMap,
    /// A JSON body, or `None`.
    pub json: Option<&'a [u8]>,
}

/// An answer's status and headers; the body is read as it is consumed.
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Body,
}

type PoolKey = (Option<usize>, Origin);

struct Pooled {
    conn: Conn,
    since: Instant,
}

struct Pool {
    idle: Mutex<Idling>,
    max_idle: usize,
    idle_timeout: Duration,
}

#[derive(Default)]
struct Idling {
    /// Per key, in the order the connections went idle.
    lists: HashMap<PoolKey, Vec<Pooled>>,
    /// Whether a task is closing connections that stay idle past the timeout.
    reaping: bool,
}

/// Closes the connections of `list` idle for `timeout` or longer (they are at its front).
fn drop_stale(list: &mut Vec<Pooled>, now: Instant, timeout: Duration) {
    let stale = list.partition_point(|p| now.duration_since(p.since) >= timeout);
    list.drain(..stale);
}

/// Closes idle connections past the timeout every third of it while any are idle, so that a
/// pool no request uses any more does not keep sockets the upstream has long closed.
async fn reap(pool: std::sync::Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.lists.retain(|_, list| {
            drop_stale(list, now, pool.idle_timeout);
            !list.is_empty()
        });
        if idle.lists.is_empty() {
            idle.reaping = false;
            return;
        }
    }
}

/// Where a connection goes back to when its answer has been read.
pub(super) struct Idle {
    pool: Arc<Pool>,
    key: PoolKey,
}

impl Idle {
    /// Keeps `conn` for the next request, without its read buffer (an idle connection holds
    /// none). Connections idle for longer than the pool's timeout are closed here, in
    /// [`Client::take`] and by [`reap`], which this starts when none is running.
    fn put(self, mut conn: Conn) {
        conn.buf = BytesMut::new();
        let now = Instant::now();
        let pool = &self.pool;
        let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.lists.entry(self.key).or_default();
        drop_stale(list, now, pool.idle_timeout);
        if list.len() < pool.max_idle {
            list.push(Pooled { conn, since: now });
        }
        if !idle.reaping
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            idle.reaping = true;
            runtime.spawn(reap(Arc::downgrade(pool), pool.idle_timeout / 3));
        }
    }
}

pub(crate) struct Client {
    pool: Arc<Pool>,
    tls: Tls,
    connect_timeout: Duration,
}

impl Client {
    /// `max_idle` connections are kept per serving loop and origin, each for up to
    /// `idle_timeout`.
    pub fn new(connect_timeout: Duration, max_idle: usize, idle_timeout: Duration) -> Self {
        Self::with_roots(connect_timeout, max_idle, idle_timeout, Vec::new())
    }

    /// As [`Client::new`], also trusting `roots` (for tests with a certificate of their own).
    pub fn with_roots(
        connect_timeout: Duration,
        max_idle: usize,
        idle_timeout: Duration,
        roots: Vec<CertificateDer<'static>>,
    ) -> Self {
        Client {
            pool: Arc::new(Pool {
                idle: Mutex::default(),
                max_idle,
                idle_timeout,
            }),
            tls: Tls::new(roots),
            connect_timeout,
        }
    }

    /// Sends `req` and reads the answer's head. A reused connection that turns out closed
    /// before any byte of an answer came back is replaced by a new one, once: the upstream
    /// did not see the request on it.
    pub async fn send(&self, req: Request<'_>) -> Result<Response, Error> {
        let origin = Origin::of(req.url)?;
        let key = (crate::event_loop::current(), origin);
        let wire = encode(&req, &key.1);
        let mut retried = false;
        loop {
            let pooled = if retried { None } else { self.take(&key) };
            let (conn, reused) = match pooled {
                Some(conn) => (conn, true),
                None => (
                    Conn::open(&key.1, &self.tls, self.connect_timeout).await?,
                    false,
                ),
            };
            match exchange(conn, &wire).await {
                Ok((conn, head)) => {
                    let framing = body::framing(&head, &req.method)?;
                    let idle = head.keep_alive.then(|| Idle {
                        pool: Arc::clone(&self.pool),
                        key: key.clone(),
                    });
                    let raw = body::Raw::new(conn, framing, idle);
                    let body = Body::new(raw, &head.headers);
                    return Ok(Response {
                        status: head.status,
                        headers: head.headers,
                        body,
                    });
                }
                Err(Sent::Unseen(_)) if reused => retried = true,
                Err(Sent::Unseen(e) | Sent::Failed(e)) => return Err(e),
            }
        }
    }

    /// An idle connection for `key` that is still open, if any.
    fn take(&self, key: &PoolKey) -> Option<Conn> {
        let mut idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let list = idle.lists.get_mut(key)?;
        while let Some(p) = list.pop() {
            if p.since.elapsed() < self.pool.idle_timeout && p.conn.still_open() {
                return Some(p.conn);
            }
        }
        None
    }
}

/// How an exchange failed: before the upstream answered anything on the connection (it may
/// have closed it before the request arrived), or after.
enum Sent {
    Unseen(Error),
    Failed(Error),
}

/// How many informational (`1xx`) heads may come before the answer's: a server that sends
/// them without end is broken, and is told so instead of being read until the timeout.
const MAX_INFORMATIONAL: usize = 16;

/// Writes the request and reads up to the end of the answer's head (skipping `1xx` heads).
async fn exchange(mut conn: Conn, wire: &[u8]) -> Result<(Conn, body::Head), Sent> {
    let io_error = |e: std::io::Error| Error::Io(e.to_string());
    if let Err(e) = async {
        conn.io.write_all(wire).await?;
        conn.io.flush().await
    }
    .await
    {
        return Err(Sent::Unseen(io_error(e)));
    }
    let mut answered = false;
    let mut informational = 0;
    loop {
        match body::parse_head(&mut conn.buf).map_err(Sent::Failed)? {
            Some(head) if (100..200).contains(&head.status) && head.status != 101 => {
                informational += 1;
                if informational > MAX_INFORMATIONAL {
                    return Err(Sent::Failed(Error::Protocol(format!(
                        "more than {MAX_INFORMATIONAL} informational (1xx) answers"
                    ))));
                }
                continue;
            }
            Some(head) => return Ok((conn, head)),
            None => {}
        }
        match conn.read_more().await {
            Ok(0) if !answered => {
                return Err(Sent::Unseen(Error::Io(
                    "the connection closed before an answer".into(),
                )));
            }
            Ok(0) => {
                return Err(Sent::Failed(Error::Io(
                    "the connection closed inside the answer's head".into(),
                )));
            }
            Ok(_) => answered = true,
            Err(e) if !answered && is_reset(&e) => return Err(Sent::Unseen(io_error(e))),
            Err(e) => return Err(Sent::Failed(io_error(e))),
        }
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
    )
}

/// The request as it goes on the wire: request line, `host`, the given headers, then
/// `accept-encoding` (if not given), `content-type` and `content-length` for a body.
fn encode(req: &Request<'_>, origin: &Origin) -> Vec<u8> {
    let body = req.json.unwrap_or_default();
    let mut out = Vec::with_capacity(1024 + body.len());
    let mut put = |parts: &[&[u8]]| {
        for p in parts {
            out.extend_from_slice(p);
        }
    };
    let path = req.url.path();
    let query = req.url.query();
    put(&[req.method.as_str().as_bytes(), b" ", path.as_bytes()]);
    if let Some(q) = query {
        put(&[b"?", q.as_bytes()]);
    }
    put(&[b" HTTP/1.1\r\nhost: ", origin.host.as_bytes()]);
    if req.url.port().is_some() {
        put(&[b":", origin.port.to_string().as_bytes()]);
    }
    put(&[b"\r\n"]);
    for (name, value) in req.headers {
        put(&[name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"]);
    }
    if !req.headers.contains_key(reqwest::header::ACCEPT_ENCODING) {
        put(&[b"accept-encoding: gzip,deflate,br\r\n"]);
    }
    if req.json.is_some() {
        if !req.headers.contains_key(reqwest::header::CONTENT_TYPE) {
            put(&[b"content-type: application/json\r\n"]);
        }
        put(&[
            b"content-length: ",
            body.len().to_string().as_bytes(),
            b"\r\n",
        ]);
    }
    put(&[b"\r\n", body]);
    out
}
