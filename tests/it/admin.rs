//! The admin API end to end: every route's success shape and its errors (401 without a key,
//! 403 with a user key, 404, 409, 400), keys created → used → revoked, `/verify`, per-account
//! proxies, health after failures, usage counters, and accounts added and deleted at runtime.

use crate::common;

use std::time::Duration;

use common::fake_qwen::{FakeQwen, Reply, Split, fixture_bytes, sha256_hex};
use common::{KEY, TestApp, body, sse_json, sse_lines, streamed_content};
use serde_json::{Value, json};

const ADMIN: &str = "sk-admin-key";
const MODEL: &str = "qwen3.7-plus";
const COMPLETIONS: &str = "/api/v2/chat/completions";
const CHATS_NEW: &str = "/api/v2/chats/new";
/// Tokens the captured answer (`capture_fast_answer.sse`) reports per request.
const PROMPT_TOKENS: u64 = 1049;
const COMPLETION_TOKENS: u64 = 2;

// ---------------------------------------------------------------------------------------------
// Helpers

async fn app(accounts: usize) -> TestApp {
    TestApp::with_accounts(accounts, &[("ADMIN_KEY", ADMIN)]).await
}

async fn admin(app: &TestApp, method: &str, path: &str, json: Option<Value>) -> (u16, Value) {
    app.json_as(method, path, ADMIN, json).await
}

async fn health(app: &TestApp) -> Value {
    let (status, v) = admin(app, "GET", "/api/accountsHealth", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["success"], true, "{v}");
    v["data"].clone()
}

/// The `accountsHealth` row of `id`.
async fn row(app: &TestApp, id: &str) -> Value {
    let data = health(app).await;
    data["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["accountId"] == id)
        .unwrap_or_else(|| panic!("{id} in {data}"))
        .clone()
}

async fn account_ids(app: &TestApp) -> Vec<String> {
    health(app).await["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["accountId"].as_str().unwrap().to_owned())
        .collect()
}

fn completions(app: &TestApp, label: &str) -> usize {
    app.fake.count_for(label, "POST", COMPLETIONS)
}

/// The RFC 3339 form of a unix time, as the admin API shows times.
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The captured answer, one event per body frame with a pause between: the client sees the
/// first words well before the end.
fn slow_answer(pause: Duration) -> Reply {
    Reply::sse_with(fixture_bytes("capture_fast_answer.sse"), Split::AtEvents).delay(pause)
}

// ---------------------------------------------------------------------------------------------
// Authentication of the admin routes

/// Every admin route with a body it would accept.
fn admin_routes() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        (
            "POST",
            "/api/addAccount",
            Some(json!({"num": 5, "cookie": "token=a.b.c"})),
        ),
        ("DELETE", "/api/deleteAccount/account_1", None),
        ("GET", "/api/accountsHealth", None),
        ("POST", "/api/reloadConfig", None),
        ("GET", "/api/configStatus", None),
        ("POST", "/api/keys", Some(json!({"label": "ci"}))),
        ("GET", "/api/keys", None),
        ("DELETE", "/api/keys/key_x", None),
        ("PUT", "/api/keys/key_x/limits", Some(json!({}))),
        (
            "PUT",
            "/api/accounts/account_1/proxy",
            Some(json!({"proxy": "http://127.0.0.1:9"})),
        ),
        ("GET", "/api/usage?days=1", None),
    ]
}

#[tokio::test]
async fn admin_routes_need_the_admin_key() {
    let app = app(1).await;
    for (method, path, json) in admin_routes() {
        for (key, status, kind, code) in [
            (None, 401, "authentication_error", "invalid_api_key"),
            (
                Some("sk-wrong"),
                401,
                "authentication_error",
                "invalid_api_key",
            ),
            (Some(KEY), 403, "permission_error", "admin_key_required"),
        ] {
            let mut req = app.request_as(method, path, key);
            if let Some(j) = &json {
                req = req.json(j);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), status, "{method} {path} with {key:?}");
            let v: Value = resp.json().await.unwrap();
            common::assert_error_envelope(&v, kind, code);
        }
    }
    // Nothing was changed by the refused calls.
    assert_eq!(account_ids(&app).await, ["account_1"]);
    let (_, keys) = admin(&app, "GET", "/api/keys", None).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1, "{keys}");
    assert!(app.fake.requests().is_empty());
}

