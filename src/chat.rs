//! The internal request/answer model: each client surface translates into it and out of it,
//! so the proxy and the upstream client never see OpenAI (or any other client's) types.

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatType {
    Text,
    Search,
}

impl ChatType {
    /// The upstream's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::Text => "t2t",
            ChatType::Search => "search",
        }
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
