//! The effective configuration as the admin page shows it: each setting under the variable
//! that sets it, with every secret (keys, passwords, tokens, cookies, the encryption key) shown
//! only as set or not, and passwords taken out of URLs.

use std::time::Duration;

use serde_json::{Value, json};

use super::{AccountCredential, Config, CorsOrigins, Secret, mask_url_password};

/// What a secret that is set is shown as.
pub const HIDDEN: &str = "(set, hidden)";

fn secret(s: Option<&Secret>) -> Value {
    s.map_or(Value::Null, |_| json!(HIDDEN))
}

fn secs(d: Duration) -> Value {
    json!(d.as_secs_f64())
}

/// `[{"name", "value"}]`, in the order of `.env.example`'s sections.
#[expect(clippy::too_many_lines, reason = "one row per setting, in one list")]
pub fn shown(config: &Config) -> Vec<Value> {
    let c = config;
    let up = &c.upstream;
    let pool = &c.pool;
    let store = &c.store;
    let srv = &c.server;
    let media = &c.media;
    let accounts: Vec<Value> = c
        .accounts
        .iter()
        .map(|a| {
            let kind = match a.credential {
                AccountCredential::Password { .. } => "password",
                AccountCredential::Token { .. } => "token",
                AccountCredential::Tongyi { .. } => "tongyi",
            };
            json!({
                "id": a.id,
                "kind": kind,
                "proxy": a.proxy.as_ref().map(|url| mask_url_password(url.as_str())),
            })
        })
        .collect();
    let cors = match &srv.cors {
        CorsOrigins::Any => json!("*"),
        CorsOrigins::Off => Value::Null,
        CorsOrigins::List(l) => json!(
            l.iter()
                .map(|h| h.to_str().unwrap_or_default())
                .collect::<Vec<_>>()
        ),
    };
    let rows: Vec<(&str, Value)> = vec![
        ("API_KEY", json!(vec![HIDDEN; c.keys.api_keys.len()])),
        ("ADMIN_KEY", secret(c.keys.admin_key.as_ref())),
        ("ACCOUNTS", json!(accounts)),
        (
            "AUTH_MODE",
            json!(format!("{:?}", c.auth_mode).to_lowercase()),
        ),
        ("LISTEN_ADDRESS", json!(c.listen.to_string())),
        ("ENV_FILE", json!(c.env_file.display().to_string())),
        (
            "QWEN_BASE_URL",
            json!(mask_url_password(up.base_url.as_str())),
        ),
        (
            "UPSTREAM_PROXY",
            json!(up.proxy.as_ref().map(|url| mask_url_password(url.as_str()))),
        ),
        ("QWEN_WEB_VERSION", json!(up.web_version)),
        ("QWEN_USER_AGENT", json!(up.user_agent)),
        ("QWEN_SEND_AUTH_HEADER", json!(up.send_auth_header)),
        // Extra headers may carry credentials: their names only.
        (
            "QWEN_EXTRA_HEADERS",
            json!(
                up.extra_headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
            ),
        ),
        ("CHAT_CLEANUP", json!(up.chat_cleanup)),
        (
            "CONVERSATION_CONTINUATION",
            json!(up.conversation_continuation),
        ),
        ("CONVERSATION_TTL_SECONDS", secs(up.conversation_ttl)),
        ("CHAT_PREWARM", json!(up.chat_prewarm)),
        ("UPSTREAM_CONNECT_TIMEOUT_SECONDS", secs(up.connect_timeout)),
        (
            "UPSTREAM_FIRST_BYTE_TIMEOUT_SECONDS",
            secs(up.first_byte_timeout),
        ),
        ("UPSTREAM_IDLE_TIMEOUT_SECONDS", secs(up.idle_timeout)),
        (
            "REASONING_FORMAT",
            json!(format!("{:?}", c.output.reasoning_format).to_lowercase()),
        ),
        (
            "SEARCH_INFO_MODE",
            json!(format!("{:?}", c.output.search_info_mode).to_lowercase()),
        ),
        (
            "QWEN_STREAM_MODE",
            json!(format!("{:?}", c.output.stream_mode).to_lowercase()),
        ),
        ("SSE_KEEPALIVE_SECONDS", secs(c.output.keepalive)),
        ("SIMPLE_MODEL_MAP", json!(c.models.simple_map)),
        ("MODELS_CACHE_TTL", secs(c.models.cache_ttl)),
        (
            "ANTHROPIC_DEFAULT_MODEL",
            json!(c.models.anthropic_default_model),
        ),
        (
            "ANTHROPIC_SMALL_MODEL",
            json!(c.models.anthropic_small_model),
        ),
        ("RETRY_COUNT", json!(pool.retry_count)),
        (
            "RATE_LIMIT_COOLDOWN_SECONDS",
            secs(pool.rate_limit_cooldown),
        ),
        (
            "RATE_LIMIT_COOLDOWN_MAX_SECONDS",
            secs(pool.rate_limit_cooldown_max),
        ),
        ("TRANSIENT_COOLDOWN_SECONDS", secs(pool.transient_cooldown)),
        ("ACCOUNT_FAILURE_THRESHOLD", json!(pool.failure_threshold)),
        ("MAX_INFLIGHT_PER_ACCOUNT", json!(pool.max_inflight)),
        (
            "ACCOUNT_MIN_INTERVAL_MS",
            json!(u64::try_from(pool.min_interval.as_millis()).unwrap_or(u64::MAX)),
        ),
        ("ACCOUNT_WAIT_SECONDS", secs(pool.wait)),
        ("STICKY_ACCOUNTS", json!(pool.sticky)),
        ("MODEL_TO_ACCOUNT_MAP", json!(pool.model_accounts)),
        (
            "DATA_SAVE_MODE",
            json!(format!("{:?}", store.mode).to_lowercase()),
        ),
        ("DATA_DIR", json!(store.data_dir.display().to_string())),
        (
            "REDIS_URL",
            json!(
                store
                    .redis_url
                    .as_ref()
                    .map(|r| mask_url_password(r.expose()))
            ),
        ),
        ("REDIS_KEY_PREFIX", json!(store.redis_prefix)),
        ("DATA_ENCRYPTION_KEY", secret(store.encryption_key.as_ref())),
        ("USAGE_FLUSH_SECONDS", secs(store.usage_flush)),
        ("STATUS_SYNC_SECONDS", secs(store.status_sync)),
        ("MAX_CONCURRENT_REQUESTS", json!(srv.max_concurrent)),
        ("MAX_BODY_MB", json!(srv.max_body_bytes / (1024 * 1024))),
        ("MAX_MESSAGES", json!(srv.max_messages)),
        ("SHUTDOWN_GRACE_SECONDS", secs(srv.shutdown_grace)),
        ("CORS_ALLOW_ORIGINS", cors),
        (
            "ADMIN_LISTEN_ADDRESS",
            json!(srv.admin_listen.map(|a| a.to_string())),
        ),
        ("API_PREFIX", json!(srv.api_prefix)),
        ("METRICS_PUBLIC", json!(srv.metrics_public)),
        (
            "MAX_UPLOAD_MB",
            json!(media.max_upload_bytes / (1024 * 1024)),
        ),
        ("FETCH_REMOTE_MEDIA", json!(media.fetch_remote)),
        ("IMAGE_MODEL", json!(media.image_model)),
        ("VIDEO_MODEL", json!(media.video_model)),
        ("LOG_LEVEL", json!(c.logging.level)),
        (
            "LOG_FORMAT",
            json!(format!("{:?}", c.logging.format).to_lowercase()),
        ),
        (
            "LOG_DIR",
            json!(
                c.logging
                    .files
                    .as_ref()
                    .map(|f| f.dir.display().to_string())
            ),
        ),
    ];
    rows.into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}
