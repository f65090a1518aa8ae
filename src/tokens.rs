//! Token counts close to the upstream's own: Qwen's byte-level BPE, loaded on first use.
//!
//! The vocabulary is Qwen2.5's (151,643 tokens, the same regular tokens Qwen3 uses), as the
//! `tiktoken` crate ships it, with Qwen's pre-tokenizer (single digits, cl100k-style words).
//! The newest Qwen generations use a larger vocabulary no crate ships; docs/token-counting.md
//! gives the measured error against it and against the upstream's own `usage` figures.
//!
//! Used by `count_tokens` and by the proxy-side `max_tokens` cut. The vocabulary costs a few
//! megabytes and ~50 ms to build, so it is built by the first call that needs it, never at
//! start-up: a server that is never asked to count never pays for it.

use std::sync::OnceLock;

use tiktoken::CoreBpe;

/// Qwen's tokenizer, built by the first non-empty count.
static QWEN: OnceLock<CoreBpe> = OnceLock::new();

fn qwen() -> &'static CoreBpe {
    QWEN.get_or_init(tiktoken::encoding::qwen2)
}

/// Whether a count has built the tokenizer yet (for the memory figures in bench/tokens.rs).
pub fn is_loaded() -> bool {
    QWEN.get().is_some()
}

/// Tokens in `text` as Qwen's tokenizer splits it. Text that looks like a special token
/// (`<|im_start|>`) is counted as the plain text it is: a client's prompt cannot open a turn.
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    u64::try_from(qwen().count(text)).unwrap_or(u64::MAX)
}

/// Tokens in several texts, each counted alone (a system prompt, each message, each tool).
/// Counting them joined can differ by about one token per seam, well inside the error against
/// the upstream.
pub fn count_many<'a>(texts: impl IntoIterator<Item = &'a str>) -> u64 {
    texts.into_iter().map(count).fold(0, u64::saturating_add)
}

/// Where to cut `text` so that it keeps at most `max_tokens` tokens: the byte length of that
/// prefix (on a character boundary), or `None` when the whole text fits.
pub fn cut(text: &str, max_tokens: u64) -> Option<usize> {
    let max = usize::try_from(max_tokens).unwrap_or(usize::MAX);
    // Each token is at least one byte, so a text this short fits without tokenizing it.
    if text.len() <= max {
        return None;
    }
    let ids = qwen().encode(text);
    if ids.len() <= max {
        return None;
    }
    // The tokens are byte strings that concatenate to the text, so the decoded prefix is the
    // text's own prefix; a token may end inside a character, which is left out whole.
    let mut end = qwen().decode(&ids[..max]).len().min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The expected counts were computed independently with Qwen's published vocabulary file
    // (`qwen.tiktoken`) through OpenAI's Python tiktoken, with Qwen's pre-tokenizer pattern.

    #[test]
    fn empty_text_is_zero_tokens() {
        assert_eq!(count(""), 0);
        assert_eq!(count_many([]), 0);
        assert_eq!(count_many(["", ""]), 0);
    }

    #[test]
    fn english_and_code_count_as_qwen_splits_them() {
        assert_eq!(count("Hi!"), 2); // the upstream reported 2 output tokens for this answer
        assert_eq!(count("Hello, world!"), 4);
        assert_eq!(count("12345"), 5); // Qwen splits numbers into single digits
        assert_eq!(count("a  b\n\n\nc"), 5);
        assert_eq!(count("fn main() {\n    println!(\"hi\");\n}\n"), 10);
    }

    #[test]
    fn non_ascii_counts_as_qwen_splits_it() {
        assert_eq!(count("用一句話介紹你自己"), 5);
        assert_eq!(count("我是通義千"), 4);
        assert_eq!(count("問（Qwen"), 4); // the upstream's running total rose by 4 for this delta
        assert_eq!(count("naïve café 😀"), 5);
        assert_eq!(count("Привет, мир"), 5);
    }

    #[test]
    fn special_token_text_is_plain_text() {
        assert_eq!(count("<|im_start|>"), 6);
    }

    #[test]
    fn many_texts_add_up() {
        assert_eq!(
            count_many(["Hi!", "Hello, world!", "我是通義千"]),
            2 + 4 + 4
        );
    }

    #[test]
    fn long_texts_count_without_panicking() {
        // 90 KB, more than a Claude Code request's 78 KB.
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(2000);
        assert_eq!(count(&prose), 20_001);
        let mixed = "def add(a, b):\n    return a + b  # 加法\n".repeat(1000);
        assert_eq!(count(&mixed), 16_000);
        // One pre-token piece of 200 KB: no word boundary for the merge to stop at.
        assert_eq!(count(&"a".repeat(200_000)), 25_000);
    }

    #[test]
    fn cut_keeps_whole_tokens_up_to_the_limit() {
        assert_eq!(cut("Hello, world!", 2), Some("Hello,".len()));
        assert_eq!(cut("Hello, world!", 3), Some("Hello, world".len()));
        assert_eq!(cut("Hello, world!", 4), None);
        assert_eq!(cut("Hello, world!", 0), Some(0));
        assert_eq!(cut("我是通義千", 1), Some("我是".len()));
        assert_eq!(cut("", 0), None);
        assert_eq!(cut("Hi", 100), None);
    }
}
