//! Tongyi accounts (docs/upstream.md §13) in the same pool as chat.qwen.ai ones: every surface
//! through a Tongyi account, streamed and not, with the site's cumulative text, resets and
//! think blocks read into exact answers; tools; failover across sites where both serve the
//! model; routing by `MODEL_TO_ACCOUNT_MAP`; `NOT_LOGIN` disabling the account; sessions
//! continued by `sessionId` + `parentMsgId`; Qwen-2api's `.env` starting the binary as is.

use crate::common;

use common::fake_qwen::{FakeQwen, Reply};
use common::fake_tongyi::{FakeTongyi, Scenario};
use common::{TestApp, qwen_sse};
use serde_json::{Value, json};

const TEXT: &str = "Hello from Tongyi.";
const THINK: &str = "Thinking it over.";
/// A model both fakes serve (the fake chat.qwen.ai lists it; `TONGYI_MODELS` adds Tongyi).
const SHARED: &str = "qwen3.7-plus";
/// A 1×1 PNG.
const PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// An app whose pool holds `qwen` chat.qwen.ai accounts, then one Tongyi account (`tongyi_1`).
async fn app(qwen: usize, vars: &[(&str, &str)]) -> (TestApp, FakeTongyi, String) {
    let tongyi = FakeTongyi::start().await;
    let (cookie, xsrf) = tongyi.add_account("one");
    let fake = FakeQwen::start().await;
    let cookies: Vec<String> = (1..=qwen)
        .map(|i| format!("token={}", fake.add_token(&format!("acct{i}"))))
        .collect();
    let cookies = cookies.join(",");
    let base = tongyi.base_url();
    let mut all: Vec<(&str, &str)> = vec![
        ("TONGYI_BASE_URL", &base),
        ("CN_ACCOUNT_1_COOKIE", &cookie),
        ("CN_ACCOUNT_1_XSRF_TOKEN", &xsrf),
        ("TRANSIENT_COOLDOWN_SECONDS", "0"),
    ];
    if qwen > 0 {
        all.push(("QWEN_COOKIES", &cookies));
    }
    all.extend_from_slice(vars);
    let app = TestApp::spawn_with(fake, &all).await;
    (app, tongyi, xsrf)
}

