//! Answer events → Responses output items: one state machine ([`Builder`]) opens, grows and
//! closes reasoning, message, function-call and custom-tool-call items in order and keeps the
//! response they make; [`StreamEncoder`] writes each of its steps as stream events numbered by
//! `sequence_number`, from `response.created` to exactly one `response.completed`,
//! `response.incomplete` or `response.failed`.

use super::reasoning;
use super::response::{
    Annotation, Event, EventBody, IncompleteDetails, InputDetails, OutputDetails, OutputItem,
    OutputText, ResponseError, ResponseObject, Status, SummaryText, Usage,
};
use super::translate_request::{ToolNames, custom_input};
use crate::conversation::cut::CutReason;
use crate::conversation::{AnswerEvent, Finish, TokenUsage};

/// What the response is, besides its output.
#[derive(Clone, Debug)]
pub struct Head {
    /// The response as created: id, model, the request's settings echoed, no output.
    pub response: ResponseObject,
    /// Our count of the prompt, until the upstream reports its own.
    pub input_estimate: u64,
    /// Reasoning is shown as a summary (`reasoning.summary`).
    pub summary: bool,
    /// Reasoning items carry `encrypted_content` (`include`).
    pub encrypted: bool,
    pub names: ToolNames,
}

/// One step of building the output.
#[derive(Debug, PartialEq)]
enum Step {
    Added(usize),
    SummaryPartAdded(usize),
    SummaryDelta(usize, String),
    SummaryDone(usize),
    PartAdded(usize),
    TextDelta(usize, String),
    AnnotationAdded(usize, usize),
    TextDone(usize),
    ArgumentsDelta(usize, String),
    ArgumentsDone(usize),
    CustomInputDone(usize),
    Done(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Reasoning,
    Message,
    Call,
    Custom,
}

/// Builds the output items from answer events.
pub struct Builder {
    head: Head,
    output: Vec<OutputItem>,
    open: Option<(usize, Open)>,
    /// The open custom call's arguments, until it ends.
    custom_args: String,
    usage: TokenUsage,
}

fn item_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

impl Builder {
    pub fn new(head: Head) -> Self {
        Self {
            head,
            output: Vec::new(),
            open: None,
            custom_args: String::new(),
            usage: TokenUsage::default(),
        }
    }

    /// Applies one answer event (a `Finish` closes the open item) and lists its steps.
    fn step(&mut self, ev: AnswerEvent, out: &mut Vec<Step>) {
        match ev {
            AnswerEvent::Usage(u) => self.usage = u,
            AnswerEvent::Reasoning(t) if !t.is_empty() => {
                let i = self.ensure(Open::Reasoning, out);
                if let OutputItem::Reasoning { summary, .. } = &mut self.output[i]
                    && let Some(s) = summary.first_mut()
                {
                    s.text.push_str(&t);
                    out.push(Step::SummaryDelta(i, t));
                }
            }
            AnswerEvent::Text(t) if !t.is_empty() => {
                let i = self.ensure(Open::Message, out);
                if let Some(part) = self.part(i) {
                    part.text.push_str(&t);
                    out.push(Step::TextDelta(i, t));
                }
            }
            AnswerEvent::Sources { sources, .. } => {
                let sources: Vec<_> = sources
                    .into_iter()
                    .filter(|s| !s.url.trim().is_empty())
                    .collect();
                if sources.is_empty() {
                    return;
                }
                let i = self.ensure(Open::Message, out);
                if let Some(part) = self.part(i) {
                    let at = part.text.chars().count();
                    for s in sources {
                        part.annotations.push(Annotation {
                            kind: "url_citation".to_owned(),
                            start_index: at,
                            end_index: at,
                            title: s.title.or(s.hostname).unwrap_or_else(|| s.url.clone()),
                            url: s.url,
                        });
                        out.push(Step::AnnotationAdded(i, part.annotations.len() - 1));
                    }
                }
            }
            AnswerEvent::ToolCallStart { id, name, .. } => {
                self.close(Status::Completed, out);
                let tool = self.head.names.get(&name).cloned();
                let (name, namespace, custom) = match tool {
                    Some(t) => (t.name, t.namespace, t.custom),
                    None => (name, None, false),
                };
                let i = self.output.len();
                let item = if custom {
                    OutputItem::CustomToolCall {
                        id: item_id("ctc"),
                        call_id: id,
                        name,
                        input: String::new(),
                        namespace,
                        status: Status::InProgress,
                    }
                } else {
                    OutputItem::FunctionCall {
                        id: item_id("fc"),
                        call_id: id,
                        name,
                        arguments: String::new(),
                        namespace,
                        status: Status::InProgress,
                    }
                };
                self.output.push(item);
                self.open = Some((i, if custom { Open::Custom } else { Open::Call }));
                out.push(Step::Added(i));
            }
            AnswerEvent::ToolCallArguments { delta, .. } if !delta.is_empty() => match self.open {
                Some((i, Open::Call)) => {
                    if let OutputItem::FunctionCall { arguments, .. } = &mut self.output[i] {
                        arguments.push_str(&delta);
                        out.push(Step::ArgumentsDelta(i, delta));
                    }
                }
                Some((_, Open::Custom)) => self.custom_args.push_str(&delta),
                _ => {}
            },
            AnswerEvent::ToolCallEnd { .. } | AnswerEvent::Finish(_) => {
                self.close(Status::Completed, out);
            }
            _ => {}
        }
    }

