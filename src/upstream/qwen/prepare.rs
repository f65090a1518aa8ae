//! The conversation as chat.qwen.ai takes it: one user message (the flattening of protocol
//! §5.3), the chat type and model switches, the media of the turn, and a long prompt sent as a
//! file.

use std::collections::HashMap;
use std::sync::Arc;

use crate::conversation::{
    self, Blob, ChatType, InvalidRequest, Media, MediaKind, MediaSource, Message, Part, Role,
};
use crate::media::input::last_markdown_image;
use crate::tools::{Plan, syntax};
use crate::upstream::ResolvedModel;
use crate::upstream::{Tail, Turn};

/// How conversations are shaped for the site, as configured.
#[derive(Clone, Debug)]
pub struct Shaping {
    /// `PROMPT_FILE_THRESHOLD_KB` in bytes (0: never); see [`offload_long_prompt`].
    pub prompt_file_threshold: usize,
    /// The template of the tools' instructions (`TOOL_PROMPT_FILE`).
    pub tool_template: Arc<str>,
}

impl Default for Shaping {
    fn default() -> Self {
        Self {
            prompt_file_threshold: 0,
            tool_template: crate::tools::plan::DEFAULT_TEMPLATE.into(),
        }
    }
}

/// The turn for a conversation and its resolved model.
pub fn prepare(
    req: &conversation::Request,
    model: &ResolvedModel,
    shaping: &Shaping,
) -> Result<Turn, InvalidRequest> {
    let (thinking, thinking_budget) = req
        .options
        .thinking
        .decide(model.thinking, model.must_think);
    let chat_type = match (model.media, req.options.chat_type) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) if model.search => ChatType::Search,
        (None, None) => ChatType::Text,
    };
    // Generation takes the instruction, not a transcript, and offers no tools.
    let tools = if chat_type.feature().is_some() {
        None
    } else {
        Plan::new(
            &req.options.tools,
            &req.options.tool_choice,
            req.options.parallel_tool_calls,
            Arc::clone(&shaping.tool_template),
        )
        .map(|plan| Arc::new(plan.with_history(&req.messages)))
    };
    let format = &req.options.response_format;
    let prompt = if chat_type.feature().is_some() {
        last_user_text(&req.messages)
    } else {
        with_format(flatten_with(&req.messages, tools.as_deref()), format)
    };
    // `size` was checked by the surface.
    let size = if chat_type.feature().is_some() {
        crate::media::size::requested_ratio(req.options.size.as_deref(), &prompt)
            .ok()
            .flatten()
    } else {
        None
    };
    let attachments = if chat_type == ChatType::ImageEdit {
        vec![image_to_edit(&req.messages)?]
    } else {
        media_of(&req.messages)
    };
    let tail = tail(&req.messages, chat_type, tools.as_deref(), shaping).map(|t| Tail {
        prompt: with_format(t.prompt, format),
        ..t
    });
    let mut turn = Turn {
        model: model.upstream_id.clone(),
        prompt,
        thinking,
        thinking_budget,
        chat_type,
        attachments,
        size,
        reasoning_shown: req.options.reasoning_shown,
        tools,
        tail,
        parent: None,
        sites: model.sites.clone(),
        format: if chat_type.feature().is_some() {
            conversation::ResponseFormat::Text
        } else {
            format.clone()
        },
    };
    offload_long_prompt(&mut turn, shaping.prompt_file_threshold);
    Ok(turn)
}

/// The prompt with what the model is told of the answer's format at its end.
fn with_format(prompt: String, format: &conversation::ResponseFormat) -> String {
    match crate::tools::format::instruction(format) {
        Some(i) => format!("{prompt}\n\n{i}"),
        None => prompt,
    }
}

/// The new tail as a continued chat takes it (docs/upstream.md §5.5): the messages after the
/// last assistant message, each written as in the flattened prompt (tool results in the call
/// syntax, the reminder of the syntax at the end), without the system messages and the tools'
/// instructions, which the chat's first message already holds. `None` when the conversation
/// cannot continue: no answer before the tail, a generation chat, or a tail too long for the
/// body (it would go as a file).
fn tail(
    messages: &[Message],
    chat_type: ChatType,
    tools: Option<&Plan>,
    shaping: &Shaping,
) -> Option<Tail> {
    if !matches!(chat_type, ChatType::Text | ChatType::Search) {
        return None;
    }
    let start = conversation::thread::tail_start(messages)?;
    let called = calls_by_id(messages);
    let items = items(&messages[start..], tools, &called);
    let prompt = join_items(items, tools);
    if prompt.is_empty()
        || (shaping.prompt_file_threshold > 0 && prompt.len() > shaping.prompt_file_threshold)
    {
        return None;
    }
    Some(Tail {
        prompt,
        attachments: media_of(&messages[start..]),
    })
}

