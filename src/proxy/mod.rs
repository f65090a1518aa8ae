//! The one door to the upstream: lease an account → create a chat → send → peek for the first
//! visible event → fail over to the next account while nothing has been sent. The whole
//! first-byte policy lives here: invisible events are held back, a stream waits for its first
//! visible event (or sends a keep-alive once the upstream is slow), an answer that ends with
//! nothing is an error, and failover happens only before the first visible byte.

pub mod catalog;
pub mod prewarm;
#[cfg(test)]
mod tests;
mod tools;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use self::prewarm::ChatPrewarm;
use crate::accounts::{Account, AccountManager, Lease, Pool, Unavailable};
use crate::config::{MediaConfig, Secret};
use crate::conversation::{
    self, AnswerEvent, ChatType, Feature, Finish, InvalidRequest, TokenUsage,
};
use crate::keys::usage::UsageRecorder;
use crate::media::Uploader;
use crate::tools::answer::Reading;
use crate::upstream::{Credentials, ResolvedModel, TaskState, Upstream, UpstreamError};
pub use crate::upstream::{StsToken, Turn, Uploaded};
use catalog::{Catalog, KnownModels};

/// How the client takes the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Event by event from the first visible one; a later failure ends the stream with an
    /// error. Until the first visible event arrives, a keep-alive is sent once `keepalive` has
    /// passed since the upstream was called.
    Stream { keepalive: Duration },
    /// All at once: the whole answer is collected first, so a failure anywhere may still fail
    /// over.
    Whole,
}

/// What a streamed answer yields.
#[derive(Debug)]
pub enum Streamed {
    /// Nothing visible yet, but the upstream is working: tell the client so.
    KeepAlive,
    Event(AnswerEvent),
}

pub type AnswerStream = Pin<Box<dyn Stream<Item = Result<Streamed, ProxyError>> + Send>>;

/// The answer, as the delivery asked.
pub enum Answer {
    Whole(Vec<AnswerEvent>),
    Stream(AnswerStream),
}

/// How long a client is told to wait after a WAF challenge.
const CHALLENGE_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What the attempts yield besides answer events.
#[derive(Debug)]
enum Progress {
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
    /// A single upstream call outside a chat (an upload ticket, a download of generated media)
    /// failed.
    #[error("the upstream call failed: {0}")]
    Call(UpstreamError),
    /// A tool call was required, and the model answered without one, also when asked again.
    #[error("the model did not call a tool, also when asked again")]
    ToolCallMissing,
    /// A strict tool's call did not fit its schema, also when asked again.
    #[error("a strict tool's call did not fit its parameters, also when asked again")]
    InvalidToolArguments,
}

/// Why a conversation cannot be sent at all.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("the model {0:?} does not exist")]
    ModelNotFound(String),
    #[error("{}", .0.message)]
    Invalid(InvalidRequest),
}

impl ProxyError {
    pub fn retry_after_challenge() -> Duration {
        CHALLENGE_RETRY_AFTER
    }
}

