//! The probes and the service description, all without a key: `GET /health` (liveness: the
//! process answers), `GET /ready` and `GET /health/ready` (readiness: the store answers and at
//! least one account can serve, 503 with the reason otherwise), and `GET /` (what this server
//! is and where its surfaces are).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::accounts::{Health, Pool};
use crate::config::AuthMode;
use crate::server::AppState;

/// How long the store may take to answer the readiness probe.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The setting read by the probe: any cheap read shows that the store answers.
const STORE_PROBE_SETTING: &str = "ready_probe";

/// Liveness.
///
/// 200 while the process serves requests; `ready` and `reason` say whether an account could
/// serve now.
#[utoipa::path(
    get,
    path = "/health",
    tag = "Service",
    responses(
        (status = 200, description = "`{\"status\": \"ok\", \"ready\", \"reason\"?, \"accounts\": {\"total\", \"usable\"}}`.", body = Object,
            example = json!({"status": "ok", "ready": true, "accounts": {"total": 2, "usable": 2}})),
    ),
)]
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

/// Readiness.
///
/// 200 when the store answers and a request could be served now, else 503 with the reason.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "Service",
    responses(
        (status = 200, description = "Ready.", body = Object,
            example = json!({"status": "ready", "accounts": {"total": 2, "usable": 1}})),
        (status = 503, description = "Not ready; `reason` says why.", body = Object,
            example = json!({"status": "not_ready", "reason": "no Qwen account is configured", "accounts": {"total": 0, "usable": 0}})),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let pool = state.proxy().pool();
    let accounts = json!({ "total": pool.accounts().len(), "usable": pool.usable_count() });
    let reason = match store_answers(&state).await {
        Ok(()) => why_not_ready(&state, pool),
        Err(reason) => Some(reason),
    };
    match reason {
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

/// One cheap read from the store, within [`STORE_PROBE_TIMEOUT`]. The store's error is logged,
/// not answered: the probe needs no key.
async fn store_answers(state: &AppState) -> Result<(), String> {
    let store = state.store();
    let backend = store.backend();
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, store.get_setting(STORE_PROBE_SETTING)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(backend, error = %e, "readiness: the store failed");
            Err(format!(
                "the store ({backend}) failed to answer; see the server log"
            ))
        }
        Err(_) => {
            tracing::warn!(backend, "readiness: the store did not answer in time");
            Err(format!(
                "the store ({backend}) did not answer within {} s",
                STORE_PROBE_TIMEOUT.as_secs()
            ))
        }
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

/// `GET /`: what this server is and where its surfaces are (paths include `API_PREFIX`).
#[derive(Debug, Serialize, ToSchema)]
pub struct About {
    name: &'static str,
    version: &'static str,
    description: &'static str,
    /// The base URLs to give each kind of client (relative to this server).
    base_urls: BaseUrls,
    surfaces: Surfaces,
    /// `Authorization: Bearer <key>` or `x-api-key: <key>` on every `/v1` path.
    auth: &'static str,
    health: Probes,
    /// The admin API's prefix, when it is served on this listener.
    admin: Option<String>,
    /// The admin page, when it is served on this listener.
    admin_page: Option<String>,
    /// `GET /metrics`, when it is served on this listener (else on the admin listener).
    metrics: Option<String>,
    /// The API reference: the OpenAPI document and its page, served here without a key.
    reference: Reference,
    docs: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
struct Reference {
    openapi: String,
    page: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct BaseUrls {
    openai: String,
    anthropic: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct Surfaces {
    chat_completions: String,
    messages: String,
    responses: String,
    models: String,
    images: String,
    videos: String,
    files: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct Probes {
    live: String,
    ready: String,
}

/// Where the documentation is: the repository's when the package names one, else the files
/// that ship with the source.
const DOCS: &str = match option_env!("CARGO_PKG_REPOSITORY") {
    Some(url) if !url.is_empty() => url,
    _ => "README.md and docs/ in the qwen2api source",
};

/// What this server is and where its surfaces are (paths include `API_PREFIX`).
#[utoipa::path(
    get,
    path = "/",
    tag = "Service",
    responses((status = 200, description = "The description.", body = About)),
)]
pub async fn about(State(state): State<AppState>) -> Json<About> {
    let server = &state.config().server;
    let p = server.api_prefix.as_str();
    Json(About {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        description: env!("CARGO_PKG_DESCRIPTION"),
        base_urls: BaseUrls {
            openai: format!("{p}/v1"),
            anthropic: if p.is_empty() {
                "/".to_owned()
            } else {
                p.to_owned()
            },
        },
        surfaces: Surfaces {
            chat_completions: format!("{p}/v1/chat/completions"),
            messages: format!("{p}/v1/messages"),
            responses: format!("{p}/v1/responses"),
            models: format!("{p}/v1/models"),
            images: format!("{p}/v1/images/generations"),
            videos: format!("{p}/v1/videos"),
            files: format!("{p}/v1/files"),
        },
        auth: "Authorization: Bearer <key> or x-api-key: <key>",
        health: Probes {
            live: format!("{p}/health"),
            ready: format!("{p}/ready"),
        },
        admin: server.admin_listen.is_none().then(|| format!("{p}/api")),
        admin_page: server.admin_listen.is_none().then(|| format!("{p}/admin")),
        metrics: server
            .admin_listen
            .is_none()
            .then(|| format!("{p}/metrics")),
        reference: Reference {
            openapi: format!("{p}/openapi.json"),
            page: format!("{p}/docs"),
        },
        docs: DOCS,
    })
}
