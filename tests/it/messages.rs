//! Anthropic's Messages API end to end against the fake: the message and its blocks, the event
//! stream in Anthropic's order (with `ping`), stop reasons, tool use, history reaching the
//! upstream prompt, `count_tokens`, the model list, and every error in Anthropic's envelope.

use std::time::Duration;

use crate::common;

use common::fake_qwen::{End, Reply, Split};
use common::{KEY, TestApp, qwen_sse};
use serde_json::{Value, json};

const VERSION: &str = "2023-06-01";

fn ask(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 1024, "stream": stream,
           "messages": [{"role": "user", "content": "Say hi"}]})
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn messages(app: &TestApp, body: &Value) -> reqwest::Response {
    post(app, "/v1/messages", body).await
}

/// `(event name, data)` of each SSE block; a block without `event:` is a test failure.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|b| {
            let (name, data) = b
                .strip_prefix("event: ")
                .and_then(|r| r.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not a named event: {b:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "{b}");
            (name.to_owned(), data)
        })
        .collect()
}

fn names(evs: &[(String, Value)]) -> Vec<&str> {
    evs.iter().map(|(n, _)| n.as_str()).collect()
}

/// Status and the `error` object of an Anthropic error envelope.
async fn anthropic_error(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    let e = v["error"].as_object().expect("Anthropic error envelope");
    assert_eq!(e.len(), 2, "{v}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    (status, v["error"].clone())
}

#[tokio::test]
async fn a_whole_message_echoes_the_model_and_counts_usage() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&["Hi", "!"])));
    let resp = messages(&app, &ask(false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
    assert_eq!(
        v,
        json!({"id": id, "type": "message", "role": "assistant",
               "model": "claude-sonnet-4-5-20250929",
               "content": [{"type": "text", "text": "Hi!"}],
               "stop_reason": "end_turn", "stop_sequence": null,
               "usage": {"input_tokens": qwen_sse::INPUT_TOKENS, "output_tokens": 2,
                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})
    );
    assert_eq!(app.fake.completions().len(), 1);
}

#[tokio::test]
async fn a_stream_follows_anthropics_order_with_a_ping_after_message_start() {
    let app = TestApp::with_accounts(1, &[]).await;
    for split in [Split::Whole, Split::Every(1), Split::Odd] {
        app.fake.push_completion(
            None,
            Reply::sse_with(qwen_sse::fast_answer(&["Hi", "!"]), split),
        );
        let resp = messages(&app, &ask(true)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let evs = events(&resp.text().await.unwrap());
        assert_eq!(
            names(&evs),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ],
            "{split:?}"
        );
        let start = &evs[0].1["message"];
        assert_eq!(start["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(start["content"], json!([]));
        assert_eq!(start["stop_reason"], Value::Null);
        assert!(start["usage"]["input_tokens"].as_u64().unwrap() > 0);
        assert_eq!(
            evs[2].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            evs[3].1["delta"],
            json!({"type": "text_delta", "text": "Hi"})
        );
        assert_eq!(
            evs[6].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"input_tokens": qwen_sse::INPUT_TOKENS, "output_tokens": 2,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})
        );
    }
}

#[tokio::test]
async fn thinking_comes_as_a_signed_thinking_block_when_asked_for() {
    let app = TestApp::with_accounts(1, &[]).await;
    let thinking = qwen_sse::thinking_answer(&[&["Let me"], &["Let me think."]], &["Hello"]);
    let mut body = ask(true);
    body["model"] = json!("qwen3.8-max");
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    app.fake.push_completion(None, Reply::sse(thinking.clone()));
    let evs = events(&messages(&app, &body).await.text().await.unwrap());
    assert_eq!(
        evs[2].1["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    let thought: String = evs
        .iter()
        .filter_map(|(_, d)| d["delta"]["thinking"].as_str())
        .collect();
    assert!(thought.starts_with("Let me"), "{thought}");
    let signatures: Vec<&Value> = evs
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "signature_delta")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(signatures.len(), 1);
    assert_eq!(signatures[0]["index"], 0);
    assert!(signatures[0]["delta"]["signature"].as_str().unwrap().len() > 16);
    let stop_of_thinking = evs
        .iter()
        .position(|(n, d)| n == "content_block_stop" && d["index"] == 0)
        .unwrap();
    let signature_at = evs
        .iter()
        .position(|(_, d)| d["delta"]["type"] == "signature_delta")
        .unwrap();
    assert_eq!(signature_at + 1, stop_of_thinking);
    assert_eq!(evs[stop_of_thinking + 1].1["content_block"]["type"], "text");
    let sent = app.fake.completions().pop().unwrap().json.unwrap();
    assert_eq!(
        sent["messages"][0]["feature_config"]["thinking_enabled"],
        true
    );

    // Without `thinking`, a thinking model's reasoning is not shown.
    app.fake.push_completion(None, Reply::sse(thinking));
    body.as_object_mut().unwrap().remove("thinking");
    body["stream"] = json!(false);
    let v: Value = messages(&app, &body).await.json().await.unwrap();
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello"}]),
        "{v}"
    );
}

const CALL: [&str; 3] = [
    "I'll look. ",
    "<q2a:call name=\"Bash\">\n{\"command\": ",
    "\"ls -la\"}\n</q2a:call>",
];

fn with_tools(stream: bool) -> Value {
    json!({"model": "claude-opus-4-1", "max_tokens": 4096, "stream": stream,
           "tools": [{"name": "Bash", "description": "Runs a command.",
                      "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema",
                                       "type": "object", "required": ["command"],
                                       "properties": {"command": {"type": "string"}}}}],
           "messages": [{"role": "user", "content": "List the files"}]})
}

#[tokio::test]
async fn a_tool_call_streams_as_tool_use_with_input_json_deltas_however_the_body_is_cut() {
    let app = TestApp::with_accounts(1, &[]).await;
    for split in [Split::Whole, Split::Every(1), Split::Odd, Split::AtEvents] {
        app.fake
            .push_completion(None, Reply::sse_with(qwen_sse::fast_answer(&CALL), split));
        let evs = events(
            &messages(&app, &with_tools(true))
                .await
                .text()
                .await
                .unwrap(),
        );
        let text: String = evs
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "I'll look. ", "{split:?}");
        let start = evs
            .iter()
            .find(|(_, d)| d["content_block"]["type"] == "tool_use")
            .map(|(_, d)| d)
            .unwrap();
        let id = start["content_block"]["id"].as_str().unwrap();
        assert!(id.starts_with("toolu_"), "{id}");
        assert_eq!(
            start,
            &json!({"type": "content_block_start", "index": 1,
                    "content_block": {"type": "tool_use", "id": id, "name": "Bash", "input": {}}})
        );
        let json: String = evs
            .iter()
            .filter(|(_, d)| d["index"] == 1 && d["delta"]["type"] == "input_json_delta")
            .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(json, r#"{"command":"ls -la"}"#, "{split:?}");
        let delta = &evs[evs.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use", "{split:?}");
        assert_eq!(names(&evs).last(), Some(&"message_stop"));
    }
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&CALL)));
    let v: Value = messages(&app, &with_tools(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"][0],
        json!({"type": "text", "text": "I'll look. "})
    );
    assert_eq!(v["content"][1]["name"], "Bash");
    assert_eq!(v["content"][1]["input"], json!({"command": "ls -la"}));
}

