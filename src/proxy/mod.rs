//! The one door to the upstream: lease an account → create a chat → send → peek for the first
//! visible event → fail over to the next account while nothing has been sent. The whole
//! first-byte policy lives here: invisible events are held back, a stream waits for its first
//! visible event (or sends a keep-alive once the upstream is slow), an answer that ends with
//! nothing is an error, and failover happens only before the first visible byte. A request
//! that continues an earlier answer's chat sends only its new tail there first, and falls back
//! to a new chat with the whole conversation on any failure before the first byte
//! (`continuation`).

pub mod catalog;
mod continuation;
mod failover;
mod format;
pub mod prewarm;
#[cfg(test)]
mod tests;
mod tools;

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

pub use self::continuation::Continuation;
use self::continuation::{Kept, Resume};
use self::failover::Failover;
use self::prewarm::ChatPrewarm;
use crate::accounts::{AccountManager, Pool};
use crate::config::{MediaConfig, Secret};
use crate::conversation::{self, AnswerEvent, ChatType, Finish, InvalidRequest, TokenUsage};
use crate::keys::usage::UsageRecorder;
use crate::media::Uploader;
use crate::metrics::{self, Metrics};
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
    /// After the last event: the answered chat, to file for continuation.
    Kept(Kept),
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
    /// The answer was not the JSON the format asked for, also when asked again.
    #[error("the answer did not follow the requested format, also when asked again: {0}")]
    FormatNotFollowed(String),
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
    metrics: Arc<Metrics>,
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
    /// Set by [`RunContext::continuing`]: the request may continue an earlier answer's chat,
    /// and its answer is kept to be continued.
    pub continuation: Option<Continuation>,
}