/// Every media part, in order, with those of tool results.
fn media_of(messages: &[Message]) -> Vec<Media> {
    fn collect(parts: &[Part], out: &mut Vec<Media>) {
        for p in parts {
            match p {
                Part::Media(media) => out.push(media.clone()),
                Part::ToolResult(r) => collect(&r.content, out),
                Part::Text(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    for m in messages {
        collect(&m.parts, &mut out);
    }
    out
}

/// Image edit takes the last image of the conversation: a user's image part, or an image an
/// assistant answered with (`![..](url)`).
fn image_to_edit(messages: &[Message]) -> Result<Media, InvalidRequest> {
    let mut last = None;
    for m in messages {
        match m.role {
            Role::Assistant => {
                if let Some(url) = last_markdown_image(&m.joined_text()) {
                    last = Some(Media {
                        kind: MediaKind::Image,
                        source: MediaSource::Url(url.to_owned()),
                    });
                }
            }
            _ => {
                for p in &m.parts {
                    if let Part::Media(media) = p
                        && media.kind == MediaKind::Image
                    {
                        last = Some(media.clone());
                    }
                }
            }
        }
    }
    last.ok_or_else(|| {
        InvalidRequest::new(
            "image edit needs an image in the conversation; send one as an image_url part",
            "messages",
            "image_required",
        )
    })
}

/// The text of the last user message (falling back to the flattened conversation).
fn last_user_text(messages: &[Message]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(Message::joined_text)
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| flatten(messages))
}

/// The conversation as the one user turn the web chat accepts: system messages merged first;
/// a single message as is; a longer history as `role:text` items joined with `;`. Tool calls
/// are not written; a tool's result is a `tool:` item.
pub fn flatten(messages: &[Message]) -> String {
    flatten_with(messages, None)
}

/// [`flatten`], and with tools offered: their instructions after the system messages, past
/// calls and results in the call syntax under the names the model is told, and a reminder of
/// the syntax at the end (docs/tools.md).
fn flatten_with(messages: &[Message], tools: Option<&Plan>) -> String {
    let mut system: Vec<String> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(Message::joined_text)
        .filter(|t| !t.is_empty())
        .collect();
    system.extend(tools.map(Plan::instructions));
    let mut all: Vec<(&'static str, String)> = Vec::new();
    if !system.is_empty() {
        all.push(("system", system.join("\n")));
    }
    let called = calls_by_id(messages);
    all.extend(items(messages, tools, &called));
    join_items(all, tools)
}

/// A result names its tool even when the client gave only the call's id.
fn calls_by_id(messages: &[Message]) -> HashMap<&str, &str> {
    messages
        .iter()
        .flat_map(|m| &m.tool_calls)
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect()
}

/// The `role:text` items of the messages other than system ones; messages without text are
/// left out.
fn items(
    messages: &[Message],
    tools: Option<&Plan>,
    called: &HashMap<&str, &str>,
) -> Vec<(&'static str, String)> {
    let mut items = Vec::new();
    for m in messages.iter().filter(|m| m.role != Role::System) {
        let text = match tools {
            Some(plan) => with_calls(m, plan, called),
            None => m.joined_text(),
        };
        if !text.is_empty() {
            items.push((m.role.as_str(), text));
        }
    }
    items
}

/// The items as one prompt: a single item as it is, several as `role:text` joined with `;`;
/// with tools, the reminder of the call syntax ends the last item.
fn join_items(mut items: Vec<(&'static str, String)>, tools: Option<&Plan>) -> String {
    if let (Some(plan), Some((_, last))) = (tools, items.last_mut()) {
        last.push_str("\n\n");
        last.push_str(&plan.reminder());
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

/// A message's text with its tool calls and tool results in the call syntax.
fn with_calls(m: &Message, plan: &Plan, called: &HashMap<&str, &str>) -> String {
    let mut texts: Vec<String> = Vec::new();
    for p in &m.parts {
        match p {
            Part::Text(t) => texts.push(t.clone()),
            Part::ToolResult(r) => {
                let content = Message::new(Role::Tool, r.content.clone()).joined_text();
                let name = r
                    .name
                    .as_deref()
                    .or_else(|| called.get(r.call_id.as_str()).copied())
                    .map(|n| plan.prompted(n));
                texts.push(syntax::result(&r.call_id, name, r.is_error, &content));
            }
            Part::Media(_) => {}
        }
    }
    for call in &m.tool_calls {
        texts.push(syntax::call(plan.prompted(&call.name), &call.arguments));
    }
    texts.join("\n")
}

/// The turn that asks again: the conversation as it was sent, the model's answer and the
/// correction as the next items, in a new chat (docs/tools.md).
pub fn follow_up(turn: &Turn, answer: &str, correction: &str, threshold: usize) -> Turn {
    let mut next = turn.clone();
    // Always a new chat with the whole conversation: the corrected answer is not kept.
    next.tail = None;
    next.parent = None;
    let reminder = turn
        .tools
        .as_ref()
        .map(|p| p.reminder())
        .unwrap_or_default();
    next.prompt = format!(
        "{};assistant:{};user:{correction}\n\n{reminder}",
        turn.prompt,
        answer.trim()
    );
    offload_long_prompt(&mut next, threshold);
    next
}

/// The instruction sent in place of a prompt that went up as a file.
const PROMPT_FILE_INSTRUCTION: &str = "The full conversation is in the attached file prompt.txt. Read it and reply to its last message as the assistant.";

/// A text prompt over `threshold` bytes is uploaded as `prompt.txt` (docs/upstream.md §5.3): the site
/// answers very large bodies with a captcha.
pub fn offload_long_prompt(turn: &mut Turn, threshold: usize) {
    if threshold == 0
        || turn.prompt.len() <= threshold
        || !matches!(turn.chat_type, ChatType::Text | ChatType::Search)
    {
        return;
    }
    // The file holds the tools' instructions too; the message recalls the call syntax.
    let instruction = match &turn.tools {
        Some(plan) => format!("{PROMPT_FILE_INSTRUCTION}\n\n{}", plan.reminder()),
        None => PROMPT_FILE_INSTRUCTION.to_owned(),
    };
    let instruction = with_format(instruction, &turn.format);
    let text = std::mem::replace(&mut turn.prompt, instruction);
    tracing::debug!(
        bytes = text.len(),
        "prompt over PROMPT_FILE_THRESHOLD_KB; sending it as a file"
    );
    let blob = Blob::new(text.into_bytes().into(), "text/plain", "prompt.txt");
    turn.attachments.push(Media {
        kind: MediaKind::Document,
        source: MediaSource::Blob(Arc::new(blob)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(messages: Vec<Message>) -> conversation::Request {
        conversation::Request {
            model: "m".into(),
            messages,
            options: conversation::Options::default(),
        }
    }

    fn text(role: Role, t: &str) -> Message {
        Message::text(role, t)
    }

    #[test]
    fn flattening_follows_the_node_project() {
        assert_eq!(flatten(&[text(Role::User, "hi")]), "hi");
        let mut thought = text(Role::Assistant, "x");
        thought.reasoning = Some("thought".into());
        let mut call = Message::new(Role::Assistant, Vec::new());
        call.tool_calls = vec![conversation::ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "{}".into(),
        }];
        let result = Message::new(
            Role::Tool,
            vec![Part::ToolResult(conversation::ToolResult {
                call_id: "c".into(),
                name: None,
                is_error: false,
                content: vec![Part::Text("42".into())],
            })],
        );
        let r = conv(vec![
            text(Role::System, "be brief"),
            Message::new(
                Role::User,
                vec![Part::Text("a".into()), Part::Text("b".into())],
            ),
            thought,
            text(Role::System, "and kind"),
            call,
            result,
            text(Role::User, "again"),
        ]);
        assert_eq!(
            flatten(&r.messages),
            "system:be brief\nand kind;user:a\nb;assistant:x;tool:42;user:again"
        );
    }

    #[test]
    fn image_edit_needs_an_image() {
        let model = ResolvedModel {
            upstream_id: "q".into(),
            thinking: false,
            search: false,
            must_think: false,
            media: Some(ChatType::ImageEdit),
            context_tokens: None,
            sites: Vec::new(),
        };
        let r = conv(vec![text(Role::User, "make it blue")]);
        assert_eq!(
            prepare(&r, &model, &Shaping::default()).unwrap_err().code,
            "image_required"
        );
        let r = conv(vec![
            text(Role::Assistant, "![image](https://cdn/a.png)"),
            text(Role::User, "make it blue"),
        ]);
        let turn = prepare(&r, &model, &Shaping::default()).unwrap();
        assert_eq!(
            turn.attachments[0].source,
            MediaSource::Url("https://cdn/a.png".into())
        );
        assert_eq!(turn.prompt, "make it blue");
    }

    #[test]
    fn long_prompts_go_as_a_file() {
        let model = ResolvedModel {
            upstream_id: "q".into(),
            thinking: false,
            search: false,
            must_think: false,
            media: None,
            context_tokens: None,
            sites: Vec::new(),
        };
        let r = conv(vec![text(Role::User, &"x".repeat(100))]);
        let turn = prepare(
            &r,
            &model,
            &Shaping {
                prompt_file_threshold: 10,
                ..Shaping::default()
            },
        )
        .unwrap();
        assert_eq!(turn.prompt, PROMPT_FILE_INSTRUCTION);
        assert_eq!(turn.attachments[0].kind, MediaKind::Document);
    }
}