#[tokio::test]
async fn any_tool_choice_without_a_call_is_an_honest_error() {
    let app = TestApp::with_accounts(1, &[]).await;
    for _ in 0..2 {
        app.fake.push_completion(
            None,
            Reply::sse(qwen_sse::fast_answer(&["No tools today."])),
        );
    }
    let mut body = with_tools(false);
    body["tool_choice"] = json!({"type": "any"});
    let (status, e) = anthropic_error(messages(&app, &body).await).await;
    assert_eq!(status, 500);
    assert_eq!(e["type"], "api_error");
    assert_eq!(app.fake.completions().len(), 2, "one corrective round");
}

#[tokio::test]
async fn a_held_back_stretch_gets_pings() {
    let app = TestApp::with_accounts(1, &[("SSE_KEEPALIVE_SECONDS", "0.2")]).await;
    app.fake.push_completion(
        None,
        Reply::sse_with(qwen_sse::fast_answer(&CALL), Split::AtEvents)
            .first_delay(Duration::from_millis(700)),
    );
    let evs = events(
        &messages(&app, &with_tools(true))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(names(&evs)[..3], ["message_start", "ping", "ping"]);
    assert_eq!(names(&evs).last(), Some(&"message_stop"));
}

#[tokio::test]
async fn stop_sequences_and_max_tokens_cut_the_answer() {
    let app = TestApp::with_accounts(1, &[]).await;
    let parts = ["one two ", "thr", "ee STO", "P four"];
    for stream in [false, true] {
        app.fake
            .push_completion(None, Reply::sse(qwen_sse::fast_answer(&parts)));
        let mut body = ask(stream);
        body["stop_sequences"] = json!(["STOP", "zzz"]);
        let resp = messages(&app, &body).await;
        let (text, reason, sequence) = if stream {
            let evs = events(&resp.text().await.unwrap());
            let text: String = evs
                .iter()
                .filter_map(|(_, d)| d["delta"]["text"].as_str())
                .collect();
            let d = &evs[evs.len() - 2].1["delta"];
            assert_eq!(names(&evs).last(), Some(&"message_stop"));
            (text, d["stop_reason"].clone(), d["stop_sequence"].clone())
        } else {
            let v: Value = resp.json().await.unwrap();
            (
                v["content"][0]["text"].as_str().unwrap().to_owned(),
                v["stop_reason"].clone(),
                v["stop_sequence"].clone(),
            )
        };
        assert_eq!(text, "one two three ", "stream {stream}");
        assert_eq!(reason, "stop_sequence");
        assert_eq!(sequence, "STOP");
    }
    // Three tokens: "one", " two", " three" in Qwen's vocabulary.
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&parts)));
    let mut body = ask(false);
    body["max_tokens"] = json!(2);
    let v: Value = messages(&app, &body).await.json().await.unwrap();
    assert_eq!(v["stop_reason"], "max_tokens", "{v}");
    assert_eq!(v["content"][0]["text"], "one two");
}

