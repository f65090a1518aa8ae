//! Upstream SSE → internal answer events: an SSE parser feeding a named decoder state machine.

mod decoder;
mod search;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt, stream};

pub use decoder::{DecodeOptions, Decoder};

use crate::chat::AnswerEvent;
use crate::upstream::{ByteStream, UpstreamError};

/// Decodes a completion's raw bytes into answer events, ending with `Done` or one error.
pub fn answers(
    bytes: ByteStream,
    opts: DecodeOptions,
) -> impl Stream<Item = Result<AnswerEvent, UpstreamError>> + Send {
    // The site may end without the final blank line: a trailing one makes the parser flush
    // the last event instead of dropping it at EOF.
    let bytes = bytes.chain(stream::once(async { Ok(Bytes::from_static(b"\n\n")) }));
    let events = bytes.eventsource();
    async_stream::stream! {
        let mut decoder = Decoder::new(opts);
        futures::pin_mut!(events);
        while let Some(item) = events.next().await {
            let data = match item {
                Ok(ev) => ev.data,
                Err(EventStreamError::Transport(e)) => {
                    yield Err(e);
                    return;
                }
                Err(e) => {
                    yield Err(UpstreamError::Transient(format!("unreadable event stream: {e}")));
                    return;
                }
            };
            match decoder.feed(&data) {
                Ok(step) => {
                    for ev in step.events {
                        yield Ok(ev);
                    }
                    if step.done {
                        break;
                    }
                }
                Err(e) => {
                    yield Err(e);
                    return;
                }
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
