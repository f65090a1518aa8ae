//! Timing one HTTP request: the middleware that gives each request a [`Meter`] and records the
//! request when its answer's body is done (sent to its end, or dropped by a client that went
//! away), in the metrics and, for client requests, in the recent requests of the admin page;
//! and the marks set on it as the answer goes (the caller's key, the model, the account, the
//! upstream's start and end, the first visible event of a stream, tokens, failovers).
//!
//! The proxy does not see the request, so the meter travels in a task-local: the handler runs
//! inside its scope, and so does every poll of the answer's body, where a stream's events are
//! produced. Outside a request (a video job's own task, unit tests) the marks do nothing.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::Metrics;
use crate::telemetry::RequestId;
use crate::telemetry::recent::{Recent, RequestRecord};

tokio::task_local! {
    static METER: Arc<Meter>;
}

/// What is known of one request as it is answered.
#[derive(Debug)]
pub struct Meter {
    started: Instant,
    model: OnceLock<String>,
    upstream_from: OnceLock<Instant>,
    upstream_to: Mutex<Option<Instant>>,
    first_token: OnceLock<Instant>,
    key: OnceLock<String>,
    account: Mutex<Option<String>>,
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    failovers: AtomicU32,
}

impl Meter {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            model: OnceLock::new(),
            upstream_from: OnceLock::new(),
            upstream_to: Mutex::new(None),
            first_token: OnceLock::new(),
            key: OnceLock::new(),
            account: Mutex::new(None),
            tokens_in: AtomicU64::new(0),
            tokens_out: AtomicU64::new(0),
            failovers: AtomicU32::new(0),
        }
    }

    fn upstream(&self) -> Option<Duration> {
        let from = *self.upstream_from.get()?;
        let to = (*self
            .upstream_to
            .lock()
            .unwrap_or_else(PoisonError::into_inner))?;
        Some(to.saturating_duration_since(from))
    }
}

/// A finished request, as recorded.
#[derive(Debug)]
pub struct Finished<'a> {
    pub route: &'a str,
    pub model: Option<&'a str>,
    pub status: u16,
    pub total: Duration,
    /// Streams: the first visible event, from the request's arrival.
    pub first_token: Option<Duration>,
    /// Answered requests: from the first completion request sent to the last upstream event.
    pub upstream: Option<Duration>,
}

fn with(f: impl FnOnce(&Meter)) {
    let _ = METER.try_with(|m| f(m));
}

/// The model the request is answered with (the catalog's id).
pub fn model(id: &str) {
    with(|m| {
        let _ = m.model.set(id.to_owned());
    });
}

/// The label of the key the request was accepted with.
pub fn key(label: &str) {
    with(|m| {
        let _ = m.key.set(label.to_owned());
    });
}

/// An account was leased for an attempt (the last one counts).
pub fn account(id: &str) {
    with(|m| {
        *m.account.lock().unwrap_or_else(PoisonError::into_inner) = Some(id.to_owned());
    });
}

/// An answer was served by `account` with these tokens (added up over rounds).
pub fn served(account_id: &str, input: u64, output: u64) {
    account(account_id);
    with(|m| {
        m.tokens_in.fetch_add(input, Ordering::Relaxed);
        m.tokens_out.fetch_add(output, Ordering::Relaxed);
    });
}

/// An attempt started after a failed one.
pub fn failed_over() {
    with(|m| {
        m.failovers.fetch_add(1, Ordering::Relaxed);
    });
}

/// The first completion request is being sent: the upstream's time starts (once).
pub fn upstream_called() {
    with(|m| {
        let _ = m.upstream_from.set(Instant::now());
    });
}

/// An upstream answer has ended (the last of several rounds counts).
pub fn upstream_ended() {
    with(|m| {
        *m.upstream_to.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    });
}

/// A stream's event is on its way to the client (the first one counts).
pub fn visible_event() {
    with(|m| {
        if m.first_token.get().is_none() {
            let _ = m.first_token.set(Instant::now());
        }
    });
}

/// Where finished requests are recorded.
#[derive(Clone, Debug)]
pub struct Tracking {
    pub metrics: Arc<Metrics>,
    pub recent: Arc<Recent>,
}

/// Inside the request log's span: runs the request inside its meter's scope and records it
/// once its body is done.
pub async fn track(State(to): State<Tracking>, req: Request, next: Next) -> Response {
    let meter = Arc::new(Meter::new());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let resp = METER.scope(Arc::clone(&meter), next.run(req)).await;
    let done = Done {
        to,
        request_id,
        route: crate::telemetry::route_of(&resp).to_owned(),
        status: resp.status().as_u16(),
        meter: Arc::clone(&meter),
    };
    resp.map(|inner| Body::new(Metered { inner, done }))
}

/// The surfaces whose requests are kept for the admin page (not the admin API itself, the
/// scrapes, the service routes or unrouted requests).
const CLIENT_SURFACES: &[&str] = &[
    "chat.completions",
    "messages",
    "responses",
    "images",
    "videos",
    "files",
    "models",
];

/// Records the request when dropped, that is when its body is done with.
struct Done {
    to: Tracking,
    meter: Arc<Meter>,
    request_id: String,
    route: String,
    status: u16,
}

impl Drop for Done {
    fn drop(&mut self) {
        let m = &self.meter;
        let total = m.started.elapsed();
        let first_token = m
            .first_token
            .get()
            .map(|t| t.saturating_duration_since(m.started));
        self.to.metrics.request_done(&Finished {
            route: &self.route,
            model: m.model.get().map(String::as_str),
            status: self.status,
            total,
            first_token,
            upstream: m.upstream(),
        });
        let surface = super::surface(&self.route);
        if !CLIENT_SURFACES.contains(&surface) {
            return;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.to.recent.push(RequestRecord {
            time: now_rfc3339(),
            request_id: std::mem::take(&mut self.request_id),
            key: m.key.get().cloned(),
            surface,
            route: std::mem::take(&mut self.route),
            model: m.model.get().cloned(),
            account: m
                .account
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
            status: self.status,
            latency_ms: ms(total),
            ttft_ms: first_token.map(ms),
            tokens_in: m.tokens_in.load(Ordering::Relaxed),
            tokens_out: m.tokens_out.load(Ordering::Relaxed),
            failovers: m.failovers.load(Ordering::Relaxed),
        });
    }
}

/// Now, in RFC 3339 to the millisecond.
fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The answer's body, polled inside the meter's scope.
struct Metered {
    inner: Body,
    done: Done,
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let meter = Arc::clone(&this.done.meter);
        METER.sync_scope(meter, || Pin::new(&mut this.inner).poll_frame(cx))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
