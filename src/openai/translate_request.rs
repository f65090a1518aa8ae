//! OpenAI chat request → the neutral conversation: validation, messages with their parts, tool
//! calls and tool results, and the options (the thinking switch among them). Pure: media parts
//! arrive already read (see `media::input`).

use crate::conversation::{
    self, ChatType, InvalidRequest, Media, Message as ConvMessage, Part, ResponseFormat,
    Role as ConvRole, Thinking, Tool, ToolCall, ToolChoice, ToolResult,
};
use crate::openai::{ChatCompletionRequest, ContentPart, Message, MessageContent, Role};

/// A media part read from `messages[message].content[part]`.
#[derive(Clone, Debug)]
pub struct MediaAt {
    pub message: usize,
    pub part: usize,
    pub media: Media,
}

/// Checks what can be checked without the model list.
pub fn check_request(
    req: &ChatCompletionRequest,
    max_messages: usize,
) -> Result<(), InvalidRequest> {
    if req.model.trim().is_empty() {
        return Err(InvalidRequest::new(
            "`model` must not be empty",
            "model",
            "invalid_value",
        ));
    }
    if req.messages.is_empty() {
        return Err(InvalidRequest::new(
            "`messages` must hold at least one message",
            "messages",
            "invalid_value",
        ));
    }
    if req.messages.len() > max_messages {
        return Err(InvalidRequest::new(
            format!("at most {max_messages} messages are accepted (MAX_MESSAGES)"),
            "messages",
            "too_many_messages",
        ));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(InvalidRequest::new(
            "only n=1 is supported",
            "n",
            "invalid_value",
        ));
    }
    if let Some(t) = req.chat_type.as_deref()
        && ChatType::parse(t).is_none()
    {
        return Err(InvalidRequest::new(
            format!(
                "chat_type {t:?} is not supported; use one of t2t, search, t2i, image_edit, t2v"
            ),
            "chat_type",
            "invalid_value",
        ));
    }
    if let Some(size) = req.size.as_deref() {
        crate::media::size::ratio_for_size(size).map_err(|_| InvalidRequest::bad_size(size))?;
    }
    for (i, m) in req.messages.iter().enumerate() {
        if let Some(MessageContent::Parts(parts)) = &m.content
            && let Some(j) = parts.iter().position(|p| matches!(p, ContentPart::Unknown))
        {
            return Err(InvalidRequest::new(
                "unknown content part type; use text, image_url, input_audio, video_url or file",
                format!("messages[{i}].content[{j}]"),
                "unsupported_content",
            ));
        }
    }
    let tools = req.tools.as_deref().unwrap_or_default();
    for (i, t) in tools.iter().enumerate() {
        if tool(t).is_none_or(|t| t.name.trim().is_empty()) {
            return Err(InvalidRequest::new(
                "each tool must be {\"type\":\"function\",\"function\":{\"name\":…}}",
                format!("tools[{i}].function.name"),
                "invalid_value",
            ));
        }
    }
    if let ToolChoice::Named(name) = tool_choice(req.tool_choice.as_ref())
        && !tools.iter().filter_map(tool).any(|t| t.name == name)
    {
        return Err(InvalidRequest::new(
            format!("tool_choice names the function {name:?}, which is not in tools"),
            "tool_choice",
            "invalid_value",
        ));
    }
    Ok(())
}

/// The conversation an already checked request describes. `media` are its media parts, read;
/// `extra` (files of a multipart form) join the last user message.
pub fn to_conversation(
    req: &ChatCompletionRequest,
    media: Vec<MediaAt>,
    extra: Vec<Media>,
    reasoning_shown: bool,
) -> conversation::Request {
    let mut media = media.into_iter().peekable();
    let mut messages: Vec<ConvMessage> = req
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut parts = Vec::new();
            match &m.content {
                None => {}
                Some(MessageContent::Text(t)) => parts.push(Part::Text(t.clone())),
                Some(MessageContent::Parts(ps)) => {
                    for (j, p) in ps.iter().enumerate() {
                        if let ContentPart::Text { text } = p {
                            parts.push(Part::Text(text.clone()));
                        }
                        while let Some(at) = media.next_if(|a| a.message == i && a.part == j) {
                            parts.push(Part::Media(at.media));
                        }
                    }
                }
            }
            message(m, parts)
        })
        .collect();
    if !extra.is_empty() {
        let last_user = messages.iter_mut().rev().find(|m| m.role == ConvRole::User);
        match last_user {
            Some(m) => m.parts.extend(extra.into_iter().map(Part::Media)),
            None => messages.push(ConvMessage::new(
                ConvRole::User,
                extra.into_iter().map(Part::Media).collect(),
            )),
        }
    }
    conversation::Request {
        model: req.model.clone(),
        messages,
        options: conversation::Options {
            thinking: thinking(req),
            reasoning_shown,
            chat_type: req.chat_type.as_deref().and_then(ChatType::parse),
            size: req.size.clone(),
            temperature: req.temperature.as_ref().and_then(serde_json::Value::as_f64),
            top_p: req.top_p.as_ref().and_then(serde_json::Value::as_f64),
            max_tokens: req
                .max_completion_tokens
                .as_ref()
                .or(req.max_tokens.as_ref())
                .and_then(serde_json::Value::as_u64),
            stop: match &req.stop {
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            },
            tools: req.tools.iter().flatten().filter_map(tool).collect(),
            tool_choice: tool_choice(req.tool_choice.as_ref()),
            parallel_tool_calls: req
                .parallel_tool_calls
                .as_ref()
                .and_then(serde_json::Value::as_bool),
            response_format: response_format(req.response_format.as_ref()),
            session: req.user.clone().filter(|u| !u.is_empty()),
        },
    }
}

