//! The one place that knows the order: lease an account → create a chat → send → decode →
//! peek for the first content → fail over to the next account while nothing has been sent.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::accounts::{Account, Lease, Pool, Unavailable};
use crate::catalog::{Catalog, Snapshot};
use crate::chat::{AnswerEvent, ChatRequest};
use crate::config::PoolConfig;
use crate::stream::{self, DecodeOptions};
use crate::upstream::{Credentials, QwenClient, UpstreamError};

/// How long a client is told to wait after a WAF challenge.
const CHALLENGE_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What the proxy stream yields besides answer events.
#[derive(Debug)]
pub enum Progress {
    /// The first upstream completion request has just been sent (the keep-alive clock starts).
    UpstreamCalled,
    Event(AnswerEvent),
}

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no Qwen account is usable")]
    NoAccount,
    #[error("every Qwen account is cooling down")]
    AllCooling { retry_after: Duration },
    /// Every attempt failed; `last` decides the answer unless a challenge was seen.
    #[error("{last}")]
    Failed {
        last: UpstreamError,
        challenged: bool,
        retry_after: Option<Duration>,
        usable_accounts: usize,
    },
    /// The upstream failed after the answer had started.
    #[error("the upstream failed mid-answer: {0}")]
    MidStream(UpstreamError),
}

impl ProxyError {
    pub fn retry_after_challenge() -> Duration {
        CHALLENGE_RETRY_AFTER
    }
}

pub struct Proxy {
    client: Arc<QwenClient>,
    pool: Pool,
    catalog: Catalog,
    cfg: PoolConfig,
}

impl Proxy {
    pub fn new(client: Arc<QwenClient>, pool: Pool, catalog: Catalog, cfg: PoolConfig) -> Self {
        Self {
            client,
            pool,
            catalog,
            cfg,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The model list, fetched with the first usable account when the cache is stale.
    pub async fn models(&self) -> Arc<Snapshot> {
        let creds = self
            .pool
            .accounts()
            .iter()
            .find(|a| a.is_usable())
            .map(|a| a.credentials());
        self.catalog
            .snapshot(|| async { self.client.models(creds.as_ref()).await })
            .await
    }

    /// Runs `req` with failover. Streaming (`buffered == false`): events are forwarded from the
    /// first visible one on, and a later failure is `MidStream`. Buffered: the whole answer is
    /// collected first, so a failure anywhere may still fail over.
    pub fn run(
        self: &Arc<Self>,
        req: ChatRequest,
        opts: DecodeOptions,
        buffered: bool,
    ) -> impl Stream<Item = Result<Progress, ProxyError>> + Send + 'static {
        let this = Arc::clone(self);
        async_stream::stream! {
            let mut f = Failover::new(&this.cfg);
            let mut announced = false;
            'accounts: loop {
                let lease = match f.lease(&this.pool) {
                    Ok(l) => l,
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                };
                let account = Arc::clone(lease.account());
                let creds = account.credentials();
                let mut busy_retried = false;
                let (events, _cleanup) = loop {
                    let chat_id = match this.client.create_chat(&creds, &req).await {
                        Ok(id) => id,
                        Err(e) => {
                            if let Err(fin) = f.failed(&account, e, &this.pool) {
                                yield Err(fin);
                                return;
                            }
                            continue 'accounts;
                        }
                    };
                    let cleanup = ChatCleanup::new(&this.client, &creds, chat_id.clone());
                    if !announced {
                        announced = true;
                        yield Ok(Progress::UpstreamCalled);
                    }
                    match this.client.complete(&creds, &req, &chat_id).await {
                        Ok(bytes) => break (stream::answers(bytes, opts).boxed(), cleanup),
                        Err(UpstreamError::ChatInProgress) if !busy_retried => {
                            tracing::info!(account = %account.id, "chat in progress; retrying in a new chat");
                            busy_retried = true;
                        }
                        Err(e) => {
                            let e = match e {
                                UpstreamError::ChatInProgress => {
                                    UpstreamError::Transient("the chat was still in progress twice".into())
                                }
                                other => other,
                            };
                            if let Err(fin) = f.failed(&account, e, &this.pool) {
                                yield Err(fin);
                                return;
                            }
                            continue 'accounts;
                        }
                    }
                };
                let mut events = events;
                let mut held: Vec<AnswerEvent> = Vec::new();
                let mut committed = false;
                while let Some(item) = events.next().await {
                    match item {
                        Ok(ev) if buffered => {
                            let done = matches!(ev, AnswerEvent::Done(_));
                            held.push(ev);
                            if done {
                                for ev in held.drain(..) {
                                    yield Ok(Progress::Event(ev));
                                }
                            }
                        }
                        Ok(ev) => {
                            if !committed && !ev.is_visible() && !matches!(ev, AnswerEvent::Done(_)) {
                                continue;
                            }
                            committed = true;
                            yield Ok(Progress::Event(ev));
                        }
                        Err(e) if !committed => {
                            drop(events);
                            if let Err(fin) = f.failed(&account, e, &this.pool) {
                                yield Err(fin);
                                return;
                            }
                            continue 'accounts;
                        }
                        Err(e) => {
                            tracing::warn!(account = %account.id, class = e.class(), error = %e, "upstream failed mid-answer");
                            account.record_failure(&e, &this.cfg);
                            yield Err(ProxyError::MidStream(e));
                            return;
                        }
                    }
                }
                drop(lease);
                return;
            }
        }
    }
}

