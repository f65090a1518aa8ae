//! The web chats accounts belong to (`Site`), and `Sites`: one [`Upstream`] per site behind
//! one door, each call going to the upstream of the credentials' site. The proxy, the account
//! manager and the media uploader hold a `Sites` and never name a site themselves.

use std::sync::Arc;

use bytes::Bytes;

use super::{
    ChatHabits, Completion, Credentials, ResolvedModel, StsToken, TaskState, Turn, Uploaded,
    Upstream, UpstreamError, UpstreamModel,
};
use crate::config::Secret;
use crate::conversation::{self, Blob, InvalidRequest, MediaKind};

/// A web chat an account belongs to.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    /// chat.qwen.ai (docs/upstream.md §1–§11).
    #[default]
    Qwen,
    /// The domestic Tongyi / Qianwen web chat (docs/upstream.md §13).
    Tongyi,
}

impl Site {
    pub fn as_str(self) -> &'static str {
        match self {
            Site::Qwen => "qwen",
            Site::Tongyi => "tongyi",
        }
    }
}

/// One upstream per site; the first one registered is the primary (it prepares turns for
/// models every site serves, and lists models when no account is at hand).
#[derive(Clone)]
pub struct Sites {
    all: Vec<(Site, Arc<dyn Upstream>)>,
}

impl Sites {
    pub fn new(site: Site, primary: Arc<dyn Upstream>) -> Self {
        Self {
            all: vec![(site, primary)],
        }
    }

    /// Adds (or replaces) the upstream of `site`.
    #[must_use]
    pub fn with(mut self, site: Site, upstream: Arc<dyn Upstream>) -> Self {
        self.all.retain(|(s, _)| *s != site);
        self.all.push((site, upstream));
        self
    }

    fn primary(&self) -> &Arc<dyn Upstream> {
        &self.all[0].1
    }

    /// The upstream of `site`.
    pub fn get(&self, site: Site) -> Result<&Arc<dyn Upstream>, UpstreamError> {
        self.all
            .iter()
            .find(|(s, _)| *s == site)
            .map(|(_, u)| u)
            .ok_or_else(|| {
                UpstreamError::Unsupported(format!("no upstream is set up for {}", site.as_str()))
            })
    }

    fn of(&self, creds: &Credentials) -> Result<&Arc<dyn Upstream>, UpstreamError> {
        self.get(creds.site)
    }
}

#[async_trait::async_trait]
impl Upstream for Sites {
    /// Prepared by the first site that serves the model (the turn is the same conversation on
    /// every site: each upstream flattens it alike).
    fn prepare(
        &self,
        req: &conversation::Request,
        model: &ResolvedModel,
    ) -> Result<Turn, InvalidRequest> {
        let upstream = model
            .sites
            .first()
            .and_then(|s| self.get(*s).ok())
            .unwrap_or_else(|| self.primary());
        upstream.prepare(req, model)
    }

    fn follow_up(&self, turn: &Turn, answer: &str, correction: &str) -> Turn {
        let upstream = turn
            .sites
            .first()
            .and_then(|s| self.get(*s).ok())
            .unwrap_or_else(|| self.primary());
        upstream.follow_up(turn, answer, correction)
    }

    fn habits(&self) -> ChatHabits {
        self.primary().habits()
    }

    /// Only the primary site signs in with e-mail and password.
    async fn sign_in(
        &self,
        email: &str,
        password: &Secret,
        proxy: Option<&str>,
    ) -> Result<Secret, UpstreamError> {
        self.primary().sign_in(email, password, proxy).await
    }

    async fn check_token(&self, creds: &Credentials) -> Result<(), UpstreamError> {
        self.of(creds)?.check_token(creds).await
    }

    /// The primary site's list (with an account of its own, else none): the other sites'
    /// models are configured, not fetched (the catalog adds them).
    async fn models(
        &self,
        creds: Option<&Credentials>,
    ) -> Result<Vec<UpstreamModel>, UpstreamError> {
        let own = creds.filter(|c| c.site == self.all[0].0);
        self.primary().models(own).await
    }

    async fn create_chat(&self, creds: &Credentials, turn: &Turn) -> Result<String, UpstreamError> {
        self.of(creds)?.create_chat(creds, turn).await
    }

    async fn complete(
        &self,
        creds: &Credentials,
        turn: &Turn,
        chat_id: &str,
        uploads: &[Uploaded],
    ) -> Result<Completion, UpstreamError> {
        self.of(creds)?
            .complete(creds, turn, chat_id, uploads)
            .await
    }

    async fn delete_chat(&self, creds: &Credentials, chat_id: &str) -> Result<(), UpstreamError> {
        self.of(creds)?.delete_chat(creds, chat_id).await
    }

    async fn upload(
        &self,
        creds: &Credentials,
        kind: MediaKind,
        blob: &Blob,
    ) -> Result<Uploaded, UpstreamError> {
        self.of(creds)?.upload(creds, kind, blob).await
    }

    fn upload_expiry(&self, up: &Uploaded) -> Option<std::time::SystemTime> {
        self.primary().upload_expiry(up)
    }

    async fn upload_ticket(
        &self,
        creds: &Credentials,
        filename: &str,
        size: u64,
        filetype: &str,
    ) -> Result<StsToken, UpstreamError> {
        self.of(creds)?
            .upload_ticket(creds, filename, size, filetype)
            .await
    }

    async fn fetch_generated(
        &self,
        proxy: Option<&str>,
        url: &str,
        limit: usize,
    ) -> Result<(Bytes, String), UpstreamError> {
        self.primary().fetch_generated(proxy, url, limit).await
    }

    async fn start_video(
        &self,
        creds: &Credentials,
        turn: &Turn,
        chat_id: &str,
        uploads: &[Uploaded],
    ) -> Result<String, UpstreamError> {
        self.of(creds)?
            .start_video(creds, turn, chat_id, uploads)
            .await
    }

    async fn task_status(
        &self,
        creds: &Credentials,
        task: &str,
    ) -> Result<TaskState, UpstreamError> {
        self.of(creds)?.task_status(creds, task).await
    }
}
