//! Accounts' lifecycle against the fake: sign-in again before a token expires (one account at a
//! time, paused), after a rejected token (once), token accounts disabled when their token
//! expires; pacing (in-flight cap, waiting, 429 after the wait, minimum interval);
//! `MODEL_TO_ACCOUNT_MAP`; sticky accounts; passthrough mode.

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::fake_qwen::{FakeQwen, Reply};
use common::{KEY, TestApp, body};
use qwen2api::accounts::Health;
use serde_json::{Value, json};

const MODEL: &str = "qwen3.7-plus";
const COMPLETIONS: &str = "/api/v2/chat/completions";
const CHATS_NEW: &str = "/api/v2/chats/new";

// ---------------------------------------------------------------------------------------------
// Helpers

/// [`common::eventually`], failing the test with `what` when it does not hold in time.
async fn eventually(what: &str, within: Duration, check: impl FnMut() -> bool) {
    assert!(
        common::eventually(within, check).await,
        "not within {within:?}: {what}"
    );
}

fn health(app: &TestApp, id: &str) -> Health {
    app.state.proxy().pool().get(id).expect("account").health()
}

/// Sends a chat with `key` and this body in a task; returns `(status, headers, body)`.
fn send(
    app: &TestApp,
    key: &str,
    body: &Value,
) -> tokio::task::JoinHandle<(u16, reqwest::header::HeaderMap, String)> {
    let req = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body);
    tokio::spawn(async move {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    })
}

async fn chat_ok(app: &TestApp, body: Value) {
    let (status, _, text) = send(app, KEY, &body).await.unwrap();
    assert_eq!(status, 200, "{text}");
}

/// The account label of the last completion the fake received.
fn last_label(fake: &FakeQwen) -> String {
    fake.completions()
        .last()
        .and_then(|r| r.label.clone())
        .expect("a completion with a valid token")
}

fn now_unix() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn with_user(user: &str) -> Value {
    let mut b = body(MODEL, false);
    b["user"] = json!(user);
    b
}

/// The captured answer, held back for `delay` before its first byte.
fn slow_answer(delay: Duration) -> Reply {
    Reply::fixture("capture_fast_answer.sse").first_delay(delay)
}

// ---------------------------------------------------------------------------------------------
// Sign-in

#[tokio::test]
async fn password_accounts_sign_in_again_before_expiry_one_at_a_time() {
    let fake = FakeQwen::start().await;
    // Tokens live 3 s; with TOKEN_REFRESH_BEFORE_HOURS=0.001 (3.6 s) each is due at once.
    fake.set_sign_in_lifetime(Duration::from_secs(3));
    let emails = ["u1@example.com", "u2@example.com", "u3@example.com"];
    for e in emails {
        fake.add_user(e, "pw");
    }
    let accounts = emails.map(|e| format!("{e}:pw")).join(",");
    let app = TestApp::spawn_with(
        fake,
        &[
            ("ACCOUNTS", &accounts),
            ("TOKEN_REFRESH_BEFORE_HOURS", "0.001"),
            ("TOKEN_REFRESH_CHECK_SECONDS", "0.2"),
            ("TOKEN_REFRESH_PAUSE_SECONDS", "0.3"),
        ],
    )
    .await;
    assert_eq!(app.fake.sign_ins().len(), 3, "each signs in at start");
    eventually(
        "every account signs in again",
        Duration::from_secs(4),
        || app.fake.sign_ins().len() >= 6,
    )
    .await;
    let sign_ins = app.fake.sign_ins();
    let again: HashSet<&str> = sign_ins[3..6]
        .iter()
        .map(|r| r.json.as_ref().unwrap()["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        again,
        emails.into_iter().collect(),
        "every account, once each"
    );
    for pair in sign_ins[3..].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(280),
            "sign-ins {gap:?} apart, TOKEN_REFRESH_PAUSE_SECONDS is 0.3"
        );
    }
    // Past the first tokens' lifetime, requests still go through on the new tokens.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(sign_ins[0].at.elapsed())).await;
    for _ in 0..3 {
        chat_ok(&app, body(MODEL, false)).await;
    }
    let served: HashSet<String> = app
        .fake
        .completions()
        .iter()
        .map(|r| r.label.clone().expect("a valid token"))
        .collect();
    assert_eq!(served.len(), 3);
    // Signed in again in time: no request ever carried an expired token.
    let expired: Vec<_> = app
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.token_label.is_some() && r.label.is_none())
        .map(|r| r.path)
        .collect();
    assert!(
        expired.is_empty(),
        "sent with an expired token: {expired:?}"
    );
}

