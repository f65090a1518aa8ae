//! chat.qwen.ai: its HTTP client (sign in, list models, create a chat, stream a completion,
//! delete a chat), wire types, payloads, SSE decoding, and the `Upstream` implementation.

pub mod files;
pub mod headers;
pub mod oss;
pub mod payload;
mod prepare;
pub mod stream;
mod upstream;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use reqwest::{Method, RequestBuilder, Response};
use sha2::{Digest, Sha256};

use super::error;
pub use super::error::UpstreamError;
pub use headers::{CallKind, Credentials};
pub use prepare::{Shaping, flatten, follow_up, offload_long_prompt, prepare};
pub use upstream::Qwen;

use crate::config::{Secret, UpstreamConfig};
use crate::upstream::Turn;

/// `path` under the configured base URL (which may have a path of its own). The base was parsed,
/// its host checked and IDNA-mapped, once at start; only the path is set per call.
fn endpoint(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let full = format!("{}{path}", base.path().trim_end_matches('/'));
    url.set_path(&full);
    url
}

/// Raw bytes of a completion's event stream, with the idle timeout applied.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// Idle upstream connections kept per serving loop (and proxy). A burst leaves as many
/// connections as it had calls in flight (a completion overlaps the deletion of the chat
/// before it, so about two per request), each with its socket, its read buffer and on the
/// real site its TLS state, for [`IDLE_TIMEOUT`]. 64 per loop serve 32 requests at a time on
/// each loop without reconnecting.
const IDLE_CONNECTIONS_PER_LOOP: usize = 64;

/// How long an idle upstream connection is kept for the next call.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Checks for silence per idle timeout, see [`QwenClient::complete`].
const SILENCE_CHECKS: u32 = 4;

/// Which pooled client a call uses: the serving loop it runs on, and its outbound proxy.
type ClientKey = (Option<usize>, Option<String>);

pub struct QwenClient {
    cfg: Arc<UpstreamConfig>,
    headers: headers::Template,
    /// One pooled HTTP client per serving loop and outbound proxy (`None`: not a serving
    /// loop's thread; the global proxy or none), so that an upstream connection's task runs on
    /// the loop whose requests use it (see [`crate::server::event_loop`]).
    clients: Mutex<HashMap<ClientKey, reqwest::Client>>,
    /// Host names resolved to fixed addresses instead of through DNS (tests only).
    resolve: Vec<(String, Vec<SocketAddr>)>,
}

impl QwenClient {
    pub fn new(cfg: Arc<UpstreamConfig>) -> Self {
        Self {
            headers: headers::Template::new(&cfg),
            cfg,
            clients: Mutex::new(HashMap::new()),
            resolve: Vec::new(),
        }
    }

