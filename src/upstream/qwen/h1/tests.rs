use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::body::{Chunked, Framing};
use super::{Client, Error, Request, Response};

/// A chunked body with an extension, two data chunks and a trailer.
const CHUNKED: &[u8] = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";

/// Feeds `wire` to a chunked reader in pieces of `step` bytes; the body and whether it ended.
fn feed(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), Error> {
    let mut framing = Framing::Chunked(Chunked::Size);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    for piece in wire.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(data) = framing.take(&mut buf)? {
            body.extend_from_slice(&data);
        }
    }
    assert!(
        buf.is_empty() || !framing.is_done(),
        "bytes left after the end"
    );
    Ok((body, framing.is_done()))
}

#[test]
fn a_chunked_body_reads_the_same_split_anywhere() {
    for step in 1..=CHUNKED.len() {
        assert_eq!(
            feed(CHUNKED, step).unwrap(),
            (b"hello, world".to_vec(), true),
            "step {step}"
        );
    }
    // Cut short: all the data so far, not ended.
    let (body, done) = feed(&CHUNKED[..20], 3).unwrap();
    assert_eq!((body.as_slice(), done), (&b"hello,"[..], false));
}

#[test]
fn buffered_chunks_come_out_as_one_piece() {
    let mut framing = Framing::Chunked(Chunked::Size);
    let mut buf = BytesMut::from(CHUNKED);
    assert_eq!(
        framing.take(&mut buf).unwrap(),
        Some(Bytes::from_static(b"hello, world"))
    );
    assert!(framing.is_done());
    assert!(buf.is_empty());
}