/// One message with its parts: `developer` is a system message, `function` a tool result;
/// an assistant's `tool_calls` and a tool message's `tool_call_id` are kept.
fn message(m: &Message, parts: Vec<Part>) -> ConvMessage {
    let role = match m.role {
        Role::System | Role::Developer => ConvRole::System,
        Role::User => ConvRole::User,
        Role::Assistant => ConvRole::Assistant,
        Role::Tool | Role::Function => ConvRole::Tool,
    };
    let parts = if role == ConvRole::Tool {
        vec![Part::ToolResult(ToolResult {
            call_id: m
                .tool_call_id
                .as_ref()
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            name: m
                .name
                .as_ref()
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            is_error: false,
            content: parts,
        })]
    } else {
        parts
    };
    let mut out = ConvMessage::new(role, parts);
    out.reasoning = match &m.reasoning_content {
        Some(serde_json::Value::String(r)) => Some(r.clone()),
        _ => None,
    };
    out.tool_calls = m
        .tool_calls
        .as_ref()
        .and_then(serde_json::Value::as_array)
        .map(|calls| calls.iter().filter_map(tool_call).collect())
        .unwrap_or_default();
    out
}

/// `{"id","type":"function","function":{"name","arguments"}}`.
fn tool_call(v: &serde_json::Value) -> Option<ToolCall> {
    let f = v.get("function")?;
    Some(ToolCall {
        id: v
            .get("id")
            .and_then(|i| i.as_str())
            .unwrap_or_default()
            .to_owned(),
        name: f.get("name")?.as_str()?.to_owned(),
        arguments: match f.get("arguments") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        },
    })
}

/// `{"type":"function","function":{"name","description","parameters"}}`.
fn tool(v: &serde_json::Value) -> Option<Tool> {
    let f = v.get("function")?;
    Some(Tool {
        name: f.get("name")?.as_str()?.to_owned(),
        description: f
            .get("description")
            .and_then(|d| d.as_str())
            .map(str::to_owned),
        parameters: f.get("parameters").cloned(),
        strict: f.get("strict").and_then(serde_json::Value::as_bool) == Some(true),
    })
}

fn tool_choice(v: Option<&serde_json::Value>) -> ToolChoice {
    match v {
        Some(serde_json::Value::String(s)) if s == "none" => ToolChoice::None,
        Some(serde_json::Value::String(s)) if s == "required" => ToolChoice::Required,
        Some(o @ serde_json::Value::Object(_)) => o
            .pointer("/function/name")
            .and_then(|n| n.as_str())
            .map_or(ToolChoice::Required, |n| ToolChoice::Named(n.to_owned())),
        _ => ToolChoice::Auto,
    }
}

