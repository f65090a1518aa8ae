//! OpenAI chat request → internal `ChatRequest`: validation, flattening (protocol §5.3) and
//! the thinking switch.

use crate::catalog::Resolved;
use crate::chat::{ChatRequest, ChatType};
use crate::openai::{ChatCompletionRequest, ContentPart, Message, MessageContent, Role};

/// A request we refuse, with what a client needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest {
    pub message: String,
    pub param: Option<String>,
    pub code: &'static str,
}

impl InvalidRequest {
    pub fn new(message: impl Into<String>, param: impl Into<String>, code: &'static str) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
            code,
        }
    }

    /// A `size` that maps to none of the site's ratios.
    pub fn bad_size(size: &str) -> Self {
        Self::new(
            format!(
                "size {size:?} is not supported; use WIDTHxHEIGHT such as 1024x1024, or a ratio 1:1, 4:3, 3:4, 16:9, 9:16"
            ),
            "size",
            "invalid_value",
        )
    }
}

/// Checks what can be checked without the model list. Returns whether `tools` will be ignored.
pub fn check_request(
    req: &ChatCompletionRequest,
    max_messages: usize,
) -> Result<bool, InvalidRequest> {
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
    if let Some(t) = req.chat_type.as_deref() {
        if ChatType::parse(t).is_none() {
            return Err(InvalidRequest::new(
                format!(
                    "chat_type {t:?} is not supported; use one of t2t, search, t2i, image_edit, t2v"
                ),
                "chat_type",
                "invalid_value",
            ));
        }
    }
    if let Some(size) = req.size.as_deref() {
        crate::media::size::ratio_for_size(size).map_err(|_| InvalidRequest::bad_size(size))?;
    }
    for (i, m) in req.messages.iter().enumerate() {
        if let Some(MessageContent::Parts(parts)) = &m.content {
            if let Some(j) = parts.iter().position(|p| matches!(p, ContentPart::Unknown)) {
                return Err(InvalidRequest::new(
                    "unknown content part type; use text, image_url, input_audio, video_url or file",
                    format!("messages[{i}].content[{j}]"),
                    "unsupported_content",
                ));
            }
        }
    }
    let has_tools = req.tools.as_ref().is_some_and(|t| !t.is_empty());
    if has_tools {
        let forced = match &req.tool_choice {
            Some(serde_json::Value::String(s)) => s == "required",
            Some(serde_json::Value::Object(_)) => true,
            _ => false,
        };
        if forced {
            return Err(InvalidRequest::new(
                "tool calling is not supported yet, so a tool call cannot be required",
                "tool_choice",
                "tools_not_supported",
            ));
        }
    }
    Ok(has_tools)
}

/// What decided thinking, for the log: the final value and the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThinkingChoice {
    pub enabled: bool,
    pub budget: Option<u64>,
}

/// Builds the internal request for an already checked OpenAI request and its resolved model.
/// Media parts are not read here (see `media::input`); `attachments` starts empty.
pub fn chat_request(req: &ChatCompletionRequest, model: &Resolved) -> ChatRequest {
    let thinking = thinking(req, model);
    let asked = req.chat_type.as_deref().and_then(ChatType::parse);
    let chat_type = match (model.media, asked) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) if model.search => ChatType::Search,
        (None, None) => ChatType::Text,
    };
    let prompt = if chat_type.feature().is_some() {
        // Generation takes the instruction, not a transcript.
        last_user_text(&req.messages)
    } else {
        flatten(&req.messages)
    };
    // `size` was checked by `check_request`.
    let size = if chat_type.feature().is_some() {
        crate::media::size::requested_ratio(req.size.as_deref(), &prompt)
            .ok()
            .flatten()
    } else {
        None
    };
    ChatRequest {
        model: model.upstream_id.clone(),
        prompt,
        thinking: thinking.enabled,
        thinking_budget: thinking.budget,
        chat_type,
        attachments: Vec::new(),
        size,
    }
}

/// The text of the last user message (falling back to the flattened conversation).
fn last_user_text(messages: &[Message]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(text_of)
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| flatten(messages))
}

