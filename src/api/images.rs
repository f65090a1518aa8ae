//! `POST /v1/images/generations` and `POST /v1/images/edits`: image generation and editing as
//! OpenAI shapes them, run as t2i / image_edit chats with failover and per-feature quota rests.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::{Multipart, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::auth::Identity;
use super::chat::run_context;
use super::json::AppJson;
use super::multipart::{Form, invalid};
use crate::conversation::InvalidRequest;
use crate::conversation::{AnswerEvent, Blob, ChatType, Media, MediaSource};
use crate::media::MediaKind;
use crate::media::size::requested_ratio;
use crate::proxy::{Answer, Delivery, Turn};
use crate::server::AppState;
use crate::server::error::AppError;

/// Most images one request may ask for (each is its own upstream chat).
const MAX_N: u32 = 4;
/// Largest generated image fetched for `b64_json`.
const MAX_GENERATED_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ImageRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub response_format: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// What one generation call needs, already checked.
pub struct Generation {
    pub model: String,
    pub chat_type: ChatType,
    pub prompt: String,
    pub size: Option<&'static str>,
    pub n: u32,
    pub b64: bool,
    pub attachments: Vec<Media>,
}

/// Generates images.
#[utoipa::path(
    post,
    path = "/v1/images/generations",
    tag = "Media",
    request_body = ImageRequest,
    responses(
        (status = 200, description = "`{\"created\", \"data\": [{\"url\"} or {\"b64_json\"}, …]}`, with `revised_prompt` where the model gave one.", body = Object),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn generations(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    AppJson(req): AppJson<ImageRequest>,
) -> Result<Response, AppError> {
    let r#gen = checked(&state, ChatType::Image, &req, Vec::new()).await?;
    super::limits::check_model(&state, &identity, req.model.as_deref(), &r#gen.model)?;
    run(&state, identity, req.user.as_deref(), r#gen).await
}

/// Edits an image by an instruction.
#[utoipa::path(
    post,
    path = "/v1/images/edits",
    tag = "Media",
    request_body(content = crate::api::openapi::ImageEdit, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "`{\"created\", \"data\": [{\"url\"} or {\"b64_json\"}, …]}`, with `revised_prompt` where the model gave one.", body = Object),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn edits(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    mp: Multipart,
) -> Result<Response, AppError> {
    let form = Form::read(mp, state.config().media.max_upload_bytes).await?;
    let Some(image) = form.file(&["image", "image[]"]) else {
        return Err(invalid(
            "the form needs an `image` file",
            "image",
            "image_required",
        ));
    };
    if MediaKind::from_mime(&image.mime) != MediaKind::Image {
        return Err(invalid(
            format!("`image` must be an image, not {}", image.mime),
            "image",
            "unsupported_media_type",
        ));
    }
    if form.file(&["mask"]).is_some() {
        tracing::debug!("image edit mask ignored: the upstream edits from the instruction alone");
    }
    let req = ImageRequest {
        model: form.get("model").map(str::to_owned),
        prompt: form.require("prompt")?.to_owned(),
        n: form
            .uint("n")?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        size: form.get("size").map(str::to_owned),
        response_format: form.get("response_format").map(str::to_owned),
        user: form.get("user").map(str::to_owned),
    };
    let blob = Blob::new(
        image.bytes.clone(),
        image.mime.clone(),
        image.filename.clone(),
    );
    let attachment = Media {
        kind: MediaKind::Image,
        source: MediaSource::Blob(std::sync::Arc::new(blob)),
    };
    let r#gen = checked(&state, ChatType::ImageEdit, &req, vec![attachment]).await?;
    super::limits::check_model(&state, &identity, req.model.as_deref(), &r#gen.model)?;
    run(&state, identity, req.user.as_deref(), r#gen).await
}

async fn checked(
    state: &AppState,
    chat_type: ChatType,
    req: &ImageRequest,
    attachments: Vec<Media>,
) -> Result<Generation, AppError> {
    if req.prompt.trim().is_empty() {
        return Err(invalid(
            "`prompt` must not be empty",
            "prompt",
            "invalid_value",
        ));
    }
    let n = req.n.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(invalid(
            format!("`n` must be between 1 and {MAX_N}"),
            "n",
            "invalid_value",
        ));
    }
    let b64 = match req.response_format.as_deref() {
        None | Some("url") => false,
        Some("b64_json") => true,
        Some(_) => {
            return Err(invalid(
                "`response_format` must be url or b64_json",
                "response_format",
                "invalid_value",
            ));
        }
    };
    let size = requested_ratio(req.size.as_deref(), &req.prompt).map_err(|_| {
        AppError::Invalid(InvalidRequest::bad_size(
            req.size.as_deref().unwrap_or_default(),
        ))
    })?;
    let model = media_model(state, req.model.as_deref(), chat_type).await?;
    Ok(Generation {
        model,
        chat_type,
        prompt: req.prompt.clone(),
        size,
        n,
        b64,
        attachments,
    })
}

/// The upstream model for a generation: the one asked for (with or without its suffix), else
/// `IMAGE_MODEL` / `VIDEO_MODEL`, else the first listed model that offers the chat type.
pub async fn media_model(
    state: &AppState,
    requested: Option<&str>,
    chat_type: ChatType,
) -> Result<String, AppError> {
    let snap = state.proxy().models().await;
    let catalog = state.proxy().catalog();
    let configured = match chat_type {
        ChatType::Video => state.config().media.video_model.as_deref(),
        _ => state.config().media.image_model.as_deref(),
    };
    let Some(name) = requested.filter(|m| !m.trim().is_empty()).or(configured) else {
        return snap
            .models
            .iter()
            .find(|m| m.supports(chat_type))
            .map(|m| m.id.clone())
            .ok_or_else(|| AppError::BadRequest {
                message: format!(
                    "no upstream model offers {}; name one with `model`",
                    chat_type.as_str()
                ),
                code: "model_not_found",
            });
    };
    let resolved = catalog
        .resolve(&snap, name)
        .ok_or_else(|| AppError::ModelNotFound(name.to_owned()))?;
    let supported = resolved.media == Some(chat_type)
        || snap.fallback
        || snap
            .models
            .iter()
            .any(|m| m.id == resolved.upstream_id && m.supports(chat_type));
    if !supported {
        return Err(invalid(
            format!("the model `{name}` does not offer {}", chat_type.as_str()),
            "model",
            "model_not_supported",
        ));
    }
    Ok(resolved.upstream_id)
}

async fn run(
    state: &AppState,
    identity: Identity,
    user: Option<&str>,
    r#gen: Generation,
) -> Result<Response, AppError> {
    let runs = (0..r#gen.n).map(|_| {
        let chat = Turn {
            chat_type: r#gen.chat_type,
            attachments: r#gen.attachments.clone(),
            size: r#gen.size,
            ..Turn::text(r#gen.model.clone(), r#gen.prompt.clone())
        };
        answer_text(state, chat, run_context(identity.clone(), user))
    });
    let answers = futures::future::join_all(runs).await;
    let mut data = Vec::new();
    for answer in answers {
        let text = answer?;
        let urls = markdown_urls(&text);
        if urls.is_empty() {
            return Err(no_media(&text, "an image"));
        }
        for url in urls {
            data.push(if r#gen.b64 {
                let bytes = state
                    .proxy()
                    .fetch_generated(&url, MAX_GENERATED_BYTES)
                    .await?;
                json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(&bytes), "revised_prompt": r#gen.prompt})
            } else {
                json!({"url": url, "revised_prompt": r#gen.prompt})
            });
        }
    }
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(axum::Json(json!({"created": created, "data": data})).into_response())
}

/// Runs one chat to the end and returns its answer text.
pub async fn answer_text(
    state: &AppState,
    chat: Turn,
    ctx: crate::proxy::RunContext,
) -> Result<String, AppError> {
    let Answer::Whole(events) = state.proxy().answer(chat, Delivery::Whole, ctx).await? else {
        unreachable!("a whole delivery is answered whole");
    };
    let mut text = String::new();
    for ev in events {
        if let AnswerEvent::Text(t) = ev {
            text.push_str(&t);
        }
    }
    Ok(text)
}

/// The answer had no media in it (e.g. the model refused in words).
pub fn no_media(text: &str, what: &str) -> AppError {
    let said: String = text.chars().take(200).collect();
    AppError::NoMedia(format!("The upstream answered without {what}: {said:?}"))
}

/// Every `![..](url)` / `[..](url)` target in a text, in order.
pub fn markdown_urls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        let url = after[..end].trim();
        if (url.starts_with("http://") || url.starts_with("https://"))
            && !out.iter().any(|u| u == url)
        {
            out.push(url.to_owned());
        }
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_come_out_of_markdown() {
        assert_eq!(
            markdown_urls(
                "![image](https://a/1.png?key=x)\n\n![image](https://a/2.png) [video](http://v/1.mp4) [x](nope)"
            ),
            ["https://a/1.png?key=x", "https://a/2.png", "http://v/1.mp4"]
        );
        assert!(markdown_urls("I cannot draw that.").is_empty());
    }
}
