//! Failover and error mapping end to end: every upstream failure of docs/upstream.md §3.2, §6.5
//! and §7, played by the fake, checked for what the client sees (status, OpenAI error envelope,
//! `Retry-After`), how many upstream calls each account got, that every lease is released, and
//! what health each account is left in.

use crate::common;

use std::time::{Duration, Instant};

use common::fake_qwen::{End, FakeQwen, Reply, Split};
use common::qwen_sse::{self, CHAT_ID, PARENT_ID, RID};
use common::{TestApp, body, sse_json, sse_lines, streamed_content, streamed_reasoning};
use qwen2api::accounts::Health;
use serde_json::{Value, json};

const MODEL: &str = "qwen3.7-plus";
const COMPLETIONS: &str = "/api/v2/chat/completions";
const CHATS_NEW: &str = "/api/v2/chats/new";
const QUOTA: &str = "Allocated quota exceeded, please increase your quota limit.";
const WAF_PAGE: &str = "<!DOCTYPE html><html><head><meta name=\"aliyun_waf_aa\" \
                        content=\"1\"><title>Verification</title></head><body>\
                        <div id=\"nocaptcha\"></div></body></html>";

// ---------------------------------------------------------------------------------------------
// Helpers

/// Upstream completion calls made with `label`'s (valid) token.
fn completions(app: &TestApp, label: &str) -> usize {
    app.fake.count_for(label, "POST", COMPLETIONS)
}

/// Upstream `chats/new` calls made with `label`'s (valid) token.
fn chats(app: &TestApp, label: &str) -> usize {
    app.fake.count_for(label, "POST", CHATS_NEW)
}

/// Requests to `path` that presented a token minted for `label`, valid or not.
fn presented(app: &TestApp, label: &str, path: &str) -> usize {
    app.fake
        .requests()
        .iter()
        .filter(|r| r.path == path && r.token_label.as_deref() == Some(label))
        .count()
}

/// Health of `account_{i + 1}`.
fn health(app: &TestApp, i: usize) -> Health {
    app.state.proxy().pool().accounts()[i].health()
}

/// Asserts a cooling health with this reason, back in at most `max` (and not much sooner).
#[track_caller]
fn assert_cooling(h: &Health, reason: &str, max: Duration) {
    let Health::Cooling { until, reason: got } = h else {
        panic!("expected Cooling({reason}), got {h:?}");
    };
    assert_eq!(got, reason);
    let left = until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        left <= max && left + Duration::from_secs(2) > max,
        "cooling for {left:?}, expected about {max:?}"
    );
}

/// The lease count drops when the proxy's stream is dropped, which for a streamed answer
/// may be a moment after the client has read `[DONE]`.
async fn leases_released(app: &TestApp) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if app.leases() == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The OpenAI error envelope with this type and code, and no `param`.
#[track_caller]
fn assert_envelope(v: &Value, kind: &str, code: &str) {
    common::assert_error_envelope(v, kind, code);
    assert!(v["error"]["param"].is_null(), "{v}");
}

/// Sends the standard request; it must fail with `status` and this envelope. Returns the
/// `Retry-After` header, if any.
async fn expect_error(
    app: &TestApp,
    stream: bool,
    status: u16,
    kind: &str,
    code: &str,
) -> Option<String> {
    let resp = app.chat(body(MODEL, stream)).await;
    assert_eq!(resp.status(), status, "stream={stream}");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let v: Value = resp.json().await.unwrap();
    assert_envelope(&v, kind, code);
    retry_after
}

