//! An answer read for calls: the text events of an upstream answer become text and tool-call
//! events (each call sent whole as soon as its block is complete), the finish becomes
//! `ToolCalls` when a call was made, and calls are named as the client named its tools. What
//! falls short of a proper turn (docs/tools.md) is held back and judged at the end, so that the
//! proxy can ask once more before the client sees it.

use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::parse::{Parser, Piece};
use super::plan::{Choice, Plan};
use crate::conversation::{AnswerEvent, Finish, TokenUsage};
use crate::upstream::EventStream;

/// Why an answer to a turn with tools gets one corrective round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortfall {
    /// No text and no call (reasoning only, or nothing).
    Empty,
    /// A block opened a call that does not read as one.
    Unreadable,
    /// The site took the call for one of its own tools and refused it (`Tool … does not
    /// exists`, docs/upstream.md §12).
    Intercepted,
    /// A call was required and none came.
    NoCall,
    /// A call's arguments do not follow its tool's schema.
    Invalid,
    /// The same call (name and arguments) was made three times already in the recent history.
    Repeated,
}

impl Shortfall {
    /// What the model is told in the corrective round (`Invalid` has its own, with details).
    fn correction(self) -> &'static str {
        match self {
            Shortfall::Empty => {
                "Your last answer was empty. Answer my last message now: in plain text, or with tool calls."
            }
            Shortfall::Unreadable => {
                "Your tool call could not be read. Write it again as a <q2a:call name=\"TOOL_NAME\"> block whose content is exactly one JSON object with the arguments, then the closing </q2a:call>."
            }
            Shortfall::Intercepted => {
                "Your tool call was not received: it was not written in the form asked for. Write the call again as a <q2a:call name=\"TOOL_NAME\"> block, with the names listed in the instructions."
            }
            Shortfall::NoCall => "This answer must call a tool. Call one now.",
            Shortfall::Invalid => "A tool call's arguments did not fit its parameters.",
            Shortfall::Repeated => "You already made this same call several times.",
        }
    }
}

/// What the reader concluded when an answer ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub shortfall: Option<Shortfall>,
    /// The answer's text as the model wrote it (for the corrective round).
    pub answer: String,
    /// For `Invalid` and `Repeated`: the correction that names the call and what is wrong.
    pub problems: Option<String>,
    /// Calls given out.
    pub calls: usize,
}

impl Verdict {
    /// What the model is told in the corrective round.
    pub fn correction(&self) -> String {
        match (self.shortfall, &self.problems) {
            (Some(Shortfall::Invalid | Shortfall::Repeated), Some(problems)) => problems.clone(),
            (Some(s), _) => s.correction().to_owned(),
            (None, _) => String::new(),
        }
    }
}

/// How one round's answer is read.
#[derive(Clone, Debug)]
pub struct Reading {
    pub plan: Arc<Plan>,
    /// The corrective round: nothing more is asked after it, so what it holds back at the end
    /// is given out as it is.
    pub last_round: bool,
    /// The index of this round's first call (calls of an earlier round keep theirs).
    pub first_index: usize,
    /// Written when the answer ends.
    pub verdict: Arc<Mutex<Verdict>>,
}

impl Reading {
    pub fn new(plan: Arc<Plan>, last_round: bool) -> Self {
        Self {
            plan,
            last_round,
            first_index: 0,
            verdict: Arc::default(),
        }
    }

