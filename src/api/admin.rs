//! The admin API, with the paths and shapes Qwen2API users already script against, plus key
//! management, per-account proxies and usage. Every route but `/verify` needs the admin key.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::json::AppJson;
use crate::accounts::{AddAccount, Health, ManagerError};
use crate::config::Secret;
use crate::server::AppState;
use crate::server::error::AppError;
use crate::store::{KeyLimits, StoreError, Subject};

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

#[derive(Deserialize, ToSchema)]
pub struct AddBody {
    /// `"tongyi"` for a Tongyi account (`cookie` and `xsrfToken`); else a chat.qwen.ai one.
    kind: Option<String>,
    num: Option<Value>,
    cookie: Option<String>,
    #[serde(alias = "xsrf_token", rename = "xsrfToken")]
    xsrf_token: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

/// Adds an account: `{"num","cookie"}` or `{"email","password"}`, or a Tongyi account
/// `{"kind":"tongyi","num","cookie","xsrfToken"}`.
#[utoipa::path(
    post,
    path = "/api/addAccount",
    tag = "Admin",
    request_body = AddBody,
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": {\"accountId\"}}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn add_account(
    State(state): State<AppState>,
    AppJson(body): AppJson<AddBody>,
) -> Result<Json<Value>, AppError> {
    let num_text = |n: Value| match n {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let req = match body {
        AddBody {
            kind: Some(kind), ..
        } if kind != "tongyi" && kind != "qwen" => {
            return Err(AppError::BadRequest {
                message: format!("kind must be \"qwen\" or \"tongyi\", not {kind:?}"),
                code: "invalid_value",
            });
        }
        AddBody {
            kind: Some(kind),
            cookie: Some(cookie),
            xsrf_token: Some(xsrf),
            num,
            ..
        } if kind == "tongyi" => AddAccount::Tongyi {
            num: num.map(num_text),
            cookie: Secret::new(cookie),
            xsrf: Secret::new(xsrf),
        },
        AddBody {
            kind: Some(kind), ..
        } if kind == "tongyi" => {
            return Err(AppError::BadRequest {
                message: "a Tongyi account needs \"cookie\" and \"xsrfToken\"".into(),
                code: "invalid_value",
            });
        }
        AddBody {
            cookie: Some(cookie),
            num,
            ..
        } => AddAccount::Cookie {
            num: num.map(num_text),
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

/// Deletes an account.
#[utoipa::path(
    delete,
    path = "/api/deleteAccount/{account_id}",
    tag = "Admin",
    params(("account_id" = String, Path, description = "The account id.")),
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": {\"accountId\"}}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn delete_account(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    state.accounts().delete(&id).await?;
    Ok(ok(json!({ "accountId": id })))
}

/// Every account's state, reason, cooldown, failures, in-flight count, proxy and token expiry.
#[utoipa::path(
    get,
    path = "/api/accountsHealth",
    tag = "Admin",
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": {\"totalAccounts\", \"healthyAccounts\", \"unhealthyAccounts\", \"accounts\": […]}}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
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
                "site": a.site(),
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

/// Re-reads the `.env` file and applies what changed.
#[utoipa::path(
    post,
    path = "/api/reloadConfig",
    tag = "Admin",
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": {what changed}}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn reload_config(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    match crate::reload::reload(&state).await {
        Ok(outcome) => Ok(ok(serde_json::to_value(outcome).unwrap_or_default())),
        Err(e) => Err(AppError::BadRequest {
            message: e.to_string(),
            code: "invalid_configuration",
        }),
    }
}

/// The effective configuration's main settings, and under `settings` every setting by its
/// variable, secrets shown only as set.
#[utoipa::path(
    get,
    path = "/api/configStatus",
    tag = "Admin",
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": …}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
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
        "settings": crate::config::shown::shown(c),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct VerifyBody {
    #[serde(rename = "apiKey")]
    api_key: Option<String>,
}

/// Whether a key is valid and whether it is the admin key (no key needed: it is in the body).
#[utoipa::path(
    post,
    path = "/verify",
    tag = "Admin",
    request_body = VerifyBody,
    responses(
        (status = 200, description = "`{\"status\": 200, \"message\": \"success\", \"isAdmin\"}`.", body = Object),
        (status = 401, description = "Unknown key.", body = crate::openai::ErrorEnvelope),
    ),
)]
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

#[derive(Deserialize, ToSchema)]
pub struct NewKey {
    label: Option<String>,
    /// `{"requestsPerMinute", "concurrentRequests", "tokensPerDay", "models", "expiresAt"}`,
    /// each optional (absent or `null`: no limit); see docs/admin-api.md.
    #[schema(value_type = Option<Object>)]
    limits: Option<Value>,
}

/// The fields of a key's limits, as the admin API spells them.
const LIMIT_FIELDS: &[&str] = &[
    "requestsPerMinute",
    "concurrentRequests",
    "tokensPerDay",
    "models",
    "expiresAt",
];

