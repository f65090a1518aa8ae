//! An answer read for calls: the text events of an upstream answer become text and tool-call
//! events (each call sent whole as soon as its block is complete), the finish becomes
//! `ToolCalls` when a call was made, and calls are named as the client named its tools.

use std::sync::Arc;

use futures::StreamExt;

use super::parse::{Parser, Piece};
use super::plan::Plan;
use crate::conversation::{AnswerEvent, Finish, TokenUsage};
use crate::upstream::AnswerStream;

/// What one answer's events become.
#[derive(Debug)]
pub struct Reader {
    plan: Arc<Plan>,
    parser: Parser,
    /// Calls sent so far (the next call's `index`).
    calls: usize,
    /// Blocks that opened a call but did not read as one.
    broken: usize,
    /// The last usage seen: sent just before the finish, after what the parser still held.
    usage: Option<TokenUsage>,
}

impl Reader {
    pub fn new(plan: Arc<Plan>) -> Self {
        let parser = plan.parser();
        Self {
            plan,
            parser,
            calls: 0,
            broken: 0,
            usage: None,
        }
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Blocks so far that opened a call but did not read as one.
    pub fn broken(&self) -> usize {
        self.broken
    }

    /// The events `ev` becomes.
    pub fn read(&mut self, ev: AnswerEvent) -> Vec<AnswerEvent> {
        match ev {
            AnswerEvent::Text(t) => {
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

    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<AnswerEvent> {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                // With one call allowed, nothing after it is passed on.
                _ if self.plan.single && self.calls > 0 => {}
                Piece::Text(t) => out.push(AnswerEvent::Text(t)),
                Piece::Broken(raw) => {
                    self.broken += 1;
                    tracing::debug!(bytes = raw.len(), "a call block did not read as a call");
                    out.push(AnswerEvent::Text(raw));
                }
                Piece::Call(call) => {
                    let index = self.calls;
                    self.calls += 1;
                    let name = self.plan.client_name(&call.name).to_owned();
                    let arguments = serde_json::Value::Object(call.arguments).to_string();
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
}

/// `call_` and 24 random characters.
fn call_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("call_{}", &hex[..24])
}

/// `events` read for the calls of `plan`.
pub fn read_calls(plan: Arc<Plan>, events: AnswerStream) -> AnswerStream {
    let mut reader = Reader::new(plan);
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

    fn plan(parallel: Option<bool>) -> Arc<Plan> {
        let tools = [Tool {
            name: "read".into(),
            description: None,
            parameters: Some(json!({"type": "object", "properties": {"path": {"type": "string"}}})),
        }];
        Arc::new(Plan::new(&tools, &ToolChoice::Auto, parallel).unwrap())
    }

    fn read_all(plan: Arc<Plan>, texts: &[&str]) -> Vec<AnswerEvent> {
        let mut reader = Reader::new(plan);
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
        out
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

    #[test]
    fn calls_are_numbered_named_as_the_client_named_them_and_end_the_turn() {
        let out = read_all(
            plan(None),
            &[
                "Two reads. <q2a:call name=\"read_tool\">{\"path\":\"a\"}</q2a:call>",
                "<q2a:call name=\"read_tool\">{'path': 'b'}</q2a",
                ":call>",
            ],
        );
        let mut expected = vec![
            AnswerEvent::Reasoning("hm".into()),
            AnswerEvent::Text("Two reads. ".into()),
        ];
        expected.extend(call(0, "read", r#"{"path":"a"}"#));
        expected.extend(call(1, "read", r#"{"path":"b"}"#));
        expected.push(AnswerEvent::Usage(TokenUsage::default()));
        expected.push(AnswerEvent::Finish(Finish::ToolCalls));
        assert_eq!(out, expected);
    }

    #[test]
    fn without_parallel_calls_only_the_first_is_passed_on() {
        let out = read_all(
            plan(Some(false)),
            &[
                "<q2a:call name=\"read_tool\">{\"path\":\"a\"}</q2a:call> and <q2a:call name=\"read_tool\">{\"path\":\"b\"}</q2a:call>",
            ],
        );
        let mut expected = vec![AnswerEvent::Reasoning("hm".into())];
        expected.extend(call(0, "read", r#"{"path":"a"}"#));
        expected.push(AnswerEvent::Usage(TokenUsage::default()));
        expected.push(AnswerEvent::Finish(Finish::ToolCalls));
        assert_eq!(out, expected);
    }

    #[test]
    fn text_alone_finishes_as_it_came_and_a_broken_block_is_counted() {
        let mut reader = Reader::new(plan(None));
        let out = reader.read(AnswerEvent::Text("<tool_call>oops</tool_call>".into()));
        assert_eq!(
            out,
            [AnswerEvent::Text("<tool_call>oops</tool_call>".into())]
        );
        assert_eq!(reader.broken(), 1);
        assert_eq!(
            reader.read(AnswerEvent::Finish(Finish::Stop)),
            [AnswerEvent::Finish(Finish::Stop)]
        );
        assert_eq!(reader.calls(), 0);
    }
}
