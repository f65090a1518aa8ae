//! The admin page's routes: its three files (no key: they hold no data, and the page asks for
//! the admin key before it calls anything), and the admin API routes only the page needed:
//! the recent requests, their live feed over SSE, and re-testing an account now.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::sse::{self, SseEvent};
use crate::admin;
use crate::server::AppState;
use crate::server::error::AppError;
use crate::telemetry::recent::RequestFilter;

/// Live readers get a keep-alive comment after this much silence.
const LIVE_KEEPALIVE: Duration = Duration::from_secs(15);

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = resp.headers_mut();
    for (name, value) in admin::HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    resp
}

/// The admin page (no key: it asks for the admin key and keeps it in the tab's session).
#[utoipa::path(
    get,
    path = "/admin",
    operation_id = "admin_page",
    tag = "Admin",
    responses((status = 200, description = "The admin page (docs/admin.md).", content_type = "text/html", body = String)),
)]
pub async fn page() -> Response {
    file("text/html; charset=utf-8", admin::INDEX_HTML)
}

/// The admin page's style sheet.
#[utoipa::path(
    get,
    path = "/admin/admin.css",
    operation_id = "admin_page_style",
    tag = "Admin",
    responses((status = 200, description = "The admin page's style sheet.", content_type = "text/css", body = String)),
)]
pub async fn style() -> Response {
    file("text/css; charset=utf-8", admin::ADMIN_CSS)
}

/// The admin page's script.
#[utoipa::path(
    get,
    path = "/admin/admin.js",
    operation_id = "admin_page_script",
    tag = "Admin",
    responses((status = 200, description = "The admin page's script.", content_type = "text/javascript", body = String)),
)]
pub async fn script() -> Response {
    file("text/javascript; charset=utf-8", admin::ADMIN_JS)
}

/// The last client requests (up to 500, kept in memory by this process), newest first.
#[utoipa::path(
    get,
    path = "/api/requests",
    tag = "Admin",
    params(RequestFilter),
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": [{\"time\", \"requestId\", \"key\", \"surface\", \"route\", \"model\", \"account\", \"status\", \"latencyMs\", \"ttftMs\", \"tokensIn\", \"tokensOut\", \"failovers\"}]}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn requests(
    State(state): State<AppState>,
    Query(filter): Query<RequestFilter>,
) -> Json<Value> {
    let rows = state.recent().list(&filter);
    let rows: Vec<&crate::telemetry::recent::RequestRecord> = rows.iter().map(|r| &**r).collect();
    Json(json!({ "success": true, "data": rows }))
}

/// Each client request as it finishes, as SSE `request` events (the same objects as
/// `/api/requests`), with keep-alive comments while none comes. The filter applies. The
/// stream ends when the server shuts down.
#[utoipa::path(
    get,
    path = "/api/requests/live",
    tag = "Admin",
    params(RequestFilter),
    responses(
        (status = 200, description = "`text/event-stream`: `event: request` / `data: {…}` per finished request.", content_type = "text/event-stream", body = String),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn requests_live(
    State(state): State<AppState>,
    Query(filter): Query<RequestFilter>,
) -> Response {
    let mut live = state.recent().subscribe();
    let closed = state.recent().closed();
    let events = async_stream::stream! {
        tokio::pin!(closed);
        loop {
            let next = tokio::select! {
                () = &mut closed => break,
                next = live.recv() => next,
            };
            match next {
                Ok(record) if filter.matches(&record) => {
                    let data = serde_json::to_string(&*record).unwrap_or_default();
                    yield vec![SseEvent::Named("request", data)];
                }
                Ok(_) => {}
                // A slow reader misses some; it goes on with the next.
                Err(RecvError::Lagged(_)) => yield vec![SseEvent::Comment("lagged")],
                Err(RecvError::Closed) => break,
            }
        }
    };
    sse::response(events, LIVE_KEEPALIVE, sse::keep_alive())
}

/// Tests an account now: a password account signs in again, a token account has its token
/// checked. Answers with the account's state afterwards.
#[utoipa::path(
    post,
    path = "/api/accounts/{account_id}/retest",
    tag = "Admin",
    params(("account_id" = String, Path, description = "The account id.")),
    responses(
        (status = 200, description = "`{\"success\": true, \"data\": {\"accountId\", \"ok\", \"state\", \"reason\", \"error\"}}`.", body = Object),
        crate::api::openapi::AdminErrors,
    ),
)]
pub async fn retest(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let outcome = state.accounts().retest(&id).await?;
    let account = state.accounts().pool().get(&id);
    let status = account.as_ref().map(|a| a.status());
    Ok(Json(json!({
        "success": true,
        "data": {
            "accountId": id,
            "ok": outcome.is_ok(),
            "state": status.as_ref().map(|s| s.state),
            "reason": status.as_ref().and_then(|s| s.reason.clone()),
            "error": outcome.err().map(|e| e.class()),
        }
    })))
}
