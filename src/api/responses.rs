//! `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items`: OpenAI's Responses API over the same proxy as chat
//! completions, answered as one response object or as its event stream (every event numbered,
//! exactly one of `response.completed`, `response.incomplete` or `response.failed` at the end),
//! with responses kept in the store for `RESPONSES_TTL_HOURS` unless `store: false`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde_json::Value;

use super::auth::Identity;
use super::json::AppJson;
use super::sse::{self, SseEvent};
use crate::conversation::cut::{Cut, CutReason};
use crate::conversation::{AnswerEvent, Finish, InvalidRequest, Media, ToolChoice};
use crate::proxy::{Answer, AnswerStream, Delivery, Streamed};
use crate::responses::stored::{self, StoredResponse};
use crate::responses::{
    self, Builder, Deleted, Head, ItemList, RefSource, ResponseError, ResponseObject,
    ResponsesRequest, Status, StreamEncoder, Translated,
};
use crate::server::AppState;
use crate::server::error::AppError;
use crate::store::Store;

/// Codex names its session in these headers (the same id): the natural key for a sticky
/// account.
const SESSION_HEADERS: [&str; 2] = ["session-id", "thread-id"];

/// Where a finished response goes: the store, for this long, unless the request said
/// `store: false`.
#[derive(Clone)]
struct Keep {
    store: Option<Arc<dyn Store>>,
    ttl: std::time::Duration,
    input: Vec<Value>,
}

impl Keep {
    async fn put(&self, response: &ResponseObject) {
        let Some(store) = &self.store else { return };
        let record = StoredResponse::new(response.clone(), self.input.clone());
        let Ok(json) = serde_json::to_string(&record) else {
            return;
        };
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let until = crate::store::now_ms().saturating_add(ttl_ms);
        if let Err(e) = store
            .cache_put(&stored::key(&response.id), &json, until)
            .await
        {
            tracing::warn!(error = %e, response = %response.id, "could not store the response");
        }
    }
}

