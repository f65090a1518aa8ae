//! Persistence behind one narrow trait named for what the app needs: accounts and their status,
//! downstream keys, usage counters, runtime settings, the shared round-robin position and the
//! upstream chats kept for continuing conversations.
//! Backends: in-memory (`none`), embedded SQLite (`file`, the default) and Redis (`redis`), each in
//! its own module owning its schema; `crypt` wraps any of them to encrypt credentials at rest.

pub mod crypt;
pub mod memory;
pub mod redis;
#[cfg(test)]
#[path = "../../tests/it/common/redis_server.rs"]
mod redis_server;
pub mod sqlite;
#[cfg(test)]
mod suite;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::config::Secret;

pub use crypt::Encrypted;
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use sqlite::SqliteStore;

/// `DATA_SAVE_MODE`: where state lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SaveMode {
    /// Memory only; everything is lost on exit.
    None,
    /// An embedded SQLite database at `DATA_DIR/qwen2api.db`.
    #[default]
    File,
    /// A Redis server (`REDIS_URL`), shared by every replica pointed at it.
    Redis,
}

impl SaveMode {
    pub const CHOICES: &[(&str, SaveMode)] = &[
        ("none", Self::None),
        ("file", Self::File),
        ("redis", Self::Redis),
    ];

    pub fn parse(value: &str) -> Option<Self> {
        crate::config::parse::lookup(Self::CHOICES, value)
    }
}

/// The SQLite file's name inside `DATA_DIR`.
pub const SQLITE_FILE: &str = "qwen2api.db";

/// Opens the store chosen by `DATA_SAVE_MODE`, wrapped in [`Encrypted`] when a
/// `DATA_ENCRYPTION_KEY` is given.
pub async fn open(
    mode: SaveMode,
    data_dir: &Path,
    redis_url: Option<&str>,
    prefix: &str,
    encryption_key: Option<&Secret>,
) -> StoreResult<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match mode {
        SaveMode::None => Arc::new(MemoryStore::new()),
        SaveMode::File => {
            let path = data_dir.join(SQLITE_FILE);
            // Opening creates directories, runs migrations and fsyncs: blocking work.
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await
                .map_err(|e| StoreError::Backend(format!("sqlite open task failed: {e}")))??;
            Arc::new(store)
        }
        SaveMode::Redis => {
            let Some(url) = redis_url else {
                return Err(StoreError::Backend(
                    "DATA_SAVE_MODE=redis needs REDIS_URL".to_owned(),
                ));
            };
            Arc::new(RedisStore::connect(url, prefix).await?)
        }
    };
    Ok(match encryption_key {
        Some(key) => Arc::new(Encrypted::new(store, key)),
        None => store,
    })
}

/// Today's date in UTC as `YYYY-MM-DD`, the day usage counters are filed under.
pub fn today() -> String {
    let date = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How an account signs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// Email and password: can sign in again.
    Password,
    /// A JWT (maybe with browser cookies): cannot sign in again.
    Token,
    /// A Tongyi browser cookie (`cookies`) and its XSRF token (`token`): cannot be refreshed
    /// by the server.
    Tongyi,
}

impl CredentialKind {
    /// The web chat accounts of this kind belong to.
    pub fn site(self) -> crate::upstream::Site {
        match self {
            CredentialKind::Password | CredentialKind::Token => crate::upstream::Site::Qwen,
            CredentialKind::Tongyi => crate::upstream::Site::Tongyi,
        }
    }
}

/// Where an account comes from: the environment (re-applied at every start and reload; the
/// environment wins for its credentials) or the admin API (lives in the store only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Env,
    Runtime,
}

/// One Qwen account as stored. `Debug` hides the proxy's password (secrets are `Secret`s).
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: String,
    pub kind: CredentialKind,
    pub email: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    pub cookies: Option<Secret>,
    /// The JWT's `exp`, unix seconds.
    pub token_expires_at: Option<i64>,
    /// Outbound proxy for this account only.
    pub proxy: Option<String>,
    pub origin: Origin,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl std::fmt::Debug for AccountRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRecord")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("email", &self.email)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("cookies", &self.cookies)
            .field("token_expires_at", &self.token_expires_at)
            .field(
                "proxy",
                &self.proxy.as_deref().map(crate::config::mask_url_password),
            )
            .field("origin", &self.origin)
            .field("created_at", &self.created_at)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    #[default]
    Active,
    Cooling,
    Disabled,
}

