//! `GET /v1/models`, `GET /models` and `GET /v1/models/{id}`.

use axum::Json;
use axum::extract::{Path, State};

use crate::openai::{ModelList, ModelObject};
use crate::server::AppState;
use crate::server::error::AppError;

pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: listed(&state).await.collect(),
    })
}

pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>, AppError> {
    listed(&state)
        .await
        .find(|m| m.id == id)
        .map(Json)
        .ok_or(AppError::ModelNotFound(id))
}

/// The catalog's models as OpenAI model objects.
async fn listed(state: &AppState) -> impl Iterator<Item = ModelObject> {
    let known = state.proxy().models().await;
    let listed = state.proxy().catalog().list(&known);
    listed.into_iter().map(|m| ModelObject {
        id: m.id,
        object: "model",
        created: m.created,
        owned_by: "qwen",
    })
}
