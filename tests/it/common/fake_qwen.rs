//! Fake chat.qwen.ai for integration tests: accounts and JWTs, scripted replies with transport
//! faults (odd splits, delays, resets, hangs), and a log of every request it received.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::fake_chats::{ChatMessage, Chats};
use super::fake_media::{self, Media, Routed};

const SIGNIN: &str = "/api/v1/auths/signin";
const ME: &str = "/api/v1/auths/";
const MODELS: &str = "/api/models";
const MODELS_V2: &str = "/api/v2/models/";
const CHATS_NEW: &str = "/api/v2/chats/new";
const COMPLETIONS: &str = "/api/v2/chat/completions";
const CHAT_PREFIX: &str = "/api/v2/chats/";
const TOKEN_LIFETIME_SECS: i64 = 30 * 24 * 3600;

/// What the fake answers to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 `text/event-stream`, body written in pieces.
    Sse {
        body: Vec<u8>,
        split: Split,
        /// After the headers, before the first piece.
        first_delay: Duration,
        /// Between pieces.
        delay: Duration,
        end: End,
    },
    /// Any status, content type and body (JSON errors, HTML WAF pages, 200+JSON instead of SSE).
    Http {
        status: u16,
        content_type: String,
        body: String,
    },
    /// Wait before sending the response headers, then play the inner reply.
    Delayed(Duration, Box<Reply>),
    /// A redirect (`301`, `302`, `307`…) to `location`, with an empty body.
    Redirect { status: u16, location: String },
    /// The connection is closed once the whole request has been read, before any answer (as
    /// a server that dies while working on a request it received).
    Abort,
}

/// How an [`Reply::Sse`] body is cut into body frames.
#[derive(Clone, Copy, Debug)]
pub enum Split {
    /// One frame.
    Whole,
    /// Frames of this many bytes (the last may be shorter); 0 is treated as 1.
    Every(usize),
    /// Deterministic irregular sizes (1, 3, 7, 2, 5, 11, …) that land inside multi-byte chars.
    Odd,
    /// One frame per event (cut after each blank line).
    AtEvents,
}

/// How an [`Reply::Sse`] body ends after its last piece.
#[derive(Clone, Copy, Debug)]
pub enum End {
    /// Clean end of the chunked body.
    Close,
    /// The body stream fails, so the client sees a broken chunked body.
    Reset,
    /// The connection stays open and nothing more is sent.
    Hang,
}

/// Sizes cycled through by [`Split::Odd`].
const ODD_SIZES: [usize; 12] = [1, 3, 7, 2, 5, 11, 4, 13, 6, 17, 8, 10];

impl Split {
    /// The pieces `body` is written in.
    pub fn pieces(self, body: &[u8]) -> Vec<Bytes> {
        let mut pieces = Vec::new();
        match self {
            Split::Whole => {
                if !body.is_empty() {
                    pieces.push(Bytes::copy_from_slice(body));
                }
            }
            Split::Every(n) => {
                pieces.extend(body.chunks(n.max(1)).map(Bytes::copy_from_slice));
            }
            Split::Odd => {
                let mut rest = body;
                for size in ODD_SIZES.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (piece, tail) = rest.split_at((*size).min(rest.len()));
                    pieces.push(Bytes::copy_from_slice(piece));
                    rest = tail;
                }
            }
            Split::AtEvents => {
                let mut start = 0;
                let mut i = 0;
                while i + 1 < body.len() {
                    if &body[i..i + 2] == b"\n\n" {
                        pieces.push(Bytes::copy_from_slice(&body[start..i + 2]));
                        start = i + 2;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                if start < body.len() {
                    pieces.push(Bytes::copy_from_slice(&body[start..]));
                }
            }
        }
        pieces
    }
}

impl Reply {
    /// SSE body split [`Split::Odd`], no delays, clean end.
    pub fn sse(body: impl Into<Vec<u8>>) -> Reply {
        Reply::sse_with(body, Split::Odd)
    }

