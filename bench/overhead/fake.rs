//! The fast fake chat.qwen.ai: the four endpoints the proxy calls, answering in the protocol's
//! exact shapes from bytes rendered once per scenario, with optional delays and a hold mode.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::serve::ListenerExt;
use futures::{Stream, StreamExt, stream};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::qwen_sse;

/// The one model the fake lists; requests name it.
pub const MODEL: &str = "qwen3.7-plus";

/// A held stream is let go after this long even if nobody releases it.
const HOLD_LIMIT: Duration = Duration::from_secs(600);

/// What every completion answers until the next scenario is set.
pub struct Scenario {
    /// `response.created`, the answer events, then `finished`: one `Bytes` per SSE event.
    events: Arc<[Bytes]>,
    /// Pause before each event after the first.
    pub event_delay: Duration,
    /// Pause before `chats/new` answers (the real site takes 0.3–0.6 s).
    pub chat_new_delay: Duration,
    /// Send `response.created` and the first answer event, then wait for [`Fake::release`].
    pub hold: bool,
}

impl Scenario {
    /// `answers` answer events of `bytes` bytes of text each, no delays.
    pub fn new(answers: usize, bytes: usize) -> Self {
        let mut events = Vec::with_capacity(answers + 2);
        events.push(Bytes::from(qwen_sse::created(
            qwen_sse::CHAT_ID,
            qwen_sse::PARENT_ID,
            qwen_sse::RID,
            "0",
        )));
        for i in 0..answers {
            let tokens = u64::try_from(i + 1).unwrap_or(u64::MAX);
            events.push(Bytes::from(qwen_sse::answer(
                qwen_sse::RID,
                &piece(i, bytes),
                tokens,
            )));
        }
        events.push(Bytes::from(qwen_sse::finished(qwen_sse::RID)));
        Self {
            events: events.into(),
            event_delay: Duration::ZERO,
            chat_new_delay: Duration::ZERO,
            hold: false,
        }
    }

    /// Bytes on the wire for one completion body.
    pub fn body_len(&self) -> usize {
        self.events.iter().map(Bytes::len).sum()
    }
}

/// The text of answer event `i`: `bytes` bytes, and never a prefix-repeat of the text before
/// it, so the proxy's cumulative-text detection stays out of the way.
pub fn piece(i: usize, bytes: usize) -> String {
    let mut s = format!("{i:07}");
    while s.len() + 1 < bytes {
        s.push('a');
    }
    s.push(' ');
    s
}

/// The whole answer text a scenario of `answers` × `bytes` carries.
pub fn answer_text(answers: usize, bytes: usize) -> String {
    (0..answers).map(|i| piece(i, bytes)).collect()
}

/// Calls seen, so a phase can wait until the proxy's background chat deletions are done.
#[derive(Default)]
pub struct Counters {
    pub chats_new: AtomicU64,
    pub completions: AtomicU64,
    pub deletes: AtomicU64,
    pub open_streams: AtomicU64,
}

pub struct Fake {
    scenario: RwLock<Arc<Scenario>>,
    pub counters: Counters,
    release: watch::Sender<bool>,
    models: Bytes,
}

impl Fake {
    pub fn set_scenario(&self, s: Scenario) {
        *self
            .scenario
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(s);
    }

