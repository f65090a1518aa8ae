//! The internal request/answer model: each client surface translates into it and out of it,
//! so the proxy and the upstream client never see OpenAI (or any other client's) types.

use std::sync::Arc;

use bytes::Bytes;

use crate::media::MediaKind;

/// One completion to run upstream, already validated and resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatRequest {
    /// The upstream model id (suffixes and aliases already applied).
    pub model: String,
    /// The whole conversation flattened into one user turn.
    pub prompt: String,
    pub thinking: bool,
    pub thinking_budget: Option<u64>,
    pub chat_type: ChatType,
    /// Media for the user turn, uploaded with the account that runs the chat.
    pub attachments: Vec<Attachment>,
    /// Aspect ratio (`"16:9"`) for generated images and videos.
    pub size: Option<&'static str>,
}

impl ChatRequest {
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
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatType {
    Text,
    Search,
    /// Text to image (`t2i`).
    Image,
    /// Edit of the last image in the conversation.
    ImageEdit,
    /// Text to video (`t2v`): a task that is polled, not a stream.
    Video,
}

impl ChatType {
    pub const ALL: [ChatType; 5] = [
        ChatType::Text,
        ChatType::Search,
        ChatType::Image,
        ChatType::ImageEdit,
        ChatType::Video,
    ];

    /// The upstream's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::Text => "t2t",
            ChatType::Search => "search",
            ChatType::Image => "t2i",
            ChatType::ImageEdit => "image_edit",
            ChatType::Video => "t2v",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The daily quota this kind of chat draws on, if it has its own.
    pub fn feature(self) -> Option<Feature> {
        match self {
            ChatType::Text | ChatType::Search => None,
            ChatType::Image | ChatType::ImageEdit => Some(Feature::Image),
            ChatType::Video => Some(Feature::Video),
        }
    }
}

/// A generation feature with its own upstream quota; a `RateLimited` answer cools the account
/// for that feature only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    Image,
    Video,
}

impl Feature {
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Image => "image",
            Feature::Video => "video",
        }
    }
}

/// One piece of media in the user turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub kind: MediaKind,
    pub source: MediaSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaSource {
    /// Bytes to upload with the account that runs the chat.
    Blob(Arc<Blob>),
    /// A URL handed to the upstream as is.
    Url(String),
}

/// Decoded media bytes with what the upload needs to know about them.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    pub bytes: Bytes,
    pub mime: String,
    pub filename: String,
    /// Lower-case hex SHA-256 of `bytes`: the upload cache key (with the account).
    pub sha256: String,
}

impl Blob {
    pub fn new(bytes: Bytes, mime: impl Into<String>, filename: impl Into<String>) -> Self {
        use sha2::Digest as _;
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        Self {
            bytes,
            mime: mime.into(),
            filename: filename.into(),
            sha256,
        }
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("len", &self.bytes.len())
            .field("mime", &self.mime)
            .field("filename", &self.filename)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// What the answer stream carries, in order: reasoning and content text as it arrives, then
/// exactly one `Done`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerEvent {
    Reasoning(String),
    Content(String),
    Done(TokenUsage),
}

impl AnswerEvent {
    /// True for an event a client would see (non-empty text).
    pub fn is_visible(&self) -> bool {
        match self {
            AnswerEvent::Reasoning(t) | AnswerEvent::Content(t) => !t.is_empty(),
            AnswerEvent::Done(_) => false,
        }
    }
}

/// Token counts as the upstream reports them (running totals; the last report wins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub reasoning: Option<u64>,
}