/// Failover bookkeeping for one request: which accounts were tried and what went wrong.
struct Failover {
    cfg: PoolConfig,
    tried: Vec<String>,
    /// Egresses (per-account proxy or none) that answered with a WAF challenge.
    challenged: Vec<Option<String>>,
    last: Option<UpstreamError>,
}

impl Failover {
    fn new(cfg: &PoolConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            tried: Vec::new(),
            challenged: Vec::new(),
            last: None,
        }
    }

    fn lease(&mut self, pool: &Pool) -> Result<Lease, ProxyError> {
        if self.tried.len() >= self.cfg.retry_count {
            return Err(self.give_up(pool));
        }
        let lease = pool.acquire(|a| {
            self.tried.contains(&a.id)
                || self.challenged.iter().any(|p| *p == a.credentials().proxy)
        });
        match lease {
            Ok(l) => {
                self.tried.push(l.account().id.clone());
                Ok(l)
            }
            Err(_) if self.last.is_some() => Err(self.give_up(pool)),
            Err(Unavailable::Cooling { retry_after }) => {
                Err(ProxyError::AllCooling { retry_after })
            }
            Err(Unavailable::NoneUsable) => Err(ProxyError::NoAccount),
        }
    }

    /// Records a failure before anything was sent: `Ok` to try the next account, `Err` to stop.
    fn failed(
        &mut self,
        account: &Account,
        err: UpstreamError,
        pool: &Pool,
    ) -> Result<(), ProxyError> {
        tracing::warn!(account = %account.id, class = err.class(), error = %err, "upstream attempt failed");
        account.record_failure(&err, &self.cfg);
        let retry = err.is_retryable() || matches!(err, UpstreamError::Challenge(_));
        if matches!(err, UpstreamError::Challenge(_)) {
            self.challenged.push(account.credentials().proxy);
        }
        self.last = Some(err);
        if retry {
            Ok(())
        } else {
            Err(self.give_up(pool))
        }
    }

    fn give_up(&mut self, pool: &Pool) -> ProxyError {
        let last = self
            .last
            .take()
            .unwrap_or(UpstreamError::Transient("no attempt was made".into()));
        let retry_after = match &last {
            UpstreamError::RateLimited { retry_after, .. } => {
                Some(retry_after.unwrap_or(self.cfg.rate_limit_cooldown))
            }
            _ => None,
        };
        ProxyError::Failed {
            last,
            challenged: !self.challenged.is_empty(),
            retry_after,
            usable_accounts: pool.usable_count(),
        }
    }
}

/// Deletes the upstream chat in the background once the attempt is over, however it ends.
struct ChatCleanup {
    job: Option<(Arc<QwenClient>, Credentials, String)>,
}

impl ChatCleanup {
    fn new(client: &Arc<QwenClient>, creds: &Credentials, chat_id: String) -> Self {
        let enabled = client.config().chat_cleanup;
        Self {
            job: enabled.then(|| (Arc::clone(client), creds.clone(), chat_id)),
        }
    }
}

impl Drop for ChatCleanup {
    fn drop(&mut self) {
        let Some((client, creds, chat_id)) = self.job.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            if let Err(e) = client.delete_chat(&creds, &chat_id).await {
                tracing::debug!(class = e.class(), error = %e, "could not delete the upstream chat");
            }
        });
    }
}
