//! The history key of a conversation: a SHA-256 over what the next request of the same
//! conversation will carry, so that an upstream chat can be found again without the client
//! naming a session (docs/upstream.md §5.5). Pure: no IO.
//!
//! The key covers the surface, the resolved model, the tool set (names and parameter schemas)
//! and choice, the caller's key id and the history, normalised so that a client's re-serialisation of our
//! own answer still matches: roles; text with whitespace trimmed and collapsed; tool calls by
//! name and arguments parsed as JSON and written canonically (ids ignored); tool results by
//! content (call ids ignored); media by SHA-256 or URL; reasoning ignored.

use sha2::{Digest, Sha256};

use super::{Media, MediaSource, Message, Part, Role, Tool, ToolCall, ToolChoice};

/// What a key is scoped to besides the history.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The client surface (`chat.completions`, `messages`, `responses`).
    pub surface: &'a str,
    /// The upstream model id the request resolved to.
    pub model: &'a str,
    pub tools: &'a [Tool],
    /// The chat's first message told the model which tools it must or may call.
    pub tool_choice: &'a ToolChoice,
    /// The downstream key's id (`None`: no key, as with auth off).
    pub caller: Option<&'a str>,
}

/// A history key: lower-case hex SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HistoryKey(String);

impl HistoryKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The hash of a scope and a history so far; more messages may be pushed.
#[derive(Clone)]
pub struct Thread {
    hasher: Sha256,
}

impl std::fmt::Debug for Thread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Thread")
    }
}

impl Thread {
    pub fn new(scope: &Scope<'_>) -> Self {
        let mut hasher = Sha256::new();
        field(&mut hasher, b"qwen2api-thread-v1");
        field(&mut hasher, scope.surface.as_bytes());
        field(&mut hasher, scope.model.as_bytes());
        field(&mut hasher, scope.caller.unwrap_or("").as_bytes());
        count(&mut hasher, scope.tools.len());
        for tool in scope.tools {
            field(&mut hasher, tool.name.as_bytes());
            let schema = tool.parameters.as_ref().map(canonical).unwrap_or_default();
            field(&mut hasher, schema.as_bytes());
        }
        let choice = match scope.tool_choice {
            ToolChoice::Auto => "auto".to_owned(),
            ToolChoice::None => "none".to_owned(),
            ToolChoice::Required => "required".to_owned(),
            ToolChoice::Named(name) => format!("named:{name}"),
        };
        field(&mut hasher, choice.as_bytes());
        Self { hasher }
    }

    /// Adds one message, normalised.
    pub fn push(&mut self, m: &Message) {
        let h = &mut self.hasher;
        field(h, m.role.as_str().as_bytes());
        let texts: Vec<&str> = m
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        let text = texts.join(" ");
        let text = match m.role {
            Role::Assistant => without_think_block(&text),
            _ => &text,
        };
        field(h, collapse(text).as_bytes());
        for p in &m.parts {
            match p {
                Part::Text(_) => {}
                Part::Media(media) => {
                    field(h, b"media");
                    field(h, media_id(media).as_bytes());
                }
                Part::ToolResult(r) => {
                    field(h, b"result");
                    field(h, if r.is_error { b"error" } else { b"ok" });
                    field(
                        h,
                        collapse(&Message::new(Role::Tool, r.content.clone()).joined_text())
                            .as_bytes(),
                    );
                    for c in &r.content {
                        if let Part::Media(media) = c {
                            field(h, media_id(media).as_bytes());
                        }
                    }
                }
            }
        }
        count(h, m.tool_calls.len());
        for call in &m.tool_calls {
            push_call(h, call);
        }
    }

    /// The key of the history pushed so far.
    pub fn key(&self) -> HistoryKey {
        HistoryKey(hex::encode(self.hasher.clone().finalize()))
    }
}

fn push_call(h: &mut Sha256, call: &ToolCall) {
    field(h, call.name.as_bytes());
    let args = match serde_json::from_str::<serde_json::Value>(&call.arguments) {
        Ok(v) => canonical(&v),
        Err(_) => collapse(&call.arguments),
    };
    field(h, args.as_bytes());
}

