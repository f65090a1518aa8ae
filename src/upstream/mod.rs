//! The upstream seam: `trait Upstream`, all that the proxy, accounts, prewarm and media rooms
//! ask of a web chat; the `Turn` one request sends; the errors every upstream shares.
//! chat.qwen.ai is the first implementation, in `qwen/`; the Tongyi web chat the second, in
//! `tongyi/`; `site.rs` puts them behind one door.

pub mod error;
pub mod qwen;
#[cfg(test)]
pub mod scripted;
pub mod site;
pub mod tongyi;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

pub use error::UpstreamError;
pub use qwen::files::TaskState;
pub use qwen::oss::StsToken;
pub use qwen::wire::UpstreamModel;
pub use site::{Site, Sites};

use crate::config::Secret;
use crate::conversation::{self, AnswerEvent, Blob, ChatType, InvalidRequest, Media, MediaKind};

/// The credentials one upstream call runs with: an account's, or a caller's own.
#[derive(Clone)]
pub struct Credentials {
    pub token: Secret,
    /// Browser cookies to send along (their `token` is replaced by the current one).
    pub cookies: Option<Secret>,
    pub proxy: Option<String>,
    /// The web chat the credentials belong to (calls go to its upstream).
    pub site: Site,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token)
            .field("cookies", &self.cookies)
            .field(
                "proxy",
                &self.proxy.as_deref().map(crate::config::mask_url_password),
            )
            .field("site", &self.site)
            .finish()
    }
}

/// What an upload produced, enough to reference it in a message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Uploaded {
    pub file_id: String,
    /// The file's (often pre-signed) URL.
    pub file_url: String,
    /// The object key; its first segment is the account's user id.
    pub file_path: String,
    /// Unix milliseconds of the upload.
    pub uploaded_at: i64,
}

/// A completion's answer, decoded: answer events ending with `Finish`, or one error.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<AnswerEvent, UpstreamError>> + Send>>;

/// The model a request runs on: a client's model id resolved against the model list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedModel {
    pub upstream_id: String,
    pub thinking: bool,
    pub search: bool,
    pub must_think: bool,
    /// Set by a generation suffix (`-image`, `-image-edit`, `-video`).
    pub media: Option<ChatType>,
    /// The model's context length in tokens, when the model list gives one.
    pub context_tokens: Option<u64>,
    /// The sites that serve the model (empty: any).
    pub sites: Vec<Site>,
}

/// What one request sends to a web chat, made from the conversation by the upstream's own
/// [`Upstream::prepare`] (or directly, for image and video generation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    /// The upstream model id (suffixes and aliases already applied).
    pub model: String,
    /// The conversation as the one message the web chat takes.
    pub prompt: String,
    pub thinking: bool,
    pub thinking_budget: Option<u64>,
    pub chat_type: ChatType,
    /// Media for the message, uploaded with the account that runs the chat.
    pub attachments: Vec<Media>,
    /// Aspect ratio (`"16:9"`) for generated images and videos.
    pub size: Option<&'static str>,
    /// Whether reasoning is decoded at all (hidden reasoning is dropped as it arrives).
    pub reasoning_shown: bool,
    /// The tools offered, when the answer is to be read for calls.
    pub tools: Option<std::sync::Arc<crate::tools::Plan>>,
    /// The conversation's new tail as a continued chat takes it, when the conversation can
    /// continue an earlier answer's chat (docs/upstream.md §5.5).
    pub tail: Option<Tail>,
    /// On a turn sent into a continued chat: the upstream id of the answer it follows.
    pub parent: Option<String>,
    /// The answer's format (a JSON object or schema): the model is told it, and the proxy
    /// checks the answer (tools/format.rs).
    pub format: conversation::ResponseFormat,
    /// Only accounts of these sites may run the turn (empty: any site).
    pub sites: Vec<Site>,
}

/// The messages after a conversation's last assistant message, written as the flattened
/// prompt writes them, and their media.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    pub prompt: String,
    pub attachments: Vec<Media>,
}

impl Turn {
    /// A text chat with no attachments.
    pub fn text(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            prompt: prompt.into(),
            thinking: false,
            thinking_budget: None,
            chat_type: ChatType::Text,
            attachments: Vec::new(),
            size: None,
            reasoning_shown: false,
            tools: None,
            tail: None,
            parent: None,
            format: conversation::ResponseFormat::Text,
            sites: Vec::new(),
        }
    }

    /// The turn that continues a chat after the answer `parent`: only the tail is sent.
    pub fn continuing(&self, parent: &str) -> Option<Turn> {
        let tail = self.tail.as_ref()?;
        Some(Turn {
            prompt: tail.prompt.clone(),
            attachments: tail.attachments.clone(),
            tail: None,
            parent: Some(parent.to_owned()),
            ..self.clone()
        })
    }
}

