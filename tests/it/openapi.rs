//! `GET /openapi.json` and `GET /docs`: the document lists exactly the routes the router
//! serves, each with the security its auth layer enforces; its references resolve; it moves
//! under `API_PREFIX`; the page is served without a key, from the binary, under a strict CSP.
//! (The independent validator runs in `conformance.rs`.)

use crate::common;

use std::collections::BTreeSet;

use base64::Engine as _;
use common::{KEY, TestApp};
use serde_json::Value;
use sha2::{Digest, Sha256};

const ADMIN: &str = "sk-openapi-admin";

/// Every documented route; a route added to the router without its `#[utoipa::path]` (or the
/// other way round) fails `the_document_lists_exactly_the_routed_paths` before this list.
const ROUTES: usize = 48;

async fn document(app: &TestApp, path: &str) -> Value {
    let resp = app.http.get(app.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path} needs no key");
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.unwrap()
}

/// (METHOD, path) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            out.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    out
}

/// The security scheme names an operation accepts (any one of them).
fn schemes(op: &Value) -> Vec<String> {
    op["security"]
        .as_array()
        .expect("every operation states its security")
        .iter()
        .flat_map(|req| req.as_object().unwrap().keys().cloned())
        .collect()
}

/// A path with each `{param}` filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_document_lists_exactly_the_routed_paths() {
    let app = TestApp::with_accounts(1, &[("ADMIN_KEY", ADMIN)]).await;
    let doc = document(&app, "/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "qwen2api");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // Kept for a look (and for the docs page's own checks by hand).
    let saved = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi.json");
    std::fs::write(&saved, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let documented = operations(&doc);
    let routed: BTreeSet<(String, String)> = qwen2api::api::route_table(&app.state)
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes without docs: {undocumented:?}"
    );
    assert!(unrouted.is_empty(), "docs without routes: {unrouted:?}");
    assert_eq!(routed.len(), ROUTES);
    // Handlers of the same name in two modules would share an operation id (OpenAPI wants
    // each one unique).
    let ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "operation ids repeat: {ids:?}");
    assert_eq!(
        qwen2api::api::route_table(&app.state).len(),
        ROUTES,
        "no route twice"
    );
    app.stop().await;
}

/// The security the document states is what the server enforces: without a key a client
/// route answers 401, with a user key an admin route answers 403, an open route answers
/// neither (and every route is routed: no 404 or 405 from the fallbacks).
#[tokio::test]
async fn each_operation_states_the_security_the_server_enforces() {
    let app = TestApp::with_accounts(1, &[("ADMIN_KEY", ADMIN)]).await;
    let doc = document(&app, "/openapi.json").await;
    let (mut client, mut admin, mut open) = (0, 0, 0);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            let url = concrete(path);
            let bare = app.request_as(&method, &url, None).send().await.unwrap();
            let bare = bare.status().as_u16();
            match schemes(op).as_slice() {
                [a, b] if a == "bearer" && b == "x_api_key" => {
                    assert!(path.starts_with("/v1/"), "{method} {path}");
                    assert_eq!(bare, 401, "{method} {path} without a key");
                    client += 1;
                }
                [a, b] if a == "admin_bearer" && b == "admin_x_api_key" => {
                    assert_eq!(bare, 401, "{method} {path} without a key");
                    let user = app
                        .request_as(&method, &url, Some(KEY))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(user.status(), 403, "{method} {path} with a user key");
                    admin += 1;
                }
                [] => {
                    assert!(
                        ![401, 403, 404, 405].contains(&bare),
                        "{method} {path}: {bare}"
                    );
                    open += 1;
                }
                other => panic!("{method} {path}: unexpected security {other:?}"),
            }
        }
    }
    assert_eq!((client, admin, open), (21, 16, 11));
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["x_api_key"]["in"], "header");
    assert_eq!(schemes["x_api_key"]["name"], "x-api-key");
    assert_eq!(schemes.len(), 4);
    app.stop().await;
}

/// Every `$ref` in `v`, recursively.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn schemas_come_from_the_wire_types_and_every_reference_resolves() {
    let app = TestApp::with_accounts(1, &[]).await;
    let doc = document(&app, "/openapi.json").await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a local schema reference: {r}"));
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }
    // The request bodies are the structs the handlers read.
    let chat = &schemas["ChatCompletionRequest"];
    assert_eq!(chat["required"], serde_json::json!(["model", "messages"]));
    assert_eq!(
        doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/ChatCompletionRequest"
    );
    let messages = &doc["paths"]["/v1/messages"]["post"];
    assert_eq!(
        messages["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/MessageOut"
    );
    // Each surface's errors in its own envelope.
    assert_eq!(
        messages["responses"]["529"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/AnthropicErrorEnvelope"
    );
    let chat_429 = &doc["paths"]["/v1/chat/completions"]["post"]["responses"]["429"];
    assert_eq!(
        chat_429["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorEnvelope"
    );
    assert_eq!(
        chat_429["headers"]["Retry-After"]["schema"]["type"],
        "integer"
    );
    assert_eq!(
        schemas["ErrorBody"]["required"],
        serde_json::json!(["message", "type", "param", "code"])
    );
    app.stop().await;
}

#[tokio::test]
async fn under_api_prefix_the_document_names_the_prefix_as_its_server() {
    let app = TestApp::with_accounts(1, &[("API_PREFIX", "/qwen")]).await;
    let doc = document(&app, "/qwen/openapi.json").await;
    assert_eq!(doc["servers"], serde_json::json!([{"url": "/qwen"}]));
    // The paths stay as the router knows them; the server carries the prefix.
    assert!(doc["paths"]["/v1/chat/completions"].is_object());
    let bare = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(bare.status(), 404);
    let page = app.http.get(app.url("/qwen/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        app.http
            .get(app.url("/docs"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    app.stop().await;
}

/// A CSP source for an inline element's text.
fn csp_hash(text: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()));
    format!("'sha256-{b64}'")
}

/// The text between the first `<tag>` and its closing tag.
fn inline<'a>(html: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = html.find(&open).unwrap() + open.len();
    let end = start + html[start..].find(&format!("</{tag}>")).unwrap();
    &html[start..end]
}

#[tokio::test]
async fn the_docs_page_needs_no_key_and_nothing_but_this_server() {
    let app = TestApp::with_accounts(1, &[]).await;
    let resp = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let policy = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = resp.text().await.unwrap();
    // No CDN, no remote asset: the page fetches openapi.json beside it and nothing else.
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    assert!(
        html.contains("fetch(\"openapi.json\""),
        "the page reads the document"
    );
    let script = inline(&html, "script");
    let style = inline(&html, "style");
    assert!(script.len() > 2000, "the renderer is in the page");
    assert_eq!(
        policy,
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            csp_hash(script),
            csp_hash(style)
        )
    );
    app.stop().await;
}
