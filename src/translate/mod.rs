//! Pure translation between the OpenAI surface and the internal model: requests in, answer
//! events out as chunks or one completion.

mod from_openai;
mod to_openai;

pub use from_openai::{InvalidRequest, ThinkingChoice, chat_request, check_request};
pub use to_openai::{Aggregate, StreamEncoder, usage};