    fn scenario(&self) -> Arc<Scenario> {
        Arc::clone(&self.scenario.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Lets every held stream finish.
    pub fn release(&self) {
        self.release.send_replace(true);
    }

    /// Holds streams again from now on (before a hold phase).
    pub fn rearm(&self) {
        self.release.send_replace(false);
    }

    /// True once every chat created has been deleted and no stream is open.
    pub fn quiet(&self) -> bool {
        let c = &self.counters;
        c.deletes.load(Ordering::Acquire) >= c.chats_new.load(Ordering::Acquire)
            && c.open_streams.load(Ordering::Acquire) == 0
    }
}

/// The running fake; the server task stops when this is dropped.
pub struct FakeServer {
    pub base_url: String,
    pub state: Arc<Fake>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start() -> std::io::Result<FakeServer> {
    let (release, _) = watch::channel(false);
    let state = Arc::new(Fake {
        scenario: RwLock::new(Arc::new(Scenario::new(1, 8))),
        counters: Counters::default(),
        release,
        models: Bytes::from(models_json()),
    });
    let app = Router::new()
        .route("/api/models", get(models))
        .route("/api/v2/chats/new", post(chat_new))
        .route("/api/v2/chat/completions", post(completions))
        .route("/api/v2/chats/{id}", delete(delete_chat))
        .with_state(Arc::clone(&state));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    // Small SSE writes must leave at once, as they would from a well-behaved upstream.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(FakeServer {
        base_url,
        state,
        task,
    })
}

fn json(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn models(State(fake): State<Arc<Fake>>) -> Response {
    json(fake.models.clone())
}

// Bodies are taken (and so read) by every handler: an unread body would cost the keep-alive
// connection, which no real upstream does to its clients.
async fn chat_new(State(fake): State<Arc<Fake>>, _body: Bytes) -> Response {
    let n = fake.counters.chats_new.fetch_add(1, Ordering::AcqRel);
    let delay = fake.scenario().chat_new_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    json(Bytes::from(format!(
        r#"{{"success":true,"request_id":"7e6d5c4b-3a29-4817-a6f5-{n:012x}","data":{{"id":"605fdeab-bcc7-4b00-ab4c-{n:012x}"}}}}"#
    )))
}

async fn delete_chat(State(fake): State<Arc<Fake>>) -> Response {
    fake.counters.deletes.fetch_add(1, Ordering::AcqRel);
    json(Bytes::from_static(
        br#"{"success":true,"data":{"status":true}}"#,
    ))
}

async fn completions(State(fake): State<Arc<Fake>>, uri: Uri, _body: Bytes) -> Response {
    if !uri.query().is_some_and(|q| q.contains("chat_id=")) {
        let body = r#"{"detail":["Field 'query -> chat_id': Field required"]}"#;
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    fake.counters.completions.fetch_add(1, Ordering::AcqRel);
    let scenario = fake.scenario();
    let open = OpenStream::new(&fake);
    let body = if scenario.event_delay.is_zero() && !scenario.hold {
        Body::from_stream(immediate(scenario, open))
    } else {
        Body::from_stream(paced(scenario, open, fake.release.subscribe()).boxed())
    };
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Every event as soon as the connection takes it.
fn immediate(
    s: Arc<Scenario>,
    open: OpenStream,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let n = s.events.len();
    stream::iter(0..n).map(move |i| {
        let _keep = &open;
        Ok(s.events[i].clone())
    })
}

/// Events with `event_delay` between them; in hold mode, after the first answer event, the
/// rest waits for the release.
fn paced(
    s: Arc<Scenario>,
    open: OpenStream,
    release: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    stream::unfold((0usize, open, release), move |(i, open, mut release)| {
        let s = Arc::clone(&s);
        async move {
            let event = s.events.get(i)?.clone();
            if s.hold && i == 2 {
                let _ = tokio::time::timeout(HOLD_LIMIT, release.wait_for(|go| *go)).await;
            } else if i > 0 && !s.event_delay.is_zero() {
                tokio::time::sleep(s.event_delay).await;
            }
            Some((Ok(event), (i + 1, open, release)))
        }
    })
}

/// Counts a completion stream as open until its body is dropped (finished or cut).
struct OpenStream(Arc<Fake>);

impl OpenStream {
    fn new(fake: &Arc<Fake>) -> Self {
        fake.counters.open_streams.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(fake))
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.counters.open_streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One model in the §4 shape, with the fields the proxy reads.
fn models_json() -> String {
    serde_json::json!({
        "data": [{
            "id": MODEL,
            "name": "Qwen3.7-Plus",
            "object": "model",
            "owned_by": "qwen",
            "info": {
                "id": MODEL,
                "name": "Qwen3.7-Plus",
                "is_active": true,
                "created_at": 1_700_000_000,
                "updated_at": 1_700_000_000,
                "meta": {
                    "capabilities": {"thinking": true, "search": true, "vision": true},
                    "abilities": {"thinking": 1, "vision": 1},
                    "max_context_length": 1_048_576,
                    "chat_type": ["t2t", "search"],
                    "think_skip": {"enable": true},
                },
            },
        }]
    })
    .to_string()
}
