//! The admin API, with the paths and shapes Qwen2API users already script against, plus key
//! management, per-account proxies and usage. Every route but `/verify` needs the admin key.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::AppJson;
use crate::accounts::{AddAccount, Health, ManagerError};
use crate::config::Secret;
use crate::server::AppState;
use crate::server::error::AppError;
use crate::store::{StoreError, Subject};

fn ok(data: Value) -> Json<Value> {
    let mut body = json!({ "success": true });
    body["data"] = data;
    Json(body)
}

impl From<ManagerError> for AppError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::Conflict(id) => {
                AppError::Conflict(format!("account {id} already exists"))
            }
            ManagerError::NotFound(id) => AppError::NotFound(format!("no account {id}")),
            ManagerError::Invalid(m) => AppError::BadRequest {
                message: m,
                code: "invalid_value",
            },
            ManagerError::SignIn(e) => AppError::SignIn(e),
            ManagerError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => AppError::Conflict(format!("{what} already exists")),
            StoreError::Backend(m) => {
                tracing::error!(error = %m, "store failed");
                AppError::Store(m)
            }
        }
    }
}

#[derive(Deserialize)]
pub struct AddBody {
    num: Option<Value>,
    cookie: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

/// `POST /api/addAccount`: `{"num","cookie"}` or `{"email","password"}`.
pub async fn add_account(
    State(state): State<AppState>,
    AppJson(body): AppJson<AddBody>,
) -> Result<Json<Value>, AppError> {
    let req = match body {
        AddBody {
            cookie: Some(cookie),
            num,
            ..
        } => AddAccount::Cookie {
            num: num.map(|n| match n {
                Value::String(s) => s,
                other => other.to_string(),
            }),
            cookie: Secret::new(cookie),
        },
        AddBody {
            email: Some(email),
            password: Some(password),
            ..
        } => AddAccount::Password {
            email: email.trim().to_owned(),
            password: Secret::new(password),
        },
        _ => {
            return Err(AppError::BadRequest {
                message: "send {\"num\",\"cookie\"} or {\"email\",\"password\"}".into(),
                code: "invalid_value",
            });
        }
    };
    let account = state.accounts().add(req).await?;
    Ok(ok(json!({ "accountId": account.id })))
}

/// `DELETE /api/deleteAccount/{accountId}`.
pub async fn delete_account(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    state.accounts().delete(&id).await?;
    Ok(ok(json!({ "accountId": id })))
}

/// `GET /api/accountsHealth`.
pub async fn accounts_health(State(state): State<AppState>) -> Json<Value> {
    let accounts = state.accounts().pool().accounts();
    let rows: Vec<Value> = accounts
        .iter()
        .map(|a| {
            let status = a.status();
            let health = a.health();
            json!({
                "accountId": a.id,
                "isHealthy": health == Health::Active,
                "failureCount": status.failure_count,
                "lastUsed": status.last_used_ms.map(iso_ms),
                "state": status.state,
                "reason": status.reason,
                "coolingUntil": status.until_ms.map(iso_ms),
                "tokenExpiresAt": a.token_expires_at().map(|s| iso_ms(s * 1000)),
                "kind": a.kind,
                "source": a.origin,
                "proxy": a.credentials().proxy.as_deref().map(crate::config::mask_url_password),
                "inflight": a.inflight(),
            })
        })
        .collect();
    let healthy = accounts.iter().filter(|a| a.is_usable()).count();
    ok(json!({
        "totalAccounts": accounts.len(),
        "healthyAccounts": healthy,
        "unhealthyAccounts": accounts.len() - healthy,
        "accounts": rows,
    }))
}

/// `POST /api/reloadConfig`.
pub async fn reload_config(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    match crate::reload::reload(&state).await {
        Ok(outcome) => Ok(ok(serde_json::to_value(outcome).unwrap_or_default())),
        Err(e) => Err(AppError::BadRequest {
            message: e.to_string(),
            code: "invalid_configuration",
        }),
    }
}

/// `GET /api/configStatus`.
pub async fn config_status(State(state): State<AppState>) -> Json<Value> {
    let c = state.config();
    let pool = state.accounts().pool();
    let keys = state.keys().list();
    ok(json!({
        "dataSaveMode": format!("{:?}", c.store.mode).to_ascii_lowercase(),
        "storeBackend": state.accounts().store().backend(),
        "authMode": format!("{:?}", c.auth_mode).to_ascii_lowercase(),
        "envFile": state.reloader().map(|r| r.env_file().display().to_string()),
        "accounts": { "total": pool.accounts().len(), "usable": pool.usable_count() },
        "keys": {
            "configured": keys.iter().filter(|k| k.source == "env").count(),
            "runtime": keys.iter().filter(|k| k.source == "runtime").count(),
        },
        "adminKeyFromApiKey": state.keys().admin_from_first_api_key(),
        "upstream": c.upstream.base_url.as_str(),
        "retryCount": c.pool.retry_count,
        "maxInflightPerAccount": c.pool.max_inflight,
        "stickyAccounts": c.pool.sticky,
    }))
}

#[derive(Deserialize)]
pub struct VerifyBody {
    #[serde(rename = "apiKey")]
    api_key: Option<String>,
}

/// `POST /verify`: whether a key is valid and whether it is the admin key (no bearer needed).
pub async fn verify(
    State(state): State<AppState>,
    AppJson(body): AppJson<VerifyBody>,
) -> Result<Json<Value>, AppError> {
    let caller = body
        .api_key
        .as_deref()
        .and_then(|k| state.keys().identify(k.trim()));
    match caller {
        Some(c) => Ok(Json(
            json!({ "status": 200, "message": "success", "isAdmin": c.is_admin() }),
        )),
        None => Err(AppError::Unauthorized),
    }
}

#[derive(Deserialize)]
pub struct NewKey {
    label: Option<String>,
}

/// `POST /api/keys`: the plaintext key is in this answer only.
pub async fn create_key(
    State(state): State<AppState>,
    AppJson(body): AppJson<NewKey>,
) -> Result<Json<Value>, AppError> {
    let label = body.label.unwrap_or_default().trim().to_owned();
    if label.is_empty() || label.chars().count() > 100 {
        return Err(AppError::BadRequest {
            message: "label must be 1 to 100 characters".into(),
            code: "invalid_value",
        });
    }
    let (rec, plain) = state.keys().create(&label).await.map_err(|e| match e {
        StoreError::Conflict(_) => {
            AppError::Conflict(format!("a key labelled {label:?} already exists"))
        }
        other @ StoreError::Backend(_) => other.into(),
    })?;
    Ok(Json(json!({
        "success": true,
        "id": rec.id,
        "key": plain.expose(),
        "label": rec.label,
        "created": rec.created_at,
    })))
}

/// `GET /api/keys`: masked.
pub async fn list_keys(State(state): State<AppState>) -> Json<Value> {
    ok(json!(state.keys().list()))
}

/// `DELETE /api/keys/{id}`.
pub async fn delete_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    if state.keys().is_configured(&id) {
        return Err(AppError::BadRequest {
            message: "this key is configured in API_KEY/ADMIN_KEY; remove it there".into(),
            code: "configured_key",
        });
    }
    if !state.keys().revoke(&id).await? {
        return Err(AppError::NotFound(format!("no key {id}")));
    }
    Ok(ok(json!({ "id": id })))
}

