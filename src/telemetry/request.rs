//! The request id (`X-Request-Id`, the client's when it is sane, else a new one), the request
//! span that carries it into every log line of the request, and the one line logged per
//! request (with its error, once).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::{Instrument, Span};

/// The header that carries the request id, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client.
const MAX_ID_LEN: usize = 128;

/// The route template (`/api/accounts/{id}`), never the raw path: ids in paths are e-mail
/// addresses and chat ids, which do not belong in every log line (and have no bound).
const UNMATCHED: &str = "(no route)";

/// The internal description of an error response, put in its extensions for the request log
/// line (so an error is logged once, here, and rendering has no side effects).
#[derive(Clone, Debug)]
pub struct LoggedError(pub String);

/// This request's id, in the request's extensions for handlers that want it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The client's `X-Request-Id` when it is 1 to 128 characters of letters, digits and
    /// `-_.:/+=` (so that it cannot forge or break a log line); otherwise a new UUID.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get(&X_REQUEST_ID)
            .filter(|v| is_sane(v.as_bytes()))
            .map_or_else(Self::new, |v| Self(v.clone()))
    }

    fn new() -> Self {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        Self(HeaderValue::from_str(&id).expect("a UUID is a valid header value"))
    }

    pub fn as_str(&self) -> &str {
        // Only sane ASCII ids and UUIDs are ever stored.
        self.0.to_str().unwrap_or_default()
    }
}

fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
}

/// Outermost, before routing: gives the request its id and its span, answers with the id in
/// `X-Request-Id` (on every answer, errors included) and logs one line when the answer's
/// head is ready. The body is sent inside the span too, so lines logged while a stream runs
/// carry the id.
pub async fn log_requests(mut req: Request, next: Next) -> Response {
    let id = RequestId::from_headers(req.headers());
    req.extensions_mut().insert(id.clone());
    // At ERROR level so that the span exists whenever any line is logged: a span's level only
    // decides whether it exists, and `LOG_LEVEL=warn` must still tie warnings to requests.
    let span = tracing::error_span!(
        "request",
        method = %req.method(),
        request_id = %id.as_str(),
        route = tracing::field::Empty,
    );
    let started = Instant::now();
    let open = crate::allocator::Open::start();
    let body_span = span.clone();
    async move {
        let mut resp = next.run(req).await;
        if resp.extensions().get::<RouteRecorded>().is_none() {
            // Answered before routing (a path outside API_PREFIX).
            Span::current().record("route", tracing::field::display(UNMATCHED));
        }
        resp.headers_mut().insert(X_REQUEST_ID, id.0);
        let status = resp.status().as_u16();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match resp.extensions().get::<LoggedError>() {
            Some(LoggedError(err)) if status >= 500 => {
                tracing::warn!(status, ms, error = %err, "request failed");
            }
            Some(LoggedError(err)) => tracing::info!(status, ms, error = %err, "request refused"),
            None => tracing::info!(status, ms, "request served"),
        }
        resp.map(|body| open.hold(crate::server::body::in_span(body, body_span)))
    }
    .instrument(span)
    .await
}

/// Marks an answer whose route was recorded in the request span, with that route.
#[derive(Clone, Debug)]
struct RouteRecorded(Option<MatchedPath>);

/// The route template an answer was routed by (`(no route)` when none matched).
pub fn route_of(resp: &Response) -> &str {
    resp.extensions()
        .get::<RouteRecorded>()
        .and_then(|r| r.0.as_ref())
        .map_or(UNMATCHED, MatchedPath::as_str)
}

/// After routing (a layer of the routed app): records the matched route template in the
/// request span, before the handler logs anything.
pub async fn record_route(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    Span::current().record("route", tracing::field::display(route));
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(RouteRecorded(matched));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_for(sent: Option<&str>) -> String {
        let mut headers = HeaderMap::new();
        if let Some(s) = sent {
            headers.insert(X_REQUEST_ID, HeaderValue::from_str(s).unwrap());
        }
        RequestId::from_headers(&headers).as_str().to_owned()
    }

    #[test]
    fn a_sane_client_id_is_kept() {
        for id in ["abc-123", "Root=1-5f:a/b+c_d.e", &"x".repeat(128)] {
            assert_eq!(id_for(Some(id)), id);
        }
    }

    #[test]
    fn a_missing_or_odd_id_is_replaced_by_a_uuid() {
        for sent in [
            None,
            Some(""),
            Some("has space"),
            Some("quote\"d"),
            Some("a\tb"),
            Some(&"x".repeat(129)),
        ] {
            let id = id_for(sent);
            assert_eq!(id.len(), 36, "{sent:?} -> {id}");
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
            assert_ne!(Some(id.as_str()), sent);
        }
        assert_ne!(id_for(None), id_for(None));
    }
}
