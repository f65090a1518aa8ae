//! OpenAI wire types for chat completions and models: pure serde, no IO.

mod request;
mod response;
mod translate_answer;
mod translate_request;

pub use request::{
    ChatCompletionRequest, ContentPart, Message, MessageContent, ReasoningParam, Role,
    StreamOptions, ThinkingParam,
};
pub use response::{
    ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice, CompletionTokensDetails, Delta,
    ErrorBody, ErrorEnvelope, FinishReason, ModelList, ModelObject, ResponseMessage, Usage,
};

pub use translate_answer::{Aggregate, StreamEncoder, usage};
pub use translate_request::{InvalidRequest, ThinkingChoice, chat_request, check_request};
