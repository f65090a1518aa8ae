//! The Tongyi / Qianwen web chat (2025 form, docs/upstream.md §13) as an [`Upstream`]: cookie
//! and XSRF-token accounts, one POST per turn answering a cumulative SSE stream, sessions
//! continued by `sessionId` + `parentMsgId`. Media, sign-in and uploads are not offered here:
//! they answer `Unsupported`, so the proxy fails over to another site's account.

mod client;
mod reader;
mod wire;

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use self::client::TongyiClient;
use self::reader::{Reader, Step};
use super::qwen::stream::SseParser;
use super::qwen::{self, Shaping};
use super::{
    AnswerId, ChatHabits, Completion, Credentials, ResolvedModel, StsToken, TaskState, Turn,
    Uploaded, Upstream, UpstreamError, UpstreamModel,
};
use crate::config::{Secret, TongyiConfig, UpstreamConfig};
use crate::conversation::{self, Blob, ChatType, InvalidRequest, MediaKind};

pub struct Tongyi {
    client: TongyiClient,
    shaping: Shaping,
    habits: ChatHabits,
}

impl Tongyi {
    /// `common`: the timeouts, the global outbound proxy and the chat habits both sites share.
    pub fn new(cfg: Arc<TongyiConfig>, common: &UpstreamConfig, shaping: Shaping) -> Self {
        Self {
            client: TongyiClient::new(cfg, common),
            // The site takes no files: a long prompt stays in the message.
            shaping: Shaping {
                prompt_file_threshold: 0,
                ..shaping
            },
            habits: ChatHabits {
                cleanup: common.chat_cleanup,
                continuation: common
                    .conversation_continuation
                    .then_some(common.conversation_ttl),
                // A session opens with its first message: there is nothing to create ahead.
                prewarm: 0,
                prewarm_ttl: common.chat_prewarm_ttl,
            },
        }
    }
}

fn unsupported(what: &str) -> UpstreamError {
    UpstreamError::Unsupported(format!("{what} is not available on Tongyi accounts"))
}

#[async_trait::async_trait]
impl Upstream for Tongyi {
    /// The conversation flattened into one message, as for chat.qwen.ai (docs/upstream.md §5.3).
    fn prepare(
        &self,
        req: &conversation::Request,
        model: &ResolvedModel,
    ) -> Result<Turn, InvalidRequest> {
        qwen::prepare(req, model, &self.shaping)
    }

    fn follow_up(&self, turn: &Turn, answer: &str, correction: &str) -> Turn {
        qwen::follow_up(turn, answer, correction, 0)
    }

    fn habits(&self) -> ChatHabits {
        self.habits
    }

    async fn sign_in(
        &self,
        _email: &str,
        _password: &Secret,
        _proxy: Option<&str>,
    ) -> Result<Secret, UpstreamError> {
        Err(unsupported("signing in with a password"))
    }

    /// The site has no known endpoint to test a cookie with, and the server cannot refresh one:
    /// a refused cookie stays refused until a new one is pasted.
    async fn check_token(&self, _creds: &Credentials) -> Result<(), UpstreamError> {
        Err(UpstreamError::Auth(
            crate::accounts::TONGYI_LOGGED_OUT.to_owned(),
        ))
    }

    /// The site publishes no model list (the catalog adds the configured one).
    async fn models(
        &self,
        _creds: Option<&Credentials>,
    ) -> Result<Vec<UpstreamModel>, UpstreamError> {
        Ok(Vec::new())
    }

    /// A session is opened by its first message: the empty id says "new session".
    async fn create_chat(
        &self,
        _creds: &Credentials,
        _turn: &Turn,
    ) -> Result<String, UpstreamError> {
        Ok(String::new())
    }

    async fn complete(
        &self,
        creds: &Credentials,
        turn: &Turn,
        chat_id: &str,
        uploads: &[Uploaded],
    ) -> Result<Completion, UpstreamError> {
        if !matches!(turn.chat_type, ChatType::Text | ChatType::Search) {
            return Err(unsupported("image and video generation"));
        }
        if !turn.attachments.is_empty() || !uploads.is_empty() {
            return Err(unsupported("sending images or files"));
        }
        let mut bytes = self.client.conversation(creds, turn, chat_id).await?;
        let (answer_id, session) = (AnswerId::default(), AnswerId::default());
        let (ids, sess) = (answer_id.clone(), session.clone());
        let mut reader = Reader::new(turn.reasoning_shown, &turn.prompt);
        let events = async_stream::stream! {
            let mut parser = SseParser::default();
            let mut out = Vec::new();
            'read: loop {
                let ended = match bytes.next().await {
                    Some(Ok(chunk)) => {
                        if let Err(e) = parser.push(&chunk) {
                            yield Err(e);
                            return;
                        }
                        false
                    }
                    Some(Err(e)) => {
                        yield Err(e);
                        return;
                    }
                    None => {
                        parser.finish();
                        true
                    }
                };
                while let Some(data) = parser.next_data() {
                    let step = reader.feed(data, &mut out);
                    if let Some(id) = reader.msg_id() {
                        ids.set(id);
                    }
                    if let Some(id) = reader.session_id() {
                        sess.set(id);
                    }
                    for ev in out.drain(..) {
                        yield Ok(ev);
                    }
                    match step {
                        Ok(Step::Done) => break 'read,
                        Ok(Step::More) => {}
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                    }
                }
                if ended {
                    break;
                }
            }
            match reader.finish() {
                Ok(last) => {
                    for ev in last {
                        yield Ok(ev);
                    }
                }
                Err(e) => yield Err(e),
            }
        };
        Ok(Completion {
            events: Box::pin(events),
            answer_id,
            chat_id: session,
        })
    }

    async fn delete_chat(&self, creds: &Credentials, chat_id: &str) -> Result<(), UpstreamError> {
        if chat_id.is_empty() {
            return Ok(());
        }
        self.client.delete_session(creds, chat_id).await
    }

    async fn upload(
        &self,
        _creds: &Credentials,
        _kind: MediaKind,
        _blob: &Blob,
    ) -> Result<Uploaded, UpstreamError> {
        Err(unsupported("uploading files"))
    }

    fn upload_expiry(&self, _up: &Uploaded) -> Option<std::time::SystemTime> {
        None
    }

    async fn upload_ticket(
        &self,
        _creds: &Credentials,
        _filename: &str,
        _size: u64,
        _filetype: &str,
    ) -> Result<StsToken, UpstreamError> {
        Err(unsupported("uploading files"))
    }

    async fn fetch_generated(
        &self,
        _proxy: Option<&str>,
        _url: &str,
        _limit: usize,
    ) -> Result<(Bytes, String), UpstreamError> {
        Err(unsupported("generated media"))
    }

    async fn start_video(
        &self,
        _creds: &Credentials,
        _turn: &Turn,
        _chat_id: &str,
        _uploads: &[Uploaded],
    ) -> Result<String, UpstreamError> {
        Err(unsupported("video generation"))
    }

    async fn task_status(
        &self,
        _creds: &Credentials,
        _task: &str,
    ) -> Result<TaskState, UpstreamError> {
        Err(unsupported("video generation"))
    }
}
