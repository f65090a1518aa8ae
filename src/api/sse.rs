//! The SSE response body: typed frames written as `data: …` / `: comment` blocks, with every
//! frame that is already available sent in one write, and keep-alive comments while the
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
                    // Whatever else is ready joins this write.
                    let mut ended = false;
                    while let Some(more) = batches.next().now_or_never() {
                        let Some(frames) = more else {
                            ended = true;
                            break;
                        };
                        for f in &frames {
                            f.write_to(&mut buf);
                        }
                    }
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