/// Sends the standard request; it must succeed. Returns the answer text (streamed or not).
async fn expect_answer(app: &TestApp, stream: bool) -> String {
    let resp = app.chat(body(MODEL, stream)).await;
    assert_eq!(resp.status(), 200, "stream={stream}");
    if !stream {
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion", "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        return v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    assert_eq!(sse_lines(&text).last().unwrap(), "data: [DONE]", "{text}");
    let chunks = sse_json(&text);
    assert!(
        chunks.iter().all(|c| c.get("error").is_none()),
        "no error event in a good answer: {text}"
    );
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")], "{text}");
    streamed_content(&chunks)
}

/// Sends the standard streaming request; the stream must begin (200). Returns the body.
async fn stream_body(app: &TestApp) -> String {
    let resp = app.chat(body(MODEL, true)).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    resp.text().await.unwrap()
}

/// Asserts that a begun stream ends with exactly one error event (this envelope) right before
/// `[DONE]`, and that no chunk claims a finish reason.
#[track_caller]
fn assert_stream_ends_with_error(text: &str, kind: &str, code: &str) {
    let lines = sse_lines(text);
    assert_eq!(lines.last().unwrap(), "data: [DONE]", "{text}");
    let chunks = sse_json(text);
    let errors: Vec<&Value> = chunks.iter().filter(|c| c.get("error").is_some()).collect();
    assert_eq!(errors.len(), 1, "exactly one error event: {text}");
    assert_envelope(errors[0], kind, code);
    assert!(
        lines[lines.len() - 2].starts_with("data: {\"error\""),
        "the error event comes right before [DONE]: {text}"
    );
    assert!(
        chunks.iter().all(|c| c["choices"]
            .get(0)
            .is_none_or(|ch| ch["finish_reason"].is_null())),
        "no finish_reason after a failure: {text}"
    );
}

/// 200 with a JSON body instead of an event stream.
fn business_error(code: &str, details: &str) -> Reply {
    Reply::http(
        200,
        "application/json",
        qwen_sse::business_error(code, details),
    )
}

/// A stream that starts and finishes with no answer at all.
fn empty_stream() -> Reply {
    Reply::sse(qwen_sse::stream(&[
        qwen_sse::created(CHAT_ID, PARENT_ID, RID, "0"),
        qwen_sse::finished(RID),
    ]))
}

/// A stream that thinks and then ends without an answer.
fn thinking_only() -> Reply {
    Reply::sse(qwen_sse::stream(&[
        qwen_sse::created(CHAT_ID, PARENT_ID, RID, "0"),
        qwen_sse::summary(RID, &["Step 1"], &["Pondering the question"], 10),
        qwen_sse::summary_finished(RID),
    ]))
}

/// Two answer characters, then the §7.2 quota error event.
fn quota_mid_answer() -> Reply {
    Reply::sse_with(
        qwen_sse::stream(&[
            qwen_sse::created(CHAT_ID, PARENT_ID, RID, "0"),
            qwen_sse::answer(RID, "Hi", 1),
            qwen_sse::error_event("internal_error", QUOTA),
        ]),
        Split::AtEvents,
    )
}

fn answer(text: &str) -> Reply {
    Reply::sse(qwen_sse::fast_answer(&[text]))
}

// ---------------------------------------------------------------------------------------------
// 1. 200 + JSON business error instead of SSE

async fn business_error_fails_over(stream: bool) {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(
        Some("acct1"),
        business_error("Bad_Request", "Internal error"),
    );
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, stream).await, "Answer from acct2");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "transient", Duration::from_secs(5));
    assert_eq!(health(&app, 1), Health::Active);
}

#[tokio::test]
async fn json_business_error_instead_of_sse_fails_over() {
    business_error_fails_over(false).await;
}

#[tokio::test]
async fn json_business_error_instead_of_sse_fails_over_when_streaming() {
    business_error_fails_over(true).await;
}

// 2. Rate limit with `num` hours on every account

#[tokio::test]
async fn rate_limit_on_every_account_is_429_with_the_upstream_wait() {
    let app = TestApp::with_accounts(3, &[]).await;
    let limited = json!({"success": false, "data": {"code": "RateLimited", "num": 2,
        "details": "You have reached the upper limit for today's usage."}});
    for label in ["acct1", "acct2", "acct3"] {
        app.fake
            .push_completion(Some(label), Reply::json(200, limited.clone()));
    }
    let retry_after =
        expect_error(&app, false, 429, "rate_limit_error", "rate_limit_exceeded").await;
    assert_eq!(retry_after.as_deref(), Some("7200"));
    for (i, label) in ["acct1", "acct2", "acct3"].into_iter().enumerate() {
        assert_eq!(completions(&app, label), 1, "{label} tried once");
        assert_cooling(&health(&app, i), "rate_limited", Duration::from_secs(7200));
    }
    assert!(leases_released(&app).await);

    // Every account is now cooling: the next request is refused without an upstream call.
    let retry_after =
        expect_error(&app, false, 429, "rate_limit_error", "rate_limit_exceeded").await;
    assert_eq!(retry_after.as_deref(), Some("7200"));
    assert_eq!(app.fake.count("POST", COMPLETIONS), 3);
    assert!(leases_released(&app).await);
}

// 3. HTTP 429 on one account

#[tokio::test]
async fn http_429_cools_the_account_and_fails_over() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(
        Some("acct1"),
        Reply::json(429, json!({"detail": "Too Many Requests"})),
    );
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, false).await, "Answer from acct2");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    // RATE_LIMIT_COOLDOWN_SECONDS defaults to 600.
    assert_cooling(&health(&app, 0), "rate_limited", Duration::from_secs(600));
    assert_eq!(health(&app, 1), Health::Active);
}

// 4. 401: the token is dead