    /// A client that resolves `host` to `addrs` (in that order; their ports are ignored, the
    /// URL's port is used) instead of asking DNS: for tests of what the connector does with
    /// several addresses.
    #[doc(hidden)]
    pub fn with_resolved(cfg: Arc<UpstreamConfig>, host: &str, addrs: &[SocketAddr]) -> Self {
        let mut client = Self::new(cfg);
        client.resolve.push((host.to_owned(), addrs.to_vec()));
        client
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    fn http(&self, proxy: Option<&str>) -> Result<reqwest::Client, UpstreamError> {
        let key = (
            crate::server::event_loop::current(),
            proxy.map(str::to_owned),
        );
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        // Every call is a request of its own on a kept-alive HTTP/1.1 connection (the site's
        // streams are long and few per account; HTTP/2 would add flow control and framing
        // per event for no gain), written at once (no Nagle delay), decompressed when the
        // site compresses (gzip, br, deflate), redirects followed (reqwest's default: up to 10,
        // a 307/308 with its method and body).
        //
        // A request is sent again only when it provably did not reach the upstream:
        // - reqwest's own retry policy (by default only HTTP/2 GOAWAY and REFUSED_STREAM, which
        //   an HTTP/1.1 client never meets) is set to never, which also spares a copy of every
        //   request's headers kept for a retry;
        // - below it, hyper-util's pool (`retry_canceled_requests`, on by default, not
        //   exposed by reqwest) sends a request again only when hyper hands the request back
        //   untouched: a reused connection was found closed while the request still waited in
        //   its queue, before the dispatcher took it to write (hyper's `TrySendError` carries the
        //   message only then; once taken, an error returns no message and is not retried);
        //   and never on a fresh connection.
        // - a connect failure fails before anything is written; the proxy then tries another
        //   account (or, for this account, after its cool-down).
        //
        // The connect timeout is split between a name's addresses (hyper-util's connector
        // gives each of N addresses 1/N of it, and races IPv6 against IPv4 after 300 ms), so
        // a black-holed first address leaves time for the next.
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.cfg.connect_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_LOOP)
            .http1_only()
            .retry(reqwest::retry::never().max_retries_per_request(0));
        for (host, addrs) in &self.resolve {
            builder = builder.resolve_to_addrs(host, addrs);
        }
        match proxy.or(self.cfg.proxy.as_ref().map(crate::config::ProxyUrl::as_str)) {
            Some(p) => {
                let proxy = reqwest::Proxy::all(p)
                    .map_err(|_| UpstreamError::Transient("invalid proxy URL".into()))?;
                builder = builder.proxy(proxy);
            }
            None => builder = builder.no_proxy(),
        }
        let client = builder
            .build()
            .map_err(|e| UpstreamError::Transient(format!("cannot build HTTP client: {e}")))?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        creds: Option<&Credentials>,
        kind: CallKind<'_>,
    ) -> Result<RequestBuilder, UpstreamError> {
        self.request_via(
            creds.and_then(|c| c.proxy.as_deref()),
            method,
            path,
            creds,
            kind,
        )
    }

    fn request_via(
        &self,
        proxy: Option<&str>,
        method: Method,
        path: &str,
        creds: Option<&Credentials>,
        kind: CallKind<'_>,
    ) -> Result<RequestBuilder, UpstreamError> {
        let http = self.http(proxy)?;
        let url = endpoint(&self.cfg.base_url, path);
        Ok(http
            .request(method, url)
            .headers(headers::build(&self.headers, &self.cfg, creds, kind)))
    }

    /// Sends and waits for the response headers, within the first-byte timeout.
    async fn send(&self, req: RequestBuilder) -> Result<Response, UpstreamError> {
        match tokio::time::timeout(self.cfg.first_byte_timeout, req.send()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(UpstreamError::from_reqwest(&e)),
            Err(_) => Err(UpstreamError::Transient(format!(
                "no response within {:?}",
                self.cfg.first_byte_timeout
            ))),
        }
    }

    /// A call every completion makes, with its query and JSON body. Waits for the answer's
    /// head within the first-byte timeout.
    async fn call(
        &self,
        method: Method,
        path: &str,
        creds: &Credentials,
        kind: CallKind<'_>,
        query: Option<(&str, &str)>,
        json: Option<Vec<u8>>,
    ) -> Result<Response, UpstreamError> {
        let mut req = self.request(method, path, Some(creds), kind)?;
        if let Some(pair) = query {
            req = req.query(&[pair]);
        }
        // The headers already say `content-type: application/json` (once: a second one
        // would be appended, not replaced).
        if let Some(body) = json {
            req = req.body(body);
        }
        self.send(req).await
    }

