//! The chat completion request as clients send it.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/chat/completions`. Fields that change nothing upstream (temperature, top_p, …)
/// are accepted and ignored, as the web chat has no such knobs.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub enable_thinking: Option<bool>,
    #[serde(default)]
    pub thinking_budget: Option<u64>,
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    #[serde(default)]
    pub reasoning: Option<ReasoningParam>,
    #[serde(default)]
    pub thinking: Option<ThinkingParam>,
    /// Qwen's own chat type (`t2t`, `search`, …), accepted as an extension.
    #[serde(default)]
    pub chat_type: Option<String>,
    /// Image or video size for generation (`1024x1024`, `16:9`), an extension.
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    // Read leniently (as any JSON value) so that a value the web chat would ignore anyway never
    // turns a request away.
    #[serde(default)]
    pub temperature: Option<Value>,
    #[serde(default)]
    pub top_p: Option<Value>,
    #[serde(default)]
    pub max_tokens: Option<Value>,
    #[serde(default)]
    pub max_completion_tokens: Option<Value>,
    #[serde(default)]
    pub stop: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<Value>,
    #[serde(default)]
    pub response_format: Option<Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default, deserialize_with = "null_as_default")]
    pub include_usage: bool,
}

/// `reasoning: {"effort": "low"}` (Responses-style, also sent by some chat clients).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReasoningParam {
    #[serde(default)]
    pub effort: Option<String>,
}

/// `thinking: {"type": "enabled", "budget_tokens": 1024}` (Anthropic-style).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ThinkingParam {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub budget_tokens: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Replayed by DeepSeek-style clients; accepted and ignored.
    #[serde(default)]
    pub reasoning_content: Option<Value>,
    #[serde(default)]
    pub tool_calls: Option<Value>,
    /// On a `tool` message: the call it answers.
    #[serde(default)]
    pub tool_call_id: Option<Value>,
    /// On a `tool` or `function` message: the tool's name.
    #[serde(default)]
    pub name: Option<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    ImageUrl {
        #[serde(default)]
        image_url: Value,
    },
    InputAudio {
        #[serde(default)]
        input_audio: Value,
    },
    VideoUrl {
        #[serde(default)]
        video_url: Value,
    },
    File {
        #[serde(default)]
        file: Value,
    },
    // Never serialized: `skip_serializing` only keeps this fallback out of the OpenAPI schema.
    #[serde(other, skip_serializing)]
    Unknown,
}

impl ContentPart {
    /// The part's `type` as clients spell it, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ContentPart::Text { .. } => "text",
            ContentPart::ImageUrl { .. } => "image_url",
            ContentPart::InputAudio { .. } => "input_audio",
            ContentPart::VideoUrl { .. } => "video_url",
            ContentPart::File { .. } => "file",
            ContentPart::Unknown => "unknown",
        }
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
