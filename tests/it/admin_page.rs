//! The admin page: its files (no key, a strict Content-Security-Policy, nothing from elsewhere,
//! under `API_PREFIX` too), the admin routes it added (recent requests, their live feed, an
//! account re-tested now), the masked settings, and the page itself driven in headless
//! Chromium (`conformance/admin_page.py`).

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{KEY, TestApp};
use futures::StreamExt;
use serde_json::{Value, json};

const ADMIN: &str = "sk-admin-page-key";
const MODEL: &str = "qwen3.7-plus";
/// Tokens the fake's default answer reports per request.
const PROMPT_TOKENS: u64 = 1049;
const COMPLETION_TOKENS: u64 = 2;
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

async fn app(vars: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("ADMIN_KEY", ADMIN)];
    all.extend_from_slice(vars);
    TestApp::with_accounts(1, &all).await
}

async fn admin(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    app.json_as(method, path, ADMIN, body).await
}

/// A non-streamed chat with `key` and the request id `id`; answers 200.
async fn chat(app: &TestApp, key: &str, id: &str) {
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", id)
        .json(&common::body(MODEL, false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], id);
    let _ = resp.bytes().await.unwrap();
}

/// The recent requests as `GET /api/requests{query}` lists them.
async fn recent(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, v) = admin(app, "GET", &format!("/api/requests{query}"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["success"], true);
    v["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_page_and_its_files_need_no_key_and_carry_a_strict_policy() {
    let app = app(&[("CORS_ALLOW_ORIGINS", "*")]).await;
    let files = [
        (
            "/admin",
            "text/html; charset=utf-8",
            qwen2api::admin::INDEX_HTML,
        ),
        (
            "/admin/admin.css",
            "text/css; charset=utf-8",
            qwen2api::admin::ADMIN_CSS,
        ),
        (
            "/admin/admin.js",
            "text/javascript; charset=utf-8",
            qwen2api::admin::ADMIN_JS,
        ),
    ];
    for (path, content_type, text) in files {
        let resp = app
            .http
            .get(app.url(path))
            .header("origin", "https://elsewhere.example")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers().clone();
        assert_eq!(h["content-type"], content_type, "{path}");
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(h.get("access-control-allow-origin").is_none(), "{path}");
        assert_eq!(resp.text().await.unwrap(), text, "{path}");
    }
    // Everything is this server's own: relative URLs, no other host, nothing inline.
    let html = qwen2api::admin::INDEX_HTML;
    assert!(html.contains(r#"<link rel="stylesheet" href="admin/admin.css">"#));
    assert!(html.contains(r#"<script src="admin/admin.js" defer></script>"#));
    assert!(!html.contains("style=") && !html.contains("<style") && !html.contains("onclick"));
    for text in [html, qwen2api::admin::ADMIN_CSS, qwen2api::admin::ADMIN_JS] {
        let elsewhere = text.replace("http://www.w3.org/2000/svg", "");
        assert!(!elsewhere.contains("http://") && !elsewhere.contains("https://"));
        assert!(!elsewhere.contains("//cdn"));
    }
    // The key goes in a header, never in a URL; EventSource could not send it.
    let js = qwen2api::admin::ADMIN_JS;
    assert!(js.contains("sessionStorage") && js.contains("Authorization: 'Bearer '"));
    assert!(!js.contains("EventSource") && !js.contains("localStorage"));
    // The admin API answers a browser from elsewhere without CORS headers.
    let resp = app
        .http
        .get(app.url("/api/requests"))
        .bearer_auth(ADMIN)
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    app.stop().await;
}

#[tokio::test]
async fn under_api_prefix_the_page_is_under_the_prefix() {
    let app = app(&[("API_PREFIX", "/qwen")]).await;
    let page = app.http.get(app.url("/qwen/admin")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), qwen2api::admin::INDEX_HTML);
    let js = app.http.get(app.url("/qwen/admin/admin.js")).send().await;
    assert_eq!(js.unwrap().status(), 200);
    let bare = app.http.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(bare.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn with_an_admin_listener_the_page_is_served_there_only() {
    let app = app(&[("ADMIN_LISTEN_ADDRESS", "127.0.0.1:1")]).await;
    let on_main = app.http.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(on_main.status(), 404);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(qwen2api::server::serve_app(
        listener,
        qwen2api::server::admin_router(app.state.clone()),
        std::future::pending(),
    ));
    for path in ["/admin", "/admin/admin.css", "/admin/admin.js"] {
        let resp = app
            .http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-security-policy"], CSP, "{path}");
    }
    // The requests served on the main port are listed on the admin one.
    chat(&app, KEY, "on-main-1").await;
    let listed = common::eventually_async(Duration::from_secs(10), || async {
        let v: Value = app
            .http
            .get(format!("http://{addr}/api/requests"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["data"][0]["requestId"] == "on-main-1"
    })
    .await;
    assert!(listed);
    app.stop().await;
}

#[tokio::test]
async fn recent_requests_need_the_admin_key_and_list_what_was_just_served() {
    let app = app(&[]).await;
    for (key, status) in [(None, 401), (Some(KEY), 403)] {
        let resp = app
            .request_as("GET", "/api/requests", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
    }
    let (status, created) = admin(
        &app,
        "POST",
        "/api/keys",
        Some(json!({ "label": "page-ci" })),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    chat(&app, &key, "page-req-1").await;
    chat(&app, KEY, "page-req-2").await;
    // Recorded once the answer's body is done with, which may be just after the client has it.
    let both = common::eventually_async(Duration::from_secs(10), || async {
        recent(&app, "").await.len() == 2
    })
    .await;
    assert!(both, "{:?}", recent(&app, "").await);
    let rows = recent(&app, "").await;
    // Newest first; admin calls are not listed.
    assert_eq!(rows[0]["requestId"], "page-req-2");
    assert_eq!(rows[0]["key"], "API_KEY");
    let row = &rows[1];
    assert_eq!(row["requestId"], "page-req-1");
    assert_eq!(row["key"], "page-ci");
    assert_eq!(row["surface"], "chat.completions");
    assert_eq!(row["route"], "/v1/chat/completions");
    assert_eq!(row["model"], MODEL);
    assert_eq!(row["account"], "account_1");
    assert_eq!(row["status"], 200);
    assert_eq!(row["tokensIn"], PROMPT_TOKENS);
    assert_eq!(row["tokensOut"], COMPLETION_TOKENS);
    assert_eq!(row["failovers"], 0);
    assert!(row["latencyMs"].is_u64());
    assert!(row["ttftMs"].is_null(), "not streamed: {row}");
    assert!(row["time"].as_str().unwrap().ends_with('Z'), "{row}");
    let mut keys: Vec<&str> = row
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "account",
            "failovers",
            "key",
            "latencyMs",
            "model",
            "requestId",
            "route",
            "status",
            "surface",
            "time",
            "tokensIn",
            "tokensOut",
            "ttftMs"
        ]
    );
    // Filters.
    let mine = recent(&app, "?key=page-ci").await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["requestId"], "page-req-1");
    assert_eq!(recent(&app, "?status=2&model=qwen3.7-plus").await.len(), 2);
    assert!(recent(&app, "?status=4").await.is_empty());
    assert!(recent(&app, "?account=account_9").await.is_empty());
    assert_eq!(recent(&app, "?limit=1").await[0]["requestId"], "page-req-2");
    // A refused request is listed with its status and no model or account.
    let resp = app
        .request_as("POST", "/v1/chat/completions", Some(&key))
        .header("x-request-id", "page-req-bad")
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let _ = resp.bytes().await;
    let listed = common::eventually_async(Duration::from_secs(10), || async {
        recent(&app, "?status=4").await.len() == 1
    })
    .await;
    assert!(listed);
    let bad = &recent(&app, "?status=4").await[0];
    assert_eq!(bad["requestId"], "page-req-bad");
    assert_eq!(bad["key"], "page-ci");
    assert_eq!(bad["status"], 400);
    assert_eq!(bad["tokensIn"], 0);
    assert!(bad["account"].is_null(), "{bad}");
    app.stop().await;
}

#[tokio::test]
async fn a_request_that_failed_over_names_the_account_that_answered() {
    let app = TestApp::with_accounts(2, &[("ADMIN_KEY", ADMIN)]).await;
    app.fake.push_completion(
        Some("acct1"),
        // 200 with a JSON business error instead of a stream: the next account is tried.
        common::fake_qwen::Reply::http(
            200,
            "application/json",
            common::qwen_sse::business_error("Bad_Request", "Internal error"),
        ),
    );
    chat(&app, KEY, "failed-over-1").await;
    let listed = common::eventually_async(Duration::from_secs(10), || async {
        recent(&app, "").await.len() == 1
    })
    .await;
    assert!(listed);
    let row = &recent(&app, "").await[0];
    assert_eq!(row["requestId"], "failed-over-1");
    assert_eq!(row["account"], "account_2");
    assert_eq!(row["failovers"], 1);
    assert_eq!(row["status"], 200);
    assert_eq!(row["tokensIn"], PROMPT_TOKENS);
    app.stop().await;
}

/// Reads SSE blocks from `stream` until an `event: request` one; its data.
async fn next_request_event(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
) -> Value {
    loop {
        if let Some(at) = buf.find("\n\n") {
            let block: String = buf.drain(..at + 2).collect();
            if let Some(data) = block.strip_prefix("event: request\ndata: ") {
                return serde_json::from_str(data.trim_end()).unwrap();
            }
            assert!(block.starts_with(": "), "only comments besides: {block:?}");
            continue;
        }
        let chunk = stream.next().await.expect("the feed stays open").unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn the_live_feed_sends_each_finished_request() {
    let app = app(&[]).await;
    let resp = app
        .request_as("GET", "/api/requests/live", None)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app
        .request_as(
            "GET",
            "/api/requests/live?surface=chat.completions",
            Some(ADMIN),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut feed = resp.bytes_stream();
    let mut buf = String::new();
    // Filtered out: a models listing.
    let models = app.get("/v1/models").send().await.unwrap();
    assert_eq!(models.status(), 200);
    let _ = models.bytes().await;
    chat(&app, KEY, "live-1").await;
    let event = tokio::time::timeout(
        Duration::from_secs(30),
        next_request_event(&mut feed, &mut buf),
    )
    .await
    .expect("an event comes");
    assert_eq!(event["requestId"], "live-1");
    assert_eq!(event["key"], "API_KEY");
    assert_eq!(event["surface"], "chat.completions");
    assert_eq!(event["model"], MODEL);
    assert_eq!(event["status"], 200);
    assert_eq!(event["tokensOut"], COMPLETION_TOKENS);
    // A streamed one has its time to first token.
    let resp = app
        .post("/v1/chat/completions")
        .header("x-request-id", "live-2")
        .json(&common::body(MODEL, true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await.unwrap();
    let event = tokio::time::timeout(
        Duration::from_secs(30),
        next_request_event(&mut feed, &mut buf),
    )
    .await
    .expect("an event comes");
    assert_eq!(event["requestId"], "live-2");
    assert!(event["ttftMs"].is_u64(), "{event}");
    assert_eq!(event["tokensIn"], PROMPT_TOKENS);
    // At shutdown the feed ends (it would hold the shutdown for its grace period).
    app.state.recent().close();
    let after_close = tokio::time::timeout(Duration::from_secs(30), async {
        let mut tail = Vec::new();
        while let Some(chunk) = feed.next().await {
            tail.extend_from_slice(&chunk.unwrap());
        }
        tail
    })
    .await
    .expect("the feed ends");
    assert!(!String::from_utf8_lossy(&after_close).contains("event: request"));
    app.stop().await;
}

#[tokio::test]
async fn an_account_is_re_tested_now() {
    let app = app(&[]).await;
    let (status, v) = admin(&app, "POST", "/api/accounts/account_1/retest", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"],
        json!({ "accountId": "account_1", "ok": true, "state": "active", "reason": null, "error": null })
    );
    app.fake.revoke("acct1");
    let (status, v) = admin(&app, "POST", "/api/accounts/account_1/retest", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"],
        json!({ "accountId": "account_1", "ok": false, "state": "disabled", "reason": "token_rejected", "error": "auth" })
    );
    let (_, health) = admin(&app, "GET", "/api/accountsHealth", None).await;
    assert_eq!(health["data"]["accounts"][0]["state"], "disabled");
    // A password account signs in again.
    app.fake.add_user("page@example.com", "pw-page");
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({ "email": "page@example.com", "password": "pw-page" })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let before = app.fake.sign_ins().len();
    let (status, v) = admin(&app, "POST", "/api/accounts/page@example.com/retest", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["ok"], true);
    assert_eq!(v["data"]["state"], "active");
    assert_eq!(app.fake.sign_ins().len(), before + 1);
    let (status, v) = admin(&app, "POST", "/api/accounts/nobody/retest", None).await;
    assert_eq!(status, 404, "{v}");
    common::assert_error_envelope(&v, "invalid_request_error", "not_found");
    let resp = app
        .request_as("POST", "/api/accounts/account_1/retest", Some(KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn the_settings_show_every_setting_and_no_secret() {
    let proxy_password = "proxy-pw-never-shown";
    let upstream_proxy = format!("http://user:{proxy_password}@127.0.0.1:9");
    let app = app(&[
        ("API_KEY", "sk-first-user-key,sk-second-user-key"),
        ("UPSTREAM_PROXY", &upstream_proxy),
    ])
    .await;
    let token = {
        let (_, health) = admin(&app, "GET", "/api/accountsHealth", None).await;
        assert_eq!(health["data"]["totalAccounts"], 1);
        app.state.accounts().pool().accounts()[0]
            .credentials()
            .token
            .expose()
            .to_owned()
    };
    let resp = app
        .request_as("GET", "/api/configStatus", Some(ADMIN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    for secret in [
        ADMIN,
        "sk-first-user-key",
        "sk-second-user-key",
        proxy_password,
        token.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} shown in {text}");
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    let settings = v["data"]["settings"].as_array().unwrap();
    let value = |name: &str| {
        settings
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {settings:?}"))["value"]
            .clone()
    };
    assert_eq!(value("ADMIN_KEY"), "(set, hidden)");
    assert_eq!(value("API_KEY"), json!(["(set, hidden)", "(set, hidden)"]));
    assert_eq!(
        value("ACCOUNTS"),
        json!([{ "id": "account_1", "kind": "token", "proxy": null }])
    );
    assert_eq!(value("UPSTREAM_PROXY"), "http://user:*****@127.0.0.1:9/");
    assert_eq!(value("DATA_SAVE_MODE"), "none");
    assert_eq!(value("DATA_ENCRYPTION_KEY"), Value::Null);
    assert_eq!(value("RETRY_COUNT"), 3);
    assert_eq!(settings.len(), 59);
    app.stop().await;
}

/// The Python that runs `conformance/admin_page.py`, or `None` (after a note) when this
/// machine has no Python with selenium or no Chromium; under `CI=true` both are required.
fn browser_python() -> Option<String> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let python = std::env::var("QWEN2API_CONFORMANCE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    let chromium =
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    match python {
        Some(p) if chromium => Some(p),
        _ => {
            assert!(
                !ci,
                "CI=true requires the browser test: QWEN2API_CONFORMANCE_PYTHON (with selenium), \
                 /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "note: no QWEN2API_CONFORMANCE_PYTHON or no /usr/bin/chromium and /usr/bin/chromedriver; \
                 skipping the admin page in headless Chromium"
            );
            None
        }
    }
}

#[tokio::test]
async fn the_admin_page_in_headless_chromium() {
    let Some(python) = browser_python() else {
        return;
    };
    let (email, password) = ("browser@example.com", "pw-browser-test");
    let fake = common::fake_qwen::FakeQwen::start().await;
    fake.add_user(email, password);
    let app = TestApp::spawn_with(fake, &[("ADMIN_KEY", ADMIN)]).await;
    // target/admin-screenshots, beside target/tmp.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("admin-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/admin_page.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .env("QWEN2API_BASE", app.url(""))
        .env("QWEN2API_ADMIN_KEY", ADMIN)
        .env("QWEN2API_ACCOUNT_EMAIL", email)
        .env("QWEN2API_ACCOUNT_PASSWORD", password)
        .env("QWEN2API_SCREENSHOTS", &shots)
        .env("NO_PROXY", "127.0.0.1,localhost")
        // selenium must not look for (or download) a driver or a browser of its own.
        .env("SE_OFFLINE", "true");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("the Python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "admin_page.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{stdout}");
    assert!(stdout.contains("admin page: ok"), "{stdout}");
    // What the page did, seen from the server and the fake.
    let sign_ins = app.fake.sign_ins();
    assert_eq!(sign_ins.len(), 2, "added, then re-tested");
    assert_eq!(app.fake.completions().len(), 1, "one request got through");
    let rows = recent(&app, "").await;
    let statuses: Vec<(Value, Value)> = rows
        .iter()
        .map(|r| (r["key"].clone(), r["status"].clone()))
        .collect();
    assert_eq!(
        statuses,
        [(Value::Null, json!(401)), (json!("browser-ci"), json!(200))]
    );
    let (_, keys) = admin(&app, "GET", "/api/keys", None).await;
    assert!(!keys.to_string().contains("browser-ci"), "{keys}");
    let accounts = app.state.accounts().pool().accounts();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].id, email);
    assert_eq!(accounts[0].credentials().proxy, None, "set, then cleared");
    for name in ["signin", "accounts", "keys", "usage", "live", "settings"] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{name}"
        );
    }
    app.stop().await;
}