    pub fn sse_with(body: impl Into<Vec<u8>>, split: Split) -> Reply {
        Reply::Sse {
            body: body.into(),
            split,
            first_delay: Duration::ZERO,
            delay: Duration::ZERO,
            end: End::Close,
        }
    }

    pub fn http(status: u16, content_type: &str, body: impl Into<String>) -> Reply {
        Reply::Http {
            status,
            content_type: content_type.to_owned(),
            body: body.into(),
        }
    }

    #[expect(
        clippy::needless_pass_by_value,
        reason = "owned so callers can pass json!(..) inline, as the tests' API promises"
    )]
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::http(status, "application/json", body.to_string())
    }

    pub fn html(status: u16, body: &str) -> Reply {
        Reply::http(status, "text/html; charset=utf-8", body)
    }

    /// Replays `tests/fixtures/qwen/<name>` (comment lines removed) split [`Split::Odd`].
    pub fn fixture(name: &str) -> Reply {
        Reply::sse(fixture_bytes(name))
    }

    /// Sets the delay before the first piece of the (innermost) SSE reply; no-op for `Http`.
    #[must_use]
    pub fn first_delay(self, d: Duration) -> Reply {
        self.map_sse(|first_delay, _, _| *first_delay = d)
    }

    /// Sets the delay between pieces of the (innermost) SSE reply; no-op for `Http`.
    #[must_use]
    pub fn delay(self, d: Duration) -> Reply {
        self.map_sse(|_, delay, _| *delay = d)
    }

    /// Sets how the (innermost) SSE reply ends; no-op for `Http`.
    #[must_use]
    pub fn end(self, e: End) -> Reply {
        self.map_sse(|_, _, end| *end = e)
    }

    fn map_sse(self, f: impl FnOnce(&mut Duration, &mut Duration, &mut End)) -> Reply {
        match self {
            Reply::Sse {
                body,
                split,
                mut first_delay,
                mut delay,
                mut end,
            } => {
                f(&mut first_delay, &mut delay, &mut end);
                Reply::Sse {
                    body,
                    split,
                    first_delay,
                    delay,
                    end,
                }
            }
            Reply::Delayed(d, inner) => Reply::Delayed(d, Box::new(inner.map_sse(f))),
            other @ (Reply::Http { .. } | Reply::Redirect { .. } | Reply::Abort) => other,
        }
    }
}

/// Bytes of `tests/fixtures/qwen/<name>` with `#` comment lines (annotations, not part of the
/// captured stream) and the blank line following them removed.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/qwen/{name}", env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading fixture {path}: {e}"));
    strip_comments(&text).into_bytes()
}

/// Removes lines starting with `#` and the blank line right after a run of them.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_comment = false;
    for line in text.split_inclusive('\n') {
        if line.starts_with('#') {
            after_comment = true;
            continue;
        }
        if after_comment && line.trim_end_matches(['\r', '\n']).is_empty() {
            after_comment = false;
            continue;
        }
        after_comment = false;
        out.push_str(line);
    }
    out
}

/// Lower-case hex SHA-256, the form sign-in expects for passwords.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The decoded payload of a JWT (no signature check), if it has one.
pub fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The request target as received: absolute (`http://host/path`) when the request came
    /// proxy-style, else origin form (`/path?query`).
    pub uri: String,
    /// When the request had arrived (headers and body read).
    pub at: Instant,
    pub query: Option<String>,
    /// Names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body as text, invalid UTF-8 replaced; `bytes` has it exactly.
    pub body: String,
    /// The raw body.
    pub bytes: Bytes,
    /// Account label resolved from a valid token; `None` if no, unknown, revoked or expired token.
    pub label: Option<String>,
    /// Label the presented token was minted for, even when revoked or expired.
    pub token_label: Option<String>,
    pub json: Option<Value>,
    /// The client's address: one per upstream connection the proxy opened.
    pub peer: SocketAddr,
}

