//! Answer events → Anthropic content blocks: one state machine ([`Blocks`]) opens and closes
//! thinking, text and `tool_use` blocks in order; [`StreamEncoder`] writes its steps as stream
//! events (`message_start` … `message_stop`) and [`Aggregate`] collects them into one message.

use sha2::Digest as _;

use super::response::{
    BlockDelta, BlockOut, MessageDelta, MessageOut, StopReason, StreamEvent, Usage,
};
use crate::config::SearchInfoMode;
use crate::conversation::cut::CutReason;
use crate::conversation::{AnswerEvent, Finish, TokenUsage};

/// One step of building the content: a block opens, grows, or closes.
#[derive(Debug, PartialEq)]
enum Step {
    Start(usize, BlockOut),
    Delta(usize, Grow),
    Stop(usize),
}

#[derive(Debug, PartialEq)]
enum Grow {
    Thinking(String),
    Signature(String),
    Text(String),
    InputJson(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
    ToolUse,
}

/// Opens, grows and closes blocks as answer events arrive.
#[derive(Debug)]
struct Blocks {
    open: Option<(usize, Open)>,
    next: usize,
    /// The open thinking block's text, hashed for its signature.
    thinking: sha2::Sha256,
    sources: SearchInfoMode,
}

impl Blocks {
    fn new(sources: SearchInfoMode) -> Self {
        Self {
            open: None,
            next: 0,
            thinking: sha2::Sha256::new(),
            sources,
        }
    }

    /// The steps one event becomes.
    fn step(&mut self, ev: AnswerEvent, out: &mut Vec<Step>) {
        match ev {
            AnswerEvent::Reasoning(t) if !t.is_empty() => {
                let i = self.ensure(Open::Thinking, out, || BlockOut::Thinking {
                    thinking: String::new(),
                    signature: String::new(),
                });
                self.thinking.update(t.as_bytes());
                out.push(Step::Delta(i, Grow::Thinking(t)));
            }
            AnswerEvent::Text(t) if !t.is_empty() => self.text(t, out),
            AnswerEvent::Sources { first, sources } => {
                let block = crate::openai::sources::render(self.sources, &sources, first);
                if !block.is_empty() {
                    self.text(block, out);
                }
            }
            AnswerEvent::ToolCallStart { id, name, .. } => {
                self.close(out);
                let i = self.next;
                self.next += 1;
                self.open = Some((i, Open::ToolUse));
                out.push(Step::Start(
                    i,
                    BlockOut::ToolUse {
                        id: tool_use_id(&id),
                        name,
                        input: serde_json::json!({}),
                    },
                ));
            }
            AnswerEvent::ToolCallArguments { delta, .. } if !delta.is_empty() => {
                if let Some((i, Open::ToolUse)) = self.open {
                    out.push(Step::Delta(i, Grow::InputJson(delta)));
                }
            }
            AnswerEvent::ToolCallEnd { .. } | AnswerEvent::Finish(_) => self.close(out),
            _ => {}
        }
    }

    fn text(&mut self, t: String, out: &mut Vec<Step>) {
        let i = self.ensure(Open::Text, out, || BlockOut::Text {
            text: String::new(),
        });
        out.push(Step::Delta(i, Grow::Text(t)));
    }

    /// The index of an open block of `kind`, opening one (after closing another) if needed.
    fn ensure(
        &mut self,
        kind: Open,
        out: &mut Vec<Step>,
        block: impl FnOnce() -> BlockOut,
    ) -> usize {
        if let Some((i, open)) = self.open
            && open == kind
        {
            return i;
        }
        self.close(out);
        let i = self.next;
        self.next += 1;
        self.open = Some((i, kind));
        out.push(Step::Start(i, block()));
        i
    }