#[tokio::test]
async fn the_first_api_key_is_admin_only_when_admin_key_is_unset() {
    let app = TestApp::with_accounts(1, &[("API_KEY", "k1,k2")]).await;
    let get = |key: &'static str| {
        app.request_as("GET", "/api/accountsHealth", Some(key))
            .send()
    };
    assert_eq!(get("k1").await.unwrap().status(), 200);
    assert_eq!(get("k2").await.unwrap().status(), 403);
    let (status, v) = admin(&app, "GET", "/api/configStatus", None).await;
    assert_eq!(status, 401, "ADMIN is not configured here: {v}");
}

#[tokio::test]
async fn the_admin_key_may_call_v1() {
    let app = app(1).await;
    let v = app.chat_ok(ADMIN).await;
    assert_eq!(v["choices"][0]["message"]["content"], "Hi!");
}

#[tokio::test]
async fn a_malformed_admin_body_gets_the_error_envelope() {
    let app = app(1).await;
    for path in ["/api/addAccount", "/api/keys"] {
        let resp = app
            .request_as("POST", path, Some(ADMIN))
            .header("content-type", "application/json")
            .body("{\"label\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        common::assert_error_envelope(
            &resp.json().await.unwrap(),
            "invalid_request_error",
            "invalid_json",
        );
    }
    let resp = app
        .request_as("GET", "/api/nothing-here", Some(ADMIN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    common::assert_error_envelope(
        &resp.json().await.unwrap(),
        "invalid_request_error",
        "not_found",
    );
}

#[tokio::test]
async fn verify_tells_valid_keys_and_the_admin_key() {
    let app = app(1).await;
    let verify = |key: Value| {
        app.http
            .post(app.url("/verify"))
            .json(&json!({ "apiKey": key }))
            .send()
    };
    let resp = verify(json!(ADMIN)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"status": 200, "message": "success", "isAdmin": true})
    );
    let resp = verify(json!(KEY)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"status": 200, "message": "success", "isAdmin": false})
    );
    for bad in [json!("sk-wrong"), json!(""), Value::Null] {
        let resp = verify(bad.clone()).await.unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
        common::assert_error_envelope(
            &resp.json().await.unwrap(),
            "authentication_error",
            "invalid_api_key",
        );
    }
    // A runtime key verifies too, as a user key.
    let (_, created) = admin(&app, "POST", "/api/keys", Some(json!({"label": "ci"}))).await;
    let resp = verify(created["key"].clone()).await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["isAdmin"], false);
}

// ---------------------------------------------------------------------------------------------
// Accounts

#[tokio::test]
async fn accounts_health_lists_every_account_in_the_documented_shape() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let cookies = format!("token={token},token={}", fake.add_token("acct2"));
    let app = TestApp::spawn_with(fake, &[("QWEN_COOKIES", &cookies), ("ADMIN_KEY", ADMIN)]).await;
    let data = health(&app).await;
    assert_eq!(data["totalAccounts"], 2, "{data}");
    assert_eq!(data["healthyAccounts"], 2, "{data}");
    assert_eq!(data["unhealthyAccounts"], 0, "{data}");
    let exp = common::fake_qwen::jwt_claims(&token).unwrap()["exp"]
        .as_i64()
        .unwrap();
    let first = &data["accounts"][0];
    assert_eq!(first["accountId"], "account_1");
    assert_eq!(first["isHealthy"], true);
    assert_eq!(first["failureCount"], 0);
    assert_eq!(first["lastUsed"], Value::Null);
    assert_eq!(first["state"], "active");
    assert_eq!(first["reason"], Value::Null);
    assert_eq!(first["tokenExpiresAt"], rfc3339(exp));
    assert_eq!(data["accounts"][1]["accountId"], "account_2");

    app.chat_ok(KEY).await;
    let used = row(&app, "account_1").await;
    let last = used["lastUsed"].as_str().expect("lastUsed after a request");
    // RFC 3339 in UTC, like `2025-02-01T10:00:00.123Z`.
    assert!(
        last.len() >= 20 && last.as_bytes()[10] == b'T' && last.ends_with('Z'),
        "{last}"
    );
}