#[tokio::test]
async fn history_with_tool_use_results_errors_and_images_reaches_the_prompt() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&["Done."])));
    let png = base64_png();
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
    "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    "tools": with_tools(false)["tools"],
    "messages": [
        {"role": "user", "content": "Run it twice"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "PRIVATE-THOUGHT", "signature": "x"},
            {"type": "tool_use", "id": "toolu_A", "name": "Bash", "input": {"command": "make"}},
            {"type": "tool_use", "id": "toolu_B", "name": "Bash", "input": {"command": "shot"}}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_A", "is_error": true,
             "content": "make: *** No rule"},
            {"type": "tool_result", "tool_use_id": "toolu_B", "content": [
                {"type": "text", "text": "screenshot taken"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
            ]}
        ]}
    ]});
    let resp = messages(&app, &body).await;
    assert_eq!(resp.status(), 200);
    let sent = app.fake.completions().pop().unwrap().json.unwrap();
    let prompt = sent["messages"][0]["content"].as_str().unwrap();
    assert!(prompt.starts_with("system:You are terse."), "{prompt}");
    assert!(
        prompt.contains("<q2a:call name=\"Bash\">\n{\"command\":\"make\"}\n</q2a:call>"),
        "{prompt}"
    );
    assert!(
        prompt.contains(
            "<q2a:result call=\"toolu_A\" name=\"Bash\" error=\"true\">\nmake: *** No rule\n</q2a:result>"
        ),
        "{prompt}"
    );
    assert!(
        prompt.contains(
            "<q2a:result call=\"toolu_B\" name=\"Bash\">\nscreenshot taken\n</q2a:result>"
        ),
        "{prompt}"
    );
    assert!(!prompt.contains("PRIVATE-THOUGHT"), "{prompt}");
    let files = sent["messages"][0]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{sent}");
    assert_eq!(files[0]["file_type"], "image/png");
    assert_eq!(app.fake.objects().len(), 1);
}

/// A 1×1 PNG.
fn base64_png() -> &'static str {
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
}

#[tokio::test]
async fn count_tokens_counts_the_prompt_as_sent_with_its_tools() {
    let app = TestApp::with_accounts(1, &[]).await;
    let count = |body: Value| {
        let app = &app;
        async move {
            let resp = post(app, "/v1/messages/count_tokens", &body).await;
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
            v["input_tokens"].as_u64().unwrap()
        }
    };
    let plain = json!({"model": "claude-sonnet-4-5",
                       "messages": [{"role": "user", "content": "Say hi"}]});
    // The prompt sent is the user's text alone: "Say hi" is two tokens.
    assert_eq!(count(plain).await, 2);
    let mut tools = with_tools(false);
    tools.as_object_mut().unwrap().remove("max_tokens");
    let with = count(tools).await;
    assert!(with > 100, "{with}");
    assert_eq!(
        app.fake.completions().len(),
        0,
        "counting sends nothing upstream"
    );
}

