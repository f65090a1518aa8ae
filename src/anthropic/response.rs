//! The Messages answer as Anthropic clients read it: the message object, its content blocks,
//! the stream's events and the error envelope (pure serde, no IO).

use serde::Serialize;
use utoipa::ToSchema;

/// A whole message (`POST /v1/messages` without `stream`), and the one `message_start` carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageOut<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: &'a str,
    pub content: Vec<BlockOut>,
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockOut {
    Thinking {
        thinking: String,
        signature: String,
    },
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    Refusal,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = AnthropicUsage)]
#[expect(
    clippy::struct_field_names,
    reason = "Anthropic's field names, as clients read them"
)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

/// The `data:` of one stream event; its `type` is also the SSE `event:` name.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AnthropicStreamEvent)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent<'a> {
    MessageStart {
        message: MessageOut<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: BlockOut,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: Usage,
    },
    MessageStop,
}

impl StreamEvent<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[expect(
    clippy::enum_variant_names,
    reason = "Anthropic's delta type names, as clients read them"
)]
pub enum BlockDelta<'a> {
    ThinkingDelta { thinking: &'a str },
    SignatureDelta { signature: &'a str },
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDelta {
    pub stop_reason: StopReason,
    pub stop_sequence: Option<String>,
}

/// `{"type":"error","error":{"type":…,"message":…}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AnthropicErrorEnvelope)]
pub struct ErrorEnvelope<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub error: ErrorBody<'a>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AnthropicErrorBody)]
pub struct ErrorBody<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: &'a str,
}

/// `POST /v1/messages/count_tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCount {
    pub input_tokens: u64,
}

/// `GET /v1/models` for a client that sent `anthropic-version`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AnthropicModelList)]
pub struct ModelList {
    pub data: Vec<ModelInfo>,
    pub has_more: bool,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AnthropicModelInfo)]
pub struct ModelInfo {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub display_name: String,
    /// RFC 3339.
    pub created_at: String,
}
