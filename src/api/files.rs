//! `/v1/files` (OpenAI shape) and the upload routes of the FastAPI project users come from:
//! `/v1/files/upload`, `/v1/chat/multimodal`, `/v1/image/upload_and_chat`,
//! `/v1/video/upload_and_chat`, and (admin key) `/v2/files/getstsToken`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Identity;
use super::chat::respond;
use super::json::AppJson;
use super::multipart::{Form, invalid};
use crate::conversation::{Blob, Media, MediaSource};
use crate::media::MediaKind;
use crate::media::file_store::FileRecord;
use crate::openai::ChatCompletionRequest;
use crate::proxy::Uploaded;
use crate::server::AppState;
use crate::server::error::AppError;

/// Uploads a file, for chat content parts (`{"type":"file","file":{"file_id":…}}`).
#[utoipa::path(
    post,
    path = "/v1/files",
    operation_id = "create_file",
    tag = "Files",
    request_body(content = crate::api::openapi::FileUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "A file object: `id`, `object` (`file`), `bytes`, `created_at`, `filename`, `purpose`, `status`.", body = Object),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn create(State(state): State<AppState>, mp: Multipart) -> Result<Response, AppError> {
    let (meta, uploaded) = store_upload(&state, mp).await?;
    Ok(axum::Json(file_object(&meta, uploaded.as_ref(), false)).into_response())
}

/// Uploads a file (a FastAPI proxy's path).
///
/// As `POST /v1/files`, with `file_id`, `file_url` and `upstream_file_id` added.
#[utoipa::path(
    post,
    path = "/v1/files/upload",
    tag = "Files",
    request_body(content = crate::api::openapi::FileUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "A file object: `id`, `object` (`file`), `bytes`, `created_at`, `filename`, `purpose`, `status`.", body = Object),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn upload_compat(
    State(state): State<AppState>,
    mp: Multipart,
) -> Result<Response, AppError> {
    let (meta, uploaded) = store_upload(&state, mp).await?;
    Ok(axum::Json(file_object(&meta, uploaded.as_ref(), true)).into_response())
}