#[tokio::test]
async fn revoked_tokens_on_every_account_disable_them_and_answer_503() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.revoke("acct1");
    app.fake.revoke("acct2");
    expect_error(&app, false, 503, "server_error", "no_available_account").await;
    // The 401 comes from chats/new already, so no completion is attempted.
    for label in ["acct1", "acct2"] {
        assert_eq!(presented(&app, label, CHATS_NEW), 1, "{label}");
        assert_eq!(presented(&app, label, COMPLETIONS), 0, "{label}");
    }
    assert!(leases_released(&app).await);
    for i in 0..2 {
        assert_eq!(
            health(&app, i),
            Health::Disabled {
                reason: "token_expired".into()
            }
        );
    }
    // Disabled accounts are not tried again.
    expect_error(&app, false, 503, "server_error", "no_available_account").await;
    assert_eq!(app.fake.count("POST", CHATS_NEW), 2);
}

#[tokio::test]
async fn http_401_on_every_completion_disables_every_account() {
    let app = TestApp::with_accounts(2, &[]).await;
    for label in ["acct1", "acct2"] {
        app.fake.push_completion(
            Some(label),
            Reply::json(401, json!({"detail": "Unauthorized"})),
        );
    }
    expect_error(&app, false, 503, "server_error", "no_available_account").await;
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    for i in 0..2 {
        assert_eq!(
            health(&app, i),
            Health::Disabled {
                reason: "token_expired".into()
            }
        );
    }
}

#[tokio::test]
async fn http_401_on_one_account_fails_over() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(
        Some("acct1"),
        Reply::json(401, json!({"detail": "Unauthorized"})),
    );
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, true).await, "Answer from acct2");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    assert_eq!(
        health(&app, 0),
        Health::Disabled {
            reason: "token_expired".into()
        }
    );
    assert_eq!(health(&app, 1), Health::Active);
}

// 5. WAF challenge: an egress problem, not an account problem

async fn challenge_is_not_failed_over(reply: Reply) {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(Some("acct1"), reply);
    app.fake
        .push_completion(Some("acct2"), answer("must not be asked"));
    let retry_after = expect_error(&app, false, 503, "server_error", "upstream_challenge").await;
    let secs: u64 = retry_after
        .expect("a challenge answer carries Retry-After")
        .parse()
        .unwrap();
    assert!(secs > 0);
    // Both accounts share the egress: asking the second would only be challenged again.
    assert_eq!(app.fake.count("POST", COMPLETIONS), 1);
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 0);
    assert_eq!(chats(&app, "acct2"), 0);
    assert!(leases_released(&app).await);
    // The accounts are fine; the address is being checked.
    assert_eq!(health(&app, 0), Health::Active);
    assert_eq!(health(&app, 1), Health::Active);
}

#[tokio::test]
async fn waf_page_with_403_is_a_challenge_without_failover() {
    challenge_is_not_failed_over(Reply::html(403, WAF_PAGE)).await;
}

#[tokio::test]
async fn waf_page_with_200_is_a_challenge_without_failover() {
    challenge_is_not_failed_over(Reply::html(200, WAF_PAGE)).await;
}

#[tokio::test]
async fn waf_page_is_a_plain_503_when_streaming() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake
        .push_completion(Some("acct1"), Reply::html(403, WAF_PAGE));
    let retry_after = expect_error(&app, true, 503, "server_error", "upstream_challenge").await;
    assert!(retry_after.is_some());
    assert_eq!(app.fake.count("POST", COMPLETIONS), 1);
    assert!(leases_released(&app).await);
}

#[tokio::test]
async fn challenge_fails_over_to_an_account_on_another_egress() {
    let fake = FakeQwen::start().await;
    fake.add_user("direct@example.com", "pw-direct");
    fake.add_user("proxied@example.com", "pw-proxied");
    // The fake serves absolute-form requests too, so it can stand in for the second egress.
    let accounts = format!(
        "direct@example.com:pw-direct,proxied@example.com:pw-proxied|{}",
        fake.base_url()
    );
    let app = TestApp::spawn_with(fake, &[("ACCOUNTS", accounts.as_str())]).await;
    app.fake
        .push_completion(Some("direct@example.com"), Reply::html(403, WAF_PAGE));
    app.fake
        .push_completion(Some("proxied@example.com"), answer("Answer via the proxy"));
    assert_eq!(expect_answer(&app, false).await, "Answer via the proxy");
    assert_eq!(completions(&app, "direct@example.com"), 1);
    assert_eq!(completions(&app, "proxied@example.com"), 1);
    assert!(leases_released(&app).await);
    assert_eq!(health(&app, 0), Health::Active);
}

