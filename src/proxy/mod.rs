//! The one place that knows the order: lease an account → create a chat → send → decode →
//! peek for the first content → fail over to the next account while nothing has been sent.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use crate::accounts::{Account, AccountManager, Lease, Pool, Unavailable};
use crate::catalog::{Catalog, Snapshot};
use crate::chat::{AnswerEvent, ChatRequest, ChatType, Feature, TokenUsage};
use crate::config::{MediaConfig, Secret};
use crate::media::Uploader;
use crate::prewarm::ChatPrewarm;
use crate::stream::{self, DecodeOptions};
use crate::upstream::files::TaskState;
use crate::upstream::{Credentials, QwenClient, UpstreamError};
use crate::usage::UsageRecorder;

pub mod prewarm;

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
    /// Passthrough mode: the caller's own token was refused upstream.
    #[error("chat.qwen.ai rejected the caller's token")]
    PassthroughRejected,
    #[error("every Qwen account is busy")]
    AllBusy { retry_after: Duration },
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
    accounts: Arc<AccountManager>,
    catalog: Catalog,
    usage: Arc<UsageRecorder>,
    prewarm: Arc<ChatPrewarm>,
    uploader: Uploader,
    media: MediaConfig,
}

/// Who a request is for, as far as account choice and accounting go.
#[derive(Clone, Debug, Default)]
pub struct RunContext {
    /// The downstream key's id, for usage counters.
    pub key_id: Option<String>,
    /// Requests with the same key stay on one account (`STICKY_ACCOUNTS`).
    pub sticky_key: Option<String>,
    /// `AUTH_MODE=passthrough`: the caller's own Qwen token is the account.
    pub passthrough: Option<Secret>,
}

impl Proxy {
    pub fn new(
        client: Arc<QwenClient>,
        accounts: Arc<AccountManager>,
        catalog: Catalog,
        usage: Arc<UsageRecorder>,
        uploader: Uploader,
        media: MediaConfig,
    ) -> Self {
        let up = client.config();
        let prewarm = ChatPrewarm::new(up.chat_prewarm, up.chat_prewarm_ttl);
        Self {
            client,
            accounts,
            catalog,
            usage,
            prewarm,
            uploader,
            media,
        }
    }

    pub fn client(&self) -> &Arc<QwenClient> {
        &self.client
    }

    pub fn uploader(&self) -> &Uploader {
        &self.uploader
    }

    pub fn pool(&self) -> &Pool {
        self.accounts.pool()
    }

