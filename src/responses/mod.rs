//! The OpenAI Responses surface: wire types for requests, response objects, output items and
//! stream events (pure serde, no IO), their translation into the neutral conversation and out
//! of its answer events, and the stored form of responses for `previous_response_id`.

mod reasoning;
mod request;
mod response;
pub mod stored;
mod translate_answer;
mod translate_request;

pub use request::{Input, Item, Reasoning, ResponsesRequest};
pub use response::{Deleted, ItemList, OutputItem, ResponseError, ResponseObject, Status, Usage};
pub use translate_answer::{Builder, Head, Sse, StreamEncoder};
pub use translate_request::{
    MediaRef, RefSource, ToolNames, Translated, check, input_values, media_refs, read_items,
    to_conversation, wants_encrypted, wants_reasoning,
};
