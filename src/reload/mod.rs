//! Configuration reload: re-reads the `.env` file (the process environment still wins),
//! validates it, then applies account and key changes without touching in-flight requests.
//! A watcher on the file's folder does the same when the file changes (`watch`).

mod dotenv;
mod watch;

pub use watch::{Watch, watch};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::accounts::ReloadReport;
use crate::config::{Config, ConfigError};
use crate::server::AppState;

/// The variables a reload applies (and `CN_ACCOUNT_<n>_…`, see [`hot`]); any other change
/// needs a restart.
const HOT: &[&str] = &[
    "API_KEY",
    "API_MASTER_KEY",
    "ADMIN_KEY",
    "ACCOUNTS",
    "QWEN_COOKIES",
    "QWEN_AUTH_TOKEN",
    "TONGYI_ACCOUNTS",
];

/// Whether a reload applies a change of `var`.
fn hot(var: &str) -> bool {
    HOT.contains(&var) || var.starts_with("CN_ACCOUNT_")
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] ConfigError),
    #[error("cannot apply the new accounts: {0}")]
    Apply(String),
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadOutcome {
    pub accounts: ReloadReport,
    pub keys_changed: bool,
    /// Changed variables that only take effect after a restart.
    pub restart_required: Vec<String>,
    /// Present only when there was no `.env` file: says so, and what was re-read instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_file: Option<NoFile>,
}

/// A reload of a server configured from the environment alone.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoFile {
    /// The path looked at (`ENV_FILE`, default `.env`).
    pub env_file: String,
    pub message: String,
}

/// A configuration file's text and its variables.
type FileRead = (String, HashMap<String, String>);

/// Knows where configuration comes from: the process environment as it was before `.env` was
/// read (it wins), and the `.env` file.
pub struct Reloader {
    base: HashMap<String, String>,
    env_file: PathBuf,
    /// The file's values at start. An environment value equal to the file's (Docker's
    /// `env_file` puts the file into the environment) came from the file, so it follows the
    /// file on reload instead of pinning the old value.
    file_at_start: Mutex<Option<HashMap<String, String>>>,
    applied: Mutex<BTreeMap<String, String>>,
    /// The file's bytes at the last load, so that events that change nothing are ignored.
    last_raw: Mutex<Option<String>>,
}

impl Reloader {
    /// `base` is the environment (without the file's values); `env_file` may not exist.
    pub fn new(base: HashMap<String, String>) -> Self {
        let env_file = PathBuf::from(
            base.get("ENV_FILE")
                .cloned()
                .unwrap_or_else(|| ".env".to_owned()),
        );
        Self {
            base,
            env_file,
            file_at_start: Mutex::new(None),
            applied: Mutex::new(BTreeMap::new()),
            last_raw: Mutex::new(None),
        }
    }

    /// A variable's value as last loaded (environment first, then the file).
    pub fn var(&self, name: &str) -> Option<String> {
        self.applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub fn env_file(&self) -> &Path {
        &self.env_file
    }

    /// The file's text and values; `None` when there is no file and there was none at the
    /// last load either. A file that was there and is missing now is an error (an editor may
    /// have it half-replaced: nothing is dropped because of that).
    fn read_file(&self, at_start: bool) -> Result<Option<FileRead>, ReloadError> {
        let path = self.env_file.display().to_string();
        let raw = match std::fs::read_to_string(&self.env_file) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let had_file = self
                    .last_raw
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some();
                if at_start || !had_file {
                    return Ok(None);
                }
                return Err(ReloadError::File {
                    path,
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                return Err(ReloadError::File {
                    path: absolute(&self.env_file),
                    reason: dotenv::unreadable(&self.env_file, &e),
                });
            }
        };
        let vars = dotenv::parse(&raw).map_err(|reason| ReloadError::File { path, reason })?;
        Ok(Some((raw, vars)))
    }

    fn merged(&self, file: &HashMap<String, String>) -> BTreeMap<String, String> {
        let start = self
            .file_at_start
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut vars: BTreeMap<String, String> =
            file.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in &self.base {
            let from_file = start.as_ref().and_then(|s| s.get(k)) == Some(v);
            if !from_file {
                vars.insert(k.clone(), v.clone());
            }
        }
        vars
    }

    /// Reads and validates the configuration at start.
    pub fn load(&self) -> Result<Config, ReloadError> {
        let (raw, file) = self.read_file(true)?.unzip();
        let file = file.unwrap_or_default();
        *self
            .file_at_start
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(file.clone());
        self.apply(raw, &file).map(|(config, _)| config)
    }

    /// Validates `file` merged with the environment; on success remembers it and returns the
    /// names of the variables that changed since the last load.
    fn apply(
        &self,
        raw: Option<String>,
        file: &HashMap<String, String>,
    ) -> Result<(Config, Vec<String>), ReloadError> {
        let vars = self.merged(file);
        let lookup = |name: &str| vars.get(name).cloned();
        let config = Config::from_vars(&lookup)?;
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changed: Vec<String> = applied
            .keys()
            .chain(vars.keys())
            .filter(|k| applied.get(*k) != vars.get(*k))
            .cloned()
            .collect();
        changed.sort();
        changed.dedup();
        *applied = vars;
        *self.last_raw.lock().unwrap_or_else(PoisonError::into_inner) = raw;
        Ok((config, changed))
    }
}

/// Re-reads and applies the configuration. An invalid (or missing) file changes nothing.
pub async fn reload(state: &AppState) -> Result<ReloadOutcome, ReloadError> {
    let Some(reloader) = state.reloader() else {
        return Err(ReloadError::File {
            path: "(none)".into(),
            reason: "this server was started without a configuration file".into(),
        });
    };
    let (raw, file) = reloader.read_file(false)?.unzip();
    let no_file = raw.is_none().then(|| {
        let env_file = absolute(reloader.env_file());
        NoFile {
            message: format!(
                "there is no configuration file at {env_file} (ENV_FILE): only the process \
                 environment as the server started with was read again, so nothing can have \
                 changed; create the file or set ENV_FILE to reload from a file"
            ),
            env_file,
        }
    });
    let (config, changed) = reloader.apply(raw, &file.unwrap_or_default())?;
    let keys_changed = changed
        .iter()
        .any(|c| matches!(c.as_str(), "API_KEY" | "API_MASTER_KEY" | "ADMIN_KEY"));
    if keys_changed {
        state.keys().set_env(&config.keys);
    }
    let manager = state.accounts();
    let report = manager
        .apply_specs(&config.accounts)
        .await
        .map_err(|e| ReloadError::Apply(e.to_string()))?;
    for id in report.added.iter().chain(report.updated.iter()) {
        if let Some(a) = manager.pool().get(id)
            && a.kind == crate::store::CredentialKind::Password
            && a.credentials().token.expose().is_empty()
        {
            let _ = manager.sign_in(&a).await;
        }
    }
    let restart_required: Vec<String> = changed
        .into_iter()
        .filter(|c| !hot(c) && c != "ENV_FILE")
        .collect();
    tracing::info!(
        added = ?report.added, removed = ?report.removed, updated = ?report.updated,
        keys_changed, restart_required = ?restart_required, "configuration reloaded"
    );
    Ok(ReloadOutcome {
        accounts: report,
        keys_changed,
        restart_required,
        no_file,
    })
}

/// `path` made absolute (against the working directory), for messages.
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// Whether the file's bytes differ from those last applied (reading it is not a change).
pub(crate) fn file_changed(reloader: &Reloader) -> bool {
    let now = std::fs::read_to_string(reloader.env_file()).ok();
    *reloader
        .last_raw
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        != now
}