/// An account's health, shared between replicas (a cooldown set by one is honoured by all).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountStatus {
    pub state: HealthState,
    /// Unix milliseconds; for `Cooling`, when the account may be used again.
    pub until_ms: Option<i64>,
    pub reason: Option<String>,
    /// Consecutive failures (reset by a success).
    pub failure_count: u32,
    /// Unix milliseconds of the last lease.
    pub last_used_ms: Option<i64>,
}

/// A downstream API key created at runtime. Only its hash is stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub label: String,
    /// Lower-case sha256 hex of the key.
    pub hash: String,
    /// A masked form for listings, e.g. `sk-q2a-…9f3c`.
    pub hint: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Absent in records written before keys had limits: none.
    #[serde(default)]
    pub limits: KeyLimits,
}

/// What a runtime key may do; `None` (JSON `null` or absent) is no limit. The admin API reads
/// and writes this shape as it is (camelCase), and the stores keep it as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyLimits {
    /// Requests started in one calendar minute (UTC).
    pub requests_per_minute: Option<u32>,
    /// Requests in flight at once, per replica.
    pub concurrent_requests: Option<u32>,
    /// Prompt and completion tokens in one day (UTC).
    pub tokens_per_day: Option<u64>,
    /// Glob patterns (`*`, `?`, case-insensitive) of the models the key may use.
    pub models: Option<Vec<String>>,
    /// Unix milliseconds from which the key is refused.
    pub expires_at: Option<i64>,
}

impl KeyLimits {
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// Whose usage a counter is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Account(String),
    Key(String),
}

/// Counts to add for one subject on one day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageDelta {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub subject: Subject,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Stored totals for one subject on one day (same fields as the delta).
pub type UsageRow = UsageDelta;

/// Where a conversation goes on upstream: the chat an answer was given in, on which account,
/// and that answer's id (the parent of the next turn, docs/upstream.md §5.5).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadEntry {
    pub account_id: String,
    pub chat_id: String,
    pub response_id: String,
}

/// An upstream chat kept for continuation that no live entry needs any more: to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptChat {
    pub account_id: String,
    pub chat_id: String,
}

