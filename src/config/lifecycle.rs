//! Settings for accounts' lifecycle, pacing and persistence (`DATA_SAVE_MODE`, `REDIS_URL`, …).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::parse::{bool_or, choice_or, positive_seconds_or, seconds_or, uint_or};
use super::{ConfigError, Secret, Vars};
use crate::store::SaveMode;

#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub mode: SaveMode,
    pub data_dir: PathBuf,
    pub redis_url: Option<Secret>,
    pub redis_prefix: String,
    pub encryption_key: Option<Secret>,
    /// How often batched usage counters are written.
    pub usage_flush: Duration,
    /// How often account health is re-read from a shared store (Redis).
    pub status_sync: Duration,
}

#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// Sign password accounts in again when less than this remains of their token.
    pub refresh_before: Duration,
    pub refresh_check: Duration,
    /// Pause between two sign-ins, so that they never come in a burst.
    pub refresh_pause: Duration,
    /// How often disabled accounts are tried again.
    pub retest: Duration,
}

/// How downstream callers are authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// `API_KEY` / `ADMIN_KEY` / runtime keys.
    Keys,
    /// The bearer token is itself a Qwen JWT, used as the account for that request.
    Passthrough,
}

pub fn auth_mode(src: &dyn Vars) -> Result<AuthMode, ConfigError> {
    choice_or(
        src,
        "AUTH_MODE",
        &[
            ("keys", AuthMode::Keys),
            ("passthrough", AuthMode::Passthrough),
        ],
        AuthMode::Keys,
    )
}

pub fn store(src: &dyn Vars) -> Result<StoreConfig, ConfigError> {
    let mode = choice_or(src, "DATA_SAVE_MODE", SaveMode::CHOICES, SaveMode::File)?;
    let redis_url = src.get("REDIS_URL").map(Secret::new);
    if mode == SaveMode::Redis && redis_url.is_none() {
        return Err(ConfigError::secret(
            "REDIS_URL",
            "a redis:// URL when DATA_SAVE_MODE=redis",
        ));
    }
    if let Some(url) = &redis_url {
        let u = url.expose();
        if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://")) {
            return Err(ConfigError::secret(
                "REDIS_URL",
                "a URL starting with redis://, rediss:// or unix://",
            ));
        }
    }
    Ok(StoreConfig {
        mode,
        data_dir: PathBuf::from(src.get("DATA_DIR").unwrap_or_else(|| "./data".to_owned())),
        redis_url,
        redis_prefix: src
            .get("REDIS_KEY_PREFIX")
            .unwrap_or_else(|| "qwen2api:".to_owned()),
        encryption_key: src.get("DATA_ENCRYPTION_KEY").map(Secret::new),
        usage_flush: positive_seconds_or(src, "USAGE_FLUSH_SECONDS", 5.0)?,
        status_sync: positive_seconds_or(src, "STATUS_SYNC_SECONDS", 1.0)?,
    })
}

pub fn lifecycle(src: &dyn Vars) -> Result<LifecycleConfig, ConfigError> {
    let hours = match src.get("TOKEN_REFRESH_BEFORE_HOURS") {
        None => 24.0,
        Some(raw) => raw
            .parse::<f64>()
            .ok()
            .filter(|h| (0.0..1e6).contains(h))
            .ok_or_else(|| {
                ConfigError::invalid(
                    "TOKEN_REFRESH_BEFORE_HOURS",
                    "a number of hours such as 24 or 0.5",
                    &raw,
                )
            })?,
    };
    Ok(LifecycleConfig {
        refresh_before: Duration::from_secs_f64(hours * 3600.0),
        refresh_check: positive_seconds_or(src, "TOKEN_REFRESH_CHECK_SECONDS", 3600.0)?,
        refresh_pause: seconds_or(src, "TOKEN_REFRESH_PAUSE_SECONDS", 5.0)?,
        retest: positive_seconds_or(src, "ACCOUNT_RETEST_SECONDS", 600.0)?,
    })
}

/// Pacing and routing settings that belong to the account pool.
pub struct Pacing {
    pub max_inflight: usize,
    pub min_interval: Duration,
    pub wait: Duration,
    pub failure_threshold: u32,
    pub rate_limit_cooldown_max: Duration,
    pub sticky: bool,
    pub model_accounts: BTreeMap<String, Vec<String>>,
}

pub fn pacing(src: &dyn Vars) -> Result<Pacing, ConfigError> {
    let ms = uint_or(src, "ACCOUNT_MIN_INTERVAL_MS", 0u64, 0)?;
    Ok(Pacing {
        max_inflight: uint_or(src, "MAX_INFLIGHT_PER_ACCOUNT", 2usize, 0)?,
        min_interval: Duration::from_millis(ms),
        wait: seconds_or(src, "ACCOUNT_WAIT_SECONDS", 30.0)?,
        failure_threshold: uint_or(src, "ACCOUNT_FAILURE_THRESHOLD", 1u32, 1)?,
        rate_limit_cooldown_max: seconds_or(src, "RATE_LIMIT_COOLDOWN_MAX_SECONDS", 3600.0)?,
        sticky: bool_or(src, "STICKY_ACCOUNTS", false)?,
        model_accounts: model_accounts(src)?,
    })
}

fn model_accounts(src: &dyn Vars) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    // Qwen-2api names its accounts by number (`{"qwen-max":[1,2]}`): the Tongyi account
    // `CN_ACCOUNT_<n>_…` (config/tongyi.rs).
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Named {
        Id(String),
        Number(usize),
    }
    const FORM: &str =
        r#"a JSON object of model ids to lists of account ids, e.g. {"qwen3.8-max":["a@b.c"]}"#;
    let Some(raw) = src.get("MODEL_TO_ACCOUNT_MAP") else {
        return Ok(BTreeMap::new());
    };
    let map: BTreeMap<String, Vec<Named>> = serde_json::from_str(&raw)
        .map_err(|_| ConfigError::invalid("MODEL_TO_ACCOUNT_MAP", FORM, &raw))?;
    Ok(map
        .into_iter()
        .map(|(model, ids)| {
            let ids = ids
                .into_iter()
                .map(|n| match n {
                    Named::Id(id) => id,
                    Named::Number(n) => super::tongyi::account_id(n),
                })
                .collect();
            (model, ids)
        })
        .collect())
}

/// The `.env` file that is loaded at start and watched for changes.
pub fn env_file(src: &dyn Vars) -> PathBuf {
    PathBuf::from(src.get("ENV_FILE").unwrap_or_else(|| ".env".to_owned()))
}
