//! chat.qwen.ai wire types: stream frames, model list, chat creation. Unknown fields are ignored
//! and unknown enum values fall back to `Unknown`, so a site change degrades instead of failing.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use smallvec::SmallVec;

/// One `data:` payload of the completion stream, read by serde alone. Text borrows from the
/// payload where it has no escapes, the usual single choice is held inline, and what is not
/// used is skipped unread (unknown fields, the error object: the decoder classifies an error
/// event from the whole payload), so a typical token event allocates nothing.
#[derive(Debug, Default, Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "response.created")]
    pub created: Option<Created>,
    #[serde(default, borrow)]
    pub choices: Choices<'a>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub response_id: Option<Cow<'a, str>>,
    pub usage: Option<WireUsage>,
    /// Present (false) on business errors sent inside the stream.
    pub success: Option<bool>,
    pub error: Option<IgnoredAny>,
}

/// A frame's choices: the site sends one, held inline.
pub type Choices<'a> = SmallVec<[FrameChoice<'a>; 1]>;

impl<'a> Frame<'a> {
    /// Parses one `data:` payload.
    pub fn parse(data: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(data)
    }
}

#[derive(Debug, Deserialize)]
pub struct Created {
    pub response_id: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub response_index: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct FrameChoice<'a> {
    #[serde(default, borrow)]
    pub delta: WireDelta<'a>,
}

#[derive(Debug, Default, Deserialize)]
pub struct WireDelta<'a> {
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub role: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub content: Option<Cow<'a, str>>,
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub status: Option<Status>,
    pub extra: Option<DeltaExtra>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Think,
    ThinkingSummary,
    Answer,
    WebSearch,
    ImageGen,
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Typing,
    Finished,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Default, Deserialize)]
pub struct DeltaExtra {
    pub summary_thought: Option<SummaryBlock>,
    pub web_search_info: Option<Vec<SearchInfo>>,
}

/// `{"content": ["step 1", "step 2"]}`; items may also be `{"content": "…"}` objects.
#[derive(Debug, Default, Deserialize)]
pub struct SummaryBlock {
    #[serde(default)]
    pub content: Vec<Value>,
}

impl SummaryBlock {
    /// The items joined with blank lines, which is what is diffed between cumulative events.
    pub fn joined(&self) -> String {
        let items: Vec<&str> = self
            .content
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("content").and_then(Value::as_str),
                _ => None,
            })
            .collect();
        items.join("\n\n")
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct SearchInfo {
    pub url: Option<String>,
    pub title: Option<String>,
    pub hostname: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct WireUsage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub output_tokens_details: Option<OutputTokensDetails>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: Option<u64>,
}

/// `GET /api/models` → `{"data": [...]}`.
#[derive(Debug, Deserialize)]
pub struct ModelsResponse {
    pub data: Vec<UpstreamModel>,
}

#[derive(Debug, Deserialize)]
pub struct UpstreamModel {
    pub id: String,
    pub name: Option<String>,
    pub info: Option<ModelInfo>,
}

