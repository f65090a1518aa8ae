//! `MemoryStore`: the `DATA_SAVE_MODE=none` backend; maps behind one mutex, gone on exit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{
    AccountRecord, AccountStatus, Filed, KeptChat, KeyLimits, KeyRecord, Store, StoreError,
    StoreResult, Subject, ThreadEntry, UsageDelta, UsageRow,
};

/// Everything in process memory. No method awaits while holding the lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    accounts: HashMap<String, AccountRecord>,
    statuses: HashMap<String, AccountStatus>,
    keys: HashMap<String, KeyRecord>,
    /// `(day, subject)` → `[requests, prompt, completion]`; ordered as `usage` returns it.
    usage: BTreeMap<(String, Subject), [u64; 3]>,
    settings: HashMap<String, String>,
    /// key → (value, expires at, unix ms)
    cache: HashMap<String, (String, i64)>,
    turn: u64,
    /// counter name → (value, expires at)
    hits: HashMap<String, (u64, i64)>,
    /// Held places by name: holder → held until (unix ms).
    slots: HashMap<String, HashMap<String, i64>>,
    /// history key → (entry, expires at)
    threads: HashMap<String, (ThreadEntry, i64)>,
    /// chat id → the chat kept for continuation
    kept: HashMap<String, Kept>,
}