fn response_format(v: Option<&serde_json::Value>) -> ResponseFormat {
    let Some(v) = v else {
        return ResponseFormat::Text;
    };
    match v.get("type").and_then(|t| t.as_str()) {
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => ResponseFormat::JsonSchema(
            v.get("json_schema")
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        _ => ResponseFormat::Text,
    }
}

/// The client's thinking switch from every field that may carry it, later ones overriding
/// earlier ones: `thinking.type`, `enable_thinking`, `reasoning_effort` (or `reasoning.effort`),
/// then `thinking_budget` (which switches thinking on or off only when neither of the two before
/// it was given). The model's own default applies where none was given.
fn thinking(req: &ChatCompletionRequest) -> Thinking {
    let mut enabled = None;
    let mut budget = None;
    if let Some(t) = &req.thinking {
        match t.kind.as_deref() {
            Some("enabled") => enabled = Some(true),
            Some("disabled") => enabled = Some(false),
            _ => {}
        }
        budget = t.budget_tokens.or(budget);
    }
    if let Some(b) = req.enable_thinking {
        enabled = Some(b);
    }
    let effort = req
        .reasoning_effort
        .as_deref()
        .or(req.reasoning.as_ref().and_then(|r| r.effort.as_deref()));
    if let Some(e) = effort {
        enabled = Some(!matches!(
            e.to_ascii_lowercase().as_str(),
            "none" | "minimal"
        ));
    }
    if let Some(b) = req.thinking_budget {
        budget = Some(b);
        if req.enable_thinking.is_none() && effort.is_none() {
            enabled = Some(b > 0);
        }
    }
    Thinking { enabled, budget }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> ChatCompletionRequest {
        serde_json::from_value(json).unwrap()
    }

    fn conv(r: &ChatCompletionRequest) -> conversation::Request {
        to_conversation(r, Vec::new(), Vec::new(), true)
    }

    #[test]
    fn messages_keep_roles_tool_calls_and_results() {
        let r = req(serde_json::json!({"model":"m","user":"u1","messages":[
            {"role":"developer","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"f"}}}));
        let c = conv(&r);
        let roles: Vec<_> = c.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                ConvRole::System,
                ConvRole::User,
                ConvRole::Assistant,
                ConvRole::Tool
            ]
        );
        assert_eq!(c.messages[1].joined_text(), "a\nb");
        assert_eq!(
            c.messages[2].tool_calls,
            [ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: r#"{"x":1}"#.into()
            }]
        );
        let Part::ToolResult(res) = &c.messages[3].parts[0] else {
            panic!("a tool message holds a tool result");
        };
        assert_eq!(res.call_id, "c1");
        assert_eq!(c.messages[3].joined_text(), "42");
        assert_eq!(c.options.tools[0].name, "f");
        assert_eq!(c.options.tool_choice, ToolChoice::Named("f".into()));
        assert_eq!(c.options.session.as_deref(), Some("u1"));
    }

    #[test]
    fn thinking_switches() {
        let cases = [
            (serde_json::json!({}), (false, false), false),
            (serde_json::json!({}), (true, false), true),
            (
                serde_json::json!({"enable_thinking": true}),
                (false, false),
                true,
            ),
            (
                serde_json::json!({"reasoning_effort": "none"}),
                (true, false),
                false,
            ),
            (
                serde_json::json!({"reasoning_effort": "high"}),
                (false, false),
                true,
            ),
            (
                serde_json::json!({"reasoning": {"effort": "minimal"}}),
                (true, false),
                false,
            ),
            (
                serde_json::json!({"thinking_budget": 512}),
                (false, false),
                true,
            ),
            (
                serde_json::json!({"thinking": {"type": "disabled"}}),
                (true, false),
                false,
            ),
            (
                serde_json::json!({"enable_thinking": false}),
                (false, true),
                true,
            ),
        ];
        for (extra, m, want) in cases {
            let mut body =
                serde_json::json!({"model":"m","messages":[{"role":"user","content":"hi"}]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let r = req(body.clone());
            let (default, must) = m;
            assert_eq!(
                conv(&r).options.thinking.decide(default, must).0,
                want,
                "{body}"
            );
        }
    }

    #[test]
    fn checks_name_the_field() {
        let bad = [
            (serde_json::json!({"model":"m","messages":[]}), "messages"),
            (
                serde_json::json!({"model":" ","messages":[{"role":"user","content":"x"}]}),
                "model",
            ),
            (
                serde_json::json!({"model":"m","n":2,"messages":[{"role":"user","content":"x"}]}),
                "n",
            ),
            (
                serde_json::json!({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"hologram","hologram":{}}]}]}),
                "messages[0].content[1]",
            ),
            (
                serde_json::json!({"model":"m","chat_type":"image_gen","messages":[{"role":"user","content":"x"}]}),
                "chat_type",
            ),
            (
                serde_json::json!({"model":"m","size":"huge","messages":[{"role":"user","content":"x"}]}),
                "size",
            ),
            (
                serde_json::json!({"model":"m","tools":[{"type":"function"}],"messages":[{"role":"user","content":"x"}]}),
                "tools[0].function.name",
            ),
            (
                serde_json::json!({"model":"m","tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}},"messages":[{"role":"user","content":"x"}]}),
                "tool_choice",
            ),
        ];
        for (body, param) in bad {
            let err = check_request(&req(body), 2000).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param));
        }
        let ok = req(
            serde_json::json!({"model":"m","tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":"required","messages":[{"role":"user","content":"x"}]}),
        );
        check_request(&ok, 2000).unwrap();
    }
}