#[tokio::test]
async fn challenge_on_chat_creation_is_not_failed_over() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake
        .push_chat_new(Some("acct1"), Reply::html(403, WAF_PAGE));
    let retry_after = expect_error(&app, false, 503, "server_error", "upstream_challenge").await;
    assert!(retry_after.is_some());
    assert_eq!(app.fake.count("POST", CHATS_NEW), 1);
    assert_eq!(app.fake.count("POST", COMPLETIONS), 0);
    assert!(leases_released(&app).await);
    assert_eq!(health(&app, 0), Health::Active);
}

#[tokio::test]
async fn bare_json_user_validate_is_a_challenge_without_failover() {
    challenge_is_not_failed_over(Reply::json(
        200,
        json!({"ret": ["FAIL_SYS_USER_VALIDATE::哎哟喂,被挤爆啦,请稍后重试"], "success": false}),
    ))
    .await;
}

// 6. Content moderation

#[tokio::test]
async fn content_filter_is_400_without_failover() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(
        Some("acct1"),
        business_error(
            "data_inspection_failed",
            "内容安全警告：输入数据可能包含不适当的内容！",
        ),
    );
    app.fake
        .push_completion(Some("acct2"), answer("must not be asked"));
    expect_error(&app, false, 400, "invalid_request_error", "content_filter").await;
    assert_eq!(app.fake.count("POST", COMPLETIONS), 1);
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(chats(&app, "acct2"), 0);
    assert!(leases_released(&app).await);
    assert_eq!(health(&app, 0), Health::Active);
    assert_eq!(health(&app, 1), Health::Active);
}

#[tokio::test]
async fn content_filter_as_the_first_stream_event_is_400_without_failover() {
    let app = TestApp::with_accounts(2, &[]).await;
    let refused = format!(
        "data: {}\n\n",
        qwen_sse::business_error(
            "data_inspection_failed",
            "内容安全警告：输入数据可能包含不适当的内容！"
        )
    );
    app.fake.push_completion(Some("acct1"), Reply::sse(refused));
    app.fake
        .push_completion(Some("acct2"), answer("must not be asked"));
    expect_error(&app, true, 400, "invalid_request_error", "content_filter").await;
    assert_eq!(app.fake.count("POST", COMPLETIONS), 1);
    assert_eq!(chats(&app, "acct2"), 0);
    assert!(leases_released(&app).await);
    assert_eq!(health(&app, 0), Health::Active);
}

// 7. "The chat is in progress!"

fn chat_in_progress() -> Reply {
    business_error("Bad_Request", "The chat is in progress!")
}

#[tokio::test]
async fn chat_in_progress_once_is_retried_in_a_new_chat_on_the_same_account() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(Some("acct1"), chat_in_progress());
    app.fake
        .push_completion(Some("acct1"), answer("Answer from acct1"));
    assert_eq!(expect_answer(&app, false).await, "Answer from acct1");
    assert_eq!(chats(&app, "acct1"), 2);
    assert_eq!(completions(&app, "acct1"), 2);
    assert_eq!(chats(&app, "acct2"), 0);
    assert_eq!(completions(&app, "acct2"), 0);
    // The retry really went to the new chat.
    let ids = app.fake.chat_ids();
    let sent: Vec<String> = app
        .fake
        .completions()
        .iter()
        .map(|r| r.query_param("chat_id").unwrap().to_owned())
        .collect();
    assert_eq!(sent, ids);
    assert_ne!(ids[0], ids[1]);
    assert!(leases_released(&app).await);
    assert_eq!(health(&app, 0), Health::Active);
}

#[tokio::test]
async fn chat_in_progress_twice_moves_to_the_next_account() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(Some("acct1"), chat_in_progress());
    app.fake.push_completion(Some("acct1"), chat_in_progress());
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, false).await, "Answer from acct2");
    assert_eq!(chats(&app, "acct1"), 2);
    assert_eq!(completions(&app, "acct1"), 2);
    assert_eq!(chats(&app, "acct2"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "transient", Duration::from_secs(5));
    assert_eq!(health(&app, 1), Health::Active);
}

#[tokio::test]
async fn chat_in_progress_as_the_first_stream_event_is_retried_on_the_same_account() {
    // §6.6: business errors may also come as the first event of a 200 event stream.
    let app = TestApp::with_accounts(2, &[]).await;
    let busy = format!(
        "data: {}\n\n",
        qwen_sse::business_error("Bad_Request", "The chat is in progress!")
    );
    app.fake.push_completion(Some("acct1"), Reply::sse(busy));
    app.fake
        .push_completion(Some("acct1"), answer("Answer from acct1"));
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, false).await, "Answer from acct1");
    assert_eq!(chats(&app, "acct1"), 2);
    assert_eq!(completions(&app, "acct1"), 2);
    assert_eq!(chats(&app, "acct2"), 0);
    assert_eq!(completions(&app, "acct2"), 0);
    assert!(leases_released(&app).await);
    assert_eq!(health(&app, 0), Health::Active);
}

