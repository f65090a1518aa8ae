//! Bearer-key middleware for `/v1`: keys compared in constant time, failures logged at debug.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::AppError;
use crate::state::AppState;

pub async fn require_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented else {
        tracing::debug!("request without a bearer key");
        return Err(AppError::Unauthorized);
    };
    let keys = &state.config().keys;
    // Every key is compared, so the time taken does not tell which one nearly matched.
    let mut ok = false;
    for k in keys.api_keys.iter().chain(keys.admin_key.iter()) {
        ok |= k.matches(presented);
    }
    if !ok {
        tracing::debug!("request with an unknown key");
        return Err(AppError::Unauthorized);
    }
    Ok(next.run(req).await)
}
