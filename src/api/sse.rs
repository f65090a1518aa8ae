//! The SSE response body: typed frames written as `data: …` / `: comment` blocks, with the
//! frames that are ready together gathered into one write, and keep-alive comments while the
//! source is silent.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use futures::{FutureExt, Stream, StreamExt};

/// One SSE frame.
pub enum Frame {
    /// `data: <payload>` (the payload never holds a newline: it is compact JSON or `[DONE]`).
    Data(String),
    /// `: <text>`.
    Comment(&'static str),
}

impl Frame {
    fn write_to(&self, buf: &mut BytesMut) {
        match self {
            Frame::Data(d) => {
                buf.put_slice(b"data: ");
                buf.put_slice(d.as_bytes());
            }
            Frame::Comment(c) => {
                buf.put_slice(b": ");
                buf.put_slice(c.as_bytes());
            }
        }
        buf.put_slice(b"\n\n");
    }
}

const KEEP_ALIVE: Frame = Frame::Comment("keep-alive");

/// A write is sent once it holds this much, even if more frames are ready.
const WRITE_AT: usize = 16 * 1024;
/// Scheduler rounds a write waits at most for more frames.
const GATHER_ROUNDS: usize = 64;
/// Scheduler rounds in a row that bring nothing before the write is sent.
const IDLE_ROUNDS: usize = 3;

/// Appends the frames that are ready, or become ready while this task lets the others run,
/// to `buf`; true when the source has ended.
///
/// An upstream HTTP/1 body is handed over one chunk at a time by its connection task, often
/// one event per chunk, so "what is ready now" is a single event even when dozens wait in the
/// connection's buffer. Letting the scheduler run a few more rounds before writing gathers
/// them into one write (one system call for about 30 events in the benchmark, instead of one
/// each). `IDLE_ROUNDS` rounds in a row that bring nothing send the write, so a source that is
/// really waiting costs only those few scheduler rounds of delay (microseconds).
async fn gather<S>(batches: &mut std::pin::Pin<Box<S>>, buf: &mut BytesMut) -> bool
where
    S: Stream<Item = Vec<Frame>> + Send,
{
    let mut idle = 0;
    for round in 0..=GATHER_ROUNDS {
        let mut got = false;
        while let Some(more) = batches.next().now_or_never() {
            let Some(frames) = more else { return true };
            got = true;
            for f in &frames {
                f.write_to(buf);
            }
        }
        idle = if got || round == 0 { 0 } else { idle + 1 };
        if idle == IDLE_ROUNDS || buf.len() >= WRITE_AT || round == GATHER_ROUNDS {
            break;
        }
        tokio::task::yield_now().await;
    }
    false
}

/// A `text/event-stream` response from batches of frames. Batches that are ready together go
/// out as one write; after `keepalive` of silence a keep-alive comment is sent.
pub fn response<S>(batches: S, keepalive: Duration) -> Response
where
    S: Stream<Item = Vec<Frame>> + Send + 'static,
{
    let body = async_stream::stream! {
        let mut batches = Box::pin(batches);
        let mut buf = BytesMut::with_capacity(4096);
        let silence = tokio::time::sleep(keepalive);
        tokio::pin!(silence);
        loop {
            tokio::select! {
                next = batches.next() => {
                    let Some(frames) = next else { break };
                    for f in &frames {
                        f.write_to(&mut buf);
                    }
                    let ended = gather(&mut batches, &mut buf).await;
                    silence.as_mut().reset(tokio::time::Instant::now() + keepalive);
                    if !buf.is_empty() {
                        yield Ok::<Bytes, Infallible>(buf.split().freeze());
                    }
                    if ended {
                        break;
                    }
                }
                () = &mut silence => {
                    KEEP_ALIVE.write_to(&mut buf);
                    silence.as_mut().reset(tokio::time::Instant::now() + keepalive);
                    yield Ok(buf.split().freeze());
                }
            }
        }
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The keep-alive comment on its own, for a stream that starts before its first content.
pub fn keep_alive() -> Frame {
    KEEP_ALIVE
}
