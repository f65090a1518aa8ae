//! Logs, prefix, probes: `X-Request-Id` on every answer and in every log line of its request,
//! JSON log lines, log files rotated by size, `API_PREFIX` on every route, `GET /`, and
//! `GET /ready` (the store answers and an account is usable).

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::binary::{Server, read_log};
use common::fake_qwen::{FakeQwen, Reply};
use common::qwen_sse;
use common::{KEY, TestApp, body, eventually};
use serde_json::{Value, json};

const ADMIN: &str = "sk-ops-admin";

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_owned()
}

fn is_uuid(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::parse_str(id).is_ok()
}

#[tokio::test]
async fn every_answer_carries_the_request_id_sent_or_a_new_one() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&["Hi"])));
    // Kept when sane, on a success, a refusal (no key), an unknown route and a chat.
    let sent = |path: &str| {
        app.http
            .get(app.url(path))
            .header("x-request-id", "client-id_1.2:3")
    };
    for (req, status) in [
        (sent("/health"), 200),
        (sent("/v1/models"), 401),
        (sent("/no/such/route"), 404),
        (
            app.post("/v1/chat/completions")
                .header("x-request-id", "client-id_1.2:3")
                .json(&body("qwen3.7-plus", false)),
            200,
        ),
        (
            app.post("/v1/messages")
                .header("x-request-id", "client-id_1.2:3")
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
    ] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status);
        assert_eq!(request_id(&resp), "client-id_1.2:3");
    }
    // Made when missing, too long or holding what does not belong in a log line.
    let mut made = Vec::new();
    for sent in [
        None,
        Some("has spaces"),
        Some("a\"b"),
        Some(&*"x".repeat(129)),
    ] {
        let mut req = app.http.get(app.url("/health"));
        if let Some(id) = sent {
            req = req.header("x-request-id", id);
        }
        let id = request_id(&req.send().await.unwrap());
        assert!(is_uuid(&id), "{sent:?} -> {id}");
        made.push(id);
    }
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 4, "each request gets its own id");
    // A browser's preflight gets one too, and may read it (CORS exposes the header).
    let resp = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/v1/chat/completions"))
        .header("origin", "https://chat.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(is_uuid(&request_id(&resp)));
    let resp = app
        .http
        .get(app.url("/health"))
        .header("origin", "https://chat.example.com")
        .send()
        .await
        .unwrap();
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    app.stop().await;
}

#[tokio::test]
async fn api_prefix_serves_every_route_under_it_and_nothing_at_the_bare_path() {
    let app = TestApp::with_accounts(1, &[("API_PREFIX", "/qwen/"), ("ADMIN_KEY", ADMIN)]).await;
    for path in [
        "/qwen",
        "/qwen/",
        "/qwen/health",
        "/qwen/ready",
        "/qwen/health/ready",
        "/qwen/models",
    ] {
        let resp = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let (status, _) = app.json_as("GET", "/qwen/v1/models", KEY, None).await;
    assert_eq!(status, 200);
    let (status, _) = app
        .json_as("GET", "/qwen/api/accountsHealth", ADMIN, None)
        .await;
    assert_eq!(status, 200);
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&["Hi"])));
    let (status, v) = app
        .json_as(
            "POST",
            "/qwen/v1/chat/completions",
            KEY,
            Some(body("qwen3.7-plus", false)),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hi");
    assert_eq!(app.fake.completions().len(), 1);

    // Nothing at the bare paths (nor at a look-alike prefix): our 404, and no upstream call.
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/models"),
        ("GET", "/v1/models"),
        ("GET", "/api/accountsHealth"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/qwenx/health"),
    ] {
        let (status, v) = app
            .json_as(method, path, ADMIN, Some(body("qwen3.7-plus", false)))
            .await;
        assert_eq!(status, 404, "{method} {path}: {v}");
        common::assert_error_envelope(&v, "invalid_request_error", "not_found");
    }
    assert_eq!(app.fake.completions().len(), 1);

    // The routes see their own paths: an Anthropic error keeps Anthropic's envelope, and the
    // admin API still gets no CORS while /v1 does.
    let resp = app
        .post("/qwen/v1/messages")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    for (path, cors) in [("/qwen/v1/models", true), ("/qwen/api/keys", false)] {
        let resp = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://chat.example.com")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        let allowed = resp.headers().contains_key("access-control-allow-origin");
        assert_eq!(allowed, cors, "{path}");
    }
    let about = app.get_json("/qwen").await;
    assert_eq!(about["surfaces"]["responses"], "/qwen/v1/responses");
    assert_eq!(about["base_urls"]["anthropic"], "/qwen");
    assert_eq!(about["health"]["ready"], "/qwen/ready");
    app.stop().await;
}

