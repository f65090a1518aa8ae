//! The fast path for reading a stream frame: a strict JSON scanner for the usual token event
//! that hands anything unusual back to serde, so it never decides differently from
//! `serde_json::from_str::<Frame>`.
//!
//! serde_json spends most of its time on a token event in the fields the proxy never reads
//! (`usage` details, `timestamp`, the repeated ids). This reads the fields `Frame` has and
//! checks and skips the others. It answers `None`, and serde decides, for anything it does not
//! handle itself: `response.created`, `extra`, `success`, `error`, a `\u` escape or a control
//! character in any string, an escaped key, a repeated known field, a value of an unexpected
//! type, deep nesting, or invalid JSON. Other escaped text it reads is decoded by serde_json.
//!
//! Within a stream, [`Scanner`] reads most token events by the shape of the one before
//! ([`shape`]): only the values that changed are read.

use std::borrow::Cow;

use super::wire::{
    Choices, Frame, FrameChoice, OutputTokensDetails, Phase, Status, WireDelta, WireUsage,
};

mod shape;

pub use shape::Scanner;
use shape::{Count, Field, Hole, Kind};

/// The index of the first byte from `i` on that stops a run of plain string text (a quote, a
/// backslash, a control character), or `None` when the text ends first.
///
/// Eight bytes at a time: word-at-a-time tests for a zero byte after xor, and for a byte
/// below 0x20. Each test may flag bytes above the first one it finds (a borrow runs upwards),
/// never below it, so the lowest flagged byte is the first stop. The last few bytes are read
/// into a word padded with zeros, which stop as control characters do, past the end.
fn next_stop(bytes: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v;
    loop {
        let mut eight = [0u8; 8];
        if let Some(word) = bytes.get(i..i + 8) {
            eight.copy_from_slice(word);
        } else {
            let rest = bytes.get(i..)?;
            eight[..rest.len()].copy_from_slice(rest);
        }
        let x = u64::from_le_bytes(eight);
        let stops = (has_zero(x ^ (ONES * u64::from(b'"')))
            | has_zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGH;
        if stops != 0 {
            let at = i + (stops.trailing_zeros() / 8) as usize;
            return (at < bytes.len()).then_some(at);
        }
        i += 8;
    }
}

/// Nesting a skipped value may have before the frame goes to serde (which allows 128).
const MAX_DEPTH: usize = 32;

/// The frame, when it has the shape this scanner reads; `None`: parse it with serde.
pub fn frame(data: &str) -> Option<Frame<'_>> {
    read(data).map(|(f, _)| f)
}

/// The frame, and where each value it holds stands in `data`.
fn read(data: &str) -> Option<(Frame<'_>, Vec<Hole>)> {
    let mut r = Reader::new(data);
    r.holes = Some(Vec::new());
    let mut f = Frame::default();
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            "choices" => {
                seen.once(0)?;
                f.choices = r.choices()?;
            }
            "response_id" => {
                seen.once(1)?;
                f.response_id = r.text(Field::ResponseId)?;
            }
            "usage" => {
                seen.once(2)?;
                f.usage = r.usage()?;
            }
            "response.created" | "success" | "error" => return None,
            _ => r.skip(0)?,
        }
        Some(())
    })?;
    r.ws();
    (r.i == data.len()).then_some((f, r.holes.unwrap_or_default()))
}

/// Which known fields of an object were read already: serde rejects a repeated one.
#[derive(Default)]
struct Seen(u8);

impl Seen {
    fn once(&mut self, bit: u8) -> Option<()> {
        let mask = 1 << bit;
        if self.0 & mask != 0 {
            return None;
        }
        self.0 |= mask;
        Some(())
    }
}

/// The reader's methods answer `None` for "leave this frame to serde"; a field that may be
/// `null` is then an `Option<Option<T>>`.
struct Reader<'a> {
    s: &'a str,
    i: usize,
    /// The values read so far, in order, each where it stands in `s`; kept only on a full
    /// read (a shape's read does not need them, and would allocate for them per frame).
    holes: Option<Vec<Hole>>,
}

