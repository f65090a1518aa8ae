//! The Responses API end to end against the fake: the response object and its items, the event
//! stream (every event numbered, one final event), tool loops through `previous_response_id`
//! (the history rebuilt from the store reaches the upstream prompt) and with the whole input,
//! custom tools, the stored response's routes, and errors in OpenAI's envelope.

use std::time::Duration;

use crate::common;

use common::fake_qwen::{End, Reply, Split};
use common::{KEY, TestApp, qwen_sse};
use serde_json::{Value, json};

const MODEL: &str = "qwen3.7-plus";

async fn create(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post("/v1/responses").json(body).send().await.unwrap()
}

/// `(type, data)` of each event; every block must be named, numbered in order and match.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|b| !b.is_empty() && !b.starts_with(':'))
        .enumerate()
        .map(|(n, b)| {
            let (name, data) = b
                .strip_prefix("event: ")
                .and_then(|r| r.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not a named event: {b:?}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "{b}");
            assert_eq!(data["sequence_number"], n, "{b}");
            (name.to_owned(), data)
        })
        .collect()
}

fn names(evs: &[(String, Value)]) -> Vec<&str> {
    evs.iter().map(|(n, _)| n.as_str()).collect()
}

/// The one message of the last completion the fake received.
fn last_prompt(app: &TestApp) -> String {
    let sent = app.fake.completions().pop().expect("a completion");
    sent.json.expect("a JSON body")["messages"][0]["content"]
        .as_str()
        .expect("a text prompt")
        .to_owned()
}

fn id_of(v: &Value, prefix: &str) -> String {
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with(prefix), "{v}");
    id
}

#[tokio::test]
async fn a_whole_response_is_stored_and_its_routes_answer() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&["Hi", "!"])));
    let resp = create(
        &app,
        &json!({"model": MODEL, "input": "Say hi", "metadata": {"k": "v"}}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let id = id_of(&v, "resp_");
    let msg = &v["output"][0];
    let msg_id = id_of(msg, "msg_");
    assert_eq!(
        v["output"],
        json!([{"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi!", "annotations": [], "logprobs": []}]}])
    );
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["metadata"], json!({"k": "v"}));
    assert_eq!(v["store"], true);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(
        v["usage"],
        json!({"input_tokens": qwen_sse::INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
               "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": qwen_sse::INPUT_TOKENS + 2})
    );
    assert_eq!(last_prompt(&app), "Say hi");

    let got = app.get_json(&format!("/v1/responses/{id}")).await;
    assert_eq!(got, v);
    let items = app
        .get_json(&format!("/v1/responses/{id}/input_items"))
        .await;
    let item_id = items["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        items,
        json!({"object": "list", "has_more": false, "first_id": item_id, "last_id": item_id,
               "data": [{"type": "message", "role": "user", "id": item_id,
                         "content": [{"type": "input_text", "text": "Say hi"}]}]})
    );

    let del = app
        .delete(&format!("/v1/responses/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(
        del.json::<Value>().await.unwrap(),
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    for resp in [
        app.get(&format!("/v1/responses/{id}"))
            .send()
            .await
            .unwrap(),
        app.delete(&format!("/v1/responses/{id}"))
            .send()
            .await
            .unwrap(),
    ] {
        let (status, e) = common::error_of(resp).await;
        assert_eq!((status, e["code"].as_str()), (404, Some("not_found")));
    }
}

#[tokio::test]
async fn a_stream_numbers_every_event_and_ends_with_the_stored_response() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        None,
        Reply::sse_with(
            qwen_sse::thinking_answer(&[&["Think."]], &["Hel", "lo"]),
            Split::Odd,
        ),
    );
    let body = json!({"model": format!("{MODEL}-thinking"), "input": "Hi", "stream": true,
                      "reasoning": {"effort": "high", "summary": "auto"},
                      "include": ["reasoning.encrypted_content"]});
    let resp = create(&app, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let evs = events(&resp.text().await.unwrap());
    assert_eq!(
        names(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let created = &evs[0].1["response"];
    assert_eq!(
        (created["status"].as_str(), created["output"].clone()),
        (Some("in_progress"), json!([]))
    );
    let reasoning = &evs[7].1["item"];
    assert_eq!(
        reasoning["summary"],
        json!([{"type": "summary_text", "text": "Think."}])
    );
    assert!(
        reasoning["encrypted_content"]
            .as_str()
            .unwrap()
            .starts_with("qwen2api.r1.")
    );
    let done = &evs[15].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][1]["content"][0]["text"], "Hello");
    assert_eq!(
        done["usage"]["output_tokens_details"]["reasoning_tokens"],
        10
    );
    let stored = app
        .get_json(&format!("/v1/responses/{}", done["id"].as_str().unwrap()))
        .await;
    assert_eq!(&stored, done);
}

const CALL: [&str; 2] = [
    "I'll look. ",
    "<q2a:call name=\"shell\">{\"command\": [\"ls\"]}</q2a:call>",
];

