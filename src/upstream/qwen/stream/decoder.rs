//! `Decoder`: the state machine that turns upstream frames into answer events. It keeps one
//! candidate response, diffs cumulative text, renders search sources and tracks usage.

use std::borrow::Cow;

use crate::config::StreamMode;
use crate::conversation::{AnswerEvent, Finish, Source, TokenUsage};
use crate::upstream::UpstreamError;
use crate::upstream::error::classify_event;
use crate::upstream::qwen::wire::{Frame, Phase, SearchInfo, WireDelta, WireUsage};

#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// Emit reasoning at all (false: the client asked for it hidden).
    pub reasoning_visible: bool,
    pub stream_mode: StreamMode,
}

/// What one upstream event said besides its answer events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    More,
    /// `[DONE]` was seen: nothing more will come.
    Done,
}

pub struct Decoder {
    opts: DecodeOptions,
    /// The response being followed; frames of other candidates are dropped (docs/upstream.md §6.7).
    primary: Option<String>,
    others: Vec<String>,
    answer_so_far: String,
    cumulative: bool,
    summary_sent: String,
    sources: Vec<SearchInfo>,
    sources_rendered: usize,
    saw_answer: bool,
    saw_reasoning: bool,
    /// Generated image URLs already emitted (the site may repeat them).
    images: Vec<String>,
    usage: TokenUsage,
}

impl Decoder {
    pub fn new(opts: DecodeOptions) -> Self {
        Self {
            opts,
            primary: None,
            others: Vec::new(),
            answer_so_far: String::new(),
            cumulative: false,
            summary_sent: String::new(),
            sources: Vec::new(),
            sources_rendered: 0,
            saw_answer: false,
            saw_reasoning: false,
            images: Vec::new(),
            usage: TokenUsage::default(),
        }
    }

    /// The id of the answer being followed, once its first event named it: the parent a
    /// continuation of the chat names (docs/upstream.md §5.5).
    pub fn answer_id(&self) -> Option<&str> {
        self.primary.as_deref().filter(|id| !id.is_empty())
    }

