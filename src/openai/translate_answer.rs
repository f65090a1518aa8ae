//! Answer events → OpenAI chunks (streaming) or one chat completion (non-streaming), with
//! reasoning placed per the reasoning format and search sources rendered as Markdown.

use super::sources;
use crate::config::{ReasoningFormat, SearchInfoMode};
use crate::conversation::{AnswerEvent, Finish, TokenUsage};
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, Choice, CompletionTokensDetails, Delta, FinishReason,
    FunctionDelta, ResponseMessage, ToolCallDelta, Usage,
};

/// Where web-search sources are shown: a Markdown block per `SEARCH_INFO_MODE`, in the
/// reasoning while a thinking answer has not started its text (when reasoning is shown), else
/// in the text.
#[derive(Clone, Copy, Debug)]
pub struct SourceStyle {
    pub mode: SearchInfoMode,
    pub into_reasoning: bool,
}

impl SourceStyle {
    pub fn new(mode: SearchInfoMode, thinking: bool, format: ReasoningFormat) -> Self {
        Self {
            mode,
            into_reasoning: thinking && format != ReasoningFormat::Hidden,
        }
    }
}

/// Turns a `Sources` event into the reasoning or text it is shown as; other events pass as
/// they are.
#[derive(Debug)]
struct Placer {
    style: SourceStyle,
    saw_text: bool,
}

impl Placer {
    fn place(&mut self, ev: AnswerEvent) -> Option<AnswerEvent> {
        match ev {
            AnswerEvent::Sources { first, sources } => {
                let block = sources::render(self.style.mode, &sources, first);
                if block.is_empty() {
                    None
                } else if self.style.into_reasoning && !self.saw_text {
                    Some(AnswerEvent::Reasoning(block))
                } else {
                    // A block in the text does not count as the answer's start.
                    Some(AnswerEvent::Text(block))
                }
            }
            AnswerEvent::Text(t) => {
                self.saw_text = true;
                Some(AnswerEvent::Text(t))
            }
            other => Some(other),
        }
    }
}

fn finish_reason(f: Finish) -> FinishReason {
    match f {
        Finish::Stop => FinishReason::Stop,
        Finish::Length => FinishReason::Length,
        Finish::ContentFilter => FinishReason::ContentFilter,
        Finish::ToolCalls => FinishReason::ToolCalls,
    }
}

/// The payloads one event becomes: most often one, at most a few, held inline.
pub type Chunks = smallvec::SmallVec<[String; 2]>;

const THINK_OPEN: &str = "<think>\n";
const THINK_CLOSE: &str = "\n</think>\n\n";

pub fn usage(u: TokenUsage) -> Usage {
    Usage {
        prompt_tokens: u.input,
        completion_tokens: u.output,
        total_tokens: u.input + u.output,
        completion_tokens_details: u.reasoning.map(|r| CompletionTokensDetails {
            reasoning_tokens: r,
        }),
    }
}

/// Turns answer events into the `data:` payloads of a chat completion stream.
pub struct StreamEncoder {
    id: String,
    created: u64,
    model: String,
    format: ReasoningFormat,
    include_usage: bool,
    role_sent: bool,
    think_open: bool,
    placer: Placer,
    usage: TokenUsage,
    /// A chunk's JSON up to and including `"choices":[`, and what follows the choices.
    head: String,
    tail: &'static str,
}