fn shell_tool() -> Value {
    json!([{"type": "function", "name": "shell", "description": "Runs a command.",
            "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                           "required": ["command"]}}])
}

/// A function-tool loop through `previous_response_id`: the first response's call, then its
/// output. Returns the two responses.
async fn tool_loop(app: &TestApp) -> (Value, Value) {
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&CALL)));
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&["Two files."])));
    let first: Value = create(
        app,
        &json!({"model": MODEL, "instructions": "Be brief.", "input": "List files", "tools": shell_tool()}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(first["output"][0]["content"][0]["text"], "I'll look. ");
    let call = &first["output"][1];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "shell");
    assert_eq!(call["arguments"], r#"{"command":["ls"]}"#);
    assert_eq!(call["status"], "completed");
    id_of(call, "fc_");
    let second = create(
        app,
        &json!({"model": MODEL, "instructions": "Be brief.", "tools": shell_tool(),
                "previous_response_id": first["id"],
                "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt\nb.txt"}]}),
    )
    .await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["output"][0]["content"][0]["text"], "Two files.");
    assert_eq!(second["previous_response_id"], first["id"]);
    // Only the new item is this response's input.
    let items = app
        .get_json(&format!(
            "/v1/responses/{}/input_items",
            second["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(items["data"].as_array().unwrap().len(), 1);
    assert_eq!(items["data"][0]["type"], "function_call_output");
    (first, second)
}

fn result_block(first: &Value) -> String {
    let call_id = first["output"][1]["call_id"].as_str().unwrap();
    format!("<q2a:result call=\"{call_id}\" name=\"shell\">\na.txt\nb.txt\n</q2a:result>")
}

#[tokio::test]
async fn a_tool_loop_rebuilds_the_history_from_the_stored_response() {
    let app = TestApp::with_accounts(1, &[("CONVERSATION_CONTINUATION", "false")]).await;
    let (first, _) = tool_loop(&app).await;
    let prompt = last_prompt(&app);
    let user = prompt.find("user:List files").expect(&prompt);
    let called = prompt
        .find("<q2a:call name=\"shell\">\n{\"command\":[\"ls\"]}\n</q2a:call>")
        .expect(&prompt);
    let result = prompt.find(&result_block(&first)).expect(&prompt);
    assert!(user < called && called < result, "{prompt}");
    assert!(prompt.starts_with("system:Be brief."), "{prompt}");
}

#[tokio::test]
async fn a_tool_loop_through_previous_response_id_continues_the_upstream_chat() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.number_answers();
    let (first, _) = tool_loop(&app).await;
    let sent = app.fake.completions();
    assert_eq!(sent.len(), 2);
    let (one, two) = (sent[0].json.clone().unwrap(), sent[1].json.clone().unwrap());
    assert_eq!(
        sent[0].query_param("chat_id"),
        sent[1].query_param("chat_id")
    );
    assert_eq!(common::fake_chats::parent_of(&one), None);
    assert_eq!(
        common::fake_chats::parent_of(&two).as_deref(),
        Some("answer-1")
    );
    let tail = common::fake_chats::prompt_of(&two);
    assert_eq!(
        tail,
        format!(
            "{}\n\n(Answer in plain text, or call tools with <q2a:call name=\"…\"> blocks as described above.)",
            result_block(&first)
        )
    );
}

#[tokio::test]
async fn the_same_loop_with_store_false_and_the_whole_input_keeps_nothing() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&["Two files."])));
    let resp = create(
        &app,
        &json!({"model": MODEL, "store": false, "tools": shell_tool(), "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List files"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_7", "name": "shell", "arguments": "{\"command\":[\"ls\"]}"},
            {"type": "function_call_output", "call_id": "call_7", "output": "a.txt"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["store"], false);
    let prompt = last_prompt(&app);
    assert!(
        prompt.contains("<q2a:result call=\"call_7\" name=\"shell\">\na.txt\n</q2a:result>"),
        "{prompt}"
    );
    let id = v["id"].as_str().unwrap();
    let (status, _) = common::error_of(
        app.get(&format!("/v1/responses/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let next = create(
        &app,
        &json!({"model": MODEL, "previous_response_id": id, "input": "more"}),
    )
    .await;
    let (status, e) = common::error_of(next).await;
    assert_eq!(status, 400);
    assert_eq!(e["code"], "previous_response_not_found");
    assert_eq!(e["param"], "previous_response_id");
    assert_eq!(app.fake.completions().len(), 1);
}

#[tokio::test]
async fn a_custom_tool_call_streams_its_raw_input() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&[
            "<q2a:call name=\"apply_patch\">{\"input\": \"*** Begin Patch\\n*** Add File: a.txt\\n+hi\\n*** End Patch\"}</q2a:call>",
        ])),
    );
    let body = json!({"model": MODEL, "stream": true, "input": "add a.txt",
        "tools": [{"type": "custom", "name": "apply_patch", "description": "Edit files.",
                   "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}}]});
    let evs = events(&create(&app, &body).await.text().await.unwrap());
    assert_eq!(
        names(&evs)[2..],
        [
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch";
    assert_eq!(evs[3].1["delta"], patch);
    let item = &evs[5].1["item"];
    assert_eq!(item["type"], "custom_tool_call");
    assert_eq!(item["name"], "apply_patch");
    assert_eq!(item["input"], patch);
    id_of(item, "ctc_");
    let prompt = last_prompt(&app);
    assert!(
        prompt.contains("lark grammar:\nstart: begin_patch"),
        "{prompt}"
    );
}

#[tokio::test]
async fn a_failure_mid_stream_ends_with_response_failed() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::stream(&[
            qwen_sse::created(qwen_sse::CHAT_ID, qwen_sse::PARENT_ID, qwen_sse::RID, "0"),
            qwen_sse::answer(qwen_sse::RID, "Par", 1),
        ]))
        .end(End::Reset),
    );
    let text = create(&app, &json!({"model": MODEL, "input": "x", "stream": true}))
        .await
        .text()
        .await
        .unwrap();
    let evs = events(&text);
    let (last, v) = evs.last().unwrap();
    assert_eq!(last, "response.failed");
    assert_eq!(v["response"]["status"], "failed");
    assert_eq!(v["response"]["error"]["code"], "server_error");
    assert_eq!(v["response"]["output"][0]["status"], "incomplete");
    assert_eq!(v["response"]["output"][0]["content"][0]["text"], "Par");
    assert_eq!(
        evs.iter()
            .filter(|(n, _)| n.starts_with("response.completed"))
            .count(),
        0
    );
}

#[tokio::test]
async fn max_output_tokens_makes_the_response_incomplete() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&[
            "one two three four five six seven eight",
        ])),
    );
    let v: Value = create(
        &app,
        &json!({"model": MODEL, "input": "count", "max_output_tokens": 3}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(v["output"][0]["content"][0]["text"], "one two thr");
    assert_eq!(v["output"][0]["status"], "incomplete");
}

#[tokio::test]
async fn errors_come_in_openais_envelope_and_reach_no_upstream() {
    let app = TestApp::with_accounts(1, &[]).await;
    let (status, e) = common::error_of(create(&app, &json!({"input": "x"})).await).await;
    assert_eq!((status, e["param"].as_str()), (400, Some("model")));
    let (status, e) = common::error_of(
        create(
            &app,
            &json!({"model": MODEL, "input": [{"type": "function_call", "name": "f"}]}),
        )
        .await,
    )
    .await;
    assert_eq!((status, e["param"].as_str()), (400, Some("input[0]")));
    let (status, e) =
        common::error_of(create(&app, &json!({"model": "nope", "input": "x"})).await).await;
    assert_eq!((status, e["code"].as_str()), (404, Some("model_not_found")));
    let unauth = app
        .http
        .post(app.url("/v1/responses"))
        .json(&json!({"model": MODEL, "input": "x"}))
        .send()
        .await
        .unwrap();
    let (status, _) = common::error_of(unauth).await;
    assert_eq!(status, 401);
    let no_account = TestApp::with_accounts(0, &[]).await;
    let (status, e) = common::error_of(
        no_account
            .post("/v1/responses")
            .json(&json!({"model": MODEL, "input": "x", "stream": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 503, "{e}");
    assert_eq!(app.fake.completions().len(), 0);
    let _ = (KEY, Duration::ZERO);
}

#[tokio::test]
async fn a_prompt_well_over_the_models_context_is_refused_before_it_is_sent() {
    use common::fake_qwen::{FakeQwen, model};
    let fake = FakeQwen::start().await;
    let cookie = format!("token={}", fake.add_token("acct1"));
    // A model that takes 100 tokens: 111 and more are refused (our count may run 8 % high).
    fake.set_models(json!({"data": [model("qwen-tiny", "Qwen-Tiny", false, &["t2t"], true, 100)]}));
    let app = TestApp::spawn_with(fake, &[("QWEN_COOKIES", cookie.as_str())]).await;
    let long = "word ".repeat(400);
    let (status, e) =
        common::error_of(create(&app, &json!({"model": "qwen-tiny", "input": long})).await).await;
    assert_eq!(
        (status, e["code"].as_str(), e["param"].as_str()),
        (400, Some("context_length_exceeded"), Some("input"))
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("This model's maximum context length is 100 tokens. However, your messages resulted in 4"),
        "{e}"
    );
    let resp = app
        .post("/v1/messages")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "qwen-tiny", "max_tokens": 10,
                      "messages": [{"role": "user", "content": long}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("prompt is too long: 4") && message.ends_with(" tokens > 100 maximum"),
        "{message}"
    );
    assert_eq!(app.fake.completions().len(), 0);
    // A short prompt passes.
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&["ok"])));
    let ok = create(&app, &json!({"model": "qwen-tiny", "input": "hi"})).await;
    assert_eq!(ok.status(), 200);
}
