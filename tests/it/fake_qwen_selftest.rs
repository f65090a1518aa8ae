//! Self-test of the fake chat.qwen.ai: other tests trust its bytes, auth rules and bookkeeping.
use crate::common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::fake_qwen::{
    End, FakeQwen, Reply, Split, fixture_bytes, jwt_claims, sha256_hex, strip_comments,
};
use common::qwen_sse;
use futures::StreamExt as _;
use serde_json::{Value, json};

const FAST: &str = "capture_fast_answer.sse";
const THINKING: &str = "capture_thinking_answer_abridged.txt";

fn raw_fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/qwen/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).expect("fixture")
}

fn completions_url(fake: &FakeQwen) -> String {
    fake.url("/api/v2/chat/completions?chat_id=c1")
}

async fn complete(fake: &FakeQwen, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(completions_url(fake))
        .bearer_auth(token)
        .json(&json!({"stream": true, "chat_id": "c1"}))
        .send()
        .await
        .expect("send")
}

async fn complete_text(fake: &FakeQwen, token: &str) -> String {
    complete(fake, token).await.text().await.expect("body")
}

/// Reads the body frame by frame, returning the bytes and the number of frames.
async fn collect_frames(response: reqwest::Response) -> (Vec<u8>, usize) {
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::new();
    let mut frames = 0;
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.expect("chunk"));
        frames += 1;
    }
    (bytes, frames)
}

/// Parses each `data: ` event of a stream into JSON.
fn events(stream: &str) -> Vec<Value> {
    stream
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").expect("data: prefix");
            serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}"))
        })
        .collect()
}

#[tokio::test]
async fn sign_in_accepts_sha256_and_rejects_plain_password() {
    let fake = FakeQwen::start().await;
    fake.add_user("Alice@example.com", "s3cret");
    let client = reqwest::Client::new();
    let sign_in = |email: &str, password: &str| {
        client
            .post(fake.url("/api/v1/auths/signin"))
            .json(&json!({"email": email, "password": password}))
            .send()
    };

    let plain = sign_in("Alice@example.com", "s3cret").await.unwrap();
    assert_eq!(plain.status(), 400);
    assert_eq!(
        plain.json::<Value>().await.unwrap(),
        json!({"detail": "The email or password you entered is incorrect."})
    );
    let unknown = sign_in("bob@example.com", &sha256_hex("s3cret"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        json!({"detail": "not registered"})
    );

    let ok = sign_in("Alice@example.com", &sha256_hex("s3cret"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["email"], "Alice@example.com");
    assert_eq!(body["role"], "user");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["token"].as_str().unwrap().to_owned();

    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
        br#"{"alg":"HS256","typ":"JWT"}"#
    );
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 32);
    let claims = jwt_claims(&token).unwrap();
    assert_eq!(claims["id"], body["id"]);
    assert_eq!(claims["exp"], body["expires_at"]);
    let lifetime =
        claims["exp"].as_i64().unwrap() - claims["last_password_change"].as_i64().unwrap();
    assert!((30 * 86_400 - 5..=30 * 86_400 + 5).contains(&lifetime));

    let again: Value = sign_in("alice@example.com", &sha256_hex("s3cret"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(
        again["token"], body["token"],
        "each sign-in mints a new token"
    );
    assert_eq!(again["id"], body["id"], "same account, same user id");

    let me = client
        .get(fake.url("/api/v1/auths/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["role"], "user");
    assert_eq!(me["id"], body["id"]);

    assert_eq!(fake.count("POST", "/api/v1/auths/signin"), 4);
    assert_eq!(
        fake.count_for("Alice@example.com", "GET", "/api/v1/auths/"),
        1
    );
    let signins: Vec<_> = fake.requests().into_iter().take(4).collect();
    assert!(signins.iter().all(|r| r.label.is_none()));
    assert_eq!(
        signins[2].json.as_ref().unwrap()["password"],
        sha256_hex("s3cret")
    );
}

#[tokio::test]
async fn token_in_cookie_alone_is_accepted_and_missing_token_is_401() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct-a");
    let client = reqwest::Client::new();
    let new_chat = |cookie: Option<String>| {
        let mut request = client
            .post(fake.url("/api/v2/chats/new"))
            .json(&json!({"models": ["qwen3.7-plus"], "chat_type": "t2t"}));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };

    let ok = new_chat(Some(format!("a=b; token={token}; c=d")))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["success"], true);
    let chat_id = body["data"]["id"].as_str().unwrap();
    assert_eq!(fake.chat_ids(), vec![chat_id.to_owned()]);

    for cookie in [None, Some("a=b; token=nope".to_owned())] {
        let denied = new_chat(cookie).await.unwrap();
        assert_eq!(denied.status(), 401);
        assert_eq!(
            denied.json::<Value>().await.unwrap(),
            json!({"detail": "Unauthorized"})
        );
    }

    let recorded = fake.requests();
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0].label.as_deref(), Some("acct-a"));
    assert!(recorded[0].header("Cookie").unwrap().contains(&token));
    assert_eq!(recorded[1].label, None);
    assert_eq!(recorded[2].label, None);
    assert_eq!(fake.count_for("acct-a", "POST", "/api/v2/chats/new"), 1);
    assert_eq!(fake.count("POST", "/api/v2/chats/new"), 3);
}

