//! `GET /v1/models`, `GET /models` and `GET /v1/models/{id}`, in OpenAI's shape, or in
//! Anthropic's when the request says `anthropic-version`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::anthropic;
use crate::openai::{ModelList, ModelObject};
use crate::server::AppState;
use crate::server::error::AppError;

/// The model list.
///
/// Each model with the variants it supports (`-thinking`, `-search`, `-image`, …). In
/// Anthropic's shape (`AnthropicModelList`) when the request sends `anthropic-version`.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "list_models",
    tag = "Models",
    params(("anthropic-version" = Option<String>, Header, description = "Any value: answer in Anthropic's shape.")),
    responses(
        (status = 200, description = "The models.", body = ModelList),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let models = listed(&state).await;
    if wants_anthropic(&headers) {
        let data: Vec<anthropic::ModelInfo> = models.map(anthropic_model).collect();
        return Json(anthropic::ModelList {
            has_more: false,
            first_id: data.first().map(|m| m.id.clone()),
            last_id: data.last().map(|m| m.id.clone()),
            data,
        })
        .into_response();
    }
    Json(ModelList {
        object: "list",
        data: models.collect(),
    })
    .into_response()
}

/// One model.
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    operation_id = "get_model",
    tag = "Models",
    params(
        ("id" = String, Path, description = "A model id from the list."),
        ("anthropic-version" = Option<String>, Header, description = "Any value: answer in Anthropic's shape (`ModelInfo`)."),
    ),
    responses(
        (status = 200, description = "The model.", body = ModelObject),
        crate::api::openapi::OpenAiErrors,
    ),
)]
pub async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let model = listed(&state)
        .await
        .find(|m| m.id == id)
        .ok_or(AppError::ModelNotFound(id))?;
    Ok(if wants_anthropic(&headers) {
        Json(anthropic_model(model)).into_response()
    } else {
        Json(model).into_response()
    })
}

fn wants_anthropic(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

fn anthropic_model(m: ModelObject) -> anthropic::ModelInfo {
    let created_at = i64::try_from(m.created)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned());
    anthropic::ModelInfo {
        kind: "model",
        display_name: m.id.clone(),
        id: m.id,
        created_at,
    }
}

/// The catalog's models as OpenAI model objects.
async fn listed(state: &AppState) -> impl Iterator<Item = ModelObject> {
    let known = state.proxy().models().await;
    let listed = state.proxy().catalog().list(&known);
    listed.into_iter().map(|m| ModelObject {
        id: m.id,
        object: "model",
        created: m.created,
        owned_by: m.owner.as_str(),
    })
}