// 8. Plain 5xx

#[tokio::test]
async fn server_errors_fail_over() {
    let app = TestApp::with_accounts(3, &[("TRANSIENT_COOLDOWN_SECONDS", "0")]).await;
    app.fake.push_completion(
        Some("acct1"),
        Reply::http(500, "text/plain", "Internal Server Error"),
    );
    app.fake.push_completion(
        Some("acct2"),
        Reply::http(503, "text/plain", "Service Unavailable"),
    );
    app.fake
        .push_completion(Some("acct3"), answer("Answer from acct3"));
    assert_eq!(expect_answer(&app, false).await, "Answer from acct3");
    for label in ["acct1", "acct2", "acct3"] {
        assert_eq!(completions(&app, label), 1, "{label}");
    }
    assert!(leases_released(&app).await);
    for i in 0..3 {
        assert_eq!(health(&app, i), Health::Active, "no cooldown configured");
    }
}

#[tokio::test]
async fn bad_gateway_on_every_account_is_502() {
    let app = TestApp::with_accounts(2, &[]).await;
    for label in ["acct1", "acct2"] {
        app.fake
            .push_completion(Some(label), Reply::http(502, "text/plain", "Bad Gateway"));
    }
    let retry_after = expect_error(&app, false, 502, "server_error", "upstream_error").await;
    assert_eq!(retry_after, None);
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    // TRANSIENT_COOLDOWN_SECONDS defaults to 5.
    assert_cooling(&health(&app, 0), "transient", Duration::from_secs(5));
    assert_cooling(&health(&app, 1), "transient", Duration::from_secs(5));
}

// 9. A stream that ends without an answer

async fn empty_stream_fails_over(stream: bool) {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(Some("acct1"), empty_stream());
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, stream).await, "Answer from acct2");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "empty_answer", Duration::from_secs(5));
    assert_eq!(health(&app, 1), Health::Active);
}

#[tokio::test]
async fn empty_stream_fails_over_non_stream() {
    empty_stream_fails_over(false).await;
}

#[tokio::test]
async fn empty_stream_fails_over_when_streaming() {
    empty_stream_fails_over(true).await;
}

async fn empty_stream_everywhere(stream: bool) {
    let app = TestApp::with_accounts(2, &[("TRANSIENT_COOLDOWN_SECONDS", "0")]).await;
    for label in ["acct1", "acct2"] {
        app.fake.push_completion(Some(label), empty_stream());
    }
    // Never a 200 with empty content, streamed or not.
    expect_error(&app, stream, 502, "server_error", "upstream_empty_answer").await;
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    assert_eq!(health(&app, 0), Health::Active);
    assert_eq!(health(&app, 1), Health::Active);
}

#[tokio::test]
async fn empty_stream_on_every_account_is_502() {
    empty_stream_everywhere(false).await;
}

#[tokio::test]
async fn empty_stream_on_every_account_is_502_when_streaming() {
    empty_stream_everywhere(true).await;
}

// 10. A stream that thinks and then ends without an answer

async fn hidden_thinking_only_fails_over(stream: bool) {
    let app = TestApp::with_accounts(2, &[("OUTPUT_THINK", "false")]).await;
    app.fake.push_completion(Some("acct1"), thinking_only());
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, stream).await, "Answer from acct2");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "thinking_only", Duration::from_secs(5));
    assert_eq!(health(&app, 1), Health::Active);
}

#[tokio::test]
async fn thinking_only_with_hidden_reasoning_fails_over() {
    hidden_thinking_only_fails_over(false).await;
}

#[tokio::test]
async fn thinking_only_with_hidden_reasoning_fails_over_when_streaming() {
    hidden_thinking_only_fails_over(true).await;
}

#[tokio::test]
async fn thinking_only_on_every_account_is_502() {
    let app = TestApp::with_accounts(2, &[("OUTPUT_THINK", "false")]).await;
    for label in ["acct1", "acct2"] {
        app.fake.push_completion(Some(label), thinking_only());
    }
    expect_error(&app, true, 502, "server_error", "upstream_empty_answer").await;
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
}