#[tokio::test]
async fn chats_new_requires_models_and_honours_queued_override() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("a");
    let client = reqwest::Client::new();
    let post = |body: Value| {
        client
            .post(fake.url("/api/v2/chats/new"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let missing: Value = post(json!({"models": []}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(missing["success"], false);
    assert_eq!(
        missing["data"],
        json!({"code": "Bad_Request", "details": "models is required"})
    );

    fake.push_chat_new(Some("a"), Reply::html(403, "<html>aliyun_waf_aa</html>"));
    let waf = post(json!({"models": ["m"]})).await.unwrap();
    assert_eq!(waf.status(), 403);
    assert!(
        waf.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let ok: Value = post(json!({"models": ["m"]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["success"], true);
}

#[tokio::test]
async fn revoked_and_expired_tokens_get_401() {
    let fake = FakeQwen::start().await;
    let first = fake.add_token("acct");
    let second = fake.add_token("acct");
    let other = fake.add_token("other");
    let expired = fake.add_token_with_exp("old", 1_000);
    fake.revoke("acct");
    for token in [&first, &second, &expired] {
        let response = complete(&fake, token).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"detail": "Unauthorized"})
        );
    }
    assert_eq!(complete(&fake, &other).await.status(), 200);
    let fresh = fake.add_token("acct");
    assert_eq!(
        complete(&fake, &fresh).await.status(),
        200,
        "re-minted after revoke"
    );

    let recorded = fake.completions();
    assert_eq!(recorded.len(), 5);
    assert_eq!(recorded[0].label, None);
    assert_eq!(recorded[0].token_label.as_deref(), Some("acct"));
    assert_eq!(recorded[2].token_label.as_deref(), Some("old"));
    assert_eq!(
        fake.count_for("acct", "POST", "/api/v2/chat/completions"),
        1
    );
}

#[test]
fn fast_answer_builder_equals_the_capture_byte_for_byte() {
    let built = qwen_sse::fast_answer(&["Hi", "!"]);
    assert_eq!(built.as_bytes(), raw_fixture(FAST).as_slice());
    assert_eq!(fixture_bytes(FAST), raw_fixture(FAST));
}

#[test]
fn builders_escape_and_parse() {
    let tricky = "say \"hi\"\n\t\\ 你好 😀";
    let answer = qwen_sse::answer(qwen_sse::RID, tricky, 3);
    let parsed = &events(&answer)[0];
    assert_eq!(parsed["choices"][0]["delta"]["content"], tricky);
    assert_eq!(parsed["usage"]["total_tokens"], 1052);
    assert!(answer.contains("\"content\": \"say \\\"hi\\\"\\n\\t\\\\ 你好 😀\", \"phase\""));

    let thinking = qwen_sse::thinking_answer(&[&["a"], &["a", "b \"q\""]], &["X"]);
    let parsed = events(&thinking);
    assert!(parsed[0].get("response.created").is_some());
    assert_eq!(
        parsed[2]["choices"][0]["delta"]["extra"]["summary_thought"]["content"],
        json!(["a", "b \"q\""])
    );
    assert_eq!(
        parsed[2]["choices"][0]["delta"]["extra"]["summary_title"]["content"],
        json!(["Step 1", "Step 2"])
    );
    assert_eq!(parsed[3]["choices"][0]["delta"]["status"], "finished");
    assert_eq!(parsed[4]["choices"][0]["delta"]["content"], "X");
    assert_eq!(
        parsed.last().unwrap()["choices"][0]["delta"]["status"],
        "finished"
    );

    let dual = events(&qwen_sse::dual_responses(&["巴", "黎"], &["巴", "黎"]));
    let order: Vec<&str> = dual[2..]
        .iter()
        .map(|e| e["response_id"].as_str().unwrap())
        .collect();
    let (r0, r1) = (qwen_sse::RID, qwen_sse::RID1);
    assert_eq!(order, [r1, r0, r1, r0, r1, r0]);
    assert_eq!(dual[1]["response.created"]["response_index"], "1");

    let search = events(&qwen_sse::web_search(
        qwen_sse::RID,
        &[("https://example.com/a", "A", "example.com")],
    ));
    let delta = &search[0]["choices"][0]["delta"];
    assert_eq!(delta["phase"], "web_search");
    assert_eq!(delta["name"], "web_search");
    assert_eq!(delta["role"], "function");
    assert_eq!(
        delta["extra"]["web_search_info"][0]["hostname"],
        "example.com"
    );

    let error = events(&qwen_sse::error_event(
        "internal_error",
        "Allocated quota exceeded",
    ));
    assert_eq!(error[0]["error"]["message"], "Allocated quota exceeded");
    let business: Value =
        serde_json::from_str(&qwen_sse::business_error("RateLimited", "too much")).unwrap();
    assert_eq!(business["data"]["code"], "RateLimited");
    assert_eq!(business["success"], false);

    for event in [
        qwen_sse::think(qwen_sse::RID, "hm"),
        qwen_sse::think_finished(qwen_sse::RID),
        qwen_sse::summary_finished(qwen_sse::RID),
        qwen_sse::empty_typing(qwen_sse::RID, 1),
        qwen_sse::created("c", "p", "r", "0"),
    ] {
        assert!(event.ends_with("\n\n"));
        let data = event.strip_prefix("data: ").unwrap().trim_end();
        serde_json::from_str::<Value>(data).unwrap();
    }
}

#[test]
fn thinking_fixture_loses_its_comments_and_odd_split_cuts_inside_characters() {
    let raw = String::from_utf8(raw_fixture(THINKING)).unwrap();
    assert!(raw.starts_with('#'));
    let text = String::from_utf8(fixture_bytes(THINKING)).unwrap();
    assert_eq!(text, strip_comments(&raw));
    assert!(text.starts_with("data: {\"response.created\""));
    assert!(!text.lines().any(|l| l.starts_with('#')));
    assert!(!text.contains("\n\n\n"));
    assert_eq!(events(&text).len(), 6);

    let mut offset = 0;
    let mut inside_char = 0;
    for piece in Split::Odd.pieces(text.as_bytes()) {
        offset += piece.len();
        if !text.is_char_boundary(offset) {
            inside_char += 1;
        }
    }
    assert_eq!(offset, text.len());
    assert!(
        inside_char >= 5,
        "only {inside_char} cuts inside characters"
    );

    let events_split = Split::AtEvents.pieces(text.as_bytes());
    assert_eq!(events_split.len(), 6);
    assert!(events_split[0].ends_with(b"\n\n"));
    assert_eq!(Split::Whole.pieces(b"abc").len(), 1);
    assert_eq!(Split::Every(2).pieces(b"abcde").len(), 3);
}

#[tokio::test]
async fn thinking_fixture_replays_without_comment_lines() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("a");
    fake.push_completion(None, Reply::fixture(THINKING));
    let response = complete(&fake, &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let (bytes, _) = collect_frames(response).await;
    assert_eq!(bytes, fixture_bytes(THINKING));
    assert!(!String::from_utf8(bytes).unwrap().contains('#'));
}

#[tokio::test]
async fn streamed_bytes_reassemble_exactly_for_every_split() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("a");
    let body = fixture_bytes(THINKING);
    for split in [Split::Odd, Split::Every(1), Split::AtEvents, Split::Whole] {
        fake.push_completion(None, Reply::sse_with(body.clone(), split));
        let (bytes, frames) = collect_frames(complete(&fake, &token).await).await;
        assert_eq!(bytes, body, "{split:?}");
        assert!(frames >= 1);
    }
    // The default reply is the fast capture, split oddly.
    assert_eq!(
        complete_text(&fake, &token).await.as_bytes(),
        raw_fixture(FAST)
    );
    assert_eq!(fake.open_streams(), 0);
}

#[tokio::test]
async fn reset_end_breaks_the_body_after_the_pieces() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("a");
    let body = qwen_sse::stream(&[
        qwen_sse::created("c", "p", qwen_sse::RID, "0"),
        qwen_sse::answer(qwen_sse::RID, "H", 1),
    ]);
    fake.push_completion(
        None,
        Reply::sse_with(body.clone(), Split::AtEvents).end(End::Reset),
    );
    let response = complete(&fake, &token).await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        let Ok(bytes) = chunk else {
            failed = true;
            break;
        };
        received.extend_from_slice(&bytes);
    }
    assert!(failed, "the client must see a broken body");
    assert_eq!(received, body.as_bytes(), "pieces arrive before the reset");
    assert!(fake.wait_streams_closed(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn hang_end_is_released_when_the_client_goes_away() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("a");
    fake.push_completion(
        None,
        Reply::sse_with(qwen_sse::fast_answer(&["Hi"]), Split::Whole).end(End::Hang),
    );
    let response = complete(&fake, &token).await;
    // Recorded before the headers were sent.
    assert_eq!(fake.completions().len(), 1);
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    assert_eq!(fake.open_streams(), 1);
    let more = tokio::time::timeout(Duration::from_millis(100), stream.next()).await;
    assert!(more.is_err(), "a hanging body sends nothing more");
    assert!(!fake.wait_streams_closed(Duration::from_millis(50)).await);
    drop(stream);
    assert!(fake.wait_streams_closed(Duration::from_secs(5)).await);
    assert_eq!(fake.open_streams(), 0);
}

#[tokio::test]
async fn delays_hold_headers_and_pieces() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("a");
    fake.push_completion(
        None,
        Reply::Delayed(
            Duration::from_millis(150),
            Box::new(Reply::json(200, json!({"late": true}))),
        ),
    );
    let started = Instant::now();
    let response = complete(&fake, &token).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"late": true})
    );

    fake.push_completion(
        None,
        Reply::sse_with("data: {}\n\ndata: {}\n\n", Split::AtEvents)
            .first_delay(Duration::from_millis(300))
            .delay(Duration::from_millis(100)),
    );
    let started = Instant::now();
    let response = complete(&fake, &token).await;
    let headers_at = started.elapsed();
    assert!(
        headers_at < Duration::from_millis(300),
        "headers before the first delay"
    );
    let (bytes, _) = collect_frames(response).await;
    assert_eq!(bytes, b"data: {}\n\ndata: {}\n\n");
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn queued_replies_are_used_once_per_label_then_shared_then_default() {
    let fake = FakeQwen::start().await;
    let a = fake.add_token("a");
    let b = fake.add_token("b");
    let reply = |n: u32| Reply::json(200, json!({"n": n}));
    fake.push_completion(Some("a"), reply(1));
    fake.push_completion(None, reply(3));
    fake.push_completion(Some("a"), reply(2));
    fake.push_completion(Some("b"), reply(4));
    fake.push_completion(None, reply(5));
    fake.set_default_completion(reply(0));
    let mut seen = Vec::new();
    for token in [&a, &a, &a, &b, &b, &b, &a] {
        let body: Value = complete(&fake, token).await.json().await.unwrap();
        seen.push(body["n"].as_u64().unwrap());
    }
    assert_eq!(seen, [1, 2, 3, 4, 5, 0, 0]);
    assert_eq!(fake.count_for("a", "POST", "/api/v2/chat/completions"), 4);
    assert_eq!(fake.count_for("b", "POST", "/api/v2/chat/completions"), 3);
}