/// The files kept.
#[utoipa::path(
    get,
    path = "/v1/files",
    operation_id = "list_files",
    tag = "Files",
    responses(
        (status = 200, description = "`{\"object\": \"list\", \"data\": [file objects]}`.", body = Object),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn list(State(state): State<AppState>) -> Response {
    let data: Vec<Value> = state
        .files()
        .list()
        .await
        .iter()
        .map(|m| file_object(m, None, false))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// One file's object.
#[utoipa::path(
    get,
    path = "/v1/files/{id}",
    operation_id = "get_file",
    tag = "Files",
    params(("id" = String, Path, description = "The file id.")),
    responses(
        (status = 200, description = "A file object: `id`, `object` (`file`), `bytes`, `created_at`, `filename`, `purpose`, `status`.", body = Object),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let meta = state.files().meta(&id).await.ok_or_else(|| no_file(&id))?;
    Ok(axum::Json(file_object(&meta, None, false)).into_response())
}

/// Deletes a file.
#[utoipa::path(
    delete,
    path = "/v1/files/{id}",
    operation_id = "delete_file",
    tag = "Files",
    params(("id" = String, Path, description = "The file id.")),
    responses(
        (status = 200, description = "`{\"id\", \"object\": \"file\", \"deleted\": true}`.", body = Object),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    if !state.files().delete(&id).await {
        return Err(no_file(&id));
    }
    Ok(axum::Json(json!({"id": id, "object": "file", "deleted": true})).into_response())
}

fn no_file(id: &str) -> AppError {
    AppError::NotFound(format!("no file with id {id:?}"))
}

fn file_object(meta: &FileRecord, uploaded: Option<&Uploaded>, compat: bool) -> Value {
    let mut v = json!({
        "id": meta.id,
        "object": "file",
        "bytes": meta.bytes,
        "created_at": meta.created_at,
        "filename": meta.filename,
        "purpose": meta.purpose,
        "status": "processed",
    });
    if compat && let Some(up) = uploaded {
        v["file_id"] = json!(meta.id);
        v["file_url"] = json!(up.file_url);
        v["upstream_file_id"] = json!(up.file_id);
    }
    v
}

async fn store_upload(
    state: &AppState,
    mp: Multipart,
) -> Result<(FileRecord, Option<Uploaded>), AppError> {
    let form = Form::read(mp, state.config().media.max_upload_bytes).await?;
    let file = form
        .file(&["file"])
        .ok_or_else(|| invalid("the form needs a `file`", "file", "file_required"))?;
    if file.bytes.is_empty() {
        return Err(invalid("the file is empty", "file", "invalid_value"));
    }
    let purpose = form.get("purpose").unwrap_or("user_data");
    let kind = MediaKind::from_mime(&file.mime);
    let blob = Blob::new(file.bytes.clone(), file.mime.clone(), file.filename.clone());
    // Uploaded now with one account (which also fills its cache); a chat on another account
    // uploads the kept bytes again with that one.
    let uploaded = state.proxy().upload_ahead(kind, &blob).await?;
    let meta = state
        .files()
        .put(&file.filename, &file.mime, purpose, file.bytes.clone())
        .await
        .map_err(|e| AppError::Store(format!("could not keep the file: {e}")))?;
    Ok((meta, uploaded))
}

/// `POST /v2/files/getstsToken` (admin key): upload credentials of one account, as the
/// FastAPI project hands them out.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct StsRequest {
    filename: String,
    #[serde(default)]
    filesize: Option<Value>,
    #[serde(default)]
    filetype: Option<String>,
}

/// Upload credentials of one account (a FastAPI proxy's path).
#[utoipa::path(
    post,
    path = "/v2/files/getstsToken",
    tag = "Admin",
    request_body = StsRequest,
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": {access_key_id, access_key_secret, security_token, file_id, file_path, file_url, bucketname, region, endpoint}}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn sts_token(
    State(state): State<AppState>,
    AppJson(req): AppJson<StsRequest>,
) -> Result<Response, AppError> {
    if req.filename.trim().is_empty() {
        return Err(invalid(
            "`filename` must not be empty",
            "filename",
            "invalid_value",
        ));
    }
    let size = match &req.filesize {
        None => 0,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| {
            invalid(
                "`filesize` must be a number of bytes",
                "filesize",
                "invalid_value",
            )
        })?,
        Some(_) => {
            return Err(invalid(
                "`filesize` must be a number of bytes",
                "filesize",
                "invalid_value",
            ));
        }
    };
    let filetype = req.filetype.as_deref().unwrap_or("file");
    let sts = state
        .proxy()
        .upload_ticket(&req.filename, size, filetype)
        .await?;
    Ok(axum::Json(json!({
        "success": true,
        "data": {
            "access_key_id": sts.access_key_id,
            "access_key_secret": sts.access_key_secret.expose(),
            "security_token": sts.security_token.expose(),
            "file_id": sts.file_id,
            "file_path": sts.file_path,
            "file_url": sts.file_url,
            "bucketname": sts.bucketname,
            "region": sts.region,
            "endpoint": sts.endpoint,
        }
    }))
    .into_response())
}

/// A chat about one uploaded image (a FastAPI proxy's path).
#[utoipa::path(
    post,
    path = "/v1/image/upload_and_chat",
    tag = "Files",
    request_body(content = crate::api::openapi::ImageChat, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "A chat completion, or its stream, as `POST /v1/chat/completions` answers.",
            content(
                (crate::openai::ChatCompletion = "application/json"),
                (crate::openai::ChatCompletionChunk = "text/event-stream"),
            )),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn image_and_chat(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    mp: Multipart,
) -> Result<Response, AppError> {
    upload_and_chat(&state, identity, &headers, mp, "image", MediaKind::Image).await
}

