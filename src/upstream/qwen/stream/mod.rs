//! Upstream SSE → neutral answer events: an SSE parser feeding a named decoder state machine.

mod decoder;
mod parser;

use futures::{Stream, StreamExt};

pub use decoder::{DecodeOptions, Decoder, Step};
pub use parser::SseParser;

use crate::conversation::AnswerEvent;
use crate::upstream::qwen::ByteStream;
use crate::upstream::{AnswerId, UpstreamError};

/// Decodes a completion's raw bytes into answer events, ending with `Finish` or one error;
/// `id` is set as soon as the answer's id is known.
pub fn answers(
    mut bytes: ByteStream,
    opts: DecodeOptions,
    id: AnswerId,
) -> impl Stream<Item = Result<AnswerEvent, UpstreamError>> + Send {
    async_stream::stream! {
        let mut parser = SseParser::default();
        let mut decoder = Decoder::new(opts);
        let mut events = Vec::new();
        'read: loop {
            let ended = match bytes.next().await {
                Some(Ok(chunk)) => {
                    if let Err(e) = parser.push(&chunk) {
                        yield Err(e);
                        return;
                    }
                    false
                }
                Some(Err(e)) => {
                    yield Err(e);
                    return;
                }
                // The site may end without the final blank line: the last event still counts.
                None => {
                    parser.finish();
                    true
                }
            };
            while let Some(data) = parser.next_data() {
                match decoder.feed(data, &mut events) {
                    Ok(step) => {
                        if let Some(answer) = decoder.answer_id() {
                            id.set(answer);
                        }
                        for ev in events.drain(..) {
                            yield Ok(ev);
                        }
                        if step == Step::Done {
                            break 'read;
                        }
                    }
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                }
            }
            if ended {
                break;
            }
        }
        match decoder.finish() {
            Ok(events) => {
                for ev in events {
                    yield Ok(ev);
                }
            }
            Err(e) => yield Err(e),
        }
    }
}