impl Recorded {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Value of a query parameter (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_param(self.query.as_deref(), name)
    }
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

struct Token {
    label: String,
    user_id: String,
    exp: i64,
    revoked: bool,
}

#[derive(Clone)]
struct User {
    email: String,
    password: String,
}

/// Who a valid token belongs to.
pub(super) struct Session {
    pub(super) token: String,
    pub(super) label: String,
    pub(super) user_id: String,
    pub(super) exp: i64,
}

pub(super) type Queues = HashMap<Option<String>, VecDeque<Reply>>;

struct Shared {
    tokens: HashMap<String, Token>,
    /// Stable user id per label, so every token of an account carries the same `id`.
    user_ids: HashMap<String, String>,
    /// Keyed by lower-cased e-mail.
    users: HashMap<String, User>,
    models: Reply,
    completions: Queues,
    default_completion: Reply,
    chat_new: Queues,
    chat_ids: Vec<String>,
    /// The chats as the site keeps them (`fake_chats`).
    chats: Chats,
    requests: Vec<Recorded>,
    /// Lifetime of tokens issued by sign-in.
    sign_in_lifetime: i64,
}

impl Shared {
    fn user_id(&mut self, label: &str) -> String {
        self.user_ids
            .entry(label.to_owned())
            .or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone()
    }

