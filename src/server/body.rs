//! Response body wrappers: one that keeps something (a permit, an open-request count) until the
//! body has been sent to its end or dropped, so that a stream's request lasts until its last
//! byte; one that sends the body inside the request's span.

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

/// `body`, sent inside `span`: what is logged while it is produced (a stream's upstream
/// errors, its end) carries the request's fields.
pub fn in_span(body: Body, span: tracing::Span) -> Body {
    Body::new(InSpan { inner: body, span })
}

struct InSpan {
    inner: Body,
    span: tracing::Span,
}

impl HttpBody for InSpan {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