    /// Closes the open block; a thinking block gets its signature first.
    fn close(&mut self, out: &mut Vec<Step>) {
        let Some((i, kind)) = self.open.take() else {
            return;
        };
        if kind == Open::Thinking {
            let digest = std::mem::take(&mut self.thinking).finalize();
            out.push(Step::Delta(i, Grow::Signature(signature(&digest))));
        }
        out.push(Step::Stop(i));
    }
}

/// An opaque, non-empty signature for a thinking block (clients send it back; this server
/// ignores it).
fn signature(digest: &[u8]) -> String {
    format!("qwen2api.{}", hex::encode(digest))
}

/// Tool-use ids as Anthropic clients know them (`toolu_…`).
fn tool_use_id(id: &str) -> String {
    match id.strip_prefix("call_") {
        Some(rest) => format!("toolu_{rest}"),
        None if id.starts_with("toolu_") => id.to_owned(),
        None => format!("toolu_{id}"),
    }
}

/// How the answer ended, as Anthropic says it.
pub fn stop_reason(finish: Finish, cut: Option<&CutReason>) -> (StopReason, Option<String>) {
    match cut {
        Some(CutReason::StopSequence(s)) => (StopReason::StopSequence, Some(s.clone())),
        Some(CutReason::MaxTokens) => (StopReason::MaxTokens, None),
        None => (
            match finish {
                Finish::Stop => StopReason::EndTurn,
                Finish::Length => StopReason::MaxTokens,
                Finish::ToolCalls => StopReason::ToolUse,
                Finish::ContentFilter => StopReason::Refusal,
            },
            None,
        ),
    }
}

fn usage(u: TokenUsage, input_estimate: u64, output_counted: u64) -> Usage {
    Usage {
        input_tokens: if u.input > 0 { u.input } else { input_estimate },
        output_tokens: if u.output > 0 {
            u.output
        } else {
            output_counted
        },
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
    }
}

/// What a message is, besides its content.
#[derive(Clone, Debug)]
pub struct Head {
    pub id: String,
    /// The model as the client named it.
    pub model: String,
    /// Our count of the prompt, until the upstream reports its own.
    pub input_estimate: u64,
    pub sources: SearchInfoMode,
}

/// Turns answer events into stream events, each as its `event:` name and `data:` JSON.
pub struct StreamEncoder {
    head: Head,
    blocks: Blocks,
    usage: TokenUsage,
    started: bool,
    steps: Vec<Step>,
}

/// One stream event: its name and its JSON.
pub type Sse = (&'static str, String);

fn sse(ev: &StreamEvent<'_>) -> Sse {
    (
        ev.name(),
        serde_json::to_string(ev).expect("stream events always serialize"),
    )
}

impl StreamEncoder {
    pub fn new(head: Head) -> Self {
        let sources = head.sources;
        Self {
            head,
            blocks: Blocks::new(sources),
            usage: TokenUsage::default(),
            started: false,
            steps: Vec::new(),
        }
    }

    /// `message_start`, once, before anything else.
    pub fn start(&mut self, out: &mut Vec<Sse>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = MessageOut {
            id: &self.head.id,
            kind: "message",
            role: "assistant",
            model: &self.head.model,
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage {
                output_tokens: 1,
                ..usage(self.usage, self.head.input_estimate, 0)
            },
        };
        out.push(sse(&StreamEvent::MessageStart { message }));
    }

    /// The stream events for one answer event (a `Finish` is written by [`Self::finish`]).
    pub fn event(&mut self, ev: AnswerEvent, out: &mut Vec<Sse>) {
        self.start(out);
        if let AnswerEvent::Usage(u) = ev {
            self.usage = u;
            return;
        }
        let mut steps = std::mem::take(&mut self.steps);
        self.blocks.step(ev, &mut steps);
        for step in steps.drain(..) {
            out.push(write_step(step));
        }
        self.steps = steps;
    }

    /// Closes the open block and writes `message_delta` and `message_stop`.
    pub fn finish(
        &mut self,
        finish: Finish,
        cut: Option<&CutReason>,
        output_counted: u64,
        out: &mut Vec<Sse>,
    ) {
        self.event(AnswerEvent::Finish(finish), out);
        let (stop_reason, stop_sequence) = stop_reason(finish, cut);
        out.push(sse(&StreamEvent::MessageDelta {
            delta: MessageDelta {
                stop_reason,
                stop_sequence,
            },
            usage: usage(self.usage, self.head.input_estimate, output_counted),
        }));
        out.push(sse(&StreamEvent::MessageStop));
    }
}

fn write_step(step: Step) -> Sse {
    match step {
        Step::Start(index, content_block) => sse(&StreamEvent::ContentBlockStart {
            index,
            content_block,
        }),
        Step::Delta(index, grow) => {
            let delta = match &grow {
                Grow::Thinking(t) => BlockDelta::ThinkingDelta { thinking: t },
                Grow::Signature(s) => BlockDelta::SignatureDelta { signature: s },
                Grow::Text(t) => BlockDelta::TextDelta { text: t },
                Grow::InputJson(j) => BlockDelta::InputJsonDelta { partial_json: j },
            };
            sse(&StreamEvent::ContentBlockDelta { index, delta })
        }
        Step::Stop(index) => sse(&StreamEvent::ContentBlockStop { index }),
    }
}

/// Collects a whole answer into one message.
pub struct Aggregate {
    blocks: Blocks,
    content: Vec<BlockOut>,
    /// Each `tool_use` block's arguments as they arrive.
    inputs: Vec<(usize, String)>,
    usage: TokenUsage,
}

impl Aggregate {
    pub fn new(sources: SearchInfoMode) -> Self {
        Self {
            blocks: Blocks::new(sources),
            content: Vec::new(),
            inputs: Vec::new(),
            usage: TokenUsage::default(),
        }
    }

    pub fn push(&mut self, ev: AnswerEvent) {
        if let AnswerEvent::Usage(u) = ev {
            self.usage = u;
            return;
        }
        let mut steps = Vec::new();
        self.blocks.step(ev, &mut steps);
        for step in steps {
            match step {
                Step::Start(i, block) => {
                    debug_assert_eq!(i, self.content.len());
                    self.content.push(block);
                }
                Step::Delta(i, grow) => self.grow(i, grow),
                Step::Stop(_) => {}
            }
        }
    }

    fn grow(&mut self, i: usize, grow: Grow) {
        match (self.content.get_mut(i), grow) {
            (Some(BlockOut::Thinking { thinking, .. }), Grow::Thinking(t)) => thinking.push_str(&t),
            (Some(BlockOut::Thinking { signature, .. }), Grow::Signature(s)) => *signature = s,
            (Some(BlockOut::Text { text }), Grow::Text(t)) => text.push_str(&t),
            (Some(BlockOut::ToolUse { .. }), Grow::InputJson(j)) => match self.inputs.last_mut() {
                Some((at, json)) if *at == i => json.push_str(&j),
                _ => self.inputs.push((i, j)),
            },
            _ => {}
        }
    }

    /// The message. Arguments that are not a JSON object (a call cut by `max_tokens`) become
    /// `{}`.
    pub fn into_message<'a>(
        mut self,
        head: &'a Head,
        finish: Finish,
        cut: Option<&CutReason>,
        output_counted: u64,
    ) -> MessageOut<'a> {
        self.push(AnswerEvent::Finish(finish));
        for (i, json) in std::mem::take(&mut self.inputs) {
            if let Some(BlockOut::ToolUse { input, .. }) = self.content.get_mut(i) {
                *input = serde_json::from_str::<serde_json::Value>(&json)
                    .ok()
                    .filter(serde_json::Value::is_object)
                    .unwrap_or_else(|| serde_json::json!({}));
            }
        }
        let (stop_reason, stop_sequence) = stop_reason(finish, cut);
        MessageOut {
            id: &head.id,
            kind: "message",
            role: "assistant",
            model: &head.model,
            content: self.content,
            stop_reason: Some(stop_reason),
            stop_sequence,
            usage: usage(self.usage, head.input_estimate, output_counted),
        }
    }
}

#[cfg(test)]
mod tests;