#[tokio::test]
async fn the_model_list_takes_anthropics_shape_when_asked() {
    let app = TestApp::with_accounts(1, &[]).await;
    let v: Value = app
        .http
        .get(app.url("/v1/models"))
        .header("x-api-key", KEY)
        .header("anthropic-version", VERSION)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = v["data"].as_array().unwrap();
    assert!(!data.is_empty());
    assert_eq!(data[0]["type"], "model");
    assert!(
        data[0]["created_at"].as_str().unwrap().ends_with('Z'),
        "{v}"
    );
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], data[0]["id"]);
    assert_eq!(v["last_id"], data[data.len() - 1]["id"]);
    // Without the header: OpenAI's list.
    let v = app.get_json("/v1/models").await;
    assert_eq!(v["object"], "list");
}

#[tokio::test]
async fn errors_before_the_first_byte_use_anthropics_envelope_and_statuses() {
    let app = TestApp::with_accounts(1, &[]).await;
    // No key: 401, and nothing reaches the upstream.
    let resp = app
        .http
        .post(app.url("/v1/messages"))
        .json(&ask(false))
        .send()
        .await
        .unwrap();
    let (status, e) = anthropic_error(resp).await;
    assert_eq!(
        (status, e["type"].as_str()),
        (401, Some("authentication_error"))
    );
    // A Bearer key works as well as x-api-key.
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&["ok"])));
    let resp = app
        .http
        .post(app.url("/v1/messages"))
        .bearer_auth(KEY)
        .json(&ask(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(app.fake.completions().len(), 1);

    let mut no_max = ask(false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let (status, e) = anthropic_error(messages(&app, &no_max).await).await;
    assert_eq!(
        (status, e["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    assert_eq!(e["message"], "max_tokens: Field required");

    let (status, e) = anthropic_error(messages(&app, &json!({"model": "m"})).await).await;
    assert_eq!(
        (status, e["type"].as_str()),
        (400, Some("invalid_request_error"))
    );

    let mut unknown = ask(false);
    unknown["model"] = json!("gpt-nope");
    let (status, e) = anthropic_error(messages(&app, &unknown).await).await;
    assert_eq!((status, e["type"].as_str()), (404, Some("not_found_error")));

    let (status, e) = anthropic_error(post(&app, "/v1/messages/batches", &ask(false)).await).await;
    assert_eq!((status, e["type"].as_str()), (404, Some("not_found_error")));

    // The upstream's rate limit: 429 with retry-after.
    let limited = json!({"success": false, "data": {"code": "RateLimited", "num": 1,
        "details": "You have reached the upper limit for today's usage."}});
    app.fake.push_completion(None, Reply::json(200, limited));
    let resp = messages(&app, &ask(true)).await;
    assert_eq!(resp.headers()["retry-after"], "3600");
    let (status, e) = anthropic_error(resp).await;
    assert_eq!(
        (status, e["type"].as_str()),
        (429, Some("rate_limit_error"))
    );
    assert_eq!(app.fake.completions().len(), 2);
}

#[tokio::test]
async fn no_usable_account_is_529_overloaded() {
    let app = TestApp::with_accounts(0, &[]).await;
    let (status, e) = anthropic_error(messages(&app, &ask(true)).await).await;
    assert_eq!(
        (status, e["type"].as_str()),
        (529, Some("overloaded_error"))
    );
    // The OpenAI surface keeps its own envelope for the same failure.
    let (status, e) = common::error_of(app.chat(common::body("qwen3.7-plus", false)).await).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (503, Some("no_available_account"))
    );
}

#[tokio::test]
async fn a_failure_after_the_first_byte_is_an_error_event_and_the_end() {
    let app = TestApp::with_accounts(1, &[]).await;
    let partial = qwen_sse::stream(&[
        qwen_sse::created(qwen_sse::CHAT_ID, qwen_sse::PARENT_ID, qwen_sse::RID, "0"),
        qwen_sse::answer(qwen_sse::RID, "Half", 1),
    ]);
    app.fake
        .push_completion(None, Reply::sse(partial).end(End::Reset));
    let text = messages(&app, &ask(true)).await.text().await.unwrap();
    let evs = events(&text);
    let (last, data) = evs.last().unwrap();
    assert_eq!(last, "error", "{text}");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(!names(&evs).contains(&"message_stop"), "{text}");
    assert!(!names(&evs).contains(&"message_delta"), "{text}");
    assert!(names(&evs).contains(&"content_block_delta"), "{text}");
}