#[allow(clippy::option_option)]
impl<'a> Reader<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            s,
            i: 0,
            holes: None,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// `null`, consumed; false (nothing consumed) for anything else.
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.literal(b"null")?;
        Some(true)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.bytes().get(self.i..end)? == word).then(|| self.i = end)
    }

    /// An object, calling `field` with each key once the reader stands before its value.
    /// Keys with escapes go to serde.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let (key, escaped) = self.raw_string()?;
            if escaped {
                return None;
            }
            self.eat(b':')?;
            field(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array, calling `item` once the reader stands before each element.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The text between the quotes of a string, and whether it has escapes. Control
    /// characters and `\u` escapes (which may be invalid surrogates) go to serde.
    fn raw_string(&mut self) -> Option<(&'a str, bool)> {
        self.eat(b'"')?;
        let bytes = self.bytes();
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = next_stop(bytes, self.i)?;
            match bytes[self.i] {
                b'"' => {
                    let text = &self.s[start..self.i];
                    self.i += 1;
                    return Some((text, escaped));
                }
                b'\\' => match bytes.get(self.i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                    _ => return None,
                },
                _ => return None,
            }
            escaped = true;
        }
    }

    /// A string value, borrowed when it has no escapes, else decoded by serde_json.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let (text, escaped) = self.raw_string()?;
        if !escaped {
            return Some(Cow::Borrowed(text));
        }
        // The quotes around `text` are one byte each.
        let quoted = self.s.get(self.i - text.len() - 2..self.i)?;
        serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
    }

    /// `Option<Cow<str>>`: a string or `null`; the string is the value of `field`.
    fn text(&mut self, field: Field) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        let start = self.i;
        let text = self.string()?;
        let plain = matches!(text, Cow::Borrowed(_));
        self.hole(start, Kind::Text(field, plain));
        Some(Some(text))
    }

    /// `Option<u64>`: `null` or the number `count`.
    fn count(&mut self, count: Count) -> Option<Option<u64>> {
        if self.null()? {
            return Some(None);
        }
        let start = self.i;
        let n = self.u64()?;
        self.hole(start, Kind::Count(count, n));
        Some(Some(n))
    }

    /// A plain non-negative integer that fits, right here (serde rejects fractions,
    /// exponents and negatives for a `u64`, so those go to serde to be rejected).
    fn u64(&mut self) -> Option<u64> {
        let start = self.i;
        self.number()?;
        let number = &self.s[start..self.i];
        if !number.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        number.parse().ok()
    }

    /// Notes the value that started at `start` and ended here.
    fn hole(&mut self, start: usize, kind: Kind) {
        if let Some(holes) = &mut self.holes {
            holes.push(Hole {
                start,
                end: self.i,
                kind,
            });
        }
    }

    fn choices(&mut self) -> Option<Choices<'a>> {
        let mut out = Choices::new();
        self.array(|r| {
            out.push(r.choice()?);
            Some(())
        })?;
        Some(out)
    }

    fn choice(&mut self) -> Option<FrameChoice<'a>> {
        let mut delta = WireDelta::default();
        let mut seen = Seen::default();
        self.object(|r, key| {
            if key == "delta" {
                seen.once(0)?;
                delta = r.delta()?;
            } else {
                r.skip(0)?;
            }
            Some(())
        })?;
        Some(FrameChoice { delta })
    }

    fn delta(&mut self) -> Option<WireDelta<'a>> {
        let mut d = WireDelta::default();
        let mut seen = Seen::default();
        self.object(|r, key| {
            match key {
                "role" => {
                    seen.once(0)?;
                    d.role = r.text(Field::Role)?;
                }
                "name" => {
                    seen.once(1)?;
                    d.name = r.text(Field::Name)?;
                }
                "content" => {
                    seen.once(2)?;
                    d.content = r.text(Field::Content)?;
                }
                "phase" => {
                    seen.once(3)?;
                    d.phase = r.text(Field::Phase)?.map(|p| phase(&p));
                }
                "status" => {
                    seen.once(4)?;
                    d.status = r.text(Field::Status)?.map(|s| status(&s));
                }
                "extra" => {
                    seen.once(5)?;
                    if !r.null()? {
                        return None;
                    }
                }
                _ => r.skip(0)?,
            }
            Some(())
        })?;
        Some(d)
    }

    fn usage(&mut self) -> Option<Option<WireUsage>> {
        if self.null()? {
            return Some(None);
        }
        let mut u = WireUsage::default();
        let mut seen = Seen::default();
        self.object(|r, key| {
            match key {
                "input_tokens" => {
                    seen.once(0)?;
                    u.input_tokens = r.count(Count::Input)?;
                }
                "output_tokens" => {
                    seen.once(1)?;
                    u.output_tokens = r.count(Count::Output)?;
                }
                "prompt_tokens" => {
                    seen.once(2)?;
                    u.prompt_tokens = r.count(Count::Prompt)?;
                }
                "completion_tokens" => {
                    seen.once(3)?;
                    u.completion_tokens = r.count(Count::Completion)?;
                }
                "output_tokens_details" => {
                    seen.once(4)?;
                    u.output_tokens_details = r.details()?;
                }
                _ => r.skip(0)?,
            }
            Some(())
        })?;
        Some(Some(u))
    }

    fn details(&mut self) -> Option<Option<OutputTokensDetails>> {
        if self.null()? {
            return Some(None);
        }
        let mut d = OutputTokensDetails::default();
        let mut seen = Seen::default();
        self.object(|r, key| {
            if key == "reasoning_tokens" {
                seen.once(0)?;
                d.reasoning_tokens = r.count(Count::Reasoning)?;
            } else {
                r.skip(0)?;
            }
            Some(())
        })?;
        Some(Some(d))
    }

    /// Any JSON value, checked as strictly as serde_json checks it.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let first = self.peek()?;
        let start = self.i;
        match first {
            b'"' => {
                self.raw_string()?;
                self.hole(start, Kind::Skipped);
            }
            b'{' => self.object(|r, _| r.skip(depth + 1))?,
            b'[' => self.array(|r| r.skip(depth + 1))?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => {
                self.number()?;
                self.hole(start, Kind::Skipped);
            }
        }
        Some(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.bytes().get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int = self.digits()?;
        if int.len() > 1 && int.starts_with('0') {
            return None;
        }
        if self.bytes().get(self.i) == Some(&b'.') {
            self.i += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes().get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.bytes().get(self.i) {
                self.i += 1;
            }
            self.digits()?;
        }
        Some(())
    }

    /// One or more digits right here, with no whitespace before them.
    fn digits(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self.bytes().get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        (self.i > start).then(|| &self.s[start..self.i])
    }
}

/// The phase as serde reads it: known names, anything else `Unknown`.
fn phase(s: &str) -> Phase {
    match s {
        "think" => Phase::Think,
        "thinking_summary" => Phase::ThinkingSummary,
        "answer" => Phase::Answer,
        "web_search" => Phase::WebSearch,
        "image_gen" => Phase::ImageGen,
        _ => Phase::Unknown,
    }
}

fn status(s: &str) -> Status {
    match s {
        "typing" => Status::Typing,
        "finished" => Status::Finished,
        _ => Status::Unknown,
    }
}

#[cfg(test)]
mod tests;
