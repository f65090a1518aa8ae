//! `GET /v1/models`, `GET /models` and `GET /v1/models/{id}`.

use axum::Json;
use axum::extract::{Path, State};

use crate::error::AppError;
use crate::openai::{ModelList, ModelObject};
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    let snap = state.proxy().models().await;
    Json(ModelList {
        object: "list",
        data: state.proxy().catalog().list(&snap),
    })
}

pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>, AppError> {
    let snap = state.proxy().models().await;
    state
        .proxy()
        .catalog()
        .list(&snap)
        .into_iter()
        .find(|m| m.id == id)
        .map(Json)
        .ok_or(AppError::ModelNotFound(id))
}
