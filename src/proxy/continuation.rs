//! Conversations that continue the upstream chat of an earlier answer (docs/upstream.md §5.5):
//! after an answer, its chat and id are filed in the store under the key of the history
//! through that answer; a later request whose history minus its new tail has that key leases
//! the same account and sends only the tail into that chat. Chats filed this way outlive their
//! attempt and are deleted when their entries expire (the sweep) or are replaced.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::{Stream, StreamExt};

use super::{ChatCleanup, Progress, Proxy, ProxyError, RunContext};
use crate::accounts::{Account, Lease};
use crate::conversation::thread::{Keys, Scope};
use crate::conversation::{self, AnswerEvent, Message, Part, Role, ToolCall};
use crate::store::ThreadEntry;
use crate::upstream::Turn;

/// The continuation data of one request: its history keys (see [`RunContext::continuing`]).
#[derive(Clone, Debug)]
pub struct Continuation {
    keys: Keys,
}

impl RunContext {
    /// Opts a request into continuation: `surface` names the client surface (part of the key,
    /// so that surfaces never share chats), `conv` is the request as the surface translated
    /// it and `turn` what [`Proxy::prepare`] made of it. Passthrough requests stay out (the
    /// caller's own token is no pool account to lease again), and so do generation turns.
    #[must_use]
    pub fn continuing(
        mut self,
        surface: &'static str,
        conv: &conversation::Request,
        turn: &Turn,
    ) -> Self {
        if self.passthrough.is_some() || turn.chat_type.feature().is_some() {
            return self;
        }
        let scope = Scope {
            surface,
            model: &turn.model,
            tools: &conv.options.tools,
            tool_choice: &conv.options.tool_choice,
            caller: self.key_id.as_deref(),
        };
        self.continuation = Some(Continuation {
            keys: conversation::thread::keys(&scope, &conv.messages),
        });
        self
    }
}

/// A continuation found for a request: the account leased and the turn to send.
pub(super) struct Resume {
    pub lease: Option<Lease>,
    pub entry: ThreadEntry,
    pub turn: Turn,
}

/// An answered chat the attempt hands over to be filed. Until it is filed, a chat the attempt
/// created is deleted when this is dropped.
#[derive(Debug)]
pub(super) struct Kept {
    pub account_id: String,
    pub chat_id: String,
    pub response_id: String,
    /// The chat's deletion, for a chat created by this attempt.
    pub cleanup: Option<ChatCleanup>,
}

/// Sweep period bounds: a quarter of the TTL, within these.
const SWEEP_MIN: Duration = Duration::from_millis(50);
const SWEEP_MAX: Duration = Duration::from_secs(60);
/// Chats claimed per sweep round.
const SWEEP_BATCH: usize = 100;

impl Proxy {
    /// Whether answers of this request are kept to continue.
    pub(super) fn keeps(&self, ctx: &RunContext) -> bool {
        ctx.continuation.is_some() && self.upstream.habits().continuation.is_some()
    }

