//! Per-key limits of runtime keys and how each is counted: the expiry and the allowed models
//! (checked against the key's record), requests per minute (a fixed one-minute window counted
//! in the store, so replicas share it), tokens per day (the usage counters: what the store has
//! plus what this replica has not flushed yet) and requests in flight (places held in the
//! store, so replicas share them too).
//!
//! A request in flight holds a place for [`PLACE_MS`], renewed every [`RENEW_EVERY`] while it
//! runs and freed when it ends; a replica that dies stops renewing, and its places free
//! themselves within [`PLACE_MS`] instead of refusing a key's requests for good.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::usage::UsageRecorder;
use crate::store::{KeyLimits, Store, Subject, now_ms, today};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// How long after its window a rate counter is kept (clocks of replicas differ a little).
const WINDOW_SLACK_MS: i64 = 5_000;
/// How long a place of a request in flight is held without a renewal.
pub const PLACE_MS: i64 = 30_000;
/// How often the places of this replica's requests in flight are renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Why a key's request is refused. `Display` is the message the client reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("This API key expired at {}.", rfc3339(*.0))]
    Expired(i64),
    #[error("This API key may not use the model `{0}` (its allowed models: {1}).")]
    ModelNotAllowed(String, String),
    #[error(
        "This API key's limit of {limit} requests per minute (requestsPerMinute) is reached; \
         retry in {} s.", secs(*.retry_after)
    )]
    RequestsPerMinute { limit: u32, retry_after: Duration },
    #[error(
        "This API key's limit of {limit} concurrent requests (concurrentRequests) is reached; \
         retry when one of them has finished."
    )]
    ConcurrentRequests { limit: u32 },
    #[error(
        "This API key's limit of {limit} tokens per day (tokensPerDay, UTC) is reached; \
         retry in {} s.", secs(*.retry_after)
    )]
    TokensPerDay { limit: u64, retry_after: Duration },
}

impl LimitError {
    /// When a retry can succeed, for `Retry-After`; `None` for refusals that last.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LimitError::Expired(_) | LimitError::ModelNotAllowed(..) => None,
            LimitError::RequestsPerMinute { retry_after, .. }
            | LimitError::TokensPerDay { retry_after, .. } => Some(*retry_after),
            LimitError::ConcurrentRequests { .. } => Some(Duration::from_secs(1)),
        }
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} (unix ms)"))
}

/// Refuses a key past its `expiresAt`.
pub fn check_expiry(limits: &KeyLimits, now_ms: i64) -> Result<(), LimitError> {
    match limits.expires_at {
        Some(at) if now_ms >= at => Err(LimitError::Expired(at)),
        _ => Ok(()),
    }
}

/// Admits a model when the name the client sent or the model it resolves to matches one of
/// the key's patterns (so an alias can be allowed by its own name or by its target's).
pub fn check_model(limits: &KeyLimits, requested: &str, resolved: &str) -> Result<(), LimitError> {
    let Some(patterns) = &limits.models else {
        return Ok(());
    };
    let allowed = patterns.iter().any(|p| {
        let glob = crate::config::Glob::new(p);
        glob.is_match(requested) || glob.is_match(resolved)
    });
    if allowed {
        return Ok(());
    }
    Err(LimitError::ModelNotAllowed(
        requested.to_owned(),
        patterns.join(", "),
    ))
}

/// Counts the limits that need counting.
pub struct Limiter {
    store: Arc<dyn Store>,
    usage: Arc<UsageRecorder>,
    places: Arc<Places>,
}

/// The places this replica's requests in flight hold in the store.
#[derive(Default)]
struct Places {
    /// holder → (key id, the key's limit when admitted).
    held: Mutex<HashMap<String, (String, u32)>>,
    /// Places given up whose freeing in the store has not finished yet, by key id.
    freeing: Mutex<HashMap<String, u32>>,
    renewing: AtomicBool,
}

