//! `RedisStore`: the `DATA_SAVE_MODE=redis` backend, shared by every replica pointed at one
//! server; owns the key layout under the prefix. Nothing is cached locally, so a write by one
//! process is seen by the others at once.
//!
//! Layout under `prefix` (default `qwen2api:`):
//! - `accounts`: hash, id → JSON record (credentials as strings; see `Encrypted` for sealing)
//! - `status`: hash, id → JSON `AccountStatus`
//! - `keys`: hash, id → JSON `KeyRecord`; `key_labels`: hash, label → id (the uniqueness index)
//! - `settings`: hash, name → value
//! - `cache:<key>`: string with a TTL (uploaded files by content hash and account)
//! - `turn`: integer, `INCR`ed for the round-robin position
//! - `thread:<history key>`: string with a TTL, JSON `ThreadEntry` (a conversation to continue)
//! - `kept_chat_accounts`: hash, chat id → account id; `kept_chat_refs`: hash, chat id → how
//!   many entries name it; `kept_chat_expiry`: sorted set, chat id scored by when its last
//!   entry expires (unix ms): the chats kept for continuation, for the sweep
//! - `usage:<day>`: hash, `<subject>|requests`, `<subject>|prompt`, `<subject>|completion` →
//!   counts, where `<subject>` is `account:<id>` or `key:<id>`; `usage_days`: set of those days
//! - `hits:<name>`: integer with an expiry, the counters of per-key rate limits

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Cmd, FromRedisValue, Pipeline, RedisError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    AccountRecord, AccountStatus, CredentialKind, Filed, KeptChat, KeyLimits, KeyRecord, Origin,
    Store, StoreError, StoreResult, Subject, ThreadEntry, UsageDelta, UsageRow,
};
use crate::config::Secret;

/// Adds a key only if neither its id nor its label is taken, in one step, so two replicas
/// creating the same label cannot both succeed. Returns 0 (added), 1 (id taken) or 2 (label
/// taken). KEYS: keys, key_labels. ARGV: id, label, JSON.
const INSERT_KEY: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then return 2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 0
";

/// Removes a key and its label in one step; the label goes only while it still names this
/// key. Returns 1 if the key existed. KEYS: keys, key_labels. ARGV: id.
const DELETE_KEY: &str = r"
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local label = cjson.decode(json)['label']
if redis.call('HGET', KEYS[2], label) == ARGV[1] then redis.call('HDEL', KEYS[2], label) end
return 1
";

/// Replaces a key's JSON only while it is still `expected`. Returns 1 (replaced), 0 (no such
/// key) or 2 (changed meanwhile: read again). KEYS: keys. ARGV: id, expected JSON, new JSON.
const REPLACE_KEY: &str = r"
local json = redis.call('HGET', KEYS[1], ARGV[1])
if not json then return 0 end
if json ~= ARGV[2] then return 2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

/// Counts a hit; the first one sets the expiry. KEYS: hits:<name>. ARGV: expiry, unix ms.
const COUNT_HIT: &str = r"
local value = redis.call('INCR', KEYS[1])
if value == 1 then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return value
";

/// Holds a place of a slot set (a sorted set: holder → held until, unix ms). KEYS: slots:<name>.
/// ARGV: now, holder, limit, until. Returns 1 when held, 0 when every place is taken.
const HOLD_SLOT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
";

/// Files a thread entry and keeps its chat, in one step. Returns the replaced entry's JSON (or
/// `false`) and 1 when its chat is named by no entry any more (it is then forgotten).
/// KEYS: thread:<key>, kept_chat_accounts, kept_chat_refs, kept_chat_expiry.
/// ARGV: entry JSON, ttl ms, chat id, account id, expires at ms.
const PUT_THREAD: &str = r"
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
local kept_until = redis.call('ZSCORE', KEYS[4], ARGV[3])
if (not kept_until) or tonumber(kept_until) < tonumber(ARGV[5]) then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
end
local orphaned = 0
if old then
  local chat = cjson.decode(old)['chat_id']
  if redis.call('HEXISTS', KEYS[3], chat) == 1 then
    if redis.call('HINCRBY', KEYS[3], chat, -1) <= 0 then
      redis.call('HDEL', KEYS[2], chat)
      redis.call('HDEL', KEYS[3], chat)
      redis.call('ZREM', KEYS[4], chat)
      orphaned = 1
    end
  end
