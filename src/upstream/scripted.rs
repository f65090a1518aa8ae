//! An in-memory [`Upstream`] for unit tests of the proxy and the accounts: each account (known
//! by its token) answers completions from a script of its own, and every call is recorded.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{
    ChatHabits, Completion, Credentials, StsToken, TaskState, Turn, Uploaded, Upstream,
    UpstreamError, UpstreamModel,
};
use crate::config::Secret;
use crate::conversation::{self, AnswerEvent, Blob, Finish, InvalidRequest, MediaKind, TokenUsage};
use crate::upstream::ResolvedModel;

/// What one completion does.
#[derive(Clone, Debug)]
pub enum Script {
    /// The completion request itself is refused.
    Refuse(UpstreamError),
    /// The answer streams these items, in order.
    Answer(Vec<Result<AnswerEvent, UpstreamError>>),
    /// The answer starts but says nothing, ever.
    Silent,
}

impl Script {
    /// A plain answer: `text`, usage, finish.
    pub fn text(text: &str) -> Self {
        Script::Answer(vec![
            Ok(AnswerEvent::Text(text.to_owned())),
            Ok(AnswerEvent::Usage(TokenUsage {
                input: 1,
                output: 2,
                reasoning: None,
            })),
            Ok(AnswerEvent::Finish(Finish::Stop)),
        ])
    }
}

#[derive(Default)]
pub struct Scripted {
    /// Token → the scripts of its next completions (then `Script::text("ok")`).
    scripts: Mutex<HashMap<String, VecDeque<Script>>>,
    /// `"<call> <token>"`, in order.
    calls: Mutex<Vec<String>>,
}

impl Scripted {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The token an e-mail account signs in with.
    pub fn token_of(email: &str) -> String {
        format!("token-{email}")
    }

    /// Queues what the account's next completion does.
    pub fn script(&self, email: &str, script: Script) {
        self.scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(Self::token_of(email))
            .or_default()
            .push_back(script);
    }

    /// The calls made so far, as `"<call> <token>"`.
    pub fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many calls named `call` were made.
    pub fn count(&self, call: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.split(' ').next() == Some(call))
            .count()
    }

    fn record(&self, call: &str, creds: Option<&Credentials>) {
        let token = creds.map_or("-", |c| c.token.expose());
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{call} {token}"));
    }
}

#[async_trait::async_trait]
impl Upstream for Scripted {
    fn prepare(
        &self,
        req: &conversation::Request,
        model: &ResolvedModel,
    ) -> Result<Turn, InvalidRequest> {
        super::qwen::prepare(req, model, &super::qwen::Shaping::default())
    }

    fn follow_up(&self, turn: &Turn, answer: &str, correction: &str) -> Turn {
        super::qwen::follow_up(turn, answer, correction, 0)
    }

    fn habits(&self) -> ChatHabits {
        ChatHabits {
            cleanup: true,
            continuation: None,
            prewarm: 0,
            prewarm_ttl: Duration::from_secs(60),
        }
    }

    async fn sign_in(
        &self,
        email: &str,
        _password: &Secret,
        _proxy: Option<&str>,
    ) -> Result<Secret, UpstreamError> {
        self.record("sign_in", None);
        Ok(Secret::new(Self::token_of(email)))
    }

    async fn check_token(&self, creds: &Credentials) -> Result<(), UpstreamError> {
        self.record("check_token", Some(creds));
        Ok(())
    }

    async fn models(
        &self,
        creds: Option<&Credentials>,
    ) -> Result<Vec<UpstreamModel>, UpstreamError> {
        self.record("models", creds);
        Ok(vec![
            serde_json::from_str(r#"{"id":"qwen-test"}"#).expect("a model"),
        ])
    }

    async fn create_chat(
        &self,
        creds: &Credentials,
        _turn: &Turn,
    ) -> Result<String, UpstreamError> {
        self.record("create_chat", Some(creds));
        Ok(format!("chat-{}", self.count("create_chat")))
    }

    async fn complete(
        &self,
        creds: &Credentials,
        _turn: &Turn,
        _chat_id: &str,
        _uploads: &[Uploaded],
    ) -> Result<Completion, UpstreamError> {
        self.record("complete", Some(creds));
        let next = self
            .scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(creds.token.expose())
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| Script::text("ok"));
        match next {
            Script::Refuse(e) => Err(e),
            Script::Answer(items) => Ok(Completion::anonymous(Box::pin(futures::stream::iter(
                items,
            )))),
            Script::Silent => Ok(Completion::anonymous(Box::pin(futures::stream::pending()))),
        }
    }

    async fn delete_chat(&self, creds: &Credentials, _chat_id: &str) -> Result<(), UpstreamError> {
        self.record("delete_chat", Some(creds));
        Ok(())
    }

    async fn upload(
        &self,
        creds: &Credentials,
        _kind: MediaKind,
        blob: &Blob,
    ) -> Result<Uploaded, UpstreamError> {
        self.record("upload", Some(creds));
        Ok(Uploaded {
            file_id: blob.sha256.clone(),
            file_url: format!("https://files.test/{}", blob.sha256),
            file_path: blob.filename.clone(),
            uploaded_at: 0,
        })
    }

    fn upload_expiry(&self, _up: &Uploaded) -> Option<SystemTime> {
        None
    }

    async fn upload_ticket(
        &self,
        creds: &Credentials,
        _filename: &str,
        _size: u64,
        _filetype: &str,
    ) -> Result<StsToken, UpstreamError> {
        self.record("upload_ticket", Some(creds));
        Err(UpstreamError::Rejected("no upload tickets here".into()))
    }

    async fn fetch_generated(
        &self,
        _proxy: Option<&str>,
        url: &str,
        _limit: usize,
    ) -> Result<(Bytes, String), UpstreamError> {
        self.record("fetch_generated", None);
        Ok((Bytes::from(url.to_owned()), "image/png".into()))
    }

    async fn start_video(
        &self,
        creds: &Credentials,
        _turn: &Turn,
        _chat_id: &str,
        _uploads: &[Uploaded],
    ) -> Result<String, UpstreamError> {
        self.record("start_video", Some(creds));
        Ok("task-1".into())
    }

    async fn task_status(
        &self,
        creds: &Credentials,
        _task: &str,
    ) -> Result<TaskState, UpstreamError> {
        self.record("task_status", Some(creds));
        Ok(TaskState::Succeeded {
            url: "https://cdn.test/v.mp4".into(),
        })
    }
}
