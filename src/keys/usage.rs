//! Usage counters: per account and per downstream key, per day. Recorded in memory on the
//! request path and written to the store in batches, off the request path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::store::{Store, Subject, UsageDelta, today};

#[derive(Default, Clone, Copy)]
struct Counts {
    requests: u64,
    prompt: u64,
    completion: u64,
}

pub struct UsageRecorder {
    store: Arc<dyn Store>,
    pending: Mutex<HashMap<(String, Subject), Counts>>,
    metrics: Arc<Metrics>,
}

impl UsageRecorder {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            store,
            pending: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Counts one completed request for its account and (when known) its key.
    pub fn record(&self, account: &str, key: Option<&str>, prompt: u64, completion: u64) {
        self.metrics.tokens(account, key, prompt, completion);
        let day = today();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let subjects = std::iter::once(Subject::Account(account.to_owned()))
            .chain(key.map(|k| Subject::Key(k.to_owned())));
        for subject in subjects {
            let c = pending.entry((day.clone(), subject)).or_default();
            c.requests += 1;
            c.prompt += prompt;
            c.completion += completion;
        }
    }

    /// Prompt and completion tokens counted for `subject` on `day` and not yet written.
    pub fn pending_tokens(&self, day: &str, subject: &Subject) -> u64 {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending
            .get(&(day.to_owned(), subject.clone()))
            .map_or(0, |c| c.prompt.saturating_add(c.completion))
    }

    /// Writes what has been counted so far; kept for the next flush if the store fails.
    pub async fn flush(&self) {
        let taken: Vec<((String, Subject), Counts)> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.drain().collect()
        };
        if taken.is_empty() {
            return;
        }
        let batch: Vec<UsageDelta> = taken
            .iter()
            .map(|((day, subject), c)| UsageDelta {
                day: day.clone(),
                subject: subject.clone(),
                requests: c.requests,
                prompt_tokens: c.prompt,
                completion_tokens: c.completion,
            })
            .collect();
        if let Err(e) = self.store.add_usage(&batch).await {
            tracing::warn!(error = %e, "cannot store usage counters; keeping them for the next try");
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (k, c) in taken {
                let e = pending.entry(k).or_default();
                e.requests += c.requests;
                e.prompt += c.prompt;
                e.completion += c.completion;
            }
        }
    }

    pub fn spawn_flusher(self: &Arc<Self>, every: Duration) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                this.flush().await;
            }
        });
    }
}