#[derive(Debug)]
struct Kept {
    account_id: String,
    /// When its last entry expires, unix ms.
    expires_ms: i64,
    /// Entries naming it that were not replaced (some may have expired).
    refs: u32,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent, so a panic elsewhere while
        // holding the lock does not make the data unusable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        let mut accounts: Vec<AccountRecord> = self.lock().accounts.values().cloned().collect();
        accounts.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(accounts)
    }

    async fn upsert_account(&self, account: &AccountRecord) -> StoreResult<()> {
        self.lock()
            .accounts
            .insert(account.id.clone(), account.clone());
        Ok(())
    }

    async fn insert_account(&self, account: &AccountRecord) -> StoreResult<()> {
        let mut inner = self.lock();
        if inner.accounts.contains_key(&account.id) {
            return Err(StoreError::Conflict(format!("account {}", account.id)));
        }
        inner.accounts.insert(account.id.clone(), account.clone());
        Ok(())
    }

    async fn delete_account(&self, id: &str) -> StoreResult<bool> {
        let mut inner = self.lock();
        inner.statuses.remove(id);
        Ok(inner.accounts.remove(id).is_some())
    }

    async fn account_statuses(&self) -> StoreResult<HashMap<String, AccountStatus>> {
        Ok(self.lock().statuses.clone())
    }

    async fn set_account_status(&self, id: &str, status: &AccountStatus) -> StoreResult<()> {
        self.lock().statuses.insert(id.to_owned(), status.clone());
        Ok(())
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        let mut keys: Vec<KeyRecord> = self.lock().keys.values().cloned().collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys)
    }

    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let mut inner = self.lock();
        if inner.keys.contains_key(&key.id) {
            return Err(StoreError::Conflict(format!("key {}", key.id)));
        }
        if inner.keys.values().any(|k| k.label == key.label) {
            return Err(StoreError::Conflict(format!("key label {}", key.label)));
        }
        inner.keys.insert(key.id.clone(), key.clone());
        Ok(())
    }

    async fn delete_key(&self, id: &str) -> StoreResult<bool> {
        Ok(self.lock().keys.remove(id).is_some())
    }

    async fn set_key_limits(&self, id: &str, limits: &KeyLimits) -> StoreResult<bool> {
        let mut inner = self.lock();
        let Some(key) = inner.keys.get_mut(id) else {
            return Ok(false);
        };
        key.limits = limits.clone();
        Ok(true)
    }

    async fn count_hit(&self, name: &str, expires_at_ms: i64) -> StoreResult<u64> {
        let now = super::now_ms();
        let mut inner = self.lock();
        inner.hits.retain(|_, (_, exp)| *exp > now);
        let hit = inner
            .hits
            .entry(name.to_owned())
            .or_insert((0, expires_at_ms));
        hit.0 += 1;
        Ok(hit.0)
    }

    async fn hold_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        until_ms: i64,
    ) -> StoreResult<bool> {
        let now = super::now_ms();
        let mut inner = self.lock();
        let places = inner.slots.entry(name.to_owned()).or_default();
        places.retain(|_, until| *until > now);
        let held = places.contains_key(holder);
        if !held && places.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            return Ok(false);
        }
        places.insert(holder.to_owned(), until_ms);
        Ok(true)
    }

    async fn free_slot(&self, name: &str, holder: &str) -> StoreResult<()> {
        let mut inner = self.lock();
        if let Some(places) = inner.slots.get_mut(name) {
            places.remove(holder);
            if places.is_empty() {
                inner.slots.remove(name);
            }
        }
        Ok(())
    }

    async fn add_usage(&self, batch: &[UsageDelta]) -> StoreResult<()> {
        let mut inner = self.lock();
        for delta in batch {
            let totals = inner
                .usage
                .entry((delta.day.clone(), delta.subject.clone()))
                .or_default();
            totals[0] = totals[0].saturating_add(delta.requests);
            totals[1] = totals[1].saturating_add(delta.prompt_tokens);
            totals[2] = totals[2].saturating_add(delta.completion_tokens);
        }
        Ok(())
    }

    async fn usage(&self, since_day: &str) -> StoreResult<Vec<UsageRow>> {
        let inner = self.lock();
        Ok(inner
            .usage
            .iter()
            .filter(|((day, _), _)| day.as_str() >= since_day)
            .map(
                |((day, subject), [requests, prompt, completion])| UsageRow {
                    day: day.clone(),
                    subject: subject.clone(),
                    requests: *requests,
                    prompt_tokens: *prompt,
                    completion_tokens: *completion,
                },
            )
            .collect())
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(self.lock().settings.get(name).cloned())
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        self.lock()
            .settings
            .insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    async fn cache_get(&self, key: &str) -> StoreResult<Option<String>> {
        let now = super::now_ms();
        Ok(self
            .lock()
            .cache
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v.clone()))
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at_ms: i64) -> StoreResult<()> {
        let now = super::now_ms();
        let mut inner = self.lock();
        inner.cache.retain(|_, (_, exp)| *exp > now);
        inner
            .cache
            .insert(key.to_owned(), (value.to_owned(), expires_at_ms));
        Ok(())
    }

    async fn next_turn(&self) -> StoreResult<u64> {
        let mut inner = self.lock();
        inner.turn += 1;
        Ok(inner.turn)
    }

    async fn put_thread(
        &self,
        key: &str,
        entry: &ThreadEntry,
        expires_at_ms: i64,
    ) -> StoreResult<Filed> {
        let mut inner = self.lock();
        let kept = inner.kept.entry(entry.chat_id.clone()).or_insert(Kept {
            account_id: entry.account_id.clone(),
            expires_ms: expires_at_ms,
            refs: 0,
        });
        kept.refs += 1;
        kept.expires_ms = kept.expires_ms.max(expires_at_ms);
        let replaced = inner
            .threads
            .insert(key.to_owned(), (entry.clone(), expires_at_ms))
            .map(|(old, _)| old);
        let mut orphaned = None;
        if let Some(old) = &replaced
            && let Some(kept) = inner.kept.get_mut(&old.chat_id)
        {
            kept.refs = kept.refs.saturating_sub(1);
            if kept.refs == 0 {
                inner.kept.remove(&old.chat_id);
                orphaned = Some(KeptChat {
                    account_id: old.account_id.clone(),
                    chat_id: old.chat_id.clone(),
                });
            }
        }
        Ok(Filed { replaced, orphaned })
    }

    async fn get_thread(&self, key: &str) -> StoreResult<Option<ThreadEntry>> {
        let now = super::now_ms();
        Ok(self
            .lock()
            .threads
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(entry, _)| entry.clone()))
    }

    async fn claim_expired_chats(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeptChat>> {
        let mut inner = self.lock();
        // An expired entry's chat expires no sooner, so forgetting the entry loses nothing.
        inner.threads.retain(|_, (_, exp)| *exp > now_ms);
        let mut due: Vec<(i64, String)> = inner
            .kept
            .iter()
            .filter(|(_, k)| k.expires_ms <= now_ms)
            .map(|(id, k)| (k.expires_ms, id.clone()))
            .collect();
        due.sort();
        due.truncate(limit);
        Ok(due
            .into_iter()
            .filter_map(|(_, id)| {
                let kept = inner.kept.remove(&id)?;
                Some(KeptChat {
                    account_id: kept.account_id,
                    chat_id: id,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_passes_the_suite() {
        crate::store::suite::run(&MemoryStore::new()).await;
    }
}
