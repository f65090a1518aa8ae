//! `SqliteStore`: the default `DATA_SAVE_MODE=file` backend, one embedded SQLite file in WAL mode,
//! and the schema migrations it owns.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

use super::{
    AccountRecord, AccountStatus, CredentialKind, Filed, HealthState, KeptChat, KeyLimits,
    KeyRecord, Origin, Store, StoreError, StoreResult, Subject, ThreadEntry, UsageDelta, UsageRow,
};
use crate::config::Secret;

/// Schema steps, applied in order; `PRAGMA user_version` is how many have run. Append only:
/// a released step is never edited, since databases out there already ran it.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE accounts (
        id               TEXT PRIMARY KEY,
        kind             TEXT NOT NULL,
        email            TEXT,
        password         TEXT,
        token            TEXT,
        cookies          TEXT,
        token_expires_at INTEGER,
        proxy            TEXT,
        origin           TEXT NOT NULL,
        created_at       INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE account_status (
        id            TEXT PRIMARY KEY,
        state         TEXT NOT NULL,
        until_ms      INTEGER,
        reason        TEXT,
        failure_count INTEGER NOT NULL,
        last_used_ms  INTEGER
    ) STRICT;
    CREATE TABLE api_keys (
        id         TEXT PRIMARY KEY,
        label      TEXT NOT NULL UNIQUE,
        hash       TEXT NOT NULL,
        hint       TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE usage (
        day               TEXT NOT NULL,
        subject_kind      TEXT NOT NULL,
        subject_id        TEXT NOT NULL,
        requests          INTEGER NOT NULL,
        prompt_tokens     INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        PRIMARY KEY (day, subject_kind, subject_id)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE settings (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) STRICT;",
    // 2: the cache of uploads (and anything else that expires).
    "CREATE TABLE cache (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX cache_expiry ON cache (expires_ms);",
    // 3: conversations that continue an upstream chat, and the chats kept for them.
    "CREATE TABLE threads (
        key         TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL,
        chat_id     TEXT NOT NULL,
        response_id TEXT NOT NULL,
        expires_ms  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX threads_expiry ON threads (expires_ms);
    CREATE TABLE kept_chats (
        chat_id    TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        refs       INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX kept_chats_expiry ON kept_chats (expires_ms);",
    // 4: per-key limits (JSON, NULL for none) and the counters of rate limits.
    "ALTER TABLE api_keys ADD COLUMN limits TEXT;
    CREATE TABLE hits (
        name       TEXT PRIMARY KEY,
        value      INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX hits_expiry ON hits (expires_ms);",
    // 5: places held by requests in flight (per-key concurrent requests).
    "CREATE TABLE slots (
        name     TEXT NOT NULL,
        holder   TEXT NOT NULL,
        until_ms INTEGER NOT NULL,
        PRIMARY KEY (name, holder)
    ) STRICT;
    CREATE INDEX slots_until ON slots (until_ms);",
];

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One SQLite connection, used from blocking threads only.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) and migrates the database at `path`.
    /// Blocking: call it from a blocking thread.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        create_private(path)?;
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{} cannot use WAL mode (got {mode})",
                path.display()
            )));
        }
        // FULL: a commit is fsynced before it returns, so an acknowledged write survives a
        // crash or power loss (NORMAL in WAL mode may lose the last commits).
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `work` on a blocking thread with the connection locked.
    async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic inside `work` rolls back its transaction on drop, so the connection
            // is still good.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite task failed: {e}")))?
    }
}

