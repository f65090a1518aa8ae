//! `GET /docs` (no key): a small page, compiled into the binary, that fetches `openapi.json`
//! beside it and lists the paths, methods, parameters, bodies, answers and schemas. It needs no
//! network beyond this server; its script and style are inline and allowed by their hashes
//! alone in a strict Content-Security-Policy.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("docs/page.html");
const STYLE: &str = include_str!("docs/page.css");
const SCRIPT: &str = include_str!("docs/page.js");

/// The page and its policy, put together once.
struct Page {
    html: String,
    policy: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let html = TEMPLATE
        .replace("/*STYLE*/", STYLE)
        .replace("/*SCRIPT*/", SCRIPT);
    let policy = format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
         img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(SCRIPT),
        hash(STYLE)
    );
    Page {
        html,
        // Only base64, quotes and ASCII words: always a valid header value.
        policy: HeaderValue::from_str(&policy)
            .unwrap_or(HeaderValue::from_static("default-src 'none'")),
    }
});

/// A CSP source for an inline element whose content is `text`.
fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The API's documentation, rendered in the browser from `/openapi.json`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "Service",
    responses((status = 200, description = "An HTML page that renders `openapi.json`.", content_type = "text/html", body = String)),
)]
pub async fn page() -> Response {
    let page = &*PAGE;
    let mut resp = Html(page.html.clone()).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, page.policy.clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_inline_script_and_style() {
        let page = &*PAGE;
        let policy = page.policy.to_str().unwrap();
        assert!(
            policy.starts_with("default-src 'none'; script-src 'sha256-"),
            "{policy}"
        );
        assert_eq!(policy.matches("sha256-").count(), 2, "{policy}");
        assert!(page.html.contains(SCRIPT) && page.html.contains(STYLE));
        assert!(!page.html.contains("/*SCRIPT*/") && !page.html.contains("/*STYLE*/"));
        // A hash of "" is the well-known value; ours must differ (the files are not empty).
        assert_ne!(
            hash(SCRIPT),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            hash(""),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
