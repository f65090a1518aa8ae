//! Store errors, counted: a [`Store`] that hands every call to the store it wraps and counts
//! those that fail in the backend (a `Conflict` is an answer, not an error), by operation.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::Metrics;
use crate::store::{
    AccountRecord, AccountStatus, Filed, KeptChat, KeyLimits, KeyRecord, Store, StoreError,
    StoreResult, ThreadEntry, UsageDelta, UsageRow,
};

/// `store`, with its backend errors counted in `metrics`.
pub fn counted(store: Arc<dyn Store>, metrics: &Arc<Metrics>) -> Arc<dyn Store> {
    Arc::new(Counted {
        inner: store,
        metrics: Arc::clone(metrics),
    })
}

struct Counted {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Counted {
    fn count<T>(&self, operation: &'static str, r: StoreResult<T>) -> StoreResult<T> {
        if let Err(StoreError::Backend(_)) = &r {
            self.metrics.store_error(self.inner.backend(), operation);
        }
        r
    }
}

#[async_trait]
impl Store for Counted {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        self.count("list_accounts", self.inner.list_accounts().await)
    }

    async fn upsert_account(&self, account: &AccountRecord) -> StoreResult<()> {
        self.count("upsert_account", self.inner.upsert_account(account).await)
    }

    async fn insert_account(&self, account: &AccountRecord) -> StoreResult<()> {
        self.count("insert_account", self.inner.insert_account(account).await)
    }

    async fn delete_account(&self, id: &str) -> StoreResult<bool> {
        self.count("delete_account", self.inner.delete_account(id).await)
    }

    async fn account_statuses(&self) -> StoreResult<HashMap<String, AccountStatus>> {
        self.count("account_statuses", self.inner.account_statuses().await)
    }