/// Creates the database file readable by its owner only, since it holds credentials.
fn create_private(path: &Path) -> StoreResult<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Backend(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Brings the schema up to date in one transaction; a schema newer than this build is refused
/// rather than guessed at.
fn migrate(conn: &mut Connection) -> StoreResult<()> {
    // IMMEDIATE: two processes opening a fresh file at once must not both migrate it.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend)?;
    let known = MIGRATIONS.len();
    let done = usize::try_from(version)
        .ok()
        .filter(|done| *done <= known)
        .ok_or_else(|| {
            StoreError::Backend(format!(
                "database schema version {version} is newer than this qwen2api knows ({known})"
            ))
        })?;
    for step in &MIGRATIONS[done..] {
        tx.execute_batch(step).map_err(backend)?;
    }
    let known =
        i64::try_from(known).map_err(|_| StoreError::Backend("too many migrations".into()))?;
    tx.pragma_update(None, "user_version", known)
        .map_err(backend)?;
    tx.commit().map_err(backend)
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "used as `map_err(backend)`, which passes the error by value"
)]
fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

fn is_constraint(e: &rusqlite::Error, extended: std::ffi::c_int) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == ErrorCode::ConstraintViolation && f.extended_code == extended)
}

fn to_i64(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{value} is too large")))
}

fn to_u64(value: i64) -> rusqlite::Result<u64> {
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, value))
}

fn limits_json(limits: &KeyLimits) -> StoreResult<Option<String>> {
    if limits.is_none() {
        return Ok(None);
    }
    serde_json::to_string(limits)
        .map(Some)
        .map_err(|e| StoreError::Backend(format!("cannot encode key limits: {e}")))
}

fn limits_from(row: &Row<'_>, idx: usize) -> rusqlite::Result<KeyLimits> {
    let Some(json) = row.get::<_, Option<String>>(idx)? else {
        return Ok(KeyLimits::default());
    };
    serde_json::from_str(&json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn kind_name(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Password => "password",
        CredentialKind::Token => "token",
        CredentialKind::Tongyi => "tongyi",
    }
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Env => "env",
        Origin::Runtime => "runtime",
    }
}

fn state_name(state: HealthState) -> &'static str {
    match state {
        HealthState::Active => "active",
        HealthState::Cooling => "cooling",
        HealthState::Disabled => "disabled",
    }
}

fn subject_parts(subject: &Subject) -> (&'static str, &str) {
    match subject {
        Subject::Account(id) => ("account", id),
        Subject::Key(id) => ("key", id),
    }
}

/// A text column that must hold one of a few names.
fn parse_name<T>(row: &Row<'_>, idx: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    parse(&text).ok_or_else(|| unknown_value(idx, &text))
}

fn unknown_value(idx: usize, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        format!("unknown value {text:?}").into(),
    )
}

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<AccountRecord> {
    let secret = |idx: usize| {
        row.get::<_, Option<String>>(idx)
            .map(|v| v.map(Secret::new))
    };
    Ok(AccountRecord {
        id: row.get(0)?,
        kind: parse_name(row, 1, |s| match s {
            "password" => Some(CredentialKind::Password),
            "token" => Some(CredentialKind::Token),
            "tongyi" => Some(CredentialKind::Tongyi),
            _ => None,
        })?,
        email: row.get(2)?,
        password: secret(3)?,
        token: secret(4)?,
        cookies: secret(5)?,
        token_expires_at: row.get(6)?,
        proxy: row.get(7)?,
        origin: parse_name(row, 8, |s| match s {
            "env" => Some(Origin::Env),
            "runtime" => Some(Origin::Runtime),
            _ => None,
        })?,
        created_at: row.get(9)?,
    })
}

