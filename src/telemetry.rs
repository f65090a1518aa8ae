//! Logging: the subscriber set-up and the one middleware that logs each request (and its
//! error, once) inside a request span.

use std::io::IsTerminal;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The internal description of an error response, put in its extensions for the request log
/// line (so an error is logged once, here, and rendering has no side effects).
#[derive(Clone, Debug)]
pub struct LoggedError(pub String);

/// Installs the global subscriber; `filter` is `LOG_LEVEL` (a level or a filter directive).
pub fn init(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or `docker logs` gets plain text (NO_COLOR too).
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

/// The route template (`/api/accounts/{id}`), never the raw path: ids in paths are e-mail
/// addresses and chat ids, which do not belong in every log line (and have no bound).
const UNMATCHED: &str = "(no route)";

pub async fn log_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!("request", method = %req.method(), route = %route);
    let started = Instant::now();
    let open = crate::allocator::Open::start();
    async move {
        let resp = next.run(req).await.map(|body| open.hold(body));
        let status = resp.status().as_u16();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match resp.extensions().get::<LoggedError>() {
            Some(LoggedError(err)) if status >= 500 => {
                tracing::warn!(status, ms, error = %err, "request failed");
            }
            Some(LoggedError(err)) => tracing::info!(status, ms, error = %err, "request refused"),
            None => tracing::info!(status, ms, "request served"),
        }
        resp
    }
    .instrument(span)
    .await
}