/// The keys of one request.
#[derive(Clone, Debug)]
pub struct Keys {
    /// The history minus its new tail, when the request can continue an earlier answer: its
    /// history has an assistant message and only user and tool messages follow the last one.
    pub lookup: Option<HistoryKey>,
    /// Where the new tail starts (with `lookup`).
    pub tail_start: usize,
    /// The whole history: push the answer given to it and take [`Thread::key`] for the key
    /// the next request of this conversation looks up.
    pub through: Thread,
}

/// The keys of a request with these messages.
pub fn keys(scope: &Scope<'_>, messages: &[Message]) -> Keys {
    let mut thread = Thread::new(scope);
    let start = tail_start(messages);
    let mut lookup = None;
    for (i, m) in messages.iter().enumerate() {
        if Some(i) == start {
            lookup = Some(thread.key());
        }
        thread.push(m);
    }
    Keys {
        lookup,
        tail_start: start.unwrap_or(messages.len()),
        through: thread,
    }
}

/// Where the new tail starts: just after the last assistant message, when there is one and
/// what follows is one or more user or tool messages.
pub fn tail_start(messages: &[Message]) -> Option<usize> {
    let last = messages.iter().rposition(|m| m.role == Role::Assistant)?;
    let tail = &messages[last + 1..];
    let plain = tail
        .iter()
        .all(|m| matches!(m.role, Role::User | Role::Tool));
    (!tail.is_empty() && plain).then_some(last + 1)
}

/// An assistant's text without the reasoning a client replays inline as a leading
/// `<think>…</think>` block (the `tags` reasoning format): reasoning is not part of the key.
fn without_think_block(text: &str) -> &str {
    let trimmed = text.trim_start();
    let Some(rest) = trimmed.strip_prefix("<think>") else {
        return text;
    };
    rest.find("</think>")
        .map_or(text, |end| &rest[end + "</think>".len()..])
}

/// Text trimmed, with every run of whitespace made one space.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn media_id(media: &Media) -> String {
    match &media.source {
        MediaSource::Blob(b) => format!("sha256:{}", b.sha256),
        MediaSource::Url(u) => format!("url:{u}"),
    }
}

