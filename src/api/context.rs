//! The prompt's token count for the surfaces that report or check it (Messages, Responses),
//! and the context-length check: a prompt that our count puts well over the model's context
//! length (from the model list) is refused with 400 `context_length_exceeded` before anything is
//! sent, in words clients know.

use crate::conversation::InvalidRequest;
use crate::upstream::{ResolvedModel, Turn};

/// Prompts up to this size are counted on the event loop (well under a millisecond).
const COUNT_INLINE_BYTES: usize = 16 * 1024;

/// The tokens of the prompt as it is sent: the message, and the prompt file when a long prompt
/// goes as one (docs/token-counting.md). The first count builds the tokenizer (70–100 ms) and a
/// long prompt takes milliseconds: both are counted off the event loop.
pub async fn prompt_tokens(turn: &Turn) -> u64 {
    let mut texts = vec![turn.prompt.clone()];
    texts.extend(turn.attachments.iter().filter_map(|m| match &m.source {
        crate::conversation::MediaSource::Blob(b) if b.mime == "text/plain" => {
            Some(String::from_utf8_lossy(&b.bytes).into_owned())
        }
        _ => None,
    }));
    let size: usize = texts.iter().map(String::len).sum();
    let count = move || crate::tokens::count_many(texts.iter().map(String::as_str));
    if size <= COUNT_INLINE_BYTES && crate::tokens::is_loaded() {
        return count();
    }
    tokio::task::spawn_blocking(count).await.unwrap_or(0)
}

/// Our count runs 0.90–1.08 times the upstream's (docs/token-counting.md): only a prompt more
/// than this much over the limit is refused, so that none the model could take is.
const MARGIN: f64 = 1.10;

/// The model's context length when `estimate` is over it by more than the margin.
fn over(model: &ResolvedModel, estimate: u64) -> Option<u64> {
    let max = model.context_tokens?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "token counts are far below 2^52"
    )]
    let over = estimate as f64 > max as f64 * MARGIN;
    over.then_some(max)
}

/// Anthropic's wording (Claude Code compacts its conversation when it reads it).
pub fn anthropic(model: &ResolvedModel, estimate: u64) -> Result<(), InvalidRequest> {
    match over(model, estimate) {
        Some(max) => Err(InvalidRequest::new(
            format!("prompt is too long: {estimate} tokens > {max} maximum"),
            "messages",
            "context_length_exceeded",
        )),
        None => Ok(()),
    }
}

/// OpenAI's wording.
pub fn openai(model: &ResolvedModel, estimate: u64, param: &str) -> Result<(), InvalidRequest> {
    match over(model, estimate) {
        Some(max) => Err(InvalidRequest::new(
            format!(
                "This model's maximum context length is {max} tokens. However, your messages \
                 resulted in {estimate} tokens (counted with Qwen2.5's tokenizer)."
            ),
            param,
            "context_length_exceeded",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_prompt_well_over_the_limit_is_refused() {
        let model = ResolvedModel {
            upstream_id: "q".into(),
            thinking: false,
            search: false,
            must_think: false,
            media: None,
            context_tokens: Some(1000),
            sites: Vec::new(),
        };
        assert!(anthropic(&model, 1100).is_ok());
        let e = anthropic(&model, 1101).unwrap_err();
        assert_eq!(e.message, "prompt is too long: 1101 tokens > 1000 maximum");
        assert_eq!(e.code, "context_length_exceeded");
        assert!(openai(&model, 5000, "input").unwrap_err().message.starts_with(
            "This model's maximum context length is 1000 tokens. However, your messages resulted in 5000 tokens"
        ));
        let unknown = ResolvedModel {
            context_tokens: None,
            ..model
        };
        assert!(openai(&unknown, u64::MAX, "input").is_ok());
    }
}
