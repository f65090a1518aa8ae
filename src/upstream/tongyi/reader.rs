//! Reads Tongyi's answer events into answer events (docs/upstream.md §13.3): the text is
//! cumulative (each event repeats the whole answer), `incremental` blocks carry only new text,
//! `think` blocks (maybe a JSON string) are reasoning, echoed user blocks are skipped, and an
//! answer that "resets" never makes the client see text twice.

use super::wire::{Block, Event, MsgStatus, ThinkJson};
use crate::conversation::{AnswerEvent, Finish, TokenUsage};
use crate::upstream::UpstreamError;

/// One channel (answer text or reasoning) of the answer.
#[derive(Debug, Default)]
struct Channel {
    /// The whole text so far, as the site last gave it.
    last: String,
    /// Characters the client has been given.
    sent: usize,
    resets: usize,
}

impl Channel {
    /// The new text of a block: the part past what was sent. A cumulative text that does not
    /// start with the last one is a reset: it is logged, and only what goes beyond the
    /// characters already sent is sent.
    fn take(&mut self, content: &str, incremental: bool) -> Option<String> {
        if incremental {
            self.last.push_str(content);
        } else {
            if !content.starts_with(&self.last) {
                self.resets += 1;
                tracing::warn!(
                    sent_chars = self.sent,
                    new_chars = content.chars().count(),
                    "the Tongyi answer reset: only text past what was sent is forwarded"
                );
            }
            content.clone_into(&mut self.last);
        }
        let new: String = self.last.chars().skip(self.sent).collect();
        if new.is_empty() {
            return None;
        }
        self.sent += new.chars().count();
        Some(new)
    }
}

/// Whether the answer is over.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    More,
    Done,
}

#[derive(Debug, Default)]
pub struct Reader {
    text: Channel,
    think: Channel,
    reasoning_shown: bool,
    session_id: Option<String>,
    msg_id: Option<String>,
    prompt_chars: usize,
}

impl Reader {
    pub fn new(reasoning_shown: bool, prompt: &str) -> Self {
        Self {
            reasoning_shown,
            prompt_chars: prompt.chars().count(),
            ..Self::default()
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    pub fn msg_id(&self) -> Option<&str> {
        self.msg_id.as_deref()
    }

    #[cfg(test)]
    pub fn resets(&self) -> usize {
        self.text.resets + self.think.resets
    }

    /// Reads one `data:` payload.
    pub fn feed(&mut self, data: &str, out: &mut Vec<AnswerEvent>) -> Result<Step, UpstreamError> {
        if data.trim() == "[DONE]" {
            return Ok(Step::Done);
        }
        let event: Event = match serde_json::from_str(data) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "skipping a Tongyi event that is not the known JSON");
                return Ok(Step::More);
            }
        };
        if let Some(code) = event.error_code.as_deref().filter(|c| !c.is_empty()) {
            return Err(classify(code, event.error_msg.as_deref()));
        }
        if let Some(id) = event.session_id.filter(|s| !s.is_empty()) {
            self.session_id.get_or_insert(id);
        }
        if let Some(id) = event.msg_id.filter(|s| !s.is_empty()) {
            self.msg_id.get_or_insert(id);
        }
        for block in event.contents.unwrap_or_default() {
            self.on_block(block, out);
        }
        Ok(if event.msg_status == Some(MsgStatus::Finished) {
            Step::Done
        } else {
            Step::More
        })
    }

    fn on_block(&mut self, block: Block, out: &mut Vec<AnswerEvent>) {
        // The site may echo the prompt back: only the assistant's (or role-less) blocks count.
        if block.role.as_deref().is_some_and(|r| r != "assistant") {
            return;
        }
        let Some(content) = block.content else {
            return;
        };
        match block.content_type.as_deref() {
            Some("text") | None => {
                if let Some(t) = self.text.take(&content, block.incremental) {
                    out.push(AnswerEvent::Text(t));
                }
            }
            Some("think") => {
                let content = match serde_json::from_str::<ThinkJson>(&content) {
                    Ok(j) => j.content,
                    Err(_) => content,
                };
                if let Some(t) = self.think.take(&content, block.incremental)
                    && self.reasoning_shown
                {
                    out.push(AnswerEvent::Reasoning(t));
                }
            }
            Some(other) => {
                tracing::debug!(
                    content_type = other,
                    "skipping a Tongyi block of unknown type"
                );
            }
        }
    }

    /// The final events, or why the answer is unusable. Tongyi reports no token counts: they
    /// are estimated at four characters a token.
    pub fn finish(&self) -> Result<Vec<AnswerEvent>, UpstreamError> {
        if self.text.sent == 0 {
            return Err(if self.think.sent > 0 {
                UpstreamError::ThinkingOnly
            } else {
                UpstreamError::EmptyAnswer
            });
        }
        let tokens = |chars: usize| u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX);
        let reasoning = (self.think.sent > 0).then(|| tokens(self.think.sent));
        Ok(vec![
            AnswerEvent::Usage(TokenUsage {
                input: tokens(self.prompt_chars),
                output: tokens(self.text.sent) + reasoning.unwrap_or(0),
                reasoning,
            }),
            AnswerEvent::Finish(Finish::Stop),
        ])
    }
}

