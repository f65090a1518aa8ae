//! The SSE response body: typed events written as `data: …` / `: comment` blocks, with the
//! events that are ready together gathered into one write, and keep-alive comments while the
//! source is silent.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use futures::{FutureExt, Stream, StreamExt};

/// One SSE event: a `data:` line, a named event, or a comment.
pub enum SseEvent {
    /// `data: <payload>` (the payload never holds a newline: it is compact JSON or `[DONE]`).
    Data(String),
    /// `event: <name>` and `data: <payload>` (Anthropic's streams name every event).
    Named(&'static str, String),
    /// `: <text>`.
    Comment(&'static str),
}

impl SseEvent {
    fn write_to(&self, buf: &mut BytesMut) {
        match self {
            SseEvent::Data(d) => {
                buf.put_slice(b"data: ");
                buf.put_slice(d.as_bytes());
            }
            SseEvent::Named(name, d) => {
                buf.put_slice(b"event: ");
                buf.put_slice(name.as_bytes());
                buf.put_slice(b"\ndata: ");
                buf.put_slice(d.as_bytes());
            }
            SseEvent::Comment(c) => {
                buf.put_slice(b": ");
                buf.put_slice(c.as_bytes());
            }
        }
        buf.put_slice(b"\n\n");
    }
}

const KEEP_ALIVE: SseEvent = SseEvent::Comment("keep-alive");

/// A surface encoder's `(event name, JSON)` pairs as named SSE events (Anthropic's and the
/// Responses stream name every event).
pub fn named<'a>(out: &'a mut Vec<(&'static str, String)>) -> impl Iterator<Item = SseEvent> + 'a {
    out.drain(..)
        .map(|(name, data)| SseEvent::Named(name, data))
}

/// Reads what follows a finished answer: the proxy filing its chat for the next turn. A
/// surface that writes its own last event awaits this first, so that the client's next
/// request finds the chat.
pub async fn rest_of_answer(events: &mut crate::proxy::AnswerStream) {
    use futures::StreamExt as _;
    while events.next().await.is_some() {}
}

/// A write is sent once it holds this much, even if more events are ready.
const WRITE_AT: usize = 16 * 1024;
/// Scheduler rounds a write waits at most for more events.
const GATHER_ROUNDS: usize = 64;
/// Scheduler rounds in a row that bring nothing before the write is sent. One is not enough:
/// the upstream connection's task often needs a second round to hand over the next chunk (with
/// 1, a 200-event stream at C = 1 cost 2.5–2.8 ms of CPU instead of about 1 ms in the bench).
const IDLE_ROUNDS: usize = 3;

/// Appends the events that are ready, or become ready while this task lets the others run,
/// to `buf`; true when the source has ended.
///
/// An upstream HTTP/1 body is handed over one chunk at a time by its connection task, often
/// one event per chunk, so "what is ready now" is a single event even when dozens wait in the
/// connection's buffer. Letting the scheduler run a few more rounds before writing gathers
/// them into one write (one system call for about 30 events in the benchmark, instead of one
/// each). `IDLE_ROUNDS` rounds in a row that bring nothing send the write, so a source that is
/// really waiting costs only those few scheduler rounds of delay (microseconds).
async fn gather<S, B>(batches: &mut std::pin::Pin<Box<S>>, buf: &mut BytesMut) -> bool
where
    S: Stream<Item = B> + Send,
    B: IntoIterator<Item = SseEvent>,
{
    let mut idle = 0;
    for round in 0..=GATHER_ROUNDS {
        let mut got = false;
        while buf.len() < WRITE_AT {
            let Some(more) = batches.next().now_or_never() else {
                break;
            };
            let Some(events) = more else { return true };
            got = true;
            for e in events {
                e.write_to(buf);
            }
        }
        idle = if got || round == 0 { 0 } else { idle + 1 };
        if idle == IDLE_ROUNDS || buf.len() >= WRITE_AT || round == GATHER_ROUNDS {
            break;
        }
        yield_once().await;
    }
    false
}

/// Lets the tasks already queued on this thread run before this one goes on. Unlike
/// `tokio::task::yield_now`, which holds the wake-up back until the runtime has polled its I/O
/// driver (a system call each round), this re-queues the task at once; the runtime still polls
/// I/O every few dozen tasks.
fn yield_once() -> impl std::future::Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
}

/// A `text/event-stream` response from batches of events. Batches that are ready together go
/// out as one write; after `keepalive` of silence, `idle` is sent (a keep-alive comment, or the
/// surface's own ping event).
pub fn response<S, B>(batches: S, keepalive: Duration, idle: SseEvent) -> Response
where
    S: Stream<Item = B> + Send + 'static,
    B: IntoIterator<Item = SseEvent> + Send + 'static,
{
    let body = async_stream::stream! {
        let mut batches = Box::pin(batches);
        let mut buf = BytesMut::with_capacity(4096);
        let silence = tokio::time::sleep(keepalive);
        tokio::pin!(silence);
        loop {
            tokio::select! {
                // Events first: the keep-alive timer only matters while nothing comes.
                biased;
                next = batches.next() => {
                    let Some(events) = next else { break };
                    for e in events {
                        e.write_to(&mut buf);
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
                    idle.write_to(&mut buf);
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
pub fn keep_alive() -> SseEvent {
    KEEP_ALIVE
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::{Stream, StreamExt};

    use super::{SseEvent, response};

    /// A source fed by another task through a one-slot channel, the way an upstream HTTP/1
    /// body arrives, with `pause` between items.
    fn fed(items: usize, pause: Duration) -> impl Stream<Item = Vec<SseEvent>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<SseEvent>>(1);
        tokio::spawn(async move {
            for i in 0..items {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                if tx.send(vec![SseEvent::Data(i.to_string())]).await.is_err() {
                    return;
                }
            }
        });
        received(rx)
    }

    fn received(
        rx: tokio::sync::mpsc::Receiver<Vec<SseEvent>>,
    ) -> impl Stream<Item = Vec<SseEvent>> + Send + 'static {
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) })
    }

    /// The body's writes, as sent.
    async fn writes(source: impl Stream<Item = Vec<SseEvent>> + Send + 'static) -> Vec<String> {
        let body = response(source, Duration::from_secs(600), super::keep_alive()).into_body();
        body.into_data_stream()
            .map(|chunk| String::from_utf8(chunk.unwrap().to_vec()).unwrap())
            .collect()
            .await
    }

    fn events(range: std::ops::Range<usize>) -> String {
        range
            .map(|i| ["data: ", &i.to_string(), "\n\n"].concat())
            .collect()
    }

    #[tokio::test]
    async fn events_handed_over_one_at_a_time_share_one_write() {
        let got = writes(fed(40, Duration::ZERO)).await;
        // The first event is written as soon as it is read, the next ones gather behind it.
        assert_eq!(got.concat(), events(0..40));
        assert!(got.len() <= 2, "{} writes: {got:?}", got.len());
    }

    #[tokio::test]
    async fn a_source_that_really_waits_gets_a_write_per_event() {
        let got = writes(fed(3, Duration::from_millis(30))).await;
        assert_eq!(got, ["data: 0\n\n", "data: 1\n\n", "data: 2\n\n"]);
    }

    #[tokio::test]
    async fn a_write_stops_growing_at_its_limit() {
        let big = "x".repeat(1000);
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<SseEvent>>(64);
        for _ in 0..40 {
            tx.send(vec![SseEvent::Data(big.clone())]).await.unwrap();
        }
        drop(tx);
        let got = writes(received(rx)).await;
        assert_eq!(got.concat().len(), 40 * (big.len() + 8));
        assert!(
            got.iter()
                .all(|w| w.len() < super::WRITE_AT + big.len() + 8)
        );
        assert_eq!(
            got.len(),
            3,
            "{:?}",
            got.iter().map(String::len).collect::<Vec<_>>()
        );
    }
}