    async fn set_account_status(&self, id: &str, status: &AccountStatus) -> StoreResult<()> {
        let r = self.inner.set_account_status(id, status).await;
        self.count("set_account_status", r)
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.count("list_keys", self.inner.list_keys().await)
    }

    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        self.count("insert_key", self.inner.insert_key(key).await)
    }

    async fn delete_key(&self, id: &str) -> StoreResult<bool> {
        self.count("delete_key", self.inner.delete_key(id).await)
    }

    async fn set_key_limits(&self, id: &str, limits: &KeyLimits) -> StoreResult<bool> {
        let r = self.inner.set_key_limits(id, limits).await;
        self.count("set_key_limits", r)
    }

    async fn count_hit(&self, name: &str, expires_at_ms: i64) -> StoreResult<u64> {
        let r = self.inner.count_hit(name, expires_at_ms).await;
        self.count("count_hit", r)
    }

    async fn hold_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        until_ms: i64,
    ) -> StoreResult<bool> {
        let r = self.inner.hold_slot(name, holder, limit, until_ms).await;
        self.count("hold_slot", r)
    }

    async fn free_slot(&self, name: &str, holder: &str) -> StoreResult<()> {
        let r = self.inner.free_slot(name, holder).await;
        self.count("free_slot", r)
    }

    async fn add_usage(&self, batch: &[UsageDelta]) -> StoreResult<()> {
        self.count("add_usage", self.inner.add_usage(batch).await)
    }

    async fn usage(&self, since_day: &str) -> StoreResult<Vec<UsageRow>> {
        self.count("usage", self.inner.usage(since_day).await)
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        self.count("get_setting", self.inner.get_setting(name).await)
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        self.count("set_setting", self.inner.set_setting(name, value).await)
    }

    async fn cache_get(&self, key: &str) -> StoreResult<Option<String>> {
        self.count("cache_get", self.inner.cache_get(key).await)
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at_ms: i64) -> StoreResult<()> {
        let r = self.inner.cache_put(key, value, expires_at_ms).await;
        self.count("cache_put", r)
    }

    async fn next_turn(&self) -> StoreResult<u64> {
        self.count("next_turn", self.inner.next_turn().await)
    }

    async fn put_thread(
        &self,
        key: &str,
        entry: &ThreadEntry,
        expires_at_ms: i64,
    ) -> StoreResult<Filed> {
        let r = self.inner.put_thread(key, entry, expires_at_ms).await;
        self.count("put_thread", r)
    }

    async fn get_thread(&self, key: &str) -> StoreResult<Option<ThreadEntry>> {
        self.count("get_thread", self.inner.get_thread(key).await)
    }

    async fn claim_expired_chats(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeptChat>> {
        let r = self.inner.claim_expired_chats(now_ms, limit).await;
        self.count("claim_expired_chats", r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose every call fails, or conflicts.
    struct Broken;

    #[async_trait]
    impl Store for Broken {
        fn backend(&self) -> &'static str {
            "broken"
        }
        async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
            Err(StoreError::Backend("down".into()))
        }
        async fn upsert_account(&self, _: &AccountRecord) -> StoreResult<()> {
            unimplemented!()
        }
        async fn insert_account(&self, _: &AccountRecord) -> StoreResult<()> {
            unimplemented!()
        }
        async fn delete_account(&self, _: &str) -> StoreResult<bool> {
            unimplemented!()
        }
        async fn account_statuses(&self) -> StoreResult<HashMap<String, AccountStatus>> {
            unimplemented!()
        }
        async fn set_account_status(&self, _: &str, _: &AccountStatus) -> StoreResult<()> {
            unimplemented!()
        }
        async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
            unimplemented!()
        }
        async fn insert_key(&self, _: &KeyRecord) -> StoreResult<()> {
            Err(StoreError::Conflict("taken".into()))
        }
        async fn delete_key(&self, _: &str) -> StoreResult<bool> {
            unimplemented!()
        }
        async fn set_key_limits(&self, _: &str, _: &KeyLimits) -> StoreResult<bool> {
            unimplemented!()
        }
        async fn count_hit(&self, _: &str, _: i64) -> StoreResult<u64> {
            unimplemented!()
        }
        async fn hold_slot(&self, _: &str, _: &str, _: u32, _: i64) -> StoreResult<bool> {
            unimplemented!()
        }
        async fn free_slot(&self, _: &str, _: &str) -> StoreResult<()> {
            unimplemented!()
        }
        async fn add_usage(&self, _: &[UsageDelta]) -> StoreResult<()> {
            unimplemented!()
        }
        async fn usage(&self, _: &str) -> StoreResult<Vec<UsageRow>> {
            unimplemented!()
        }
        async fn get_setting(&self, _: &str) -> StoreResult<Option<String>> {
            unimplemented!()
        }
        async fn set_setting(&self, _: &str, _: &str) -> StoreResult<()> {
            unimplemented!()
        }
        async fn cache_get(&self, _: &str) -> StoreResult<Option<String>> {
            unimplemented!()
        }
        async fn cache_put(&self, _: &str, _: &str, _: i64) -> StoreResult<()> {
            unimplemented!()
        }
        async fn next_turn(&self) -> StoreResult<u64> {
            unimplemented!()
        }
        async fn put_thread(&self, _: &str, _: &ThreadEntry, _: i64) -> StoreResult<Filed> {
            unimplemented!()
        }
        async fn get_thread(&self, _: &str) -> StoreResult<Option<ThreadEntry>> {
            unimplemented!()
        }
        async fn claim_expired_chats(&self, _: i64, _: usize) -> StoreResult<Vec<KeptChat>> {
            unimplemented!()
        }
    }

    #[tokio::test]
    async fn backend_errors_are_counted_and_conflicts_are_not() {
        let metrics = Metrics::new();
        let store = counted(Arc::new(Broken), &metrics);
        assert!(store.list_accounts().await.is_err());
        assert!(store.list_accounts().await.is_err());
        let key = KeyRecord {
            id: "k".into(),
            label: "l".into(),
            hash: "h".into(),
            hint: "x".into(),
            created_at: 0,
            limits: KeyLimits::default(),
        };
        assert!(store.insert_key(&key).await.is_err());
        let text = metrics.render(&crate::accounts::Pool::default()).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("qwen2api_store_errors_total{"))
            .collect();
        assert_eq!(
            lines,
            [r#"qwen2api_store_errors_total{backend="broken",operation="list_accounts"} 2"#]
        );
    }
}