#[tokio::test]
async fn missing_chat_id_is_422_before_auth() {
    let fake = FakeQwen::start().await;
    let response = reqwest::Client::new()
        .post(fake.url("/api/v2/chat/completions"))
        .json(&json!({"stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"detail": ["Field 'query -> chat_id': Field required"]})
    );
    assert_eq!(fake.completions().len(), 1);
}

#[tokio::test]
async fn models_chats_and_unknown_paths() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("a");
    let client = reqwest::Client::new();

    for path in ["/api/models", "/api/v2/models/"] {
        let models: Value = client
            .get(fake.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["qwen3.7-plus", "qwen3.8-max", "qwen3-coder-plus"]);
        let max = &models["data"][1]["info"]["meta"];
        assert_eq!(max["think_skip"]["enable"], false);
        assert_eq!(
            models["data"][2]["info"]["meta"]["abilities"]["thinking"],
            0
        );
        assert_eq!(
            models["data"][2]["info"]["meta"]["chat_type"],
            json!(["t2t"])
        );
    }
    fake.set_models(json!({"data": []}));
    let models: Value = client
        .get(fake.url("/api/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models, json!({"data": []}));
    fake.set_models_reply(Reply::json(500, json!({"detail": "boom"})));
    assert_eq!(
        client
            .get(fake.url("/api/models"))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );

    for request in [
        client.delete(fake.url("/api/v2/chats/abc")),
        client.get(fake.url("/api/v2/chats/abc")),
    ] {
        let body: Value = request
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({"success": true, "data": {"status": true}}));
    }
    let denied = client
        .delete(fake.url("/api/v2/chats/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);

    let missing = client
        .get(fake.url("/api/nothing?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"detail": "Not Found"})
    );

    let recorded = fake.requests();
    let last = recorded.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("GET", "/api/nothing")
    );
    assert_eq!(last.query.as_deref(), Some("x=1"));
    assert_eq!(fake.count("DELETE", "/api/v2/chats/abc"), 2);
    assert_eq!(fake.count_for("a", "DELETE", "/api/v2/chats/abc"), 1);
    assert_eq!(fake.count("GET", "/api/models"), 3);
}

#[tokio::test]
async fn completion_requests_are_recorded_in_full() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("a");
    let response = reqwest::Client::new()
        .post(fake.url("/api/v2/chat/completions?chat_id=c9&x=1"))
        .bearer_auth(&token)
        .header("X-Request-Id", "rid-1")
        .json(&json!({"chat_id": "c9", "model": "qwen3.7-plus"}))
        .send()
        .await
        .unwrap();
    let recorded = fake.completions();
    assert_eq!(recorded.len(), 1, "recorded before the headers arrived");
    let _ = response.text().await.unwrap();
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/v2/chat/completions");
    assert_eq!(r.query.as_deref(), Some("chat_id=c9&x=1"));
    assert_eq!(r.query_param("chat_id"), Some("c9"));
    assert_eq!(r.header("x-request-id"), Some("rid-1"));
    assert!(r.headers.iter().any(|(n, _)| n == "x-request-id"));
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(r.label.as_deref(), Some("a"));
    assert_eq!(r.json.as_ref().unwrap()["model"], "qwen3.7-plus");
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["chat_id"],
        "c9"
    );
}
