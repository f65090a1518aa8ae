//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API over the
//! same proxy as chat completions, answered as one message or as Anthropic's event stream
//! (`ping` after `message_start` and during silence, `event: error` and nothing after it when
//! the stream fails), and the middleware that writes errors in Anthropic's envelope.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use super::auth::Identity;
use super::json::AppJson;
use super::sse::{self, SseEvent};
use crate::anthropic::{
    self, Aggregate, Head, MessagesRequest, RefSource, StreamEncoder, TokenCount, Translated,
};
use crate::conversation::cut::{Cut, CutReason};
use crate::conversation::{AnswerEvent, Finish, Media, ToolChoice};
use crate::proxy::{Answer, AnswerStream, Delivery, Streamed};
use crate::server::AppState;
use crate::server::error::{AppError, Rendered};

/// Claude Code names its session in this header: the natural key for a sticky account.
const SESSION_HEADER: &str = "x-claude-code-session-id";
const PING: &str = r#"{"type":"ping"}"#;

fn ping() -> SseEvent {
    SseEvent::Named("ping", PING.to_owned())
}

/// Creates a message (Anthropic's Messages API).
///
/// One message, or with `"stream": true` Anthropic's event stream (`message_start`, `ping`,
/// content blocks, `message_delta`, `message_stop`), each event's `data:` a `StreamEvent`.
#[utoipa::path(
    post,
    path = "/v1/messages",
    operation_id = "create_message",
    tag = "Anthropic",
    request_body = MessagesRequest,
    params(
        ("anthropic-version" = Option<String>, Header, description = "Accepted; any value."),
        ("anthropic-beta" = Option<String>, Header, description = "Accepted; the fields betas add are read or ignored."),
    ),
    responses(
        (status = 200, description = "The message, or its event stream.",
            content(
                (crate::anthropic::MessageOut = "application/json"),
                (crate::anthropic::StreamEvent = "text/event-stream"),
            )),
        crate::api::openapi::AnthropicErrors,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    AppJson(req): AppJson<MessagesRequest>,
) -> Result<Response, AppError> {
    log_versions(&headers);
    let max_messages = state.config().server.max_messages;
    anthropic::check(&req, max_messages, true).map_err(AppError::Invalid)?;
    let model = state.proxy().resolve(&req.model).await?;
    super::limits::check_model(&state, &identity, Some(&req.model), &model.upstream_id)?;
    let refs = anthropic::media_refs(&req).map_err(AppError::Invalid)?;
    let media = read_media(&state, refs).await?;
    let Translated {
        mut conversation,
        mut ignored,
    } = anthropic::to_conversation(&req, media, anthropic::wants_thinking(&req));
    if let Some(session) = session_header(&headers) {
        conversation.options.session = Some(session);
    }
    let turn = state.proxy().prepare(&conversation, &model)?;
    // Image and video generation offer no tools.
    if !conversation.options.tools.is_empty()
        && conversation.options.tool_choice != ToolChoice::None
        && turn.tools.is_none()
    {
        ignored.push("tools (the model generates media)".to_owned());
    }
    let out = &state.config().output;
    let input_estimate = super::context::prompt_tokens(&turn).await;
    super::context::anthropic(&model, input_estimate).map_err(AppError::Invalid)?;
    let head = Head {
        id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
        model: req.model.clone(),
        input_estimate,
        sources: out.search_info_mode,
    };
    let cut = Cut::new(
        &conversation.options.stop,
        req.max_tokens
            .map(|m| (m, crate::tokens::count as fn(&str) -> u64)),
    );
    let ctx = super::chat::run_context(identity, conversation.options.session.as_deref())
        .continuing("messages", &conversation, &turn);
    let stream = req.stream.unwrap_or(false);
    let delivery = if stream {
        Delivery::Stream {
            keepalive: out.keepalive,
        }
    } else {
        Delivery::Whole
    };
    let mut resp = match state.proxy().answer(turn, delivery, ctx).await? {
        Answer::Stream(events) => sse::response(
            sse_events(events, StreamEncoder::new(head), cut),
            out.keepalive,
            ping(),
        ),
        Answer::Whole(events) => whole(events, &head, cut),
    };
    if !ignored.is_empty() {
        ignored.dedup();
        let text = format!("ignored: {}", ignored.join(", "));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().insert("x-qwen2api-warning", v);
        }
    }
    Ok(resp)
}

/// Counts the tokens of the prompt the request would send (Qwen2.5's tokenizer).
///
/// `max_tokens` is not required here.
#[utoipa::path(
    post,
    path = "/v1/messages/count_tokens",
    tag = "Anthropic",
    request_body = MessagesRequest,
    responses(
        (status = 200, description = "The count.", body = TokenCount),
        crate::api::openapi::AnthropicErrors,
    ),
)]
pub async fn count_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    AppJson(req): AppJson<MessagesRequest>,
) -> Result<axum::Json<TokenCount>, AppError> {
    log_versions(&headers);
    let max_messages = state.config().server.max_messages;
    anthropic::check(&req, max_messages, false).map_err(AppError::Invalid)?;
    anthropic::media_refs(&req).map_err(AppError::Invalid)?;
    let model = state.proxy().resolve(&req.model).await?;
    // Media are not read for a count: the prompt's text is what is counted.
    let translated = anthropic::to_conversation(&req, Vec::new(), anthropic::wants_thinking(&req));
    let turn = state.proxy().prepare(&translated.conversation, &model)?;
    Ok(axum::Json(TokenCount {
        input_tokens: super::context::prompt_tokens(&turn).await,
    }))
}