    /// The whole body of an answer, within the idle timeout.
    async fn answer_text(&self, answer: Response) -> Result<String, UpstreamError> {
        match tokio::time::timeout(self.cfg.idle_timeout, answer.bytes()).await {
            Ok(Ok(all)) => Ok(match String::from_utf8(all.into()) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            }),
            Ok(Err(e)) => Err(UpstreamError::from_reqwest(&e)),
            Err(_) => Err(UpstreamError::Transient(
                "timed out reading the answer".into(),
            )),
        }
    }

    /// Reads a JSON answer; anything but a 2xx JSON body is classified as an error.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: Response,
    ) -> Result<T, UpstreamError> {
        let status = resp.status().as_u16();
        let ct = content_type(resp.headers());
        let body = self.answer_text(resp).await?;
        if !(200..300).contains(&status) || ct.contains("html") {
            return Err(error::classify_body(status, &ct, &body));
        }
        serde_json::from_str(&body).map_err(|_| error::classify_body(status, &ct, &body))
    }

    /// `POST /api/v1/auths/signin` with the password as lower-case sha256 hex.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &Secret,
        proxy: Option<&str>,
    ) -> Result<Secret, UpstreamError> {
        let hashed = hex::encode(Sha256::digest(password.expose().as_bytes()));
        let body = serde_json::json!({ "email": email, "password": hashed });
        let req = self.request_via(
            proxy,
            Method::POST,
            "/api/v1/auths/signin",
            None,
            CallKind::Json,
        )?;
        let resp = self.send(req.json(&body)).await?;
        let status = resp.status().as_u16();
        let signed: wire::SignIn = self.json(resp).await.map_err(|e| match e {
            // A 400 here means bad credentials, not a malformed request.
            UpstreamError::Rejected(d) if status == 400 => UpstreamError::Auth(d),
            other => other,
        })?;
        signed
            .token
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .ok_or_else(|| UpstreamError::Auth("sign-in answer had no token".into()))
    }

    /// `GET /api/models`.
    pub async fn models(
        &self,
        creds: Option<&Credentials>,
    ) -> Result<Vec<wire::UpstreamModel>, UpstreamError> {
        let req = self.request(Method::GET, "/api/models", creds, CallKind::Json)?;
        let resp = self.send(req).await?;
        let list: wire::ModelsResponse = self.json(resp).await?;
        Ok(list.data)
    }

    /// `GET /api/v1/auths/`: whether the upstream still accepts the token.
    pub async fn check_token(&self, creds: &Credentials) -> Result<(), UpstreamError> {
        let req = self.request(Method::GET, "/api/v1/auths/", Some(creds), CallKind::Json)?;
        let resp = self.send(req).await?;
        let _: serde_json::Value = self.json(resp).await?;
        Ok(())
    }

    /// `POST /api/v2/chats/new` → the new chat's id.
    pub async fn create_chat(
        &self,
        creds: &Credentials,
        req: &Turn,
    ) -> Result<String, UpstreamError> {
        let body = json_bytes(&payload::NewChatBody::new(req))?;
        let resp = self
            .call(
                Method::POST,
                "/api/v2/chats/new",
                creds,
                CallKind::Json,
                None,
                Some(body),
            )
            .await?;
        let status = resp.status().as_u16();
        let ct = content_type(resp.headers());
        let text = self.answer_text(resp).await?;
        let parsed: Option<wire::Envelope<wire::NewChat>> = serde_json::from_str(&text).ok();
        match parsed {
            Some(env) if (200..300).contains(&status) && env.success != Some(false) => env
                .data
                .and_then(|d| d.id)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| UpstreamError::Transient("chats/new answered without an id".into())),
            _ => Err(error::classify_body(status, &ct, &text)),
        }
    }

    /// `POST /api/v2/chat/completions?chat_id=…`: checks status and content type, then hands
    /// back the raw event stream. A 200 that is not an event stream is an error to classify.
    pub async fn complete(
        &self,
        creds: &Credentials,
        req: &Turn,
        chat_id: &str,
        files: &[payload::WireFile],
    ) -> Result<ByteStream, UpstreamError> {
        let kind = CallKind::Completion { chat_id };
        let resp = self
            .post_completion(creds, req, chat_id, files, kind)
            .await?;
        let status = resp.status().as_u16();
        let ct = content_type(resp.headers());
        if status != 200 || !ct.starts_with("text/event-stream") {
            let text = self.answer_text(resp).await?;
            return Err(error::classify_body(status, &ct, &text));
        }
        let idle = self.cfg.idle_timeout;
        let mut inner = resp;
        let stream = async_stream::stream! {
            // Silence is checked every quarter of the idle timeout rather than by pushing a
            // timer back on every read (a clock read and a timer move per chunk, and a chunk
            // is usually one event): the stream fails after between 1 and 1.25 × `idle`
            // without data.
            let quarter = idle / SILENCE_CHECKS;
            let mut checks = tokio::time::interval_at(tokio::time::Instant::now() + quarter, quarter);
            // A consumer that stalls must not come back to a burst of missed checks.
            checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut quiet = 0;
            loop {
                tokio::select! {
                    // Data first (no random branch order per chunk); the timer is for silence.
                    biased;
                    // Cancel-safe: a chunk not yet received stays in the body.
                    next = inner.chunk() => match next {
                        Ok(Some(bytes)) => {
                            quiet = 0;
                            yield Ok(bytes);
                        }
                        Err(e) => {
                            yield Err(UpstreamError::from_reqwest(&e));
                            break;
                        }
                        Ok(None) => break,
                    },
                    _ = checks.tick() => {
                        quiet += 1;
                        if quiet > SILENCE_CHECKS {
                            yield Err(UpstreamError::Transient(format!("the stream was silent for {idle:?}")));
                            break;
                        }
                    }
                }
            }
        };
        Ok(Box::pin(stream))
    }

    /// `POST /api/v2/chat/completions?chat_id=…` (the id in the query and in the body).
    async fn post_completion(
        &self,
        creds: &Credentials,
        req: &Turn,
        chat_id: &str,
        files: &[payload::WireFile],
        kind: CallKind<'_>,
    ) -> Result<Response, UpstreamError> {
        let body = json_bytes(&payload::CompletionBody::new(req, chat_id, files))?;
        self.call(
            Method::POST,
            "/api/v2/chat/completions",
            creds,
            kind,
            Some(("chat_id", chat_id)),
            Some(body),
        )
        .await
    }

    /// `DELETE /api/v2/chats/{id}`; 404 counts as done.
    pub async fn delete_chat(
        &self,
        creds: &Credentials,
        chat_id: &str,
    ) -> Result<(), UpstreamError> {
        let path = format!("/api/v2/chats/{chat_id}");
        let resp = self
            .call(Method::DELETE, &path, creds, CallKind::Json, None, None)
            .await?;
        let status = resp.status().as_u16();
        let ct = content_type(resp.headers());
        let text = self.answer_text(resp).await?;
        if (200..300).contains(&status) || status == 404 {
            return Ok(());
        }
        Err(error::classify_body(status, &ct, &text))
    }
}

/// A request body as JSON.
fn json_bytes<T: serde::Serialize>(body: &T) -> Result<Vec<u8>, UpstreamError> {
    serde_json::to_vec(body)
        .map_err(|e| UpstreamError::Transient(format!("cannot encode the request: {e}")))
}

fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoints_keep_the_base_path_and_encode_like_a_parsed_url() {
        let at = |base: &str, path: &str| {
            endpoint(&reqwest::Url::parse(base).unwrap(), path).to_string()
        };
        assert_eq!(
            at("https://chat.qwen.ai/", "/api/v2/chats/new"),
            "https://chat.qwen.ai/api/v2/chats/new"
        );
        assert_eq!(
            at("http://relay.local:8080/qwen", "/api/models"),
            "http://relay.local:8080/qwen/api/models"
        );
        assert_eq!(
            at("http://relay.local:8080/qwen/", "/api/models"),
            "http://relay.local:8080/qwen/api/models"
        );
        // An id never ends the path early: `?` and `#` are encoded, not a query or fragment.
        assert_eq!(
            at("https://chat.qwen.ai", "/api/v2/chats/a b?#"),
            "https://chat.qwen.ai/api/v2/chats/a%20b%3F%23"
        );
    }
}