impl Places {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, u32)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn freeing(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.freeing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn place_name(key_id: &str) -> String {
    format!("conc:{key_id}")
}

/// One admitted request of a key with a concurrency limit; dropping it (when the response's
/// last byte is sent, or the client went away) frees its place.
pub struct InFlight {
    store: Arc<dyn Store>,
    places: Arc<Places>,
    key_id: String,
    holder: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.places.held().remove(&self.holder);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // No runtime left: the place frees itself after PLACE_MS.
        };
        *self
            .places
            .freeing()
            .entry(self.key_id.clone())
            .or_insert(0) += 1;
        let (store, places) = (Arc::clone(&self.store), Arc::clone(&self.places));
        let (key_id, holder) = (self.key_id.clone(), std::mem::take(&mut self.holder));
        rt.spawn(async move {
            if let Err(e) = store.free_slot(&place_name(&key_id), &holder).await {
                tracing::warn!(error = %e, "cannot free a place of a request in flight; it frees itself");
            }
            let mut freeing = places.freeing();
            if let Some(n) = freeing.get_mut(&key_id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    freeing.remove(&key_id);
                }
            }
        });
    }
}

impl Limiter {
    pub fn new(store: Arc<dyn Store>, usage: Arc<UsageRecorder>) -> Self {
        Self {
            store,
            usage,
            places: Arc::default(),
        }
    }

