//! Timing one HTTP request: the middleware that gives each request a [`Meter`] and records the
//! request when its answer's body is done (sent to its end, or dropped by a client that went
//! away), and the marks the proxy sets on it as the answer goes (the model, the upstream's
//! start and end, the first visible event of a stream).
//!
//! The proxy does not see the request, so the meter travels in a task-local: the handler runs
//! inside its scope, and so does every poll of the answer's body, where a stream's events are
//! produced. Outside a request (a video job's own task, unit tests) the marks do nothing.

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::Metrics;

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
}

impl Meter {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            model: OnceLock::new(),
            upstream_from: OnceLock::new(),
            upstream_to: Mutex::new(None),
            first_token: OnceLock::new(),
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

/// Inside the request log's span: runs the request inside its meter's scope and records it
/// once its body is done.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let meter = Arc::new(Meter::new());
    let resp = METER.scope(Arc::clone(&meter), next.run(req)).await;
    let done = Done {
        metrics,
        route: crate::telemetry::route_of(&resp).to_owned(),
        status: resp.status().as_u16(),
        meter: Arc::clone(&meter),
    };
    resp.map(|inner| Body::new(Metered { inner, done }))
}

/// Records the request when dropped, that is when its body is done with.
struct Done {
    metrics: Arc<Metrics>,
    meter: Arc<Meter>,
    route: String,
    status: u16,
}

impl Drop for Done {
    fn drop(&mut self) {
        let m = &self.meter;
        self.metrics.request_done(&Finished {
            route: &self.route,
            model: m.model.get().map(String::as_str),
            status: self.status,
            total: m.started.elapsed(),
            first_token: m
                .first_token
                .get()
                .map(|t| t.saturating_duration_since(m.started)),
            upstream: m.upstream(),
        });
    }
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