pub struct Proxy {
    upstream: Arc<dyn Upstream>,
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
        upstream: Arc<dyn Upstream>,
        accounts: Arc<AccountManager>,
        catalog: Catalog,
        usage: Arc<UsageRecorder>,
        uploader: Uploader,
        media: MediaConfig,
    ) -> Self {
        let habits = upstream.habits();
        let prewarm = ChatPrewarm::new(habits.prewarm, habits.prewarm_ttl);
        Self {
            upstream,
            accounts,
            catalog,
            usage,
            prewarm,
            uploader,
            media,
        }
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
    pub async fn models(&self) -> Arc<KnownModels> {
        let creds = self.pool().first_usable().map(|a| a.credentials());
        self.catalog
            .snapshot(creds.is_some(), || async {
                self.upstream.models(creds.as_ref()).await
            })
            .await
    }

    /// The model a client named, as the catalog resolves it.
    pub async fn resolve(&self, model: &str) -> Result<ResolvedModel, PrepareError> {
        let snap = self.models().await;
        self.catalog
            .resolve(&snap, model)
            .ok_or_else(|| PrepareError::ModelNotFound(model.to_owned()))
    }

    /// The turn the upstream sends for a conversation and its resolved model.
    pub fn prepare(
        &self,
        req: &conversation::Request,
        model: &ResolvedModel,
    ) -> Result<Turn, PrepareError> {
        self.upstream
            .prepare(req, model)
            .map_err(PrepareError::Invalid)
    }

    /// Credentials for a client to upload one file itself, made with the first usable account.
    pub async fn upload_ticket(
        &self,
        filename: &str,
        size: u64,
        filetype: &str,
    ) -> Result<StsToken, ProxyError> {
        let creds = self
            .pool()
            .first_usable()
            .map(|a| a.credentials())
            .ok_or(ProxyError::NoAccount)?;
        self.upstream
            .upload_ticket(&creds, filename, size, filetype)
            .await
            .map_err(ProxyError::Call)
    }

    /// Uploads a file with the first usable account (which fills that account's upload cache),
    /// or does nothing when there is none.
    pub async fn upload_ahead(
        &self,
        kind: crate::conversation::MediaKind,
        blob: &crate::conversation::Blob,
    ) -> Result<Option<Uploaded>, ProxyError> {
        let Some(account) = self.pool().first_usable() else {
            return Ok(None);
        };
        self.uploader
            .upload(&account.credentials(), Some(&account.id), kind, blob)
            .await
            .map(Some)
            .map_err(ProxyError::Call)
    }

    /// Downloads media the upstream generated, up to `limit` bytes.
    pub async fn fetch_generated(&self, url: &str, limit: usize) -> Result<Bytes, ProxyError> {
        self.upstream
            .fetch_generated(None, url, limit)
            .await
            .map(|(bytes, _)| bytes)
            .map_err(ProxyError::Call)
    }

    /// Runs `turn` with failover and delivers the answer: whole, or as a stream whose fate
    /// (an ordinary error or a stream) is decided before its first byte.
    pub async fn answer(
        self: &Arc<Self>,
        turn: Turn,
        delivery: Delivery,
        ctx: RunContext,
    ) -> Result<Answer, ProxyError> {
        let attempts: Pin<Box<dyn Stream<Item = Result<Progress, ProxyError>> + Send>> =
            if turn.tools.is_some() {
                Box::pin(self.tool_rounds(turn, delivery, ctx))
            } else {
                Box::pin(self.attempts(turn, delivery, ctx, None))
            };
        let keepalive = match delivery {
            Delivery::Whole => {
                futures::pin_mut!(attempts);
                let mut events = Vec::new();
                while let Some(item) = attempts.next().await {
                    if let Progress::Event(ev) = item? {
                        events.push(ev);
                    }
                }
                return Ok(Answer::Whole(events));
            }
            Delivery::Stream { keepalive } => keepalive,
        };
        let mut attempts = Box::pin(attempts);
        // Wait for the first visible event, or for the keep-alive interval to pass after the
        // upstream was called: a failure before either is still an ordinary error.
        let mut deadline: Option<Instant> = None;
        let first = loop {
            let wait = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = attempts.next() => match item {
                    Some(Ok(Progress::UpstreamCalled)) => deadline = Some(Instant::now() + keepalive),
                    Some(Ok(Progress::Event(ev))) => break Streamed::Event(ev),
                    Some(Err(e)) => return Err(e),
                    None => return Err(ProxyError::MidStream(UpstreamError::EmptyAnswer)),
                },
                () = wait => break Streamed::KeepAlive,
            }
        };
        let rest = attempts.filter_map(|item| async move {
            match item {
                Ok(Progress::UpstreamCalled) => None,
                Ok(Progress::Event(ev)) => Some(Ok(Streamed::Event(ev))),
                Err(e) => Some(Err(e)),
            }
        });
        Ok(Answer::Stream(Box::pin(
            futures::stream::once(async move { Ok(first) }).chain(rest),
        )))
    }

    /// Runs `req` with failover. Streaming: events are forwarded from the first visible one
    /// on (invisible ones before it are held back), and a later failure is `MidStream`. Whole:
    /// the answer is collected first, so a failure anywhere may still fail over.
    /// `reading`: how the answer is read for tool calls, when tools are offered.
    #[expect(
        clippy::too_many_lines,
        reason = "the failover loop is one state machine inside `stream!`: its yields and \
                  `continue 'accounts` / `continue 'chat` cannot move into helpers"
    )]
    fn attempts(
        self: &Arc<Self>,
        req: Turn,
        delivery: Delivery,
        ctx: RunContext,
        reading: Option<Reading>,
    ) -> impl Stream<Item = Result<Progress, ProxyError>> + Send + 'static {
        let this = Arc::clone(self);
        let buffered = delivery == Delivery::Whole;
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
                let uploads = if req.attachments.is_empty() {
                    Vec::new()
                } else {
                    let scope = f.passthrough.is_none().then_some(account.id.as_str());
                    match this.uploader.uploads(&creds, scope, &req).await {
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
                            drop(ChatCleanup::new(&this.upstream, &creds, id));
                        }
                        this.prewarm.refill(&this.upstream, &account.id, &creds, &req);
                        ready
                    };
                    let created = match prewarmed {
                        Some(id) => Ok(id),
                        None => this.upstream.create_chat(&creds, &req).await,
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
                    let _cleanup = ChatCleanup::new(&this.upstream, &creds, chat_id.clone());
                    if !announced {
                        announced = true;
                        yield Ok(Progress::UpstreamCalled);
                    }
                    if req.chat_type == ChatType::Video {
                        let task = match this.upstream.start_video(&creds, &req, &chat_id, &uploads).await {
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
                                yield Ok(Progress::Event(AnswerEvent::Text(format!("[video]({url})"))));
                                yield Ok(Progress::Event(AnswerEvent::Usage(usage)));
                                yield Ok(Progress::Event(AnswerEvent::Finish(Finish::Stop)));
                            }
                            Err(e) => {
                                tracing::warn!(account = %account.id, task = %task, error = %e, "video task failed");
                                f.last = Some(e);
                                yield Err(f.give_up(this.pool()));
                            }
                        }
                        return;
                    }
                    let mut events = match this.upstream.complete(&creds, &req, &chat_id, &uploads).await {
                        // With tools offered, calls are read out of the text here, so that
                        // what counts as the first visible event is the text or call a
                        // client would see.
                        Ok(events) => match &reading {
                            Some(reading) => crate::tools::answer::read_calls(reading.clone(), events),
                            None => events,
                        },
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
                    let mut usage = TokenUsage::default();
                    while let Some(item) = events.next().await {
                        match item {
                            Ok(ev) => {
                                let done = matches!(ev, AnswerEvent::Finish(_));
                                match &ev {
                                    AnswerEvent::Usage(u) => usage = *u,
                                    AnswerEvent::Finish(_) => {
                                        f.succeeded(&this, &account, ctx.key_id.as_deref(), usage);
                                    }
                                    _ => {}
                                }
                                // Held back: everything while buffering, and what a client
                                // would not see until the first event it would.
                                if buffered || (!committed && !ev.is_visible() && !done) {
                                    held.push(ev);
                                    if !done {
                                        continue;
                                    }
                                } else {
                                    committed = true;
                                    held.push(ev);
                                }
                                for ev in held.drain(..) {
                                    yield Ok(Progress::Event(ev));
                                }
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
            match self.upstream.task_status(creds, task).await {
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
    /// A password account whose token was rejected: signed in again and tried once more
    /// before failing over (the upstream may have forgotten its tokens in a restart).
    sign_in_again: Option<Arc<Account>>,
    signed_in_again: bool,
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
            sign_in_again: None,
            signed_in_again: false,
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
        if let Some(account) = self.sign_in_again.take() {
            self.tried.push(account.id.clone());
            if accounts.sign_in(&account).await.is_ok() {
                let others = |a: &Account| a.id != account.id;
                if let Ok(l) = accounts.lease(model, sticky, &others).await {
                    return Ok(l);
                }
            }
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
        if matches!(err, UpstreamError::Auth(_))
            && self.passthrough.is_none()
            && !self.signed_in_again
            && accounts.claim_sign_in_again(account)
        {
            self.signed_in_again = true;
            self.tried.retain(|id| *id != account.id);
            self.sign_in_again = Some(Arc::clone(account));
            self.last = Some(err);
            return Ok(());
        }
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
    job: Option<(Arc<dyn Upstream>, Credentials, String)>,
}

impl ChatCleanup {
    fn new(upstream: &Arc<dyn Upstream>, creds: &Credentials, chat_id: String) -> Self {
        let enabled = upstream.habits().cleanup;
        Self {
            job: enabled.then(|| (Arc::clone(upstream), creds.clone(), chat_id)),
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