#[tokio::test]
async fn a_rejected_token_signs_in_again_once_and_the_account_serves_again() {
    let fake = FakeQwen::start().await;
    fake.add_user("a@example.com", "pw-a");
    fake.add_user("b@example.com", "pw-b");
    let app = TestApp::spawn_with(
        fake,
        &[("ACCOUNTS", "a@example.com:pw-a,b@example.com:pw-b")],
    )
    .await;
    assert_eq!(app.fake.sign_ins().len(), 2);
    app.fake.revoke("a@example.com");
    // Until account a has been tried: the request itself fails over to b.
    while app
        .fake
        .requests()
        .iter()
        .all(|r| r.token_label.as_deref() != Some("a@example.com") || r.path != CHATS_NEW)
    {
        chat_ok(&app, body(MODEL, false)).await;
    }
    eventually("a signs in again", Duration::from_secs(2), || {
        health(&app, "a@example.com") == Health::Active && app.fake.sign_ins().len() == 3
    })
    .await;
    assert_eq!(
        app.fake.sign_ins()[2].json.as_ref().unwrap()["email"],
        "a@example.com"
    );
    // Two requests, two accounts: a serves one with its new token.
    let before = app.fake.count_for("a@example.com", "POST", COMPLETIONS);
    for _ in 0..2 {
        chat_ok(&app, body(MODEL, false)).await;
    }
    assert_eq!(
        app.fake.count_for("a@example.com", "POST", COMPLETIONS),
        before + 1
    );

    // Rejected again right after signing in: disabled with the reason, no second sign-in.
    app.fake.revoke("a@example.com");
    for _ in 0..2 {
        chat_ok(&app, body(MODEL, false)).await;
    }
    assert_eq!(
        health(&app, "a@example.com"),
        Health::Disabled {
            reason: "token_rejected".into()
        }
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.fake.sign_ins().len(), 3, "signed in again only once");
    assert_eq!(
        health(&app, "a@example.com"),
        Health::Disabled {
            reason: "token_rejected".into()
        }
    );
}

#[tokio::test]
async fn a_token_account_whose_token_expired_is_disabled_token_expired() {
    let fake = FakeQwen::start().await;
    let expired = fake.add_token_with_exp("old", now_unix() - 10);
    let cookies = format!("token={expired},token={}", fake.add_token("ok"));
    let app = TestApp::spawn_with(
        fake,
        &[
            ("QWEN_COOKIES", &cookies),
            ("TOKEN_REFRESH_CHECK_SECONDS", "0.2"),
        ],
    )
    .await;
    // Found by the timer, before any request uses it.
    eventually("account_1 is disabled", Duration::from_secs(2), || {
        health(&app, "account_1")
            == Health::Disabled {
                reason: "token_expired".into(),
            }
    })
    .await;
    assert!(
        app.fake
            .requests()
            .iter()
            .all(|r| r.token_label.as_deref() != Some("old")),
        "the expired token was never sent"
    );
    assert_eq!(health(&app, "account_2"), Health::Active);
    for _ in 0..3 {
        chat_ok(&app, body(MODEL, false)).await;
    }
    assert_eq!(app.fake.count_for("ok", "POST", COMPLETIONS), 3);
    let v: Value = app.get_json("/api/accountsHealth").await;
    let row = &v["data"]["accounts"][0];
    assert_eq!(row["accountId"], "account_1", "{v}");
    assert_eq!(row["state"], "disabled", "{v}");
    assert_eq!(row["reason"], "token_expired", "{v}");
    assert_eq!(row["isHealthy"], false, "{v}");
}