#[tokio::test]
async fn configured_accounts_are_named_by_email_then_account_n_in_order() {
    let fake = FakeQwen::start().await;
    fake.add_user("mail@example.com", "pw");
    let cookies = format!(
        "token={},token={}",
        fake.add_token("c1"),
        fake.add_token("c2")
    );
    let bare = fake.add_token("bare");
    let app = TestApp::spawn_with(
        fake,
        &[
            ("ACCOUNTS", "mail@example.com:pw"),
            ("QWEN_COOKIES", &cookies),
            ("QWEN_AUTH_TOKEN", &bare),
            ("ADMIN_KEY", ADMIN),
        ],
    )
    .await;
    assert_eq!(
        account_ids(&app).await,
        ["mail@example.com", "account_1", "account_2", "account_3"]
    );
    for (id, kind) in [("mail@example.com", "password"), ("account_3", "token")] {
        let r = row(&app, id).await;
        assert_eq!(r["kind"], kind, "{r}");
        assert_eq!(r["source"], "env", "{r}");
    }
    // An account added without a number takes the first free account_<n>.
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"cookie": format!("token={}", app.fake.add_token("c4"))})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["accountId"], "account_4");
}

#[tokio::test]
async fn accounts_health_shows_cooling_disabled_and_failure_counts() {
    let app = TestApp::with_accounts(
        3,
        &[("ADMIN_KEY", ADMIN), ("ACCOUNT_FAILURE_THRESHOLD", "2")],
    )
    .await;
    // account_1: a rate limit; account_2: a rejected token; account_3: one transient failure
    // (below the threshold of 2, so it stays active).
    app.fake.push_completion(
        Some("acct1"),
        Reply::json(429, json!({"detail": "Too Many Requests"})),
    );
    app.fake.revoke("acct2");
    app.fake
        .push_completion(Some("acct3"), Reply::json(500, json!({"detail": "boom"})));
    // acct1 → acct2 → acct3 each fail, so the request is answered with an error.
    let resp = app.chat(body(MODEL, false)).await;
    assert!(!resp.status().is_success());
    assert_eq!(
        app.fake.count("POST", COMPLETIONS),
        2,
        "acct2 fails at chats/new"
    );
    let data = health(&app).await;
    assert_eq!(data["totalAccounts"], 3, "{data}");
    assert_eq!(data["healthyAccounts"], 1, "{data}");
    assert_eq!(data["unhealthyAccounts"], 2, "{data}");

    let a1 = row(&app, "account_1").await;
    assert_eq!(a1["state"], "cooling", "{a1}");
    assert_eq!(a1["reason"], "rate_limited", "{a1}");
    assert_eq!(a1["isHealthy"], false, "{a1}");
    assert!(a1["coolingUntil"].is_string(), "{a1}");

    let a2 = row(&app, "account_2").await;
    assert_eq!(a2["state"], "disabled", "{a2}");
    assert_eq!(a2["reason"], "token_expired", "{a2}");
    assert_eq!(a2["isHealthy"], false, "{a2}");

    let a3 = row(&app, "account_3").await;
    assert_eq!(a3["state"], "active", "{a3}");
    assert_eq!(a3["failureCount"], 1, "{a3}");
    assert_eq!(a3["isHealthy"], true, "{a3}");
    assert!(a3["lastUsed"].is_string(), "{a3}");

    // A success ends the streak.
    app.chat_ok(KEY).await;
    assert_eq!(row(&app, "account_3").await["failureCount"], 0);
}