    /// The verdict of the answer read last.
    pub fn verdict(&self) -> Verdict {
        self.verdict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What one answer's events become.
#[derive(Debug)]
pub struct Reader {
    reading: Reading,
    parser: Parser,
    /// Calls sent so far (the next call's `index`).
    calls: usize,
    /// A block that did not read, or the site's refusal of a call (which wins).
    trouble: Option<Shortfall>,
    /// The first call that does not fit its schema, or repeats itself: why, and the correction.
    problem: Option<(Shortfall, String)>,
    /// Whether any text (not white space) came.
    saw_text: bool,
    /// Text is held back: until the first call when a call is required, and from a block that
    /// did not read (or the site's refusal) on.
    holding: bool,
    held: Vec<AnswerEvent>,
    /// The answer's text as it came.
    raw: String,
    /// The last usage seen: sent just before the finish, after what the parser still held.
    usage: Option<TokenUsage>,
}

impl Reader {
    pub fn new(reading: Reading) -> Self {
        let parser = reading.plan.parser();
        let holding = reading.plan.choice != Choice::Auto;
        Self {
            reading,
            parser,
            calls: 0,
            trouble: None,
            problem: None,
            saw_text: false,
            holding,
            held: Vec::new(),
            raw: String::new(),
            usage: None,
        }
    }

    /// The events `ev` becomes.
    pub fn read(&mut self, ev: AnswerEvent) -> Vec<AnswerEvent> {
        match ev {
            AnswerEvent::Text(t) => {
                self.raw.push_str(&t);
                let pieces = self.parser.push(&t);
                self.pieces(pieces)
            }
            AnswerEvent::Usage(u) => {
                self.usage = Some(u);
                Vec::new()
            }
            AnswerEvent::Finish(finish) => {
                let pieces = self.parser.finish();
                let mut out = self.pieces(pieces);
                let shortfall = self.shortfall();
                let asks_again = shortfall.is_some() && !self.reading.last_round;
                // Held text is given out unless the model is asked again, or a call was
                // required and none came (the proxy answers with an error then).
                if !asks_again && shortfall != Some(Shortfall::NoCall) {
                    out.append(&mut self.held);
                }
                *self
                    .reading
                    .verdict
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Verdict {
                    shortfall,
                    answer: std::mem::take(&mut self.raw),
                    problems: self.problem.take().map(|(_, p)| p),
                    calls: self.calls,
                };
                out.extend(self.usage.take().map(AnswerEvent::Usage));
                let finish = if self.calls > 0 && finish == Finish::Stop {
                    Finish::ToolCalls
                } else {
                    finish
                };
                out.push(AnswerEvent::Finish(finish));
                out
            }
            other => vec![other],
        }
    }

    fn shortfall(&self) -> Option<Shortfall> {
        if let Some((s, _)) = &self.problem {
            Some(*s)
        } else if self.calls > 0 {
            None
        } else if self.trouble.is_some() {
            self.trouble
        } else if is_refusal(&self.raw) {
            // The refusal came in pieces, each too short to tell.
            Some(Shortfall::Intercepted)
        } else if !self.saw_text {
            Some(Shortfall::Empty)
        } else if self.reading.plan.choice != Choice::Auto {
            Some(Shortfall::NoCall)
        } else {
            None
        }
    }

    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<AnswerEvent> {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                // With one call allowed, nothing after it is passed on.
                _ if self.reading.plan.single && self.calls > 0 => {}
                Piece::Text(t) => {
                    if is_refusal(&t) {
                        self.trouble = Some(Shortfall::Intercepted);
                        self.holding = true;
                    } else if !t.trim().is_empty() {
                        self.saw_text = true;
                    }
                    self.give(&mut out, AnswerEvent::Text(t));
                }
                Piece::Broken(raw) => {
                    tracing::debug!(bytes = raw.len(), "a call block did not read as a call");
                    if self.trouble.is_none() {
                        self.trouble = Some(Shortfall::Unreadable);
                    }
                    self.holding = true;
                    self.give(&mut out, AnswerEvent::Text(raw));
                }
                Piece::Call(call) => {
                    let name = self.reading.plan.client_name(&call.name).to_owned();
                    let mut arguments = call.arguments;
                    if let Err((problems, strict)) = self.reading.plan.check(&name, &mut arguments)
                    {
                        tracing::debug!(tool = %name, %problems, "a call's arguments do not fit");
                        // Asked again first; after that, a strict tool's call is an error and
                        // another is passed on as written (the client's tool will say).
                        if !self.reading.last_round || strict {
                            self.fall_short(Shortfall::Invalid, || format!(
                                "Your call of {} had arguments that do not fit its parameters: {problems}. Send that call again, with arguments that fit the tool's parameters.",
                                call.name
                            ));
                            continue;
                        }
                    }
                    // The loop guard: asked once to do something else; after that, passed on.
                    if !self.reading.last_round
                        && let Some(times) = self.reading.plan.repeats(&name, &arguments)
                    {
                        tracing::info!(tool = %name, times, "the model repeats a call");
                        self.fall_short(Shortfall::Repeated, || format!(
                            "You already called {} with exactly these arguments {times} times, and its result is above each time. Do not repeat that call: use the results you have, call another tool or the same tool with other arguments, or answer.",
                            call.name
                        ));
                        continue;
                    }
                    // A call: what was held is said before it, and text flows from here on.
                    self.holding = false;
                    out.append(&mut self.held);
                    let index = self.reading.first_index + self.calls;
                    self.calls += 1;
                    let arguments = serde_json::Value::Object(arguments).to_string();
                    out.push(AnswerEvent::ToolCallStart {
                        index,
                        id: call_id(),
                        name,
                    });
                    out.push(AnswerEvent::ToolCallArguments {
                        index,
                        delta: arguments,
                    });
                    out.push(AnswerEvent::ToolCallEnd { index });
                }
            }
        }
        out
    }

