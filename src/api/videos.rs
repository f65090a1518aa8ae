//! `POST /v1/videos` and `GET /v1/videos/{id}`: text-to-video as a job that runs in the
//! background (t2v task polling with failover before the task starts).

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Identity;
use super::chat::run_context;
use super::images::{answer_text, markdown_urls, media_model, no_media};
use super::json::AppJson;
use super::multipart::invalid;
use crate::conversation::ChatType;
use crate::conversation::InvalidRequest;
use crate::media::size::requested_ratio;
use crate::proxy::Turn;
use crate::server::AppState;
use crate::server::error::AppError;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VideoRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: String,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// Starts a video generation job.
///
/// The answer is the job (`queued`); ask `GET /v1/videos/{id}` for its state and URL.
#[utoipa::path(
    post,
    path = "/v1/videos",
    operation_id = "create_video",
    tag = "Media",
    request_body = VideoRequest,
    responses(
        (status = 200, description = "The job.", body = crate::media::jobs::VideoJob),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    AppJson(req): AppJson<VideoRequest>,
) -> Result<Response, AppError> {
    if req.prompt.trim().is_empty() {
        return Err(invalid(
            "`prompt` must not be empty",
            "prompt",
            "invalid_value",
        ));
    }
    let size = requested_ratio(req.size.as_deref(), &req.prompt).map_err(|_| {
        AppError::Invalid(InvalidRequest::bad_size(
            req.size.as_deref().unwrap_or_default(),
        ))
    })?;
    let model = media_model(&state, req.model.as_deref(), ChatType::Video).await?;
    super::limits::check_model(&state, &identity, req.model.as_deref(), &model)?;
    let job = state.videos().create(&model, &req.prompt, size);
    let chat = Turn {
        chat_type: ChatType::Video,
        size,
        ..Turn::text(model, req.prompt.clone())
    };
    let ctx = run_context(identity, req.user.as_deref());
    let (bg, id) = (state.clone(), job.id.clone());
    tokio::spawn(async move {
        bg.videos().start(&id);
        let result = answer_text(&bg, chat, ctx).await.and_then(|text| {
            markdown_urls(&text)
                .into_iter()
                .next()
                .ok_or_else(|| no_media(&text, "a video"))
        });
        match result {
            Ok(url) => bg.videos().complete(&id, url),
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "video job failed");
                // The job's owner sees the upstream's reason, not only the generic text.
                let body: serde_json::Value =
                    serde_json::from_str(&e.render().body()).unwrap_or_default();
                let mut error = body.get("error").cloned().unwrap_or_default();
                error["message"] = serde_json::Value::String(e.to_string());
                bg.videos().fail(&id, error);
            }
        }
    });
    Ok(axum::Json(job).into_response())
}

/// A video job's state, and its URL once `completed`.
#[utoipa::path(
    get,
    path = "/v1/videos/{id}",
    operation_id = "get_video",
    tag = "Media",
    params(("id" = String, Path, description = "The job id (`video_…`).")),
    responses(
        (status = 200, description = "The job.", body = crate::media::jobs::VideoJob),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    state
        .videos()
        .get(&id)
        .map(|j| axum::Json(j).into_response())
        .ok_or_else(|| AppError::NotFound(format!("no video job with id {id:?}")))
}