#[derive(Deserialize)]
pub struct ProxyBody {
    proxy: Option<String>,
}

/// `PUT /api/accounts/{accountId}/proxy`: `{"proxy": "socks5://…" | null}`.
pub async fn set_proxy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<ProxyBody>,
) -> Result<Json<Value>, AppError> {
    let proxy = body.proxy.filter(|p| !p.trim().is_empty());
    state.accounts().set_proxy(&id, proxy).await?;
    Ok(ok(json!({ "accountId": id })))
}

#[derive(Deserialize)]
pub struct UsageQuery {
    days: Option<u32>,
}

/// `GET /api/usage?days=7`: per account and per key, per day (UTC).
pub async fn usage(
    State(state): State<AppState>,
    Query(q): Query<UsageQuery>,
) -> Result<Json<Value>, AppError> {
    state.proxy().usage().flush().await;
    let days = q.days.unwrap_or(7).clamp(1, 366);
    let since = time::OffsetDateTime::now_utc() - time::Duration::days(i64::from(days - 1));
    let since = format!(
        "{:04}-{:02}-{:02}",
        since.year(),
        u8::from(since.month()),
        since.day()
    );
    let rows = state.accounts().store().usage(&since).await?;
    let row = |r: &crate::store::UsageRow, id: &str| {
        json!({
            "day": r.day, "id": id, "requests": r.requests,
            "promptTokens": r.prompt_tokens, "completionTokens": r.completion_tokens,
        })
    };
    let accounts: Vec<Value> = rows
        .iter()
        .filter_map(|r| match &r.subject {
            Subject::Account(id) => Some(row(r, id)),
            Subject::Key(_) => None,
        })
        .collect();
    let keys: Vec<Value> = rows
        .iter()
        .filter_map(|r| match &r.subject {
            Subject::Key(id) => Some(row(r, id)),
            Subject::Account(_) => None,
        })
        .collect();
    Ok(ok(
        json!({ "since": since, "accounts": accounts, "keys": keys }),
    ))
}

fn iso_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