impl Proxy {
    pub fn new(
        upstream: Arc<dyn Upstream>,
        accounts: Arc<AccountManager>,
        catalog: Catalog,
        usage: Arc<UsageRecorder>,
        uploader: Uploader,
        media: MediaConfig,
        metrics: Arc<Metrics>,
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
            metrics,
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

    /// Credentials for a client to upload one file itself, made with the first usable account
    /// whose site takes uploads.
    pub async fn upload_ticket(
        &self,
        filename: &str,
        size: u64,
        filetype: &str,
    ) -> Result<StsToken, ProxyError> {
        let mut last = None;
        for account in self.pool().accounts().iter().filter(|a| a.is_usable()) {
            match self
                .upstream
                .upload_ticket(&account.credentials(), filename, size, filetype)
                .await
            {
                Err(e @ UpstreamError::Unsupported(_)) => last = Some(e),
                done => return done.map_err(ProxyError::Call),
            }
        }
        Err(last.map_or(ProxyError::NoAccount, ProxyError::Call))
    }

    /// Uploads a file with the first usable account whose site takes uploads (which fills
    /// that account's upload cache), or does nothing when there is none.
    pub async fn upload_ahead(
        &self,
        kind: crate::conversation::MediaKind,
        blob: &crate::conversation::Blob,
    ) -> Result<Option<Uploaded>, ProxyError> {
        for account in self.pool().accounts().iter().filter(|a| a.is_usable()) {
            match self
                .uploader
                .upload(&account.credentials(), Some(&account.id), kind, blob)
                .await
            {
                Err(UpstreamError::Unsupported(_)) => {}
                done => return done.map(Some).map_err(ProxyError::Call),
            }
        }
        Ok(None)
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
        metrics::request::model(&turn.model);
        let remembering = ctx.clone();
        let attempts: Pin<Box<dyn Stream<Item = Result<Progress, ProxyError>> + Send>> =
            if turn.tools.is_some() {
                Box::pin(self.tool_rounds(turn, delivery, ctx))
            } else if turn.format != crate::conversation::ResponseFormat::Text {
                Box::pin(self.format_rounds(turn, ctx))
            } else {
                Box::pin(self.attempts(turn, delivery, ctx, None))
            };
        // Answers kept for continuation are noted on their way to the client.
        let attempts: Pin<Box<dyn Stream<Item = Result<Progress, ProxyError>> + Send>> =
            if self.keeps(&remembering) {
                Box::pin(self.remember(attempts, &remembering))
            } else {
                attempts
            };
        let keepalive = match delivery {
            Delivery::Whole => {
                futures::pin_mut!(attempts);
                let mut events = Vec::new();
                while let Some(item) = attempts.next().await {
                    match item? {
                        Progress::Event(ev) => events.push(ev),
                        Progress::UpstreamCalled => metrics::request::upstream_called(),
                        Progress::Kept(_) => {}
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
                    Some(Ok(Progress::UpstreamCalled)) => {
                        metrics::request::upstream_called();
                        deadline = Some(Instant::now() + keepalive);
                    }
                    Some(Ok(Progress::Kept(_))) => {}
                    Some(Ok(Progress::Event(ev))) => break Streamed::Event(ev),
                    Some(Err(e)) => return Err(e),
                    None => return Err(ProxyError::MidStream(UpstreamError::EmptyAnswer)),
                },
                () = wait => break Streamed::KeepAlive,
            }
        };
        if matches!(first, Streamed::Event(_)) {
            metrics::request::visible_event();
        }
        let rest = attempts.filter_map(|item| async move {
            match item {
                Ok(Progress::UpstreamCalled | Progress::Kept(_)) => None,
                Ok(Progress::Event(ev)) => {
                    metrics::request::visible_event();
                    Some(Ok(Streamed::Event(ev)))
                }
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
        // Each attempt gets a span of its own under the request's (exported as a child span
        // with the `otlp` feature). It is never entered: the stream yields inside it.
        let request_span = tracing::Span::current();
        async_stream::stream! {
            let mut f = Failover::new(&this.accounts, ctx.passthrough.as_ref(), req.chat_type.feature(), &this.metrics);
            let mut announced = false;
            let keeps = this.keeps(&ctx);
            let mut resume: Option<Resume> = this.resumable(&req, &ctx).await;
            'accounts: loop {
                let leased = match resume.as_mut().and_then(|r| r.lease.take()) {
                    Some(l) => {
                        f.tried.push(l.account().id.clone());
                        Ok(l)
                    }
                    None => f.lease(&this.accounts, &req.model, &req.sites, ctx.sticky_key.as_deref()).await,
                };
                let lease = match leased {
                    Ok(l) => l,
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                };
                let account = Arc::clone(lease.account());
                let creds = account.credentials();
                // The whole conversation's uploads, made once a new chat needs them.
                let mut uploads: Option<Vec<Uploaded>> = None;
                let mut busy_retried = false;
                'chat: loop {
                    // A continuation is tried first and once: any failure before the first
                    // byte falls back to a new chat on the same account (docs/upstream.md §5.5).
                    let resumed = resume.take().filter(|r| r.entry.account_id == account.id);
                    let continued = resumed.is_some();
                    let attempt = tracing::error_span!(
                        parent: &request_span,
                        "upstream_attempt",
                        account = %account.id,
                        model = %req.model,
                        continued,
                        outcome = tracing::field::Empty,
                        error_class = tracing::field::Empty,
                    );
                    let (turn, chat_id, mut cleanup, sent_uploads) = if let Some(r) = resumed {
                        let sent_uploads = if r.turn.attachments.is_empty() {
                            Vec::new()
                        } else {
                            match this.uploader.uploads(&creds, Some(account.id.as_str()), &r.turn).await {
                                Ok(files) => files,
                                Err(e) => {
                                    tracing::info!(account = %account.id, error = %e, "continuation failed; starting a new chat");
                                    this.metrics.continuation_fallback("upload_failed");
                                    continue 'chat;
                                }
                            }
                        };
                        (Cow::Owned(r.turn), r.entry.chat_id, None, sent_uploads)
                    } else {
                        let ready = match uploads.take() {
                            Some(files) => files,
                            None if req.attachments.is_empty() => Vec::new(),
                            None => {
                                let scope = f.passthrough.is_none().then_some(account.id.as_str());
                                match this.uploader.uploads(&creds, scope, &req).await {
                                    Ok(files) => files,
                                    Err(e) => {
                                        attempt_failed(&attempt, &e);
                                        if let Err(fin) = f.failed(&this.accounts, &account, e) {
                                            yield Err(fin);
                                            return;
                                        }
                                        continue 'accounts;
                                    }
                                }
                            }
                        };
                        uploads = Some(ready.clone());
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
                                attempt_failed(&attempt, &e);
                                if let Err(fin) = f.failed(&this.accounts, &account, e) {
                                    yield Err(fin);
                                    return;
                                }
                                continue 'accounts;
                            }
                        };
                        let cleanup = ChatCleanup::new(&this.upstream, &creds, chat_id.clone());
                        (Cow::Borrowed(&req), chat_id, Some(cleanup), ready)
                    };
                    if !announced {
                        announced = true;
                        yield Ok(Progress::UpstreamCalled);
                    }
                    if turn.chat_type == ChatType::Video {
                        let task = match this.upstream.start_video(&creds, &turn, &chat_id, &sent_uploads).await {
                            Ok(task) => task,
                            Err(UpstreamError::ChatInProgress) if !busy_retried => {
                                busy_retried = true;
                                continue 'chat;
                            }
                            Err(e) => {
                                attempt_failed(&attempt, &e);
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
                    let (answer_id, answer_chat);
                    let mut sent = Some(Instant::now());
                    let mut events = match this.upstream.complete(&creds, &turn, &chat_id, &sent_uploads).await {
                        // With tools offered, calls are read out of the text here, so that
                        // what counts as the first visible event is the text or call a
                        // client would see.
                        Ok(done) => {
                            answer_id = done.answer_id;
                            answer_chat = done.chat_id;
                            match &reading {
                                Some(reading) => crate::tools::answer::read_calls(reading.clone(), done.events),
                                None => done.events,
                            }
                        }
                        Err(e) if continued => {
                            attempt_failed(&attempt, &e);
                            tracing::info!(account = %account.id, class = e.class(), error = %e, "continuation failed; starting a new chat");
                            this.metrics.continuation_fallback(e.class());
                            continue 'chat;
                        }
                        Err(UpstreamError::ChatInProgress) if !busy_retried => {
                            attempt_failed(&attempt, &UpstreamError::ChatInProgress);
                            tracing::info!(account = %account.id, "chat in progress; retrying in a new chat");
                            busy_retried = true;
                            continue 'chat;
                        }
                        Err(e) => {
                            attempt_failed(&attempt, &e);
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
                        if let Some(t) = sent.take() {
                            this.metrics.upstream_first_byte(&turn.model, t.elapsed());
                        }
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
                            Err(e) if !committed && continued => {
                                attempt_failed(&attempt, &e);
                                tracing::info!(account = %account.id, class = e.class(), error = %e, "continuation failed; starting a new chat");
                                this.metrics.continuation_fallback(e.class());
                                continue 'chat;
                            }
                            Err(UpstreamError::ChatInProgress) if !committed && !busy_retried => {
                                attempt_failed(&attempt, &UpstreamError::ChatInProgress);
                                tracing::info!(account = %account.id, "chat in progress; retrying in a new chat");
                                busy_retried = true;
                                continue 'chat;
                            }
                            Err(e) if !committed => {
                                attempt_failed(&attempt, &e);
                                drop(events);
                                if let Err(fin) = f.failed(&this.accounts, &account, busy_to_transient(e)) {
                                    yield Err(fin);
                                    return;
                                }
                                continue 'accounts;
                            }
                            Err(e) => {
                                attempt_failed(&attempt, &e);
                                tracing::warn!(account = %account.id, class = e.class(), error = %e, "upstream failed mid-answer");
                                if f.passthrough.is_none() {
                                    f.report(&this.accounts, &account, &e);
                                }
                                yield Err(ProxyError::MidStream(e));
                                return;
                            }
                        }
                    }
                    metrics::request::upstream_ended();
                    attempt.record("outcome", "answered");
                    // A site that names the conversation only in its answer: that is the chat
                    // to continue and to delete.
                    let chat_id = match answer_chat.get() {
                        Some(id) => {
                            if let Some(c) = cleanup.as_mut() {
                                c.rename(id);
                            }
                            id.to_owned()
                        }
                        None => chat_id,
                    };
                    if keeps {
                        this.metrics.continuation_chat(continued);
                    }
                    // The answered chat is filed for continuation (and then not deleted).
                    if keeps && let Some(id) = answer_id.get() {
                        yield Ok(Progress::Kept(Kept {
                            account_id: account.id.clone(),
                            chat_id,
                            response_id: id.to_owned(),
                            cleanup: cleanup.take(),
                        }));
                    }
                    drop(cleanup);
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

/// Marks an upstream attempt's span as failed, with the failure's class.
fn attempt_failed(span: &tracing::Span, e: &UpstreamError) {
    span.record("outcome", "failed");
    span.record("error_class", e.class());
}

fn busy_to_transient(e: UpstreamError) -> UpstreamError {
    match e {
        UpstreamError::ChatInProgress => {
            UpstreamError::Transient("the chat was still in progress twice".into())
        }
        other => other,
    }
}

/// Deletes the upstream chat in the background once the attempt is over, however it ends
/// (unless disarmed: a chat kept for continuation).
struct ChatCleanup {
    job: Option<(Arc<dyn Upstream>, Credentials, String)>,
}

impl std::fmt::Debug for ChatCleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatCleanup")
            .field("chat", &self.job.as_ref().map(|(_, _, id)| id))
            .finish()
    }
}

impl ChatCleanup {
    fn new(upstream: &Arc<dyn Upstream>, creds: &Credentials, chat_id: String) -> Self {
        let enabled = upstream.habits().cleanup;
        Self {
            job: enabled.then(|| (Arc::clone(upstream), creds.clone(), chat_id)),
        }
    }
}

impl ChatCleanup {
    /// The chat stays.
    fn disarm(&mut self) {
        self.job = None;
    }

    /// The chat to delete is `chat_id` (the upstream named it in its answer).
    fn rename(&mut self, chat_id: &str) {
        if let Some((_, _, id)) = self.job.as_mut() {
            chat_id.clone_into(id);
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