    /// A call that is not passed on: the first such call's correction is kept for the
    /// corrective round, and what follows is held back.
    fn fall_short(&mut self, kind: Shortfall, correction: impl FnOnce() -> String) {
        self.problem.get_or_insert_with(|| (kind, correction()));
        self.holding = true;
    }

    fn give(&mut self, out: &mut Vec<AnswerEvent>, ev: AnswerEvent) {
        if self.holding {
            self.held.push(ev);
        } else {
            out.push(ev);
        }
    }
}

/// The site's words when it took a call for one of its own tools (docs/upstream.md §12): a
/// line `Tool NAME does not exists.` (or `exist`).
fn is_refusal(text: &str) -> bool {
    text.lines().any(|line| {
        let Some(rest) = line.trim().strip_prefix("Tool ") else {
            return false;
        };
        let Some((name, tail)) = rest.split_once(' ') else {
            return false;
        };
        !name.is_empty()
            && matches!(
                tail.trim_end_matches('.'),
                "does not exists" | "does not exist"
            )
    })
}

/// `call_` and 24 random characters.
fn call_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("call_{}", &hex[..24])
}

/// `events` read for calls as `reading` says.
pub fn read_calls(reading: Reading, events: EventStream) -> EventStream {
    let mut reader = Reader::new(reading);
    Box::pin(events.flat_map(move |item| {
        let out: Vec<_> = match item {
            Ok(ev) => reader.read(ev).into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(out)
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::conversation::{Tool, ToolChoice};

    fn plan(choice: &ToolChoice, parallel: Option<bool>) -> Arc<Plan> {
        let tools = [Tool {
            name: "read".into(),
            description: None,
            parameters: Some(json!({"type": "object", "properties": {"path": {"type": "string"}}})),
            strict: false,
        }];
        let template = crate::tools::plan::DEFAULT_TEMPLATE.into();
        Arc::new(Plan::new(&tools, choice, parallel, template).unwrap())
    }

    /// The events of an answer of `texts`, and the verdict.
    fn read_all(reading: &Reading, texts: &[&str]) -> (Vec<AnswerEvent>, Verdict) {
        let mut reader = Reader::new(reading.clone());
        let mut out = Vec::new();
        out.extend(reader.read(AnswerEvent::Reasoning("hm".into())));
        for t in texts {
            out.extend(reader.read(AnswerEvent::Text((*t).into())));
        }
        out.extend(reader.read(AnswerEvent::Usage(TokenUsage::default())));
        out.extend(reader.read(AnswerEvent::Finish(Finish::Stop)));
        // Ids are random: checked for their form, then blanked.
        for ev in &mut out {
            if let AnswerEvent::ToolCallStart { id, .. } = ev {
                assert!(id.starts_with("call_") && id.len() == 29, "{id}");
                "call_".clone_into(id);
            }
        }
        (out, reading.verdict())
    }

    fn call(index: usize, name: &str, arguments: &str) -> [AnswerEvent; 3] {
        [
            AnswerEvent::ToolCallStart {
                index,
                id: "call_".into(),
                name: name.into(),
            },
            AnswerEvent::ToolCallArguments {
                index,
                delta: arguments.into(),
            },
            AnswerEvent::ToolCallEnd { index },
        ]
    }

    fn text(t: &str) -> AnswerEvent {
        AnswerEvent::Text(t.into())
    }

    /// Reasoning, `middle`, usage and the finish.
    fn answer(middle: impl IntoIterator<Item = AnswerEvent>, finish: Finish) -> Vec<AnswerEvent> {
        let mut out = vec![AnswerEvent::Reasoning("hm".into())];
        out.extend(middle);
        out.push(AnswerEvent::Usage(TokenUsage::default()));
        out.push(AnswerEvent::Finish(finish));
        out
    }

    #[test]
    fn calls_are_numbered_named_as_the_client_named_them_and_end_the_turn() {
        let reading = Reading::new(plan(&ToolChoice::Auto, None), false);
        let (out, verdict) = read_all(
            &reading,
            &[
                "Two reads. <q2a:call name=\"read_tool\">{\"path\":\"a\"}</q2a:call>",
                "<q2a:call name=\"read_tool\">{'path': 'b'}</q2a",
                ":call>",
            ],
        );
        let mut middle = vec![text("Two reads. ")];
        middle.extend(call(0, "read", r#"{"path":"a"}"#));
        middle.extend(call(1, "read", r#"{"path":"b"}"#));
        assert_eq!(out, answer(middle, Finish::ToolCalls));
        assert_eq!(verdict.shortfall, None);
    }

    #[test]
    fn without_parallel_calls_only_the_first_is_passed_on() {
        let reading = Reading::new(plan(&ToolChoice::Auto, Some(false)), false);
        let (out, _) = read_all(
            &reading,
            &[
                "<q2a:call name=\"read_tool\">{\"path\":\"a\"}</q2a:call> and <q2a:call name=\"read_tool\">{\"path\":\"b\"}</q2a:call>",
            ],
        );
        assert_eq!(
            out,
            answer(call(0, "read", r#"{"path":"a"}"#), Finish::ToolCalls)
        );
    }

    #[test]
    fn plain_text_is_a_proper_answer_when_no_call_is_required() {
        let reading = Reading::new(plan(&ToolChoice::Auto, None), false);
        let (out, verdict) = read_all(&reading, &["Hello."]);
        assert_eq!(out, answer([text("Hello.")], Finish::Stop));
        assert_eq!(verdict.shortfall, None);
    }

    #[test]
    fn what_falls_short_is_held_back_for_the_corrective_round() {
        let cases: [(&[&str], Shortfall); 4] = [
            (
                &["Sure. <tool_call>oops</tool_call>"],
                Shortfall::Unreadable,
            ),
            (&["Tool read does not exists."], Shortfall::Intercepted),
            (&["  "], Shortfall::Empty),
            (&[], Shortfall::Empty),
        ];
        for (texts, expected) in cases {
            let reading = Reading::new(plan(&ToolChoice::Auto, None), false);
            let (out, verdict) = read_all(&reading, texts);
            assert_eq!(verdict.shortfall, Some(expected), "{texts:?}");
            assert_eq!(verdict.answer, texts.concat());
            // Text before the trouble was already given; the trouble itself is not.
            let given: String = out
                .iter()
                .filter_map(|e| match e {
                    AnswerEvent::Text(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            assert!(
                !given.contains("oops") && !given.contains("does not"),
                "{out:?}"
            );
        }
    }

    #[test]
    fn in_the_last_round_held_text_is_given_out_but_never_without_a_required_call() {
        let reading = Reading::new(plan(&ToolChoice::Auto, None), true);
        let (out, verdict) = read_all(&reading, &["<tool_call>oops</tool_call>"]);
        assert_eq!(verdict.shortfall, Some(Shortfall::Unreadable));
        assert_eq!(
            out,
            answer([text("<tool_call>oops</tool_call>")], Finish::Stop)
        );

        let reading = Reading::new(plan(&ToolChoice::Required, None), true);
        let (out, verdict) = read_all(&reading, &["I would rather talk."]);
        assert_eq!(verdict.shortfall, Some(Shortfall::NoCall));
        assert_eq!(out, answer([], Finish::Stop));
    }

    #[test]
    fn only_the_sites_own_words_are_a_refusal() {
        assert!(is_refusal("Tool read does not exists."));
        assert!(is_refusal("Sure.\nTool web_search does not exist"));
        assert!(!is_refusal("The Tool class does not exist in this code."));
        assert!(!is_refusal(
            "Tool read does not exists in my list, so I answer."
        ));
    }

    #[test]
    fn a_required_call_holds_text_until_the_call() {
        let reading = Reading::new(plan(&ToolChoice::Required, None), false);
        let mut reader = Reader::new(reading);
        assert_eq!(reader.read(text("Reading it. ")), []);
        let out = reader.read(text("<q2a:call name=\"read_tool\">{}</q2a:call> done"));
        assert_eq!(out.len(), 5, "{out:?}");
        assert_eq!(out[0], text("Reading it. "));
        assert!(matches!(
            out[1],
            AnswerEvent::ToolCallStart { index: 0, .. }
        ));
        assert_eq!(out[4], text(" done"));
    }
}
