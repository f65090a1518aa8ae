//! `GET /health` (liveness: the process answers) and `GET /health/ready` (readiness: at least
//! one account can serve, 503 with the reason otherwise), both without a key.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::accounts::{Health, Pool};
use crate::config::AuthMode;
use crate::server::AppState;

/// Liveness: always 200 while the server runs; `ready` and `reason` say whether it can serve.
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let pool = state.proxy().pool();
    let accounts = json!({ "total": pool.accounts().len(), "usable": pool.usable_count() });
    Json(match why_not_ready(&state, pool) {
        None => json!({ "status": "ok", "ready": true, "accounts": accounts }),
        Some(reason) => {
            json!({ "status": "ok", "ready": false, "reason": reason, "accounts": accounts })
        }
    })
}

/// Readiness: 200 when a request could be served now, else 503 with the reason.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let pool = state.proxy().pool();
    let accounts = json!({ "total": pool.accounts().len(), "usable": pool.usable_count() });
    match why_not_ready(&state, pool) {
        None => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "accounts": accounts })),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": reason, "accounts": accounts })),
        ),
    }
}

/// Why no request could be served now; `None` when one could.
fn why_not_ready(state: &AppState, pool: &Pool) -> Option<String> {
    if state.config().auth_mode == AuthMode::Passthrough {
        // Callers bring their own tokens.
        return None;
    }
    let accounts = pool.accounts();
    if accounts.is_empty() {
        return Some(
            "no Qwen account is configured: set ACCOUNTS, QWEN_COOKIES or QWEN_AUTH_TOKEN, or add \
             one with POST /api/addAccount"
                .to_owned(),
        );
    }
    if pool.usable_count() > 0 {
        return None;
    }
    // Counted by state and reason, so that the answer stays short with many accounts.
    let mut why: BTreeMap<String, usize> = BTreeMap::new();
    for a in &accounts {
        let key = match a.health() {
            Health::Active => continue,
            Health::Cooling { reason, .. } => format!("cooling down ({reason})"),
            Health::Disabled { reason } => format!("disabled ({reason})"),
        };
        *why.entry(key).or_default() += 1;
    }
    let parts: Vec<String> = why.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let soon = pool
        .soonest_back()
        .map(|d| format!("; the first is back in {} s", d.as_secs().max(1)))
        .unwrap_or_default();
    Some(format!(
        "none of the {} Qwen accounts is usable: {}{soon} (details: GET /api/accountsHealth)",
        accounts.len(),
        parts.join(", ")
    ))
}
