//! Responses request → the neutral conversation: `instructions`, input items (messages of every
//! role, function and custom tool calls and their outputs, reasoning items read back and not
//! sent on), tools (function, custom freeform tools as a one-string-parameter tool, web search,
//! namespaces flattened under `namespace.name`), tool choice, reasoning, `text.format` and the
//! session key. Pure: media arrive already read, in the order [`media_refs`] lists them.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::request::{Content, Input, Item, ItemRole, Part, ResponsesRequest};
use crate::conversation::{
    self, ChatType, InvalidRequest, Media, MediaKind, Message, Part as CPart, ResponseFormat, Role,
    Thinking, Tool, ToolCall, ToolChoice, ToolResult,
};

/// How a tool the model is offered is named to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolRef {
    pub name: String,
    pub namespace: Option<String>,
    /// A freeform tool: its input is raw text, carried as the `input` argument.
    pub custom: bool,
}

/// The offered tools by the name the model calls them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolNames(HashMap<String, ToolRef>);

impl ToolNames {
    pub fn get(&self, flat: &str) -> Option<&ToolRef> {
        self.0.get(flat)
    }
}

/// The name a (namespaced) tool is offered and called under.
pub fn flat_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

/// The one parameter a freeform tool is offered with.
const CUSTOM_INPUT: &str = "input";

/// Media an input names, to be read before translation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRef {
    /// Where it is (`input[1].content[0]`), for errors.
    pub param: String,
    /// `None`: any kind, from the data's type.
    pub kind: Option<MediaKind>,
    pub source: RefSource,
    pub filename: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefSource {
    /// A `data:` URI or an http(s) URL.
    Url(String),
    /// A file uploaded with `POST /v1/files`.
    FileId(String),
}

/// The conversation, the tool names to restore in the answer, and what was ignored.
#[derive(Debug)]
pub struct Translated {
    pub conversation: conversation::Request,
    pub names: ToolNames,
    pub ignored: Vec<String>,
}

fn invalid(message: impl Into<String>, param: impl Into<String>) -> InvalidRequest {
    InvalidRequest::new(message, param, "invalid_value")
}

/// Checks what can be checked before any model is resolved or anything is read.
pub fn check(req: &ResponsesRequest) -> Result<(), InvalidRequest> {
    if req.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
        return Err(InvalidRequest::new(
            "Missing required parameter: 'model'.",
            "model",
            "missing_required_parameter",
        ));
    }
    if req.input.is_none() && req.previous_response_id.is_none() {
        return Err(InvalidRequest::new(
            "Missing required parameter: 'input'.",
            "input",
            "missing_required_parameter",
        ));
    }
    if req.background == Some(true) {
        return Err(InvalidRequest::new(
            "background responses are not supported by this server; send the request without `background`",
            "background",
            "unsupported_parameter",
        ));
    }
    if req.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(InvalidRequest::new(
            "`conversation` is not supported by this server; use `previous_response_id` or send the history in `input`",
            "conversation",
            "unsupported_parameter",
        ));
    }
    if req.max_output_tokens == Some(0) {
        return Err(invalid(
            "max_output_tokens must be at least 1",
            "max_output_tokens",
        ));
    }
    for (i, t) in req.tools.as_deref().unwrap_or_default().iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or_default();
        let named = || {
            t.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.trim().is_empty())
        };
        if matches!(kind, "function" | "custom" | "namespace") && !named() {
            return Err(InvalidRequest::new(
                format!("Missing required parameter: 'tools[{i}].name'."),
                format!("tools[{i}].name"),
                "missing_required_parameter",
            ));
        }
    }
    Ok(())
}

/// The request's input as item values: a string is one user message.
pub fn input_values(req: &ResponsesRequest) -> Vec<Value> {
    match &req.input {
        None => Vec::new(),
        Some(Input::Text(t)) => vec![json!({
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": t}],
        })],
        Some(Input::Items(items)) => items.clone(),
    }
}