    /// Feeds one event's `data`; the answer events it produced are pushed to `out` (a buffer
    /// the caller reuses, so that an event allocates no list of its own).
    pub fn feed(&mut self, data: &str, out: &mut Vec<AnswerEvent>) -> Result<Step, UpstreamError> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(Step::Done);
        }
        if data.is_empty() {
            return Ok(Step::More);
        }
        let frame = match Frame::parse(data) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, len = data.len(), "ignoring an upstream event that is not a frame");
                return Ok(Step::More);
            }
        };
        if let Some(created) = frame.created {
            let id = created.response_id.unwrap_or_default();
            match created.response_index.as_deref() {
                Some("0") | None if self.primary.is_none() => self.primary = Some(id),
                _ => self.others.push(id),
            }
            return Ok(Step::More);
        }
        if frame.choices.is_empty() && (frame.success == Some(false) || frame.error.is_some()) {
            let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
            return Err(classify_event(&value));
        }
        if let Some(rid) = frame.response_id.as_deref() {
            match &self.primary {
                None if !self.others.iter().any(|o| o == rid) => {
                    self.primary = Some(rid.to_owned());
                }
                Some(p) if p == rid => {}
                _ => return Ok(Step::More),
            }
        }
        if let Some(u) = frame.usage {
            self.merge_usage(u);
        }
        for choice in frame.choices {
            self.on_delta(choice.delta, out);
        }
        Ok(Step::More)
    }

    /// Called at the end of the stream: the final events, or why the answer is unusable.
    pub fn finish(&mut self) -> Result<Vec<AnswerEvent>, UpstreamError> {
        if !self.saw_answer {
            return Err(if self.saw_reasoning {
                UpstreamError::ThinkingOnly
            } else {
                UpstreamError::EmptyAnswer
            });
        }
        let mut out = Vec::new();
        self.flush_sources(&mut out);
        out.push(AnswerEvent::Usage(self.usage));
        out.push(AnswerEvent::Finish(Finish::Stop));
        Ok(out)
    }

    fn on_delta(&mut self, delta: WireDelta<'_>, out: &mut Vec<AnswerEvent>) {
        if let Some(found) = delta
            .extra
            .as_ref()
            .and_then(|e| e.web_search_info.as_ref())
        {
            for s in found {
                if s.url.is_some() && !self.sources.iter().any(|k| k.url == s.url) {
                    self.sources.push(s.clone());
                }
            }
        }
        let is_function = delta.role.as_deref() == Some("function")
            || delta.name.as_deref() == Some("web_search");
        match delta.phase {
            Some(Phase::WebSearch) => {}
            _ if is_function => {}
            Some(Phase::Answer) | None => {
                let text = self.new_answer_text(delta.content.unwrap_or_default());
                if !text.is_empty() {
                    self.flush_sources(out);
                    self.saw_answer = true;
                    out.push(AnswerEvent::Text(text));
                }
            }
            Some(Phase::Think) => {
                self.reasoning(delta.content.unwrap_or_default().into_owned(), out);
            }
            Some(Phase::ThinkingSummary) => {
                let joined = delta
                    .extra
                    .as_ref()
                    .and_then(|e| e.summary_thought.as_ref())
                    .map(crate::upstream::qwen::wire::SummaryBlock::joined)
                    .unwrap_or_default();
                let new = diff_cumulative(&self.summary_sent, &joined);
                if !new.is_empty() {
                    self.summary_sent = joined;
                    self.reasoning(new, out);
                }
            }
            Some(Phase::ImageGen) => {
                let url = delta.content.unwrap_or_default();
                let url = url.trim();
                if url.is_empty() || self.images.iter().any(|u| u == url) {
                    return;
                }
                self.images.push(url.to_owned());
                self.saw_answer = true;
                out.push(AnswerEvent::Text(image_markdown(
                    url,
                    self.images.len() > 1,
                )));
            }
            Some(Phase::Unknown) => {
                tracing::debug!(phase = ?delta.phase, "ignoring an upstream phase this version does not render");
            }
        }
    }

    fn reasoning(&mut self, text: String, out: &mut Vec<AnswerEvent>) {
        if text.is_empty() {
            return;
        }
        self.saw_reasoning = true;
        if self.opts.reasoning_visible {
            self.flush_sources(out);
            out.push(AnswerEvent::Reasoning(text));
        }
    }

    /// Only the part of an answer event that is new: detects cumulative upstreams (each event
    /// repeating everything so far) and switches back when an event does not repeat.
    fn new_answer_text(&mut self, content: Cow<'_, str>) -> String {
        if self.opts.stream_mode == StreamMode::Incremental || content.is_empty() {
            return content.into_owned();
        }
        let repeats = content.starts_with(self.answer_so_far.as_str());
        let text = if self.cumulative && repeats {
            content[self.answer_so_far.len()..].to_owned()
        } else if !self.cumulative
            && repeats
            && self.answer_so_far.chars().count() >= 2
            && content.len() > self.answer_so_far.len()
        {
            tracing::debug!("upstream answer is cumulative; emitting only new text");
            self.cumulative = true;
            content[self.answer_so_far.len()..].to_owned()
        } else {
            self.cumulative = false;
            content.into_owned()
        };
        self.answer_so_far.push_str(&text);
        text
    }

    fn flush_sources(&mut self, out: &mut Vec<AnswerEvent>) {
        if self.sources_rendered == self.sources.len() {
            return;
        }
        // Sources go out as data, numbered on from those sent; the client surface renders them.
        let first = self.sources_rendered + 1;
        let sources = self.sources[self.sources_rendered..]
            .iter()
            .map(|s| Source {
                url: s.url.clone().unwrap_or_default(),
                title: s.title.clone(),
                hostname: s.hostname.clone(),
            })
            .collect();
        self.sources_rendered = self.sources.len();
        out.push(AnswerEvent::Sources { first, sources });
    }

    fn merge_usage(&mut self, u: WireUsage) {
        if let Some(n) = u.input_tokens.or(u.prompt_tokens) {
            self.usage.input = n;
        }
        if let Some(n) = u.output_tokens.or(u.completion_tokens) {
            self.usage.output = n;
        }
        if let Some(n) = u.output_tokens_details.and_then(|d| d.reasoning_tokens) {
            self.usage.reasoning = Some(n);
        }
    }
}

/// A generated image as the chat answer shows it: `![image](url)`, one per line.
fn image_markdown(url: &str, not_first: bool) -> String {
    let sep = if not_first { "\n\n" } else { "" };
    format!("{sep}![image]({url})")
}

