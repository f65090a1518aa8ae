//! Anthropic Messages request → the neutral conversation: the checks Anthropic makes, `system`
//! (as a parameter and as mid-conversation messages), content blocks (text, images, documents,
//! `tool_use`, `tool_result` with `is_error` and images; replayed thinking is dropped), client
//! tools, server tools, tool choice, thinking and the session key. Pure: media arrive already
//! read, in the order [`media_refs`] lists them.

use serde_json::Value;

use super::request::{
    Block, Content, InMessage, InRole, MessagesRequest, ThinkingParam, ToolChoiceParam,
};
use crate::conversation::{
    self, ChatType, InvalidRequest, Media, MediaKind, Message, Part, Role, Thinking, Tool,
    ToolCall, ToolChoice, ToolResult,
};

/// Media a request names, to be read before translation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRef {
    /// Where it is in the request (`messages[1].content[0]`), for errors.
    pub param: String,
    pub kind: MediaKind,
    pub source: RefSource,
    pub filename: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefSource {
    /// A `data:` URI or an http(s) URL.
    Url(String),
    /// A plain-text document's text.
    Text(String),
}

/// The conversation, and what of the request was ignored (for the warning header).
#[derive(Debug)]
pub struct Translated {
    pub conversation: conversation::Request,
    pub ignored: Vec<String>,
}

/// Checks what Anthropic checks before any model is resolved. `max_tokens` is required by
/// `/v1/messages`, not by `count_tokens`.
pub fn check(
    req: &MessagesRequest,
    max_messages: usize,
    needs_max_tokens: bool,
) -> Result<(), InvalidRequest> {
    if req.model.trim().is_empty() {
        return Err(InvalidRequest::new(
            "model: must not be empty",
            "model",
            "invalid_value",
        ));
    }
    if needs_max_tokens {
        match req.max_tokens {
            None => {
                return Err(InvalidRequest::new(
                    "max_tokens: Field required",
                    "max_tokens",
                    "missing_required_parameter",
                ));
            }
            Some(0) => {
                return Err(InvalidRequest::new(
                    "max_tokens: must be at least 1",
                    "max_tokens",
                    "invalid_value",
                ));
            }
            Some(_) => {}
        }
    }
    if req.messages.is_empty() {
        return Err(InvalidRequest::new(
            "messages: at least one message is required",
            "messages",
            "invalid_value",
        ));
    }
    if req.messages.len() > max_messages {
        return Err(InvalidRequest::new(
            format!("messages: at most {max_messages} messages are accepted (MAX_MESSAGES)"),
            "messages",
            "too_many_messages",
        ));
    }
    let tools = req.tools.as_deref().unwrap_or_default();
    for (i, t) in tools.iter().enumerate() {
        let named = t
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.trim().is_empty());
        if !named {
            return Err(InvalidRequest::new(
                format!("tools.{i}.name: Field required"),
                format!("tools[{i}].name"),
                "invalid_value",
            ));
        }
    }
    if let Some(ToolChoiceParam::Tool { name, .. }) = &req.tool_choice
        && !client_tools(tools).any(|t| t.name == *name)
    {
        return Err(InvalidRequest::new(
            format!("tool_choice: the tool {name:?} is not among the request's tools"),
            "tool_choice",
            "invalid_value",
        ));
    }
    Ok(())
}

