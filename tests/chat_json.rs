//! Non-streaming chat completions end to end against the fake upstream.

mod common;

use common::{TestApp, body, normalize};
use serde_json::{Value, json};

#[tokio::test]
async fn plain_answer_byte_for_byte() {
    let app = TestApp::with_accounts(1, &[]).await;
    let resp = app.chat(body("qwen3.7-plus", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let text = resp.text().await.unwrap();
    assert_eq!(
        normalize(&text),
        r#"{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"qwen3.7-plus","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1049,"completion_tokens":2,"total_tokens":1051}}"#
    );
    assert_eq!(app.leases(), 0);
}

#[tokio::test]
async fn translated_request_reaches_the_upstream() {
    let app = TestApp::with_accounts(1, &[]).await;
    let resp = app
        .chat(json!({"model": "qwen3.7-plus-thinking", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"}
        ]}))
        .await;
    assert_eq!(resp.status(), 200);
    let new_chat = app
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v2/chats/new")
        .unwrap();
    let nc = new_chat.json.unwrap();
    assert_eq!(nc["models"], json!(["qwen3.7-plus"]));
    assert_eq!(nc["chat_type"], "t2t");
    let sent = app.fake.completions().pop().unwrap();
    let chat_id = app.fake.chat_ids().pop().unwrap();
    assert_eq!(sent.query_param("chat_id"), Some(chat_id.as_str()));
    assert_eq!(sent.header("accept"), Some("text/event-stream"));
    assert!(
        sent.header("authorization")
            .unwrap()
            .starts_with("Bearer ey")
    );
    assert!(sent.header("cookie").unwrap().starts_with("token=ey"));
    assert_eq!(sent.header("version"), Some("0.2.81"));
    assert_eq!(sent.header("bx-v"), Some("2.5.36"));
    assert_eq!(sent.header("source"), Some("web"));
    assert!(sent.header("x-request-id").is_some_and(|v| v.len() == 36));
    let b: Value = sent.json.unwrap();
    assert_eq!(b["stream"], true);
    assert_eq!(b["incremental_output"], true);
    assert_eq!(b["chat_id"], chat_id.as_str());
    assert_eq!(b["model"], "qwen3.7-plus");
    let m = &b["messages"][0];
    assert_eq!(m["role"], "user");
    assert_eq!(m["content"], "system:be brief;user:hello");
    assert_eq!(m["chat_type"], "t2t");
    let fc = &m["feature_config"];
    assert_eq!(fc["output_schema"], "phase");
    assert_eq!(fc["thinking_enabled"], true);
    assert_eq!(fc["function_calling"], false);
    assert_eq!(fc["tool_choice"], "none");
}
