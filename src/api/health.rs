//! `GET /health`: liveness, plus how many accounts can serve.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let pool = state.proxy().pool();
    Json(json!({
        "status": "ok",
        "accounts": { "total": pool.accounts().len(), "usable": pool.usable_count() },
    }))
}