/// The model suffix sets the default; explicit request fields override it; models that must
/// think always do.
fn thinking(req: &ChatCompletionRequest, model: &Resolved) -> ThinkingChoice {
    let mut enabled = model.thinking;
    let mut budget = None;
    if let Some(t) = &req.thinking {
        match t.kind.as_deref() {
            Some("enabled") => enabled = true,
            Some("disabled") => enabled = false,
            _ => {}
        }
        budget = t.budget_tokens.or(budget);
    }
    if let Some(b) = req.enable_thinking {
        enabled = b;
    }
    let effort = req
        .reasoning_effort
        .as_deref()
        .or(req.reasoning.as_ref().and_then(|r| r.effort.as_deref()));
    if let Some(e) = effort {
        enabled = !matches!(e.to_ascii_lowercase().as_str(), "none" | "minimal");
    }
    if let Some(b) = req.thinking_budget {
        budget = Some(b);
        if req.enable_thinking.is_none() && effort.is_none() {
            enabled = b > 0;
        }
    }
    if model.must_think {
        enabled = true;
    }
    ThinkingChoice {
        enabled,
        budget: budget.filter(|b| *b > 0),
    }
}

fn text_of(m: &Message) -> String {
    match &m.content {
        None => String::new(),
        Some(MessageContent::Text(t)) => t.clone(),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The conversation as the one user turn the web chat accepts: system messages merged first;
/// a single message as is; a longer history as `role:text` items joined with `;`.
pub fn flatten(messages: &[Message]) -> String {
    let system: Vec<String> = messages
        .iter()
        .filter(|m| matches!(m.role, Role::System | Role::Developer))
        .map(text_of)
        .filter(|t| !t.is_empty())
        .collect();
    let mut items: Vec<(&'static str, String)> = Vec::new();
    if !system.is_empty() {
        items.push(("system", system.join("\n")));
    }
    for m in messages
        .iter()
        .filter(|m| !matches!(m.role, Role::System | Role::Developer))
    {
        let text = text_of(m);
        if !text.is_empty() {
            items.push((m.role.as_str(), text));
        }
    }
    match items.as_slice() {
        [] => String::new(),
        [(_, only)] => only.clone(),
        _ => items
            .iter()
            .map(|(role, text)| format!("{role}:{text}"))
            .collect::<Vec<_>>()
            .join(";"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> ChatCompletionRequest {
        serde_json::from_value(json).unwrap()
    }

    fn model(thinking: bool, must_think: bool) -> Resolved {
        Resolved {
            upstream_id: "qwen3.7-plus".into(),
            thinking,
            search: false,
            must_think,
            media: None,
        }
    }

    #[test]
    fn flattening_follows_the_node_project() {
        let r = req(serde_json::json!({"model":"m","messages":[{"role":"user","content":"hi"}]}));
        assert_eq!(flatten(&r.messages), "hi");
        let r = req(serde_json::json!({"model":"m","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
            {"role":"assistant","content":"x","reasoning_content":"thought"},
            {"role":"system","content":"and kind"},
            {"role":"user","content":"again"}]}));
        assert_eq!(
            flatten(&r.messages),
            "system:be brief\nand kind;user:a\nb;assistant:x;user:again"
        );
    }

    #[test]
    fn thinking_switches() {
        let cases = [
            (serde_json::json!({}), model(false, false), false),
            (serde_json::json!({}), model(true, false), true),
            (
                serde_json::json!({"enable_thinking": true}),
                model(false, false),
                true,
            ),
            (
                serde_json::json!({"reasoning_effort": "none"}),
                model(true, false),
                false,
            ),
            (
                serde_json::json!({"reasoning_effort": "high"}),
                model(false, false),
                true,
            ),
            (
                serde_json::json!({"reasoning": {"effort": "minimal"}}),
                model(true, false),
                false,
            ),
            (
                serde_json::json!({"thinking_budget": 512}),
                model(false, false),
                true,
            ),
            (
                serde_json::json!({"thinking": {"type": "disabled"}}),
                model(true, false),
                false,
            ),
            (
                serde_json::json!({"enable_thinking": false}),
                model(false, true),
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
            assert_eq!(chat_request(&r, &m).thinking, want, "{body}");
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
                serde_json::json!({"model":"m","tools":[{"type":"function"}],"tool_choice":"required","messages":[{"role":"user","content":"x"}]}),
                "tool_choice",
            ),
        ];
        for (body, param) in bad {
            let err = check_request(&req(body), 2000).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param));
        }
        let ok = req(
            serde_json::json!({"model":"m","tools":[{"type":"function"}],"tool_choice":"auto","messages":[{"role":"user","content":"x"}]}),
        );
        assert!(check_request(&ok, 2000).unwrap());
    }
}