/// Reads item values into items; an error names the item as `input[from + i]`.
pub fn read_items(values: &[Value], from: usize) -> Result<Vec<Item>, InvalidRequest> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let param = format!("input[{}]", i + from);
            let mut v = v.clone();
            let Some(obj) = v.as_object_mut() else {
                return Err(invalid("an input item must be an object", param));
            };
            if !obj.contains_key("type") && obj.contains_key("role") {
                obj.insert("type".to_owned(), Value::from("message"));
            }
            serde_json::from_value::<Item>(v).map_err(|e| invalid(format!("{param}: {e}"), param))
        })
        .collect()
}

/// The images and files of the items, in the order [`to_conversation`] takes them. `from`: as
/// in [`read_items`].
pub fn media_refs(items: &[Item], from: usize) -> Result<Vec<MediaRef>, InvalidRequest> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (content, key) = match item {
            Item::Message { content, .. } => (content, "content"),
            Item::FunctionCallOutput { output, .. } | Item::CustomToolCallOutput { output, .. } => {
                (output, "output")
            }
            _ => continue,
        };
        let Content::Parts(parts) = content else {
            continue;
        };
        for (j, p) in parts.iter().enumerate() {
            let param = format!("input[{}].{key}[{j}]", i + from);
            if let Some(r) = media_ref(p, param)? {
                out.push(r);
            }
        }
    }
    Ok(out)
}

fn media_ref(p: &Part, param: String) -> Result<Option<MediaRef>, InvalidRequest> {
    let (kind, source, filename) = match p {
        Part::InputImage { image_url, file_id } => {
            let source = match (image_url, file_id) {
                (Some(u), _) => RefSource::Url(u.clone()),
                (None, Some(id)) => RefSource::FileId(id.clone()),
                (None, None) => {
                    return Err(invalid("input_image needs `image_url` or `file_id`", param));
                }
            };
            (Some(MediaKind::Image), source, None)
        }
        Part::InputFile {
            file_data,
            file_url,
            file_id,
            filename,
        } => {
            let source = match (file_data, file_url, file_id) {
                (Some(d), _, _) => RefSource::Url(d.clone()),
                (None, Some(u), _) => RefSource::Url(u.clone()),
                (None, None, Some(id)) => RefSource::FileId(id.clone()),
                (None, None, None) => {
                    return Err(invalid(
                        "input_file needs `file_data`, `file_url` or `file_id`",
                        param,
                    ));
                }
            };
            let kind = file_url.is_some().then_some(MediaKind::Document);
            (kind, source, filename.clone())
        }
        _ => return Ok(None),
    };
    Ok(Some(MediaRef {
        param,
        kind,
        source,
        filename,
    }))
}

/// The tools the model is offered, their names, and whether web search is on.
struct Toolbox {
    tools: Vec<Tool>,
    names: ToolNames,
    search: bool,
}

fn toolbox(raw: &[Value], ignored: &mut Vec<String>) -> Toolbox {
    let mut b = Toolbox {
        tools: Vec::new(),
        names: ToolNames::default(),
        search: false,
    };
    for t in raw {
        offer(t, None, &mut b, ignored);
    }
    b
}

fn offer(t: &Value, namespace: Option<&str>, b: &mut Toolbox, ignored: &mut Vec<String>) {
    let kind = t.get("type").and_then(Value::as_str).unwrap_or_default();
    let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
    let description = t
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match kind {
        "function" | "custom" => {
            let custom = kind == "custom";
            let flat = flat_name(namespace, name);
            let (description, parameters) = if custom {
                custom_offer(description, t.get("format"))
            } else {
                (description, t.get("parameters").cloned())
            };
            b.tools.push(Tool {
                name: flat.clone(),
                description,
                parameters,
                strict: !custom && t.get("strict").and_then(Value::as_bool) == Some(true),
            });
            b.names.0.entry(flat).or_insert(ToolRef {
                name: name.to_owned(),
                namespace: namespace.map(str::to_owned),
                custom,
            });
        }
        "namespace" if namespace.is_none() => {
            for inner in t
                .get("tools")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                offer(inner, Some(name), b, ignored);
            }
        }
        // `external_web_access: false` (as Codex sends it by default) asks for no live web
        // access: the site's search stays off.
        k if k.starts_with("web_search") => {
            if t.get("external_web_access").and_then(Value::as_bool) != Some(false) {
                b.search = true;
            }
        }
        other => ignored.push(format!("tool type {other}")),
    }
}