    /// Admits one request of `key_id` or says which limit refuses it. Checked in this order,
    /// so that a refused request uses up nothing: requests in flight, tokens per day, requests
    /// per minute (the one that counts the request). When the store cannot be read the request
    /// is admitted (and the failure logged): an outage of the counters is no reason to refuse.
    pub async fn admit(
        &self,
        key_id: &str,
        limits: &KeyLimits,
    ) -> Result<Option<InFlight>, LimitError> {
        let slot = match limits.concurrent_requests {
            Some(limit) => self.enter(key_id, limit).await?,
            None => None,
        };
        let now = now_ms();
        if let Some(limit) = limits.tokens_per_day {
            let used = self.tokens_today(key_id).await;
            if used >= limit {
                let retry_ms = DAY_MS - now.rem_euclid(DAY_MS);
                return Err(LimitError::TokensPerDay {
                    limit,
                    retry_after: millis(retry_ms),
                });
            }
        }
        if let Some(limit) = limits.requests_per_minute {
            let window = now.div_euclid(MINUTE_MS);
            let end = (window + 1) * MINUTE_MS;
            let name = format!("rpm:{key_id}:{window}");
            match self.store.count_hit(&name, end + WINDOW_SLACK_MS).await {
                Ok(n) if n > u64::from(limit) => {
                    return Err(LimitError::RequestsPerMinute {
                        limit,
                        retry_after: millis(end - now),
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot count requests per minute; admitted"),
            }
        }
        Ok(slot)
    }

    /// Requests of `key_id` in flight on this replica.
    pub fn in_flight(&self, key_id: &str) -> u32 {
        let held = self.places.held();
        let n = held.values().filter(|(k, _)| k == key_id).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Holds a place for one more request of `key_id`. A place this replica has just given up
    /// may still be in the store for a moment: the refusal then waits for those to be freed
    /// and asks once more.
    async fn enter(&self, key_id: &str, limit: u32) -> Result<Option<InFlight>, LimitError> {
        let name = place_name(key_id);
        let holder = uuid::Uuid::new_v4().simple().to_string();
        for attempt in 0..2 {
            match self
                .store
                .hold_slot(&name, &holder, limit, now_ms() + PLACE_MS)
                .await
            {
                Ok(true) => {
                    self.places
                        .held()
                        .insert(holder.clone(), (key_id.to_owned(), limit));
                    self.renew_in_background();
                    return Ok(Some(InFlight {
                        store: Arc::clone(&self.store),
                        places: Arc::clone(&self.places),
                        key_id: key_id.to_owned(),
                        holder,
                    }));
                }
                Ok(false) if attempt == 0 && self.wait_for_frees(key_id).await => {}
                Ok(false) => return Err(LimitError::ConcurrentRequests { limit }),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hold a place for a request in flight; admitted");
                    return Ok(None);
                }
            }
        }
        Err(LimitError::ConcurrentRequests { limit })
    }

    /// Waits (at most a second) until this replica's places of `key_id` given up are freed;
    /// false when there were none.
    async fn wait_for_frees(&self, key_id: &str) -> bool {
        if !self.places.freeing().contains_key(key_id) {
            return false;
        }
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if !self.places.freeing().contains_key(key_id) {
                break;
            }
        }
        true
    }

    /// Starts, once, the task that renews this replica's places every [`RENEW_EVERY`]; it
    /// ends with the limiter.
    fn renew_in_background(&self) {
        if self.places.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let places: Weak<Places> = Arc::downgrade(&self.places);
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let Some(places) = places.upgrade() else {
                    return;
                };
                let held: Vec<(String, String, u32)> = places
                    .held()
                    .iter()
                    .map(|(h, (k, l))| (h.clone(), k.clone(), *l))
                    .collect();
                for (holder, key_id, limit) in held {
                    let name = place_name(&key_id);
                    let until = now_ms() + PLACE_MS;
                    match store.hold_slot(&name, &holder, limit, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(key = %key_id, "a request in flight lost its place (not renewed in time)");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot renew a place of a request in flight");
                        }
                    }
                    // The request may have ended (and freed its place) while this renewal was
                    // on its way: free it again rather than leave it held for PLACE_MS.
                    if !places.held().contains_key(&holder) {
                        let _ = store.free_slot(&name, &holder).await;
                    }
                }
                drop(places);
            }
        });
    }

    /// Prompt and completion tokens of `key_id` today (UTC): the stored counters and what this
    /// replica has counted since its last flush. Other replicas' unflushed counts are missing
    /// (at most `USAGE_FLUSH_SECONDS` of their traffic).
    async fn tokens_today(&self, key_id: &str) -> u64 {
        let day = today();
        let subject = Subject::Key(key_id.to_owned());
        let stored = match self.store.usage(&day).await {
            Ok(rows) => rows
                .iter()
                .filter(|r| r.day == day && r.subject == subject)
                .map(|r| r.prompt_tokens.saturating_add(r.completion_tokens))
                .sum(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read usage for tokens per day; admitted");
                return 0;
            }
        };
        self.usage
            .pending_tokens(&day, &subject)
            .saturating_add(stored)
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn limiter() -> Limiter {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let usage = UsageRecorder::new(Arc::clone(&store), crate::metrics::Metrics::new());
        Limiter::new(store, usage)
    }

    #[test]
    fn expiry_refuses_from_the_instant_on() {
        let limits = KeyLimits {
            expires_at: Some(1_767_225_600_000),
            ..KeyLimits::default()
        };
        assert_eq!(check_expiry(&limits, 1_767_225_599_999), Ok(()));
        let err = check_expiry(&limits, 1_767_225_600_000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "This API key expired at 2026-01-01T00:00:00Z."
        );
        assert_eq!(err.retry_after(), None);
        assert_eq!(check_expiry(&KeyLimits::default(), i64::MAX), Ok(()));
    }

    #[test]
    fn models_match_the_requested_name_or_its_target() {
        let limits = KeyLimits {
            models: Some(vec!["qwen3-*".to_owned(), "GPT-4?".to_owned()]),
            ..KeyLimits::default()
        };
        assert_eq!(check_model(&limits, "Qwen3-Max", "qwen3-max"), Ok(()));
        assert_eq!(check_model(&limits, "gpt-4o", "qwen3.5-plus"), Ok(()));
        assert_eq!(check_model(&limits, "alias", "qwen3-coder"), Ok(()));
        let err = check_model(&limits, "qwen2.5-max", "qwen2.5-max").unwrap_err();
        assert_eq!(
            err.to_string(),
            "This API key may not use the model `qwen2.5-max` (its allowed models: qwen3-*, GPT-4?)."
        );
        let none = KeyLimits {
            models: Some(Vec::new()),
            ..KeyLimits::default()
        };
        assert!(check_model(&none, "qwen3-max", "qwen3-max").is_err());
    }

    #[tokio::test]
    async fn in_flight_requests_are_counted_until_dropped() {
        let limiter = limiter();
        let limits = KeyLimits {
            concurrent_requests: Some(2),
            ..KeyLimits::default()
        };
        let a = limiter.admit("k", &limits).await.unwrap();
        let b = limiter.admit("k", &limits).await.unwrap();
        assert!(a.is_some() && b.is_some());
        assert_eq!(limiter.in_flight("k"), 2);
        let err = limiter.admit("k", &limits).await.err().unwrap();
        assert_eq!(err, LimitError::ConcurrentRequests { limit: 2 });
        assert!(limiter.admit("other", &limits).await.is_ok());
        drop(a);
        assert_eq!(limiter.in_flight("k"), 1);
        assert!(limiter.admit("k", &limits).await.unwrap().is_some());
        drop(b);
        assert_eq!(limiter.in_flight("k"), 0);
    }

    #[tokio::test]
    async fn replicas_on_one_store_share_the_places_in_flight() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let replica = || {
            let usage = UsageRecorder::new(Arc::clone(&store), crate::metrics::Metrics::new());
            Limiter::new(Arc::clone(&store), usage)
        };
        let (one, two) = (replica(), replica());
        let limits = KeyLimits {
            concurrent_requests: Some(1),
            ..KeyLimits::default()
        };
        let held = one.admit("k", &limits).await.unwrap();
        assert!(held.is_some());
        let err = two.admit("k", &limits).await.err().unwrap();
        assert_eq!(err, LimitError::ConcurrentRequests { limit: 1 });
        assert_eq!((one.in_flight("k"), two.in_flight("k")), (1, 0));
        drop(held);
        // Freed in the store by a task: the other replica gets the place once it has run.
        let mut admitted = None;
        for _ in 0..100 {
            if let Ok(Some(slot)) = two.admit("k", &limits).await {
                admitted = Some(slot);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            admitted.is_some(),
            "the place was freed for the other replica"
        );
        assert_eq!(
            one.admit("k", &limits).await.err(),
            Some(LimitError::ConcurrentRequests { limit: 1 })
        );
    }

    #[tokio::test]
    async fn requests_per_minute_count_in_the_store() {
        let limiter = limiter();
        let limits = KeyLimits {
            requests_per_minute: Some(2),
            ..KeyLimits::default()
        };
        let minute = || now_ms().div_euclid(MINUTE_MS);
        let before = minute();
        assert!(limiter.admit("k", &limits).await.unwrap().is_none());
        assert!(limiter.admit("k", &limits).await.is_ok());
        let third = limiter.admit("k", &limits).await;
        if minute() != before {
            return; // the window rolled over between the calls: nothing to conclude
        }
        let Err(LimitError::RequestsPerMinute { limit, retry_after }) = third else {
            panic!("{third:?}", third = third.map(|s| s.is_some()));
        };
        assert_eq!(limit, 2);
        assert!(retry_after <= Duration::from_secs(60), "{retry_after:?}");
        assert!(limiter.admit("other", &limits).await.is_ok());
    }

    #[tokio::test]
    async fn tokens_per_day_include_what_is_not_flushed_yet() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let usage = UsageRecorder::new(Arc::clone(&store), crate::metrics::Metrics::new());
        let limiter = Limiter::new(Arc::clone(&store), Arc::clone(&usage));
        let limits = KeyLimits {
            tokens_per_day: Some(100),
            ..KeyLimits::default()
        };
        usage.record("acc", Some("k"), 40, 20);
        usage.flush().await;
        assert!(limiter.admit("k", &limits).await.is_ok());
        usage.record("acc", Some("k"), 30, 10);
        let err = limiter.admit("k", &limits).await.err().unwrap();
        let LimitError::TokensPerDay { limit, retry_after } = err else {
            panic!("{err:?}");
        };
        assert_eq!(limit, 100);
        assert!(
            retry_after <= Duration::from_secs(86_400),
            "{retry_after:?}"
        );
        assert!(limiter.admit("other", &limits).await.is_ok());
    }
}
