//! `Uploader`: puts a request's media on chat.qwen.ai with the account that will run the chat
//! (STS credentials, signed PUT, parse step for documents), remembering each upload by content
//! hash and account until its pre-signed URL expires.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::accounts::unix_ms;
use crate::chat::{Blob, ChatRequest, MediaSource};
use crate::media::MediaKind;
use crate::store::Store;
use crate::upstream::files::upload_expiry;
use crate::upstream::payload::{self, FileEntry, Uploaded, WireFile};
use crate::upstream::{Credentials, QwenClient, UpstreamError};

/// A cached upload is not reused this close to its URL's expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// How long an upload is reused when its URL does not say when it expires.
const UNKNOWN_EXPIRY: Duration = Duration::from_secs(1800);

pub struct Uploader {
    client: Arc<QwenClient>,
    /// The shared store when there is one (`DATA_SAVE_MODE` file or redis), memory otherwise.
    cache: Arc<dyn Store>,
}

impl Uploader {
    pub fn new(client: Arc<QwenClient>, cache: Arc<dyn Store>) -> Self {
        Self { client, cache }
    }

    /// The `files[]` of one attempt: every blob uploaded with this account (or found in the
    /// cache), plus image-edit URLs. `cache_scope` is the account id; `None` (a caller's own
    /// token) never shares uploads with anyone.
    pub async fn files(
        &self,
        creds: &Credentials,
        cache_scope: Option<&str>,
        req: &ChatRequest,
    ) -> Result<Vec<WireFile>, UpstreamError> {
        let mut out = payload::url_files(req);
        for a in &req.attachments {
            let MediaSource::Blob(blob) = &a.source else {
                continue;
            };
            let up = self.upload(creds, cache_scope, a.kind, blob).await?;
            out.push(WireFile::Uploaded(Box::new(FileEntry::new(
                &up,
                a.kind,
                &blob.filename,
                &blob.mime,
                blob.bytes.len() as u64,
            ))));
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
        let sts = self
            .client
            .sts_token(creds, &blob.filename, size, kind.sts_filetype())
            .await?;
        self.client
            .put_object(creds, &sts, blob.bytes.clone(), &blob.mime)
            .await?;
        if kind == MediaKind::Document {
            self.client.parse_file(creds, &sts.file_id).await?;
        }
        let now = SystemTime::now();
        let up = Uploaded {
            file_id: sts.file_id.clone(),
            file_url: sts.file_url.clone(),
            file_path: sts.file_path.clone(),
            uploaded_at: unix_ms(now),
        };
        tracing::info!(kind = ?kind, bytes = size, "uploaded a file to the upstream");
        if let Some(key) = key {
            let until = upload_expiry(&sts.file_url)
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
