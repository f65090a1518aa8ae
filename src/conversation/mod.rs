//! The neutral conversation model: what a client asked (messages, parts, tool calls and
//! results, options) and what the answer is made of (answer events). Each client surface
//! translates into it and out of it; the proxy and every upstream see only these types. No IO,
//! and no type of any client surface or upstream.

pub mod cut;
pub mod thread;

use std::sync::Arc;

use bytes::Bytes;

/// One conversation to answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// The model as the client named it (aliases and suffixes are resolved behind the proxy).
    pub model: String,
    pub messages: Vec<Message>,
    pub options: Options,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
    /// The assistant's reasoning, when a client replays it.
    pub reasoning: Option<String>,
    /// The tools an assistant turn called.
    pub tool_calls: Vec<ToolCall>,
}

impl Message {
    pub fn new(role: Role, parts: Vec<Part>) -> Self {
        Self {
            role,
            parts,
            reasoning: None,
            tool_calls: Vec::new(),
        }
    }

    /// A message of one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self::new(role, vec![Part::Text(text.into())])
    }

    /// The text parts (and the text of tool results) joined with newlines.
    pub fn joined_text(&self) -> String {
        let mut texts: Vec<&str> = Vec::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => texts.push(t),
                Part::ToolResult(r) => texts.extend(r.content.iter().filter_map(|c| match c {
                    Part::Text(t) => Some(t.as_str()),
                    _ => None,
                })),
                Part::Media(_) => {}
            }
        }
        texts.join("\n")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    /// An image, audio clip, video or document.
    Media(Media),
    /// The answer to an assistant's tool call (in a `Tool` message).
    ToolResult(ToolResult),
}

/// A tool the assistant called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text, as the model wrote them.
    pub arguments: String,
}

/// What a tool answered.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolResult {
    pub call_id: String,
    pub name: Option<String>,
    pub is_error: bool,
    /// Text and images.
    pub content: Vec<Part>,
}

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON schema.
    pub parameters: Option<serde_json::Value>,
    /// Arguments must follow the schema exactly (no properties it does not name).
    pub strict: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    /// Some tool must be called.
    Required,
    /// This tool must be called.
    Named(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ResponseFormat {
    #[default]
    Text,
    JsonObject,
    /// A JSON schema the answer must follow.
    JsonSchema(String),
}

/// How the answer should be produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub thinking: Thinking,
    /// Whether reasoning reaches the client at all (hidden reasoning is never sent, and never
    /// counts as the first byte of an answer).
    pub reasoning_shown: bool,
    /// What kind of answer: a chat, a web search, an image, a video. `None`: the model decides.
    pub chat_type: Option<ChatType>,
    /// Image or video size as the client wrote it (`1024x1024`, `16:9`).
    pub size: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: ResponseFormat,
    /// A stable key for the end user (OpenAI's `user`): requests with the same key stay on one
    /// account.
    pub session: Option<String>,
}

/// The client's thinking switch: `None` leaves it to the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thinking {
    pub enabled: Option<bool>,
    pub budget: Option<u64>,
}

impl Thinking {
    /// The final switch for a model that thinks by default (`default`) or always (`must`),
    /// and the budget if one above zero was given.
    pub fn decide(self, default: bool, must: bool) -> (bool, Option<u64>) {
        (
            must || self.enabled.unwrap_or(default),
            self.budget.filter(|b| *b > 0),
        )
    }
}

/// What kind of answer a request asks for. The names are the web chat's, which clients may also
/// name in the `chat_type` extension.
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

/// The four kinds of media.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
}

/// One piece of media.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    pub kind: MediaKind,
    pub source: MediaSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaSource {
    /// The bytes themselves.
    Blob(Arc<Blob>),
    /// A URL handed to the upstream as is.
    Url(String),
}

/// Decoded media bytes with what an upload needs to know about them.
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

/// A request we refuse, with what a client needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest {
    pub message: String,
    pub param: Option<String>,
    pub code: &'static str,
}

impl InvalidRequest {
    pub fn new(message: impl Into<String>, param: impl Into<String>, code: &'static str) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
            code,
        }
    }

    /// A `size` that maps to none of the site's ratios.
    pub fn bad_size(size: &str) -> Self {
        Self::new(
            format!(
                "size {size:?} is not supported; use WIDTHxHEIGHT such as 1024x1024, or a ratio 1:1, 4:3, 3:4, 16:9, 9:16"
            ),
            "size",
            "invalid_value",
        )
    }
}

/// What the answer stream carries, in order: reasoning, text, sources and tool calls as they
/// arrive, then usage, then exactly one `Finish`. A failure is the stream's error item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerEvent {
    Reasoning(String),
    Text(String),
    /// Web-search sources found since the last such event, numbered on from `first`.
    Sources {
        first: usize,
        sources: Vec<Source>,
    },
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    ToolCallArguments {
        index: usize,
        delta: String,
    },
    ToolCallEnd {
        index: usize,
    },
    Usage(TokenUsage),
    Finish(Finish),
}

impl AnswerEvent {
    /// True for an event a client would see: non-empty text, a source with a URL, a tool call.
    pub fn is_visible(&self) -> bool {
        match self {
            AnswerEvent::Reasoning(t) | AnswerEvent::Text(t) => !t.is_empty(),
            AnswerEvent::Sources { sources, .. } => {
                sources.iter().any(|s| !s.url.trim().is_empty())
            }
            AnswerEvent::ToolCallStart { .. }
            | AnswerEvent::ToolCallArguments { .. }
            | AnswerEvent::ToolCallEnd { .. } => true,
            AnswerEvent::Usage(_) | AnswerEvent::Finish(_) => false,
        }
    }
}

/// One web-search result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub url: String,
    pub title: Option<String>,
    pub hostname: Option<String>,
}

/// Why an answer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ContentFilter,
    ToolCalls,
}

/// Token counts as the upstream reports them (running totals; the last report wins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub reasoning: Option<u64>,
}

impl TokenUsage {
    /// Both counts together (two upstream rounds for one answer).
    #[must_use]
    pub fn plus(self, other: TokenUsage) -> TokenUsage {
        TokenUsage {
            input: self.input + other.input,
            output: self.output + other.output,
            reasoning: match (self.reasoning, other.reasoning) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
            },
        }
    }
}