end
return {old, orphaned}
";

/// Takes kept chats whose last entry expired, in one step, so that two replicas never claim
/// the same chat. Returns a flat list: chat id, account id, … KEYS: kept_chat_accounts,
/// kept_chat_refs, kept_chat_expiry. ARGV: now ms, limit.
const CLAIM_CHATS: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, chat in ipairs(due) do
  local account = redis.call('HGET', KEYS[1], chat) or ''
  redis.call('HDEL', KEYS[1], chat)
  redis.call('HDEL', KEYS[2], chat)
  redis.call('ZREM', KEYS[3], chat)
  table.insert(out, chat)
  table.insert(out, account)
end
return out
";

/// How long one command may take before it fails (the client's default, 500 ms, is short for
/// a busy server across a network).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts after the first, with exponential backoff from 100 ms (about 6 s in all).
const CONNECT_RETRIES: usize = 6;

/// A multiplexed, self-reconnecting connection and the key prefix.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
}

/// `AccountRecord` as stored: the same fields with credentials as plain strings.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    id: String,
    kind: CredentialKind,
    email: Option<String>,
    password: Option<String>,
    token: Option<String>,
    cookies: Option<String>,
    token_expires_at: Option<i64>,
    proxy: Option<String>,
    origin: Origin,
    created_at: i64,
}

impl From<&AccountRecord> for StoredAccount {
    fn from(a: &AccountRecord) -> Self {
        let plain = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_owned());
        Self {
            id: a.id.clone(),
            kind: a.kind,
            email: a.email.clone(),
            password: plain(&a.password),
            token: plain(&a.token),
            cookies: plain(&a.cookies),
            token_expires_at: a.token_expires_at,
            proxy: a.proxy.clone(),
            origin: a.origin,
            created_at: a.created_at,
        }
    }
}

impl From<StoredAccount> for AccountRecord {
    fn from(a: StoredAccount) -> Self {
        Self {
            id: a.id,
            kind: a.kind,
            email: a.email,
            password: a.password.map(Secret::new),
            token: a.token.map(Secret::new),
            cookies: a.cookies.map(Secret::new),
            token_expires_at: a.token_expires_at,
            proxy: a.proxy,
            origin: a.origin,
            created_at: a.created_at,
        }
    }
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "used as `map_err(backend)`, which passes the error by value"
)]
fn backend(e: RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

/// Never echoes the JSON: an account's holds its credentials.
fn decode<T: for<'de> Deserialize<'de>>(what: &str, id: &str, json: &str) -> StoreResult<T> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::Backend(format!(
            "redis: unreadable {what} {id} at line {} column {}",
            e.line(),
            e.column()
        ))
    })
}

fn encode<T: Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("redis: {e}")))
}

fn subject_field(subject: &Subject) -> String {
    match subject {
        Subject::Account(id) => format!("account:{id}"),
        Subject::Key(id) => format!("key:{id}"),
    }
}

/// `account:<id>|requests` → the subject and the counter's column. The id may itself hold
/// `|` or `:`, so split on the last `|` and the first `:`.
fn parse_usage_field(field: &str) -> Option<(Subject, usize)> {
    let (subject, counter) = field.rsplit_once('|')?;
    let column = match counter {
        "requests" => 0,
        "prompt" => 1,
        "completion" => 2,
        _ => return None,
    };
    let subject = match subject.split_once(':')? {
        ("account", id) => Subject::Account(id.to_owned()),
        ("key", id) => Subject::Key(id.to_owned()),
        _ => return None,
    };
    Some((subject, column))
}

fn to_i64(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{value} is too large")))
}

