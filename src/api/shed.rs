//! Load shedding: beyond `MAX_CONCURRENT_REQUESTS` requests in flight, new ones get 503 with
//! `Retry-After` at once; those in flight (streams included, until their last byte) go on.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use crate::server::error::AppError;

#[derive(Clone)]
pub struct Limit(pub Arc<Semaphore>);

pub async fn shed(
    State(limit): State<Limit>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let Ok(permit) = Arc::clone(&limit.0).try_acquire_owned() else {
        tracing::debug!("load shed");
        return Err(AppError::Overloaded);
    };
    let resp = next.run(req).await;
    Ok(resp.map(|body| crate::server::body::hold(body, permit)))
}
