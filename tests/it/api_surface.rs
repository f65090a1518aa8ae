//! Auth, bad input, models and routing: the answers a client gets before any chat runs.

use crate::common;

use common::fake_qwen::{FakeQwen, Reply};
use common::{KEY, TestApp, body, error_of};
use serde_json::{Value, json};

fn chat_calls(fake: &FakeQwen) -> usize {
    fake.count("POST", "/api/v2/chats/new") + fake.count("POST", "/api/v2/chat/completions")
}

#[tokio::test]
async fn missing_or_wrong_key_is_401_and_never_reaches_the_upstream() {
    let app = TestApp::with_accounts(1, &[]).await;
    let url = app.url("/v1/chat/completions");
    for req in [
        app.http.post(&url).json(&body("qwen3.7-plus", false)),
        app.http
            .post(&url)
            .bearer_auth("sk-wrong")
            .json(&body("qwen3.7-plus", false)),
        app.http
            .post(&url)
            .header("authorization", KEY)
            .json(&body("qwen3.7-plus", false)),
        app.http
            .post(format!("{url}?key={KEY}"))
            .json(&body("qwen3.7-plus", false)),
        app.http.get(app.url("/v1/models")),
    ] {
        let (status, err) = error_of(req.send().await.unwrap()).await;
        assert_eq!(status, 401);
        assert_eq!(err["type"], "authentication_error");
        assert_eq!(err["code"], "invalid_api_key");
    }
    assert_eq!(app.fake.requests().len(), 0);
}

