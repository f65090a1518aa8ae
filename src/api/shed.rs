//! Load shedding: beyond `MAX_CONCURRENT_REQUESTS` requests in flight, new ones get 503 with
//! `Retry-After` at once; those in flight (streams included, until their last byte) go on.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::AppError;

#[derive(Clone)]
pub struct Limit(pub Arc<Semaphore>);

pub async fn shed(
    State(limit): State<Limit>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let Ok(permit) = Arc::clone(&limit.0).try_acquire_owned() else {
        tracing::debug!("load shed");
        return Err(AppError::Overloaded);
    };
    let resp = next.run(req).await;
    Ok(resp.map(|inner| {
        Body::new(Held {
            inner,
            _permit: permit,
        })
    }))
}

/// A body that keeps its request's permit until it is finished or dropped.
struct Held {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for Held {
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
