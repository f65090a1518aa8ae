//! A response body that keeps something (a permit, an open-request count) until the body has
//! been sent to its end or dropped: a stream's request lasts until its last byte.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};

/// `body`, keeping `guard` alive as long as the body is.
pub fn hold<G: Send + Unpin + 'static>(body: Body, guard: G) -> Body {
    Body::new(Held {
        inner: body,
        _guard: guard,
    })
}

struct Held<G> {
    inner: Body,
    _guard: G,
}

impl<G: Send + Unpin + 'static> HttpBody for Held<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
