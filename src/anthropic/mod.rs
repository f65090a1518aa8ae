//! The Anthropic Messages surface: wire types for messages, stream events, errors, token counts
//! and the model list (pure serde, no IO), and their translation into the neutral conversation
//! and out of its answer events.

mod request;
mod response;
mod translate_answer;
mod translate_request;

pub use request::{Block, Content, InMessage, InRole, MessagesRequest};
pub use response::{
    ErrorBody, ErrorEnvelope, MessageOut, ModelInfo, ModelList, StreamEvent, TokenCount,
};
pub use translate_answer::{Aggregate, Head, Sse, StreamEncoder};
pub use translate_request::{
    MediaRef, RefSource, Translated, check, media_refs, to_conversation, wants_thinking,
};
