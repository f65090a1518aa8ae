//! The HTTP surface: routes, bearer auth, our JSON extractor and thin handlers.

mod admin;
mod auth;
mod chat;
mod health;
mod json;
mod models;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::middleware;
use axum::routing::{delete, get, post, put};

use crate::error::AppError;
use crate::state::AppState;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Routes under `/v1` need a key; the few public ones are added after the auth layer.
pub fn routes(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::one))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    let admin = Router::new()
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
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let public = Router::new()
        .route("/models", get(models::list))
        .route("/health", get(health::health))
        .route("/verify", post(admin::verify));
    protected
        .merge(admin)
        .merge(public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found(uri: Uri) -> AppError {
    AppError::RouteNotFound(uri.path().to_owned())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