#[tokio::test]
async fn disabled_accounts_are_tested_again_and_come_back() {
    let fake = FakeQwen::start().await;
    // The password in the configuration is refused until the upstream account is fixed.
    fake.add_user("p@example.com", "old-password");
    let cookies = format!("token={}", fake.add_token("tok"));
    let app = TestApp::spawn_with(
        fake,
        &[
            ("ACCOUNTS", "p@example.com:pw"),
            ("QWEN_COOKIES", &cookies),
            ("ACCOUNT_RETEST_SECONDS", "0.2"),
            // Re-tests sign in with this pause between them.
            ("TOKEN_REFRESH_PAUSE_SECONDS", "0.1"),
        ],
    )
    .await;
    assert!(
        matches!(health(&app, "p@example.com"), Health::Disabled { reason } if reason.starts_with("sign_in_failed")),
        "{:?}",
        health(&app, "p@example.com")
    );
    // A one-off 401 disables the token account although its token is still good.
    app.fake.push_completion(
        Some("tok"),
        Reply::json(401, json!({"detail": "Unauthorized"})),
    );
    let (status, _, _) = send(&app, KEY, &body(MODEL, false)).await.unwrap();
    assert_ne!(status, 200);
    assert_eq!(
        health(&app, "account_1"),
        Health::Disabled {
            reason: "token_expired".into()
        }
    );

    app.fake.add_user("p@example.com", "pw");
    eventually("both are back", Duration::from_secs(3), || {
        health(&app, "p@example.com") == Health::Active
            && health(&app, "account_1") == Health::Active
    })
    .await;
    assert!(
        app.fake
            .requests()
            .iter()
            .any(|r| r.path == "/api/v1/auths/" && r.label.as_deref() == Some("tok")),
        "the token was checked upstream"
    );
    for _ in 0..2 {
        chat_ok(&app, body(MODEL, false)).await;
    }
    assert_eq!(app.fake.count_for("p@example.com", "POST", COMPLETIONS), 1);
    assert_eq!(app.fake.count_for("tok", "POST", COMPLETIONS), 2);
}

#[tokio::test]
async fn rate_limit_cooldowns_double_up_to_the_maximum_and_reset_on_success() {
    let app = TestApp::with_accounts(
        1,
        &[
            ("RATE_LIMIT_COOLDOWN_SECONDS", "0.2"),
            ("RATE_LIMIT_COOLDOWN_MAX_SECONDS", "0.5"),
        ],
    )
    .await;
    let limited = || Reply::json(429, json!({"detail": "Too Many Requests"}));
    for expected in [200, 400, 500, 500] {
        app.fake.push_completion(None, limited());
        let (status, headers, _) = send(&app, KEY, &body(MODEL, false)).await.unwrap();
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "1");
        let Health::Cooling { until, reason } = health(&app, "account_1") else {
            panic!("cooling after a rate limit");
        };
        assert_eq!(reason, "rate_limited");
        let left = until.duration_since(SystemTime::now()).unwrap_or_default();
        let expected = Duration::from_millis(expected);
        assert!(
            left <= expected && left + Duration::from_millis(150) > expected,
            "cooling for {left:?}, expected {expected:?}"
        );
        eventually("the cooldown ends", Duration::from_secs(1), || {
            health(&app, "account_1") == Health::Active
        })
        .await;
    }
    // A success ends the streak: the next rate limit starts from the first step again.
    chat_ok(&app, body(MODEL, false)).await;
    app.fake.push_completion(None, limited());
    send(&app, KEY, &body(MODEL, false)).await.unwrap();
    let Health::Cooling { until, .. } = health(&app, "account_1") else {
        panic!("cooling");
    };
    let left = until.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(left <= Duration::from_millis(200), "{left:?}");
}

// ---------------------------------------------------------------------------------------------
// Pacing

#[tokio::test]
async fn a_request_waits_for_a_free_slot_then_succeeds() {
    let app = TestApp::with_accounts(1, &[("MAX_INFLIGHT_PER_ACCOUNT", "1")]).await;
    app.fake
        .push_completion(None, slow_answer(Duration::from_millis(400)));
    let first = send(&app, KEY, &body(MODEL, true));
    eventually(
        "the first request is upstream",
        Duration::from_secs(2),
        || app.fake.count("POST", COMPLETIONS) == 1,
    )
    .await;
    let waited = Instant::now();
    let second = send(&app, KEY, &body(MODEL, false));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(app.fake.count("POST", CHATS_NEW), 1, "the second one waits");
    assert!(!second.is_finished());
    assert_eq!(app.leases(), 1);

    let (status, _, text) = first.await.unwrap();
    assert_eq!(status, 200);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let (status, _, text) = second.await.unwrap();
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hi!");
    assert!(waited.elapsed() >= Duration::from_millis(200));
    assert_eq!(app.fake.count("POST", CHATS_NEW), 2);
}