/// A freeform tool as the model is offered it: one string parameter, `input`, and the format
/// (a grammar, when the client gives one) in the description.
fn custom_offer(
    description: Option<String>,
    format: Option<&Value>,
) -> (Option<String>, Option<Value>) {
    let mut text = description.unwrap_or_default();
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str("The input is raw text, not JSON: pass it whole as the `input` string.");
    if let Some(f) = format.filter(|f| f.get("type").and_then(Value::as_str) == Some("grammar")) {
        let syntax = f.get("syntax").and_then(Value::as_str).unwrap_or("lark");
        let definition = f
            .get("definition")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let _ = write!(text, " It must follow this {syntax} grammar:\n{definition}");
    }
    let parameters = json!({
        "type": "object",
        "properties": {CUSTOM_INPUT: {"type": "string", "description": "The raw input."}},
        "required": [CUSTOM_INPUT],
    });
    (Some(text), Some(parameters))
}

/// A freeform call's raw input, from the arguments the model wrote.
pub fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(mut m)) => match m.remove(CUSTOM_INPUT) {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        },
        _ => arguments.to_owned(),
    }
}

fn tool_choice(v: Option<&Value>) -> ToolChoice {
    match v {
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => ToolChoice::Auto,
        },
        Some(Value::Object(o)) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or_default();
            let name = o.get("name").and_then(Value::as_str);
            match (kind, name) {
                ("function" | "custom", Some(n)) => {
                    ToolChoice::Named(flat_name(o.get("namespace").and_then(Value::as_str), n))
                }
                ("allowed_tools", _)
                    if o.get("mode").and_then(Value::as_str) == Some("required") =>
                {
                    ToolChoice::Required
                }
                _ => ToolChoice::Auto,
            }
        }
        _ => ToolChoice::Auto,
    }
}

/// `reasoning.effort`: `none` and `minimal` switch thinking off, any other effort on; absent,
/// the model decides.
fn thinking(req: &ResponsesRequest) -> Thinking {
    let enabled = req
        .reasoning
        .as_ref()
        .and_then(|r| r.effort.as_deref())
        .map(|e| !matches!(e, "none" | "minimal"));
    Thinking {
        enabled,
        budget: None,
    }
}

/// Whether reasoning reaches the client: asked for as a summary or as encrypted content.
pub fn wants_reasoning(req: &ResponsesRequest) -> bool {
    let summary = req
        .reasoning
        .as_ref()
        .and_then(|r| r.summary.as_deref())
        .is_some_and(|s| s != "none");
    summary || wants_encrypted(req)
}

pub fn wants_encrypted(req: &ResponsesRequest) -> bool {
    req.include
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|i| i == "reasoning.encrypted_content")
}

fn response_format(req: &ResponsesRequest) -> ResponseFormat {
    let Some(f) = req.text.as_ref().and_then(|t| t.format.as_ref()) else {
        return ResponseFormat::Text;
    };
    match f.get("type").and_then(Value::as_str) {
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => ResponseFormat::JsonSchema(f.to_string()),
        _ => ResponseFormat::Text,
    }
}

/// The conversation: `instructions` first, then the items. Consecutive assistant items
/// (reasoning, messages, calls) are one assistant turn.
pub fn to_conversation(
    req: &ResponsesRequest,
    items: &[Item],
    media: Vec<Media>,
    session: Option<String>,
) -> Translated {
    let mut ignored = Vec::new();
    let mut messages = Vec::new();
    if let Some(i) = req.instructions.as_deref().filter(|i| !i.trim().is_empty()) {
        messages.push(Message::text(Role::System, i));
    }
    history(items, media, &mut ignored, &mut messages);
    let mut tb = toolbox(req.tools.as_deref().unwrap_or_default(), &mut ignored);
    let choice = tool_choice(req.tool_choice.as_ref());
    if let ToolChoice::Named(n) = &choice
        && !tb.names.0.contains_key(n)
    {
        ignored.push(format!("tool_choice {n} (not among the tools)"));
    }
    let conversation = conversation::Request {
        model: req.model.clone().unwrap_or_default(),
        messages,
        options: conversation::Options {
            thinking: thinking(req),
            reasoning_shown: wants_reasoning(req),
            chat_type: tb.search.then_some(ChatType::Search),
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: req.max_output_tokens,
            tools: std::mem::take(&mut tb.tools),
            tool_choice: choice,
            parallel_tool_calls: req.parallel_tool_calls,
            response_format: response_format(req),
            session,
            ..conversation::Options::default()
        },
    };
    Translated {
        conversation,
        names: tb.names,
        ignored,
    }
}