#[tokio::test]
async fn admin_key_and_every_api_key_work() {
    let app = TestApp::with_accounts(1, &[("API_KEY", "k1,k2"), ("ADMIN_KEY", "adm")]).await;
    for key in ["k1", "k2", "adm"] {
        let resp = app
            .http
            .get(app.url("/v1/models"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{key}");
    }
}

#[tokio::test]
async fn public_routes_need_no_key() {
    let app = TestApp::with_accounts(2, &[]).await;
    let h: Value = app
        .http
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        h,
        json!({"status": "ok", "ready": true, "accounts": {"total": 2, "usable": 2}})
    );
    let m = app.http.get(app.url("/models")).send().await.unwrap();
    assert_eq!(m.status(), 200);
}

#[tokio::test]
async fn bad_bodies_get_400_with_the_field_named() {
    let app = TestApp::with_accounts(1, &[]).await;
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        ("{not json".into(), "invalid_json", None),
        (r#"{"model":"qwen3.7-plus"}"#.into(), "invalid_json", Some("messages")),
        (r#"{"messages":[{"role":"user","content":"x"}]}"#.into(), "invalid_json", Some("model")),
        (r#"{"model":"qwen3.7-plus","messages":"hi"}"#.into(), "invalid_json", Some("messages")),
        (r#"{"model":"qwen3.7-plus","messages":[{"role":"wizard","content":"x"}]}"#.into(), "invalid_json", Some("messages[0].role")),
        (r#"{"model":"qwen3.7-plus","messages":[]}"#.into(), "invalid_value", Some("messages")),
        (r#"{"model":"qwen3.7-plus","n":3,"messages":[{"role":"user","content":"x"}]}"#.into(), "invalid_value", Some("n")),
        (
            r#"{"model":"qwen3.7-plus","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"hologram","hologram":{}}]}]}"#.into(),
            "unsupported_content",
            Some("messages[0].content[1]"),
        ),
        (
            r#"{"model":"qwen3.7-plus","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}},"messages":[{"role":"user","content":"x"}]}"#.into(),
            "invalid_value",
            Some("tool_choice"),
        ),
        (
            r#"{"model":"qwen3.7-plus","tools":[{"type":"function","function":{"description":"no name"}}],"messages":[{"role":"user","content":"x"}]}"#.into(),
            "invalid_value",
            Some("tools[0].function.name"),
        ),
    ];
    for (raw, code, param) in cases {
        let resp = app
            .post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(resp).await;
        assert_eq!(status, 400, "{raw}");
        assert_eq!(err["type"], "invalid_request_error", "{raw}");
        assert_eq!(err["code"], code, "{raw}");
        assert_eq!(err["param"].as_str(), param, "{raw}");
    }
    let resp = app
        .post("/v1/chat/completions")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await.0, 415);
    let resp = app
        .post("/v1/chat/completions")
        .header("x-reasoning-format", "loud")
        .json(&body("qwen3.7-plus", false))
        .send()
        .await
        .unwrap();
    let (status, err) = error_of(resp).await;
    assert_eq!(
        (status, err["param"].as_str()),
        (400, Some("X-Reasoning-Format"))
    );
    assert_eq!(chat_calls(&app.fake), 0);
}

#[tokio::test]
async fn tools_offered_to_image_generation_are_ignored_with_a_header() {
    let app = TestApp::with_accounts(1, &[]).await;
    let mut req = body("qwen3.7-plus-image", false);
    req["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    req["tool_choice"] = json!("auto");
    let resp = app.chat(req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-qwen2api-warning"], "tools ignored");
    let plain = app.chat(body("qwen3.7-plus", false)).await;
    assert!(plain.headers().get("x-qwen2api-warning").is_none());
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_envelope() {
    let app = TestApp::with_accounts(1, &[]).await;
    let (status, err) = error_of(app.http.get(app.url("/v2/nothing")).send().await.unwrap()).await;
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));
    let resp = app
        .http
        .get(app.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await.0, 405);
}

#[tokio::test]
async fn models_list_variants_and_cache() {
    let app = TestApp::with_accounts(1, &[("MODEL_ALIASES", r#"{"gpt-4o":"qwen3.7-plus"}"#)]).await;
    let list: Value = app.get_json("/v1/models").await;
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "qwen3.7-plus",
            "qwen3.7-plus-search",
            "qwen3.7-plus-thinking",
            "qwen3.7-plus-thinking-search",
            "qwen3.7-plus-image",
            "qwen3.7-plus-image-edit",
            "qwen3.7-plus-video",
            "qwen3.8-max",
            "qwen3.8-max-search",
            "qwen3.8-max-thinking",
            "qwen3.8-max-thinking-search",
            "qwen3-coder-plus",
            "gpt-4o",
        ]
    );
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["object"] == "model" && m["owned_by"] == "qwen")
    );
    let one: Value = app.get_json("/v1/models/qwen3.8-max-thinking").await;
    assert_eq!(one["id"], "qwen3.8-max-thinking");
    let resp = app
        .http
        .get(app.url("/v1/models/qwen3-coder-plus-thinking"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let (status, err) = error_of(resp).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("model_not_found"))
    );
    app.http.get(app.url("/models")).send().await.unwrap();
    assert_eq!(
        app.fake.count("GET", "/api/models"),
        1,
        "the list is cached"
    );
}

#[tokio::test]
async fn simple_model_map_lists_base_ids_only() {
    let app = TestApp::with_accounts(1, &[("SIMPLE_MODEL_MAP", "true")]).await;
    let list: Value = app
        .http
        .get(app.url("/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["qwen3.7-plus", "qwen3.8-max", "qwen3-coder-plus"]);
}

#[tokio::test]
async fn unknown_model_is_404_and_aliases_map_to_upstream_ids() {
    let app = TestApp::with_accounts(1, &[("MODEL_ALIASES", r#"{"gpt-4o":"qwen3.7-plus"}"#)]).await;
    let (status, err) = error_of(app.chat(body("gpt-5", false)).await).await;
    assert_eq!(
        (status, err["code"].as_str(), err["param"].as_str()),
        (404, Some("model_not_found"), Some("model"))
    );
    assert_eq!(chat_calls(&app.fake), 0);
    let v: Value = app.chat(body("gpt-4o", false)).await.json().await.unwrap();
    assert_eq!(v["model"], "gpt-4o", "the id the client asked for");
    let sent = app.fake.completions().pop().unwrap().json.unwrap();
    assert_eq!(sent["model"], "qwen3.7-plus");
}

#[tokio::test]
async fn must_think_models_always_think() {
    let app = TestApp::with_accounts(1, &[]).await;
    let mut req = body("qwen3.8-max", false);
    req["enable_thinking"] = json!(false);
    assert_eq!(app.chat(req).await.status(), 200);
    let sent = app.fake.completions().pop().unwrap().json.unwrap();
    assert_eq!(
        sent["messages"][0]["feature_config"]["thinking_enabled"],
        true
    );
    let mut req = body("qwen3.7-plus", false);
    req["reasoning_effort"] = json!("none");
    app.chat(req).await;
    let sent = app.fake.completions().pop().unwrap().json.unwrap();
    assert_eq!(
        sent["messages"][0]["feature_config"]["thinking_enabled"],
        false
    );
    assert_eq!(
        sent["messages"][0]["feature_config"]["thinking_mode"],
        "Disabled"
    );
}

#[tokio::test]
async fn fallback_list_when_the_upstream_list_fails() {
    let fake = FakeQwen::start().await;
    fake.set_models_reply(Reply::http(500, "text/plain", "boom"));
    let token = fake.add_token("acct1");
    let app = TestApp::spawn_with(fake, &[("QWEN_AUTH_TOKEN", token.as_str())]).await;
    let list: Value = app
        .http
        .get(app.url("/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"qwen3.7-plus") && ids.contains(&"qwen3.7-plus-thinking"),
        "{ids:?}"
    );
    // While the fallback list is in use, unknown ids pass through as given.
    let resp = app.chat(body("qwen9-experimental-search", false)).await;
    assert_eq!(resp.status(), 200);
    let sent = app.fake.completions().pop().unwrap().json.unwrap();
    assert_eq!(sent["model"], "qwen9-experimental");
    assert_eq!(sent["messages"][0]["chat_type"], "search");
}

#[tokio::test]
async fn email_accounts_sign_in_with_a_hashed_password() {
    let fake = FakeQwen::start().await;
    fake.add_user("a@example.com", "pw-a");
    fake.add_user("b@example.com", "pw-b");
    let app = TestApp::spawn_with(
        fake,
        &[(
            "ACCOUNTS",
            "a@example.com:pw-a,b@example.com:wrong,c@example.com:pw-c",
        )],
    )
    .await;
    assert_eq!(app.fake.count("POST", "/api/v1/auths/signin"), 3);
    let h: Value = app
        .http
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["accounts"], json!({"total": 3, "usable": 1}));
    let signin = app
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/auths/signin")
        .unwrap();
    assert_eq!(
        signin.json.unwrap()["password"],
        common::fake_qwen::sha256_hex("pw-a")
    );
    for _ in 0..3 {
        assert_eq!(app.chat(body("qwen3.7-plus", false)).await.status(), 200);
    }
    assert_eq!(
        app.fake
            .count_for("a@example.com", "POST", "/api/v2/chat/completions"),
        3
    );
}