#[test]
fn malformed_chunks_are_errors() {
    for wire in [
        &b"x\r\nhello\r\n"[..],
        b"\r\n",
        b"+5\r\nhello\r\n",
        b"5\r\nhello world\r\n",
        b"fffffffffffffffffffff\r\n",
    ] {
        assert!(
            matches!(feed(wire, wire.len()), Err(Error::Protocol(_))),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    let long = [b'1'; 5000];
    assert!(matches!(feed(&long, 5000), Err(Error::Protocol(_))));
}

/// A scripted upstream: each connection runs `script` with its index.
struct Upstream {
    port: u16,
    accepted: Arc<AtomicUsize>,
    /// Connections whose script has ended (and so closed them).
    ended: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start<F, Fut>(script: F) -> Upstream
    where
        F: Fn(usize, Peer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (count, done) = (Arc::clone(&accepted), Arc::clone(&ended));
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let n = count.fetch_add(1, Ordering::SeqCst);
                let run = script(n, Peer::new(socket));
                let done = Arc::clone(&done);
                tokio::spawn(async move {
                    run.await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Upstream {
            port,
            accepted,
            ended,
        }
    }

    /// Answers every request on every connection with `text`, until the client closes.
    async fn answering(text: &'static str) -> Upstream {
        Upstream::start(move |_, mut peer| async move {
            while peer.request().await.is_some() {
                peer.send(&chunked_answer(text)).await;
            }
        })
        .await
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://127.0.0.1:{}{path}", self.port)).unwrap()
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits up to a second for `n` connections to have been closed, and asserts it.
    async fn closed(&self, n: usize) {
        for _ in 0..100 {
            if self.ended.load(Ordering::SeqCst) == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(self.ended.load(Ordering::SeqCst), n);
    }
}

/// The upstream's end of a connection.
struct Peer {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Peer {
    fn new(io: impl Io + 'static) -> Peer {
        Peer {
            io: Box::new(io),
            buf: Vec::new(),
        }
    }

    /// Reads one request (head and `content-length` body); `None` if the client closed.
    async fn request(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |n| n.parse().unwrap());
                if self.buf.len() >= end + 4 + len {
                    let all: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return Some(String::from_utf8(all).unwrap());
                }
            }
            let mut chunk = [0u8; 4096];
            match self.io.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Writes `bytes` in small pieces split at odd places, as the real site does.
    async fn send(&mut self, bytes: &[u8]) {
        for piece in bytes.chunks(7) {
            if self.io.write_all(piece).await.is_err() {
                return;
            }
            self.io.flush().await.unwrap();
        }
    }
}

fn chunked_answer(body: &str) -> Vec<u8> {
    let mut out =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for part in body.as_bytes().chunks(5) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn client() -> Client {
    Client::new(Duration::from_secs(5), 8, Duration::from_secs(90))
}

async fn get(client: &Client, url: &Url) -> Result<Response, Error> {
    let headers = HeaderMap::new();
    client
        .send(Request {
            method: Method::POST,
            url,
            headers: &headers,
            json: Some(br#"{"a":1}"#),
        })
        .await
}

async fn body(mut resp: Response) -> Result<String, Error> {
    let mut all = Vec::new();
    while let Some(piece) = resp.body.next().await {
        all.extend_from_slice(&piece?);
    }
    Ok(String::from_utf8(all).unwrap())
}

/// One request's whole answer.
async fn fetch(client: &Client, url: &Url) -> String {
    body(get(client, url).await.unwrap()).await.unwrap()
}

/// Two requests at once, each answer read whole.
async fn fetch_two(client: &Client, url: &Url) {
    let (a, b) = tokio::join!(get(client, url), get(client, url));
    body(a.unwrap()).await.unwrap();
    body(b.unwrap()).await.unwrap();
}

#[tokio::test]
async fn a_connection_serves_answer_after_answer() {
    let upstream = Upstream::start(|_, mut peer| async move {
        while let Some(req) = peer.request().await {
            let path = req.split(' ').nth(1).unwrap().to_owned();
            peer.send(&chunked_answer(&format!("answer to {path}")))
                .await;
        }
    })
    .await;
    let client = client();
    for i in 0..3 {
        let resp = get(&client, &upstream.url(&format!("/r{i}?x=1")))
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(body(resp).await.unwrap(), format!("answer to /r{i}?x=1"));
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn the_request_is_written_as_reqwest_would() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let upstream = Upstream::start(move |_, mut peer| {
        let tx = tx.clone();
        async move {
            let req = peer.request().await.unwrap();
            tx.send(req).unwrap();
            peer.send(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        }
    })
    .await;
    let mut headers = HeaderMap::new();
    headers.insert("x-one", "1".parse().unwrap());
    let url = upstream.url("/api/a%20b?chat_id=c");
    let resp = client()
        .send(Request {
            method: Method::POST,
            url: &url,
            headers: &headers,
            json: Some(b"{}"),
        })
        .await
        .unwrap();
    assert_eq!(resp.status, 204);
    assert_eq!(
        rx.recv().await.unwrap(),
        format!(
            "POST /api/a%20b?chat_id=c HTTP/1.1\r\nhost: 127.0.0.1:{}\r\nx-one: 1\r\n\
             accept-encoding: gzip,deflate,br\r\ncontent-type: application/json\r\n\
             content-length: 2\r\n\r\n{{}}",
            upstream.port
        )
    );
}

#[tokio::test]
async fn a_reused_connection_closed_under_the_request_is_replaced_once() {
    // The first connection answers once, then reads the next request and closes without a
    // word (as an upstream's keep-alive timer would); later connections answer.
    let upstream = Upstream::start(|n, mut peer| async move {
        if n == 0 {
            if peer.request().await.is_some() {
                peer.send(&chunked_answer("first")).await;
            }
            let _ = peer.request().await;
            return;
        }
        while peer.request().await.is_some() {
            peer.send(&chunked_answer("again")).await;
        }
    })
    .await;
    let client = client();
    let url = upstream.url("/");
    assert_eq!(fetch(&client, &url).await, "first");
    assert_eq!(fetch(&client, &url).await, "again");
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn a_new_connection_closed_before_an_answer_is_an_error() {
    let upstream = Upstream::start(|_, mut peer| async move {
        let _ = peer.request().await;
    })
    .await;
    let err = get(&client(), &upstream.url("/")).await.err().unwrap();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn informational_heads_are_skipped_up_to_a_bound() {
    let upstream = Upstream::start(|n, mut peer| async move {
        let _ = peer.request().await;
        let heads = if n == 0 {
            super::MAX_INFORMATIONAL
        } else {
            super::MAX_INFORMATIONAL + 1
        };
        let mut wire = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n".repeat(heads);
        wire.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        peer.send(&wire).await;
    })
    .await;
    let client = client();
    let url = upstream.url("/");
    assert_eq!(fetch(&client, &url).await, "ok");
    let err = get(&client, &url).await.err().unwrap();
    assert_eq!(
        err,
        Error::Protocol("more than 16 informational (1xx) answers".into())
    );
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_its_connection_is_not_reused() {
    let upstream = Upstream::start(|n, mut peer| async move {
        while peer.request().await.is_some() {
            if n == 0 {
                let answer = chunked_answer("never finished");
                peer.send(&answer[..answer.len() - 12]).await;
                return;
            }
            peer.send(&chunked_answer("whole")).await;
        }
    })
    .await;
    let client = client();
    let url = upstream.url("/");
    let err = body(get(&client, &url).await.unwrap()).await.err().unwrap();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert_eq!(fetch(&client, &url).await, "whole");
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn an_answer_dropped_unread_closes_its_connection() {
    let upstream = Upstream::answering("some answer that nobody reads").await;
    let client = client();
    let url = upstream.url("/");
    drop(get(&client, &url).await.unwrap());
    assert_eq!(fetch(&client, &url).await, "some answer that nobody reads");
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn lengths_close_and_until_close_bodies() {
    let upstream = Upstream::start(|n, mut peer| async move {
        while peer.request().await.is_some() {
            match n {
                // A length, then the connection is reused.
                0 => peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await,
                // `connection: close`: not reused.
                1 => {
                    peer.send(b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 4\r\n\r\ngone").await;
                    return;
                }
                // No length: the body ends with the connection.
                _ => {
                    peer.send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil the end").await;
                    return;
                }
            }
            if n == 0 {
                // Answer once more, then close the connection.
                if peer.request().await.is_some() {
                    peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nagain").await;
                }
                return;
            }
        }
    })
    .await;
    let client = client();
    let url = upstream.url("/");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let resp = get(&client, &url).await.unwrap();
        let status = resp.status;
        seen.push(format!("{status} {}", body(resp).await.unwrap()));
        // Let a closing upstream's FIN arrive before the next request looks at the pool.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen,
        ["200 hello", "200 again", "404 gone", "200 until the end"]
    );
    assert_eq!(upstream.connections(), 3);
}

#[tokio::test]
async fn compressed_answers_are_decompressed() {
    use async_compression::tokio::write::GzipEncoder;
    let upstream = Upstream::start(|_, mut peer| async move {
        while peer.request().await.is_some() {
            let mut gz = GzipEncoder::new(Vec::new());
            gz.write_all(b"data: {\"x\":1}\n\n".repeat(50).as_slice())
                .await
                .unwrap();
            gz.shutdown().await.unwrap();
            let packed = gz.into_inner();
            let mut answer =
                b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
                    .to_vec();
            for part in packed.chunks(9) {
                answer.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                answer.extend_from_slice(part);
                answer.extend_from_slice(b"\r\n");
            }
            answer.extend_from_slice(b"0\r\n\r\n");
            peer.send(&answer).await;
        }
    })
    .await;
    let client = client();
    let url = upstream.url("/");
    for _ in 0..2 {
        let text = fetch(&client, &url).await;
        assert_eq!(text, "data: {\"x\":1}\n\n".repeat(50));
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn https_with_the_platform_verifier_and_an_extra_root() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/upstream/qwen/h1/testdata");
    let cert = CertificateDer::from_pem_file(format!("{dir}/localhost.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/localhost.key")).unwrap();
    let ca = CertificateDer::from_pem_file(format!("{dir}/ca.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut peer = Peer::new(tls);
                while peer.request().await.is_some() {
                    peer.send(&chunked_answer("over TLS")).await;
                }
            });
        }
    });
    let trusting = Client::with_roots(Duration::from_secs(5), 8, Duration::from_secs(90), vec![ca]);
    for host in ["localhost", "127.0.0.1"] {
        let url = Url::parse(&format!("https://{host}:{port}/x")).unwrap();
        for _ in 0..2 {
            let text = fetch(&trusting, &url).await;
            assert_eq!(text, "over TLS");
        }
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Without the test CA the certificate is refused.
    let url = Url::parse(&format!("https://localhost:{port}/x")).unwrap();
    let err = get(&client(), &url).await.err().unwrap();
    assert!(
        matches!(&err, Error::Connect(m) if m.contains("TLS")),
        "{err:?}"
    );
}

#[tokio::test]
async fn idle_connections_expire_and_the_pool_is_bounded() {
    let upstream = Upstream::answering("ok").await;
    let url = upstream.url("/");
    // Kept for 50 ms: a request after 100 ms opens a new connection.
    let brief = Client::new(Duration::from_secs(5), 8, Duration::from_millis(50));
    fetch(&brief, &url).await;
    fetch(&brief, &url).await;
    assert_eq!(upstream.connections(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    fetch(&brief, &url).await;
    assert_eq!(upstream.connections(), 2);
    // Two answers in flight at once, then one idle connection kept: the third call reuses
    // it, the fourth (alongside) opens one more.
    let one = Client::new(Duration::from_secs(5), 1, Duration::from_secs(90));
    fetch_two(&one, &url).await;
    assert_eq!(upstream.connections(), 4);
    fetch_two(&one, &url).await;
    assert_eq!(upstream.connections(), 5);
}

#[tokio::test]
async fn an_unused_pool_closes_its_idle_connections() {
    let upstream = Upstream::answering("ok").await;
    let url = upstream.url("/");
    let brief = Client::new(Duration::from_secs(5), 8, Duration::from_millis(60));
    fetch_two(&brief, &url).await;
    assert_eq!(upstream.connections(), 2);
    assert_eq!(upstream.ended.load(Ordering::SeqCst), 0);
    // No further request: the pool's own task closes both after 60 to 80 ms.
    upstream.closed(2).await;
    // And a later request opens a new one, which the restarted task closes in turn.
    fetch(&brief, &url).await;
    assert_eq!(upstream.connections(), 3);
    upstream.closed(3).await;
}