#[tokio::test]
async fn the_root_describes_the_service_without_a_key() {
    let app = TestApp::with_accounts(0, &[]).await;
    let resp = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let about: Value = resp.json().await.unwrap();
    assert_eq!(
        about,
        json!({
            "name": "qwen2api",
            "version": env!("CARGO_PKG_VERSION"),
            "description": env!("CARGO_PKG_DESCRIPTION"),
            "base_urls": {"openai": "/v1", "anthropic": "/"},
            "surfaces": {
                "chat_completions": "/v1/chat/completions",
                "messages": "/v1/messages",
                "responses": "/v1/responses",
                "models": "/v1/models",
                "images": "/v1/images/generations",
                "videos": "/v1/videos",
                "files": "/v1/files",
            },
            "auth": "Authorization: Bearer <key> or x-api-key: <key>",
            "health": {"live": "/health", "ready": "/ready"},
            "admin": "/api",
            "admin_page": "/admin",
            "metrics": "/metrics",
            "reference": {"openapi": "/openapi.json", "page": "/docs"},
            "docs": "README.md and docs/ in the qwen2api source",
        })
    );
    app.stop().await;
}

#[tokio::test]
async fn ready_needs_an_answering_store_and_a_usable_account() {
    let none = TestApp::with_accounts(0, &[]).await;
    for path in ["/ready", "/health/ready"] {
        let resp = none.http.get(none.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 503, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["status"], "not_ready");
        assert_eq!(v["accounts"], json!({"total": 0, "usable": 0}));
        let reason = v["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("no Qwen account is configured"),
            "{reason}"
        );
    }
    // Liveness stays 200.
    let resp = none.http.get(none.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    none.stop().await;

    let one = TestApp::with_accounts(1, &[]).await;
    for path in ["/ready", "/health/ready"] {
        let resp = one.http.get(one.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v,
            json!({"status": "ready", "accounts": {"total": 1, "usable": 1}})
        );
    }
    one.stop().await;
}

/// A `redis-server` of this test's own, so that it can be stopped under a running app.
fn own_redis() -> Option<(std::process::Child, String)> {
    let port = common::binary::free_port();
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(child) = spawned {
        return Some((child, format!("redis://127.0.0.1:{port}/")));
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true requires redis-server"
    );
    eprintln!("note: redis-server not found; skipping");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_the_store_does_not_answer() {
    let Some((mut redis, url)) = own_redis() else {
        return;
    };
    let up = eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(url.trim_start_matches("redis://").trim_end_matches('/'))
            .is_ok()
    })
    .await;
    assert!(up, "redis-server listens");
    let app = TestApp::with_accounts(1, &[("DATA_SAVE_MODE", "redis"), ("REDIS_URL", &url)]).await;
    let resp = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = redis.kill();
    let _ = redis.wait();
    let resp = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.starts_with("the store (redis) "), "{reason}");
    assert!(
        !reason.contains("127.0.0.1"),
        "no store address in the answer: {reason}"
    );
    // The accounts are still usable; only the store is not.
    assert_eq!(v["accounts"]["usable"], 1);
    let resp = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "liveness does not ask the store");
    app.stop().await;
}

