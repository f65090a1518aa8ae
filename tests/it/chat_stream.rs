//! Streaming chat completions: exact chunk sequences for every kind of upstream stream.

use crate::common;

use std::time::Duration;

use common::fake_qwen::{Reply, Split};
use common::qwen_sse::{self as sse, RID};
use common::{TestApp, body, normalize, sse_json, streamed_content, streamed_reasoning};
use serde_json::json;

fn chunk(delta: &str, finish: &str) -> String {
    format!(
        r#"data: {{"id":"chatcmpl-ID","object":"chat.completion.chunk","created":0,"model":"qwen3.7-plus","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}"#
    )
}

#[tokio::test]
async fn capture_streams_byte_for_byte() {
    let app = TestApp::with_accounts(1, &[]).await;
    let resp = app.chat(body("qwen3.7-plus", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let want = [
        chunk(r#"{"role":"assistant","content":""}"#, "null"),
        chunk(r#"{"content":"Hi"}"#, "null"),
        chunk(r#"{"content":"!"}"#, "null"),
        chunk("{}", r#""stop""#),
        "data: [DONE]".to_owned(),
    ]
    .join("\n\n")
        + "\n\n";
    assert_eq!(normalize(&text), want);
    let ids: Vec<String> = sse_json(&text)
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.iter()
            .all(|i| *i == ids[0] && i.starts_with("chatcmpl-"))
    );
}

#[tokio::test]
async fn include_usage_adds_one_chunk_before_done() {
    let app = TestApp::with_accounts(1, &[]).await;
    let mut req = body("qwen3.7-plus", true);
    req["stream_options"] = json!({"include_usage": true});
    let text = app.chat(req).await.text().await.unwrap();
    let chunks = sse_json(&text);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens":1049,"completion_tokens":2,"total_tokens":1051})
    );
    assert!(normalize(&text).ends_with("\"total_tokens\":1051}}\n\ndata: [DONE]\n\n"));
    // Without the option no chunk carries a usage field at all.
    let text = app
        .chat(body("qwen3.7-plus", true))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("usage"));
}

#[tokio::test]
async fn thinking_summary_arrays_are_diffed() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        None,
        Reply::sse(sse::thinking_answer(
            &[&["Read it."], &["Read it.", "Answer."]],
            &["Y ", "is 2"],
        )),
    );
    let mut req = body("qwen3.7-plus-thinking", true);
    req["stream_options"] = json!({"include_usage": true});
    let text = app.chat(req).await.text().await.unwrap();
    let chunks = sse_json(&text);
    assert_eq!(streamed_reasoning(&chunks), "Read it.\n\nAnswer.");
    assert_eq!(streamed_content(&chunks), "Y is 2");
    let usage = &chunks.last().unwrap()["usage"];
    assert!(
        usage["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let sent = app.fake.completions().pop().unwrap().json.unwrap();
    assert_eq!(
        sent["messages"][0]["feature_config"]["thinking_enabled"],
        true
    );
}

#[tokio::test]
async fn captured_thinking_fixture_split_inside_characters() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake
        .push_completion(None, Reply::fixture("capture_thinking_answer_abridged.txt"));
    let text = app
        .chat(body("qwen3.7-plus-thinking", true))
        .await
        .text()
        .await
        .unwrap();
    let chunks = sse_json(&text);
    assert_eq!(
        streamed_reasoning(&chunks),
        "我是一位由阿里巴巴通义实验室研发的超大规模语言模型……"
    );
    assert_eq!(streamed_content(&chunks), "我是通義千問（Qwen");
}

#[tokio::test]
async fn legacy_think_phase_and_every_reasoning_format() {
    let stream = sse::stream(&[
        sse::created(sse::CHAT_ID, sse::PARENT_ID, RID, "0"),
        sse::think(RID, "Let me "),
        sse::think(RID, "see."),
        sse::think_finished(RID),
        sse::answer(RID, "Done.", 5),
        sse::finished(RID),
    ]);
    for (header, reasoning, content) in [
        (None, "Let me see.", "Done."),
        (Some("tags"), "", "<think>\nLet me see.\n</think>\n\nDone."),
        (Some("hidden"), "", "Done."),
    ] {
        let app = TestApp::with_accounts(1, &[]).await;
        app.fake.push_completion(None, Reply::sse(stream.clone()));
        let mut req = app
            .post("/v1/chat/completions")
            .json(&body("qwen3.7-plus-thinking", true));
        if let Some(h) = header {
            req = req.header("X-Reasoning-Format", h);
        }
        let chunks = sse_json(&req.send().await.unwrap().text().await.unwrap());
        assert_eq!(streamed_reasoning(&chunks), reasoning, "{header:?}");
        assert_eq!(streamed_content(&chunks), content, "{header:?}");
    }
}

#[tokio::test]
async fn output_think_false_hides_reasoning_in_both_modes() {
    let app = TestApp::with_accounts(1, &[("OUTPUT_THINK", "false")]).await;
    for stream in [true, false] {
        app.fake.push_completion(
            None,
            Reply::sse(sse::thinking_answer(&[&["secret"]], &["ok"])),
        );
        let resp = app.chat(body("qwen3.7-plus-thinking", stream)).await;
        let text = resp.text().await.unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("reasoning_content"), "{text}");
        assert!(text.contains("ok"));
    }
}

#[tokio::test]
async fn search_sources_render_as_table_and_text() {
    let frames = sse::stream(&[
        sse::created(sse::CHAT_ID, sse::PARENT_ID, RID, "0"),
        sse::web_search(
            RID,
            &[
                ("https://a.example/x", "Alpha", "a.example"),
                ("https://b.example/", "B|eta", "b.example"),
            ],
        ),
        sse::answer(RID, "See [1].", 4),
        sse::finished(RID),
    ]);
    for (mode, want) in [
        (
            "table",
            "| # | Source | Site |\n|---|---|---|\n| 1 | [Alpha](https://a.example/x) | a.example |\n| 2 | [B\\|eta](https://b.example/) | b.example |\n\nSee [1].",
        ),
        (
            "text",
            "[1] [Alpha](https://a.example/x) | a.example\n[2] [B\\|eta](https://b.example/) | b.example\n\nSee [1].",
        ),
    ] {
        let app = TestApp::with_accounts(1, &[("SEARCH_INFO_MODE", mode)]).await;
        app.fake.push_completion(None, Reply::sse(frames.clone()));
        let chunks = sse_json(
            &app.chat(body("qwen3.7-plus-search", true))
                .await
                .text()
                .await
                .unwrap(),
        );
        assert_eq!(streamed_content(&chunks), want, "{mode}");
        let sent = app.fake.completions().pop().unwrap().json.unwrap();
        assert_eq!(sent["messages"][0]["chat_type"], "search");
        // Non-stream gets the same text.
        app.fake.push_completion(None, Reply::sse(frames.clone()));
        let v: serde_json::Value = app
            .chat(body("qwen3.7-plus-search", false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], want);
    }
}

#[tokio::test]
async fn dual_responses_keep_index_zero() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        None,
        Reply::sse_with(
            sse::dual_responses(&["巴", "黎"], &["巴", "黎"]),
            Split::Odd,
        ),
    );
    let chunks = sse_json(
        &app.chat(body("qwen3.7-plus", true))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(streamed_content(&chunks), "巴黎");
}

