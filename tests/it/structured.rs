//! Structured answers (`response_format` on chat completions, `text.format` on Responses): the
//! model is told the format at the end of its prompt, the answer is checked and passed on as
//! compact JSON, a bad answer gets one repair round in a new chat, and a second bad one is a
//! 502 `format_not_followed`, never a pretend answer.

use crate::common;

use common::fake_qwen::Reply;
use common::{TestApp, qwen_sse};
use serde_json::{Value, json};

const MODEL: &str = "qwen3.7-plus";

fn person_format() -> Value {
    json!({"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": {
        "type": "object", "additionalProperties": false, "required": ["name", "age"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}}})
}

fn ask(stream: bool) -> Value {
    json!({"model": MODEL, "stream": stream, "response_format": person_format(),
           "messages": [{"role": "user", "content": "Ada, 36"}]})
}

fn prompts(app: &TestApp) -> Vec<String> {
    app.fake
        .completions()
        .iter()
        .map(|r| common::fake_chats::prompt_of(r.json.as_ref().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_fenced_answer_is_passed_on_without_its_fence_streamed_and_whole() {
    let app = TestApp::with_accounts(1, &[]).await;
    for _ in 0..2 {
        app.fake.push_completion(
            None,
            Reply::sse(qwen_sse::fast_answer(&[
                "```json\n{\"name\": \"Ada\",",
                " \"age\": 36}\n```",
            ])),
        );
    }
    let v: Value = app.chat(ask(false)).await.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        r#"{"name": "Ada", "age": 36}"#
    );
    let text = app.chat(ask(true)).await.text().await.unwrap();
    assert_eq!(
        common::streamed_content(&common::sse_json(&text)),
        r#"{"name": "Ada", "age": 36}"#
    );
    let p = prompts(&app);
    assert_eq!(p.len(), 2);
    assert!(
        p[0] == ("Ada, 36\n\nAnswer with one JSON value only, following this JSON Schema exactly: no prose before or after it, no Markdown fence.\nSchema: {\"additionalProperties\":false,\"properties\":{\"age\":{\"type\":\"integer\"},\"name\":{\"type\":\"string\"}},\"required\":[\"name\",\"age\"],\"type\":\"object\"}"),
        "{}",
        p[0]
    );
}

#[tokio::test]
async fn a_bad_answer_gets_one_repair_round_and_both_rounds_are_counted() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&["Sure: name Ada, age thirty-six."])),
    );
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&["{\"name\":\"Ada\",\"age\":36}"])),
    );
    let v: Value = app.chat(ask(false)).await.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        r#"{"name":"Ada","age":36}"#
    );
    assert_eq!(v["usage"]["prompt_tokens"], 2 * qwen_sse::INPUT_TOKENS);
    let p = prompts(&app);
    assert_eq!(p.len(), 2);
    assert!(
        p[1].contains(";assistant:Sure: name Ada, age thirty-six.;user:Your answer did not follow the required format: the answer is not JSON."),
        "{}",
        p[1]
    );
    let chats: Vec<_> = app
        .fake
        .completions()
        .iter()
        .map(|r| r.query_param("chat_id").map(str::to_owned))
        .collect();
    assert_ne!(chats[0], chats[1], "the repair runs in a new chat");
}

#[tokio::test]
async fn a_second_bad_answer_is_an_error() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&["{\"name\": \"Ada\"}"])),
    );
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&[
            "{\"name\": \"Ada\", \"age\": \"36\"}",
        ])),
    );
    let (status, e) = common::error_of(app.chat(ask(true)).await).await;
    assert_eq!(status, 502);
    assert_eq!(e["code"], "format_not_followed");
    assert!(e["message"].as_str().unwrap().contains("/age"), "{e}");
    let p = prompts(&app);
    assert!(p[1].contains("\"age\" is a required property"), "{}", p[1]);
}

#[tokio::test]
async fn responses_text_format_is_checked_too() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&["{'ok': true,}"])));
    let v: Value = app
        .post("/v1/responses")
        .json(&json!({"model": MODEL, "input": "ok?",
                      "text": {"format": {"type": "json_object"}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["output"][0]["content"][0]["text"], r#"{"ok":true}"#);
    assert_eq!(v["text"], json!({"format": {"type": "json_object"}}));
    assert_eq!(
        prompts(&app),
        [
            "ok?\n\nAnswer with one JSON object only: no prose before or after it, no Markdown fence."
        ]
    );
}
