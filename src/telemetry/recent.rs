//! The recent requests: a ring of the last [`CAPACITY`] finished client requests (time, request
//! id, key label, surface, model, account, status, latency, time to first token, tokens,
//! failovers), read by `GET /api/requests`, and a broadcast of each one as it finishes, for
//! `GET /api/requests/live`. Kept in memory, per process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

/// Requests kept in the ring.
pub const CAPACITY: usize = 500;
/// Finished requests a slow live reader may fall behind by before it skips some.
const LIVE_BACKLOG: usize = 256;

/// One finished request, as the admin API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// When it finished (RFC 3339, UTC, milliseconds).
    pub time: String,
    pub request_id: String,
    /// The key's label (`API_KEY` for a configured key, `ADMIN_KEY`, a runtime key's label);
    /// `None` when no key was accepted.
    pub key: Option<String>,
    pub surface: &'static str,
    pub route: String,
    pub model: Option<String>,
    /// The account that answered (the last one tried when none did).
    pub account: Option<String>,
    pub status: u16,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub failovers: u32,
}

/// What a reader asks for: each field given must match (`status` by its first digits, so
/// `4` is every 4xx).
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestFilter {
    /// The key label.
    pub key: Option<String>,
    pub surface: Option<String>,
    pub model: Option<String>,
    pub account: Option<String>,
    /// A status code, or its leading digits (`4`: any 4xx).
    pub status: Option<String>,
    /// At most this many, newest first (default and most: 500).
    pub limit: Option<usize>,
}

impl RequestFilter {
    pub fn matches(&self, r: &RequestRecord) -> bool {
        let same = |want: &Option<String>, got: Option<&str>| {
            want.as_deref()
                .filter(|w| !w.is_empty())
                .is_none_or(|w| got == Some(w))
        };
        same(&self.key, r.key.as_deref())
            && same(&self.surface, Some(r.surface))
            && same(&self.model, r.model.as_deref())
            && same(&self.account, r.account.as_deref())
            && self
                .status
                .as_deref()
                .filter(|s| !s.is_empty())
                .is_none_or(|s| r.status.to_string().starts_with(s))
    }
}

pub struct Recent {
    ring: Mutex<VecDeque<Arc<RequestRecord>>>,
    live: broadcast::Sender<Arc<RequestRecord>>,
    /// True once the server is shutting down: live readers end, so that they do not hold the
    /// shutdown for its whole grace period.
    closing: watch::Sender<bool>,
}

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recent").finish_non_exhaustive()
    }
}

impl Recent {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            ring: Mutex::new(VecDeque::with_capacity(CAPACITY)),
            live: broadcast::channel(LIVE_BACKLOG).0,
            closing: watch::channel(false).0,
        })
    }

    /// Keeps `record` (dropping the oldest past [`CAPACITY`]) and tells live readers.
    pub fn push(&self, record: RequestRecord) {
        let record = Arc::new(record);
        {
            let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            if ring.len() == CAPACITY {
                ring.pop_front();
            }
            ring.push_back(Arc::clone(&record));
        }
        // No reader is not an error.
        let _ = self.live.send(record);
    }

    /// The kept requests that match, newest first.
    pub fn list(&self, filter: &RequestFilter) -> Vec<Arc<RequestRecord>> {
        let limit = filter.limit.unwrap_or(CAPACITY).min(CAPACITY);
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter()
            .rev()
            .filter(|r| filter.matches(r))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Each request from now on, as it finishes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RequestRecord>> {
        self.live.subscribe()
    }

    /// Ends every live reader, now and from now on (the server is shutting down).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`close`](Self::close) has been called.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u16, model: &str) -> RequestRecord {
        RequestRecord {
            time: String::new(),
            request_id: format!("r{n}"),
            key: Some("ci".into()),
            surface: "chat.completions",
            route: "/v1/chat/completions".into(),
            model: Some(model.into()),
            account: None,
            status: n,
            latency_ms: 1,
            ttft_ms: None,
            tokens_in: 0,
            tokens_out: 0,
            failovers: 0,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_filters() {
        let recent = Recent::new();
        for i in 0..(CAPACITY + 3) {
            let status = if i % 2 == 0 { 200 } else { 429 };
            recent.push(record(status, &format!("m{i}")));
        }
        let all = recent.list(&RequestFilter::default());
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].model.as_deref(), Some("m502"));
        assert_eq!(all[CAPACITY - 1].model.as_deref(), Some("m3"));
        let errors = RequestFilter {
            status: Some("4".into()),
            limit: Some(5),
            ..RequestFilter::default()
        };
        let got = recent.list(&errors);
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|r| r.status == 429));
        let one = RequestFilter {
            model: Some("m100".into()),
            ..RequestFilter::default()
        };
        assert_eq!(recent.list(&one).len(), 1);
        let nobody = RequestFilter {
            key: Some("other".into()),
            ..RequestFilter::default()
        };
        assert!(recent.list(&nobody).is_empty());
    }
}
