//! Claude model names out of the box: which upstream model each one reaches, by the built-in
//! defaults, by `MODEL_ALIASES` patterns and by the `ANTHROPIC_*_MODEL` overrides.

use crate::common;

use common::fake_qwen::{FakeQwen, model};
use common::{TestApp, body};
use serde_json::{Value, json};

/// The upstream model each requested id reached, in order, one request each.
async fn reached(app: &TestApp, ids: &[&str]) -> Vec<String> {
    for id in ids {
        let resp = app.chat(body(id, false)).await;
        assert_eq!(resp.status(), 200, "{id}");
    }
    app.fake
        .completions()
        .into_iter()
        .map(|r| {
            let b: Value = r.json.unwrap();
            b["model"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// A list led by a fast model, so that "first listed" alone would pick the wrong one.
fn list_with_flash() -> Value {
    json!({"data": [
        model("qwen3.7-flash", "Qwen3.7-Flash", false, &["t2t"], true, 262_144),
        model("qwen3.7-plus", "Qwen3.7-Plus", true, &["t2t", "search"], true, 1_048_576),
        model("qwen3.8-max", "Qwen3.8-Max", true, &["t2t", "search"], true, 262_144),
    ]})
}

async fn app_with(models: Value, vars: &[(&str, &str)]) -> TestApp {
    let fake = FakeQwen::start().await;
    let cookie = format!("token={}", fake.add_token("acct1"));
    fake.set_models(models);
    let mut all = vec![("QWEN_COOKIES", cookie.as_str())];
    all.extend_from_slice(vars);
    TestApp::spawn_with(fake, &all).await
}

#[tokio::test]
async fn claude_names_reach_a_strong_and_a_fast_model() {
    let app = app_with(list_with_flash(), &[]).await;
    let got = reached(
        &app,
        &[
            "claude-sonnet-4-5-20250929",
            "claude-haiku-4-5",
            "claude-opus-4-1",
        ],
    )
    .await;
    assert_eq!(got, ["qwen3.7-plus", "qwen3.7-flash", "qwen3.7-plus"]);
    app.stop().await;

    // The fake's default list has no flash or turbo model: Haiku gets the strong one too.
    let app = TestApp::with_accounts(1, &[]).await;
    let got = reached(&app, &["claude-sonnet-4-5-20250929", "claude-haiku-4-5"]).await;
    assert_eq!(got, ["qwen3.7-plus", "qwen3.7-plus"]);
    app.stop().await;
}

#[tokio::test]
async fn patterns_and_overrides_win_over_the_defaults() {
    let app = app_with(
        list_with_flash(),
        &[
            (
                "MODEL_ALIASES",
                r#"{"claude-*haiku*":"qwen3.8-max","gpt-4o":"qwen3.7-plus"}"#,
            ),
            ("ANTHROPIC_DEFAULT_MODEL", "qwen3.8-max-thinking"),
        ],
    )
    .await;
    let got = reached(&app, &["claude-haiku-4-5", "claude-sonnet-4-5-20250929"]).await;
    assert_eq!(got, ["qwen3.8-max", "qwen3.8-max"]);
    let sent: Value = app.fake.completions().pop().unwrap().json.unwrap();
    assert_eq!(
        sent["messages"][0]["feature_config"]["thinking_enabled"],
        true
    );
    let listed = app.get_json("/v1/models").await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .filter(|id| !id.starts_with("qwen"))
        .collect();
    assert_eq!(ids, ["gpt-4o"], "a pattern is not listed");
    app.stop().await;
}