#[tokio::test]
async fn add_account_by_cookie_serves_at_once() {
    let app = app(0).await;
    let token = app.fake.add_token("added");
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"num": 7, "cookie": format!("token={token}; ssxmod_itna=1")})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "data": {"accountId": "account_7"}})
    );
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"num": "8", "cookie": app.fake.add_token("bare")})),
    )
    .await;
    assert_eq!(status, 200, "a bare JWT is accepted: {v}");
    assert_eq!(v["data"]["accountId"], "account_8");
    assert_eq!(account_ids(&app).await, ["account_7", "account_8"]);
    let added = row(&app, "account_7").await;
    assert_eq!(added["state"], "active");
    assert_eq!(added["source"], "runtime");
    assert_eq!(added["kind"], "token");

    app.chat_ok(KEY).await;
    app.chat_ok(KEY).await;
    assert_eq!(completions(&app, "added"), 1);
    assert_eq!(completions(&app, "bare"), 1);
    let first = &app.fake.completions()[0];
    assert!(
        first
            .header("cookie")
            .is_some_and(|c| c.contains("ssxmod_itna=1")),
        "the cookie's other values are sent along: {first:?}"
    );

    // The same number again is a conflict; nothing changes.
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"num": 7, "cookie": format!("token={}", app.fake.add_token("other"))})),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    common::assert_error_envelope(&v, "invalid_request_error", "conflict");
    // No token in the cookie, or neither form: 400.
    for bad in [
        json!({"num": 9, "cookie": "ssxmod_itna=1"}),
        json!({"num": 9}),
        json!({"email": "x@example.com"}),
    ] {
        let (status, v) = admin(&app, "POST", "/api/addAccount", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
    assert_eq!(account_ids(&app).await, ["account_7", "account_8"]);
}

#[tokio::test]
async fn add_account_by_email_signs_in_first() {
    let app = app(0).await;
    app.fake.add_user("new@example.com", "pw-new");
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"email": "new@example.com", "password": "pw-new"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "data": {"accountId": "new@example.com"}})
    );
    let sign_ins = app.fake.sign_ins();
    assert_eq!(sign_ins.len(), 1);
    assert_eq!(
        sign_ins[0].json,
        Some(json!({"email": "new@example.com", "password": sha256_hex("pw-new")}))
    );
    let added = row(&app, "new@example.com").await;
    assert_eq!(added["state"], "active", "{added}");
    assert_eq!(added["kind"], "password", "{added}");
    assert!(added["tokenExpiresAt"].is_string(), "{added}");
    app.chat_ok(KEY).await;
    assert_eq!(completions(&app, "new@example.com"), 1);

    // Again: 409, and no second sign-in.
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"email": "new@example.com", "password": "pw-new"})),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    common::assert_error_envelope(&v, "invalid_request_error", "conflict");
    assert_eq!(app.fake.sign_ins().len(), 1);

    // A refused sign-in adds nothing.
    app.fake.add_user("other@example.com", "right");
    for (email, password) in [("other@example.com", "wrong"), ("nobody@example.com", "pw")] {
        let (status, v) = admin(
            &app,
            "POST",
            "/api/addAccount",
            Some(json!({"email": email, "password": password})),
        )
        .await;
        assert_eq!(status, 400, "{email}: {v}");
        common::assert_error_envelope(&v, "invalid_request_error", "sign_in_failed");
    }
    assert_eq!(app.fake.sign_ins().len(), 3);
    assert_eq!(account_ids(&app).await, ["new@example.com"]);
}

