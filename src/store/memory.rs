//! `MemoryStore`: the `DATA_SAVE_MODE=none` backend; maps behind one mutex, gone on exit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{
    AccountRecord, AccountStatus, KeyRecord, Store, StoreError, StoreResult, Subject, UsageDelta,
    UsageRow,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_passes_the_suite() {
        crate::store::suite::run(&MemoryStore::new()).await;
    }
}