    fn mint(&mut self, label: &str, exp: i64) -> String {
        let user_id = self.user_id(label);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({"id": user_id, "last_password_change": now_unix(), "exp": exp});
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut signature = [0u8; 32];
        signature[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        signature[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let token = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(signature));
        self.tokens.insert(
            token.clone(),
            Token {
                label: label.to_owned(),
                user_id,
                exp,
                revoked: false,
            },
        );
        token
    }

    /// `(valid session, label the token was minted for)`.
    fn resolve(&self, token: Option<&str>) -> (Option<Session>, Option<String>) {
        let Some(token) = token else {
            return (None, None);
        };
        let Some(info) = self.tokens.get(token) else {
            return (None, None);
        };
        let claimed = Some(info.label.clone());
        if info.revoked || info.exp <= now_unix() {
            return (None, claimed);
        }
        let session = Session {
            token: token.to_owned(),
            label: info.label.clone(),
            user_id: info.user_id.clone(),
            exp: info.exp,
        };
        (Some(session), claimed)
    }
}

pub(super) struct Inner {
    shared: Mutex<Shared>,
    open_streams: AtomicUsize,
    streams_changed: Notify,
    /// Uploads, parsing and generated media (`fake_media`), locked on its own.
    pub(super) media: Media,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panicking test thread must not hide the log from the others.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Counts an SSE body as open from the moment its response is built until the body is
/// dropped (finished, failed, or abandoned by the client).
struct StreamGuard(Arc<Inner>);

impl StreamGuard {
    fn new(inner: Arc<Inner>) -> StreamGuard {
        inner.open_streams.fetch_add(1, Ordering::SeqCst);
        StreamGuard(inner)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
        self.0.streams_changed.notify_waiters();
    }
}

/// Aborts the server task when the last handle to the fake goes away.
struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running fake of chat.qwen.ai on 127.0.0.1; clones share the same server and state.
#[derive(Clone)]
pub struct FakeQwen {
    pub(super) inner: Arc<Inner>,
    addr: SocketAddr,
    _server: Arc<ServerTask>,
}

impl FakeQwen {
    /// Binds 127.0.0.1:0 and serves in a tokio task; ready as soon as this returns.
    pub async fn start() -> FakeQwen {
        // Bound first: the STS answers name the fake's own address as the OSS endpoint.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake qwen");
        let addr = listener.local_addr().expect("fake qwen address");
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                tokens: HashMap::new(),
                user_ids: HashMap::new(),
                users: HashMap::new(),
                models: Reply::json(200, default_models()),
                completions: HashMap::new(),
                default_completion: Reply::fixture("capture_fast_answer.sse"),
                chat_new: HashMap::new(),
                chat_ids: Vec::new(),
                chats: Chats::default(),
                requests: Vec::new(),
                sign_in_lifetime: TOKEN_LIFETIME_SECS,
            }),
            open_streams: AtomicUsize::new(0),
            streams_changed: Notify::new(),
            media: Media::new(format!("http://{addr}")),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let task = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.expect("fake qwen server");
        });
        FakeQwen {
            inner,
            addr,
            _server: Arc::new(ServerTask(task)),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url()` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// A valid JWT for the account `label`, expiring in 30 days.
    pub fn add_token(&self, label: &str) -> String {
        self.add_token_with_exp(label, now_unix() + TOKEN_LIFETIME_SECS)
    }

    /// A JWT for `label` with the given `exp`; one whose `exp` has passed gets 401.
    pub fn add_token_with_exp(&self, label: &str, exp_unix: i64) -> String {
        self.inner.lock().mint(label, exp_unix)
    }

    /// A sign-in account; its tokens are labelled `email`.
    pub fn add_user(&self, email: &str, password: &str) {
        self.inner.lock().users.insert(
            email.to_lowercase(),
            User {
                email: email.to_owned(),
                password: password.to_owned(),
            },
        );
    }

    /// Tokens issued by sign-in from now on expire `lifetime` (whole seconds, at least 1) after
    /// they are issued; the default is 30 days.
    pub fn set_sign_in_lifetime(&self, lifetime: Duration) {
        let secs = i64::try_from(lifetime.as_secs()).unwrap_or(TOKEN_LIFETIME_SECS);
        self.inner.lock().sign_in_lifetime = secs.max(1);
    }

    /// Recorded `POST /api/v1/auths/signin`, in arrival order (`at` tells when).
    pub fn sign_ins(&self) -> Vec<Recorded> {
        self.matching(None, "POST", SIGNIN)
    }

    /// Every token minted so far for `label` gets 401 from now on; tokens minted later
    /// (for instance by signing in again) are valid.
    pub fn revoke(&self, label: &str) {
        for token in self.inner.lock().tokens.values_mut() {
            if token.label == label {
                token.revoked = true;
            }
        }
    }

    /// Body returned (200) by `GET /api/models` and `GET /api/v2/models/`.
    pub fn set_models(&self, body: Value) {
        self.set_models_reply(Reply::json(200, body));
    }

    /// Reply to every models request from now on.
    pub fn set_models_reply(&self, reply: Reply) {
        self.inner.lock().models = reply;
    }

    /// Queues a completion reply for `label` (`None`: any label); each is used once, FIFO.
    pub fn push_completion(&self, label: Option<&str>, reply: Reply) {
        push(&mut self.inner.lock().completions, label, reply);
    }

    /// Completion reply used when no queued one applies.
    pub fn set_default_completion(&self, reply: Reply) {
        self.inner.lock().default_completion = reply;
    }

    /// Queues a reply overriding the next `chats/new` for `label` (`None`: any label).
    pub fn push_chat_new(&self, label: Option<&str>, reply: Reply) {
        push(&mut self.inner.lock().chat_new, label, reply);
    }

    /// Ids handed out by successful `chats/new` calls, in order.
    pub fn chat_ids(&self) -> Vec<String> {
        self.inner.lock().chat_ids.clone()
    }

    /// Gives each answer from now on a fresh `response_id` (`answer-1`, `answer-2`, …) in place
    /// of the fixtures' one, so that a continuation's parent names one answer.
    pub fn number_answers(&self) {
        self.inner.lock().chats.number_answers();
    }

    /// A chat's messages as the site keeps them; `None` for an unknown or deleted chat.
    pub fn chat(&self, id: &str) -> Option<Vec<ChatMessage>> {
        self.inner.lock().chats.messages(id)
    }

    /// Deletes a chat as its owner would on the site.
    pub fn delete_chat(&self, id: &str) {
        self.inner.lock().chats.delete(id);
    }

    /// Ids of the chats deleted, in order.
    pub fn deleted_chats(&self) -> Vec<String> {
        self.inner.lock().chats.deleted()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().requests.clone()
    }

    /// Requests with this method and exact path (query excluded).
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.matching(None, method, path).len()
    }

    /// As [`FakeQwen::count`], only those whose token resolved to `label`.
    pub fn count_for(&self, label: &str, method: &str, path: &str) -> usize {
        self.matching(Some(label), method, path).len()
    }

    /// Recorded `POST /api/v2/chat/completions`.
    pub fn completions(&self) -> Vec<Recorded> {
        self.matching(None, "POST", COMPLETIONS)
    }

    fn matching(&self, label: Option<&str>, method: &str, path: &str) -> Vec<Recorded> {
        self.inner
            .lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .filter(|r| label.is_none() || r.label.as_deref() == label)
            .cloned()
            .collect()
    }

    /// SSE bodies currently being streamed.
    pub fn open_streams(&self) -> usize {
        self.inner.open_streams.load(Ordering::SeqCst)
    }

    /// True once `open_streams()` is 0, false if that does not happen within `timeout`.
    pub async fn wait_streams_closed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.inner.streams_changed.notified();
            tokio::pin!(changed);
            // Register before checking so a drop between the check and the wait is not missed.
            changed.as_mut().enable();
            if self.open_streams() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.open_streams() == 0;
            }
        }
    }
}

pub(super) fn push(queues: &mut Queues, label: Option<&str>, reply: Reply) {
    queues
        .entry(label.map(str::to_owned))
        .or_default()
        .push_back(reply);
}

/// The label's own queue first, then the shared one.
pub(super) fn pop(queues: &mut Queues, label: &str) -> Option<Reply> {
    queues
        .get_mut(&Some(label.to_owned()))
        .and_then(VecDeque::pop_front)
        .or_else(|| queues.get_mut(&None).and_then(VecDeque::pop_front))
}

pub(super) fn now_unix() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits in i64")
}

/// The token as Open-WebUI picks it: the `Authorization: Bearer` header when present, else
/// the `token` cookie.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    if let Some(token) = bearer {
        return Some(token.to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value.trim().to_owned())
        .filter(|token| !token.is_empty())
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let token = presented_token(&parts.headers);
    let (session, token_label) = inner.lock().resolve(token.as_deref());
    let recorded = Recorded {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        uri: parts.uri.to_string(),
        at: Instant::now(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_ascii_lowercase(), value)
            })
            .collect(),
        json: serde_json::from_str(&body).ok(),
        body,
        bytes,
        label: session.as_ref().map(|s| s.label.clone()),
        token_label,
        peer,
    };
    // Recorded before any reply (even a delayed one) so tests see it once headers arrive.
    inner.lock().requests.push(recorded.clone());
    let session = match fake_media::route(&inner, &recorded, session) {
        Routed::Reply(reply) => return play(reply, inner).await,
        Routed::Raw(response) => return response,
        Routed::NotMedia(session) => session,
    };
    let reply = route(&inner, &recorded, session);
    play(reply, inner).await
}

#[derive(PartialEq, Eq)]
enum Endpoint {
    Me,
    ChatNew,
    Completion,
    Chat,
}

fn route(inner: &Inner, request: &Recorded, session: Option<Session>) -> Reply {
    let path = request.path.as_str();
    let endpoint = match (request.method.as_str(), path) {
        ("POST", SIGNIN) => return sign_in(inner, request),
        ("GET", MODELS | MODELS_V2) => return inner.lock().models.clone(),
        ("GET", ME) => Endpoint::Me,
        ("POST", CHATS_NEW) => Endpoint::ChatNew,
        ("POST", COMPLETIONS) => Endpoint::Completion,
        ("GET" | "DELETE", _) if is_chat_path(path) => Endpoint::Chat,
        _ => return Reply::json(404, json!({"detail": "Not Found"})),
    };
    // Query validation runs before auth, as in FastAPI.
    if endpoint == Endpoint::Completion && request.query_param("chat_id").is_none() {
        return Reply::json(
            422,
            json!({"detail": ["Field 'query -> chat_id': Field required"]}),
        );
    }
    let Some(session) = session else {
        return Reply::json(401, json!({"detail": "Unauthorized"}));
    };
    match endpoint {
        Endpoint::Me => Reply::json(
            200,
            json!({
                "id": session.user_id,
                "email": session.label,
                "name": display_name(&session.label),
                "role": "user",
                "profile_image_url": "/user.png",
                "token": session.token,
                "token_type": "Bearer",
                "expires_at": session.exp,
                "permissions": {},
            }),
        ),
        Endpoint::ChatNew => chat_new(inner, request, &session.label),
        Endpoint::Completion => {
            let mut shared = inner.lock();
            let chat_id = request.query_param("chat_id").unwrap_or_default();
            let body = request.json.clone().unwrap_or_default();
            if let Some(refused) = shared.chats.refusal(chat_id, &session.label, &body) {
                return refused;
            }
            let reply = pop(&mut shared.completions, &session.label)
                .unwrap_or_else(|| shared.default_completion.clone());
            shared.chats.answered(request, &session.label, reply)
        }
        Endpoint::Chat => {
            if request.method == "DELETE"
                && let Some(id) = path.strip_prefix(CHAT_PREFIX)
            {
                inner.lock().chats.delete(id);
            }
            Reply::json(200, json!({"success": true, "data": {"status": true}}))
        }
    }
}

fn is_chat_path(path: &str) -> bool {
    path.strip_prefix(CHAT_PREFIX)
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

fn display_name(email: &str) -> &str {
    email.split('@').next().unwrap_or(email)
}

fn sign_in(inner: &Inner, request: &Recorded) -> Reply {
    let credentials = request.json.as_ref().and_then(|body| {
        let email = body.get("email")?.as_str()?;
        let password = body.get("password")?.as_str()?;
        Some((email, password))
    });
    let Some((email, password)) = credentials else {
        return Reply::json(422, json!({"detail": "email and password are required"}));
    };
    let mut shared = inner.lock();
    let Some(user) = shared.users.get(&email.to_lowercase()).cloned() else {
        return Reply::json(400, json!({"detail": "not registered"}));
    };
    if password != sha256_hex(&user.password) {
        return Reply::json(
            400,
            json!({"detail": "The email or password you entered is incorrect."}),
        );
    }
    let exp = now_unix() + shared.sign_in_lifetime;
    let token = shared.mint(&user.email, exp);
    let id = shared.user_id(&user.email);
    Reply::json(
        200,
        json!({
            "id": id,
            "email": user.email,
            "name": display_name(&user.email),
            "role": "user",
            "profile_image_url": "/user.png",
            "token": token,
            "token_type": "Bearer",
            "expires_at": exp,
        }),
    )
}

fn chat_new(inner: &Inner, request: &Recorded, label: &str) -> Reply {
    let mut shared = inner.lock();
    if let Some(reply) = pop(&mut shared.chat_new, label) {
        return reply;
    }
    let has_models = request
        .json
        .as_ref()
        .and_then(|body| body.get("models"))
        .and_then(Value::as_array)
        .is_some_and(|models| !models.is_empty());
    let request_id = uuid::Uuid::new_v4().to_string();
    if !has_models {
        return Reply::json(
            200,
            json!({
                "success": false,
                "request_id": request_id,
                "data": {"code": "Bad_Request", "details": "models is required"},
            }),
        );
    }
    let id = uuid::Uuid::new_v4().to_string();
    shared.chat_ids.push(id.clone());
    shared.chats.created(&id, label);
    Reply::json(
        200,
        json!({"success": true, "request_id": request_id, "data": {"id": id}}),
    )
}

/// Pauses between pieces; with no delay it still yields so each piece is flushed as its own
/// write instead of being coalesced by hyper's write buffer.
async fn pause(delay: Duration) {
    if delay.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(delay).await;
    }
}

pub(super) fn play(reply: Reply, inner: Arc<Inner>) -> BoxFuture<'static, Response> {
    Box::pin(async move {
        match reply {
            Reply::Http {
                status,
                content_type,
                body,
            } => Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .expect("valid response"),
            Reply::Redirect { status, location } => Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND))
                .header(header::LOCATION, location)
                .body(Body::empty())
                .expect("valid response"),
            Reply::Delayed(wait, next) => {
                tokio::time::sleep(wait).await;
                play(*next, inner).await
            }
            // Unwinds out of the connection's task (without the panic hook's message), which
            // drops the socket with no answer written; the server goes on serving the others.
            Reply::Abort => std::panic::resume_unwind(Box::new("fake qwen: connection aborted")),
            Reply::Sse {
                body,
                split,
                first_delay,
                delay,
                end,
            } => {
                let guard = StreamGuard::new(inner);
                let pieces = split.pieces(&body);
                let stream = async_stream::stream! {
                    // Owned by the stream, so it drops when hyper drops the body.
                    let _guard = guard;
                    if !first_delay.is_zero() {
                        tokio::time::sleep(first_delay).await;
                    }
                    for (i, piece) in pieces.into_iter().enumerate() {
                        if i > 0 {
                            pause(delay).await;
                        }
                        yield Ok::<Bytes, std::io::Error>(piece);
                    }
                    match end {
                        End::Close => {}
                        End::Reset => {
                            // Let the pieces reach the socket before the abort.
                            pause(delay).await;
                            yield Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "fake qwen: connection reset",
                            ));
                        }
                        End::Hang => futures::future::pending::<()>().await,
                    }
                };
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .header(header::CACHE_CONTROL, "no-cache")
                    .body(Body::from_stream(stream))
                    .expect("valid response")
            }
        }
    })
}

/// One model object in the §4.2 shape.
pub fn model(
    id: &str,
    name: &str,
    thinking: bool,
    chat_types: &[&str],
    think_skip: bool,
    max_context: u64,
) -> Value {
    json!({
        "id": id,
        "name": name,
        "object": "model",
        "owned_by": "qwen",
        "info": {
            "id": id,
            "user_id": "7ad5c1a0-3c1e-4b7e-9d2f-1a2b3c4d5e6f",
            "base_model_id": null,
            "name": name,
            "is_active": true,
            "is_visitor_active": true,
            "access_control": null,
            "created_at": 1_700_000_000,
            "updated_at": 1_700_000_000,
            "meta": {
                "description": format!("{name} by Qwen"),
                "short_description": name,
                "capabilities": {
                    "vision": true, "document": true, "video": true, "audio": true,
                    "citations": true, "thinking": thinking, "thinking_budget": thinking,
                    "search": chat_types.contains(&"search"),
                },
                "abilities": {
                    "vision": 1, "document": 1, "video": 1, "audio": 1, "mcp": 1,
                    "citations": 1, "thinking": u8::from(thinking),
                    "thinking_budget": u8::from(thinking), "parse_url": 1,
                },
                "max_context_length": max_context,
                "max_generation_length": 65_536,
                "max_thinking_generation_length": 38_912,
                "max_summary_generation_length": 8_192,
                "chat_type": chat_types,
                "modality": ["text", "image", "video", "audio"],
                "mcp": ["image-generation", "code-interpreter"],
                "thinking_format": "summary",
                "auto_thinking": false,
                "auto_search": false,
                "think_skip": {"enable": think_skip},
                "is_single_round": false,
            },
        },
    })
}

/// The models list served until a test sets another.
pub fn default_models() -> Value {
    json!({
        "data": [
            model(
                "qwen3.7-plus",
                "Qwen3.7-Plus",
                true,
                &["t2t", "search", "t2i", "image_edit", "t2v"],
                true,
                1_048_576,
            ),
            model("qwen3.8-max", "Qwen3.8-Max", true, &["t2t", "search"], false, 262_144),
            model("qwen3-coder-plus", "Qwen3-Coder-Plus", false, &["t2t"], true, 1_048_576),
        ]
    })
}