#[tokio::test]
async fn thinking_only_buffered_fails_over_even_with_visible_reasoning() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(Some("acct1"), thinking_only());
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    let resp = app.chat(body(MODEL, false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let message = &v["choices"][0]["message"];
    assert_eq!(message["content"], "Answer from acct2");
    // acct1's thoughts belong to an answer that was thrown away.
    assert!(
        message.get("reasoning_content").is_none_or(Value::is_null),
        "{v}"
    );
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
}

#[tokio::test]
async fn thinking_only_after_visible_reasoning_ends_the_stream_with_an_error() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(Some("acct1"), thinking_only());
    app.fake
        .push_completion(Some("acct2"), answer("must not be asked"));
    let text = stream_body(&app).await;
    let chunks = sse_json(&text);
    assert_eq!(streamed_reasoning(&chunks), "Pondering the question");
    assert_eq!(streamed_content(&chunks), "");
    assert_stream_ends_with_error(&text, "server_error", "upstream_empty_answer");
    // The reasoning was already sent: no other account can take over.
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 0);
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "thinking_only", Duration::from_secs(5));
}

// 11. Quota error after the first characters

#[tokio::test]
async fn quota_error_mid_answer_ends_the_stream_with_one_error_event() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(Some("acct1"), quota_mid_answer());
    app.fake
        .push_completion(Some("acct2"), answer("must not be asked"));
    let text = stream_body(&app).await;
    let chunks = sse_json(&text);
    assert_eq!(streamed_content(&chunks), "Hi");
    // Mid-stream errors carry the same type and code as the HTTP answer would have.
    assert_stream_ends_with_error(&text, "rate_limit_error", "rate_limit_exceeded");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 0);
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "rate_limited", Duration::from_secs(600));
}

#[tokio::test]
async fn quota_error_mid_answer_fails_over_when_buffered() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(Some("acct1"), quota_mid_answer());
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    // acct1's "Hi" must not be mixed into acct2's answer.
    assert_eq!(expect_answer(&app, false).await, "Answer from acct2");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "rate_limited", Duration::from_secs(600));
    assert_eq!(health(&app, 1), Health::Active);
}

// 12. Connection reset

async fn reset_before_the_first_event_fails_over(stream: bool) {
    let app = TestApp::with_accounts(2, &[]).await;
    let partial = "data: {\"response.created\":{\"chat_id\": \"605fdeab";
    app.fake
        .push_completion(Some("acct1"), Reply::sse(partial).end(End::Reset));
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, stream).await, "Answer from acct2");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "transient", Duration::from_secs(5));
}

#[tokio::test]
async fn reset_before_the_first_event_fails_over_non_stream() {
    reset_before_the_first_event_fails_over(false).await;
}

#[tokio::test]
async fn reset_before_the_first_event_fails_over_when_streaming() {
    reset_before_the_first_event_fails_over(true).await;
}

/// The completion reaches the upstream on a connection kept alive from `chats/new`, which
/// then closes before any answer: the request may have been acted on, so it is not sent again
/// on that account (neither by us nor by the HTTP client's pool); the proxy fails over once.
async fn closed_after_the_request_was_written_fails_over_once(stream: bool) {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake.push_completion(Some("acct1"), Reply::Abort);
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, stream).await, "Answer from acct2");
    assert_eq!(completions(&app, "acct1"), 1, "sent again on acct1");
    assert_eq!(completions(&app, "acct2"), 1);
    assert_eq!(chats(&app, "acct1"), 1);
    assert_eq!(chats(&app, "acct2"), 1);
    // The case a pool may retry if it cannot tell: a reused connection.
    let acct1 = |path: &str| {
        app.fake
            .requests()
            .into_iter()
            .find(|r| r.path == path && r.label.as_deref() == Some("acct1"))
            .unwrap()
            .peer
    };
    assert_eq!(
        acct1(CHATS_NEW),
        acct1(COMPLETIONS),
        "on a kept-alive connection"
    );
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "transient", Duration::from_secs(5));
}

#[tokio::test]
async fn closed_after_the_request_was_written_fails_over_once_non_stream() {
    closed_after_the_request_was_written_fails_over_once(false).await;
}

#[tokio::test]
async fn closed_after_the_request_was_written_fails_over_once_when_streaming() {
    closed_after_the_request_was_written_fails_over_once(true).await;
}

fn reset_after_answer() -> Reply {
    Reply::sse_with(
        qwen_sse::stream(&[
            qwen_sse::created(CHAT_ID, PARENT_ID, RID, "0"),
            qwen_sse::answer(RID, "Hel", 1),
            qwen_sse::answer(RID, "lo", 2),
        ]),
        Split::AtEvents,
    )
    .end(End::Reset)
}

