//! Non-streaming chat completions end to end against the fake upstream.

use crate::common;

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

#[tokio::test]
async fn upstream_requests_snapshot() {
    let app = TestApp::with_accounts(1, &[]).await;
    let resp = app
        .chat(
            json!({"model": "qwen3.7-plus-thinking-search", "thinking_budget": 2048, "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": "4", "reasoning_content": "easy"},
                {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}]}
            ]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let reqs = app.fake.requests();
    let new_chat = reqs.iter().find(|r| r.path == "/api/v2/chats/new").unwrap();
    insta::assert_json_snapshot!("chats_new_body", new_chat.json.clone().unwrap(), {
        ".timestamp" => "[ms]",
    });
    let completion = reqs
        .iter()
        .find(|r| r.path == "/api/v2/chat/completions")
        .unwrap();
    insta::assert_json_snapshot!("completion_body", completion.json.clone().unwrap(), {
        ".chat_id" => "[chat_id]",
        ".chatId" => "[chat_id]",
        ".timestamp" => "[s]",
        ".messages[].fid" => "[uuid]",
        ".messages[].childrenIds[]" => "[uuid]",
        ".messages[].timestamp" => "[s]",
    });
    let mut headers: Vec<(String, String)> = completion
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "content-length" | "host"))
        .map(|(k, v)| {
            let v = match k.as_str() {
                "authorization" => "Bearer [jwt]".to_owned(),
                "cookie" => "token=[jwt]".to_owned(),
                "x-request-id" => "[uuid]".to_owned(),
                "timezone" => "[date] GMT+0000".to_owned(),
                "referer" => v
                    .rsplit_once("/c/")
                    .map(|(base, _)| format!("{base}/c/[chat_id]"))
                    .unwrap(),
                "origin" => "[origin]".to_owned(),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    headers.sort();
    insta::assert_json_snapshot!("completion_headers", headers, {
        "[][1]" => insta::dynamic_redaction(|value, _| {
            // The referer carries the fake's port.
            match value.as_str() {
                Some(s) if s.starts_with("http://127.0.0.1:") => "http://[fake]/c/[chat_id]".into(),
                _ => value,
            }
        }),
    });
}

#[tokio::test]
async fn header_overrides_and_cookie_only_auth() {
    let fake = common::fake_qwen::FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let cookies = format!("cna=abc; token={token}; ssxmod_itna=1-x");
    let app = TestApp::spawn_with(
        fake,
        &[
            ("QWEN_COOKIES", cookies.as_str()),
            ("QWEN_SEND_AUTH_HEADER", "false"),
            ("QWEN_EXTRA_HEADERS", r#"{"bx-ua":"231!abc","bx-v":null}"#),
            ("QWEN_WEB_VERSION", "0.9.9"),
        ],
    )
    .await;
    assert_eq!(app.chat(body("qwen3.7-plus", false)).await.status(), 200);
    let sent = app.fake.completions().pop().unwrap();
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.header("cookie"),
        Some(format!("token={token}; cna=abc; ssxmod_itna=1-x").as_str())
    );
    assert_eq!(sent.header("bx-ua"), Some("231!abc"));
    assert_eq!(sent.header("bx-v"), None);
    assert_eq!(sent.header("version"), Some("0.9.9"));
    assert_eq!(sent.label.as_deref(), Some("acct1"));
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_across_requests() {
    // One event loop, so that one upstream pool serves every request; every chat is deleted
    // after its answer (none is kept for continuation).
    let app = TestApp::with_accounts(
        1,
        &[
            ("WORKER_THREADS", "1"),
            ("CONVERSATION_CONTINUATION", "false"),
        ],
    )
    .await;
    for stream in [false, true, false, true, false, true] {
        let resp = app.chat(body("qwen3.7-plus", stream)).await;
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
    }
    // The last chat's deletion may still be on its way. (The model list is fetched at start,
    // through reqwest; it is not one of these calls.)
    let calls = || -> Vec<common::fake_qwen::Recorded> {
        let paths = ["/api/v2/chats/new", "/api/v2/chat/completions"];
        let is_call = |r: &common::fake_qwen::Recorded| {
            paths.contains(&r.path.as_str()) || r.method == "DELETE"
        };
        app.fake.requests().into_iter().filter(is_call).collect()
    };
    for _ in 0..100 {
        if calls().len() == 18 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let requests = calls();
    assert_eq!(
        requests.len(),
        18,
        "chats/new, completion and deletion per request"
    );
    let peers: std::collections::HashSet<_> = requests.iter().map(|r| r.peer).collect();
    // A completion may overlap the deletion of the chat before it: two connections at most.
    assert!(
        peers.len() <= 2,
        "{} upstream connections for 18 calls",
        peers.len()
    );
}

#[tokio::test]
async fn a_redirected_completion_is_followed() {
    use common::fake_qwen::Reply;
    let app = TestApp::with_accounts(1, &[]).await;
    let moved = "/api/v2/chat/completions?chat_id=moved";
    // Redirected twice (the second time from where the first sent it), then answered.
    for _ in 0..2 {
        app.fake.push_completion(
            Some("acct1"),
            Reply::Redirect {
                status: 307,
                location: moved.into(),
            },
        );
    }
    let resp = app.chat(body("qwen3.7-plus", false)).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hi!");
    let sent: Vec<_> = app
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v2/chat/completions")
        .collect();
    assert_eq!(
        sent.len(),
        3,
        "redirected twice, then the call it was sent to"
    );
    assert!(sent[0].query_param("chat_id").is_some());
    assert_ne!(sent[1].query, sent[0].query);
    assert_eq!(sent[1].query.as_deref(), Some("chat_id=moved"));
    assert_eq!(sent[2].query.as_deref(), Some("chat_id=moved"));
    // A 307 keeps the method and the body.
    for s in &sent[1..] {
        assert_eq!(s.method, "POST");
        assert_eq!(s.bytes, sent[0].bytes);
    }
    // Followed on the same kept-alive connection.
    assert_eq!(sent[0].peer, sent[1].peer);
    assert_eq!(sent[1].peer, sent[2].peer);
}
