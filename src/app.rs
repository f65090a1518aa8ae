//! The app in one function (`router`), and `serve`, which takes a bound listener and a
//! shutdown future so that tests and `main` start it the same way.

use std::future::Future;

use axum::Router;
use axum::middleware;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    // Outermost first: every request, including rejected ones, is logged once.
    crate::api::routes(state).layer(middleware::from_fn(crate::telemetry::log_requests))
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Small SSE writes must leave at once, not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
