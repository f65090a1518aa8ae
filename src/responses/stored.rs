//! A response as it is kept in the store for `GET /v1/responses/{id}`, its input items and
//! `previous_response_id`: the response object and the input items of its request (each with
//! an id). Pure: the handlers read and write it through the store's cache.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::response::ResponseObject;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredResponse {
    pub response: ResponseObject,
    /// The request's input items, as sent, each with an `id`.
    pub input: Vec<Value>,
}

/// A stored response's key in the store.
pub fn key(id: &str) -> String {
    format!("response:{id}")
}

/// How many responses a `previous_response_id` chain may hold (a guard against a cycle).
pub const MAX_CHAIN: usize = 1000;

impl StoredResponse {
    /// Keeps the input items, giving each an id when it has none.
    pub fn new(response: ResponseObject, mut input: Vec<Value>) -> Self {
        for item in &mut input {
            if let Some(obj) = item.as_object_mut()
                && !obj.contains_key("id")
            {
                let prefix = match obj.get("type").and_then(Value::as_str) {
                    Some("message") | None => "msg",
                    Some("function_call_output") => "fco",
                    Some("custom_tool_call_output") => "ctco",
                    Some(_) => "item",
                };
                obj.insert(
                    "id".to_owned(),
                    Value::from(format!("{prefix}_{}", uuid::Uuid::new_v4().simple())),
                );
            }
        }
        Self { response, input }
    }

    /// What this response adds to a conversation that goes on from it: its input items, then
    /// its output items.
    pub fn turn_items(&self) -> Vec<Value> {
        let mut items = self.input.clone();
        items.extend(
            self.response
                .output
                .iter()
                .filter_map(|o| serde_json::to_value(o).ok()),
        );
        items
    }
}