/// Creates a response (OpenAI's Responses API).
///
/// One response object, or with `"stream": true` an SSE stream of `response.*` events, each
/// with a `sequence_number`. With `store` (the default) the response can be read back and
/// continued with `previous_response_id`.
#[utoipa::path(
    post,
    path = "/v1/responses",
    operation_id = "create_response",
    tag = "Responses",
    request_body = ResponsesRequest,
    responses(
        (status = 200, description = "The response, or its event stream (`event:` names the event's `type`).",
            content(
                (ResponseObject = "application/json"),
                (Object = "text/event-stream"),
            )),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    AppJson(req): AppJson<ResponsesRequest>,
) -> Result<Response, AppError> {
    responses::check(&req).map_err(AppError::Invalid)?;
    let prior = match &req.previous_response_id {
        Some(id) => chain(state.store(), id).await?,
        None => Vec::new(),
    };
    let input = responses::input_values(&req);
    let max_messages = state.config().server.max_messages;
    if prior.len() + input.len() > max_messages {
        return Err(AppError::Invalid(InvalidRequest::new(
            format!("input: at most {max_messages} items are accepted (MAX_MESSAGES)"),
            "input",
            "too_many_messages",
        )));
    }
    let mut items = responses::read_items(&prior, 0).map_err(AppError::Invalid)?;
    let new_items = responses::read_items(&input, 0).map_err(AppError::Invalid)?;
    let refs = responses::media_refs(&new_items, 0).map_err(AppError::Invalid)?;
    let mut refs_all = responses::media_refs(&items, 0).map_err(AppError::Invalid)?;
    refs_all.extend(refs);
    items.extend(new_items);
    let model_name = req.model.clone().unwrap_or_default();
    let model = state.proxy().resolve(&model_name).await?;
    super::limits::check_model(&state, &identity, Some(&model_name), &model.upstream_id)?;
    let media = read_media(&state, refs_all).await?;
    let Translated {
        conversation,
        names,
        mut ignored,
    } = responses::to_conversation(&req, &items, media, session(&headers, &req));
    let turn = state.proxy().prepare(&conversation, &model)?;
    if !conversation.options.tools.is_empty()
        && conversation.options.tool_choice != ToolChoice::None
        && turn.tools.is_none()
    {
        ignored.push("tools (the model generates media)".to_owned());
    }
    let out = &state.config().output;
    let input_estimate = super::context::prompt_tokens(&turn).await;
    super::context::openai(&model, input_estimate, "input").map_err(AppError::Invalid)?;
    let head = Head {
        response: skeleton(&req, model_name),
        input_estimate,
        summary: req
            .reasoning
            .as_ref()
            .and_then(|r| r.summary.as_deref())
            .is_some_and(|s| s != "none"),
        encrypted: responses::wants_encrypted(&req),
        names,
    };
    let cut = Cut::new(
        &[],
        req.max_output_tokens
            .map(|m| (m, crate::tokens::count as fn(&str) -> u64)),
    );
    let keep = Keep {
        store: (req.store != Some(false)).then(|| Arc::clone(state.store())),
        ttl: state.config().server.responses_ttl,
        input,
    };
    let ctx = super::chat::run_context(identity, conversation.options.session.as_deref())
        .continuing("responses", &conversation, &turn);
    let delivery = if req.stream == Some(true) {
        Delivery::Stream {
            keepalive: out.keepalive,
        }
    } else {
        Delivery::Whole
    };
    let mut resp = match state.proxy().answer(turn, delivery, ctx).await? {
        Answer::Stream(events) => sse::response(
            sse_events(events, StreamEncoder::new(head), cut, keep),
            out.keepalive,
            SseEvent::Comment("keep-alive"),
        ),
        Answer::Whole(events) => {
            let r = whole(events, head, cut);
            keep.put(&r).await;
            axum::Json(r).into_response()
        }
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

/// The session key: Codex's `session-id` / `thread-id` header, else `prompt_cache_key`,
/// `safety_identifier` or `user`.
fn session(headers: &HeaderMap, req: &ResponsesRequest) -> Option<String> {
    SESSION_HEADERS
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
        .or_else(|| req.prompt_cache_key.clone())
        .or_else(|| req.safety_identifier.clone())
        .or_else(|| req.user.clone())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The response as created: the request's settings echoed, nothing in it yet.
fn skeleton(req: &ResponsesRequest, model: String) -> ResponseObject {
    ResponseObject {
        id: format!("resp_{}", uuid::Uuid::new_v4().simple()),
        object: "response".to_owned(),
        created_at: crate::store::now_ms() / 1000,
        status: Status::InProgress,
        completed_at: None,
        error: None,
        incomplete_details: None,
        instructions: req.instructions.clone(),
        max_output_tokens: req.max_output_tokens,
        model,
        output: Vec::new(),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        previous_response_id: req.previous_response_id.clone(),
        reasoning: req.reasoning.clone().unwrap_or_default(),
        store: req.store != Some(false),
        temperature: req.temperature,
        text: req
            .text
            .as_ref()
            .and_then(|t| t.format.clone())
            .map_or_else(
                || serde_json::json!({"format": {"type": "text"}}),
                |f| serde_json::json!({ "format": f }),
            ),
        tool_choice: req.tool_choice.clone().unwrap_or(Value::from("auto")),
        tools: req.tools.clone().unwrap_or_default(),
        top_p: req.top_p,
        truncation: "disabled".to_owned(),
        usage: None,
        user: req.user.clone(),
        metadata: req.metadata.clone().unwrap_or_default(),
    }
}

/// The items a `previous_response_id` chain adds before the request's input, oldest first.
async fn chain(store: &Arc<dyn Store>, last: &str) -> Result<Vec<Value>, AppError> {
    let mut turns = Vec::new();
    let mut next = Some(last.to_owned());
    while let Some(id) = next.take() {
        if turns.len() >= stored::MAX_CHAIN {
            break;
        }
        let Some(record) = load(store, &id).await? else {
            return Err(AppError::Invalid(InvalidRequest::new(
                format!("Previous response with id '{id}' not found."),
                "previous_response_id",
                "previous_response_not_found",
            )));
        };
        next.clone_from(&record.response.previous_response_id);
        turns.push(record.turn_items());
    }
    Ok(turns.into_iter().rev().flatten().collect())
}

async fn load(store: &Arc<dyn Store>, id: &str) -> Result<Option<StoredResponse>, AppError> {
    let raw = store
        .cache_get(&stored::key(id))
        .await
        .map_err(|e| AppError::Store(e.to_string()))?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("Response with id '{id}' not found."))
}

/// A stored response.
#[utoipa::path(
    get,
    path = "/v1/responses/{id}",
    operation_id = "get_response",
    tag = "Responses",
    params(("id" = String, Path, description = "The response id (`resp_…`).")),
    responses(
        (status = 200, description = "The response as it was answered.", body = ResponseObject),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<ResponseObject>, AppError> {
    match load(state.store(), &id).await? {
        Some(r) => Ok(axum::Json(r.response)),
        None => Err(not_found(&id)),
    }
}

/// Deletes a stored response.
#[utoipa::path(
    delete,
    path = "/v1/responses/{id}",
    operation_id = "delete_response",
    tag = "Responses",
    params(("id" = String, Path, description = "The response id (`resp_…`).")),
    responses(
        (status = 200, description = "Deleted.", body = crate::responses::Deleted),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if load(state.store(), &id).await?.is_none() {
        return Err(not_found(&id));
    }
    // An entry that expired at once is gone: the store's cache has no other removal.
    state
        .store()
        .cache_put(&stored::key(&id), "", 0)
        .await
        .map_err(|e| AppError::Store(e.to_string()))?;
    Ok(axum::Json(Deleted {
        id: &id,
        object: "response.deleted",
        deleted: true,
    })
    .into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// The input items of a stored response's request.
#[utoipa::path(
    get,
    path = "/v1/responses/{id}/input_items",
    tag = "Responses",
    params(("id" = String, Path, description = "The response id (`resp_…`)."), ListQuery),
    responses(
        (status = 200, description = "A page of items.", body = crate::responses::ItemList),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn input_items(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    let Some(record) = load(state.store(), &id).await? else {
        return Err(not_found(&id));
    };
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(AppError::Invalid(InvalidRequest::new(
            "limit must be between 1 and 100",
            "limit",
            "invalid_value",
        )));
    }
    let mut items = record.input;
    match q.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(_) => {
            return Err(AppError::Invalid(InvalidRequest::new(
                "order must be asc or desc",
                "order",
                "invalid_value",
            )));
        }
    }
    let id_of = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_owned);
    let start = match &q.after {
        Some(after) => items
            .iter()
            .position(|v| id_of(v).as_deref() == Some(after.as_str()))
            .map_or(items.len(), |p| p + 1),
        None => 0,
    };
    let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < items.len();
    let first = page.first().and_then(id_of);
    let last = page.last().and_then(id_of);
    Ok(axum::Json(ItemList {
        object: "list",
        data: &page,
        first_id: first.as_deref(),
        last_id: last.as_deref(),
        has_more,
    })
    .into_response())
}

async fn read_media(
    state: &AppState,
    refs: Vec<responses::MediaRef>,
) -> Result<Vec<Media>, AppError> {
    let input = state.media_input();
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let media = match r.source {
            RefSource::Url(url) => input.url(url, r.kind, r.filename, &r.param).await,
            RefSource::FileId(id) => input.file_id(&id, &r.param).await,
        };
        out.push(media.map_err(AppError::Invalid)?);
    }
    Ok(out)
}

/// A whole answer as one response, cut where `max_output_tokens` says.
fn whole(events: Vec<AnswerEvent>, head: Head, mut cut: Cut) -> ResponseObject {
    let mut b = Builder::new(head);
    let mut finish = Finish::Stop;
    let (events, reason) = cut.whole(events);
    for ev in events {
        match ev {
            AnswerEvent::Finish(f) => finish = f,
            other => b.push(other),
        }
    }
    b.into_response(finish, reason.as_ref(), cut.used())
}

/// A failure, as `response.failed` says it, with the codes Codex reads: `rate_limit_exceeded`
/// (with "try again in N s"), `invalid_prompt` for a refusal by moderation, `server_error`.
fn failure(err: &AppError) -> ResponseError {
    let r = err.render();
    match r.code {
        Some("rate_limit_exceeded") => {
            let secs = r.retry_after.map_or(60, |d| d.as_secs().max(1));
            ResponseError {
                code: "rate_limit_exceeded".to_owned(),
                message: format!("{} Please try again in {secs}s.", r.message),
            }
        }
        Some("content_filter") => ResponseError {
            code: "invalid_prompt".to_owned(),
            message: r.message,
        },
        _ => ResponseError {
            code: "server_error".to_owned(),
            message: r.message,
        },
    }
}

type SseEvents = Vec<SseEvent>;

/// The stream: `response.created` and `response.in_progress` first, the items, then the final
/// event, after the response is stored. A cut ends the stream (and drops the upstream answer).
fn sse_events(
    mut events: AnswerStream,
    mut enc: StreamEncoder,
    mut cut: Cut,
    keep: Keep,
) -> impl Stream<Item = SseEvents> + Send {
    async_stream::stream! {
        let mut out = Vec::new();
        let mut passed = Vec::new();
        let mut first = true;
        let mut last: Option<ResponseObject> = None;
        let mut finished = false;
        while let Some(item) = events.next().await {
            if first {
                first = false;
                enc.start(&mut out);
            }
            match item {
                Ok(Streamed::KeepAlive) => {}
                Ok(Streamed::Event(ev)) => {
                    let reason = cut.push(ev, &mut passed);
                    for e in passed.drain(..) {
                        match e {
                            AnswerEvent::Finish(f) => {
                                last = Some(enc.finish(f, None, cut.used(), &mut out));
                                finished = true;
                            }
                            other => enc.event(other, &mut out),
                        }
                    }
                    if let Some(r) = reason {
                        last = Some(enc.finish(Finish::Stop, Some(&r), cut.used(), &mut out));
                    }
                }
                Err(e) => {
                    let err = AppError::from(e);
                    tracing::warn!(error = %err, "stream ended with response.failed");
                    last = Some(enc.fail(failure(&err), &mut out));
                }
            }
            if finished {
                sse::rest_of_answer(&mut events).await;
            }
            if last.is_some() {
                break;
            }
            let batch: SseEvents = sse::named(&mut out).collect();
            if !batch.is_empty() {
                yield batch;
            }
        }
        // The proxy always ends an answer with `Finish`; should one be missing, the response
        // still ends well-formed.
        let done = if let Some(r) = last {
            r
        } else {
            if first {
                enc.start(&mut out);
            }
            enc.finish(Finish::Stop, None::<&CutReason>, cut.used(), &mut out)
        };
        keep.put(&done).await;
        yield sse::named(&mut out).collect::<SseEvents>();
    }
}