/// The part of `now` not yet sent, given `sent`. When the upstream rewrote earlier text, what
/// was sent cannot be taken back: only what lies beyond its length is new.
fn diff_cumulative(sent: &str, now: &str) -> String {
    if let Some(rest) = now.strip_prefix(sent) {
        return rest.to_owned();
    }
    match now.get(sent.len()..) {
        Some(rest) => rest.to_owned(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> DecodeOptions {
        DecodeOptions {
            reasoning_visible: true,
            stream_mode: StreamMode::Auto,
        }
    }

    fn answer(text: &str) -> String {
        format!(
            r#"{{"choices": [{{"delta": {{"role": "assistant", "content": {}, "phase": "answer", "status": "typing"}}}}], "response_id": "r"}}"#,
            serde_json::to_string(text).unwrap()
        )
    }

    fn run(d: &mut Decoder, frames: &[String]) -> Vec<AnswerEvent> {
        let mut out = Vec::new();
        for f in frames {
            d.feed(f, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn cumulative_answers_are_detected_and_left_again() {
        let mut d = Decoder::new(opts());
        let got = run(
            &mut d,
            &[
                answer("He"),
                answer("Hello"),
                answer("Hello world"),
                answer("!"),
            ],
        );
        let texts: Vec<_> = got
            .iter()
            .map(|e| match e {
                AnswerEvent::Text(t) => t.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(texts, ["He", "llo", " world", "!"]);
    }

    #[test]
    fn incremental_mode_trusts_the_upstream() {
        let mut d = Decoder::new(DecodeOptions {
            stream_mode: StreamMode::Incremental,
            ..opts()
        });
        let got = run(&mut d, &[answer("He"), answer("Hello")]);
        assert_eq!(
            got,
            [
                AnswerEvent::Text("He".into()),
                AnswerEvent::Text("Hello".into())
            ]
        );
    }

    #[test]
    fn one_character_is_not_enough_to_call_it_cumulative() {
        let mut d = Decoder::new(opts());
        let got = run(&mut d, &[answer("a"), answer("ab")]);
        assert_eq!(
            got,
            [
                AnswerEvent::Text("a".into()),
                AnswerEvent::Text("ab".into())
            ]
        );
    }

    #[test]
    fn diff_handles_growth_and_rewrites() {
        assert_eq!(diff_cumulative("", "abc"), "abc");
        assert_eq!(diff_cumulative("abc", "abc\n\ndef"), "\n\ndef");
        assert_eq!(diff_cumulative("abc", "abc"), "");
        assert_eq!(diff_cumulative("abX", "abcdef"), "def");
        assert_eq!(diff_cumulative("日本", "日本語"), "語");
    }

    #[test]
    fn no_answer_is_an_error() {
        let mut d = Decoder::new(opts());
        assert_eq!(d.finish().unwrap_err(), UpstreamError::EmptyAnswer);
        let mut d = Decoder::new(opts());
        run(
            &mut d,
            &[r#"{"choices": [{"delta": {"content": "hmm", "phase": "think"}}]}"#.into()],
        );
        assert_eq!(d.finish().unwrap_err(), UpstreamError::ThinkingOnly);
    }

    #[test]
    fn generated_images_become_markdown_once() {
        let mut d = Decoder::new(opts());
        let img = |u: &str| {
            format!(
                r#"{{"choices": [{{"delta": {{"role": "assistant", "content": "{u}", "phase": "image_gen", "status": "typing"}}}}], "response_id": "r"}}"#
            )
        };
        let got = run(
            &mut d,
            &[
                img("https://cdn/a.png?key=k"),
                img("https://cdn/a.png?key=k"),
                img(""),
                img("https://cdn/b.png"),
            ],
        );
        assert_eq!(
            got,
            [
                AnswerEvent::Text("![image](https://cdn/a.png?key=k)".into()),
                AnswerEvent::Text("\n\n![image](https://cdn/b.png)".into()),
            ]
        );
        assert!(d.finish().is_ok());
    }

    #[test]
    fn errors_inside_the_stream_are_classified() {
        let mut d = Decoder::new(opts());
        let e = d.feed(r#"{"error": {"code": "internal_error", "message": "Allocated quota exceeded"}, "response_id": "r"}"#, &mut Vec::new()).unwrap_err();
        assert_eq!(e.class(), "rate_limited");
    }
}