/// What filing a thread entry did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filed {
    /// The entry that was under the key before.
    pub replaced: Option<ThreadEntry>,
    /// The replaced entry's chat, when no entry names it any more: delete it now.
    pub orphaned: Option<KeptChat>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique id or label is taken.
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("storage backend failed: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the app needs from persistence. Every write that returns `Ok` is durable for the
/// backend (on disk for SQLite, acknowledged by the server for Redis).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `memory`, `sqlite` or `redis`, for logs.
    fn backend(&self) -> &'static str;

    /// Every account, sorted by `created_at`, then id.
    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>>;
    /// Inserts or replaces by id. The account's status is kept.
    async fn upsert_account(&self, account: &AccountRecord) -> StoreResult<()>;
    /// Inserts; `Conflict` when the id exists.
    async fn insert_account(&self, account: &AccountRecord) -> StoreResult<()>;
    /// Removes the account and its status; false when there was none.
    async fn delete_account(&self, id: &str) -> StoreResult<bool>;

    async fn account_statuses(&self) -> StoreResult<HashMap<String, AccountStatus>>;
    async fn set_account_status(&self, id: &str, status: &AccountStatus) -> StoreResult<()>;

    /// Every key, sorted by `created_at`, then id.
    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>>;
    /// `Conflict` when the id or the label exists.
    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()>;
    async fn delete_key(&self, id: &str) -> StoreResult<bool>;
    /// Replaces the limits of the key `id`; false when there is no such key.
    async fn set_key_limits(&self, id: &str, limits: &KeyLimits) -> StoreResult<bool>;

    /// Adds one to the counter `name` and returns its value with this hit; the first hit sets
    /// its expiry to `expires_at_ms` (unix milliseconds), after which it starts again from 0.
    /// Shared by every process using the store (the per-key rate limits count here).
    async fn count_hit(&self, name: &str, expires_at_ms: i64) -> StoreResult<u64>;

    /// Holds one of at most `limit` places of `name` for `holder` until `until_ms` (unix
    /// milliseconds); places whose time has passed are freed first. A holder already there has
    /// its time moved to `until_ms` (a renewal) whatever the count. False: every place is taken.
    /// Shared by every process using the store (per-key concurrent requests count here).
    async fn hold_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        until_ms: i64,
    ) -> StoreResult<bool>;

    /// Frees `holder`'s place of `name`, if it holds one.
    async fn free_slot(&self, name: &str, holder: &str) -> StoreResult<()>;

    /// Adds the deltas (several per call; they are batched by the caller).
    async fn add_usage(&self, batch: &[UsageDelta]) -> StoreResult<()>;
    /// Totals from `since_day` (inclusive, `YYYY-MM-DD`) on, sorted by day then subject.
    async fn usage(&self, since_day: &str) -> StoreResult<Vec<UsageRow>>;

    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>>;
    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()>;

    /// A cached value (e.g. an upload's pre-signed URL); `None` when missing or expired.
    async fn cache_get(&self, key: &str) -> StoreResult<Option<String>>;
    /// Caches `value` until `expires_at_ms` (unix milliseconds); later it is gone. A time
    /// already past removes whatever the key held.
    async fn cache_put(&self, key: &str, value: &str, expires_at_ms: i64) -> StoreResult<()>;

    /// The next round-robin position, shared by every process using this store; strictly
    /// increasing (the first is 1). It need not survive a crash, so backends may skip the fsync.
    async fn next_turn(&self) -> StoreResult<u64>;

    /// Files `entry` under the history key `key` until `expires_at_ms` (unix milliseconds);
    /// the chat it names is kept at least that long. Returns the entry it replaced, and that
    /// entry's chat when no entry names the chat any more.
    async fn put_thread(
        &self,
        key: &str,
        entry: &ThreadEntry,
        expires_at_ms: i64,
    ) -> StoreResult<Filed>;
    /// The entry under `key`; `None` when missing or expired.
    async fn get_thread(&self, key: &str) -> StoreResult<Option<ThreadEntry>>;
    /// Takes up to `limit` kept chats whose entries had all expired by `now_ms`: each is handed
    /// to one caller only, also across processes sharing the store, and then forgotten.
    async fn claim_expired_chats(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeptChat>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_mode_parses_the_documented_names() {
        assert_eq!(SaveMode::parse(" File "), Some(SaveMode::File));
        assert_eq!(SaveMode::parse("none"), Some(SaveMode::None));
        assert_eq!(SaveMode::parse("redis"), Some(SaveMode::Redis));
        assert_eq!(SaveMode::parse("sqlite"), None);
        assert_eq!(SaveMode::default(), SaveMode::File);
    }

    #[test]
    fn today_is_a_utc_date_and_now_is_in_milliseconds() {
        let day = today();
        let expected = time::OffsetDateTime::now_utc().date();
        assert_eq!(day.len(), 10, "{day}");
        assert!(day.starts_with(&format!("{}-", expected.year())), "{day}");
        assert_eq!(&day[4..5], "-");
        assert_eq!(&day[7..8], "-");
        let now = now_ms();
        // Between 2024 and 2100, in milliseconds.
        assert!(
            (1_704_067_200_000..4_102_444_800_000).contains(&now),
            "{now}"
        );
    }

    #[tokio::test]
    async fn open_picks_the_backend() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");

        let memory = open(SaveMode::None, &data_dir, None, "qwen2api:", None)
            .await
            .unwrap();
        assert_eq!(memory.backend(), "memory");
        assert!(!data_dir.exists(), "memory mode writes nothing");

        let file = open(SaveMode::File, &data_dir, None, "qwen2api:", None)
            .await
            .unwrap();
        assert_eq!(file.backend(), "sqlite");
        assert!(data_dir.join(SQLITE_FILE).is_file());

        let Err(StoreError::Backend(message)) =
            open(SaveMode::Redis, &data_dir, None, "qwen2api:", None).await
        else {
            panic!("redis without a URL must fail");
        };
        assert_eq!(message, "DATA_SAVE_MODE=redis needs REDIS_URL");
    }

    #[tokio::test]
    async fn open_with_a_key_seals_credentials_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let key = Secret::new("passphrase");
        let account = suite::account("alice@example.com", CredentialKind::Password, 1);
        let store = open(SaveMode::File, dir.path(), None, "", Some(&key))
            .await
            .unwrap();
        store.insert_account(&account).await.unwrap();
        assert_eq!(
            store.list_accounts().await.unwrap(),
            std::slice::from_ref(&account)
        );
        drop(store);

        let raw = SqliteStore::open(&dir.path().join(SQLITE_FILE)).unwrap();
        let stored = raw.list_accounts().await.unwrap().remove(0);
        assert!(stored.password.unwrap().expose().starts_with("enc:v1:"));
        assert!(stored.token.unwrap().expose().starts_with("enc:v1:"));

        let reopened = open(SaveMode::File, dir.path(), None, "", Some(&key))
            .await
            .unwrap();
        assert_eq!(reopened.list_accounts().await.unwrap(), [account]);
    }
}
