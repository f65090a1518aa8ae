//! The Messages request as Anthropic clients send it (`POST /v1/messages` and
//! `/v1/messages/count_tokens`). Unknown fields (`context_management`, `output_config`, betas'
//! additions) are ignored; fields whose shapes vary by beta are read as JSON values.

use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

#[derive(Debug, Deserialize, ToSchema)]
pub struct MessagesRequest {
    pub model: String,
    /// Required by `/v1/messages` (checked there), not by `count_tokens`.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub system: Option<Content>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u64>,
    /// Client tools (`name`, `description`, `input_schema`) and server tools (`type` set).
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoiceParam>,
    #[serde(default)]
    pub thinking: Option<ThinkingParam>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InMessage {
    pub role: InRole,
    pub content: Content,
}

/// `system` is accepted among the messages too (Claude Code's mid-conversation-system beta).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InRole {
    User,
    Assistant,
    System,
}

/// A string, or content blocks.
#[derive(Debug)]
pub enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

/// Read by hand rather than `untagged`, so that a broken block is reported at its own path
/// (`messages[2].content[1].text`) instead of as "no variant matched".
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Content;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of content blocks")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Content, E> {
                Ok(Content::Text(s.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Content, E> {
                Ok(Content::Text(s))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Content, A::Error> {
                Vec::<Block>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Content::Blocks)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Described by hand, as its `Deserialize` is: a string, or an array of [`Block`]s.
impl utoipa::PartialSchema for Content {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(String::schema())
            .item(ArrayBuilder::new().items(Ref::from_schema_name(Block::name())))
            .description(Some("A string, or an array of content blocks."))
            .into()
    }
}

impl ToSchema for Content {
    fn name() -> std::borrow::Cow<'static, str> {
        "AnthropicContent".into()
    }

    /// `Block` only, not what `Block` names: a tool result holds `Content` again, and this
    /// would recurse for ever.
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Block::name().into_owned(), Block::schema()));
    }
}

/// One content block. Types this server has no use for are kept as `Other` and skipped (with
/// a warning header), so a new block type never turns a conversation away.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Image {
        source: Value,
    },
    Document {
        source: Value,
        #[serde(default)]
        title: Option<String>,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<Content>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    /// Earlier reasoning the client replays: accepted, not sent upstream.
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    RedactedThinking {},
    // Never serialized: `skip_serializing` only keeps this fallback out of the OpenAPI schema.
    #[serde(other, skip_serializing)]
    Other,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicToolChoice)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoiceParam {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None {},
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AnthropicThinkingParam)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingParam {
    Enabled {
        #[serde(default)]
        budget_tokens: Option<u64>,
    },
    Adaptive {},
    Disabled {},
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = AnthropicMetadata)]
pub struct Metadata {
    #[serde(default)]
    pub user_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_code_shapes_are_read() {
        let body = r#"{
            "model": "claude-opus-4-8", "max_tokens": 64000, "stream": true,
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
            "metadata": {"user_id": "{\"session_id\":\"s-1\"}"},
            "system": [{"type": "text", "text": "x-billing", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "system", "content": "be brief"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "/a"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true,
                     "content": [{"type": "text", "text": "no"}]},
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
                ]}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        }"#;
        let req: MessagesRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.max_tokens, Some(64000));
        assert!(matches!(req.thinking, Some(ThinkingParam::Adaptive {})));
        assert_eq!(req.messages[1].role, InRole::System);
        let Content::Blocks(blocks) = &req.messages[3].content else {
            panic!("blocks")
        };
        assert!(matches!(
            blocks[0],
            Block::ToolResult {
                is_error: Some(true),
                ..
            }
        ));
        assert!(matches!(blocks[1], Block::Other));
        assert!(matches!(
            req.tool_choice,
            Some(ToolChoiceParam::Any {
                disable_parallel_tool_use: Some(true)
            })
        ));
    }
}
