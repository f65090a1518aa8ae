//! `API_PREFIX`: every route is served under a path prefix (`/qwen/v1/models`), and nothing at
//! the bare path, as Qwen2API's Cloudflare worker does. The prefix is taken off before routing,
//! so the routes, the CORS rules and the Anthropic error envelope see the paths they know.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Uri;
use axum::http::uri::PathAndQuery;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::AppError;

/// The configured prefix (`/qwen`: a leading slash, no trailing one).
#[derive(Clone, Debug)]
pub struct Prefix(pub Arc<str>);

/// Routes a request under the prefix to the app without it; anything else is a 404.
pub async fn strip(State(prefix): State<Prefix>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let Some(rest) = without_prefix(path, &prefix.0) else {
        return AppError::RouteNotFound(path.to_owned()).into_response();
    };
    let rewritten = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    // What is left of a valid path after its first segments is a valid path.
    let Ok(pq) = PathAndQuery::try_from(rewritten) else {
        return AppError::RouteNotFound(path.to_owned()).into_response();
    };
    parts.path_and_query = Some(pq);
    let Ok(uri) = Uri::from_parts(parts) else {
        return AppError::RouteNotFound(path.to_owned()).into_response();
    };
    *req.uri_mut() = uri;
    next.run(req).await
}

/// `path` without `prefix`: `/` for the prefix itself, `None` for a path outside it.
fn without_prefix<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?;
    match rest {
        "" => Some("/"),
        r if r.starts_with('/') => Some(r),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::without_prefix;

    #[test]
    fn only_paths_under_the_prefix_are_served() {
        assert_eq!(without_prefix("/qwen", "/qwen"), Some("/"));
        assert_eq!(without_prefix("/qwen/", "/qwen"), Some("/"));
        assert_eq!(
            without_prefix("/qwen/v1/models", "/qwen"),
            Some("/v1/models")
        );
        assert_eq!(without_prefix("/a/b/health", "/a/b"), Some("/health"));
        assert_eq!(without_prefix("/qwenx/v1/models", "/qwen"), None);
        assert_eq!(without_prefix("/v1/models", "/qwen"), None);
        assert_eq!(without_prefix("/", "/qwen"), None);
    }
}