fn log_versions(headers: &HeaderMap) {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    tracing::debug!(
        version = get("anthropic-version"),
        betas = get("anthropic-beta"),
        "anthropic request"
    );
}

fn session_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

async fn read_media(
    state: &AppState,
    refs: Vec<anthropic::MediaRef>,
) -> Result<Vec<Media>, AppError> {
    let input = state.media_input();
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let media = match r.source {
            RefSource::Url(url) => input.url(url, Some(r.kind), r.filename, &r.param).await,
            RefSource::Text(text) => input.text_document(&text, r.filename, &r.param),
        };
        out.push(media.map_err(AppError::Invalid)?);
    }
    Ok(out)
}

/// A whole answer as one message, cut where the client's limits say.
fn whole(events: Vec<AnswerEvent>, head: &Head, mut cut: Cut) -> Response {
    let mut agg = Aggregate::new(head.sources);
    let mut finish = Finish::Stop;
    let (events, reason) = cut.whole(events);
    for ev in events {
        match ev {
            AnswerEvent::Finish(f) => finish = f,
            other => agg.push(other),
        }
    }
    axum::Json(agg.into_message(head, finish, reason.as_ref(), cut.used())).into_response()
}

/// What one answer item is written as: a few named events.
type SseEvents = Vec<SseEvent>;

/// The stream: `message_start` and a `ping` first, the blocks, then `message_delta` and
/// `message_stop`; or `event: error` and nothing after it. A cut ends the stream (and drops the
/// upstream answer).
fn sse_events(
    mut events: AnswerStream,
    mut enc: StreamEncoder,
    mut cut: Cut,
) -> impl Stream<Item = SseEvents> + Send {
    async_stream::stream! {
        let mut out = Vec::new();
        let mut passed = Vec::new();
        let mut first = true;
        let mut ended = false;
        let mut finished = false;
        while let Some(item) = events.next().await {
            let mut batch: SseEvents = Vec::new();
            if first {
                first = false;
                enc.start(&mut out);
                batch.extend(sse::named(&mut out));
                batch.push(ping());
                if matches!(item, Ok(Streamed::KeepAlive)) {
                    yield batch;
                    continue;
                }
            }
            match item {
                Ok(Streamed::KeepAlive) => batch.push(ping()),
                Ok(Streamed::Event(ev)) => {
                    let reason = cut.push(ev, &mut passed);
                    for e in passed.drain(..) {
                        match e {
                            AnswerEvent::Finish(f) => {
                                enc.finish(f, None, cut.used(), &mut out);
                                ended = true;
                                finished = true;
                            }
                            other => enc.event(other, &mut out),
                        }
                    }
                    if let Some(r) = reason {
                        enc.finish(Finish::Stop, Some(&r), cut.used(), &mut out);
                        ended = true;
                    }
                }
                Err(e) => {
                    let err = AppError::from(e);
                    tracing::warn!(error = %err, "stream ended with an error event");
                    batch.push(SseEvent::Named("error", err.render().anthropic_body()));
                    yield batch;
                    return;
                }
            }
            batch.extend(sse::named(&mut out));
            if finished {
                sse::rest_of_answer(&mut events).await;
            }
            if !batch.is_empty() {
                yield batch;
            }
            if ended {
                return;
            }
        }
        // The proxy always ends an answer with `Finish`; should one be missing, the message
        // still ends well-formed.
        if !ended {
            enc.finish(Finish::Stop, None::<&CutReason>, cut.used(), &mut out);
            yield sse::named(&mut out).collect();
        }
    }
}

/// Whether a request is on Anthropic's surface: its routes, or any `/v1` request that says
/// `anthropic-version` (the model list).
fn is_anthropic(req: &Request) -> bool {
    let path = req.uri().path();
    path.starts_with("/v1/messages")
        || (path.starts_with("/v1/") && req.headers().contains_key("anthropic-version"))
}

/// Writes the errors of Anthropic requests (from any layer: keys, load shedding, the body
/// limit, the handler) in Anthropic's envelope and statuses.
pub async fn errors(req: Request, next: Next) -> Response {
    if !is_anthropic(&req) {
        return next.run(req).await;
    }
    let resp = next.run(req).await;
    let Some(rendered) = resp.extensions().get::<Rendered>().cloned() else {
        return resp;
    };
    let (mut parts, _) = resp.into_parts();
    parts.status = rendered.anthropic_status().0;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(rendered.anthropic_body()))
}
