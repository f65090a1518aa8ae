//! `Uploader`: puts a request's media on the upstream with the account that will run the chat,
//! remembering each upload by content hash and account until its URL expires.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::accounts::unix_ms;
use crate::conversation::{Blob, MediaSource};
use crate::media::MediaKind;
use crate::store::Store;
use crate::upstream::{Credentials, Turn, Uploaded, Upstream, UpstreamError};

/// A cached upload is not reused this close to its URL's expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// How long an upload is reused when its URL does not say when it expires.
const UNKNOWN_EXPIRY: Duration = Duration::from_secs(1800);

pub struct Uploader {
    upstream: Arc<dyn Upstream>,
    /// The shared store when there is one (`DATA_SAVE_MODE` file or redis), memory otherwise.
    cache: Arc<dyn Store>,
}

impl Uploader {
    pub fn new(upstream: Arc<dyn Upstream>, cache: Arc<dyn Store>) -> Self {
        Self { upstream, cache }
    }

    /// The uploads of one attempt: every blob of the turn, in order, uploaded with this account
    /// (or found in the cache). `cache_scope` is the account id; `None` (a caller's own token)
    /// never shares uploads with anyone.
    pub async fn uploads(
        &self,
        creds: &Credentials,
        cache_scope: Option<&str>,
        turn: &Turn,
    ) -> Result<Vec<Uploaded>, UpstreamError> {
        let mut out = Vec::new();
        for a in &turn.attachments {
            let MediaSource::Blob(blob) = &a.source else {
                continue;
            };
            out.push(self.upload(creds, cache_scope, a.kind, blob).await?);
        }
        Ok(out)
    }

    /// Uploads one blob, or reuses this account's earlier upload of the same bytes.
    pub async fn upload(
        &self,
        creds: &Credentials,
        cache_scope: Option<&str>,
        kind: MediaKind,
        blob: &Blob,
    ) -> Result<Uploaded, UpstreamError> {
        let key = cache_scope.map(|scope| format!("upload:{}:{scope}", blob.sha256));
        if let Some(key) = &key {
            match self.cache.cache_get(key).await {
                Ok(Some(v)) => match serde_json::from_str::<Uploaded>(&v) {
                    Ok(up) => {
                        tracing::debug!(sha256 = %blob.sha256, "upload cache hit");
                        return Ok(up);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring an unreadable upload cache entry");
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "upload cache unavailable; uploading again"),
            }
        }
        let size = blob.bytes.len() as u64;
        let up = self.upstream.upload(creds, kind, blob).await?;
        let now = SystemTime::now();
        tracing::info!(kind = ?kind, bytes = size, "uploaded a file to the upstream");
        if let Some(key) = key {
            let until = self
                .upstream
                .upload_expiry(&up)
                .and_then(|t| t.checked_sub(EXPIRY_MARGIN))
                .unwrap_or(now + UNKNOWN_EXPIRY);
            if until > now {
                let value = serde_json::to_string(&up).unwrap_or_default();
                if let Err(e) = self.cache.cache_put(&key, &value, unix_ms(until)).await {
                    tracing::warn!(error = %e, "could not remember the upload");
                }
            }
        }
        Ok(up)
    }
}
