//! A turn whose answer must be JSON (`response_format` / `text.format`): the whole answer is
//! collected and checked (tools/format.rs); a good one goes on as compact JSON, a bad one gets
//! one repair round in a new chat, and a second bad one is an error, not a pretend answer. The
//! usage reported is that of both rounds.

use std::sync::Arc;

use futures::{Stream, StreamExt};

use super::{Delivery, Progress, Proxy, ProxyError, RunContext};
use crate::conversation::{AnswerEvent, TokenUsage};
use crate::tools::format;
use crate::upstream::Turn;

impl Proxy {
    /// [`Proxy::attempts`] for a turn with a JSON format, with at most one repair round.
    pub(super) fn format_rounds(
        self: &Arc<Self>,
        turn: Turn,
        ctx: RunContext,
    ) -> impl Stream<Item = Result<Progress, ProxyError>> + Send + 'static {
        let this = Arc::clone(self);
        async_stream::stream! {
            let mut turn = turn;
            let mut spent = TokenUsage::default();
            for round in 0..2 {
                // Collected whole: nothing reaches the client before the check.
                let attempts = this.attempts(turn.clone(), Delivery::Whole, ctx.clone(), None);
                futures::pin_mut!(attempts);
                let mut events = Vec::new();
                let mut kept = Vec::new();
                while let Some(item) = attempts.next().await {
                    match item {
                        Ok(Progress::Event(ev)) => events.push(ev),
                        Ok(Progress::Kept(k)) => kept.push(k),
                        Ok(Progress::UpstreamCalled) => yield Ok(Progress::UpstreamCalled),
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                    }
                }
                let text: String = events
                    .iter()
                    .filter_map(|e| match e {
                        AnswerEvent::Text(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect();
                match format::check(&turn.format, &text) {
                    Ok(json) => {
                        let mut json = Some(json);
                        for ev in events {
                            match ev {
                                AnswerEvent::Text(_) => {
                                    if let Some(j) = json.take() {
                                        yield Ok(Progress::Event(AnswerEvent::Text(j)));
                                    }
                                }
                                AnswerEvent::Usage(u) => {
                                    yield Ok(Progress::Event(AnswerEvent::Usage(u.plus(spent))));
                                }
                                other => yield Ok(Progress::Event(other)),
                            }
                        }
                        // Only a first-round answer is kept for continuation; a repaired one's
                        // chat holds the repair and is deleted with its `Kept`.
                        if round == 0 {
                            for k in kept {
                                yield Ok(Progress::Kept(k));
                            }
                        }
                        return;
                    }
                    Err(problem) if round == 0 => {
                        tracing::info!(problem = %problem, "the answer did not follow the requested format; asking once more");
                        spent = events
                            .iter()
                            .rev()
                            .find_map(|e| match e {
                                AnswerEvent::Usage(u) => Some(*u),
                                _ => None,
                            })
                            .unwrap_or_default();
                        drop(kept);
                        turn = this.upstream.follow_up(&turn, &text, &format::correction(&problem));
                    }
                    Err(problem) => {
                        yield Err(ProxyError::FormatNotFollowed(problem));
                        return;
                    }
                }
            }
        }
    }
}
