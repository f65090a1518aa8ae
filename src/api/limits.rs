//! Per-key limits on the HTTP side: the layer right after the key check that admits a request
//! of a limited key (requests per minute, tokens per day, requests in flight, held until the
//! response's last byte), and the model check each surface calls once it knows the model.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::auth::Identity;
use crate::keys::limits;
use crate::server::AppState;
use crate::server::body::hold;
use crate::server::error::AppError;

/// `/v1` requests that run no model, so count towards no limit: every `GET` and `DELETE`, and
/// these `POST`s. Any other `POST` (a route added later too) is counted.
const UNCOUNTED: &[&str] = &["/v1/messages/count_tokens", "/v1/files", "/v1/files/upload"];

fn counted(req: &Request) -> bool {
    req.method() == Method::POST && !UNCOUNTED.contains(&req.uri().path())
}

/// Admits the request under its key's limits, or answers 429 naming the limit.
pub async fn enforce(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let key_id = req
        .extensions()
        .get::<Identity>()
        .and_then(|i| i.caller.as_ref())
        .map(|c| c.key_id().to_owned());
    let limits = key_id
        .as_deref()
        .filter(|_| counted(&req))
        .and_then(|id| state.keys().limits(id));
    let (Some(key_id), Some(limits)) = (key_id, limits) else {
        return Ok(next.run(req).await);
    };
    let slot = state
        .limiter()
        .admit(&key_id, &limits)
        .await
        .inspect_err(|e| tracing::debug!(key_id, limit = %e, "key limit refused a request"))?;
    let resp = next.run(req).await;
    Ok(match slot {
        Some(slot) => resp.map(|body| hold(body, slot)),
        None => resp,
    })
}

/// Refuses (403 `model_not_allowed`) a model the caller's key may not use: neither the name
/// it sent (`None` when it named none) nor the model it resolves to matches the key's patterns.
pub fn check_model(
    state: &AppState,
    identity: &Identity,
    requested: Option<&str>,
    resolved: &str,
) -> Result<(), AppError> {
    let Some(caller) = &identity.caller else {
        return Ok(());
    };
    match state.keys().limits(caller.key_id()) {
        Some(l) => Ok(limits::check_model(
            &l,
            requested.unwrap_or_default(),
            resolved,
        )?),
        None => Ok(()),
    }
}
