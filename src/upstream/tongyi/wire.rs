//! Tongyi's wire types, 2025 form (docs/upstream.md §13.2, §13.3): the conversation request
//! body and the events of its answer. Unknown fields and content types are skipped.

use serde::{Deserialize, Serialize};

/// `POST {TONGYI_BASE_URL}{TONGYI_CONVERSATION_PATH}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationBody<'a> {
    pub action: &'static str,
    pub contents: [Part<'a>; 1],
    pub model: &'a str,
    /// The last answer's `msgId` in a continued session; empty in a new one.
    pub parent_msg_id: &'a str,
    pub request_id: String,
    /// Empty: the site opens a new session and names it in the answer.
    pub session_id: &'a str,
    pub session_type: &'static str,
    pub user_action: &'static str,
    #[serde(rename = "feature_config")]
    pub feature_config: FeatureConfig,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Part<'a> {
    pub role: &'static str,
    pub content: &'a str,
    pub content_type: &'static str,
}

#[derive(Debug, Serialize)]
pub struct FeatureConfig {
    pub search_enabled: bool,
    pub thinking_enabled: bool,
}

/// One `data:` event of the answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub session_id: Option<String>,
    pub msg_id: Option<String>,
    pub msg_status: Option<MsgStatus>,
    #[serde(default)]
    pub contents: Option<Vec<Block>>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsgStatus {
    Processing,
    Finished,
    #[serde(other)]
    Other,
}

/// One block of an event's `contents`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    /// `text`, `think`, or others (searches, cards) that are skipped.
    pub content_type: Option<String>,
    pub role: Option<String>,
    pub content: Option<String>,
    /// Only new text (else the block repeats the whole answer so far).
    #[serde(default)]
    pub incremental: bool,
}

/// A `think` block's content when it is a JSON string.
#[derive(Debug, Deserialize)]
pub struct ThinkJson {
    pub content: String,
}