#[tokio::test]
async fn delete_account_removes_it_and_unknown_ids_are_404() {
    let app = app(2).await;
    let (status, v) = admin(&app, "DELETE", "/api/deleteAccount/account_1", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "data": {"accountId": "account_1"}})
    );
    assert_eq!(account_ids(&app).await, ["account_2"]);
    for _ in 0..2 {
        app.chat_ok(KEY).await;
    }
    assert_eq!(completions(&app, "acct1"), 0);
    assert_eq!(completions(&app, "acct2"), 2);

    for id in ["account_1", "nobody"] {
        let (status, v) = admin(&app, "DELETE", &format!("/api/deleteAccount/{id}"), None).await;
        assert_eq!(status, 404, "{id}: {v}");
        common::assert_error_envelope(&v, "invalid_request_error", "not_found");
    }
}

#[tokio::test]
async fn delete_account_lets_its_stream_in_flight_finish() {
    let app = app(2).await;
    app.fake
        .push_completion(Some("acct1"), slow_answer(Duration::from_millis(150)));
    let mut resp = app.chat(body(MODEL, true)).await;
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    while !text.contains("\"Hi\"") {
        let chunk = resp.chunk().await.unwrap().expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(
        app.fake.open_streams(),
        1,
        "the upstream is still streaming"
    );
    assert_eq!(completions(&app, "acct1"), 1);

    let (status, v) = admin(&app, "DELETE", "/api/deleteAccount/account_1", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(account_ids(&app).await, ["account_2"]);

    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(sse_lines(&text).last().unwrap(), "data: [DONE]", "{text}");
    let chunks = sse_json(&text);
    assert!(chunks.iter().all(|c| c.get("error").is_none()), "{text}");
    assert_eq!(streamed_content(&chunks), "Hi!");
    // The next request goes to the remaining account.
    app.chat_ok(KEY).await;
    assert_eq!(completions(&app, "acct1"), 1);
    assert_eq!(completions(&app, "acct2"), 1);
}

#[tokio::test]
async fn proxy_set_per_account_routes_its_next_calls_through_it() {
    let app = app(1).await;
    app.chat_ok(KEY).await;
    let direct = app.fake.requests().len();
    assert!(
        app.fake.requests().iter().all(|r| r.uri.starts_with('/')),
        "no proxy yet"
    );

    // The fake serves absolute-form (proxy-style) requests too, so it stands in for the proxy.
    let proxy = app.fake.base_url();
    let (status, v) = admin(
        &app,
        "PUT",
        "/api/accounts/account_1/proxy",
        Some(json!({ "proxy": proxy })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "data": {"accountId": "account_1"}})
    );
    assert_eq!(row(&app, "account_1").await["proxy"], proxy.as_str());
    app.chat_ok(KEY).await;
    let proxied: Vec<_> = app.fake.requests()[direct..]
        .iter()
        .filter(|r| r.path == CHATS_NEW || r.path == COMPLETIONS)
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(proxied.len(), 2, "{proxied:?}");
    assert!(
        proxied
            .iter()
            .all(|u| u.starts_with(&format!("{proxy}/api/v2/"))),
        "sent proxy-style: {proxied:?}"
    );

    // null removes it.
    let (status, v) = admin(
        &app,
        "PUT",
        "/api/accounts/account_1/proxy",
        Some(json!({ "proxy": null })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(row(&app, "account_1").await["proxy"], Value::Null);
    let before = app.fake.requests().len();
    app.chat_ok(KEY).await;
    let requests = app.fake.requests();
    let completion = requests[before..]
        .iter()
        .find(|r| r.path == COMPLETIONS)
        .unwrap();
    assert!(
        completion.uri.starts_with(COMPLETIONS),
        "{}",
        completion.uri
    );

    let (status, v) = admin(
        &app,
        "PUT",
        "/api/accounts/account_1/proxy",
        Some(json!({"proxy": "socks5://user:secret@127.0.0.1:1080"})),
    )
    .await;
    assert_eq!(status, 200, "socks5 is accepted: {v}");
    let shown = row(&app, "account_1").await["proxy"].clone();
    assert!(
        shown
            .as_str()
            .is_some_and(|p| p.starts_with("socks5://") && !p.contains("secret")),
        "listed without its password: {shown}"
    );
    let (status, v) = admin(
        &app,
        "PUT",
        "/api/accounts/nobody/proxy",
        Some(json!({"proxy": null})),
    )
    .await;
    assert_eq!(status, 404, "{v}");
    common::assert_error_envelope(&v, "invalid_request_error", "not_found");
    let (status, v) = admin(
        &app,
        "PUT",
        "/api/accounts/account_1/proxy",
        Some(json!({"proxy": "ftp://127.0.0.1:21"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
}

// ---------------------------------------------------------------------------------------------
// Keys

#[tokio::test]
async fn keys_are_created_used_listed_masked_and_revoked() {
    let app = app(1).await;
    let (status, created) = admin(&app, "POST", "/api/keys", Some(json!({"label": "ci"}))).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["success"], true);
    assert_eq!(created["label"], "ci");
    assert!(created["created"].is_i64(), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.len() >= 20, "{key}");

    // Usable on /v1 at once, not on the admin API.
    let v = app.chat_ok(&key).await;
    assert_eq!(v["choices"][0]["message"]["content"], "Hi!");
    let resp = app
        .request_as("GET", "/api/keys", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Listed masked, beside the configured key.
    let (status, list) = admin(&app, "GET", "/api/keys", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["success"], true);
    let rows = list["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!(rows[0]["id"], "env-1");
    assert_eq!(rows[0]["source"], "env");
    assert_eq!(rows[1]["id"], id.as_str());
    assert_eq!(rows[1]["label"], "ci");
    assert_eq!(rows[1]["source"], "runtime");
    assert_eq!(rows[1]["created"], created["created"]);
    let text = list.to_string();
    assert!(!text.contains(&key) && !text.contains(&key[7..]), "{text}");
    assert!(!text.contains(KEY), "{text}");
    for r in rows {
        assert!(r["key"].as_str().is_some_and(|k| !k.is_empty()), "{r}");
    }

    // One label, one key.
    let (status, v) = admin(&app, "POST", "/api/keys", Some(json!({"label": "ci"}))).await;
    assert_eq!(status, 409, "{v}");
    common::assert_error_envelope(&v, "invalid_request_error", "conflict");
    for bad in [json!({}), json!({"label": "  "})] {
        let (status, v) = admin(&app, "POST", "/api/keys", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {v}");
    }

    // Revoked: 401 at once.
    let (status, v) = admin(&app, "DELETE", &format!("/api/keys/{id}"), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["success"], true);
    let resp = app
        .http
        .get(app.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (status, v) = admin(&app, "DELETE", &format!("/api/keys/{id}"), None).await;
    assert_eq!(status, 404, "{v}");
    common::assert_error_envelope(&v, "invalid_request_error", "not_found");
    // Configured keys are removed from the configuration, not here.
    for configured in ["env-1", "admin"] {
        let (status, v) = admin(&app, "DELETE", &format!("/api/keys/{configured}"), None).await;
        assert_eq!(status, 400, "{v}");
        common::assert_error_envelope(&v, "invalid_request_error", "configured_key");
    }
    app.chat_ok(KEY).await;
    // The label is free again.
    let (status, v) = admin(&app, "POST", "/api/keys", Some(json!({"label": "ci"}))).await;
    assert_eq!(status, 200, "{v}");
}

// ---------------------------------------------------------------------------------------------
// Usage, configuration status, reload

#[tokio::test]
async fn usage_counts_requests_and_tokens_per_account_and_per_key() {
    let app = app(2).await;
    let (_, created) = admin(&app, "POST", "/api/keys", Some(json!({"label": "ci"}))).await;
    let (id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    // Three with the configured key (one streamed), two with the runtime key, one as admin.
    for k in [KEY, KEY, key.as_str(), key.as_str(), ADMIN] {
        app.chat_ok(k).await;
    }
    let resp = app.chat(body(MODEL, true)).await;
    assert!(resp.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    // A failed request is not counted.
    app.fake
        .push_completion(None, Reply::json(400, json!({"detail": "bad"})));
    app.fake
        .push_completion(None, Reply::json(400, json!({"detail": "bad"})));
    let failed = app.chat(body(MODEL, false)).await;
    assert!(!failed.status().is_success());

    let (status, v) = admin(&app, "GET", "/api/usage?days=1", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["success"], true);
    let day = qwen2api::store::today();
    let row = |id: &str, n: u64| {
        json!({"day": day, "id": id, "requests": n, "promptTokens": n * PROMPT_TOKENS,
               "completionTokens": n * COMPLETION_TOKENS})
    };
    let by_id = |list: &Value| {
        let mut rows = list.as_array().unwrap().clone();
        rows.sort_by_key(|r| r["id"].as_str().unwrap().to_owned());
        rows
    };
    assert_eq!(
        by_id(&v["data"]["accounts"]),
        [row("account_1", 3), row("account_2", 3)],
        "{v}"
    );
    let mut want = vec![row("admin", 1), row("env-1", 3), row(&id, 2)];
    want.sort_by_key(|r| r["id"].as_str().unwrap().to_owned());
    assert_eq!(by_id(&v["data"]["keys"]), want, "{v}");

    // `days` is the window: a count from three days ago shows only in a wider one.
    let old = (time::OffsetDateTime::now_utc() - time::Duration::days(3)).date();
    let old = format!(
        "{:04}-{:02}-{:02}",
        old.year(),
        u8::from(old.month()),
        old.day()
    );
    app.state
        .accounts()
        .store()
        .add_usage(&[qwen2api::store::UsageDelta {
            day: old.clone(),
            subject: qwen2api::store::Subject::Account("account_1".into()),
            requests: 5,
            prompt_tokens: 1,
            completion_tokens: 1,
        }])
        .await
        .unwrap();
    for (days, shown) in [(1, false), (3, false), (4, true), (7, true)] {
        let (_, v) = admin(&app, "GET", &format!("/api/usage?days={days}"), None).await;
        let has_old = v["data"]["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["day"] == old.as_str());
        assert_eq!(has_old, shown, "days={days}: {v}");
    }
}

#[tokio::test]
async fn config_status_describes_the_running_configuration() {
    let app = app(2).await;
    admin(&app, "POST", "/api/keys", Some(json!({"label": "ci"}))).await;
    let (status, v) = admin(&app, "GET", "/api/configStatus", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["success"], true);
    let d = &v["data"];
    assert_eq!(d["dataSaveMode"], "none", "{v}");
    assert_eq!(d["storeBackend"], "memory", "{v}");
    assert_eq!(d["authMode"], "keys", "{v}");
    assert_eq!(d["accounts"], json!({"total": 2, "usable": 2}), "{v}");
    assert_eq!(d["keys"], json!({"configured": 1, "runtime": 1}), "{v}");
    assert_eq!(d["adminKeyFromApiKey"], false, "{v}");
    assert_eq!(d["maxInflightPerAccount"], 2, "{v}");
    let text = v.to_string();
    assert!(
        !text.contains(ADMIN) && !text.contains(KEY),
        "no secrets: {text}"
    );
}

#[tokio::test]
async fn reload_config_reports_nothing_changed_for_an_unchanged_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("qwen.env");
    std::fs::write(&file, "SSE_KEEPALIVE_SECONDS=15\n").unwrap();
    let app = TestApp::with_accounts(
        1,
        &[("ADMIN_KEY", ADMIN), ("ENV_FILE", file.to_str().unwrap())],
    )
    .await;
    let (status, v) = admin(&app, "POST", "/api/reloadConfig", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "data": {
            "accounts": {"added": [], "removed": [], "updated": []},
            "keysChanged": false,
            "restartRequired": [],
        }})
    );
    std::fs::write(&file, "RETRY_COUNT=0\n").unwrap();
    let (status, v) = admin(&app, "POST", "/api/reloadConfig", None).await;
    assert_eq!(status, 400, "{v}");
    common::assert_error_envelope(&v, "invalid_request_error", "invalid_configuration");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("RETRY_COUNT"),
        "{v}"
    );
}

#[tokio::test]
async fn reload_config_without_a_file_is_200_and_says_what_was_read() {
    let app = app(1).await;
    let (status, v) = admin(&app, "POST", "/api/reloadConfig", None).await;
    assert_eq!(status, 200, "{v}");
    let d = &v["data"];
    assert_eq!(
        d["accounts"],
        json!({"added": [], "removed": [], "updated": []})
    );
    assert_eq!(d["keysChanged"], false, "{v}");
    assert_eq!(d["restartRequired"], json!([]), "{v}");
    let path = app
        .state
        .reloader()
        .unwrap()
        .env_file()
        .display()
        .to_string();
    assert_eq!(d["noFile"]["envFile"], path.as_str(), "{v}");
    let message = d["noFile"]["message"].as_str().unwrap();
    assert!(
        message.contains("no configuration file") && message.contains("environment"),
        "{message}"
    );
    // A file created later is read by the next reload.
    std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
    std::fs::write(&path, "API_KEY=sk-from-the-new-file\n").unwrap();
    let (status, v) = admin(&app, "POST", "/api/reloadConfig", None).await;
    let _ = std::fs::remove_dir_all(std::path::Path::new(&path).parent().unwrap());
    assert_eq!(status, 200, "{v}");
    assert!(v["data"].get("noFile").is_none(), "{v}");
}

#[tokio::test]
async fn failure_count_counts_every_class_of_failure_since_the_last_success() {
    async fn count(app: &TestApp) -> u64 {
        health(app).await["accounts"][0]["failureCount"]
            .as_u64()
            .unwrap()
    }
    let app = app(1).await;
    app.fake
        .push_completion(None, Reply::json(500, json!({"detail": "boom"})));
    let resp = app.chat(body(MODEL, false)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(count(&app).await, 1, "transient");
    // Back in service; a success ends the count.
    app.state.proxy().pool().accounts()[0].set_health(qwen2api::accounts::Health::Active);
    app.chat_ok(KEY).await;
    assert_eq!(count(&app).await, 0);
    app.fake.push_completion(
        None,
        Reply::json(429, json!({"detail": "Too many requests"})),
    );
    assert_eq!(app.chat(body(MODEL, false)).await.status(), 429);
    assert_eq!(count(&app).await, 1, "rate limit");
    app.fake.revoke("acct1");
    app.state.proxy().pool().accounts()[0].apply_status(&qwen2api::store::AccountStatus {
        state: qwen2api::store::HealthState::Active,
        until_ms: None,
        reason: None,
        failure_count: 1,
        last_used_ms: None,
    });
    assert_eq!(app.chat(body(MODEL, false)).await.status(), 503);
    assert_eq!(count(&app).await, 2, "auth");
}

#[tokio::test]
async fn requests_made_with_the_first_api_key_standing_in_for_admin_count_under_its_own_id() {
    // No ADMIN_KEY: the first API_KEY is also the admin key.
    let app = TestApp::with_accounts(1, &[]).await;
    app.chat_ok(KEY).await;
    let resp = app.get("/api/usage?days=1").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let ids: Vec<&str> = v["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["env-1"], "{v}");
}