    fn part(&mut self, i: usize) -> Option<&mut OutputText> {
        match &mut self.output[i] {
            OutputItem::Message { content, .. } => content.first_mut(),
            _ => None,
        }
    }

    /// The index of an open item of `kind`, opening one (after closing another) if needed.
    fn ensure(&mut self, kind: Open, out: &mut Vec<Step>) -> usize {
        if let Some((i, open)) = self.open
            && open == kind
        {
            return i;
        }
        self.close(Status::Completed, out);
        let i = self.output.len();
        self.open = Some((i, kind));
        if kind == Open::Reasoning {
            self.output.push(OutputItem::Reasoning {
                id: item_id("rs"),
                summary: Vec::new(),
                encrypted_content: None,
                status: Status::InProgress,
            });
            out.push(Step::Added(i));
            if self.head.summary
                && let OutputItem::Reasoning { summary, .. } = &mut self.output[i]
            {
                summary.push(SummaryText::new(""));
                out.push(Step::SummaryPartAdded(i));
            }
        } else {
            self.output.push(OutputItem::Message {
                id: item_id("msg"),
                status: Status::InProgress,
                role: "assistant".to_owned(),
                content: Vec::new(),
            });
            out.push(Step::Added(i));
            if let OutputItem::Message { content, .. } = &mut self.output[i] {
                content.push(OutputText::new(""));
            }
            out.push(Step::PartAdded(i));
        }
        i
    }

    /// Closes the open item with `status`.
    fn close(&mut self, status: Status, out: &mut Vec<Step>) {
        let Some((i, kind)) = self.open.take() else {
            return;
        };
        match (kind, &mut self.output[i]) {
            (
                Open::Reasoning,
                OutputItem::Reasoning {
                    summary,
                    encrypted_content,
                    ..
                },
            ) => {
                let text: String = summary.iter().map(|s| s.text.as_str()).collect();
                if !summary.is_empty() {
                    out.push(Step::SummaryDone(i));
                }
                if self.head.encrypted {
                    *encrypted_content = Some(reasoning::seal(&text));
                }
                if !self.head.summary {
                    summary.clear();
                }
            }
            (Open::Message, _) => out.push(Step::TextDone(i)),
            (Open::Call, _) => out.push(Step::ArgumentsDone(i)),
            (Open::Custom, OutputItem::CustomToolCall { input, .. }) => {
                *input = custom_input(&std::mem::take(&mut self.custom_args));
                out.push(Step::CustomInputDone(i));
            }
            _ => {}
        }
        self.output[i].set_status(status);
        out.push(Step::Done(i));
    }

    fn usage(&self, output_counted: u64) -> Usage {
        let u = self.usage;
        let input = if u.input > 0 {
            u.input
        } else {
            self.head.input_estimate
        };
        let output = if u.output > 0 {
            u.output
        } else {
            output_counted
        };
        Usage {
            input_tokens: input,
            input_tokens_details: InputDetails::default(),
            output_tokens: output,
            output_tokens_details: OutputDetails {
                reasoning_tokens: u.reasoning.unwrap_or(0),
            },
            total_tokens: input + output,
        }
    }

