//! Key middleware (`Authorization: Bearer` or `x-api-key`): `/v1` takes any known key (or, in passthrough mode, a Qwen token);
//! the admin API takes only the admin key. Keys are compared in constant time. A runtime key
//! past its `expiresAt` is refused (403 `key_expired`) on every `/v1` route.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::config::{AuthMode, Secret};
use crate::keys::Caller;
use crate::server::AppState;
use crate::server::error::AppError;

/// Who made the request, put into the request's extensions by the middleware.
#[derive(Clone, Debug)]
pub struct Identity {
    pub caller: Option<Caller>,
    /// The caller's own Qwen token (`AUTH_MODE=passthrough`).
    pub passthrough: Option<Secret>,
}

/// The key a request presents: `Authorization: Bearer <key>`, or Anthropic's `x-api-key`.
fn bearer(req: &Request) -> Option<&str> {
    let headers = req.headers();
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

pub async fn require_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let Some(presented) = bearer(&req) else {
        tracing::debug!("request without a bearer key");
        return Err(AppError::Unauthorized);
    };
    let identity = match state.keys().identify(presented) {
        Some(caller) => {
            if let Some(label) = state.keys().label(caller.key_id()) {
                crate::metrics::request::key(&label);
            }
            if let Some(limits) = state.keys().limits(caller.key_id()) {
                crate::keys::limits::check_expiry(&limits, crate::store::now_ms())
                    .inspect_err(|_| tracing::debug!("request with an expired key"))?;
            }
            Identity {
                caller: Some(caller),
                passthrough: None,
            }
        }
        None if state.config().auth_mode == AuthMode::Passthrough => Identity {
            caller: None,
            passthrough: Some(Secret::new(presented)),
        },
        None => {
            tracing::debug!("request with an unknown key");
            return Err(AppError::Unauthorized);
        }
    };
    req.extensions_mut().insert(identity);
    Ok(next.run(req).await)
}

pub async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let Some(presented) = bearer(&req) else {
        return Err(AppError::Unauthorized);
    };
    match state.keys().identify(presented) {
        Some(Caller::Admin { .. }) => Ok(next.run(req).await),
        Some(Caller::User { .. }) => {
            tracing::debug!("user key on an admin route");
            Err(AppError::Forbidden)
        }
        None => Err(AppError::Unauthorized),
    }
}
