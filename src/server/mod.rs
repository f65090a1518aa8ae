//! The server's assembly: the app in one function (`router`), and `serve`, which takes a bound
//! listener and a shutdown future so that tests and `main` start it the same way; the shared
//! state, `AppError` (how a request fails, rendered), the event loops that serve connections,
//! and the response body that holds a guard.

pub mod body;
pub mod error;
pub mod event_loop;
mod state;

pub use state::AppState;

use std::future::Future;

use axum::Router;
use axum::middleware;
use axum::serve::{Listener, ListenerExt};
use tokio::net::{TcpListener, TcpStream};

use crate::api;

/// The main listener's app: the client API, plus the admin API unless `ADMIN_LISTEN_ADDRESS`
/// gives it a listener of its own.
pub fn router(state: AppState) -> Router {
    let mut routes = api::public_routes(&state);
    if state.config().server.admin_listen.is_none() {
        routes = routes.merge(api::admin_routes(&state));
    }
    with_logging(api::finish(routes, state))
}

/// The admin listener's app.
pub fn admin_router(state: AppState) -> Router {
    with_logging(api::finish(api::admin_routes(&state), state))
}

fn with_logging(app: Router) -> Router {
    // Outermost: every request, including rejected ones, is logged once.
    app.layer(middleware::from_fn(crate::telemetry::log_requests))
}

/// Serves `app` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve_app<L>(
    listener: L,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener<Io = TcpStream>,
    L::Addr: std::fmt::Debug,
{
    // Small SSE writes must leave at once, not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // `into_make_service` readies the router once; serving the `Router` itself would copy its
    // whole route table for every connection (about 1.5 KiB per route).
    axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the main app (see [`router`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_app(listener, router(state), shutdown).await
}