    /// Ends the output: the open item closes, and the response is completed, or incomplete
    /// when the answer was cut by `max_output_tokens` or ended for length or by the filter.
    fn end(
        &mut self,
        finish: Finish,
        cut: Option<&CutReason>,
        output_counted: u64,
        out: &mut Vec<Step>,
    ) -> ResponseObject {
        let reason = match (cut, finish) {
            (Some(CutReason::MaxTokens), _) | (None, Finish::Length) => Some("max_output_tokens"),
            (None, Finish::ContentFilter) => Some("content_filter"),
            _ => None,
        };
        let status = if reason.is_some() {
            Status::Incomplete
        } else {
            Status::Completed
        };
        self.close(status, out);
        let mut r = self.head.response.clone();
        r.status = status;
        r.incomplete_details = reason.map(|r| IncompleteDetails {
            reason: r.to_owned(),
        });
        if status == Status::Completed {
            r.completed_at = Some(crate::store::now_ms() / 1000);
        }
        r.output.clone_from(&self.output);
        r.usage = Some(self.usage(output_counted));
        r
    }

    /// The response after a failure: the output so far, the open item incomplete.
    fn failed(&mut self, error: ResponseError) -> ResponseObject {
        if let Some((i, _)) = self.open.take() {
            self.output[i].set_status(Status::Incomplete);
        }
        let mut r = self.head.response.clone();
        r.status = Status::Failed;
        r.error = Some(error);
        r.output.clone_from(&self.output);
        r
    }

    pub fn push(&mut self, ev: AnswerEvent) {
        let mut steps = Vec::new();
        self.step(ev, &mut steps);
    }

