//! Load shedding, body and message limits, CORS and the separate admin listener.

use crate::common;

use std::time::Duration;

use common::fake_qwen::{End, Reply};
use common::qwen_sse::{self as sse, RID};
use common::{KEY, TestApp, body};
use serde_json::{Value, json};

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn requests_beyond_the_limit_are_shed_at_once() {
    let app = TestApp::with_accounts(1, &[("MAX_CONCURRENT_REQUESTS", "1")]).await;
    let slow = sse::stream(&[
        sse::created(sse::CHAT_ID, sse::PARENT_ID, RID, "0"),
        sse::answer(RID, "a", 1),
    ]);
    app.fake
        .push_completion(None, Reply::sse(slow).end(End::Hang));
    let first = app.chat(body("qwen3.7-plus", true)).await;
    assert_eq!(first.status(), 200);
    let calls = app.fake.completions().len();
    let shed = app.chat(body("qwen3.7-plus", false)).await;
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(
        error_code(shed).await,
        (503, "server_overloaded".to_owned())
    );
    assert_eq!(
        app.fake.completions().len(),
        calls,
        "a shed request never reaches the upstream"
    );
    drop(first);
    // The permit is released when the first stream's body is dropped.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let resp = app.chat(body("qwen3.7-plus", false)).await;
        if resp.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Health stays reachable whatever the load.
    assert_eq!(
        app.http
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn body_size_depth_and_message_count_limits() {
    let app = TestApp::with_accounts(1, &[("MAX_BODY_MB", "1"), ("MAX_MESSAGES", "3")]).await;
    let big = "x".repeat(1024 * 1024 + 10);
    let resp = app
        .chat(json!({"model": "qwen3.7-plus", "messages": [{"role": "user", "content": big}]}))
        .await;
    assert_eq!(error_code(resp).await, (413, "body_too_large".to_owned()));
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let raw = format!(
        r#"{{"model":"qwen3.7-plus","messages":[{{"role":"user","content":"x"}}],"x":{deep}}}"#
    );
    let resp = app
        .post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, (400, "invalid_json".to_owned()));
    let msgs: Vec<Value> = (0..4)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let resp = app
        .chat(json!({"model": "qwen3.7-plus", "messages": msgs}))
        .await;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (
            status,
            v["error"]["code"].as_str(),
            v["error"]["param"].as_str()
        ),
        (400, Some("too_many_messages"), Some("messages"))
    );
    assert_eq!(app.fake.completions().len(), 0);
}

#[tokio::test]
async fn cors_lets_browsers_call_v1_but_not_the_admin_api() {
    let app = TestApp::with_accounts(1, &[]).await;
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/v1/chat/completions"))
        .header("origin", "https://chat.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(
        preflight.status().is_success(),
        "{:?} {:?}",
        preflight.status(),
        preflight.headers()
    );
    // The origin is mirrored (with `Vary: Origin`), which every browser accepts.
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://chat.example.com"
    );
    let resp = app
        .post("/v1/chat/completions")
        .header("origin", "https://x.example")
        .json(&body("qwen3.7-plus", false))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://x.example"
    );
    let admin = app
        .http
        .get(app.url("/api/accountsHealth"))
        .bearer_auth(KEY)
        .header("origin", "https://x.example")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    assert!(admin.headers().get("access-control-allow-origin").is_none());

    let app =
        TestApp::with_accounts(1, &[("CORS_ALLOW_ORIGINS", "https://chat.example.com")]).await;
    let allowed = app
        .http
        .get(app.url("/models"))
        .header("origin", "https://chat.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://chat.example.com"
    );
    let other = app
        .http
        .get(app.url("/models"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn admin_listener_keeps_the_admin_api_off_the_main_port() {
    let app = TestApp::with_accounts(1, &[("ADMIN_LISTEN_ADDRESS", "127.0.0.1:1")]).await;
    let on_main = app
        .http
        .get(app.url("/api/accountsHealth"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(on_main.status(), 404);
    let on_main = app
        .http
        .post(app.url("/verify"))
        .json(&json!({"apiKey": KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(on_main.status(), 404);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(qwen2api::server::serve_app(
        listener,
        qwen2api::server::admin_router(app.state.clone()),
        std::future::pending(),
    ));
    let health: Value = app
        .http
        .get(format!("http://{addr}/api/accountsHealth"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["data"]["totalAccounts"], 1);
    let chat = app
        .http
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&body("qwen3.7-plus", false))
        .send()
        .await
        .unwrap();
    assert_eq!(
        chat.status(),
        404,
        "the admin listener serves only the admin API"
    );
    assert_eq!(app.chat(body("qwen3.7-plus", false)).await.status(), 200);
}