impl RedisStore {
    /// Connects and checks the server answers. A server still starting (as beside us in
    /// docker-compose) gets a few retries over several seconds.
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        Self::connect_with_retries(url, prefix, CONNECT_RETRIES).await
    }

    async fn connect_with_retries(url: &str, prefix: &str, retries: usize) -> StoreResult<Self> {
        // The URL may hold a password: errors name the host and port, never the URL.
        let client = Client::open(url).map_err(|e| {
            StoreError::Backend(format!(
                "REDIS_URL is not a usable Redis URL: {:?}",
                e.kind()
            ))
        })?;
        let addr = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(retries)
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to Redis at {addr}: {e}")))?;
        let store = Self {
            conn,
            prefix: prefix.to_owned(),
        };
        let pong: String = store.query(&::redis::cmd("PING")).await?;
        if pong != "PONG" {
            return Err(StoreError::Backend(format!(
                "Redis at {addr} answered PING with {pong:?}"
            )));
        }
        Ok(store)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn usage_key(&self, day: &str) -> String {
        format!("{}usage:{day}", self.prefix)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> StoreResult<T> {
        // Cloning the manager is cheap and shares its one multiplexed connection.
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(backend)
    }

    async fn query_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await.map_err(backend)
    }

    fn hset(&self, hash: &str, field: &str, value: &str) -> Cmd {
        let mut cmd = ::redis::cmd("HSET");
        cmd.arg(self.key(hash)).arg(field).arg(value);
        cmd
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        let all: HashMap<String, String> = self
            .query(::redis::cmd("HGETALL").arg(self.key("accounts")))
            .await?;
        let mut accounts = all
            .iter()
            .map(|(id, json)| decode::<StoredAccount>("account", id, json).map(Into::into))
            .collect::<StoreResult<Vec<AccountRecord>>>()?;
        accounts.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(accounts)
    }

    async fn upsert_account(&self, account: &AccountRecord) -> StoreResult<()> {
        let json = encode(&StoredAccount::from(account))?;
        self.query::<()>(&self.hset("accounts", &account.id, &json))
            .await
    }

    async fn insert_account(&self, account: &AccountRecord) -> StoreResult<()> {
        let json = encode(&StoredAccount::from(account))?;
        let added: bool = self
            .query(
                ::redis::cmd("HSETNX")
                    .arg(self.key("accounts"))
                    .arg(&account.id)
                    .arg(json),
            )
            .await?;
        if added {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("account {}", account.id)))
        }
    }

    async fn delete_account(&self, id: &str) -> StoreResult<bool> {
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HDEL")
            .arg(self.key("accounts"))
            .arg(id)
            .cmd("HDEL")
            .arg(self.key("status"))
            .arg(id)
            .ignore();
        let (deleted,): (u64,) = self.query_pipe(&pipe).await?;
        Ok(deleted > 0)
    }

    async fn account_statuses(&self) -> StoreResult<HashMap<String, AccountStatus>> {
        let all: HashMap<String, String> = self
            .query(::redis::cmd("HGETALL").arg(self.key("status")))
            .await?;
        all.into_iter()
            .map(|(id, json)| {
                let status = decode("status of account", &id, &json)?;
                Ok((id, status))
            })
            .collect()
    }

    async fn set_account_status(&self, id: &str, status: &AccountStatus) -> StoreResult<()> {
        let json = encode(status)?;
        self.query::<()>(&self.hset("status", id, &json)).await
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        let all: HashMap<String, String> = self
            .query(::redis::cmd("HGETALL").arg(self.key("keys")))
            .await?;
        let mut keys = all
            .iter()
            .map(|(id, json)| decode::<KeyRecord>("key", id, json))
            .collect::<StoreResult<Vec<_>>>()?;
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys)
    }

    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let json = encode(key)?;
        let outcome: u8 = self
            .query(
                ::redis::cmd("EVAL")
                    .arg(INSERT_KEY)
                    .arg(2)
                    .arg(self.key("keys"))
                    .arg(self.key("key_labels"))
                    .arg(&key.id)
                    .arg(&key.label)
                    .arg(json),
            )
            .await?;
        match outcome {
            0 => Ok(()),
            1 => Err(StoreError::Conflict(format!("key {}", key.id))),
            _ => Err(StoreError::Conflict(format!("key label {}", key.label))),
        }
    }

    async fn delete_key(&self, id: &str) -> StoreResult<bool> {
        let deleted: u8 = self
            .query(
                ::redis::cmd("EVAL")
                    .arg(DELETE_KEY)
                    .arg(2)
                    .arg(self.key("keys"))
                    .arg(self.key("key_labels"))
                    .arg(id),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn set_key_limits(&self, id: &str, limits: &KeyLimits) -> StoreResult<bool> {
        // Read, change, and write back only if nobody wrote in between (a Lua script cannot
        // re-encode the record: cjson would round its millisecond timestamps).
        for _ in 0..5 {
            let Some(json) = self
                .query::<Option<String>>(::redis::cmd("HGET").arg(self.key("keys")).arg(id))
                .await?
            else {
                return Ok(false);
            };
            let mut key = decode::<KeyRecord>("key", id, &json)?;
            key.limits = limits.clone();
            let outcome: u8 = self
                .query(
                    ::redis::cmd("EVAL")
                        .arg(REPLACE_KEY)
                        .arg(1)
                        .arg(self.key("keys"))
                        .arg(id)
                        .arg(&json)
                        .arg(encode(&key)?),
                )
                .await?;
            match outcome {
                0 => return Ok(false),
                1 => return Ok(true),
                _ => {}
            }
        }
        Err(StoreError::Backend(format!(
            "redis: key {id} kept changing while its limits were set"
        )))
    }

    async fn count_hit(&self, name: &str, expires_at_ms: i64) -> StoreResult<u64> {
        self.query(
            ::redis::cmd("EVAL")
                .arg(COUNT_HIT)
                .arg(1)
                .arg(self.key(&format!("hits:{name}")))
                .arg(expires_at_ms),
        )
        .await
    }

    async fn hold_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        until_ms: i64,
    ) -> StoreResult<bool> {
        let held: i64 = self
            .query(
                ::redis::cmd("EVAL")
                    .arg(HOLD_SLOT)
                    .arg(1)
                    .arg(self.key(&format!("slots:{name}")))
                    .arg(super::now_ms())
                    .arg(holder)
                    .arg(limit)
                    .arg(until_ms),
            )
            .await?;
        Ok(held == 1)
    }

    async fn free_slot(&self, name: &str, holder: &str) -> StoreResult<()> {
        let _: i64 = self
            .query(
                ::redis::cmd("ZREM")
                    .arg(self.key(&format!("slots:{name}")))
                    .arg(holder),
            )
            .await?;
        Ok(())
    }

    async fn add_usage(&self, batch: &[UsageDelta]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // MULTI/EXEC: a batch is counted whole or not at all, and no reader sees half of it.
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        let days_key = self.key("usage_days");
        for delta in batch {
            let hash = self.usage_key(&delta.day);
            let subject = subject_field(&delta.subject);
            for (counter, value) in [
                ("requests", delta.requests),
                ("prompt", delta.prompt_tokens),
                ("completion", delta.completion_tokens),
            ] {
                pipe.cmd("HINCRBY")
                    .arg(&hash)
                    .arg(format!("{subject}|{counter}"))
                    .arg(to_i64(value)?)
                    .ignore();
            }
            pipe.cmd("SADD").arg(&days_key).arg(&delta.day).ignore();
        }
        self.query_pipe::<()>(&pipe).await
    }

    async fn usage(&self, since_day: &str) -> StoreResult<Vec<UsageRow>> {
        let mut days: Vec<String> = self
            .query(::redis::cmd("SMEMBERS").arg(self.key("usage_days")))
            .await?;
        days.retain(|day| day.as_str() >= since_day);
        if days.is_empty() {
            return Ok(Vec::new());
        }
        days.sort();
        let mut pipe = ::redis::pipe();
        for day in &days {
            pipe.cmd("HGETALL").arg(self.usage_key(day));
        }
        let hashes: Vec<HashMap<String, u64>> = self.query_pipe(&pipe).await?;
        let mut rows = Vec::new();
        for (day, fields) in days.into_iter().zip(hashes) {
            let mut totals: BTreeMap<Subject, [u64; 3]> = BTreeMap::new();
            for (field, value) in fields {
                let Some((subject, column)) = parse_usage_field(&field) else {
                    return Err(StoreError::Backend(format!(
                        "redis: unreadable usage field {field:?} on {day}"
                    )));
                };
                totals.entry(subject).or_default()[column] = value;
            }
            rows.extend(totals.into_iter().map(|(subject, [r, p, c])| UsageRow {
                day: day.clone(),
                subject,
                requests: r,
                prompt_tokens: p,
                completion_tokens: c,
            }));
        }
        Ok(rows)
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        self.query(::redis::cmd("HGET").arg(self.key("settings")).arg(name))
            .await
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        self.query::<()>(&self.hset("settings", name, value)).await
    }

    async fn cache_get(&self, key: &str) -> StoreResult<Option<String>> {
        self.query(::redis::cmd("GET").arg(self.key(&format!("cache:{key}"))))
            .await
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at_ms: i64) -> StoreResult<()> {
        let ttl = expires_at_ms - super::now_ms();
        if ttl <= 0 {
            // Already expired: whatever the key held is gone.
            return self
                .query::<()>(::redis::cmd("DEL").arg(self.key(&format!("cache:{key}"))))
                .await;
        }
        self.query::<()>(
            ::redis::cmd("SET")
                .arg(self.key(&format!("cache:{key}")))
                .arg(value)
                .arg("PX")
                .arg(ttl),
        )
        .await
    }

    async fn next_turn(&self) -> StoreResult<u64> {
        self.query(::redis::cmd("INCR").arg(self.key("turn"))).await
    }

    async fn put_thread(
        &self,
        key: &str,
        entry: &ThreadEntry,
        expires_at_ms: i64,
    ) -> StoreResult<Filed> {
        let json = serde_json::to_string(entry).map_err(|e| StoreError::Backend(e.to_string()))?;
        let ttl = (expires_at_ms - super::now_ms()).max(1);
        let (old, orphaned): (Option<String>, i64) = self
            .query(
                ::redis::cmd("EVAL")
                    .arg(PUT_THREAD)
                    .arg(4)
                    .arg(self.key(&format!("thread:{key}")))
                    .arg(self.key("kept_chat_accounts"))
                    .arg(self.key("kept_chat_refs"))
                    .arg(self.key("kept_chat_expiry"))
                    .arg(json)
                    .arg(ttl)
                    .arg(&entry.chat_id)
                    .arg(&entry.account_id)
                    .arg(expires_at_ms),
            )
            .await?;
        let replaced: Option<ThreadEntry> = old.and_then(|j| serde_json::from_str(&j).ok());
        let orphaned = match (&replaced, orphaned) {
            (Some(old), 1) => Some(KeptChat {
                account_id: old.account_id.clone(),
                chat_id: old.chat_id.clone(),
            }),
            _ => None,
        };
        Ok(Filed { replaced, orphaned })
    }

    async fn get_thread(&self, key: &str) -> StoreResult<Option<ThreadEntry>> {
        let json: Option<String> = self
            .query(::redis::cmd("GET").arg(self.key(&format!("thread:{key}"))))
            .await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    async fn claim_expired_chats(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeptChat>> {
        let flat: Vec<String> = self
            .query(
                ::redis::cmd("EVAL")
                    .arg(CLAIM_CHATS)
                    .arg(3)
                    .arg(self.key("kept_chat_accounts"))
                    .arg(self.key("kept_chat_refs"))
                    .arg(self.key("kept_chat_expiry"))
                    .arg(now_ms)
                    .arg(limit),
            )
            .await?;
        Ok(flat
            .chunks_exact(2)
            .map(|pair| KeptChat {
                chat_id: pair[0].clone(),
                account_id: pair[1].clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite;

    use crate::store::redis_server::shared as server;

    fn unique_prefix() -> String {
        format!("test:{}:", uuid::Uuid::new_v4().simple())
    }

    #[tokio::test]
    async fn redis_passes_the_suite() {
        let Some(server) = server() else { return };
        let store = RedisStore::connect(&server.url, &unique_prefix())
            .await
            .expect("connect");
        suite::run(&store).await;
    }

    #[tokio::test]
    async fn redis_replicas_share_state_at_once() {
        let Some(server) = server() else { return };
        let prefix = unique_prefix();
        let one = RedisStore::connect(&server.url, &prefix)
            .await
            .expect("one");
        let two = RedisStore::connect(&server.url, &prefix)
            .await
            .expect("two");

        suite::fill(&one).await;
        assert_eq!(suite::snapshot(&two).await, suite::snapshot(&one).await);

        // A cooldown set by one replica is what the other reads next.
        let cooling = AccountStatus {
            state: crate::store::HealthState::Cooling,
            until_ms: Some(42),
            reason: Some("rate_limited".to_owned()),
            failure_count: 1,
            last_used_ms: None,
        };
        one.set_account_status("alice@example.com", &cooling)
            .await
            .unwrap();
        assert_eq!(
            two.account_statuses()
                .await
                .unwrap()
                .get("alice@example.com"),
            Some(&cooling)
        );
        assert!(two.delete_account("alice@example.com").await.unwrap());
        assert!(
            !one.account_statuses()
                .await
                .unwrap()
                .contains_key("alice@example.com")
        );

        // One round-robin position for both.
        let turns = [
            one.next_turn().await.unwrap(),
            two.next_turn().await.unwrap(),
            one.next_turn().await.unwrap(),
            two.next_turn().await.unwrap(),
        ];
        assert_eq!(turns, [1, 2, 3, 4]);

        // A label taken through one replica is taken for the other.
        let Err(StoreError::Conflict(what)) = two.insert_key(&suite::key("key-9", "ci", 9)).await
        else {
            panic!("the label is taken");
        };
        assert_eq!(what, "key label ci");
        let Err(StoreError::Conflict(what)) = two
            .insert_account(&suite::account(
                "account_1",
                crate::store::CredentialKind::Token,
                9,
            ))
            .await
        else {
            panic!("the id is taken");
        };
        assert_eq!(what, "account account_1");

        // Another prefix is another world.
        let other = RedisStore::connect(&server.url, &unique_prefix())
            .await
            .expect("other");
        assert_eq!(other.list_accounts().await.unwrap(), []);
        assert_eq!(other.next_turn().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn redis_key_layout_is_as_documented() {
        let Some(server) = server() else { return };
        let prefix = unique_prefix();
        let store = RedisStore::connect(&server.url, &prefix)
            .await
            .expect("connect");
        suite::fill(&store).await;
        store.next_turn().await.unwrap();

        let mut conn = Client::open(server.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.sort();
        let expected: Vec<String> = [
            "accounts",
            "key_labels",
            "keys",
            "settings",
            "status",
            "turn",
            "usage:2025-02-01",
            "usage:2025-02-02",
            "usage_days",
        ]
        .iter()
        .map(|k| format!("{prefix}{k}"))
        .collect();
        assert_eq!(keys, expected);

        let usage: BTreeMap<String, u64> = ::redis::cmd("HGETALL")
            .arg(format!("{prefix}usage:2025-02-02"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let expected: BTreeMap<String, u64> = [
            ("account:account_1|requests".to_owned(), 4),
            ("account:account_1|prompt".to_owned(), 5),
            ("account:account_1|completion".to_owned(), 6),
        ]
        .into_iter()
        .collect();
        assert_eq!(usage, expected);

        let label: String = ::redis::cmd("HGET")
            .arg(format!("{prefix}key_labels"))
            .arg("ci")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(label, "key-1");
        let account: serde_json::Value = serde_json::from_str(
            &::redis::cmd("HGET")
                .arg(format!("{prefix}accounts"))
                .arg("alice@example.com")
                .query_async::<String>(&mut conn)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(account["password"], suite::PASSWORD);
        assert_eq!(account["kind"], "password");
        assert_eq!(account["origin"], "runtime");
    }

    #[tokio::test]
    async fn redis_unreachable_is_a_backend_error_without_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("redis://:hunter2-secret@127.0.0.1:{port}/");
        // No retries: the backoff would only slow the test down.
        let Err(StoreError::Backend(message)) =
            RedisStore::connect_with_retries(&url, "x:", 0).await
        else {
            panic!("nothing listens there");
        };
        assert!(!message.contains("hunter2"), "{message}");
        assert!(
            message.starts_with(&format!("cannot connect to Redis at 127.0.0.1:{port}: ")),
            "{message}"
        );
    }

    #[test]
    fn usage_fields_parse_back() {
        assert_eq!(
            parse_usage_field("account:a|b:c|requests"),
            Some((Subject::Account("a|b:c".to_owned()), 0))
        );
        assert_eq!(
            parse_usage_field("key:k|completion"),
            Some((Subject::Key("k".to_owned()), 2))
        );
        assert_eq!(parse_usage_field("key:k|tokens"), None);
        assert_eq!(parse_usage_field("user:k|prompt"), None);
    }
}