    /// The whole response.
    pub fn into_response(
        mut self,
        finish: Finish,
        cut: Option<&CutReason>,
        output_counted: u64,
    ) -> ResponseObject {
        let mut steps = Vec::new();
        self.end(finish, cut, output_counted, &mut steps)
    }
}

/// One stream event: its name and its JSON.
pub type Sse = (&'static str, String);

/// Writes the builder's steps as stream events.
pub struct StreamEncoder {
    b: Builder,
    seq: u64,
    steps: Vec<Step>,
}

impl StreamEncoder {
    pub fn new(head: Head) -> Self {
        Self {
            b: Builder::new(head),
            seq: 0,
            steps: Vec::new(),
        }
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self, out: &mut Vec<Sse>) {
        let r = self.b.head.response.clone();
        emit(&mut self.seq, &EventBody::Created { response: &r }, out);
        emit(&mut self.seq, &EventBody::InProgress { response: &r }, out);
    }

    /// The stream events of one answer event (a `Finish` is written by [`Self::finish`]).
    pub fn event(&mut self, ev: AnswerEvent, out: &mut Vec<Sse>) {
        let mut steps = std::mem::take(&mut self.steps);
        self.b.step(ev, &mut steps);
        self.write_steps(&mut steps, out);
        self.steps = steps;
    }

    /// Closes the output and writes the final event → the final response.
    pub fn finish(
        &mut self,
        finish: Finish,
        cut: Option<&CutReason>,
        output_counted: u64,
        out: &mut Vec<Sse>,
    ) -> ResponseObject {
        let mut steps = std::mem::take(&mut self.steps);
        let r = self.b.end(finish, cut, output_counted, &mut steps);
        self.write_steps(&mut steps, out);
        let body = match r.status {
            Status::Incomplete => EventBody::Incomplete { response: &r },
            _ => EventBody::Completed { response: &r },
        };
        emit(&mut self.seq, &body, out);
        r
    }

    /// `response.failed` → the failed response.
    pub fn fail(&mut self, error: ResponseError, out: &mut Vec<Sse>) -> ResponseObject {
        let r = self.b.failed(error);
        emit(&mut self.seq, &EventBody::Failed { response: &r }, out);
        r
    }

    fn write_steps(&mut self, steps: &mut Vec<Step>, out: &mut Vec<Sse>) {
        for step in steps.drain(..) {
            write_step(&mut self.seq, &step, &self.b.output, out);
        }
    }
}

/// Writes one event with the next sequence number.
fn emit(seq: &mut u64, body: &EventBody<'_>, out: &mut Vec<Sse>) {
    let ev = Event {
        body: *body,
        sequence_number: *seq,
    };
    *seq += 1;
    out.push((
        body.name(),
        serde_json::to_string(&ev).expect("stream events always serialize"),
    ));
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per step, each naming its event's fields"
)]
fn write_step(seq: &mut u64, step: &Step, output: &[OutputItem], out: &mut Vec<Sse>) {
    let at = |i: usize| (output[i].id(), i);
    let text = |i: usize| match &output[i] {
        OutputItem::Message { content, .. } => content.first(),
        _ => None,
    };
    let summary = |i: usize| match &output[i] {
        OutputItem::Reasoning { summary, .. } => summary.first(),
        _ => None,
    };
    let body = match step {
        Step::Added(i) => {
            // The item as it was added: empty, in progress.
            let mut item = output[*i].clone();
            blank(&mut item);
            return emit(
                seq,
                &EventBody::ItemAdded {
                    output_index: *i,
                    item: &item,
                },
                out,
            );
        }
        Step::Done(i) => EventBody::ItemDone {
            output_index: *i,
            item: &output[*i],
        },
        Step::SummaryPartAdded(i) => {
            let part = SummaryText::new("");
            let (item_id, output_index) = at(*i);
            return emit(
                seq,
                &EventBody::SummaryPartAdded {
                    item_id,
                    output_index,
                    summary_index: 0,
                    part: &part,
                },
                out,
            );
        }
        Step::SummaryDelta(i, delta) => {
            let (item_id, output_index) = at(*i);
            EventBody::SummaryDelta {
                item_id,
                output_index,
                summary_index: 0,
                delta,
            }
        }
        Step::SummaryDone(i) => {
            let Some(part) = summary(*i) else { return };
            let (item_id, output_index) = at(*i);
            emit(
                seq,
                &EventBody::SummaryDone {
                    item_id,
                    output_index,
                    summary_index: 0,
                    text: &part.text,
                },
                out,
            );
            EventBody::SummaryPartDone {
                item_id,
                output_index,
                summary_index: 0,
                part,
            }
        }
        Step::PartAdded(i) => {
            let part = OutputText::new("");
            let (item_id, output_index) = at(*i);
            return emit(
                seq,
                &EventBody::PartAdded {
                    item_id,
                    output_index,
                    content_index: 0,
                    part: &part,
                },
                out,
            );
        }
        Step::TextDelta(i, delta) => {
            let (item_id, output_index) = at(*i);
            EventBody::TextDelta {
                item_id,
                output_index,
                content_index: 0,
                delta,
                logprobs: [],
            }
        }
        Step::AnnotationAdded(i, n) => {
            let Some(part) = text(*i) else { return };
            let (item_id, output_index) = at(*i);
            EventBody::AnnotationAdded {
                item_id,
                output_index,
                content_index: 0,
                annotation_index: *n,
                annotation: &part.annotations[*n],
            }
        }
        Step::TextDone(i) => {
            let Some(part) = text(*i) else { return };
            let (item_id, output_index) = at(*i);
            emit(
                seq,
                &EventBody::TextDone {
                    item_id,
                    output_index,
                    content_index: 0,
                    text: &part.text,
                    logprobs: [],
                },
                out,
            );
            EventBody::PartDone {
                item_id,
                output_index,
                content_index: 0,
                part,
            }
        }
        Step::ArgumentsDelta(i, delta) => {
            let (item_id, output_index) = at(*i);
            EventBody::ArgumentsDelta {
                item_id,
                output_index,
                delta,
            }
        }
        Step::ArgumentsDone(i) => {
            let OutputItem::FunctionCall {
                name, arguments, ..
            } = &output[*i]
            else {
                return;
            };
            let (item_id, output_index) = at(*i);
            EventBody::ArgumentsDone {
                item_id,
                output_index,
                name,
                arguments,
            }
        }
        Step::CustomInputDone(i) => {
            let OutputItem::CustomToolCall { input, .. } = &output[*i] else {
                return;
            };
            let (item_id, output_index) = at(*i);
            if !input.is_empty() {
                emit(
                    seq,
                    &EventBody::CustomInputDelta {
                        item_id,
                        output_index,
                        delta: input,
                    },
                    out,
                );
            }
            EventBody::CustomInputDone {
                item_id,
                output_index,
                input,
            }
        }
    };
    emit(seq, &body, out);
}

/// An item as `response.output_item.added` shows it: nothing in it yet.
fn blank(item: &mut OutputItem) {
    match item {
        OutputItem::Reasoning { summary, .. } => summary.clear(),
        OutputItem::Message { content, .. } => content.clear(),
        OutputItem::FunctionCall { arguments, .. } => arguments.clear(),
        OutputItem::CustomToolCall { input, .. } => input.clear(),
    }
    item.set_status(Status::InProgress);
}

#[cfg(test)]
mod tests;
