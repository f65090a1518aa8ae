//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their corpus:
//! the request parser with translation, and the upstream SSE decoder fed bytes split at
//! arbitrary points. They must never panic; they assert the decoder's own invariants.

use bytes::Bytes;
use futures::StreamExt;

use crate::config::StreamMode;
use crate::conversation::AnswerEvent;
use crate::openai::ChatCompletionRequest;
use crate::upstream::ResolvedModel;
use crate::upstream::UpstreamError;
use crate::upstream::qwen::ByteStream;
use crate::upstream::qwen::stream::{DecodeOptions, answers};

/// Parses `data` as a chat completion request body, checks it, and translates it.
pub fn request(data: &[u8]) {
    let Ok(req) = crate::api::parse_json::<ChatCompletionRequest>(data) else {
        return;
    };
    if crate::openai::check_request(&req, 2000).is_err() {
        return;
    }
    let model = ResolvedModel {
        upstream_id: "qwen3.7-plus".into(),
        thinking: false,
        search: false,
        must_think: false,
        media: None,
        context_tokens: None,
        sites: Vec::new(),
    };
    let conv = crate::openai::to_conversation(&req, Vec::new(), Vec::new(), true);
    let Ok(chat) =
        crate::upstream::qwen::prepare(&conv, &model, &crate::upstream::qwen::Shaping::default())
    else {
        return;
    };
    let body = crate::upstream::qwen::payload::CompletionBody::new(&chat, "chat", &[]);
    assert!(serde_json::to_vec(&body).is_ok());
}

/// Decodes `data[4..]` as an upstream stream cut into pieces whose sizes come from `data[..4]`,
/// under options chosen by those bytes too. The answer ends with exactly one `Finish` or one error,
/// and nothing follows it.
pub fn upstream_sse(data: &[u8]) {
    let (head, body) = data.split_at(data.len().min(4));
    let seed: Vec<usize> = head.iter().map(|b| usize::from(*b % 13) + 1).collect();
    let opts = DecodeOptions {
        reasoning_visible: head.first().is_none_or(|b| b & 1 == 0),
        stream_mode: if head.first().is_some_and(|b| b & 8 == 0) {
            StreamMode::Auto
        } else {
            StreamMode::Incremental
        },
    };
    let mut pieces: Vec<Result<Bytes, UpstreamError>> = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let n = seed
            .get(i % seed.len().max(1))
            .copied()
            .unwrap_or(7)
            .min(body.len() - at);
        pieces.push(Ok(Bytes::copy_from_slice(&body[at..at + n])));
        at += n;
        i += 1;
    }
    let bytes: ByteStream = Box::pin(futures::stream::iter(pieces));
    let items: Vec<Result<AnswerEvent, UpstreamError>> = futures::executor::block_on(
        answers(bytes, opts, crate::upstream::AnswerId::default()).collect(),
    );
    let ends = items
        .iter()
        .filter(|i| matches!(i, Ok(AnswerEvent::Finish(_)) | Err(_)))
        .count();
    assert_eq!(ends, 1, "exactly one end");
    assert!(
        matches!(items.last(), Some(Ok(AnswerEvent::Finish(_)) | Err(_))),
        "the end comes last"
    );
    if !opts.reasoning_visible {
        assert!(
            !items
                .iter()
                .any(|i| matches!(i, Ok(AnswerEvent::Reasoning(_)))),
            "hidden reasoning"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_targets_take_real_inputs() {
        request(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        request(b"\xff\x00{");
        let capture = include_bytes!("../tests/fixtures/qwen/capture_fast_answer.sse");
        for seed in [[0u8, 1, 2, 3], [255, 254, 253, 252], [7, 7, 7, 7]] {
            let mut data = seed.to_vec();
            data.extend_from_slice(capture);
            upstream_sse(&data);
        }
        upstream_sse(b"");
        upstream_sse(b"\x01\x02");
    }
}
