//! A turn with tools: its answer is read for calls, and an answer that falls short of a proper
//! turn (empty, an unreadable call, the site's refusal of a call, no call when one is required,
//! arguments that do not fit) gets one corrective round before the client sees the shortfall
//! (docs/tools.md). The usage reported is that of both rounds. Only an answer without a
//! corrective round is kept for continuation.

use std::sync::Arc;

use futures::{Stream, StreamExt};

use super::{Delivery, Progress, Proxy, ProxyError, RunContext};
use crate::conversation::{AnswerEvent, TokenUsage};
use crate::tools::answer::{Reading, Shortfall};
use crate::upstream::Turn;

impl Proxy {
    /// [`Proxy::attempts`] for a turn with tools, with at most one corrective round.
    pub(super) fn tool_rounds(
        self: &Arc<Self>,
        turn: Turn,
        delivery: Delivery,
        ctx: RunContext,
    ) -> impl Stream<Item = Result<Progress, ProxyError>> + Send + 'static {
        let this = Arc::clone(self);
        async_stream::stream! {
            let Some(plan) = turn.tools.clone() else {
                return;
            };
            let first = Reading::new(Arc::clone(&plan), false);
            let round = this.attempts(turn.clone(), delivery, ctx.clone(), Some(first.clone()));
            futures::pin_mut!(round);
            let mut fell_short = None;
            // What the first round cost: the client is told the sum of both rounds.
            let mut spent = TokenUsage::default();
            while let Some(item) = round.next().await {
                if let Ok(Progress::Event(AnswerEvent::Usage(u))) = &item {
                    spent = *u;
                }
                if let Ok(Progress::Event(AnswerEvent::Finish(_))) = &item {
                    let verdict = first.verdict();
                    if verdict.shortfall.is_some() {
                        fell_short = Some(verdict);
                        break;
                    }
                }
                let failed = item.is_err();
                yield item;
                if failed {
                    return;
                }
            }
            let Some(verdict) = fell_short else {
                return;
            };
            tracing::info!(shortfall = ?verdict.shortfall, "the answer fell short of a tool turn; asking once more");
            let next = this.upstream.follow_up(&turn, &verdict.answer, &verdict.correction());
            let mut last = Reading::new(plan, true);
            last.first_index = verdict.calls;
            let round = this.attempts(next, delivery, ctx, Some(last.clone()));
            futures::pin_mut!(round);
            while let Some(item) = round.next().await {
                // A corrected answer's chat is not kept: its one message holds the
                // correction, not the conversation as the client has it.
                if let Ok(Progress::Kept(_)) = &item {
                    continue;
                }
                if let Ok(Progress::Event(AnswerEvent::Finish(_))) = &item {
                    match last.verdict().shortfall {
                        Some(Shortfall::NoCall) => {
                            yield Err(ProxyError::ToolCallMissing);
                            return;
                        }
                        Some(Shortfall::Invalid) => {
                            yield Err(ProxyError::InvalidToolArguments);
                            return;
                        }
                        _ => {}
                    }
                }
                yield match item {
                    Ok(Progress::Event(AnswerEvent::Usage(u))) => {
                        Ok(Progress::Event(AnswerEvent::Usage(u.plus(spent))))
                    }
                    other => other,
                };
            }
        }
    }
}