/// A chat about one uploaded video (a FastAPI proxy's path).
#[utoipa::path(
    post,
    path = "/v1/video/upload_and_chat",
    tag = "Files",
    request_body(content = crate::api::openapi::VideoChat, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "A chat completion, or its stream, as `POST /v1/chat/completions` answers.",
            content(
                (crate::openai::ChatCompletion = "application/json"),
                (crate::openai::ChatCompletionChunk = "text/event-stream"),
            )),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn video_and_chat(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    mp: Multipart,
) -> Result<Response, AppError> {
    upload_and_chat(&state, identity, &headers, mp, "video", MediaKind::Video).await
}

/// A chat with files (a FastAPI proxy's path).
///
/// A chat completion body as JSON (with content parts), or a form with `prompt` and files.
#[utoipa::path(
    post,
    path = "/v1/chat/multimodal",
    tag = "Files",
    request_body(content(
        (crate::openai::ChatCompletionRequest = "application/json"),
        (crate::api::openapi::MultimodalChat = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "A chat completion, or its stream, as `POST /v1/chat/completions` answers.",
            content(
                (crate::openai::ChatCompletion = "application/json"),
                (crate::openai::ChatCompletionChunk = "text/event-stream"),
            )),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn multimodal(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, AppError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_form {
        let AppJson(req) = AppJson::<ChatCompletionRequest>::from_request(request, &state).await?;
        return respond(&state, identity, &headers, req, Vec::new()).await;
    }
    let mp = Multipart::from_request(request, &state)
        .await
        .map_err(|e| AppError::BadRequest {
            message: format!("unreadable multipart form: {}", e.body_text()),
            code: "invalid_multipart",
        })?;
    let form = Form::read(mp, state.config().media.max_upload_bytes).await?;
    let attachments = form
        .files
        .iter()
        .map(|f| {
            attachment(
                f.bytes.clone(),
                &f.mime,
                &f.filename,
                MediaKind::from_mime(&f.mime),
            )
        })
        .collect();
    let req = form_request(&state, &form).await?;
    respond(&state, identity, &headers, req, attachments).await
}

async fn upload_and_chat(
    state: &AppState,
    identity: Identity,
    headers: &HeaderMap,
    mp: Multipart,
    field: &str,
    want: MediaKind,
) -> Result<Response, AppError> {
    let form = Form::read(mp, state.config().media.max_upload_bytes).await?;
    let file = form.file(&[field]).ok_or_else(|| {
        invalid(
            format!("the form needs a `{field}` file"),
            field,
            "file_required",
        )
    })?;
    if MediaKind::from_mime(&file.mime) != want {
        return Err(invalid(
            format!("`{field}` must be a {field}, not {}", file.mime),
            field,
            "unsupported_media_type",
        ));
    }
    let attachments = vec![attachment(
        file.bytes.clone(),
        &file.mime,
        &file.filename,
        want,
    )];
    let req = form_request(state, &form).await?;
    respond(state, identity, headers, req, attachments).await
}

fn attachment(bytes: bytes::Bytes, mime: &str, filename: &str, kind: MediaKind) -> Media {
    Media {
        kind,
        source: MediaSource::Blob(Arc::new(Blob::new(bytes, mime, filename))),
    }
}

/// The chat request a form describes: `prompt`, `model`, `stream`, `enable_thinking`,
/// `thinking_budget`. Without `model`, the first listed model answers.
async fn form_request(state: &AppState, form: &Form) -> Result<ChatCompletionRequest, AppError> {
    let prompt = form.require("prompt")?;
    let model = match form.get("model") {
        Some(m) => m.to_owned(),
        None => state
            .proxy()
            .models()
            .await
            .models
            .first()
            .map(|m| m.id.clone())
            .ok_or_else(|| invalid("`model` is required", "model", "missing_field"))?,
    };
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": form.bool("stream")?.unwrap_or(false),
    });
    if let Some(t) = form.bool("enable_thinking")? {
        body["enable_thinking"] = json!(t);
    }
    if let Some(b) = form.uint("thinking_budget")? {
        body["thinking_budget"] = json!(b);
    }
    serde_json::from_value(body).map_err(|e| AppError::BadRequest {
        message: format!("bad form: {e}"),
        code: "invalid_value",
    })
}