/// The upstream's id of the answer being streamed, known once the answer's first event has
/// arrived: the parent a continuation of its chat names (docs/upstream.md §5.5).
#[derive(Clone, Debug, Default)]
pub struct AnswerId(std::sync::Arc<std::sync::OnceLock<String>>);

impl AnswerId {
    /// Sets the id; the first one set stays.
    pub fn set(&self, id: &str) {
        let _ = self.0.set(id.to_owned());
    }

    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// A completion under way: its answer events, and the id of the answer once known.
pub struct Completion {
    pub events: EventStream,
    pub answer_id: AnswerId,
    /// The site's id of the conversation the answer landed in, once known, when the site
    /// names it only in the answer (Tongyi opens a session with its first message); unset:
    /// the chat the completion was sent in.
    pub chat_id: AnswerId,
}

impl Completion {
    /// A completion whose answer has no id (it cannot be continued).
    pub fn anonymous(events: EventStream) -> Self {
        Self {
            events,
            answer_id: AnswerId::default(),
            chat_id: AnswerId::default(),
        }
    }
}

/// Chat-lifecycle settings the proxy follows for this upstream.
#[derive(Clone, Copy, Debug)]
pub struct ChatHabits {
    /// Delete each chat once its attempt is over (a chat kept for continuation: once its
    /// last conversation entry expires or is replaced).
    pub cleanup: bool,
    /// Keep answered chats to continue for this long (`CONVERSATION_TTL_SECONDS`); `None`:
    /// continuation is off (`CONVERSATION_CONTINUATION=false`).
    pub continuation: Option<Duration>,
    /// Chats to create ahead of time per account, model and chat type, and how long one keeps.
    pub prewarm: usize,
    pub prewarm_ttl: Duration,
}

/// A web chat the proxy can run conversations on. Calls carry the account's credentials; none
/// of them retries on another account (that is the proxy's work).
#[async_trait::async_trait]
pub trait Upstream: Send + Sync {
    /// The conversation as this upstream sends it, for the resolved model.
    fn prepare(
        &self,
        req: &conversation::Request,
        model: &ResolvedModel,
    ) -> Result<Turn, InvalidRequest>;

    /// The turn that asks again after `answer` fell short of what was asked: the same
    /// conversation, the model's `answer`, and `correction` as the next user message.
    fn follow_up(&self, turn: &Turn, answer: &str, correction: &str) -> Turn;

    fn habits(&self) -> ChatHabits;

    /// Signs in with e-mail and password (through `proxy` if given) → a token.
    async fn sign_in(
        &self,
        email: &str,
        password: &Secret,
        proxy: Option<&str>,
    ) -> Result<Secret, UpstreamError>;

    /// Whether the upstream still accepts the credential.
    async fn check_token(&self, creds: &Credentials) -> Result<(), UpstreamError>;

    async fn models(
        &self,
        creds: Option<&Credentials>,
    ) -> Result<Vec<UpstreamModel>, UpstreamError>;

    /// A new chat → its id.
    async fn create_chat(&self, creds: &Credentials, turn: &Turn) -> Result<String, UpstreamError>;

    /// Sends the turn in the chat (after `turn.parent` when set, else as the chat's first
    /// message); `uploads` are the turn's blob attachments, uploaded with this account, in
    /// order.
    async fn complete(
        &self,
        creds: &Credentials,
        turn: &Turn,
        chat_id: &str,
        uploads: &[Uploaded],
    ) -> Result<Completion, UpstreamError>;

    /// Deletes a chat; one already gone counts as deleted.
    async fn delete_chat(&self, creds: &Credentials, chat_id: &str) -> Result<(), UpstreamError>;

    /// Puts one blob on the upstream for this account.
    async fn upload(
        &self,
        creds: &Credentials,
        kind: MediaKind,
        blob: &Blob,
    ) -> Result<Uploaded, UpstreamError>;

    /// When an upload stops being usable, if its URL says.
    fn upload_expiry(&self, up: &Uploaded) -> Option<std::time::SystemTime>;

    /// Credentials for a client to upload one file itself.
    async fn upload_ticket(
        &self,
        creds: &Credentials,
        filename: &str,
        size: u64,
        filetype: &str,
    ) -> Result<StsToken, UpstreamError>;

    /// Downloads generated media (at most `limit` bytes) → bytes and MIME type.
    async fn fetch_generated(
        &self,
        proxy: Option<&str>,
        url: &str,
        limit: usize,
    ) -> Result<(Bytes, String), UpstreamError>;

    /// Starts a video task in the chat → the task id to poll.
    async fn start_video(
        &self,
        creds: &Credentials,
        turn: &Turn,
        chat_id: &str,
        uploads: &[Uploaded],
    ) -> Result<String, UpstreamError>;

    async fn task_status(
        &self,
        creds: &Credentials,
        task: &str,
    ) -> Result<TaskState, UpstreamError>;
}
