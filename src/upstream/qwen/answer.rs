//! An upstream answer from either HTTP client (reqwest, or our own in [`super::h1`]): its
//! status, content type and body, read piece by piece.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::Response;

use super::{UpstreamError, content_type, h1};

/// An answer from either HTTP client.
pub(super) enum Answer {
    Pooled(Response),
    Own(h1::Response),
}

impl From<Response> for Answer {
    fn from(r: Response) -> Self {
        Answer::Pooled(r)
    }
}

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::Pooled(r) => r.status().as_u16(),
            Answer::Own(r) => r.status,
        }
    }

    pub fn content_type(&self) -> String {
        let headers = match self {
            Answer::Pooled(r) => r.headers(),
            Answer::Own(r) => &r.headers,
        };
        content_type(headers)
    }

    pub fn into_body(self) -> Body {
        match self {
            Answer::Pooled(r) => Body::Pooled(Box::pin(r.bytes_stream())),
            Answer::Own(r) => Body::Own(r.body),
        }
    }
}

/// An answer's body from either HTTP client, read piece by piece.
pub(super) enum Body {
    Pooled(Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>),
    Own(h1::Body),
}

impl Body {
    /// The next piece; `None` at the end. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Bytes, UpstreamError>> {
        match self {
            Body::Pooled(s) => s
                .next()
                .await
                .map(|r| r.map_err(|e| UpstreamError::from_reqwest(&e))),
            Body::Own(b) => b
                .next()
                .await
                .map(|r| r.map_err(|e| UpstreamError::from_h1(&e))),
        }
    }

    pub async fn text(mut self) -> Result<String, UpstreamError> {
        let mut all = Vec::new();
        while let Some(piece) = self.next().await {
            all.extend_from_slice(&piece?);
        }
        Ok(match String::from_utf8(all) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }
}
