//! `Qwen`: chat.qwen.ai as an [`Upstream`], on top of its HTTP client.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::payload::{self, FileEntry, Uploaded, WireFile};
use super::stream::{self, DecodeOptions};
use super::{QwenClient, Shaping, files};
use crate::accounts::unix_ms;
use crate::config::{Secret, StreamMode};
use crate::conversation::{self, Blob, InvalidRequest, MediaKind, MediaSource};
use crate::upstream::ResolvedModel;
use crate::upstream::{
    AnswerId, ChatHabits, Completion, Credentials, StsToken, TaskState, Turn, Upstream,
    UpstreamError, UpstreamModel,
};

pub struct Qwen {
    client: Arc<QwenClient>,
    stream_mode: StreamMode,
    shaping: Shaping,
}

impl Qwen {
    pub fn new(client: Arc<QwenClient>, stream_mode: StreamMode, shaping: Shaping) -> Self {
        Self {
            client,
            stream_mode,
            shaping,
        }
    }

    /// The `files[]` of one attempt: image-edit URLs, then each blob with its upload.
    fn files(turn: &Turn, uploads: &[Uploaded]) -> Vec<WireFile> {
        let mut out = payload::url_files(turn);
        let blobs = turn.attachments.iter().filter_map(|a| match &a.source {
            MediaSource::Blob(b) => Some((a.kind, b)),
            MediaSource::Url(_) => None,
        });
        for ((kind, blob), up) in blobs.zip(uploads) {
            out.push(WireFile::Uploaded(Box::new(FileEntry::new(
                up,
                kind,
                &blob.filename,
                &blob.mime,
                blob.bytes.len() as u64,
            ))));
        }
        out
    }
}

#[async_trait::async_trait]
impl Upstream for Qwen {
    fn prepare(
        &self,
        req: &conversation::Request,
        model: &ResolvedModel,
    ) -> Result<Turn, InvalidRequest> {
        super::prepare::prepare(req, model, &self.shaping)
    }

    fn follow_up(&self, turn: &Turn, answer: &str, correction: &str) -> Turn {
        super::prepare::follow_up(turn, answer, correction, self.shaping.prompt_file_threshold)
    }

    fn habits(&self) -> ChatHabits {
        let cfg = self.client.config();
        ChatHabits {
            cleanup: cfg.chat_cleanup,
            continuation: cfg
                .conversation_continuation
                .then_some(cfg.conversation_ttl),
            prewarm: cfg.chat_prewarm,
            prewarm_ttl: cfg.chat_prewarm_ttl,
        }
    }

    async fn sign_in(
        &self,
        email: &str,
        password: &Secret,
        proxy: Option<&str>,
    ) -> Result<Secret, UpstreamError> {
        self.client.sign_in(email, password, proxy).await
    }

    async fn check_token(&self, creds: &Credentials) -> Result<(), UpstreamError> {
        self.client.check_token(creds).await
    }

    async fn models(
        &self,
        creds: Option<&Credentials>,
    ) -> Result<Vec<UpstreamModel>, UpstreamError> {
        self.client.models(creds).await
    }

    async fn create_chat(&self, creds: &Credentials, turn: &Turn) -> Result<String, UpstreamError> {
        self.client.create_chat(creds, turn).await
    }

    async fn complete(
        &self,
        creds: &Credentials,
        turn: &Turn,
        chat_id: &str,
        uploads: &[Uploaded],
    ) -> Result<Completion, UpstreamError> {
        let files = Self::files(turn, uploads);
        let bytes = self.client.complete(creds, turn, chat_id, &files).await?;
        let opts = DecodeOptions {
            reasoning_visible: turn.reasoning_shown,
            stream_mode: self.stream_mode,
        };
        let answer_id = AnswerId::default();
        Ok(Completion {
            events: Box::pin(stream::answers(bytes, opts, answer_id.clone())),
            answer_id,
            chat_id: AnswerId::default(),
        })
    }

    async fn delete_chat(&self, creds: &Credentials, chat_id: &str) -> Result<(), UpstreamError> {
        self.client.delete_chat(creds, chat_id).await
    }

    async fn upload(
        &self,
        creds: &Credentials,
        kind: MediaKind,
        blob: &Blob,
    ) -> Result<Uploaded, UpstreamError> {
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
        Ok(Uploaded {
            file_id: sts.file_id.clone(),
            file_url: sts.file_url.clone(),
            file_path: sts.file_path.clone(),
            uploaded_at: unix_ms(SystemTime::now()),
        })
    }

    fn upload_expiry(&self, up: &Uploaded) -> Option<SystemTime> {
        files::upload_expiry(&up.file_url)
    }

    async fn upload_ticket(
        &self,
        creds: &Credentials,
        filename: &str,
        size: u64,
        filetype: &str,
    ) -> Result<StsToken, UpstreamError> {
        self.client.sts_token(creds, filename, size, filetype).await
    }

    async fn fetch_generated(
        &self,
        proxy: Option<&str>,
        url: &str,
        limit: usize,
    ) -> Result<(Bytes, String), UpstreamError> {
        self.client.fetch_generated(proxy, url, limit).await
    }

    async fn start_video(
        &self,
        creds: &Credentials,
        turn: &Turn,
        chat_id: &str,
        uploads: &[Uploaded],
    ) -> Result<String, UpstreamError> {
        let files = Self::files(turn, uploads);
        self.client.start_video(creds, turn, chat_id, &files).await
    }

    async fn task_status(
        &self,
        creds: &Credentials,
        task: &str,
    ) -> Result<TaskState, UpstreamError> {
        self.client.task_status(creds, task).await
    }
}