#[derive(Debug, Deserialize)]
pub struct ModelInfo {
    pub created_at: Option<u64>,
    pub meta: Option<ModelMeta>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ModelMeta {
    pub abilities: Option<Abilities>,
    pub capabilities: Option<Abilities>,
    #[serde(default)]
    pub chat_type: Vec<String>,
    pub think_skip: Option<ThinkSkip>,
    /// Tokens the model takes in one conversation (docs/upstream.md §4).
    #[serde(default, deserialize_with = "count")]
    pub max_context_length: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Abilities {
    #[serde(default, deserialize_with = "truthy")]
    pub thinking: bool,
}

#[derive(Debug, Deserialize)]
pub struct ThinkSkip {
    pub enable: Option<bool>,
}

impl UpstreamModel {
    fn meta(&self) -> Option<&ModelMeta> {
        self.info.as_ref()?.meta.as_ref()
    }

    pub fn can_think(&self) -> bool {
        self.meta().is_some_and(|m| {
            m.abilities.as_ref().is_some_and(|a| a.thinking)
                || m.capabilities.as_ref().is_some_and(|a| a.thinking)
        })
    }

    /// The chat types the model lists (`t2t`, `search`, `t2i`, …).
    pub fn chat_types(&self) -> &[String] {
        self.meta().map_or(&[], |m| m.chat_type.as_slice())
    }

    pub fn can_search(&self) -> bool {
        self.meta()
            .is_some_and(|m| m.chat_type.iter().any(|t| t == "search"))
    }

    /// The model's context length in tokens, when the list gives one.
    pub fn context_length(&self) -> Option<u64> {
        self.meta()
            .and_then(|m| m.max_context_length)
            .filter(|n| *n > 0)
    }

    /// Models marked `think_skip.enable == false` answer `invalid_input` unless thinking is on.
    pub fn must_think(&self) -> bool {
        self.meta()
            .and_then(|m| m.think_skip.as_ref())
            .and_then(|t| t.enable)
            == Some(false)
    }
}

/// `POST /api/v2/chats/new` → `{"success":true,"data":{"id":"…"}}`.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    pub success: Option<bool>,
    pub data: Option<T>,
}

#[derive(Debug, Deserialize)]
pub struct NewChat {
    pub id: Option<String>,
}

/// `POST /api/v1/auths/signin` → `{"token": "…", …}`.
#[derive(Debug, Deserialize)]
pub struct SignIn {
    pub token: Option<String>,
}

/// An optional string borrowed from the payload when it has no escapes. serde borrows a bare
/// `Cow<str>` field marked `borrow`, but an `Option<Cow<str>>` is always read as an owned
/// `String`: one allocation per field per token event.
fn borrowed<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text<'a>>::deserialize(d)?.map(|t| t.0))
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// A count as a number or a numeric string; anything else is unknown.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

fn truthy<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_from_the_capture_parse() {
        let f: Frame = serde_json::from_str(r#"{"response.created":{"chat_id": "c", "parent_id": "p", "response_id":"r", "response_index": "0"}} "#).unwrap();
        assert_eq!(f.created.unwrap().response_index.as_deref(), Some("0"));
        let f: Frame = serde_json::from_str(r#"{"choices": [{"delta": {"content": "", "role": "assistant", "status": "finished", "phase": "answer"}}], "response_id": "r"}"#).unwrap();
        assert_eq!(f.choices[0].delta.status, Some(Status::Finished));
        let f: Frame = serde_json::from_str(r#"{"choices": [{"delta": {"phase": "video_gen", "status": "queued", "new_field": 1}}]}"#).unwrap();
        assert_eq!(f.choices[0].delta.phase, Some(Phase::Unknown));
        assert_eq!(f.choices[0].delta.status, Some(Status::Unknown));
    }

    #[test]
    fn token_text_is_borrowed_unless_escaped() {
        let f = Frame::parse(
            r#"{"choices": [{"delta": {"content": "Hi", "role": "assistant", "name": null}}], "response_id": "r"}"#,
        )
        .unwrap();
        let delta = &f.choices[0].delta;
        assert!(matches!(delta.content, Some(Cow::Borrowed("Hi"))));
        assert!(matches!(delta.role, Some(Cow::Borrowed("assistant"))));
        assert!(delta.name.is_none());
        assert!(matches!(f.response_id, Some(Cow::Borrowed("r"))));
        let f = Frame::parse(r#"{"choices": [{"delta": {"content": "a\nb"}}]}"#).unwrap();
        assert!(matches!(&f.choices[0].delta.content, Some(Cow::Owned(s)) if s == "a\nb"));
        let f = Frame::parse(r#"{"choices": [{"delta": {}}]}"#).unwrap();
        assert!(f.choices[0].delta.content.is_none() && f.response_id.is_none());
    }

    #[test]
    fn model_capabilities() {
        let m: UpstreamModel = serde_json::from_str(
            r#"{"id":"q","info":{"meta":{"abilities":{"thinking":1},"chat_type":["t2t","search"],"think_skip":{"enable":false}}}}"#,
        )
        .unwrap();
        assert!(m.can_think() && m.can_search() && m.must_think());
        let m: UpstreamModel = serde_json::from_str(r#"{"id":"q"}"#).unwrap();
        assert!(!m.can_think() && !m.can_search() && !m.must_think());
    }
}