/// The items as messages, after the instructions.
fn history(
    items: &[Item],
    media: Vec<Media>,
    ignored: &mut Vec<String>,
    messages: &mut Vec<Message>,
) {
    let mut media = media.into_iter();
    let mut turn: Option<Message> = None;
    let mut called: HashMap<String, String> = HashMap::new();
    for item in items {
        match item {
            Item::Reasoning {
                summary,
                encrypted_content,
            } => {
                let text = encrypted_content
                    .as_deref()
                    .and_then(super::reasoning::open)
                    .unwrap_or_else(|| summary_text(summary));
                let m = assistant(&mut turn);
                if !text.is_empty() {
                    m.reasoning = Some(text);
                }
            }
            Item::Message {
                role: ItemRole::Assistant,
                content,
            } => {
                let parts = parts(content, &mut media, ignored);
                assistant(&mut turn).parts.extend(parts);
            }
            Item::FunctionCall {
                call_id,
                name,
                arguments,
                namespace,
            } => {
                let flat = flat_name(namespace.as_deref(), name);
                called.insert(call_id.clone(), flat.clone());
                assistant(&mut turn).tool_calls.push(ToolCall {
                    id: call_id.clone(),
                    name: flat,
                    arguments: if arguments.trim().is_empty() {
                        "{}".to_owned()
                    } else {
                        arguments.clone()
                    },
                });
            }
            Item::CustomToolCall {
                call_id,
                name,
                input,
                namespace,
            } => {
                let flat = flat_name(namespace.as_deref(), name);
                called.insert(call_id.clone(), flat.clone());
                assistant(&mut turn).tool_calls.push(ToolCall {
                    id: call_id.clone(),
                    name: flat,
                    arguments: json!({CUSTOM_INPUT: input}).to_string(),
                });
            }
            other => {
                messages.extend(turn.take());
                match other {
                    Item::Message { role, content } => {
                        let role = match role {
                            ItemRole::User => Role::User,
                            _ => Role::System,
                        };
                        let parts = parts(content, &mut media, ignored);
                        messages.push(Message::new(role, parts));
                    }
                    Item::FunctionCallOutput { call_id, output }
                    | Item::CustomToolCallOutput { call_id, output } => {
                        let content = parts(output, &mut media, ignored);
                        messages.push(Message::new(
                            Role::Tool,
                            vec![CPart::ToolResult(ToolResult {
                                call_id: call_id.clone(),
                                name: called.get(call_id).cloned(),
                                is_error: false,
                                content,
                            })],
                        ));
                    }
                    Item::ItemReference { id } => ignored.push(format!("item_reference {id}")),
                    _ => ignored.push("an input item of an unknown type".to_owned()),
                }
            }
        }
    }
    messages.extend(turn);
}

fn assistant(turn: &mut Option<Message>) -> &mut Message {
    turn.get_or_insert_with(|| Message::new(Role::Assistant, Vec::new()))
}

fn summary_text(summary: &[Value]) -> String {
    summary
        .iter()
        .filter_map(|s| s.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

fn parts(
    content: &Content,
    media: &mut impl Iterator<Item = Media>,
    ignored: &mut Vec<String>,
) -> Vec<CPart> {
    match content {
        Content::Text(t) => vec![CPart::Text(t.clone())],
        Content::Parts(ps) => ps
            .iter()
            .filter_map(|p| match p {
                Part::InputText { text } | Part::OutputText { text } => {
                    Some(CPart::Text(text.clone()))
                }
                Part::Refusal { refusal } => Some(CPart::Text(refusal.clone())),
                Part::InputImage { .. } | Part::InputFile { .. } => media.next().map(CPart::Media),
                Part::Other => {
                    ignored.push("a content part of an unknown type".to_owned());
                    None
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
