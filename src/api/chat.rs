//! `POST /v1/chat/completions`: validate, resolve the model, run the proxy, and answer as one
//! JSON completion or as an SSE stream whose status is decided before its first byte.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use super::auth::Identity;
use super::json::AppJson;
use super::sse::{self, SseEvent};
use crate::config::ReasoningFormat;
use crate::conversation::cut::Cut;
use crate::conversation::{AnswerEvent, ChatType, Finish, InvalidRequest, Media, ToolChoice};
use crate::openai::{self, Aggregate, ChatCompletionRequest, SourceStyle, StreamEncoder};
use crate::proxy::{Answer, AnswerStream, Delivery, RunContext, Streamed};
use crate::server::AppState;
use crate::server::error::AppError;

const REASONING_HEADER: &str = "x-reasoning-format";

/// Creates a chat completion.
///
/// One JSON `chat.completion`, or with `"stream": true` an SSE stream whose `data:` lines are
/// `chat.completion.chunk` objects (or, after the stream began, one error envelope), ending with
/// `data: [DONE]`. Sampling fields (temperature, top_p, …) are accepted and ignored.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "OpenAI",
    request_body = ChatCompletionRequest,
    params(
        ("x-reasoning-format" = Option<String>, Header,
            description = "Where the model's reasoning goes: `field` (`reasoning_content`), `tags` (`<think>` in the content) or `hidden`."),
    ),
    responses(
        (status = 200, description = "The completion, or its stream.",
            content(
                (openai::ChatCompletion = "application/json"),
                (openai::ChatCompletionChunk = "text/event-stream"),
            ),
            headers(("x-qwen2api-warning" = String, description = "`tools ignored` when the model (image, video) offers no tools."))),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn completions(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    AppJson(req): AppJson<ChatCompletionRequest>,
) -> Result<Response, AppError> {
    respond(&state, identity, &headers, req, Vec::new()).await
}

/// Answers a chat completion request; `extra` media (from a multipart upload) join the last
/// user turn's.
pub async fn respond(
    state: &AppState,
    identity: Identity,
    headers: &HeaderMap,
    req: ChatCompletionRequest,
    extra: Vec<Media>,
) -> Result<Response, AppError> {
    let max_messages = state.config().server.max_messages;
    openai::check_request(&req, max_messages).map_err(AppError::Invalid)?;
    let format = reasoning_format(headers, state.config().output.reasoning_format)?;
    let model = state.proxy().resolve(&req.model).await?;
    super::limits::check_model(state, &identity, Some(&req.model), &model.upstream_id)?;
    // An image to edit that came as an upload is the one to edit.
    let edits = model.media == Some(ChatType::ImageEdit)
        || req.chat_type.as_deref().and_then(ChatType::parse) == Some(ChatType::ImageEdit);
    let (media, extra) = if edits && !extra.is_empty() {
        (Vec::new(), extra.into_iter().last().into_iter().collect())
    } else {
        let media = state
            .media_input()
            .read(&req.messages)
            .await
            .map_err(AppError::Invalid)?;
        (media, extra)
    };
    let conv = openai::to_conversation(&req, media, extra, format != ReasoningFormat::Hidden);
    let turn = state.proxy().prepare(&conv, &model)?;
    // Image and video generation offer no tools.
    let tools_ignored = !conv.options.tools.is_empty()
        && conv.options.tool_choice != ToolChoice::None
        && turn.tools.is_none();
    tracing::debug!(model = %turn.model, thinking = turn.thinking, chat_type = turn.chat_type.as_str(), "translated request");
    let out = &state.config().output;
    let sources = SourceStyle::new(out.search_info_mode, turn.thinking, format);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ctx =
        run_context(identity, req.user.as_deref()).continuing("chat.completions", &conv, &turn);
    let delivery = if req.stream {
        Delivery::Stream {
            keepalive: out.keepalive,
        }
    } else {
        Delivery::Whole
    };
    let mut resp = match state.proxy().answer(turn, delivery, ctx).await? {
        Answer::Stream(events) => {
            let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
            let enc = StreamEncoder::new(id, created, req.model, format, include_usage, sources);
            let cut = Cut::new(&conv.options.stop, None);
            sse::response(
                sse_events(events, enc, cut),
                out.keepalive,
                sse::keep_alive(),
            )
        }
        Answer::Whole(events) => {
            let mut agg = Aggregate::new(sources);
            let (events, reason) = Cut::new(&conv.options.stop, None).whole(events);
            for ev in events {
                agg.push(ev);
            }
            if reason.is_some() {
                agg.push(AnswerEvent::Finish(Finish::Stop));
            }
            axum::Json(agg.into_completion(&id, created, &req.model, format)).into_response()
        }
    };
    if tools_ignored {
        resp.headers_mut().insert(
            "x-qwen2api-warning",
            HeaderValue::from_static("tools ignored"),
        );
    }
    Ok(resp)
}

/// Accounting and stickiness for a caller (`user` wins over the key for stickiness).
pub fn run_context(identity: Identity, user: Option<&str>) -> RunContext {
    let key_id = identity.caller.as_ref().map(|c| c.key_id().to_owned());
    RunContext {
        sticky_key: user
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .or_else(|| key_id.clone()),
        key_id,
        passthrough: identity.passthrough,
        continuation: None,
    }
}

fn reasoning_format(
    headers: &HeaderMap,
    default: ReasoningFormat,
) -> Result<ReasoningFormat, AppError> {
    let Some(v) = headers.get(REASONING_HEADER) else {
        return Ok(default);
    };
    v.to_str()
        .ok()
        .and_then(ReasoningFormat::parse)
        .ok_or_else(|| {
            AppError::Invalid(InvalidRequest {
                message: "X-Reasoning-Format must be field, tags or hidden".to_owned(),
                param: Some("X-Reasoning-Format".to_owned()),
                code: "invalid_value",
            })
        })
}

/// What one answer event is written as: most often one SSE event, held inline.
type SseEvents = smallvec::SmallVec<[SseEvent; 2]>;

fn one(event: SseEvent) -> SseEvents {
    smallvec::smallvec![event]
}

/// The SSE events of an answer stream: its chunks, an error event if it fails, then `[DONE]`.
/// A `stop` sequence ends the answer there (`finish_reason: "stop"`) and drops the rest.
fn sse_events(
    mut events: AnswerStream,
    mut enc: StreamEncoder,
    mut cut: Cut,
) -> impl Stream<Item = SseEvents> + Send {
    async_stream::stream! {
        let mut passed = Vec::new();
        while let Some(item) = events.next().await {
            match item {
                Ok(Streamed::KeepAlive) => yield one(sse::keep_alive()),
                Ok(Streamed::Event(ev)) if cut.is_noop() => {
                    yield enc.event(ev).into_iter().map(SseEvent::Data).collect();
                }
                Ok(Streamed::Event(ev)) => {
                    let reason = cut.push(ev, &mut passed);
                    if reason.is_some() {
                        passed.push(AnswerEvent::Finish(Finish::Stop));
                    }
                    let chunks: SseEvents = passed
                        .drain(..)
                        .flat_map(|e| enc.event(e))
                        .map(SseEvent::Data)
                        .collect();
                    if !chunks.is_empty() {
                        yield chunks;
                    }
                    if reason.is_some() {
                        break;
                    }
                }
                Err(e) => {
                    let err = AppError::from(e);
                    tracing::warn!(error = %err, "stream ended with an error event");
                    yield one(SseEvent::Data(err.render().body()));
                    break;
                }
            }
        }
        yield one(SseEvent::Data("[DONE]".to_owned()));
    }
}