const UPSERT_ACCOUNT: &str = "INSERT INTO accounts
        (id, kind, email, password, token, cookies, token_expires_at, proxy, origin, created_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
    ON CONFLICT (id) DO UPDATE SET
        kind = excluded.kind, email = excluded.email, password = excluded.password,
        token = excluded.token, cookies = excluded.cookies,
        token_expires_at = excluded.token_expires_at, proxy = excluded.proxy,
        origin = excluded.origin, created_at = excluded.created_at";

const INSERT_ACCOUNT: &str = "INSERT INTO accounts
        (id, kind, email, password, token, cookies, token_expires_at, proxy, origin, created_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

fn write_account(conn: &Connection, sql: &str, a: &AccountRecord) -> rusqlite::Result<usize> {
    conn.execute(
        sql,
        params![
            a.id,
            kind_name(a.kind),
            a.email,
            a.password.as_ref().map(Secret::expose),
            a.token.as_ref().map(Secret::expose),
            a.cookies.as_ref().map(Secret::expose),
            a.token_expires_at,
            a.proxy,
            origin_name(a.origin),
            a.created_at,
        ],
    )
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        self.run(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, kind, email, password, token, cookies, token_expires_at, proxy,
                        origin, created_at
                    FROM accounts ORDER BY created_at, id",
                )
                .map_err(backend)?;
            let rows = stmt.query_map([], account_from_row).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn upsert_account(&self, account: &AccountRecord) -> StoreResult<()> {
        let account = account.clone();
        self.run(move |conn| {
            write_account(conn, UPSERT_ACCOUNT, &account).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn insert_account(&self, account: &AccountRecord) -> StoreResult<()> {
        let account = account.clone();
        self.run(
            move |conn| match write_account(conn, INSERT_ACCOUNT, &account) {
                Ok(_) => Ok(()),
                Err(e) if is_constraint(&e, rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                    Err(StoreError::Conflict(format!("account {}", account.id)))
                }
                Err(e) => Err(backend(e)),
            },
        )
        .await
    }

    async fn delete_account(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.run(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            tx.execute("DELETE FROM account_status WHERE id = ?1", [&id])
                .map_err(backend)?;
            let deleted = tx
                .execute("DELETE FROM accounts WHERE id = ?1", [&id])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn account_statuses(&self) -> StoreResult<HashMap<String, AccountStatus>> {
        self.run(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, state, until_ms, reason, failure_count, last_used_ms
                    FROM account_status",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |row| {
                    let status = AccountStatus {
                        state: parse_name(row, 1, |s| match s {
                            "active" => Some(HealthState::Active),
                            "cooling" => Some(HealthState::Cooling),
                            "disabled" => Some(HealthState::Disabled),
                            _ => None,
                        })?,
                        until_ms: row.get(2)?,
                        reason: row.get(3)?,
                        failure_count: row.get(4)?,
                        last_used_ms: row.get(5)?,
                    };
                    Ok((row.get(0)?, status))
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn set_account_status(&self, id: &str, status: &AccountStatus) -> StoreResult<()> {
        let id = id.to_owned();
        let status = status.clone();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO account_status
                    (id, state, until_ms, reason, failure_count, last_used_ms)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                ON CONFLICT (id) DO UPDATE SET
                    state = excluded.state, until_ms = excluded.until_ms,
                    reason = excluded.reason, failure_count = excluded.failure_count,
                    last_used_ms = excluded.last_used_ms",
                params![
                    id,
                    state_name(status.state),
                    status.until_ms,
                    status.reason,
                    status.failure_count,
                    status.last_used_ms,
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.run(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, label, hash, hint, created_at, limits FROM api_keys
                    ORDER BY created_at, id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(KeyRecord {
                        id: row.get(0)?,
                        label: row.get(1)?,
                        hash: row.get(2)?,
                        hint: row.get(3)?,
                        created_at: row.get(4)?,
                        limits: limits_from(row, 5)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let key = key.clone();
        self.run(move |conn| {
            let inserted = conn.execute(
                "INSERT INTO api_keys (id, label, hash, hint, created_at, limits)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.id,
                    key.label,
                    key.hash,
                    key.hint,
                    key.created_at,
                    limits_json(&key.limits)?
                ],
            );
            match inserted {
                Ok(_) => Ok(()),
                Err(e) if is_constraint(&e, rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                    Err(StoreError::Conflict(format!("key {}", key.id)))
                }
                Err(e) if is_constraint(&e, rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => {
                    Err(StoreError::Conflict(format!("key label {}", key.label)))
                }
                Err(e) => Err(backend(e)),
            }
        })
        .await
    }

    async fn delete_key(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.run(move |conn| {
            let deleted = conn
                .execute("DELETE FROM api_keys WHERE id = ?1", [&id])
                .map_err(backend)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn set_key_limits(&self, id: &str, limits: &KeyLimits) -> StoreResult<bool> {
        let (id, json) = (id.to_owned(), limits_json(limits)?);
        self.run(move |conn| {
            let updated = conn
                .execute(
                    "UPDATE api_keys SET limits = ?2 WHERE id = ?1",
                    params![id, json],
                )
                .map_err(backend)?;
            Ok(updated > 0)
        })
        .await
    }

    async fn hold_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        until_ms: i64,
    ) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let now = super::now_ms();
        self.run(move |conn| {
            // Like `count_hit`: a place lives seconds and is renewed; no fsync needed.
            conn.pragma_update(None, "synchronous", "OFF")
                .map_err(backend)?;
            let held = (|| -> rusqlite::Result<bool> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    "DELETE FROM slots WHERE name = ?1 AND until_ms <= ?2",
                    params![name, now],
                )?;
                let mine: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM slots WHERE name = ?1 AND holder = ?2)",
                    params![name, holder],
                    |row| row.get(0),
                )?;
                let taken: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM slots WHERE name = ?1",
                    [&name],
                    |row| row.get(0),
                )?;
                if !mine && taken >= i64::from(limit) {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO slots (name, holder, until_ms) VALUES (?1, ?2, ?3)
                    ON CONFLICT (name, holder) DO UPDATE SET until_ms = excluded.until_ms",
                    params![name, holder, until_ms],
                )?;
                tx.commit()?;
                Ok(true)
            })();
            let restored = conn.pragma_update(None, "synchronous", "FULL");
            let held = held.map_err(backend)?;
            restored.map_err(backend)?;
            Ok(held)
        })
        .await
    }

    async fn free_slot(&self, name: &str, holder: &str) -> StoreResult<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM slots WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )
            .map(drop)
            .map_err(backend)
        })
        .await
    }

    async fn count_hit(&self, name: &str, expires_at_ms: i64) -> StoreResult<u64> {
        let name = name.to_owned();
        let now = super::now_ms();
        self.run(move |conn| {
            // A counter lives a minute or a day and losing the last hits in a crash is harmless:
            // like `next_turn`, this commit skips the fsync (it is still shared between
            // processes on the file). The mutex keeps other work out while it is off.
            conn.pragma_update(None, "synchronous", "OFF")
                .map_err(backend)?;
            let counted = (|| -> rusqlite::Result<i64> {
                let tx = conn.transaction()?;
                tx.execute("DELETE FROM hits WHERE expires_ms <= ?1", [now])?;
                let value = tx.query_row(
                    "INSERT INTO hits (name, value, expires_ms) VALUES (?1, 1, ?2)
                    ON CONFLICT (name) DO UPDATE SET value = value + 1
                    RETURNING value",
                    params![name, expires_at_ms],
                    |row| row.get::<_, i64>(0),
                )?;
                tx.commit()?;
                Ok(value)
            })();
            let restored = conn.pragma_update(None, "synchronous", "FULL");
            let value = counted.map_err(backend)?;
            restored.map_err(backend)?;
            u64::try_from(value).map_err(|_| StoreError::Backend(format!("bad count {value}")))
        })
        .await
    }

    async fn add_usage(&self, batch: &[UsageDelta]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = batch.to_vec();
        self.run(move |conn| {
            // One transaction per batch: one fsync, and a batch is counted whole or not at all.
            let tx = conn.transaction().map_err(backend)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO usage (day, subject_kind, subject_id, requests,
                            prompt_tokens, completion_tokens)
                        VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                        ON CONFLICT (day, subject_kind, subject_id) DO UPDATE SET
                            requests = requests + excluded.requests,
                            prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                            completion_tokens = completion_tokens + excluded.completion_tokens",
                    )
                    .map_err(backend)?;
                for delta in &batch {
                    let (kind, id) = subject_parts(&delta.subject);
                    stmt.execute(params![
                        delta.day,
                        kind,
                        id,
                        to_i64(delta.requests)?,
                        to_i64(delta.prompt_tokens)?,
                        to_i64(delta.completion_tokens)?,
                    ])
                    .map_err(backend)?;
                }
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn usage(&self, since_day: &str) -> StoreResult<Vec<UsageRow>> {
        let since_day = since_day.to_owned();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT day, subject_kind, subject_id, requests, prompt_tokens,
                        completion_tokens
                    FROM usage WHERE day >= ?1",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([&since_day], |row| {
                    let kind: String = row.get(1)?;
                    let id: String = row.get(2)?;
                    let subject = match kind.as_str() {
                        "account" => Subject::Account(id),
                        "key" => Subject::Key(id),
                        _ => return Err(unknown_value(1, &kind)),
                    };
                    Ok(UsageRow {
                        day: row.get(0)?,
                        subject,
                        requests: to_u64(row.get(3)?)?,
                        prompt_tokens: to_u64(row.get(4)?)?,
                        completion_tokens: to_u64(row.get(5)?)?,
                    })
                })
                .map_err(backend)?;
            let mut rows: Vec<UsageRow> = rows.collect::<Result<_, _>>().map_err(backend)?;
            // Sorted here rather than in SQL so every backend orders subjects the same way.
            rows.sort_by(|a, b| (&a.day, &a.subject).cmp(&(&b.day, &b.subject)));
            Ok(rows)
        })
        .await
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT value FROM settings WHERE name = ?1",
                [&name],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2)
                ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [&name, &value],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn cache_get(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        let now = super::now_ms();
        self.run(move |conn| {
            conn.query_row(
                "SELECT value FROM cache WHERE key = ?1 AND expires_ms > ?2",
                rusqlite::params![key, now],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at_ms: i64) -> StoreResult<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        let now = super::now_ms();
        self.run(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            tx.execute("DELETE FROM cache WHERE expires_ms <= ?1", [now])
                .map_err(backend)?;
            tx.execute(
                "INSERT INTO cache (key, value, expires_ms) VALUES (?1, ?2, ?3)
                ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_ms = excluded.expires_ms",
                rusqlite::params![key, value, expires_at_ms],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn next_turn(&self) -> StoreResult<u64> {
        self.run(|conn| {
            // The position is taken once per request and losing the last few in a crash is
            // harmless, so this one commit skips the fsync. It is still a real commit, so other
            // processes on the same file share the counter. `synchronous` cannot change inside a
            // transaction; none is open here, and the mutex keeps other work out.
            conn.pragma_update(None, "synchronous", "OFF")
                .map_err(backend)?;
            let turn = conn.query_row(
                "INSERT INTO counters (name, value) VALUES ('turn', 1)
                ON CONFLICT (name) DO UPDATE SET value = value + 1
                RETURNING value",
                [],
                |row| row.get::<_, i64>(0),
            );
            let restored = conn.pragma_update(None, "synchronous", "FULL");
            let turn = turn.map_err(backend)?;
            restored.map_err(backend)?;
            u64::try_from(turn).map_err(|_| StoreError::Backend(format!("bad turn {turn}")))
        })
        .await
    }

    async fn put_thread(
        &self,
        key: &str,
        entry: &ThreadEntry,
        expires_at_ms: i64,
    ) -> StoreResult<Filed> {
        let (key, entry) = (key.to_owned(), entry.clone());
        self.run(move |conn| {
            // One commit per answer: it skips the fsync, as `next_turn` does. A process crash
            // loses nothing; a power loss may lose the last entries, whose conversations then
            // start new chats (and whose chats are left to the site).
            conn.pragma_update(None, "synchronous", "OFF")
                .map_err(backend)?;
            let filed = file_thread(conn, &key, &entry, expires_at_ms);
            let restored = conn.pragma_update(None, "synchronous", "FULL");
            let filed = filed?;
            restored.map_err(backend)?;
            Ok(filed)
        })
        .await
    }

    async fn get_thread(&self, key: &str) -> StoreResult<Option<ThreadEntry>> {
        let key = key.to_owned();
        let now = super::now_ms();
        self.run(move |conn| {
            conn.query_row(
                "SELECT account_id, chat_id, response_id FROM threads
                WHERE key = ?1 AND expires_ms > ?2",
                params![key, now],
                |row| {
                    Ok(ThreadEntry {
                        account_id: row.get(0)?,
                        chat_id: row.get(1)?,
                        response_id: row.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn claim_expired_chats(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeptChat>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            // IMMEDIATE: another process on the same file claims after this one, not the same
            // chats.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            // An expired entry's chat expires no sooner, so forgetting the entry loses nothing.
            tx.execute("DELETE FROM threads WHERE expires_ms <= ?1", [now_ms])
                .map_err(backend)?;
            let claimed = {
                let mut stmt = tx
                    .prepare(
                        "DELETE FROM kept_chats WHERE chat_id IN (
                            SELECT chat_id FROM kept_chats WHERE expires_ms <= ?1
                            ORDER BY expires_ms LIMIT ?2)
                        RETURNING account_id, chat_id",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![now_ms, limit], |row| {
                        Ok(KeptChat {
                            account_id: row.get(0)?,
                            chat_id: row.get(1)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(backend)?
            };
            tx.commit().map_err(backend)?;
            Ok(claimed)
        })
        .await
    }
}

/// Files a conversation entry in one transaction (see [`Store::put_thread`]).
fn file_thread(
    conn: &mut rusqlite::Connection,
    key: &str,
    entry: &ThreadEntry,
    expires_at_ms: i64,
) -> StoreResult<Filed> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    let replaced: Option<ThreadEntry> = tx
        .query_row(
            "SELECT account_id, chat_id, response_id FROM threads WHERE key = ?1",
            [&key],
            |row| {
                Ok(ThreadEntry {
                    account_id: row.get(0)?,
                    chat_id: row.get(1)?,
                    response_id: row.get(2)?,
                })
            },
        )
        .optional()
        .map_err(backend)?;
    tx.execute(
        "INSERT INTO threads (key, account_id, chat_id, response_id, expires_ms)
        VALUES (?1, ?2, ?3, ?4, ?5)
        ON CONFLICT (key) DO UPDATE SET account_id = excluded.account_id,
            chat_id = excluded.chat_id, response_id = excluded.response_id,
            expires_ms = excluded.expires_ms",
        params![
            key,
            entry.account_id,
            entry.chat_id,
            entry.response_id,
            expires_at_ms
        ],
    )
    .map_err(backend)?;
    tx.execute(
        "INSERT INTO kept_chats (chat_id, account_id, expires_ms, refs) VALUES (?1, ?2, ?3, 1)
        ON CONFLICT (chat_id) DO UPDATE SET refs = refs + 1,
            expires_ms = max(expires_ms, excluded.expires_ms)",
        params![entry.chat_id, entry.account_id, expires_at_ms],
    )
    .map_err(backend)?;
    let mut orphaned = None;
    if let Some(old) = &replaced {
        let refs: Option<i64> = tx
            .query_row(
                "UPDATE kept_chats SET refs = refs - 1 WHERE chat_id = ?1 RETURNING refs",
                [&old.chat_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(backend)?;
        if refs.is_some_and(|r| r <= 0) {
            tx.execute("DELETE FROM kept_chats WHERE chat_id = ?1", [&old.chat_id])
                .map_err(backend)?;
            orphaned = Some(KeptChat {
                account_id: old.account_id.clone(),
                chat_id: old.chat_id.clone(),
            });
        }
    }
    tx.commit().map_err(backend)?;
    Ok(Filed { replaced, orphaned })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite;

    fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested").join("data").join("qwen2api.db");
        (dir, path)
    }

    #[tokio::test]
    async fn sqlite_passes_the_suite() {
        let (_dir, path) = temp_db();
        let store = SqliteStore::open(&path).expect("open");
        suite::run(&store).await;
    }

    #[tokio::test]
    async fn sqlite_is_wal_full_sync_and_private() {
        let (_dir, path) = temp_db();
        let store = SqliteStore::open(&path).expect("open");
        let (mode, sync, version) = store
            .run(|conn| {
                let get = |name: &str| {
                    conn.pragma_query_value(None, name, |row| {
                        row.get::<_, rusqlite::types::Value>(0)
                    })
                    .map_err(backend)
                };
                Ok((
                    get("journal_mode")?,
                    get("synchronous")?,
                    get("user_version")?,
                ))
            })
            .await
            .expect("pragmas");
        assert_eq!(mode, rusqlite::types::Value::Text("wal".to_owned()));
        // 2 = FULL.
        assert_eq!(sync, rusqlite::types::Value::Integer(2));
        // Still FULL after `next_turn` switched it off for its own commit.
        store.next_turn().await.expect("turn");
        let sync_after: i64 = store
            .run(|conn| {
                conn.pragma_query_value(None, "synchronous", |row| row.get(0))
                    .map_err(backend)
            })
            .await
            .expect("synchronous");
        assert_eq!(sync_after, 2);
        assert_eq!(
            version,
            rusqlite::types::Value::Integer(i64::try_from(MIGRATIONS.len()).unwrap())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn sqlite_keeps_everything_across_reopen() {
        let (_dir, path) = temp_db();
        let store = SqliteStore::open(&path).expect("open");
        suite::fill(&store).await;
        let expected = suite::snapshot(&store).await;
        let turn = store.next_turn().await.expect("turn");
        drop(store);

        let reopened = SqliteStore::open(&path).expect("reopen");
        assert_eq!(suite::snapshot(&reopened).await, expected);
        assert_eq!(reopened.next_turn().await.expect("turn"), turn + 1);
        // Migrating an up-to-date file is a no-op, not a second `CREATE TABLE`.
        drop(reopened);
        let again = SqliteStore::open(&path).expect("third open");
        assert_eq!(suite::snapshot(&again).await, expected);
    }

    #[tokio::test]
    async fn sqlite_acknowledged_write_is_visible_to_another_connection() {
        let (_dir, path) = temp_db();
        let writer = SqliteStore::open(&path).expect("open");
        // A second connection on the same file while the first stays open, as a restarted
        // process after a SIGKILL would see it (the writer never closes or checkpoints).
        let reader = SqliteStore::open(&path).expect("second open");
        suite::fill(&writer).await;
        assert_eq!(
            suite::snapshot(&reader).await,
            suite::snapshot(&writer).await
        );

        let first = writer.next_turn().await.expect("turn");
        assert_eq!(reader.next_turn().await.expect("turn"), first + 1);
        drop(reader);
        drop(writer);
    }

    #[tokio::test]
    async fn sqlite_refuses_a_newer_schema() {
        let (_dir, path) = temp_db();
        drop(SqliteStore::open(&path).expect("open"));
        let conn = Connection::open(&path).expect("raw open");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        let Err(StoreError::Backend(message)) = SqliteStore::open(&path) else {
            panic!("a newer schema must be refused");
        };
        assert_eq!(
            message,
            format!(
                "database schema version 99 is newer than this qwen2api knows ({})",
                MIGRATIONS.len()
            )
        );
    }
}
