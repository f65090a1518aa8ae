//! Per-key limits of runtime keys and how each is counted: the expiry and the allowed models
//! (checked against the key's record), requests per minute (a fixed one-minute window counted
//! in the store, so replicas share it), tokens per day (the usage counters: what the store has
//! plus what this replica has not flushed yet) and requests in flight (counted in this process).
//!
//! Requests in flight are counted per replica on purpose: a lease in the store would need a
//! heartbeat for long streams and would outlive a crashed replica, refusing a key's requests
//! for requests that no longer exist. With N replicas a key has at most N × the limit in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::usage::UsageRecorder;
use crate::store::{KeyLimits, Store, Subject, now_ms, today};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// How long after its window a rate counter is kept (clocks of replicas differ a little).
const WINDOW_SLACK_MS: i64 = 5_000;

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
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
}

/// One admitted request of a key with a concurrency limit; dropping it (when the response's
/// last byte is sent, or the client went away) frees its place.
pub struct InFlight {
    counts: Arc<Mutex<HashMap<String, u32>>>,
    key_id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key_id);
            }
        }
    }
}

impl Limiter {
    pub fn new(store: Arc<dyn Store>, usage: Arc<UsageRecorder>) -> Self {
        Self {
            store,
            usage,
            in_flight: Arc::default(),
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
            Some(limit) => Some(self.enter(key_id, limit)?),
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
        let counts = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.get(key_id).copied().unwrap_or(0)
    }

    fn enter(&self, key_id: &str, limit: u32) -> Result<InFlight, LimitError> {
        let mut counts = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(key_id.to_owned()).or_insert(0);
        if *n >= limit {
            return Err(LimitError::ConcurrentRequests { limit });
        }
        *n += 1;
        Ok(InFlight {
            counts: Arc::clone(&self.in_flight),
            key_id: key_id.to_owned(),
        })
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
