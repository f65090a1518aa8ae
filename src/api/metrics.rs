//! `GET /metrics`: the Prometheus scrape, with the account gauges read from the pool now.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::server::AppState;

/// The metrics, in the Prometheus text format.
///
/// Requests, latencies, failovers, accounts, cooldowns, WAF challenges, tokens, store errors,
/// continuation and the build (docs/metrics.md). Needs the admin key unless `METRICS_PUBLIC`
/// is true; served on `ADMIN_LISTEN_ADDRESS` when that is set.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "Service",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4.",
            content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn scrape(State(state): State<AppState>) -> Response {
    // Writing into a String does not fail; should the encoder, say so without details.
    let Ok(text) = state.metrics().render(state.proxy().pool()) else {
        tracing::warn!("the metrics could not be encoded");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let content_type = HeaderValue::from_static(crate::metrics::CONTENT_TYPE);
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}