#[tokio::test]
async fn reset_after_the_first_answer_ends_the_stream_with_an_error() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake
        .push_completion(Some("acct1"), reset_after_answer());
    app.fake
        .push_completion(Some("acct2"), answer("must not be asked"));
    let text = stream_body(&app).await;
    assert_eq!(streamed_content(&sse_json(&text)), "Hello");
    assert_stream_ends_with_error(&text, "server_error", "upstream_error");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 0);
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "transient", Duration::from_secs(5));
}

#[tokio::test]
async fn reset_after_the_first_answer_fails_over_when_buffered() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake
        .push_completion(Some("acct1"), reset_after_answer());
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, false).await, "Answer from acct2");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
}

// 13. Slow response headers

#[tokio::test]
async fn slow_headers_time_out_and_fail_over() {
    let app = TestApp::with_accounts(
        2,
        &[
            ("UPSTREAM_FIRST_BYTE_TIMEOUT_SECONDS", "0.5"),
            ("TRANSIENT_COOLDOWN_SECONDS", "0"),
        ],
    )
    .await;
    app.fake.push_completion(
        Some("acct1"),
        Reply::Delayed(Duration::from_secs(2), Box::new(answer("too late"))),
    );
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    let started = Instant::now();
    assert_eq!(expect_answer(&app, false).await, "Answer from acct2");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "gave up on acct1 after the first-byte timeout, took {:?}",
        started.elapsed()
    );
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(leases_released(&app).await);
    assert_eq!(health(&app, 0), Health::Active);
}

// 14. Silence in the middle of a stream

fn stall_after_answer() -> Reply {
    Reply::sse_with(
        qwen_sse::stream(&[
            qwen_sse::created(CHAT_ID, PARENT_ID, RID, "0"),
            qwen_sse::answer(RID, "Hi", 1),
        ]),
        Split::AtEvents,
    )
    .end(End::Hang)
}

#[tokio::test]
async fn stall_mid_answer_ends_the_stream_and_closes_the_upstream() {
    let app = TestApp::with_accounts(2, &[("UPSTREAM_IDLE_TIMEOUT_SECONDS", "0.5")]).await;
    app.fake
        .push_completion(Some("acct1"), stall_after_answer());
    app.fake
        .push_completion(Some("acct2"), answer("must not be asked"));
    let started = Instant::now();
    let text = stream_body(&app).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(streamed_content(&sse_json(&text)), "Hi");
    assert_stream_ends_with_error(&text, "server_error", "upstream_error");
    assert!(app.fake.wait_streams_closed(Duration::from_secs(1)).await);
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 0);
    assert!(leases_released(&app).await);
    assert_cooling(&health(&app, 0), "transient", Duration::from_secs(5));
}

#[tokio::test]
async fn stall_mid_answer_fails_over_when_buffered() {
    let app = TestApp::with_accounts(2, &[("UPSTREAM_IDLE_TIMEOUT_SECONDS", "0.5")]).await;
    app.fake
        .push_completion(Some("acct1"), stall_after_answer());
    app.fake
        .push_completion(Some("acct2"), answer("Answer from acct2"));
    assert_eq!(expect_answer(&app, false).await, "Answer from acct2");
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert!(app.fake.wait_streams_closed(Duration::from_secs(1)).await);
    assert!(leases_released(&app).await);
}

// 15. RETRY_COUNT

#[tokio::test]
async fn retry_count_limits_the_accounts_tried() {
    let app = TestApp::with_accounts(3, &[("RETRY_COUNT", "2")]).await;
    for label in ["acct1", "acct2", "acct3"] {
        app.fake
            .push_completion(Some(label), Reply::http(502, "text/plain", "Bad Gateway"));
    }
    expect_error(&app, false, 502, "server_error", "upstream_error").await;
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
    assert_eq!(chats(&app, "acct3"), 0);
    assert_eq!(completions(&app, "acct3"), 0);
    assert_eq!(app.fake.count("POST", COMPLETIONS), 2);
    assert!(leases_released(&app).await);
    assert_eq!(health(&app, 2), Health::Active);
}

// 18. No account at all

#[tokio::test]
async fn no_accounts_is_503_without_upstream_calls() {
    let app = TestApp::with_accounts(0, &[]).await;
    expect_error(&app, false, 503, "server_error", "no_available_account").await;
    expect_error(&app, true, 503, "server_error", "no_available_account").await;
    assert_eq!(app.fake.count("POST", CHATS_NEW), 0);
    assert_eq!(app.fake.count("POST", COMPLETIONS), 0);
    assert_eq!(app.leases(), 0);
}

// ---------------------------------------------------------------------------------------------
// Connecting

