//! Calls in the model's answer text, read as it streams: text goes on at once except the
//! longest tail that could start a call marker; a block becomes calls once it is complete
//! (docs/tools.md). Call syntax inside a Markdown code fence is text; so is a call of a tool
//! that was not offered.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::lenient;
use super::syntax::Syntax;

/// The tools the model may call, by the name it was told, with their parameters' schemas.
#[derive(Clone, Debug, Default)]
pub struct Offered(HashMap<String, Value>);

impl Offered {
    pub fn new(tools: impl IntoIterator<Item = (String, Value)>) -> Self {
        Self(tools.into_iter().collect())
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The JSON type the schema gives the parameter `key` of `tool`, if it gives one.
    fn property_type(&self, tool: &str, key: &str) -> Option<&str> {
        let ty = self.0.get(tool)?.get("properties")?.get(key)?.get("type")?;
        match ty {
            Value::String(t) => Some(t),
            // `["string", "null"]`: the first that is not null.
            Value::Array(types) => types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null"),
            _ => None,
        }
    }
}

/// A call read from the answer: a tool that was offered, and its arguments (an object).
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub name: String,
    pub arguments: Map<String, Value>,
}

/// A stretch of the answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Text(String),
    Call(Call),
    /// A block that opened a call but does not read as one: its raw text.
    Broken(String),
}

/// Reads one answer's text deltas.
#[derive(Debug)]
pub struct Parser {
    offered: Offered,
    /// Text not yet given out: a held-back tail, or an open block from its marker on.
    pending: String,
    /// Whether `pending` starts at the start of a line.
    line_start: bool,
    /// The open Markdown fence: its character and length.
    fence: Option<(u8, usize)>,
    /// The open block's syntax.
    block: Option<Syntax>,
}

enum Scan {
    /// A block of this syntax starts at `at`.
    Block { at: usize, syntax: Syntax },
    /// Everything before `at` is text; what follows may still start a marker.
    Hold { at: usize },
}

impl Parser {
    pub fn new(offered: Offered) -> Self {
        Self {
            offered,
            pending: String::new(),
            line_start: true,
            fence: None,
            block: None,
        }
    }

    /// Reads `delta`; returns what can be given out now.
    pub fn push(&mut self, delta: &str) -> Vec<Piece> {
        self.pending.push_str(delta);
        let mut out = Vec::new();
        loop {
            if let Some(syntax) = self.block {
                let Some(end) = self.pending.find(syntax.close()) else {
                    break;
                };
                let raw: String = self.pending.drain(..end + syntax.close().len()).collect();
                self.block = None;
                self.line_start = false;
                out.extend(self.read_block(syntax, raw, true));
                continue;
            }
            match self.scan() {
                Scan::Block { at, syntax } => {
                    push_text(&mut out, self.pending.drain(..at).collect());
                    self.block = Some(syntax);
                }
                Scan::Hold { at } => {
                    push_text(&mut out, self.pending.drain(..at).collect());
                    break;
                }
            }
        }
        out
    }

    /// The end of the answer: a block whose closing marker never came is read as it stands.
    pub fn finish(&mut self) -> Vec<Piece> {
        let rest = std::mem::take(&mut self.pending);
        match self.block.take() {
            Some(syntax) => self.read_block(syntax, rest, false),
            None if rest.is_empty() => Vec::new(),
            None => vec![Piece::Text(rest)],
        }
    }

    /// Walks `pending` (updating the line and fence state) to the first block or held tail.
    fn scan(&mut self) -> Scan {
        let text = self.pending.as_str();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if self.line_start {
                match fence_at(&text[i..]) {
                    Fence::Partial => return Scan::Hold { at: i },
                    Fence::Marker { len, ch, count } => {
                        self.fence = match self.fence {
                            None => Some((ch, count)),
                            Some((c, n)) if c == ch && count >= n => None,
                            open => open,
                        };
                        self.line_start = false;
                        i += len;
                        continue;
                    }
                    Fence::No => {}
                }
            }
            let b = bytes[i];
            self.line_start = b == b'\n';
            if b == b'<' && self.fence.is_none() {
                let rest = &text[i..];
                for syntax in Syntax::ALL {
                    if rest.starts_with(syntax.open()) {
                        return Scan::Block { at: i, syntax };
                    }
                }
                if Syntax::ALL.iter().any(|s| s.open().starts_with(rest)) {
                    return Scan::Hold { at: i };
                }
            }
            i += 1;
        }
        Scan::Hold { at: bytes.len() }
    }

    fn read_block(&self, syntax: Syntax, raw: String, closed: bool) -> Vec<Piece> {
        let end = if closed {
            raw.len() - syntax.close().len()
        } else {
            raw.len()
        };
        let inner = &raw[syntax.open().len()..end];
        match read_calls(syntax, inner, &self.offered) {
            Ok(calls) => calls.into_iter().map(Piece::Call).collect(),
            Err(Unread::NotOffered) => vec![Piece::Text(raw)],
            Err(Unread::Malformed) => vec![Piece::Broken(raw)],
        }
    }
}

fn push_text(out: &mut Vec<Piece>, text: String) {
    if text.is_empty() {
        return;
    }
    if let Some(Piece::Text(t)) = out.last_mut() {
        t.push_str(&text);
    } else {
        out.push(Piece::Text(text));
    }
}

enum Fence {
    No,
    /// Could still become a fence when more text comes.
    Partial,
    Marker {
        len: usize,
        ch: u8,
        count: usize,
    },
}