/// JSON with object keys sorted at every level and no spaces.
fn canonical(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// A length-prefixed field, so that no two different histories hash the same bytes.
fn field(h: &mut Sha256, bytes: &[u8]) {
    count(h, bytes.len());
    h.update(bytes);
}

fn count(h: &mut Sha256, n: usize) {
    h.update((n as u64).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::ToolResult;

    const SCOPE: Scope<'static> = Scope {
        surface: "chat.completions",
        model: "qwen3.7-plus",
        tools: &[],
        tool_choice: &ToolChoice::Auto,
        caller: Some("key-1"),
    };

    fn text(role: Role, t: &str) -> Message {
        Message::text(role, t)
    }

    fn call(id: &str, args: &str) -> Message {
        let mut m = Message::new(Role::Assistant, vec![Part::Text(String::new())]);
        m.tool_calls = vec![ToolCall {
            id: id.into(),
            name: "read".into(),
            arguments: args.into(),
        }];
        m
    }

    fn result(id: &str, content: &str) -> Message {
        Message::new(
            Role::Tool,
            vec![Part::ToolResult(ToolResult {
                call_id: id.into(),
                name: None,
                is_error: false,
                content: vec![Part::Text(content.into())],
            })],
        )
    }

    fn through(scope: &Scope<'_>, history: &[Message], answer: &Message) -> HistoryKey {
        let mut t = keys(scope, history).through;
        t.push(answer);
        t.key()
    }

    #[test]
    fn the_next_request_looks_up_the_key_stored_with_the_answer() {
        let history = [text(Role::System, "be brief"), text(Role::User, "hi")];
        let answer = text(Role::Assistant, "Hello!\n\nHow can I help?");
        let stored = through(&SCOPE, &history, &answer);
        assert_eq!(stored.as_str().len(), 64);
        let mut answer_back = text(Role::Assistant, "  Hello! How can I help? ");
        answer_back.reasoning = Some("thinking the client replays".into());
        let tagged = text(
            Role::Assistant,
            "<think>\nthinking inline\n</think>\n\nHello!\n\nHow can I help?",
        );
        let tagged_next = [
            history[0].clone(),
            history[1].clone(),
            tagged,
            text(Role::User, "more"),
        ];
        assert_eq!(keys(&SCOPE, &tagged_next).lookup, Some(stored.clone()));
        let next = [
            history[0].clone(),
            history[1].clone(),
            answer_back,
            text(Role::User, "more"),
        ];
        let k = keys(&SCOPE, &next);
        assert_eq!(k.lookup, Some(stored));
        assert_eq!(k.tail_start, 3);
    }

    #[test]
    fn tool_call_ids_and_argument_spacing_do_not_matter() {
        let history = [text(Role::User, "read a.rs")];
        let stored = through(
            &SCOPE,
            &history,
            &call("call_proxy_1", r#"{"path":"/a.rs","n":1}"#),
        );
        let next = [
            history[0].clone(),
            call("toolu_client_9", r#"{ "n": 1, "path": "/a.rs" }"#),
            result("toolu_client_9", "fn main() {}"),
        ];
        assert_eq!(keys(&SCOPE, &next).lookup, Some(stored.clone()));
        // Other arguments are another history.
        let other = [
            history[0].clone(),
            call("c", r#"{"path":"/b.rs","n":1}"#),
            result("c", "x"),
        ];
        assert_ne!(keys(&SCOPE, &other).lookup, Some(stored));
    }

    #[test]
    fn scope_and_edits_change_the_key() {
        let history = [text(Role::User, "hi"), text(Role::Assistant, "hello")];
        let base = Thread::new(&SCOPE);
        let key = |scope: &Scope<'_>, msgs: &[Message]| {
            let mut t = Thread::new(scope);
            for m in msgs {
                t.push(m);
            }
            t.key()
        };
        let k = key(&SCOPE, &history);
        assert_ne!(base.key(), k);
        let other_caller = Scope {
            caller: Some("key-2"),
            ..SCOPE
        };
        let other_surface = Scope {
            surface: "messages",
            ..SCOPE
        };
        let other_model = Scope {
            model: "qwen3-max",
            ..SCOPE
        };
        let tools = [Tool {
            name: "read".into(),
            description: Some("Reads.".into()),
            parameters: Some(serde_json::json!({"type": "object"})),
            strict: false,
        }];
        let with_tools = Scope {
            tools: &tools,
            ..SCOPE
        };
        let required = Scope {
            tool_choice: &ToolChoice::Required,
            ..SCOPE
        };
        for scope in [
            other_caller,
            other_surface,
            other_model,
            with_tools,
            required,
        ] {
            assert_ne!(key(&scope, &history), k, "{scope:?}");
        }
        let edited = [text(Role::User, "hi!"), text(Role::Assistant, "hello")];
        assert_ne!(key(&SCOPE, &edited), k);
        // Whitespace alone is no edit.
        let spaced = [text(Role::User, " hi\n"), text(Role::Assistant, "hello ")];
        assert_eq!(key(&SCOPE, &spaced), k);
    }

    #[test]
    fn only_a_history_with_an_answer_and_a_new_tail_can_continue() {
        assert_eq!(tail_start(&[text(Role::User, "hi")]), None);
        assert_eq!(
            tail_start(&[text(Role::User, "hi"), text(Role::Assistant, "yo")]),
            None
        );
        assert_eq!(
            tail_start(&[
                text(Role::User, "hi"),
                text(Role::Assistant, "yo"),
                text(Role::System, "new rules"),
            ]),
            None
        );
        assert_eq!(
            tail_start(&[
                text(Role::User, "hi"),
                call("c", "{}"),
                result("c", "1"),
                text(Role::User, "and?"),
            ]),
            Some(2)
        );
        let k = keys(&SCOPE, &[text(Role::User, "hi")]);
        assert_eq!((k.lookup, k.tail_start), (None, 1));
    }
}