/// A listener on `addr` that never accepts, its accept queue filled, so that a further
/// connection attempt gets no answer at all (the kernel drops its SYNs) and hangs until its
/// timeout: a black hole, on loopback only.
async fn black_hole(
    addr: std::net::SocketAddr,
) -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(addr).unwrap();
    let listener = socket.listen(0).unwrap();
    let mut queued = Vec::new();
    for _ in 0..4 {
        let attempt = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), attempt).await {
            queued.push(s);
        }
    }
    assert!(!queued.is_empty(), "the first connections are queued");
    let probe = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(addr),
    )
    .await;
    assert!(
        probe.is_err(),
        "a connection to the black hole hangs: {probe:?}"
    );
    (listener, queued)
}

#[tokio::test]
async fn a_black_holed_first_address_leaves_the_next_its_share_of_the_connect_timeout() {
    let fake = FakeQwen::start().await;
    let port = fake
        .base_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let hole = std::net::SocketAddr::from(([127, 0, 0, 2], port));
    let real = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let _hole = black_hole(hole).await;

    let connect_timeout = Duration::from_secs(4);
    let base = format!("http://qwen-upstream.test:{port}");
    let vars = [
        ("API_KEY", "sk-test"),
        ("QWEN_BASE_URL", base.as_str()),
        ("UPSTREAM_CONNECT_TIMEOUT_SECONDS", "4"),
        ("DATA_SAVE_MODE", "none"),
    ];
    let reloader = qwen2api::reload::Reloader::new(
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    let config = reloader.load().expect("valid configuration");
    let client = qwen2api::upstream::qwen::QwenClient::with_resolved(
        std::sync::Arc::new(config.upstream),
        "qwen-upstream.test",
        &[hole, real],
    );
    let started = Instant::now();
    let models = client
        .models(None)
        .await
        .expect("the second address answers");
    let took = started.elapsed();
    assert!(!models.is_empty());
    // Each of the two addresses gets half of the connect timeout: the black hole, tried
    // first, hung for its half, and the next one answered at once.
    assert!(
        took + Duration::from_millis(200) > connect_timeout / 2,
        "{took:?}: the black hole was not tried first"
    );
    assert!(
        took < connect_timeout * 3 / 4,
        "{took:?} of a {connect_timeout:?} connect timeout"
    );
    assert_eq!(fake.count("GET", "/api/models"), 1);
}

// ---------------------------------------------------------------------------------------------
// A refused connection: the upstream is unreachable, no account is at fault

#[tokio::test]
async fn a_refused_connection_is_502_unreachable_and_cools_no_account() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    // A port nothing listens on: every connection is refused.
    let closed = format!("http://127.0.0.1:{}", common::binary::free_port());
    let cookies = format!("token={token}");
    let app = TestApp::spawn_with(
        fake,
        &[("QWEN_BASE_URL", &closed), ("QWEN_COOKIES", &cookies)],
    )
    .await;
    for stream in [false, true, false] {
        let retry = expect_error(&app, stream, 502, "server_error", "upstream_unreachable").await;
        assert_eq!(retry, None);
    }
    // Not "rate-limited or cooling down" on the next request: the account stays usable, and
    // its failures are counted.
    assert_eq!(health(&app, 0), Health::Active);
    let status = app.state.proxy().pool().accounts()[0].status();
    assert_eq!(status.failure_count, 3);
    assert!(leases_released(&app).await);
}

// The upstream forgot its tokens (a restart): sign in again and retry on the same account

#[tokio::test]
async fn a_rejected_token_of_a_password_account_signs_in_again_and_the_request_succeeds() {
    let fake = FakeQwen::start().await;
    fake.add_user("a@example.com", "pw-a");
    let app = TestApp::spawn_with(fake, &[("ACCOUNTS", "a@example.com:pw-a")]).await;
    assert_eq!(app.fake.sign_ins().len(), 1);
    app.fake.revoke("a@example.com");
    for stream in [false, true] {
        expect_answer(&app, stream).await;
        if !stream {
            assert_eq!(app.fake.sign_ins().len(), 2, "signed in again once");
            assert_eq!(presented(&app, "a@example.com", CHATS_NEW), 2);
            assert_eq!(completions(&app, "a@example.com"), 1);
        }
    }
    assert_eq!(app.fake.sign_ins().len(), 2, "the new token serves on");
    assert_eq!(health(&app, 0), Health::Active);
    assert!(leases_released(&app).await);

    // Rejected again right after: no second sign-in inside the window, the account is disabled.
    app.fake.revoke("a@example.com");
    expect_error(&app, false, 503, "server_error", "no_available_account").await;
    assert_eq!(app.fake.sign_ins().len(), 2);
    assert_eq!(
        health(&app, 0),
        Health::Disabled {
            reason: "token_rejected".into()
        }
    );
}
