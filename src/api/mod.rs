//! The HTTP surface: routes, bearer auth, load shedding, CORS, our JSON extractor and thin
//! handlers; the route table and the OpenAPI document that describes it.

mod admin;
mod admin_page;
mod auth;
mod chat;
mod context;
mod docs;
mod files;
mod health;
mod images;
mod json;
mod limits;
mod messages;
mod metrics;
mod models;
mod multipart;
pub mod openapi;
mod responses;
mod routes;
mod shed;
mod sse;
mod videos;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, Uri, header};
use axum::middleware;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use auth::Identity;
pub use json::parse as parse_json;
pub use routes::Route;

use routes::Routes;

use crate::config::CorsOrigins;
use crate::server::AppState;
use crate::server::error::AppError;

/// The client API: `/v1` (keys required, load shed, CORS for browser clients), `/models`,
/// `/` (the service description), `/health` (liveness), `/ready` and `/health/ready`
/// (readiness), `/openapi.json` and `/docs` (the API's description).
pub fn public_routes(state: &AppState) -> Router<AppState> {
    public(state).into_router()
}

/// The admin API (admin key required; `/verify` checks a key), the admin page (`/admin`, no
/// key) and `/metrics` (the admin key unless `METRICS_PUBLIC`).
pub fn admin_routes(state: &AppState) -> Router<AppState> {
    admin(state).into_router()
}

/// Every route the main listener serves when the admin API shares it, in the order added.
pub fn route_table(state: &AppState) -> Vec<Route> {
    public(state).merge(admin(state)).listed().to_vec()
}

fn public(state: &AppState) -> Routes {
    let server = &state.config().server;
    let mut v1 = Routes::new()
        .post("/v1/chat/completions", chat::completions)
        .post("/v1/messages", messages::create)
        .post("/v1/messages/count_tokens", messages::count_tokens)
        .post("/v1/responses", responses::create)
        .get("/v1/responses/{id}", responses::retrieve)
        .delete("/v1/responses/{id}", responses::delete)
        .get("/v1/responses/{id}/input_items", responses::input_items)
        .get("/v1/models", models::list)
        .get("/v1/models/{id}", models::one)
        .post("/v1/images/generations", images::generations)
        .post("/v1/images/edits", images::edits)
        .post("/v1/videos", videos::create)
        .get("/v1/videos/{id}", videos::get)
        .post("/v1/files", files::create)
        .get("/v1/files", files::list)
        .post("/v1/files/upload", files::upload_compat)
        .get("/v1/files/{id}", files::get)
        .delete("/v1/files/{id}", files::delete)
        .post("/v1/chat/multimodal", files::multimodal)
        .post("/v1/image/upload_and_chat", files::image_and_chat)
        .post("/v1/video/upload_and_chat", files::video_and_chat)
        // Inside the key check, which puts the caller's `Identity` in place.
        .layered(|r| {
            r.route_layer(middleware::from_fn_with_state(
                state.clone(),
                limits::enforce,
            ))
        })
        .layered(|r| {
            r.route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_key,
            ))
        });
    if server.max_concurrent > 0 {
        let limit = shed::Limit(Arc::new(tokio::sync::Semaphore::new(server.max_concurrent)));
        v1 = v1.layered(|r| r.route_layer(middleware::from_fn_with_state(limit, shed::shed)));
    }
    let open = Routes::new()
        .get("/", health::about)
        .get("/models", models::list)
        .get("/health", health::health)
        .get("/health/ready", health::ready)
        .get("/ready", health::ready)
        .get("/openapi.json", openapi::serve)
        .get("/docs", docs::page);
    v1.merge(open)
}

fn admin(state: &AppState) -> Routes {
    Routes::new()
        .post("/api/addAccount", admin::add_account)
        .delete("/api/deleteAccount/{account_id}", admin::delete_account)
        .get("/api/accountsHealth", admin::accounts_health)
        .post("/api/reloadConfig", admin::reload_config)
        .get("/api/configStatus", admin::config_status)
        .post("/api/keys", admin::create_key)
        .get("/api/keys", admin::list_keys)
        .delete("/api/keys/{id}", admin::delete_key)
        .put("/api/keys/{id}/limits", admin::set_key_limits)
        .put("/api/accounts/{account_id}/proxy", admin::set_proxy)
        .get("/api/usage", admin::usage)
        .get("/api/requests", admin_page::requests)
        .get("/api/requests/live", admin_page::requests_live)
        .post("/api/accounts/{account_id}/retest", admin_page::retest)
        .post("/v2/files/getstsToken", files::sts_token)
        .layered(|r| {
            r.route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_admin,
            ))
        })
        .post("/verify", admin::verify)
        // The page's files hold no data: the page asks for the admin key itself.
        .get("/admin", admin_page::page)
        .get("/admin/admin.css", admin_page::style)
        .get("/admin/admin.js", admin_page::script)
        .merge(scrape(state))
}

fn scrape(state: &AppState) -> Routes {
    let routes = Routes::new().get("/metrics", metrics::scrape);
    if state.config().server.metrics_public {
        return routes;
    }
    routes.layered(|r| {
        r.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
    })
}

/// Error envelopes for unknown routes and methods, the body limit and CORS, around `routes`.
pub fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let limit = state.config().server.max_body_bytes;
    let cors = cors(&state.config().server.cors);
    let app = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Outside every layer that can fail a request, so each error of an Anthropic request
        // is written in Anthropic's envelope.
        .layer(middleware::from_fn(messages::errors))
        .with_state(state);
    // Outermost, so that a browser's preflight (which carries no key) is answered.
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// CORS for the client API only: the admin API never tells a browser it may call it.
fn cors(origins: &CorsOrigins) -> Option<CorsLayer> {
    let origins = origins.clone();
    if origins == CorsOrigins::Off {
        return None;
    }
    let allow = AllowOrigin::predicate(move |origin, parts| {
        let path = parts.uri.path();
        let admin = path.starts_with("/api/") || path == "/verify" || path.starts_with("/admin");
        !admin
            && match &origins {
                CorsOrigins::Any => true,
                CorsOrigins::List(list) => list.iter().any(|o| o == origin),
                CorsOrigins::Off => false,
            }
    });
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-reasoning-format"),
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("anthropic-version"),
                HeaderName::from_static("anthropic-beta"),
                crate::telemetry::X_REQUEST_ID,
            ])
            .expose_headers([
                header::RETRY_AFTER,
                HeaderName::from_static("x-qwen2api-warning"),
                crate::telemetry::X_REQUEST_ID,
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

async fn not_found(uri: Uri) -> AppError {
    AppError::RouteNotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