/// The JSON lines of `text`; every line must be one JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .inspect(|v| assert!(v.is_object(), "{v}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_request_id_in_every_line_of_the_request() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    fake.push_completion(None, Reply::sse(qwen_sse::fast_answer(&["Hi"])));
    let dir = tempfile::tempdir().unwrap();
    let base = fake.base_url();
    let vars = [
        ("API_KEY", KEY),
        ("QWEN_AUTH_TOKEN", token.as_str()),
        ("QWEN_BASE_URL", base.as_str()),
        ("DATA_SAVE_MODE", "none"),
        ("LOG_FORMAT", "json"),
        // The handler's debug line ("translated request") is a line inside the request.
        ("LOG_LEVEL", "qwen2api=debug,warn"),
        ("API_PREFIX", "/qwen"),
    ];
    let server = Server::start(dir.path(), &vars);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .post(server.url("/qwen/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "ops-json-1")
        .json(&body("qwen3.7-plus", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(request_id(&resp), "ops-json-1");
    let request_served = |lines: &[Value]| {
        lines
            .iter()
            .any(|l| l["span"]["request_id"] == "ops-json-1" && l["message"] == "request served")
    };
    assert!(
        eventually(Duration::from_secs(5), || request_served(&json_lines(
            &read_log(dir.path())
        )))
        .await,
        "{}",
        read_log(dir.path())
    );
    let lines = json_lines(&read_log(dir.path()));
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "ops-json-1")
        .collect();
    let messages: Vec<&str> = ours.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(messages.contains(&"translated request"), "{messages:?}");
    // Every line logged inside the request is in its span, with the route (without the
    // prefix: the route template) and the method.
    for line in &ours {
        assert_eq!(
            line["span"],
            json!({
                "name": "request",
                "method": "POST",
                "request_id": "ops-json-1",
                "route": "/v1/chat/completions",
            }),
            "{line}"
        );
    }
    let last = ours.last().unwrap();
    let mut keys: Vec<&str> = last
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "level",
            "message",
            "ms",
            "span",
            "status",
            "target",
            "timestamp"
        ],
        "{last}"
    );
    assert_eq!(last["level"], "INFO");
    assert_eq!(last["status"], 200);
    assert!(
        last["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{last}"
    );

    // `healthcheck --ready` asks under the prefix.
    let port = server.addr.port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_qwen2api"))
        .args(["healthcheck", "--ready"])
        .env_clear()
        .envs(vars)
        .env("SERVICE_PORT", &port)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_name_the_request_id_and_a_bad_prefix_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("API_KEY", KEY),
            ("DATA_SAVE_MODE", "none"),
            ("NO_COLOR", "1"),
        ],
    );
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(server.url("/no/such/route"))
        .header("x-request-id", "ops-text-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let logged = eventually(Duration::from_secs(5), || {
        read_log(dir.path()).contains("ops-text-1")
    })
    .await;
    let log = read_log(dir.path());
    assert!(logged, "{log}");
    let line = log.lines().find(|l| l.contains("ops-text-1")).unwrap();
    assert!(
        line.contains("request{method=GET request_id=ops-text-1 route=(no route)}"),
        "{line}"
    );
    assert!(
        line.contains("request refused") && line.contains("status=404"),
        "{line}"
    );
    drop(server);

    let out = Command::new(env!("CARGO_BIN_EXE_qwen2api"))
        .env_clear()
        .env("API_KEY", KEY)
        .env("DATA_SAVE_MODE", "none")
        .env("API_PREFIX", "qwen")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("API_PREFIX: expected a path such as /qwen"),
        "{stderr}"
    );
}

/// Starts the binary with `vars` and file logs in `dir/logs`, sends `n` requests, and returns
/// the log files once the last request's line is written, with the request ids in them in the
/// order written.
async fn rotate(dir: &Path, vars: &[(&str, &str)], n: usize) -> (Vec<(String, u64)>, Vec<String>) {
    let logs = dir.join("logs");
    let logs_str = logs.to_string_lossy().into_owned();
    let mut all = vec![
        ("API_KEY", KEY),
        ("DATA_SAVE_MODE", "none"),
        ("LOG_FORMAT", "json"),
        ("LOG_DIR", logs_str.as_str()),
    ];
    all.extend_from_slice(vars);
    let server = Server::start(dir, &all);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for i in 0..n {
        let resp = http
            .get(server.url("/health"))
            .header("x-request-id", format!("rot-{i:03}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let last = format!("rot-{:03}", n - 1);
    let current = logs.join("qwen2api.log");
    let written = eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&current).is_ok_and(|t| t.contains(&last))
    })
    .await;
    assert!(written, "the last line reaches the current file");
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    // Oldest first: .2, .1, then the current file.
    let mut ids = Vec::new();
    for (name, _) in files.iter().rev() {
        let text = std::fs::read_to_string(logs.join(name)).unwrap();
        ids.extend(json_lines(&text).iter().filter_map(|l| {
            let id = l["span"]["request_id"].as_str()?;
            (l["message"] == "request served").then(|| id.to_owned())
        }));
    }
    (files, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_files_rotate_by_size_and_keep_log_files_files() {
    let dir = tempfile::tempdir().unwrap();
    // 0.002 MiB = 2097 bytes: about eight request lines a file.
    let (files, ids) = rotate(
        dir.path(),
        &[("LOG_FILE_MAX_MB", "0.002"), ("LOG_FILES", "3")],
        60,
    )
    .await;
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["qwen2api.log", "qwen2api.log.1", "qwen2api.log.2"]);
    for (name, len) in &files[1..] {
        // Rotated past the limit, by one whole line at most.
        assert!((2098..2097 + 600).contains(len), "{name}: {len} bytes");
    }
    // What is kept is the newest lines, none missing, in order.
    assert!(ids.len() >= 12, "{ids:?}");
    let want: Vec<String> = (60 - ids.len()..60)
        .map(|i| format!("rot-{i:03}"))
        .collect();
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen2api_file_log_names_work_as_aliases() {
    let dir = tempfile::tempdir().unwrap();
    // MAX_LOG_FILES counts the rotated files besides the one being written, as in Qwen2API.
    let (files, _) = rotate(
        dir.path(),
        &[
            ("ENABLE_FILE_LOG", "true"),
            ("MAX_LOG_FILE_SIZE", "0.002"),
            ("MAX_LOG_FILES", "1"),
        ],
        40,
    )
    .await;
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["qwen2api.log", "qwen2api.log.1"]);
}
