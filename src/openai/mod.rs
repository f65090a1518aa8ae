//! OpenAI wire types for chat completions and models: pure serde, no IO.

mod request;
mod response;

pub use request::{
    ChatCompletionRequest, ContentPart, Message, MessageContent, ReasoningParam, Role,
    StreamOptions, ThinkingParam,
};
pub use response::{
    ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, CompletionTokensDetails, Delta,
    ErrorBody, ErrorEnvelope, FinishReason, ModelList, ModelObject, ResponseMessage, Usage,
};