#[tokio::test]
async fn a_request_that_waits_longer_than_account_wait_seconds_gets_429() {
    let app = TestApp::with_accounts(
        1,
        &[
            ("MAX_INFLIGHT_PER_ACCOUNT", "1"),
            ("ACCOUNT_WAIT_SECONDS", "0.3"),
        ],
    )
    .await;
    app.fake
        .push_completion(None, slow_answer(Duration::from_millis(900)));
    let first = send(&app, KEY, &body(MODEL, true));
    eventually(
        "the first request is upstream",
        Duration::from_secs(2),
        || app.fake.count("POST", COMPLETIONS) == 1,
    )
    .await;
    let started = Instant::now();
    let (status, headers, text) = send(&app, KEY, &body(MODEL, false)).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(status, 429, "{text}");
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(850),
        "waited {waited:?}"
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
    assert_eq!(app.fake.count("POST", CHATS_NEW), 1, "never sent upstream");

    let (status, _, text) = first.await.unwrap();
    assert_eq!(status, 200);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // The account is healthy: a busy account is not a failed one.
    assert_eq!(health(&app, "account_1"), Health::Active);
}

#[tokio::test]
async fn account_min_interval_spaces_requests_on_one_account() {
    let app = TestApp::with_accounts(1, &[("ACCOUNT_MIN_INTERVAL_MS", "300")]).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| send(&app, KEY, &body(MODEL, false)))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().0, 200);
    }
    assert!(started.elapsed() >= Duration::from_millis(580));
    let mut starts: Vec<Instant> = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == CHATS_NEW)
        .map(|r| r.at)
        .collect();
    starts.sort();
    assert_eq!(starts.len(), 3);
    // Spaced when sent; seen by the fake after a connection that may be new (the first) or
    // pooled, so an arrival gap can be a little shorter than the interval, never near zero.
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(200), "{gap:?} apart");
    }
}

#[tokio::test]
async fn the_in_flight_cap_defaults_to_two_and_zero_lifts_it() {
    for (cap, concurrent) in [(None, 2), (Some("0"), 4)] {
        let vars: Vec<(&str, &str)> = cap
            .map(|c| ("MAX_INFLIGHT_PER_ACCOUNT", c))
            .into_iter()
            .collect();
        let app = TestApp::with_accounts(1, &vars).await;
        app.fake
            .set_default_completion(slow_answer(Duration::from_millis(300)));
        let tasks: Vec<_> = (0..4)
            .map(|_| send(&app, KEY, &body(MODEL, false)))
            .collect();
        eventually(
            "requests reach the upstream",
            Duration::from_secs(2),
            || app.fake.count("POST", COMPLETIONS) == concurrent,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            app.fake.count("POST", COMPLETIONS),
            concurrent,
            "MAX_INFLIGHT_PER_ACCOUNT={cap:?}"
        );
        for t in tasks {
            assert_eq!(t.await.unwrap().0, 200);
        }
    }
}

