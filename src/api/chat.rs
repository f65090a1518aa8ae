//! `POST /v1/chat/completions`: validate, resolve the model, run the proxy, and answer as one
//! JSON completion or as an SSE stream whose status is decided before its first byte.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::auth::Identity;
use super::json::AppJson;
use super::sse::{self, Frame};
use crate::chat::{AnswerEvent, Attachment, Blob, ChatRequest, ChatType, MediaSource};
use crate::config::ReasoningFormat;
use crate::error::AppError;
use crate::media::MediaKind;
use crate::openai::ChatCompletionRequest;
use crate::proxy::{Progress, ProxyError, RunContext};
use crate::state::AppState;
use crate::stream::DecodeOptions;
use crate::translate::{self, Aggregate, InvalidRequest, StreamEncoder};
use crate::upstream::UpstreamError;

const REASONING_HEADER: &str = "x-reasoning-format";

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
    extra: Vec<Attachment>,
) -> Result<Response, AppError> {
    let max_messages = state.config().server.max_messages;
    let tools_ignored = translate::check_request(&req, max_messages).map_err(AppError::Invalid)?;
    let format = reasoning_format(headers, state.config().output.reasoning_format)?;
    let snap = state.proxy().models().await;
    let resolved = state
        .proxy()
        .catalog()
        .resolve(&snap, &req.model)
        .ok_or_else(|| AppError::ModelNotFound(req.model.clone()))?;
    let mut chat = translate::chat_request(&req, &resolved);
    chat.attachments = if chat.chat_type == ChatType::ImageEdit && !extra.is_empty() {
        // The uploaded image is the one to edit.
        extra.into_iter().last().into_iter().collect()
    } else {
        let mut found = state
            .media_input()
            .attachments(&req.messages, chat.chat_type)
            .await
            .map_err(AppError::Invalid)?;
        found.extend(extra);
        found
    };
    offload_long_prompt(&mut chat, state.config().media.prompt_file_threshold);
    tracing::debug!(model = %chat.model, thinking = chat.thinking, chat_type = chat.chat_type.as_str(), "translated request");
    let out = &state.config().output;
    let opts = DecodeOptions {
        reasoning_visible: format != ReasoningFormat::Hidden,
        search_into_reasoning: chat.thinking && format != ReasoningFormat::Hidden,
        search_mode: out.search_info_mode,
        stream_mode: out.stream_mode,
    };
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ctx = run_context(identity, req.user.as_deref());
    let proxied = state.proxy().run(chat, opts, !req.stream, ctx);
    let mut resp = if req.stream {
        let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        let enc = StreamEncoder::new(id, created, req.model, format, include_usage);
        stream(proxied, enc, out.keepalive).await?
    } else {
        let mut agg = Aggregate::default();
        futures::pin_mut!(proxied);
        while let Some(item) = proxied.next().await {
            match item? {
                Progress::Event(ev) => agg.push(ev),
                Progress::UpstreamCalled => {}
            }
        }
        axum::Json(agg.into_completion(&id, created, &req.model, format)).into_response()
    };
    if tools_ignored {
        resp.headers_mut().insert(
            "x-qwen2api-warning",
            HeaderValue::from_static("tools ignored"),
        );
    }
    Ok(resp)
}

/// The instruction sent in place of a prompt that went up as a file.
const PROMPT_FILE_INSTRUCTION: &str = "The full conversation is in the attached file prompt.txt. Read it and reply to its last message as the assistant.";

/// A text prompt over `threshold` bytes is uploaded as `prompt.txt` (docs/upstream.md §5.3):
/// the site answers very large bodies with a captcha.
fn offload_long_prompt(chat: &mut ChatRequest, threshold: usize) {
    if threshold == 0
        || chat.prompt.len() <= threshold
        || !matches!(chat.chat_type, ChatType::Text | ChatType::Search)
    {
        return;
    }
    let text = std::mem::replace(&mut chat.prompt, PROMPT_FILE_INSTRUCTION.to_owned());
    tracing::debug!(
        bytes = text.len(),
        "prompt over PROMPT_FILE_THRESHOLD_KB; sending it as a file"
    );
    let blob = Blob::new(text.into_bytes().into(), "text/plain", "prompt.txt");
    chat.attachments.push(Attachment {
        kind: MediaKind::Document,
        source: MediaSource::Blob(std::sync::Arc::new(blob)),
    });
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

/// What one answer event is written as: most often one frame, held inline.
type Frames = smallvec::SmallVec<[Frame; 2]>;

fn one(frame: Frame) -> Frames {
    smallvec::smallvec![frame]
}

/// Waits for the first visible event (or for the keep-alive interval to pass after the upstream
/// was called), so that a failure before it is still an ordinary HTTP error; then streams.
async fn stream(
    proxied: impl Stream<Item = Result<Progress, ProxyError>> + Send + 'static,
    mut enc: StreamEncoder,
    keepalive: Duration,
) -> Result<Response, AppError> {
    let mut proxied = Box::pin(proxied);
    let mut deadline: Option<Instant> = None;
    let first: Option<AnswerEvent> = loop {
        let wait = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = proxied.next() => match item {
                Some(Ok(Progress::UpstreamCalled)) => deadline = Some(Instant::now() + keepalive),
                Some(Ok(Progress::Event(ev))) => break Some(ev),
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ProxyError::MidStream(UpstreamError::EmptyAnswer).into()),
            },
            () = wait => break None,
        }
    };
    let batches = async_stream::stream! {
        match &first {
            None => yield one(sse::keep_alive()),
            Some(ev) => yield enc.event(ev).into_iter().map(Frame::Data).collect::<Frames>(),
        }
        while let Some(item) = proxied.next().await {
            match item {
                Ok(Progress::UpstreamCalled) => {}
                Ok(Progress::Event(ev)) => yield enc.event(&ev).into_iter().map(Frame::Data).collect(),
                Err(e) => {
                    let err = AppError::from(e);
                    tracing::warn!(error = %err, "stream ended with an error event");
                    yield one(Frame::Data(err.render().body()));
                    break;
                }
            }
        }
        yield one(Frame::Data("[DONE]".to_owned()));
    };
    Ok(sse::response(batches, keepalive))
}