    /// The continuation for a request, when its history minus its tail has an entry whose
    /// account is usable now: that account leased, and the tail as the turn to send.
    pub(super) async fn resumable(&self, req: &Turn, ctx: &RunContext) -> Option<Resume> {
        // A follow-up round, or a conversation with no answer before its tail, has no tail.
        if !self.keeps(ctx) || req.tail.is_none() {
            return None;
        }
        let key = ctx.continuation.as_ref()?.keys.lookup.clone()?;
        let entry = match self.accounts.store().get_thread(key.as_str()).await {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                self.metrics.continuation_fallback("not_found");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "conversation lookup failed; starting a new chat");
                self.metrics.continuation_fallback("lookup_failed");
                return None;
            }
        };
        let Some(turn) = req.continuing(&entry.response_id) else {
            self.metrics.continuation_fallback("not_continuable");
            return None;
        };
        let only = |a: &Account| a.id != entry.account_id;
        match self.accounts.lease(&req.model, None, &only).await {
            Ok(lease) => {
                tracing::debug!(account = %entry.account_id, "continuing the conversation's chat");
                Some(Resume {
                    lease: Some(lease),
                    entry,
                    turn,
                })
            }
            Err(e) => {
                tracing::info!(account = %entry.account_id, reason = ?e, "the conversation's account is not usable; starting a new chat");
                self.metrics.continuation_fallback("account_unusable");
                None
            }
        }
    }

    /// Passes `attempts` on, noting the answer the client gets; a kept chat is filed under the
    /// key of the history through that answer before the stream ends.
    pub(super) fn remember(
        self: &Arc<Self>,
        attempts: impl Stream<Item = Result<Progress, ProxyError>> + Send + 'static,
        ctx: &RunContext,
    ) -> impl Stream<Item = Result<Progress, ProxyError>> + Send + 'static {
        let this = Arc::clone(self);
        let continuation = ctx.continuation.clone();
        async_stream::stream! {
            futures::pin_mut!(attempts);
            let mut answer = AnswerNote::default();
            while let Some(item) = attempts.next().await {
                match item {
                    Ok(Progress::Kept(kept)) => {
                        if let Some(c) = &continuation {
                            this.file(c, &answer.message(), kept).await;
                        }
                    }
                    Ok(Progress::Event(ev)) => {
                        answer.note(&ev);
                        yield Ok(Progress::Event(ev));
                    }
                    other => yield other,
                }
            }
        }
    }

    async fn file(&self, c: &Continuation, answer: &Message, mut kept: Kept) {
        let Some(ttl) = self.upstream.habits().continuation else {
            return;
        };
        let mut through = c.keys.through.clone();
        through.push(answer);
        let key = through.key();
        let entry = ThreadEntry {
            account_id: kept.account_id.clone(),
            chat_id: kept.chat_id.clone(),
            response_id: kept.response_id.clone(),
        };
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let expires = crate::store::now_ms().saturating_add(ttl_ms);
        match self
            .accounts
            .store()
            .put_thread(key.as_str(), &entry, expires)
            .await
        {
            Ok(filed) => {
                // The chat is the store's now.
                if let Some(mut cleanup) = kept.cleanup.take() {
                    cleanup.disarm();
                }
                if let Some(gone) = filed.orphaned {
                    self.delete_kept(&gone.account_id, gone.chat_id);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not file the conversation; its chat is not kept");
            }
        }
    }

    /// Deletes a kept chat with its account's credentials (when `CHAT_CLEANUP` is on and the
    /// account still exists).
    fn delete_kept(&self, account_id: &str, chat_id: String) {
        let Some(account) = self.pool().get(account_id) else {
            tracing::debug!(account = %account_id, "the kept chat's account is gone; not deleting it");
            return;
        };
        drop(ChatCleanup::new(
            &self.upstream,
            &account.credentials(),
            chat_id,
        ));
    }

    /// Deletes the chats whose conversation entries have all expired, now and then, for as
    /// long as the proxy lives. Replicas sharing a store each claim different chats.
    pub fn spawn_sweep(self: &Arc<Self>) {
        let Some(ttl) = self.upstream.habits().continuation else {
            return;
        };
        let every = (ttl / 4).clamp(SWEEP_MIN, SWEEP_MAX);
        let proxy: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(proxy) = proxy.upgrade() else {
                    return;
                };
                proxy.sweep().await;
            }
        });
    }

    /// One sweep round: claims expired chats and deletes them.
    pub async fn sweep(&self) {
        loop {
            let now = crate::store::now_ms();
            let claimed = match self
                .accounts
                .store()
                .claim_expired_chats(now, SWEEP_BATCH)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim expired conversation chats");
                    return;
                }
            };
            let n = claimed.len();
            for chat in claimed {
                self.delete_kept(&chat.account_id, chat.chat_id);
            }
            if n < SWEEP_BATCH {
                return;
            }
        }
    }
}

/// The assistant message a client gets, as the events build it: text as emitted and tool
/// calls (reasoning is not part of a history key).
#[derive(Default)]
struct AnswerNote {
    text: String,
    /// By the index the events give them.
    calls: Vec<(usize, ToolCall)>,
}

impl AnswerNote {
    fn note(&mut self, ev: &AnswerEvent) {
        match ev {
            AnswerEvent::Text(t) => self.text.push_str(t),
            AnswerEvent::ToolCallStart { index, id, name } => self.calls.push((
                *index,
                ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                },
            )),
            AnswerEvent::ToolCallArguments { index, delta } => {
                if let Some((_, call)) = self.calls.iter_mut().find(|(i, _)| i == index) {
                    call.arguments.push_str(delta);
                }
            }
            _ => {}
        }
    }

    fn message(&self) -> Message {
        let mut m = Message::new(Role::Assistant, vec![Part::Text(self.text.clone())]);
        m.tool_calls = self.calls.iter().map(|(_, c)| c.clone()).collect();
        m
    }
}