#[tokio::test]
async fn utf8_split_byte_by_byte_and_crlf() {
    let app = TestApp::with_accounts(1, &[]).await;
    let text = sse::fast_answer(&["你好", "😀", "é"]);
    app.fake
        .push_completion(None, Reply::sse_with(text.clone(), Split::Every(1)));
    let chunks = sse_json(
        &app.chat(body("qwen3.7-plus", true))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(streamed_content(&chunks), "你好😀é");
    // \r\n line endings, a [DONE] the site may add, and a last event without its blank line.
    let crlf = text.replace('\n', "\r\n") + "data: [DONE]";
    app.fake
        .push_completion(None, Reply::sse_with(crlf, Split::Odd));
    let v: serde_json::Value = app
        .chat(body("qwen3.7-plus", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "你好😀é");
}

#[tokio::test]
async fn last_event_without_blank_line_is_kept() {
    let app = TestApp::with_accounts(1, &[]).await;
    let full = sse::stream(&[
        sse::created(sse::CHAT_ID, sse::PARENT_ID, RID, "0"),
        sse::answer(RID, "A", 1),
        sse::answer(RID, "B", 2),
    ]);
    app.fake
        .push_completion(None, Reply::sse(full.trim_end().to_owned()));
    let v: serde_json::Value = app
        .chat(body("qwen3.7-plus", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "AB");
}

#[tokio::test]
async fn cumulative_upstream_is_not_duplicated() {
    let cumulative = sse::stream(&[
        sse::created(sse::CHAT_ID, sse::PARENT_ID, RID, "0"),
        sse::answer(RID, "Hel", 1),
        sse::answer(RID, "Hello", 2),
        sse::answer(RID, "Hello, world", 3),
        sse::finished(RID),
    ]);
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake
        .push_completion(None, Reply::sse(cumulative.clone()));
    let chunks = sse_json(
        &app.chat(body("qwen3.7-plus", true))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(streamed_content(&chunks), "Hello, world");
    let app = TestApp::with_accounts(1, &[("QWEN_STREAM_MODE", "incremental")]).await;
    app.fake.push_completion(None, Reply::sse(cumulative));
    let chunks = sse_json(
        &app.chat(body("qwen3.7-plus", true))
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(streamed_content(&chunks), "HelHelloHello, world");
}

#[tokio::test]
async fn unknown_phases_and_fields_are_ignored() {
    let app = TestApp::with_accounts(1, &[]).await;
    let odd = r#"data: {"choices": [{"delta": {"role": "assistant", "content": "x", "phase": "video_gen", "status": "queued", "brand_new": [1]}}], "response_id": "bceb5c39-c6ae-4fee-a0f9-8df8afd67ca9"}

event: surprise
data: not json at all

: a comment

"#;
    let body_text = sse::stream(&[
        sse::created(sse::CHAT_ID, sse::PARENT_ID, RID, "0"),
        odd.to_owned(),
        sse::answer(RID, "fine", 1),
        sse::finished(RID),
    ]);
    app.fake.push_completion(None, Reply::sse(body_text));
    let v: serde_json::Value = app
        .chat(body("qwen3.7-plus", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "fine");
}

#[tokio::test]
async fn slow_upstream_gets_keepalive_comments_while_streaming() {
    let app = TestApp::with_accounts(1, &[("SSE_KEEPALIVE_SECONDS", "0.2")]).await;
    let stream = sse::stream(&[
        sse::created(sse::CHAT_ID, sse::PARENT_ID, RID, "0"),
        sse::answer(RID, "a", 1),
        sse::answer(RID, "b", 2),
        sse::finished(RID),
    ]);
    app.fake.push_completion(
        None,
        Reply::sse_with(stream, Split::AtEvents).delay(Duration::from_millis(500)),
    );
    let text = app
        .chat(body("qwen3.7-plus", true))
        .await
        .text()
        .await
        .unwrap();
    let events = common::sse_lines(&text);
    let first_a = events
        .iter()
        .position(|e| e.contains(r#""content":"a""#))
        .unwrap();
    let comments_after = events[first_a..]
        .iter()
        .filter(|e| *e == ": keep-alive")
        .count();
    assert!(comments_after >= 1, "{events:?}");
    assert_eq!(streamed_content(&sse_json(&text)), "ab");
}

#[tokio::test]
async fn a_stop_sequence_ends_the_answer_before_it_streamed_or_whole() {
    let app = TestApp::with_accounts(1, &[]).await;
    let parts = ["one two ", "thr", "ee ST", "OP four"];
    for (stream, split) in [
        (true, Split::Whole),
        (true, Split::Every(1)),
        (false, Split::Odd),
    ] {
        app.fake
            .push_completion(None, Reply::sse_with(sse::fast_answer(&parts), split));
        let mut req = body("qwen3.7-plus", stream);
        req["stop"] = json!(["STOP", "never"]);
        let resp = app.chat(req).await;
        assert_eq!(resp.status(), 200);
        let (content, finish) = if stream {
            let text = resp.text().await.unwrap();
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
            let chunks = sse_json(&text);
            let finishes: Vec<&str> = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
                .collect();
            assert_eq!(finishes.len(), 1, "{text}");
            (streamed_content(&chunks), finishes[0].to_owned())
        } else {
            let v: serde_json::Value = resp.json().await.unwrap();
            (
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                v["choices"][0]["finish_reason"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        };
        assert_eq!(content, "one two three ", "{split:?}");
        assert_eq!(finish, "stop");
    }
    // A string `stop` works too; without a match the answer is whole.
    app.fake
        .push_completion(None, Reply::sse(sse::fast_answer(&parts)));
    let mut req = body("qwen3.7-plus", false);
    req["stop"] = json!("zzz");
    let v: serde_json::Value = app.chat(req).await.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "one two three STOP four"
    );
}
