//! The Responses wire types we write: the response object (also what is stored and read back
//! by `GET /v1/responses/{id}`), its output items, usage, and the stream events, each of which
//! carries a `sequence_number`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::request::Reasoning;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[schema(as = ResponseStatus)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ResponseObject {
    pub id: String,
    pub object: String,
    pub created_at: i64,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u64>,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub reasoning: Reasoning,
    pub store: bool,
    pub temperature: Option<f64>,
    pub text: Value,
    pub tool_choice: Value,
    pub tools: Vec<Value>,
    pub top_p: Option<f64>,
    pub truncation: String,
    pub usage: Option<Usage>,
    pub user: Option<String>,
    pub metadata: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ResponseError {
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct IncompleteDetails {
    pub reason: String,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[schema(as = ResponseUsage)]
pub struct Usage {
    pub input_tokens: u64,
    pub input_tokens_details: InputDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputDetails,
    pub total_tokens: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[schema(as = ResponseInputDetails)]
pub struct InputDetails {
    pub cached_tokens: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[schema(as = ResponseOutputDetails)]
pub struct OutputDetails {
    pub reasoning_tokens: u64,
}

/// One output item. Ids: `rs_…`, `msg_…`, `fc_…`, `ctc_…`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    Reasoning {
        id: String,
        summary: Vec<SummaryText>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<String>,
        status: Status,
    },
    Message {
        id: String,
        status: Status,
        role: String,
        content: Vec<OutputText>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        status: Status,
    },
    CustomToolCall {
        id: String,
        call_id: String,
        name: String,
        input: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        status: Status,
    },
}

impl OutputItem {
    pub fn id(&self) -> &str {
        match self {
            OutputItem::Reasoning { id, .. }
            | OutputItem::Message { id, .. }
            | OutputItem::FunctionCall { id, .. }
            | OutputItem::CustomToolCall { id, .. } => id,
        }
    }

    pub fn set_status(&mut self, to: Status) {
        match self {
            OutputItem::Reasoning { status, .. }
            | OutputItem::Message { status, .. }
            | OutputItem::FunctionCall { status, .. }
            | OutputItem::CustomToolCall { status, .. } => *status = to,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SummaryText {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

impl SummaryText {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            kind: "summary_text".to_owned(),
            text: text.into(),
        }
    }
}

/// An `output_text` part.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct OutputText {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    pub annotations: Vec<Annotation>,
    #[serde(default)]
    pub logprobs: Vec<Value>,
}

impl OutputText {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            kind: "output_text".to_owned(),
            text: text.into(),
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

/// A web-search source, as a `url_citation` at the place in the text where it arrived.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Annotation {
    #[serde(rename = "type")]
    pub kind: String,
    pub start_index: usize,
    pub end_index: usize,
    pub title: String,
    pub url: String,
}

/// One stream event and its place in the stream.
#[derive(Serialize)]
pub struct Event<'a> {
    #[serde(flatten)]
    pub body: EventBody<'a>,
    pub sequence_number: u64,
}

#[derive(Clone, Copy, Serialize)]
#[serde(tag = "type")]
pub enum EventBody<'a> {
    #[serde(rename = "response.created")]
    Created { response: &'a ResponseObject },
    #[serde(rename = "response.in_progress")]
    InProgress { response: &'a ResponseObject },
    #[serde(rename = "response.completed")]
    Completed { response: &'a ResponseObject },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: &'a ResponseObject },
    #[serde(rename = "response.failed")]
    Failed { response: &'a ResponseObject },
    #[serde(rename = "response.output_item.added")]
    ItemAdded {
        output_index: usize,
        item: &'a OutputItem,
    },
    #[serde(rename = "response.output_item.done")]
    ItemDone {
        output_index: usize,
        item: &'a OutputItem,
    },
    #[serde(rename = "response.content_part.added")]
    PartAdded {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        part: &'a OutputText,
    },
    #[serde(rename = "response.content_part.done")]
    PartDone {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        part: &'a OutputText,
    },
    #[serde(rename = "response.output_text.delta")]
    TextDelta {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        delta: &'a str,
        logprobs: [(); 0],
    },
    #[serde(rename = "response.output_text.annotation.added")]
    AnnotationAdded {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        annotation_index: usize,
        annotation: &'a Annotation,
    },
    #[serde(rename = "response.output_text.done")]
    TextDone {
        item_id: &'a str,
        output_index: usize,
        content_index: usize,
        text: &'a str,
        logprobs: [(); 0],
    },
    #[serde(rename = "response.reasoning_summary_part.added")]
    SummaryPartAdded {
        item_id: &'a str,
        output_index: usize,
        summary_index: usize,
        part: &'a SummaryText,
    },
    #[serde(rename = "response.reasoning_summary_text.delta")]
    SummaryDelta {
        item_id: &'a str,
        output_index: usize,
        summary_index: usize,
        delta: &'a str,
    },
    #[serde(rename = "response.reasoning_summary_text.done")]
    SummaryDone {
        item_id: &'a str,
        output_index: usize,
        summary_index: usize,
        text: &'a str,
    },
    #[serde(rename = "response.reasoning_summary_part.done")]
    SummaryPartDone {
        item_id: &'a str,
        output_index: usize,
        summary_index: usize,
        part: &'a SummaryText,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta {
        item_id: &'a str,
        output_index: usize,
        delta: &'a str,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone {
        item_id: &'a str,
        output_index: usize,
        name: &'a str,
        arguments: &'a str,
    },
    #[serde(rename = "response.custom_tool_call_input.delta")]
    CustomInputDelta {
        item_id: &'a str,
        output_index: usize,
        delta: &'a str,
    },
    #[serde(rename = "response.custom_tool_call_input.done")]
    CustomInputDone {
        item_id: &'a str,
        output_index: usize,
        input: &'a str,
    },
}

impl EventBody<'_> {
    /// The event's `type`, also its SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            EventBody::Created { .. } => "response.created",
            EventBody::InProgress { .. } => "response.in_progress",
            EventBody::Completed { .. } => "response.completed",
            EventBody::Incomplete { .. } => "response.incomplete",
            EventBody::Failed { .. } => "response.failed",
            EventBody::ItemAdded { .. } => "response.output_item.added",
            EventBody::ItemDone { .. } => "response.output_item.done",
            EventBody::PartAdded { .. } => "response.content_part.added",
            EventBody::PartDone { .. } => "response.content_part.done",
            EventBody::TextDelta { .. } => "response.output_text.delta",
            EventBody::AnnotationAdded { .. } => "response.output_text.annotation.added",
            EventBody::TextDone { .. } => "response.output_text.done",
            EventBody::SummaryPartAdded { .. } => "response.reasoning_summary_part.added",
            EventBody::SummaryDelta { .. } => "response.reasoning_summary_text.delta",
            EventBody::SummaryDone { .. } => "response.reasoning_summary_text.done",
            EventBody::SummaryPartDone { .. } => "response.reasoning_summary_part.done",
            EventBody::ArgumentsDelta { .. } => "response.function_call_arguments.delta",
            EventBody::ArgumentsDone { .. } => "response.function_call_arguments.done",
            EventBody::CustomInputDelta { .. } => "response.custom_tool_call_input.delta",
            EventBody::CustomInputDone { .. } => "response.custom_tool_call_input.done",
        }
    }
}

/// `GET /v1/responses/{id}/input_items`.
#[derive(Serialize, ToSchema)]
pub struct ItemList<'a> {
    pub object: &'static str,
    pub data: &'a [Value],
    pub first_id: Option<&'a str>,
    pub last_id: Option<&'a str>,
    pub has_more: bool,
}

/// `DELETE /v1/responses/{id}`.
#[derive(Serialize, ToSchema)]
pub struct Deleted<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub deleted: bool,
}