async fn post(app: &TestApp, path: &str, body: &Value) -> (u16, String) {
    let resp = app.post(path).json(body).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The answer text and reasoning a surface's body (whole or streamed) carries.
fn read(path: &str, stream: bool, body: &str) -> (String, String) {
    let (mut text, mut reasoning) = (String::new(), String::new());
    if stream {
        // Anthropic and Responses events carry an `event:` line before their data.
        let data = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str::<Value>(d).unwrap());
        for v in data {
            match path {
                "/v1/chat/completions" => {
                    let d = &v["choices"][0]["delta"];
                    text += d["content"].as_str().unwrap_or_default();
                    reasoning += d["reasoning_content"].as_str().unwrap_or_default();
                }
                "/v1/messages" => {
                    text += v["delta"]["text"].as_str().unwrap_or_default();
                    reasoning += v["delta"]["thinking"].as_str().unwrap_or_default();
                }
                _ => {
                    if v["type"] == "response.output_text.delta" {
                        text += v["delta"].as_str().unwrap_or_default();
                    }
                }
            }
        }
        return (text, reasoning);
    }
    let v: Value = serde_json::from_str(body).unwrap();
    match path {
        "/v1/chat/completions" => (
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            v["choices"][0]["message"]["reasoning_content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        "/v1/messages" => {
            for block in v["content"].as_array().unwrap() {
                text += block["text"].as_str().unwrap_or_default();
                reasoning += block["thinking"].as_str().unwrap_or_default();
            }
            (text, reasoning)
        }
        _ => {
            for item in v["output"].as_array().unwrap() {
                for part in item["content"].as_array().into_iter().flatten() {
                    text += part["text"].as_str().unwrap_or_default();
                }
            }
            (text, reasoning)
        }
    }
}

#[tokio::test]
async fn every_surface_streamed_and_not_answers_exactly_through_a_tongyi_account() {
    // Answers are not kept to continue, so every session is deleted once answered.
    let (app, tongyi, xsrf) = app(0, &[("CONVERSATION_CONTINUATION", "false")]).await;
    let ask = "Say hello";
    for path in ["/v1/chat/completions", "/v1/messages", "/v1/responses"] {
        for stream in [false, true] {
            let body = match path {
                "/v1/responses" => json!({"model": "qwen-max", "stream": stream, "input": ask}),
                _ => json!({"model": "qwen-max", "stream": stream, "max_tokens": 100,
                            "messages": [{"role": "user", "content": ask}]}),
            };
            let (status, got) = post(&app, path, &body).await;
            assert_eq!(status, 200, "{path} {stream}: {got}");
            let (text, reasoning) = read(path, stream, &got);
            // Cumulative events, a reset and an incremental block, read into the text once.
            assert_eq!(text, TEXT, "{path} stream={stream}: {got}");
            assert_eq!(
                reasoning, "",
                "{path}: no reasoning unless thinking was asked for"
            );
        }
    }
    // Thinking: the think blocks (JSON strings, cumulative) become the reasoning.
    for stream in [false, true] {
        let body = json!({"model": "qwen-max-thinking", "stream": stream,
                          "messages": [{"role": "user", "content": ask}]});
        let (status, got) = post(&app, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(
            read("/v1/chat/completions", stream, &got),
            (TEXT.to_owned(), THINK.to_owned())
        );
    }
    let sent = tongyi.conversations_of(&xsrf);
    assert_eq!(sent.len(), 8);
    assert!(
        app.fake.completions().is_empty(),
        "chat.qwen.ai got nothing"
    );
    let first = &sent[0];
    assert_eq!(first.header("x-platform"), Some("pc_tongyi"));
    assert_eq!(
        first.header("cookie"),
        Some("cna=c-one; tongyi_sso_ticket=t-one")
    );
    assert_eq!(first.header("origin"), Some("https://www.tongyi.com"));
    assert_eq!(first.header("referer"), Some("https://www.tongyi.com/"));
    assert_eq!(first.header("accept"), Some("text/event-stream"));
    let b = &first.body;
    assert_eq!(b["action"], "next");
    assert_eq!(b["model"], "qwen-max");
    assert_eq!(b["sessionId"], "");
    assert_eq!(b["parentMsgId"], "");
    assert_eq!(b["sessionType"], "text_chat");
    assert_eq!(b["userAction"], "new_top");
    assert_eq!(b["contents"][0]["role"], "user");
    assert_eq!(b["contents"][0]["contentType"], "text");
    assert!(b["contents"][0]["content"].as_str().unwrap().contains(ask));
    assert_eq!(b["requestId"].as_str().unwrap().len(), 32);
    assert_eq!(b["feature_config"]["thinking_enabled"], false);
    assert_eq!(sent[6].body["feature_config"]["thinking_enabled"], true);
    // Each answered session is deleted (CHAT_CLEANUP), by the id the site gave it.
    assert!(
        common::eventually(std::time::Duration::from_secs(5), || tongyi.deletes().len()
            == 8)
        .await
    );
    assert!(tongyi.deletes().iter().all(|s| s.starts_with("session-")));
}

#[tokio::test]
async fn tools_work_through_a_tongyi_account_and_overrides_reach_the_site() {
    let (app, tongyi, _) = app(
        0,
        &[
            (
                "TONGYI_HEADERS_JSON",
                r#"{"X-Platform":"pc_qianwen","x-extra":"1"}"#,
            ),
            (
                "TONGYI_BODY_JSON",
                r#"{"sessionType":"chat","userAction":null,"n":2}"#,
            ),
        ],
    )
    .await;
    tongyi.push(
        None,
        Scenario::text(
            "Reading. <q2a:call name=\"read_tool\">\n{\"path\": \"/a.rs\"}\n</q2a:call>",
        ),
    );
    let body = json!({"model": "qwen-max", "stream": false,
        "messages": [{"role": "user", "content": "Show me a.rs"}],
        "tools": [{"type": "function", "function": {"name": "read",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]});
    let (status, got) = post(&app, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{got}");
    let v: Value = serde_json::from_str(&got).unwrap();
    let call = &v["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "read", "{v}");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"path": "/a.rs"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let sent = &tongyi.conversations()[0];
    let prompt = sent.body["contents"][0]["content"].as_str().unwrap();
    assert!(prompt.contains("read_tool"), "the tools were offered");
    // TONGYI_HEADERS_JSON and TONGYI_BODY_JSON: set over the defaults, null removes.
    assert_eq!(sent.header("x-platform"), Some("pc_qianwen"));
    assert_eq!(sent.header("x-extra"), Some("1"));
    assert_eq!(sent.body["sessionType"], "chat");
    assert_eq!(sent.body["n"], 2);
    assert!(sent.body.get("userAction").is_none(), "{}", sent.body);
    assert_eq!(sent.body["action"], "next");
}

#[tokio::test]
async fn a_pool_of_both_kinds_fails_over_across_sites_where_both_serve_the_model() {
    let (app, tongyi, xsrf) = app(1, &[("TONGYI_MODELS", &format!("qwen-max,{SHARED}"))]).await;
    let ask = |model: &str| json!({"model": model, "stream": false, "messages": [{"role": "user", "content": "hi"}]});
    // chat.qwen.ai fails: the Tongyi account answers.
    app.fake
        .push_completion(Some("acct1"), Reply::http(500, "application/json", "{}"));
    let (status, got) = post(&app, "/v1/chat/completions", &ask(SHARED)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(read("/v1/chat/completions", false, &got).0, TEXT);
    assert_eq!(app.fake.completions().len(), 1);
    assert_eq!(tongyi.conversations_of(&xsrf).len(), 1);
    // Tongyi fails: the chat.qwen.ai account answers. Round robin tries chat.qwen.ai first
    // in the next request (it answers), Tongyi first in the one after (it fails over).
    tongyi.push(Some(&xsrf), Scenario::Status(500));
    for _ in 0..2 {
        app.fake.push_completion(
            Some("acct1"),
            Reply::sse(qwen_sse::fast_answer(&["From Qwen."])),
        );
    }
    for (qwen, tongyi_calls) in [(2, 1), (3, 2)] {
        let (status, got) = post(&app, "/v1/chat/completions", &ask(SHARED)).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(read("/v1/chat/completions", false, &got).0, "From Qwen.");
        assert_eq!(app.fake.completions().len(), qwen);
        assert_eq!(tongyi.conversations_of(&xsrf).len(), tongyi_calls);
    }
    // A model only Tongyi serves never goes to chat.qwen.ai, and fails when Tongyi does.
    tongyi.push(Some(&xsrf), Scenario::Status(500));
    let (status, got) = post(&app, "/v1/chat/completions", &ask("qwen-max")).await;
    assert_eq!(status, 502, "{got}");
    assert_eq!(app.fake.completions().len(), 3);
    assert_eq!(tongyi.conversations_of(&xsrf).len(), 3);
    // An image on a model both serve: Tongyi (first in turn now) cannot take it, chat.qwen.ai
    // does; the Tongyi account is not blamed.
    let body = json!({"model": SHARED, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": PNG}}]}]});
    let (status, got) = post(&app, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(app.fake.completions().len(), 4);
    assert_eq!(tongyi.conversations_of(&xsrf).len(), 3);
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("qwen2api_failovers_total{reason=\"unsupported_by_site\"} 1"),
        "{metrics}"
    );
    let health = app.get_json("/api/accountsHealth").await;
    assert!(
        health["data"]["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["state"] == "active"),
        "{health}"
    );
    // /v1/models names each model's owner.
    let models = app.get_json("/v1/models").await;
    let owner = |id: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["owned_by"].clone())
    };
    assert_eq!(owner("qwen-max"), Some(json!("tongyi")));
    assert_eq!(owner(SHARED), Some(json!("qwen")));
}

#[tokio::test]
async fn model_to_account_map_routes_between_the_kinds() {
    let models = format!("qwen-max,{SHARED}");
    // Qwen-2api's numeric form: 1 is CN_ACCOUNT_1.
    let map = format!(r#"{{"{SHARED}":[1]}}"#);
    let (app, tongyi, xsrf) = app(
        1,
        &[("TONGYI_MODELS", &models), ("MODEL_TO_ACCOUNT_MAP", &map)],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            app.chat_ok(common::KEY).await["choices"][0]["message"]["content"],
            TEXT
        );
    }
    assert_eq!(tongyi.conversations_of(&xsrf).len(), 3);
    assert!(app.fake.completions().is_empty());
    drop(app);
    let map = format!(r#"{{"{SHARED}":["account_1"]}}"#);
    let (app, tongyi, _) = self::app(
        1,
        &[("TONGYI_MODELS", &models), ("MODEL_TO_ACCOUNT_MAP", &map)],
    )
    .await;
    for _ in 0..3 {
        app.chat_ok(common::KEY).await;
    }
    assert!(tongyi.conversations().is_empty());
    assert_eq!(app.fake.completions().len(), 3);
}

#[tokio::test]
async fn not_login_disables_the_account_with_a_reason_and_it_is_not_asked_again() {
    let (app, tongyi, xsrf) = app(0, &[]).await;
    tongyi.push(Some(&xsrf), Scenario::NotLogin);
    let body = json!({"model": "qwen-max", "messages": [{"role": "user", "content": "hi"}]});
    // The only account that serves the model is gone: no account is usable.
    let (status, got) = post(&app, "/v1/chat/completions", &body).await;
    assert_eq!(status, 503, "{got}");
    common::assert_error_envelope(
        &serde_json::from_str(&got).unwrap(),
        "server_error",
        "no_available_account",
    );
    let health = app.get_json("/api/accountsHealth").await;
    let row = &health["data"]["accounts"][0];
    assert_eq!(row["accountId"], "tongyi_1");
    assert_eq!(row["site"], "tongyi");
    assert_eq!(row["kind"], "tongyi");
    assert_eq!(row["state"], "disabled");
    assert_eq!(
        row["reason"],
        "cookie expired or logged out; the server cannot refresh Tongyi cookies: paste a new cookie"
    );
    let (status, _) = post(&app, "/v1/chat/completions", &body).await;
    assert_eq!(status, 503);
    assert_eq!(
        tongyi.conversations_of(&xsrf).len(),
        1,
        "0 further requests"
    );
}

#[tokio::test]
async fn a_continued_conversation_sends_only_the_new_turn_into_the_session() {
    let (app, tongyi, _) = app(0, &[]).await;
    let first = json!([{"role": "user", "content": "FIRST-QUESTION"}]);
    let body = json!({"model": "qwen-max", "messages": first});
    let (status, got) = post(&app, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{got}");
    let next = json!([
        {"role": "user", "content": "FIRST-QUESTION"},
        {"role": "assistant", "content": TEXT},
        {"role": "user", "content": "SECOND-QUESTION"}
    ]);
    let body = json!({"model": "qwen-max", "messages": next});
    let (status, got) = post(&app, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{got}");
    let sent = tongyi.conversations();
    assert_eq!(sent.len(), 2);
    // The fake names its first session `session-1` and that answer `msg-2`.
    assert_eq!(sent[1].body["sessionId"], "session-1");
    assert_eq!(sent[1].body["parentMsgId"], "msg-2");
    let prompt = sent[1].body["contents"][0]["content"].as_str().unwrap();
    assert!(prompt.contains("SECOND-QUESTION"), "{prompt}");
    assert!(!prompt.contains("FIRST-QUESTION"), "{prompt}");
    // The kept session is not deleted while it may be continued.
    assert!(tongyi.deletes().is_empty());
}

#[tokio::test]
async fn the_admin_api_adds_tongyi_accounts_and_media_is_refused_in_the_surface_shape() {
    let (app, tongyi, _) = app(0, &[]).await;
    let (cookie, xsrf) = tongyi.add_account("two");
    let resp = app
        .post("/api/addAccount")
        .json(&json!({"kind": "tongyi", "num": 7, "cookie": cookie, "xsrfToken": xsrf}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"]["accountId"], "tongyi_7");
    // A cookie cannot be checked without a chat: a re-test says so and changes nothing.
    let resp = app
        .post("/api/accounts/tongyi_7/retest")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"]["ok"], false, "{v}");
    assert_eq!(v["data"]["error"], "unsupported_by_site", "{v}");
    assert_eq!(v["data"]["state"], "active", "{v}");
    assert!(tongyi.conversations().is_empty());
    let resp = app
        .post("/api/addAccount")
        .json(&json!({"kind": "tongyi", "cookie": "a=1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // An image cannot go to Tongyi: no account left can serve it.
    let body = json!({"model": "qwen-max", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": PNG}}]}]});
    let (status, got) = post(&app, "/v1/chat/completions", &body).await;
    assert_eq!(status, 400, "{got}");
    common::assert_error_envelope(
        &serde_json::from_str(&got).unwrap(),
        "invalid_request_error",
        "unsupported_by_site",
    );
    assert!(tongyi.conversations().is_empty());
}

#[tokio::test]
async fn qwen_2api_env_file_starts_the_binary_unchanged() {
    let tongyi = FakeTongyi::start().await;
    tongyi.add_account("env");
    let dir = tempfile::tempdir().unwrap();
    let port = common::binary::free_port();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tongyi/qwen-2api.env"
    ))
    .unwrap();
    // Only the port is changed, to a free one.
    let env = example.replace("LISTEN_PORT=8000", &format!("LISTEN_PORT={port}"));
    assert_ne!(env, example);
    std::fs::write(dir.path().join(".env"), env).unwrap();
    let base = tongyi.base_url();
    let server = common::binary::Server::start_on(
        dir.path(),
        port,
        &[
            ("TONGYI_BASE_URL", &base),
            ("DATA_SAVE_MODE", "none"),
            // No chat.qwen.ai account: its model list is not reachable, and need not be.
            ("QWEN_BASE_URL", "http://127.0.0.1:9"),
        ],
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .post(server.url("/v1/chat/completions"))
        .bearer_auth("sk-qwen-2api-master")
        .json(&json!({"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{v} {}", common::binary::read_log(dir.path()));
    assert_eq!(v["choices"][0]["message"]["content"], TEXT);
    let sent = tongyi.conversations();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].header("x-xsrf-token"), Some("xsrf-env"));
    assert_eq!(sent[0].body["model"], "qwen-plus");
}

#[tokio::test]
async fn tongyi_accounts_edited_in_the_env_file_are_applied_by_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    std::fs::write(&env, "").unwrap();
    let env_var = env.to_str().unwrap().to_owned();
    let (app, tongyi, _) = app(0, &[("ENV_FILE", &env_var)]).await;
    let (cookie, xsrf) = tongyi.add_account("two");
    std::fs::write(
        &env,
        format!("CN_ACCOUNT_2_COOKIE='{cookie}'\nCN_ACCOUNT_2_XSRF_TOKEN={xsrf}\n"),
    )
    .unwrap();
    let resp = app.post("/api/reloadConfig").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"success": true, "data": {
            "accounts": {"added": ["tongyi_2"], "removed": [], "updated": []},
            "keysChanged": false,
            "restartRequired": [],
        }})
    );
    // The new account serves: round robin reaches it.
    for _ in 0..2 {
        let body = json!({"model": "qwen-max", "messages": [{"role": "user", "content": "hi"}]});
        let (status, got) = post(&app, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{got}");
    }
    assert_eq!(tongyi.conversations_of(&xsrf).len(), 1);
}
