//! Pre-created upstream chats (`CHAT_PREWARM`): a few chat ids per account, model and chat
//! type, made ahead of time so that a request skips the chat-creation round trip. Ids older
//! than `CHAT_PREWARM_TTL_SECONDS` are thrown away (and deleted upstream).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::upstream::{Credentials, Turn, Upstream};

type Key = (String, String, &'static str);

pub struct ChatPrewarm {
    per_key: usize,
    ttl: Duration,
    ready: Mutex<HashMap<Key, VecDeque<(String, Instant)>>>,
    /// Keys with a refill under way, so that bursts do not start several.
    filling: Mutex<std::collections::HashSet<Key>>,
}

impl ChatPrewarm {
    pub fn new(per_key: usize, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            per_key,
            ttl,
            ready: Mutex::new(HashMap::new()),
            filling: Mutex::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.per_key > 0
    }

    fn key(account: &str, req: &Turn) -> Key {
        (
            account.to_owned(),
            req.model.clone(),
            req.chat_type.as_str(),
        )
    }

    /// A ready chat id for this account and request, if one is fresh; expired ones are
    /// handed back for deletion.
    pub fn take(&self, account: &str, req: &Turn) -> (Option<String>, Vec<String>) {
        if !self.enabled() {
            return (None, Vec::new());
        }
        let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(queue) = ready.get_mut(&Self::key(account, req)) else {
            return (None, Vec::new());
        };
        let mut expired = Vec::new();
        while let Some((id, made)) = queue.pop_front() {
            if made.elapsed() < self.ttl {
                return (Some(id), expired);
            }
            expired.push(id);
        }
        (None, expired)
    }

    /// Tops the queue for this account and request up to `CHAT_PREWARM`, in the background.
    pub fn refill(
        self: &Arc<Self>,
        client: &Arc<dyn Upstream>,
        account: &str,
        creds: &Credentials,
        req: &Turn,
    ) {
        if !self.enabled() {
            return;
        }
        let key = Self::key(account, req);
        if !self
            .filling
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone())
        {
            return;
        }
        let (this, client, creds, req) = (
            Arc::clone(self),
            Arc::clone(client),
            creds.clone(),
            req.clone(),
        );
        tokio::spawn(async move {
            loop {
                let have = this
                    .ready
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&key)
                    .map_or(0, VecDeque::len);
                if have >= this.per_key {
                    break;
                }
                match client.create_chat(&creds, &req).await {
                    Ok(id) => this
                        .ready
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(key.clone())
                        .or_default()
                        .push_back((id, Instant::now())),
                    Err(e) => {
                        tracing::debug!(class = e.class(), "could not pre-create a chat");
                        break;
                    }
                }
            }
            this.filling
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
    }
}