/// An `errorCode` in the answer (or in a JSON error body).
pub fn classify(code: &str, msg: Option<&str>) -> UpstreamError {
    let detail = match msg {
        Some(m) => format!("{code}: {m}"),
        None => code.to_owned(),
    };
    let upper = code.to_ascii_uppercase();
    if upper.contains("LOGIN") || upper.contains("AUTH") || upper.contains("XSRF") {
        UpstreamError::Auth(detail)
    } else if upper.contains("LIMIT") || upper.contains("FREQUEN") || upper.contains("QUOTA") {
        UpstreamError::RateLimited {
            detail,
            retry_after: None,
        }
    } else if upper.contains("GREEN") || upper.contains("SENSITIVE") || upper.contains("RISK") {
        UpstreamError::ContentFilter(detail)
    } else {
        UpstreamError::Transient(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(reader: &mut Reader, events: &[&str]) -> Vec<AnswerEvent> {
        let mut out = Vec::new();
        for e in events {
            if reader.feed(e, &mut out).unwrap() == Step::Done {
                break;
            }
        }
        out
    }

    #[test]
    fn cumulative_incremental_think_echo_and_reset() {
        let mut r = Reader::new(true, "hi");
        let out = run(
            &mut r,
            &[
                r#"{"sessionId":"s1","msgId":"m1","msgStatus":"processing","contents":[{"role":"user","contentType":"text","content":"hi"},{"contentType":"think","content":"{\"content\":\"Let me\"}"}]}"#,
                r#"{"contents":[{"contentType":"think","content":"{\"content\":\"Let me think\"}"},{"role":"assistant","contentType":"text","content":"Hel"}]}"#,
                r#"{"contents":[{"role":"assistant","contentType":"text","content":"Hello"},{"contentType":"card","content":"x"}]}"#,
                r#"{"contents":[{"role":"assistant","contentType":"text","content":""}]}"#,
                r#"{"contents":[{"role":"assistant","contentType":"text","content":"Hello there"}]}"#,
                r#"{"contents":[{"contentType":"text","content":"!","incremental":true}],"unknown":1}"#,
                r#"{"msgStatus":"finished","contents":[]}"#,
                r#"{"contents":[{"contentType":"text","content":"after the end"}]}"#,
            ],
        );
        let want = [
            AnswerEvent::Reasoning("Let me".into()),
            AnswerEvent::Reasoning(" think".into()),
            AnswerEvent::Text("Hel".into()),
            AnswerEvent::Text("lo".into()),
            AnswerEvent::Text(" there".into()),
            AnswerEvent::Text("!".into()),
        ];
        assert_eq!(out, want);
        assert_eq!(
            (r.session_id(), r.msg_id(), r.resets()),
            (Some("s1"), Some("m1"), 1)
        );
        let end = r.finish().unwrap();
        assert_eq!(end[1], AnswerEvent::Finish(Finish::Stop));
    }

    #[test]
    fn hidden_reasoning_is_dropped_and_errors_are_classified() {
        let mut r = Reader::new(false, "");
        let out = run(
            &mut r,
            &[r#"{"contents":[{"contentType":"think","content":"t"}]}"#],
        );
        assert!(out.is_empty());
        assert_eq!(r.finish().unwrap_err(), UpstreamError::ThinkingOnly);
        let mut out = Vec::new();
        let err = Reader::default()
            .feed(
                r#"{"errorCode":"NOT_LOGIN","errorMsg":"not login"}"#,
                &mut out,
            )
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Auth(_)));
        assert!(matches!(
            classify("REQUEST_TOO_FREQUENT", None),
            UpstreamError::RateLimited { .. }
        ));
    }
}