/// Reads and checks a key's limits: an unknown field or a value out of range is a 400 that
/// names the field (a typo must not leave a key without the limit meant for it).
fn read_limits(value: Option<Value>) -> Result<KeyLimits, AppError> {
    let bad = |message: String| AppError::BadRequest {
        message,
        code: "invalid_value",
    };
    let value = match value {
        None | Some(Value::Null) => return Ok(KeyLimits::default()),
        Some(v) => v,
    };
    let Some(fields) = value.as_object() else {
        return Err(bad("limits must be an object".into()));
    };
    if let Some(unknown) = fields.keys().find(|k| !LIMIT_FIELDS.contains(&k.as_str())) {
        return Err(bad(format!(
            "limits: unknown field {unknown:?}; the fields are {}",
            LIMIT_FIELDS.join(", ")
        )));
    }
    let limits: KeyLimits =
        serde_json::from_value(value).map_err(|e| bad(format!("limits: {e}")))?;
    let positive = [
        (
            "requestsPerMinute",
            limits.requests_per_minute.map(u64::from),
        ),
        (
            "concurrentRequests",
            limits.concurrent_requests.map(u64::from),
        ),
        ("tokensPerDay", limits.tokens_per_day),
    ];
    if let Some((name, _)) = positive.iter().find(|(_, v)| *v == Some(0)) {
        return Err(bad(format!(
            "limits: {name} must be at least 1 (null: no limit)"
        )));
    }
    if let Some(models) = &limits.models {
        let fits = |p: &String| !p.trim().is_empty() && p.chars().count() <= 200;
        if models.is_empty() || models.len() > 100 || !models.iter().all(fits) {
            return Err(bad(
                "limits: models must be 1 to 100 patterns of 1 to 200 characters (null: any model)"
                    .into(),
            ));
        }
    }
    Ok(limits)
}

/// Creates an API key; the key is in this answer only.
#[utoipa::path(
    post,
    path = "/api/keys",
    tag = "Admin",
    request_body = NewKey,
    responses(
        (status = 200, description = "`{\"success\": true, \"id\", \"key\", \"label\", \"created\"}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
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
    let limits = read_limits(body.limits)?;
    let (rec, plain) = state
        .keys()
        .create(&label, limits)
        .await
        .map_err(|e| match e {
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
        "limits": rec.limits,
    })))
}

/// Replaces a runtime key's limits with those in the body (a field absent or `null`: no limit).
#[utoipa::path(
    put,
    path = "/api/keys/{id}/limits",
    tag = "Admin",
    params(("id" = String, Path, description = "The key id.")),
    request_body(content = Object, description = "`{\"requestsPerMinute\", \"concurrentRequests\", \"tokensPerDay\", \"models\", \"expiresAt\"}`, each optional."),
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": {\"id\", \"limits\"}}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn set_key_limits(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Value>, AppError> {
    if state.keys().is_configured(&id) {
        return Err(AppError::BadRequest {
            message: "keys from API_KEY/ADMIN_KEY have no limits".into(),
            code: "configured_key",
        });
    }
    let limits = read_limits(Some(body))?;
    if !state.keys().set_limits(&id, &limits).await? {
        return Err(AppError::NotFound(format!("no key {id}")));
    }
    Ok(ok(json!({ "id": id, "limits": limits })))
}

/// The keys, masked.
#[utoipa::path(
    get,
    path = "/api/keys",
    tag = "Admin",
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": …}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn list_keys(State(state): State<AppState>) -> Json<Value> {
    ok(json!(state.keys().list()))
}

/// Revokes a key made with the admin API.
#[utoipa::path(
    delete,
    path = "/api/keys/{id}",
    tag = "Admin",
    params(("id" = String, Path, description = "The key id.")),
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": …}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
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

#[derive(Deserialize, ToSchema)]
pub struct ProxyBody {
    proxy: Option<String>,
}

/// Sets (`{"proxy": "socks5://…"}`) or clears (`null`) an account's proxy.
#[utoipa::path(
    put,
    path = "/api/accounts/{account_id}/proxy",
    tag = "Admin",
    request_body = ProxyBody,
    params(("account_id" = String, Path, description = "The account id.")),
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": …}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn set_proxy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<ProxyBody>,
) -> Result<Json<Value>, AppError> {
    let proxy = body.proxy.filter(|p| !p.trim().is_empty());
    state.accounts().set_proxy(&id, proxy).await?;
    Ok(ok(json!({ "accountId": id })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    days: Option<u32>,
}

/// Requests and tokens per day (UTC), per account and per key.
#[utoipa::path(
    get,
    path = "/api/usage",
    tag = "Admin",
    params(UsageQuery),
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": {\"since\", \"accounts\": […], \"keys\": […]}}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
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