impl StreamEncoder {
    pub fn new(
        id: String,
        created: u64,
        model: String,
        format: ReasoningFormat,
        include_usage: bool,
        sources: SourceStyle,
    ) -> Self {
        let empty = serde_json::to_string(&ChatCompletionChunk {
            id: &id,
            object: "chat.completion.chunk",
            created,
            model: &model,
            choices: Vec::new(),
            usage: include_usage.then_some(None),
        })
        .expect("chunks always serialize");
        let tail = if include_usage {
            r#"],"usage":null}"#
        } else {
            "]}"
        };
        // The id and model come first and are escaped, so the key is the last match.
        let key = r#""choices":["#;
        let at = empty.rfind(r#""choices":[]"#).expect("a chunk has choices") + key.len();
        debug_assert_eq!(&empty[at..], tail);
        Self {
            id,
            created,
            model,
            format,
            include_usage,
            role_sent: false,
            think_open: false,
            placer: Placer {
                style: sources,
                saw_text: false,
            },
            usage: TokenUsage::default(),
            head: empty[..at].to_owned(),
            tail,
        }
    }

    /// One chunk with one choice, written around the `head` and `tail` prepared once per
    /// stream: only the delta is serialized per event. Byte for byte what serializing the
    /// whole `ChatCompletionChunk` gives (the tests compare both).
    fn chunk(&self, delta: Delta<'_>, finish: Option<FinishReason>) -> String {
        let text = delta.content.map_or(0, str::len)
            + delta.reasoning_content.map_or(0, str::len)
            + delta.tool_calls.map_or(0, |c| {
                c.iter()
                    .map(|t| t.function.arguments.map_or(0, str::len))
                    .sum()
            });
        let mut out = Vec::with_capacity(self.head.len() + self.tail.len() + text + 96);
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(br#"{"index":0,"delta":"#);
        serde_json::to_writer(&mut out, &delta).expect("deltas always serialize");
        out.extend_from_slice(br#","logprobs":null,"finish_reason":"#);
        serde_json::to_writer(&mut out, &finish).expect("finish reasons always serialize");
        out.push(b'}');
        out.extend_from_slice(self.tail.as_bytes());
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// The final usage chunk (`"choices":[]`).
    fn usage_chunk(&self, usage: Usage) -> String {
        let chunk = ChatCompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: Vec::new(),
            usage: Some(Some(usage)),
        };
        serde_json::to_string(&chunk).expect("chunks always serialize")
    }

    fn content(&mut self, out: &mut Chunks, text: &str) {
        self.role(out);
        out.push(self.chunk(
            Delta {
                content: Some(text),
                ..Delta::default()
            },
            None,
        ));
    }

    fn role(&mut self, out: &mut Chunks) {
        if !self.role_sent {
            self.role_sent = true;
            out.push(self.chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..Delta::default()
                },
                None,
            ));
        }
    }

    /// The payloads for one event (none, one or several).
    pub fn event(&mut self, ev: AnswerEvent) -> Chunks {
        let mut out = Chunks::new();
        let Some(ev) = self.placer.place(ev) else {
            return out;
        };
        match ev {
            AnswerEvent::Reasoning(t) if t.is_empty() => {}
            AnswerEvent::Reasoning(t) => match self.format {
                ReasoningFormat::Field => {
                    self.role(&mut out);
                    out.push(self.chunk(
                        Delta {
                            reasoning_content: Some(&t),
                            ..Delta::default()
                        },
                        None,
                    ));
                }
                ReasoningFormat::Tags if !self.think_open => {
                    self.think_open = true;
                    self.content(&mut out, &format!("{THINK_OPEN}{t}"));
                }
                ReasoningFormat::Tags => self.content(&mut out, &t),
                ReasoningFormat::Hidden => {}
            },
            AnswerEvent::Text(t) if t.is_empty() => {}
            AnswerEvent::Text(t) => {
                if self.think_open {
                    self.think_open = false;
                    self.content(&mut out, &format!("{THINK_CLOSE}{t}"));
                } else {
                    self.content(&mut out, &t);
                }
            }
            AnswerEvent::ToolCallStart { index, id, name } => {
                self.close_think(&mut out);
                self.role(&mut out);
                let call = [ToolCallDelta {
                    index,
                    id: Some(&id),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(&name),
                        arguments: Some(""),
                    },
                }];
                out.push(self.chunk(
                    Delta {
                        tool_calls: Some(&call),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            AnswerEvent::ToolCallArguments { index, delta } => {
                let call = [ToolCallDelta {
                    index,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: Some(&delta),
                    },
                }];
                out.push(self.chunk(
                    Delta {
                        tool_calls: Some(&call),
                        ..Delta::default()
                    },
                    None,
                ));
            }
            AnswerEvent::ToolCallEnd { .. } | AnswerEvent::Sources { .. } => {}
            AnswerEvent::Usage(u) => self.usage = u,
            AnswerEvent::Finish(f) => {
                self.close_think(&mut out);
                self.role(&mut out);
                out.push(self.chunk(Delta::default(), Some(finish_reason(f))));
                if self.include_usage {
                    out.push(self.usage_chunk(usage(self.usage)));
                }
            }
        }
        out
    }

    fn close_think(&mut self, out: &mut Chunks) {
        if self.think_open {
            self.think_open = false;
            self.content(out, THINK_CLOSE);
        }
    }
}

/// Collects a whole answer for a non-streaming client.
#[derive(Debug)]
pub struct Aggregate {
    content: String,
    reasoning: String,
    usage: TokenUsage,
    finish: Option<Finish>,
    tool_calls: Vec<crate::openai::ToolCallOut>,
    placer: Placer,
}

impl Aggregate {
    pub fn new(sources: SourceStyle) -> Self {
        Self {
            content: String::new(),
            reasoning: String::new(),
            usage: TokenUsage::default(),
            finish: None,
            tool_calls: Vec::new(),
            placer: Placer {
                style: sources,
                saw_text: false,
            },
        }
    }

    pub fn push(&mut self, ev: AnswerEvent) {
        let Some(ev) = self.placer.place(ev) else {
            return;
        };
        match ev {
            AnswerEvent::Reasoning(t) => self.reasoning.push_str(&t),
            AnswerEvent::Text(t) => self.content.push_str(&t),
            AnswerEvent::ToolCallStart { id, name, .. } => {
                self.tool_calls
                    .push(crate::openai::ToolCallOut::new(id, name));
            }
            AnswerEvent::ToolCallArguments { delta, .. } => {
                if let Some(call) = self.tool_calls.last_mut() {
                    call.function.arguments.push_str(&delta);
                }
            }
            AnswerEvent::ToolCallEnd { .. } | AnswerEvent::Sources { .. } => {}
            AnswerEvent::Usage(u) => self.usage = u,
            AnswerEvent::Finish(f) => self.finish = Some(f),
        }
    }

    /// The text so far (what image and video generation read their links from).
    pub fn text(&self) -> &str {
        &self.content
    }

    pub fn into_completion<'a>(
        self,
        id: &'a str,
        created: u64,
        model: &'a str,
        format: ReasoningFormat,
    ) -> ChatCompletion<'a> {
        let (content, reasoning_content) = match format {
            ReasoningFormat::Field => {
                (self.content, Some(self.reasoning).filter(|r| !r.is_empty()))
            }
            ReasoningFormat::Tags if !self.reasoning.is_empty() => (
                format!(
                    "{THINK_OPEN}{}{THINK_CLOSE}{}",
                    self.reasoning, self.content
                ),
                None,
            ),
            ReasoningFormat::Tags | ReasoningFormat::Hidden => (self.content, None),
        };
        ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model,
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant",
                    content: if self.tool_calls.is_empty() || !content.trim().is_empty() {
                        Some(content)
                    } else {
                        None
                    },
                    reasoning_content,
                    tool_calls: self.tool_calls,
                },
                logprobs: None,
                finish_reason: finish_reason(self.finish.unwrap_or(Finish::Stop)),
            }],
            usage: usage(self.usage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::ChunkChoice;

    #[test]
    fn chunks_written_around_the_delta_match_whole_serialization() {
        let model = "qwen3 \"max\" \\ \"choices\":[] ü";
        for include_usage in [false, true] {
            let e = StreamEncoder::new(
                "chatcmpl-\"x\"".into(),
                1_795_330_280,
                model.into(),
                ReasoningFormat::Field,
                include_usage,
                SourceStyle::new(SearchInfoMode::Table, false, ReasoningFormat::Field),
            );
            let deltas = [
                (Delta::default(), Some(FinishReason::Stop)),
                (
                    Delta {
                        role: Some("assistant"),
                        content: Some(""),
                        ..Delta::default()
                    },
                    None,
                ),
                (
                    Delta {
                        content: Some("a \"q\"\n\u{1}\t你好 </script>"),
                        ..Delta::default()
                    },
                    None,
                ),
                (
                    Delta {
                        reasoning_content: Some("r"),
                        ..Delta::default()
                    },
                    None,
                ),
                (Delta::default(), Some(FinishReason::Length)),
            ];
            for (delta, finish) in deltas {
                let whole = serde_json::to_string(&ChatCompletionChunk {
                    id: &e.id,
                    object: "chat.completion.chunk",
                    created: e.created,
                    model: &e.model,
                    choices: vec![ChunkChoice {
                        index: 0,
                        delta,
                        logprobs: None,
                        finish_reason: finish,
                    }],
                    usage: include_usage.then_some(None),
                })
                .unwrap();
                assert_eq!(e.chunk(delta, finish), whole);
            }
        }
    }

    fn encode(format: ReasoningFormat, include_usage: bool, events: &[AnswerEvent]) -> Vec<String> {
        let mut e = StreamEncoder::new(
            "chatcmpl-1".into(),
            7,
            "m".into(),
            format,
            include_usage,
            SourceStyle::new(SearchInfoMode::Table, true, format),
        );
        events.iter().flat_map(|ev| e.event(ev.clone())).collect()
    }

    #[test]
    fn exact_chunks_with_usage() {
        let got = encode(
            ReasoningFormat::Field,
            true,
            &[
                AnswerEvent::Reasoning("r".into()),
                AnswerEvent::Text("Hi".into()),
                AnswerEvent::Usage(TokenUsage {
                    input: 3,
                    output: 4,
                    reasoning: Some(1),
                }),
                AnswerEvent::Finish(Finish::Stop),
            ],
        );
        let head = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":"#;
        assert_eq!(
            got,
            [
                format!(
                    r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
                ),
                format!(
                    r#"{head}[{{"index":0,"delta":{{"reasoning_content":"r"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
                ),
                format!(
                    r#"{head}[{{"index":0,"delta":{{"content":"Hi"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
                ),
                format!(
                    r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
                ),
                format!(
                    r#"{head}[],"usage":{{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"completion_tokens_details":{{"reasoning_tokens":1}}}}}}"#
                ),
            ]
        );
    }

    #[test]
    fn tags_wrap_reasoning_in_content() {
        let got = encode(
            ReasoningFormat::Tags,
            false,
            &[
                AnswerEvent::Reasoning("a".into()),
                AnswerEvent::Reasoning("b".into()),
                AnswerEvent::Text("c".into()),
            ],
        );
        let contents: Vec<String> = got
            .iter()
            .map(|c| serde_json::from_str::<serde_json::Value>(c).unwrap()["choices"][0]["delta"]["content"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(contents, ["", "<think>\na", "b", "\n</think>\n\nc"]);
        assert!(!got[0].contains("usage"));
    }

    #[test]
    fn aggregate_in_every_format() {
        let events = || {
            [
                AnswerEvent::Reasoning("r".into()),
                AnswerEvent::Text("c".into()),
                AnswerEvent::Finish(Finish::Stop),
            ]
        };
        for (format, content, reasoning) in [
            (ReasoningFormat::Field, "c", Some("r")),
            (ReasoningFormat::Tags, "<think>\nr\n</think>\n\nc", None),
            (ReasoningFormat::Hidden, "c", None),
        ] {
            let mut a = Aggregate::new(SourceStyle::new(SearchInfoMode::Table, true, format));
            for e in events() {
                a.push(e);
            }
            let done = a.into_completion("id", 1, "m", format);
            assert_eq!(done.choices[0].message.content.as_deref(), Some(content));
            assert_eq!(
                done.choices[0].message.reasoning_content.as_deref(),
                reasoning
            );
        }
    }

    #[test]
    fn sources_go_into_thinking_until_the_text_starts() {
        let src = |first: usize, url: &str| AnswerEvent::Sources {
            first,
            sources: vec![crate::conversation::Source {
                url: url.into(),
                title: Some("T".into()),
                hostname: Some("h".into()),
            }],
        };
        let mut a = Aggregate::new(SourceStyle::new(
            SearchInfoMode::Text,
            true,
            ReasoningFormat::Field,
        ));
        for ev in [
            src(1, "https://a/"),
            AnswerEvent::Reasoning("r".into()),
            AnswerEvent::Text("c".into()),
            src(2, "https://b/"),
            AnswerEvent::Finish(Finish::Stop),
        ] {
            a.push(ev);
        }
        let done = a.into_completion("id", 1, "m", ReasoningFormat::Field);
        assert_eq!(
            done.choices[0].message.reasoning_content.as_deref(),
            Some("[1] [T](https://a/) | h\n\nr")
        );
        assert_eq!(
            done.choices[0].message.content.as_deref(),
            Some("c[2] [T](https://b/) | h\n\n")
        );
    }
}
