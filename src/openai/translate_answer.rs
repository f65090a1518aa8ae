//! Internal answer events → OpenAI chunks (streaming) or one chat completion (non-streaming),
//! with reasoning placed per the reasoning format.

use crate::chat::{AnswerEvent, TokenUsage};
use crate::config::ReasoningFormat;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, Choice, CompletionTokensDetails, Delta, FinishReason,
    ResponseMessage, Usage,
};

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
            head: empty[..at].to_owned(),
            tail,
        }
    }

    /// One chunk with one choice, written around the `head` and `tail` prepared once per
    /// stream: only the delta is serialized per event. Byte for byte what serializing the
    /// whole `ChatCompletionChunk` gives (the tests compare both).
    fn chunk(&self, delta: Delta<'_>, finish: Option<FinishReason>) -> String {
        let text = delta.content.map_or(0, str::len) + delta.reasoning_content.map_or(0, str::len);
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
    pub fn event(&mut self, ev: &AnswerEvent) -> Chunks {
        let mut out = Chunks::new();
        match ev {
            AnswerEvent::Reasoning(t) if t.is_empty() => {}
            AnswerEvent::Reasoning(t) => match self.format {
                ReasoningFormat::Field => {
                    self.role(&mut out);
                    out.push(self.chunk(
                        Delta {
                            reasoning_content: Some(t),
                            ..Delta::default()
                        },
                        None,
                    ));
                }
                ReasoningFormat::Tags if !self.think_open => {
                    self.think_open = true;
                    self.content(&mut out, &format!("{THINK_OPEN}{t}"));
                }
                ReasoningFormat::Tags => self.content(&mut out, t),
                ReasoningFormat::Hidden => {}
            },
            AnswerEvent::Content(t) if t.is_empty() => {}
            AnswerEvent::Content(t) => {
                if self.think_open {
                    self.think_open = false;
                    self.content(&mut out, &format!("{THINK_CLOSE}{t}"));
                } else {
                    self.content(&mut out, t);
                }
            }
            AnswerEvent::Done(u) => {
                if self.think_open {
                    self.think_open = false;
                    self.content(&mut out, THINK_CLOSE);
                }
                self.role(&mut out);
                out.push(self.chunk(Delta::default(), Some(FinishReason::Stop)));
                if self.include_usage {
                    out.push(self.usage_chunk(usage(*u)));
                }
            }
        }
        out
    }
}

/// Collects a whole answer for a non-streaming client.
#[derive(Debug, Default)]
pub struct Aggregate {
    content: String,
    reasoning: String,
    usage: TokenUsage,
}

impl Aggregate {
    pub fn push(&mut self, ev: AnswerEvent) {
        match ev {
            AnswerEvent::Reasoning(t) => self.reasoning.push_str(&t),
            AnswerEvent::Content(t) => self.content.push_str(&t),
            AnswerEvent::Done(u) => self.usage = u,
        }
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
                    content,
                    reasoning_content,
                },
                logprobs: None,
                finish_reason: FinishReason::Stop,
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
        let mut e = StreamEncoder::new("chatcmpl-1".into(), 7, "m".into(), format, include_usage);
        events.iter().flat_map(|ev| e.event(ev)).collect()
    }

    #[test]
    fn exact_chunks_with_usage() {
        let got = encode(
            ReasoningFormat::Field,
            true,
            &[
                AnswerEvent::Reasoning("r".into()),
                AnswerEvent::Content("Hi".into()),
                AnswerEvent::Done(TokenUsage {
                    input: 3,
                    output: 4,
                    reasoning: Some(1),
                }),
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
                AnswerEvent::Content("c".into()),
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
                AnswerEvent::Content("c".into()),
                AnswerEvent::Done(TokenUsage::default()),
            ]
        };
        for (format, content, reasoning) in [
            (ReasoningFormat::Field, "c", Some("r")),
            (ReasoningFormat::Tags, "<think>\nr\n</think>\n\nc", None),
            (ReasoningFormat::Hidden, "c", None),
        ] {
            let mut a = Aggregate::default();
            for e in events() {
                a.push(e);
            }
            let done = a.into_completion("id", 1, "m", format);
            assert_eq!(done.choices[0].message.content, content);
            assert_eq!(
                done.choices[0].message.reasoning_content.as_deref(),
                reasoning
            );
        }
    }
}
