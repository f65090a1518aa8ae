//! The server's assembly: the app in one function (`router`), and `serve`, which takes a bound
//! listener and a shutdown future so that tests and `main` start it the same way; the shared
//! state, `AppError` (how a request fails, rendered), the event loops that serve connections,
//! the response bodies that hold a guard or a span, and the `API_PREFIX` in front of it all.

pub mod body;
pub mod error;
pub mod event_loop;
mod prefix;
mod state;

pub use state::AppState;

use std::future::Future;
use std::sync::Arc;

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
    let prefix = state.config().server.api_prefix.clone();
    let tracking = state.tracking();
    outer(api::finish(routes, state), &prefix, tracking)
}

/// The admin listener's app.
pub fn admin_router(state: AppState) -> Router {
    let prefix = state.config().server.api_prefix.clone();
    let tracking = state.tracking();
    outer(
        api::finish(api::admin_routes(&state), state),
        &prefix,
        tracking,
    )
}

/// What runs before routing, outermost first:
/// 1. `log_requests`: the request id and span, `X-Request-Id` on every answer, one log line per
///    request, including requests refused before routing;
/// 2. `metrics::request::track`: times the request and counts it when its body is done, and
///    keeps client requests for the admin page (inside the span, so that requests refused by
///    the prefix are counted too);
/// 3. `prefix::strip` (with `API_PREFIX`): takes the prefix off the path, or answers 404;
/// 4. the routed app, whose outermost layer records the matched route in the span.
///
/// Layers added with `Router::layer` run after routing, so the first two wrap the app as the
/// fallback of a router that has no routes.
fn outer(app: Router, prefix: &str, tracking: crate::metrics::request::Tracking) -> Router {
    let mut app = app.layer(middleware::from_fn(crate::telemetry::record_route));
    if !prefix.is_empty() {
        let prefix = prefix::Prefix(Arc::from(prefix));
        app = Router::new()
            .fallback_service(app)
            .layer(middleware::from_fn_with_state(prefix, prefix::strip));
    }
    Router::new()
        .fallback_service(app)
        .layer(middleware::from_fn_with_state(
            tracking,
            crate::metrics::request::track,
        ))
        .layer(middleware::from_fn(crate::telemetry::log_requests))
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
