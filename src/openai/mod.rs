//! The OpenAI surface: wire types for chat completions and models (pure serde, no IO) and their
//! translation into the neutral conversation and out of its answer events.

mod request;
mod response;
pub mod sources;
mod translate_answer;
mod translate_request;

pub use request::{
    ChatCompletionRequest, ContentPart, Message, MessageContent, ReasoningParam, Role,
    StreamOptions, ThinkingParam,
};
pub use response::{
    ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, CompletionTokensDetails, Delta,
    ErrorBody, ErrorEnvelope, FinishReason, FunctionDelta, FunctionOut, ModelList, ModelObject,
    ResponseMessage, ToolCallDelta, ToolCallOut, Usage,
};

pub use translate_answer::{Aggregate, SourceStyle, StreamEncoder, usage};
pub use translate_request::{MediaAt, check_request, to_conversation};
