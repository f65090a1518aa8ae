//! The Responses request as clients send it (`POST /v1/responses`): typed where the proxy
//! reads a field, `Value` where a field is echoed back as given (tools, tool choice, metadata).
//! Input items are read one by one in `translate_request`, so that an error names its item.

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResponsesRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub input: Option<Input>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub reasoning: Option<Reasoning>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default)]
    pub text: Option<TextConfig>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub safety_identifier: Option<String>,
    #[serde(default)]
    pub prompt_cache_key: Option<String>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub include: Option<Vec<String>>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub background: Option<bool>,
    /// OpenAI's server-side conversations; not offered here.
    #[serde(default)]
    pub conversation: Option<Value>,
}

/// `input`: one user message as a string, or a list of items.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ResponseInput)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    /// Read one by one as [`Item`]s (so that an error names its item).
    #[schema(value_type = Vec<Item>)]
    Items(Vec<Value>),
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq, ToSchema)]
#[schema(as = ResponseReasoning)]
pub struct Reasoning {
    #[serde(default)]
    pub effort: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = ResponseTextConfig)]
pub struct TextConfig {
    #[serde(default)]
    pub format: Option<Value>,
}

/// One input item, after a missing `type` on a message was filled in.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ResponseInputItem)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    Message {
        role: ItemRole,
        content: Content,
    },
    FunctionCall {
        call_id: String,
        name: String,
        #[serde(default)]
        arguments: String,
        #[serde(default)]
        namespace: Option<String>,
    },
    FunctionCallOutput {
        call_id: String,
        output: Content,
    },
    CustomToolCall {
        call_id: String,
        name: String,
        #[serde(default)]
        input: String,
        #[serde(default)]
        namespace: Option<String>,
    },
    CustomToolCallOutput {
        call_id: String,
        output: Content,
    },
    Reasoning {
        #[serde(default)]
        summary: Vec<Value>,
        #[serde(default)]
        encrypted_content: Option<String>,
    },
    /// A stored item, named by id.
    ItemReference {
        id: String,
    },
    // Never serialized: `skip_serializing` only keeps this fallback out of the OpenAPI schema.
    #[serde(other, skip_serializing)]
    Other,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, ToSchema)]
#[schema(as = ResponseItemRole)]
#[serde(rename_all = "snake_case")]
pub enum ItemRole {
    User,
    Assistant,
    System,
    Developer,
}

/// A message's content, or a tool output: a string or parts.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ResponseContent)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ResponseInputPart)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    InputText {
        text: String,
    },
    OutputText {
        text: String,
    },
    Refusal {
        refusal: String,
    },
    InputImage {
        #[serde(default)]
        image_url: Option<String>,
        #[serde(default)]
        file_id: Option<String>,
    },
    InputFile {
        #[serde(default)]
        file_data: Option<String>,
        #[serde(default)]
        file_url: Option<String>,
        #[serde(default)]
        file_id: Option<String>,
        #[serde(default)]
        filename: Option<String>,
    },
    // Never serialized: `skip_serializing` only keeps this fallback out of the OpenAPI schema.
    #[serde(other, skip_serializing)]
    Other,
}