#[tokio::test]
async fn upstream_proxy_carries_accounts_without_their_own() {
    // Everything through the global proxy (the fake stands in for it).
    let fake = FakeQwen::start().await;
    let proxy = fake.base_url();
    let cookies = format!("token={}", fake.add_token("acct1"));
    let app = TestApp::spawn_with(
        fake,
        &[("QWEN_COOKIES", &cookies), ("UPSTREAM_PROXY", &proxy)],
    )
    .await;
    chat_ok(&app, body(MODEL, false)).await;
    let requests = app.fake.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(r.uri.starts_with(&format!("{proxy}/")), "{}", r.uri);
    }

    // An account's own proxy wins over the global one, which here leads nowhere.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = format!("http://{dead}");
    let app = TestApp::with_accounts(2, &[("UPSTREAM_PROXY", &dead)]).await;
    let resp = app
        .http
        .put(app.url("/api/accounts/account_1/proxy"))
        .bearer_auth(KEY)
        .json(&json!({ "proxy": app.fake.base_url() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for _ in 0..2 {
        chat_ok(&app, body(MODEL, false)).await;
    }
    assert_eq!(app.fake.count_for("acct1", "POST", COMPLETIONS), 2);
    assert_eq!(
        app.fake.count_for("acct2", "POST", CHATS_NEW),
        0,
        "acct2 never got through"
    );
    // The egress is at fault, not the account: it is not cooled (its failures are counted).
    assert_eq!(health(&app, "account_2"), Health::Active);
    let account_2 = app.state.proxy().pool().get("account_2").unwrap();
    assert!(account_2.status().failure_count >= 1);
}

// ---------------------------------------------------------------------------------------------
// Routing

#[tokio::test]
async fn model_to_account_map_reserves_accounts_for_a_model() {
    let app = TestApp::with_accounts(
        3,
        &[("MODEL_TO_ACCOUNT_MAP", r#"{"qwen3.8-max":["account_2"]}"#)],
    )
    .await;
    for _ in 0..3 {
        chat_ok(&app, body("qwen3.8-max", false)).await;
        assert_eq!(last_label(&app.fake), "acct2");
    }
    // Unmapped models use every account.
    for _ in 0..6 {
        chat_ok(&app, body(MODEL, false)).await;
    }
    for label in ["acct1", "acct2", "acct3"] {
        let models: Vec<String> = app
            .fake
            .completions()
            .iter()
            .filter(|r| r.label.as_deref() == Some(label))
            .map(|r| {
                r.json.as_ref().unwrap()["model"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let plus = models.iter().filter(|m| *m == MODEL).count();
        assert_eq!(plus, 2, "{label}: {models:?}");
        let max = models.iter().filter(|m| *m == "qwen3.8-max").count();
        assert_eq!(max, if label == "acct2" { 3 } else { 0 }, "{label}");
    }

    // With its only account unusable, the mapped model is not served by the others.
    app.fake.revoke("acct2");
    let (status, _, _) = send(&app, KEY, &body("qwen3.8-max", false)).await.unwrap();
    assert_ne!(status, 200);
    let (status, _, _) = send(&app, KEY, &body("qwen3.8-max", false)).await.unwrap();
    assert_ne!(status, 200);
    let max_elsewhere = app
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == CHATS_NEW)
        .filter(|r| r.token_label.as_deref() != Some("acct2"))
        .filter(|r| r.json.as_ref().unwrap()["models"][0] == "qwen3.8-max")
        .count();
    assert_eq!(max_elsewhere, 0);
}

#[tokio::test]
async fn sticky_accounts_keep_a_user_on_one_account_while_it_is_healthy() {
    let app = TestApp::with_accounts(
        3,
        &[
            ("STICKY_ACCOUNTS", "true"),
            ("API_KEY", "sk-test-key,sk-other-key"),
        ],
    )
    .await;
    chat_ok(&app, with_user("alice")).await;
    let alice = last_label(&app.fake);
    for _ in 0..4 {
        chat_ok(&app, with_user("alice")).await;
        assert_eq!(last_label(&app.fake), alice);
    }
    // Different users spread over the accounts.
    let mut spread = HashSet::new();
    for i in 0..12 {
        chat_ok(&app, with_user(&format!("user-{i}"))).await;
        spread.insert(last_label(&app.fake));
    }
    assert!(spread.len() >= 2, "{spread:?}");
    // Without `user`, the key decides.
    for key in [KEY, "sk-other-key"] {
        let mut seen = HashSet::new();
        for _ in 0..3 {
            let (status, _, _) = send(&app, key, &body(MODEL, false)).await.unwrap();
            assert_eq!(status, 200);
            seen.insert(last_label(&app.fake));
        }
        assert_eq!(seen.len(), 1, "{key}: {seen:?}");
    }

    // Alice's account is rate-limited: she moves to another one and stays there.
    app.fake.push_completion(
        Some(&alice),
        Reply::json(429, json!({"detail": "Too Many Requests"})),
    );
    chat_ok(&app, with_user("alice")).await;
    let moved = last_label(&app.fake);
    assert_ne!(moved, alice);
    for _ in 0..3 {
        chat_ok(&app, with_user("alice")).await;
        assert_eq!(last_label(&app.fake), moved);
    }
}

#[tokio::test]
async fn without_sticky_accounts_the_user_field_does_not_pin() {
    let app = TestApp::with_accounts(3, &[]).await;
    let mut seen = HashSet::new();
    for _ in 0..3 {
        chat_ok(&app, with_user("alice")).await;
        seen.insert(last_label(&app.fake));
    }
    assert_eq!(seen.len(), 3, "round-robin: {seen:?}");
}

// ---------------------------------------------------------------------------------------------
// Passthrough

#[tokio::test]
async fn passthrough_uses_the_callers_bearer_as_the_qwen_token() {
    let fake = FakeQwen::start().await;
    let alice = fake.add_token("alice");
    let bob = fake.add_token("bob");
    // No API_KEY and no accounts.
    let app = TestApp::spawn_with(fake, &[("API_KEY", ""), ("AUTH_MODE", "passthrough")]).await;
    assert!(app.state.proxy().pool().accounts().is_empty());
    for (token, label) in [(&alice, "alice"), (&bob, "bob"), (&alice, "alice")] {
        let (status, _, text) = send(&app, token, &body(MODEL, false)).await.unwrap();
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "Hi!");
        let sent = app.fake.completions().last().unwrap().clone();
        assert_eq!(sent.label.as_deref(), Some(label));
        assert_eq!(
            sent.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
    }
    // A stream works the same way.
    let (status, _, text) = send(&app, &bob, &body(MODEL, true)).await.unwrap();
    assert_eq!(status, 200);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(last_label(&app.fake), "bob");
    // Each chat is deleted once its answer has been sent: wait for the last deletion.
    let all_deleted = || {
        let requests = app.fake.requests();
        let deleted = requests.iter().filter(|r| r.method == "DELETE").count();
        deleted == app.fake.count("POST", CHATS_NEW)
    };
    assert!(common::eventually(Duration::from_secs(5), all_deleted).await);

    // No bearer: 401, nothing sent upstream.
    let before = app.fake.requests().len();
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .json(&body(MODEL, false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(app.fake.requests().len(), before);

    // A token the upstream refuses: the refusal comes back, and it went upstream as given.
    let (status, _, text) = send(&app, "not-a-qwen-token", &body(MODEL, false))
        .await
        .unwrap();
    assert!(!(200..300).contains(&status), "{status}: {text}");
    assert!(
        app.fake
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some("Bearer not-a-qwen-token")),
        "the bearer is sent upstream as the token"
    );
}

#[tokio::test]
async fn an_unknown_model_is_404_also_right_after_a_start_where_no_account_signed_in() {
    let fake = FakeQwen::start().await;
    fake.add_user("a@example.com", "the-right-one");
    // Like chat.qwen.ai, the list is refused without an account: the built-in list stands in.
    fake.set_models_reply(Reply::json(401, json!({"detail": "Unauthorized"})));
    let app = TestApp::spawn_with(fake, &[("ACCOUNTS", "a@example.com:a-wrong-one")]).await;
    assert!(matches!(
        health(&app, "a@example.com"),
        Health::Disabled { .. }
    ));
    let (status, _, text) = send(&app, KEY, &body("no-such-model", false))
        .await
        .unwrap();
    assert_eq!(status, 503, "no account: {text}");
    // An account can serve now (here: added at runtime; a reload or a re-test does the same).
    app.fake.set_models(common::fake_qwen::default_models());
    app.fake.add_user("b@example.com", "pw-b");
    app.state
        .accounts()
        .add(qwen2api::accounts::AddAccount::Password {
            email: "b@example.com".into(),
            password: qwen2api::config::Secret::new("pw-b"),
        })
        .await
        .unwrap();
    let (status, _, text) = send(&app, KEY, &body("no-such-model", false))
        .await
        .unwrap();
    assert_eq!(status, 404, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "model_not_found", "{v}");
    assert_eq!(app.fake.count("POST", CHATS_NEW), 0);
    chat_ok(&app, body(MODEL, false)).await;
}