    pub fn accounts(&self) -> &Arc<AccountManager> {
        &self.accounts
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn usage(&self) -> &Arc<UsageRecorder> {
        &self.usage
    }

    /// The model list, fetched with the first usable account when the cache is stale.
    pub async fn models(&self) -> Arc<Snapshot> {
        let creds = self.pool().first_usable().map(|a| a.credentials());
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
        ctx: RunContext,
    ) -> impl Stream<Item = Result<Progress, ProxyError>> + Send + 'static {
        let this = Arc::clone(self);
        async_stream::stream! {
            let mut f = Failover::new(&this.accounts, ctx.passthrough.as_ref(), req.chat_type.feature());
            let mut announced = false;
            'accounts: loop {
                let lease = match f.lease(&this.accounts, &req.model, ctx.sticky_key.as_deref()).await {
                    Ok(l) => l,
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                };
                let account = Arc::clone(lease.account());
                let creds = account.credentials();
                let files = if req.attachments.is_empty() {
                    Vec::new()
                } else {
                    let scope = f.passthrough.is_none().then_some(account.id.as_str());
                    match this.uploader.files(&creds, scope, &req).await {
                        Ok(files) => files,
                        Err(e) => {
                            if let Err(fin) = f.failed(&this.accounts, &account, e) {
                                yield Err(fin);
                                return;
                            }
                            continue 'accounts;
                        }
                    }
                };
                let mut busy_retried = false;
                'chat: loop {
                    let prewarmed = if busy_retried || f.passthrough.is_some() {
                        None
                    } else {
                        let (ready, expired) = this.prewarm.take(&account.id, &req);
                        for id in expired {
                            drop(ChatCleanup::new(&this.client, &creds, id));
                        }
                        this.prewarm.refill(&this.client, &account.id, &creds, &req);
                        ready
                    };
                    let created = match prewarmed {
                        Some(id) => Ok(id),
                        None => this.client.create_chat(&creds, &req).await,
                    };
                    let chat_id = match created {
                        Ok(id) => id,
                        Err(e) => {
                            if let Err(fin) = f.failed(&this.accounts, &account, e) {
                                yield Err(fin);
                                return;
                            }
                            continue 'accounts;
                        }
                    };
                    let _cleanup = ChatCleanup::new(&this.client, &creds, chat_id.clone());
                    if !announced {
                        announced = true;
                        yield Ok(Progress::UpstreamCalled);
                    }
                    if req.chat_type == ChatType::Video {
                        let task = match this.client.start_video(&creds, &req, &chat_id, &files).await {
                            Ok(task) => task,
                            Err(UpstreamError::ChatInProgress) if !busy_retried => {
                                busy_retried = true;
                                continue 'chat;
                            }
                            Err(e) => {
                                if let Err(fin) = f.failed(&this.accounts, &account, busy_to_transient(e)) {
                                    yield Err(fin);
                                    return;
                                }
                                continue 'accounts;
                            }
                        };
                        // The task runs from here on: trying another account would start a
                        // second video, so a failure now is final.
                        tracing::info!(account = %account.id, task = %task, "video task started");
                        match this.wait_video(&creds, &task).await {
                            Ok(url) => {
                                let usage = TokenUsage::default();
                                f.succeeded(&this, &account, ctx.key_id.as_deref(), usage);
                                yield Ok(Progress::Event(AnswerEvent::Content(format!("[video]({url})"))));
                                yield Ok(Progress::Event(AnswerEvent::Done(usage)));
                            }
                            Err(e) => {
                                tracing::warn!(account = %account.id, task = %task, error = %e, "video task failed");
                                f.last = Some(e);
                                yield Err(f.give_up(this.pool()));
                            }
                        }
                        return;
                    }
                    let mut events = match this.client.complete(&creds, &req, &chat_id, &files).await {
                        Ok(bytes) => stream::answers(bytes, opts).boxed(),
                        Err(UpstreamError::ChatInProgress) if !busy_retried => {
                            tracing::info!(account = %account.id, "chat in progress; retrying in a new chat");
                            busy_retried = true;
                            continue 'chat;
                        }
                        Err(e) => {
                            if let Err(fin) = f.failed(&this.accounts, &account, busy_to_transient(e)) {
                                yield Err(fin);
                                return;
                            }
                            continue 'accounts;
                        }
                    };
                    let mut held: Vec<AnswerEvent> = Vec::new();
                    let mut committed = false;
                    while let Some(item) = events.next().await {
                        match item {
                            Ok(ev) => {
                                if let AnswerEvent::Done(u) = &ev {
                                    f.succeeded(&this, &account, ctx.key_id.as_deref(), *u);
                                }
                                if buffered {
                                    let done = matches!(ev, AnswerEvent::Done(_));
                                    held.push(ev);
                                    if done {
                                        for ev in held.drain(..) {
                                            yield Ok(Progress::Event(ev));
                                        }
                                    }
                                    continue;
                                }
                                if !committed && !ev.is_visible() && !matches!(ev, AnswerEvent::Done(_)) {
                                    continue;
                                }
                                committed = true;
                                yield Ok(Progress::Event(ev));
                            }
                            Err(UpstreamError::ChatInProgress) if !committed && !busy_retried => {
                                tracing::info!(account = %account.id, "chat in progress; retrying in a new chat");
                                busy_retried = true;
                                continue 'chat;
                            }
                            Err(e) if !committed => {
                                drop(events);
                                if let Err(fin) = f.failed(&this.accounts, &account, busy_to_transient(e)) {
                                    yield Err(fin);
                                    return;
                                }
                                continue 'accounts;
                            }
                            Err(e) => {
                                tracing::warn!(account = %account.id, class = e.class(), error = %e, "upstream failed mid-answer");
                                if f.passthrough.is_none() {
                                    this.accounts.report_failure(&account, &e);
                                }
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
}

impl Proxy {
    /// Polls a t2v task until it has a video, fails, or `VIDEO_TIMEOUT_SECONDS` pass. A few
    /// failed polls in a row are tolerated (the task goes on upstream regardless).
    async fn wait_video(&self, creds: &Credentials, task: &str) -> Result<String, UpstreamError> {
        const POLL_ERRORS_TOLERATED: u32 = 3;
        let deadline = tokio::time::Instant::now() + self.media.video_timeout;
        let mut errors = 0;
        loop {
            tokio::time::sleep(self.media.video_poll_interval).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(UpstreamError::Transient(format!(
                    "the video was not ready within {:?} (VIDEO_TIMEOUT_SECONDS)",
                    self.media.video_timeout
                )));
            }
            match self.client.task_status(creds, task).await {
                Ok(TaskState::Succeeded { url }) => return Ok(url),
                Ok(TaskState::Failed { reason }) => {
                    return Err(UpstreamError::Transient(format!(
                        "the video task failed: {reason}"
                    )));
                }
                Ok(TaskState::Pending | TaskState::Running) => errors = 0,
                Err(e) if e.is_retryable() && errors < POLL_ERRORS_TOLERATED => {
                    errors += 1;
                    tracing::debug!(task, error = %e, "video status poll failed; polling on");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn busy_to_transient(e: UpstreamError) -> UpstreamError {
    match e {
        UpstreamError::ChatInProgress => {
            UpstreamError::Transient("the chat was still in progress twice".into())
        }
        other => other,
    }
}

/// Failover bookkeeping for one request: which accounts were tried and what went wrong.
struct Failover {
    retry_count: usize,
    tried: Vec<String>,
    /// Egresses (per-account proxy or none) that answered with a WAF challenge.
    challenged: Vec<Option<String>>,
    last: Option<UpstreamError>,
    /// The caller's own account, in passthrough mode (tried once, never failed over).
    passthrough: Option<Arc<Account>>,
    /// The generation feature the request uses: its quota is rested per account.
    feature: Option<Feature>,
}

impl Failover {
    fn new(
        accounts: &AccountManager,
        passthrough: Option<&Secret>,
        feature: Option<Feature>,
    ) -> Self {
        Self {
            retry_count: accounts.config().retry_count,
            tried: Vec::new(),
            challenged: Vec::new(),
            last: None,
            passthrough: passthrough.map(|t| Arc::new(Account::passthrough(t.clone()))),
            feature,
        }
    }

    /// How soon the first usable account whose feature quota rests has it again.
    fn feature_back(&self, pool: &Pool) -> Option<Duration> {
        let feature = self.feature?;
        pool.accounts()
            .iter()
            .filter(|a| a.is_usable())
            .filter_map(|a| a.feature_cooling(feature))
            .min()
    }

    async fn lease(
        &mut self,
        accounts: &AccountManager,
        model: &str,
        sticky: Option<&str>,
    ) -> Result<Lease, ProxyError> {
        if let Some(own) = &self.passthrough {
            if self.tried.is_empty() {
                self.tried.push(own.id.clone());
                return Ok(Lease::detached(Arc::clone(own)));
            }
            return Err(self.give_up(accounts.pool()));
        }
        if self.tried.len() >= self.retry_count {
            return Err(self.give_up(accounts.pool()));
        }
        let (tried, challenged, feature) = (&self.tried, &self.challenged, self.feature);
        let skip = |a: &Account| {
            tried.contains(&a.id)
                || challenged.iter().any(|p| *p == a.credentials().proxy)
                || feature.is_some_and(|f| a.feature_cooling(f).is_some())
        };
        match accounts.lease(model, sticky, &skip).await {
            Ok(l) => {
                self.tried.push(l.account().id.clone());
                Ok(l)
            }
            Err(_) if self.last.is_some() => Err(self.give_up(accounts.pool())),
            Err(Unavailable::Cooling { retry_after }) => {
                Err(ProxyError::AllCooling { retry_after })
            }
            Err(Unavailable::Busy { retry_after }) => Err(ProxyError::AllBusy { retry_after }),
            // Every account left may be resting this request's feature.
            Err(Unavailable::NoneUsable) => Err(match self.feature_back(accounts.pool()) {
                Some(retry_after) => ProxyError::AllCooling { retry_after },
                None => ProxyError::NoAccount,
            }),
        }
    }

    /// Records a failure before anything was sent: `Ok` to try the next account, `Err` to stop.
    fn failed(
        &mut self,
        accounts: &Arc<AccountManager>,
        account: &Arc<Account>,
        err: UpstreamError,
    ) -> Result<(), ProxyError> {
        tracing::warn!(account = %account.id, class = err.class(), error = %err, "upstream attempt failed");
        match (&err, self.feature) {
            (_, _) if self.passthrough.is_some() => {}
            (UpstreamError::RateLimited { retry_after, .. }, Some(feature)) => {
                let rest = retry_after.unwrap_or(accounts.config().rate_limit_cooldown);
                account.cool_feature(feature, rest);
            }
            _ => accounts.report_failure(account, &err),
        }
        let retry = err.is_retryable() || matches!(err, UpstreamError::Challenge(_));
        if matches!(err, UpstreamError::Challenge(_)) {
            self.challenged.push(account.credentials().proxy);
        }
        self.last = Some(err);
        if retry {
            Ok(())
        } else {
            Err(self.give_up(accounts.pool()))
        }
    }

    fn succeeded(&self, proxy: &Proxy, account: &Account, key_id: Option<&str>, usage: TokenUsage) {
        if self.passthrough.is_none() {
            proxy.accounts.report_success(account);
            proxy
                .usage
                .record(&account.id, key_id, usage.input, usage.output);
        }
    }

    fn give_up(&mut self, pool: &Pool) -> ProxyError {
        let last = self
            .last
            .take()
            .unwrap_or(UpstreamError::Transient("no attempt was made".into()));
        if self.passthrough.is_some() && matches!(last, UpstreamError::Auth(_)) {
            return ProxyError::PassthroughRejected;
        }
        let retry_after = match &last {
            UpstreamError::RateLimited { retry_after, .. } => Some(
                self.feature_back(pool)
                    .or_else(|| pool.soonest_back())
                    .or(*retry_after)
                    .unwrap_or(Duration::from_secs(60)),
            ),
            _ => None,
        };
        ProxyError::Failed {
            last,
            challenged: !self.challenged.is_empty(),
            retry_after,
            usable_accounts: if self.passthrough.is_some() {
                0
            } else {
                pool.usable_count()
            },
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