/// A Markdown fence at the start of `line`: up to three spaces, then three or more backticks
/// or tildes.
fn fence_at(line: &str) -> Fence {
    let bytes = line.as_bytes();
    let indent = bytes.iter().take(4).take_while(|b| **b == b' ').count();
    if indent > 3 {
        return Fence::No;
    }
    let Some(&ch) = bytes.get(indent) else {
        return Fence::Partial;
    };
    if ch != b'`' && ch != b'~' {
        return Fence::No;
    }
    let count = bytes[indent..].iter().take_while(|b| **b == ch).count();
    if indent + count == bytes.len() {
        return Fence::Partial;
    }
    if count < 3 {
        return Fence::No;
    }
    Fence::Marker {
        len: indent + count,
        ch,
        count,
    }
}

enum Unread {
    /// Reads as calls, but of a tool that was not offered: text.
    NotOffered,
    Malformed,
}

/// The calls in a block's inside (between its markers).
fn read_calls(syntax: Syntax, inner: &str, offered: &Offered) -> Result<Vec<Call>, Unread> {
    let calls = match syntax {
        Syntax::Own => own(inner)?,
        Syntax::Hermes if inner.contains(Syntax::Coder.open()) => coder_blocks(inner, offered)?,
        Syntax::Hermes => objects(inner)?,
        Syntax::Coder => vec![coder(inner, offered)?],
    };
    if calls.is_empty() {
        return Err(Unread::Malformed);
    }
    if calls.iter().any(|c| !offered.has(&c.name)) {
        return Err(Unread::NotOffered);
    }
    Ok(calls)
}

/// `name="NAME">{arguments}`, or a tag without a name around Hermes objects.
fn own(inner: &str) -> Result<Vec<Call>, Unread> {
    let (tag, body) = inner.split_once('>').ok_or(Unread::Malformed)?;
    let Some(name) = attribute(tag, "name") else {
        return objects(body);
    };
    let arguments = match lenient::parse(body) {
        None if body.trim().is_empty() => Map::new(),
        // The Hermes object inside our tag: `{"name": NAME, "arguments": {…}}`.
        Some(Value::Object(o)) if o.get("name").and_then(Value::as_str) == Some(&name) => {
            return Ok(vec![call_of(Value::Object(o))?]);
        }
        Some(Value::Object(o)) => o,
        None | Some(_) => return Err(Unread::Malformed),
    };
    Ok(vec![Call { name, arguments }])
}

/// The value of `key="…"` (or `'…'`, or bare) in a tag's attributes.
fn attribute(tag: &str, key: &str) -> Option<String> {
    let at = tag.find(&format!("{key}="))? + key.len() + 1;
    let rest = &tag[at..];
    let value = match rest.chars().next()? {
        q @ ('"' | '\'') => rest[1..].split(q).next()?,
        _ => rest.split(|c: char| c.is_whitespace() || c == '/').next()?,
    };
    let value = value.trim().replace("&quot;", "\"").replace("&amp;", "&");
    (!value.is_empty()).then_some(value)
}

/// One or more `{"name", "arguments"}` objects, or an array of them.
fn objects(text: &str) -> Result<Vec<Call>, Unread> {
    if let Some(Value::Array(items)) = lenient::parse(text) {
        return items.into_iter().map(call_of).collect();
    }
    lenient::objects(lenient::unfence(text.trim()))
        .into_iter()
        .map(|o| lenient::parse(o).ok_or(Unread::Malformed).and_then(call_of))
        .collect()
}

/// A call from `{"name": …, "arguments": {…} | "{…}"}` (also `parameters`, or OpenAI's
/// `{"function": {…}}`).
fn call_of(value: Value) -> Result<Call, Unread> {
    let Value::Object(mut o) = value else {
        return Err(Unread::Malformed);
    };
    if let Some(Value::Object(f)) = o.remove("function") {
        return call_of(Value::Object(f));
    }
    let Some(Value::String(name)) = o.remove("name") else {
        return Err(Unread::Malformed);
    };
    let arguments = match o.remove("arguments").or_else(|| o.remove("parameters")) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => a,
        Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
        Some(Value::String(s)) => match lenient::parse(&s) {
            Some(Value::Object(a)) => a,
            _ => return Err(Unread::Malformed),
        },
        Some(_) => return Err(Unread::Malformed),
    };
    Ok(Call {
        name: name.trim().to_owned(),
        arguments,
    })
}

/// Every `<function=…>` in a Hermes block.
fn coder_blocks(inner: &str, offered: &Offered) -> Result<Vec<Call>, Unread> {
    inner
        .split(Syntax::Coder.open())
        .skip(1)
        .map(|part| {
            let part = part.split(Syntax::Coder.close()).next().unwrap_or(part);
            coder(part, offered)
        })
        .collect()
}

/// `NAME><parameter=KEY>VALUE</parameter>…`, each value typed by the tool's schema.
fn coder(inner: &str, offered: &Offered) -> Result<Call, Unread> {
    let (name, body) = inner.split_once('>').ok_or(Unread::Malformed)?;
    let name = name.trim().to_owned();
    if name.is_empty() {
        return Err(Unread::Malformed);
    }
    let mut arguments = Map::new();
    for part in body.split("<parameter=").skip(1) {
        let (key, value) = part.split_once('>').ok_or(Unread::Malformed)?;
        let value = value.split("</parameter>").next().unwrap_or(value);
        let value = value.strip_prefix('\n').unwrap_or(value);
        let value = value.strip_suffix('\n').unwrap_or(value);
        let key = key.trim().to_owned();
        let typed = match offered.property_type(&name, &key) {
            Some("string") | None => Value::String(value.to_owned()),
            Some(_) => lenient::parse(value).unwrap_or_else(|| Value::String(value.to_owned())),
        };
        arguments.insert(key, typed);
    }
    Ok(Call { name, arguments })
}

#[cfg(test)]
mod tests;