/// The images and documents of a request, in the order [`to_conversation`] takes them.
pub fn media_refs(req: &MessagesRequest) -> Result<Vec<MediaRef>, InvalidRequest> {
    let mut out = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let Content::Blocks(blocks) = &m.content else {
            continue;
        };
        for (j, b) in blocks.iter().enumerate() {
            let param = format!("messages[{i}].content[{j}]");
            match b {
                Block::Image { source } => {
                    out.push(media_ref(source, MediaKind::Image, None, param)?);
                }
                Block::Document { source, title } => {
                    if let Some(r) = document_ref(source, title.clone(), param)? {
                        out.push(r);
                    }
                }
                Block::ToolResult {
                    content: Some(Content::Blocks(inner)),
                    ..
                } => {
                    for (k, ib) in inner.iter().enumerate() {
                        let param = format!("{param}.content[{k}]");
                        match ib {
                            Block::Image { source } => {
                                out.push(media_ref(source, MediaKind::Image, None, param)?);
                            }
                            Block::Document { source, title } => {
                                if let Some(r) = document_ref(source, title.clone(), param)? {
                                    out.push(r);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// `{"type":"base64","media_type","data"}` or `{"type":"url","url"}`.
fn media_ref(
    source: &Value,
    kind: MediaKind,
    filename: Option<String>,
    param: String,
) -> Result<MediaRef, InvalidRequest> {
    let field = |name: &str| source.get(name).and_then(Value::as_str);
    let url = match field("type") {
        Some("base64") => match (field("media_type"), field("data")) {
            (Some(mime), Some(data)) => format!("data:{mime};base64,{data}"),
            _ => {
                return Err(InvalidRequest::new(
                    format!("{param}.source: a base64 source needs `media_type` and `data`"),
                    format!("{param}.source"),
                    "invalid_value",
                ));
            }
        },
        Some("url") => match field("url") {
            Some(url) => url.to_owned(),
            None => {
                return Err(InvalidRequest::new(
                    format!("{param}.source.url: Field required"),
                    format!("{param}.source.url"),
                    "invalid_value",
                ));
            }
        },
        other => {
            return Err(InvalidRequest::new(
                format!(
                    "{param}.source.type: {} is not supported; use base64 or url",
                    other.map_or_else(|| "a missing type".to_owned(), |t| format!("{t:?}"))
                ),
                format!("{param}.source.type"),
                "unsupported_content",
            ));
        }
    };
    Ok(MediaRef {
        param,
        kind,
        source: RefSource::Url(url),
        filename,
    })
}

/// A document: base64 (PDF), URL, or plain text, read as a file; `content` sources (blocks of
/// text) are text parts, not media (`None`).
fn document_ref(
    source: &Value,
    title: Option<String>,
    param: String,
) -> Result<Option<MediaRef>, InvalidRequest> {
    match source.get("type").and_then(Value::as_str) {
        Some("text") => {
            let text = source.get("data").and_then(Value::as_str).ok_or_else(|| {
                InvalidRequest::new(
                    format!("{param}.source.data: Field required"),
                    format!("{param}.source.data"),
                    "invalid_value",
                )
            })?;
            Ok(Some(MediaRef {
                param,
                kind: MediaKind::Document,
                source: RefSource::Text(text.to_owned()),
                filename: title.map(|t| format!("{t}.txt")),
            }))
        }
        Some("content") => Ok(None),
        _ => media_ref(source, MediaKind::Document, title, param).map(Some),
    }
}

/// The conversation of a checked request. `media`: what [`media_refs`] listed, read, in its
/// order (empty when media are not read, as for `count_tokens`: their parts are left out).
pub fn to_conversation(
    req: &MessagesRequest,
    media: Vec<Media>,
    reasoning_shown: bool,
) -> Translated {
    let mut media = media.into_iter();
    let mut ignored = Vec::new();
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        // Media in `system` are not read (`media_refs` lists the messages' only).
        let parts = parts_of(system, &mut std::iter::empty(), &mut ignored);
        if !parts.is_empty() {
            messages.push(Message::new(Role::System, parts));
        }
    }
    for m in &req.messages {
        translate_message(m, &mut media, &mut ignored, &mut messages);
    }
    let tools = req.tools.as_deref().unwrap_or_default();
    let mut chat_type = None;
    for t in tools.iter().filter(|t| is_server_tool(t)) {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind.starts_with("web_search") {
            chat_type = Some(ChatType::Search);
        } else {
            ignored.push(format!("tool type {kind}"));
        }
    }
    let (tool_choice, disable_parallel) = match &req.tool_choice {
        None => (ToolChoice::Auto, None),
        Some(ToolChoiceParam::Auto {
            disable_parallel_tool_use,
        }) => (ToolChoice::Auto, *disable_parallel_tool_use),
        Some(ToolChoiceParam::Any {
            disable_parallel_tool_use,
        }) => (ToolChoice::Required, *disable_parallel_tool_use),
        Some(ToolChoiceParam::Tool {
            name,
            disable_parallel_tool_use,
        }) => (ToolChoice::Named(name.clone()), *disable_parallel_tool_use),
        Some(ToolChoiceParam::None {}) => (ToolChoice::None, None),
    };
    let thinking = match &req.thinking {
        None => Thinking::default(),
        Some(ThinkingParam::Enabled { budget_tokens }) => Thinking {
            enabled: Some(true),
            budget: *budget_tokens,
        },
        Some(ThinkingParam::Adaptive {}) => Thinking {
            enabled: Some(true),
            budget: None,
        },
        Some(ThinkingParam::Disabled {}) => Thinking {
            enabled: Some(false),
            budget: None,
        },
    };
    let conversation = conversation::Request {
        model: req.model.clone(),
        messages,
        options: conversation::Options {
            thinking,
            reasoning_shown,
            chat_type,
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: req.max_tokens,
            stop: req.stop_sequences.clone().unwrap_or_default(),
            tools: client_tools(tools).collect(),
            tool_choice,
            parallel_tool_calls: disable_parallel.map(|d| !d),
            session: req
                .metadata
                .as_ref()
                .and_then(|m| m.user_id.clone())
                .filter(|u| !u.is_empty()),
            ..conversation::Options::default()
        },
    };
    Translated {
        conversation,
        ignored,
    }
}

/// Whether the client asked to see thinking (`enabled` or `adaptive`).
pub fn wants_thinking(req: &MessagesRequest) -> bool {
    matches!(
        req.thinking,
        Some(ThinkingParam::Enabled { .. } | ThinkingParam::Adaptive {})
    )
}

/// A server tool has a `type` other than `custom` (`web_search_20250305`, `bash_20250124`, …).
fn is_server_tool(t: &Value) -> bool {
    t.get("type")
        .and_then(Value::as_str)
        .is_some_and(|k| k != "custom")
}

/// The client tools: `{"name","description","input_schema"}`.
fn client_tools(tools: &[Value]) -> impl Iterator<Item = Tool> + '_ {
    tools.iter().filter(|t| !is_server_tool(t)).filter_map(|t| {
        Some(Tool {
            name: t.get("name")?.as_str()?.to_owned(),
            description: t
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
            parameters: t.get("input_schema").cloned(),
            strict: t.get("strict").and_then(Value::as_bool) == Some(true),
        })
    })
}

/// One Anthropic message as neutral messages: a user message's `tool_result` blocks become
/// tool messages in place (text before and after them stays a user message around them).
fn translate_message(
    m: &InMessage,
    media: &mut impl Iterator<Item = Media>,
    ignored: &mut Vec<String>,
    out: &mut Vec<Message>,
) {
    let role = match m.role {
        InRole::User => Role::User,
        InRole::Assistant => Role::Assistant,
        InRole::System => Role::System,
    };
    let blocks = match &m.content {
        Content::Text(t) => {
            out.push(Message::text(role, t.clone()));
            return;
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut current = Message::new(role, Vec::new());
    for b in blocks {
        match b {
            Block::ToolUse { id, name, input } => current.tool_calls.push(ToolCall {
                id: id.clone(),
                name: name.clone(),
                arguments: if input.is_null() {
                    "{}".to_owned()
                } else {
                    input.to_string()
                },
            }),
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                if !current.parts.is_empty() || !current.tool_calls.is_empty() {
                    out.push(std::mem::replace(
                        &mut current,
                        Message::new(role, Vec::new()),
                    ));
                }
                let content = content
                    .as_ref()
                    .map(|c| parts_of(c, media, ignored))
                    .unwrap_or_default();
                out.push(Message::new(
                    Role::Tool,
                    vec![Part::ToolResult(ToolResult {
                        call_id: tool_use_id.clone(),
                        name: None,
                        is_error: is_error.unwrap_or(false),
                        content,
                    })],
                ));
            }
            other => {
                if let Some(p) = part(other, media, ignored) {
                    current.parts.push(p);
                }
            }
        }
    }
    if !current.parts.is_empty() || !current.tool_calls.is_empty() {
        out.push(current);
    }
}

/// The text and media parts of a content (tool blocks inside it are not expected there).
fn parts_of(
    c: &Content,
    media: &mut impl Iterator<Item = Media>,
    ignored: &mut Vec<String>,
) -> Vec<Part> {
    match c {
        Content::Text(t) => vec![Part::Text(t.clone())],
        Content::Blocks(blocks) => blocks
            .iter()
            .filter_map(|b| part(b, media, ignored))
            .collect(),
    }
}

fn part(
    b: &Block,
    media: &mut impl Iterator<Item = Media>,
    ignored: &mut Vec<String>,
) -> Option<Part> {
    match b {
        Block::Text { text } => Some(Part::Text(text.clone())),
        Block::Image { .. } => media.next().map(Part::Media),
        Block::Document { source, title } => {
            if source.get("type").and_then(Value::as_str) == Some("content") {
                Some(Part::Text(document_text(source, title.as_deref())))
            } else {
                media.next().map(Part::Media)
            }
        }
        // Replayed reasoning is not sent upstream.
        Block::Thinking { .. } | Block::RedactedThinking {} => None,
        Block::ToolUse { .. } | Block::ToolResult { .. } => {
            ignored.push("tool blocks nested in a tool result".to_owned());
            None
        }
        Block::Other => {
            ignored.push("content block of an unknown type".to_owned());
            None
        }
    }
}

/// A `content` document source: its text blocks, under its title.
fn document_text(source: &Value, title: Option<&str>) -> String {
    let texts = source
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("text").and_then(Value::as_str));
    let body = texts.collect::<Vec<_>>().join("\n");
    match title {
        Some(t) => format!("{t}\n\n{body}"),
        None => body,
    }
}

#[cfg(test)]
mod tests;
