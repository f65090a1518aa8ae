//! The HTTP surface: routes, bearer auth, load shedding, CORS, our JSON extractor and thin
//! handlers.

mod admin;
mod auth;
mod chat;
mod files;
mod health;
mod images;
mod json;
mod messages;
mod models;
mod multipart;
mod shed;
mod sse;
mod videos;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, Uri, header};
use axum::middleware;
use axum::routing::{delete, get, post, put};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use auth::Identity;
pub use json::parse as parse_json;

use crate::config::CorsOrigins;
use crate::server::AppState;
use crate::server::error::AppError;

/// The client API: `/v1` (keys required, load shed, CORS for browser clients), `/models`,
/// `/health` (liveness) and `/health/ready` (readiness).
pub fn public_routes(state: &AppState) -> Router<AppState> {
    let server = &state.config().server;
    let mut v1 = Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/messages", post(messages::create))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::one))
        .route("/v1/images/generations", post(images::generations))
        .route("/v1/images/edits", post(images::edits))
        .route("/v1/videos", post(videos::create))
        .route("/v1/videos/{id}", get(videos::get))
        .route("/v1/files", post(files::create).get(files::list))
        .route("/v1/files/upload", post(files::upload_compat))
        .route("/v1/files/{id}", get(files::get).delete(files::delete))
        .route("/v1/chat/multimodal", post(files::multimodal))
        .route("/v1/image/upload_and_chat", post(files::image_and_chat))
        .route("/v1/video/upload_and_chat", post(files::video_and_chat))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    if server.max_concurrent > 0 {
        let limit = shed::Limit(Arc::new(tokio::sync::Semaphore::new(server.max_concurrent)));
        v1 = v1.route_layer(middleware::from_fn_with_state(limit, shed::shed));
    }
    let open = Router::new()
        .route("/models", get(models::list))
        .route("/health", get(health::health))
        .route("/health/ready", get(health::ready));
    v1.merge(open)
}

/// The admin API (admin key required; `/verify` checks a key).
pub fn admin_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/addAccount", post(admin::add_account))
        .route(
            "/api/deleteAccount/{account_id}",
            delete(admin::delete_account),
        )
        .route("/api/accountsHealth", get(admin::accounts_health))
        .route("/api/reloadConfig", post(admin::reload_config))
        .route("/api/configStatus", get(admin::config_status))
        .route("/api/keys", post(admin::create_key).get(admin::list_keys))
        .route("/api/keys/{id}", delete(admin::delete_key))
        .route("/api/accounts/{account_id}/proxy", put(admin::set_proxy))
        .route("/api/usage", get(admin::usage))
        .route("/v2/files/getstsToken", post(files::sts_token))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
        .route("/verify", post(admin::verify))
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
        let admin = path.starts_with("/api/") || path == "/verify";
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
            ])
            .expose_headers([
                header::RETRY_AFTER,
                HeaderName::from_static("x-qwen2api-warning"),
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
