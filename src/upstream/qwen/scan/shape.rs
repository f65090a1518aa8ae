//! Reading a frame by the shape of the one before: a stream's token events differ only in
//! their values (the text, the token counts), so after one was read in full the next is
//! compared with it byte for byte between the values, and only its values are read.
//!
//! What is taken this way reads exactly as a full read would: the bytes between the values
//! (every key, every brace, every `null` and `true`) are those of a frame the full read took,
//! and each value is read by the same code the full read uses, as the same type (a string
//! where the shape had one, a number where it had one). Anything else, and any difference in
//! the bytes between, goes to the full read.

use std::borrow::Cow;

use super::{Reader, phase, read, status};
use crate::upstream::wire::{Frame, FrameChoice, OutputTokensDetails, WireDelta, WireUsage};

/// One value of a frame: where it stands, and what it is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hole {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    /// The string of a field the frame has; true when it has no escapes.
    Text(Field, bool),
    /// A token count, and its value.
    Count(Count, u64),
    /// A string or number the frame does not keep.
    Skipped,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Field {
    ResponseId,
    Role,
    Name,
    Content,
    Phase,
    Status,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Count {
    Input,
    Output,
    Prompt,
    Completion,
    Reasoning,
}

/// Reads a stream's frames, each by the shape of the last one read in full when it has it.
#[derive(Debug, Default)]
pub struct Scanner {
    shape: Option<Shape>,
}

impl Scanner {
    /// The frame, when the scanner reads it; `None`: parse it with serde.
    pub fn frame<'a>(&mut self, data: &'a str) -> Option<Frame<'a>> {
        if let Some(f) = self.shape.as_ref().and_then(|s| s.read(data)) {
            return Some(f);
        }
        let (f, holes) = read(data)?;
        if let Some(shape) = Shape::of(data, holes, &f) {
            self.shape = Some(shape);
        }
        Some(f)
    }
}

/// A frame read in full, its values taken out.
#[derive(Debug)]
pub(super) struct Shape {
    text: String,
    holes: Vec<Hole>,
    /// Whether it had a choice, a `usage` object, and `output_tokens_details` in it.
    choice: bool,
    usage: bool,
    details: bool,
}

impl Shape {
    /// The shape of `f`, read from `data` with these holes; none for a frame with several
    /// choices (the holes do not say which choice they belong to).
    pub(super) fn of(data: &str, holes: Vec<Hole>, f: &Frame<'_>) -> Option<Self> {
        if f.choices.len() > 1 {
            return None;
        }
        let usage = f.usage.as_ref();
        Some(Self {
            text: data.to_owned(),
            holes,
            choice: !f.choices.is_empty(),
            usage: usage.is_some(),
            details: usage.is_some_and(|u| u.output_tokens_details.is_some()),
        })
    }

    /// `data` read by this shape, if it has it.
    ///
    /// The bytes of `data` are compared with the shape's in long runs: a value that is the
    /// same as the shape's is taken from it, and only where the bytes differ is a value read.
    pub(super) fn read<'a>(&self, data: &'a str) -> Option<Frame<'a>> {
        let shape = self.text.as_bytes();
        let bytes = data.as_bytes();
        let mut f = self.skeleton();
        let mut r = Reader::new(data);
        // `shape[at..]` lines up with `data[r.i..]`, and their first `same` bytes are equal.
        let mut at = 0;
        let mut same = equal_prefix(shape, bytes);
        for hole in &self.holes {
            let before = hole.start - at;
            if same < before {
                return None;
            }
            r.i += before;
            same -= before;
            let len = hole.end - hole.start;
            // The same bytes and one more: the value ends where the shape's did (a number
            // that goes on would differ at the byte after it).
            if same > len {
                match hole.kind {
                    Kind::Text(field, true) => {
                        // The quotes are one byte each.
                        let text = data.get(r.i + 1..r.i + len - 1)?;
                        put_text(&mut f, field, Cow::Borrowed(text));
                        r.i += len;
                    }
                    Kind::Text(field, false) => put_text(&mut f, field, r.string()?),
                    Kind::Count(count, n) => {
                        put_count(&mut f, count, n);
                        r.i += len;
                    }
                    Kind::Skipped => r.i += len,
                }
                same -= len;
            } else {
                match hole.kind {
                    Kind::Text(field, _) => put_text(&mut f, field, r.string()?),
                    Kind::Count(count, _) => put_count(&mut f, count, r.u64()?),
                    Kind::Skipped if shape[hole.start] == b'"' => drop(r.raw_string()?),
                    Kind::Skipped => r.number()?,
                }
                same = equal_prefix(&shape[hole.end..], bytes.get(r.i..)?);
            }
            at = hole.end;
        }
        (same == shape.len() - at && same == bytes.len() - r.i).then_some(f)
    }

    /// A frame with the shape's choice, `usage` and details, their values still unset.
    fn skeleton<'a>(&self) -> Frame<'a> {
        let mut f = Frame::default();
        if self.choice {
            f.choices.push(FrameChoice {
                delta: WireDelta::default(),
            });
        }
        if self.usage {
            f.usage = Some(WireUsage {
                output_tokens_details: self.details.then(OutputTokensDetails::default),
                ..WireUsage::default()
            });
        }
        f
    }
}

/// How many bytes `a` and `b` have in common at their start, compared eight at a time.
fn equal_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while let (Some(x), Some(y)) = (a.get(i..i + 8), b.get(i..i + 8)) {
        let mut wx = [0u8; 8];
        let mut wy = [0u8; 8];
        wx.copy_from_slice(x);
        wy.copy_from_slice(y);
        let diff = u64::from_le_bytes(wx) ^ u64::from_le_bytes(wy);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

fn put_text<'a>(f: &mut Frame<'a>, field: Field, text: Cow<'a, str>) {
    if let Field::ResponseId = field {
        f.response_id = Some(text);
        return;
    }
    // A shape with a field of a delta has its choice.
    let Some(choice) = f.choices.first_mut() else {
        return;
    };
    let d = &mut choice.delta;
    match field {
        Field::ResponseId => {}
        Field::Role => d.role = Some(text),
        Field::Name => d.name = Some(text),
        Field::Content => d.content = Some(text),
        Field::Phase => d.phase = Some(phase(&text)),
        Field::Status => d.status = Some(status(&text)),
    }
}

fn put_count(f: &mut Frame<'_>, count: Count, n: u64) {
    // A shape with a count has its `usage` (and its details, for reasoning tokens).
    let Some(u) = f.usage.as_mut() else {
        return;
    };
    match count {
        Count::Input => u.input_tokens = Some(n),
        Count::Output => u.output_tokens = Some(n),
        Count::Prompt => u.prompt_tokens = Some(n),
        Count::Completion => u.completion_tokens = Some(n),
        Count::Reasoning => {
            if let Some(d) = u.output_tokens_details.as_mut() {
                d.reasoning_tokens = Some(n);
            }
        }
    }
}
