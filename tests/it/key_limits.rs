//! Per-key limits set through the admin API: requests per minute on every surface (each in its
//! own error envelope, the refused requests never reaching the upstream), requests in flight,
//! tokens per day, allowed models, expiry, limits edited later, and two replicas on one Redis
//! sharing the requests-per-minute counter.

use crate::common;

use std::time::Duration;

use common::fake_qwen::Reply;
use common::{KEY, TestApp, assert_error_envelope, qwen_sse};
use serde_json::{Value, json};

const ADMIN: &str = "sk-admin-key";
const MODEL: &str = "qwen3.7-plus";

async fn app() -> TestApp {
    TestApp::with_accounts(1, &[("ADMIN_KEY", ADMIN)]).await
}

/// Creates a key with `limits` through the admin API; its id and plaintext.
async fn key_with(app: &TestApp, label: &str, limits: Value) -> (String, String) {
    let (status, v) = app
        .json_as(
            "POST",
            "/api/keys",
            ADMIN,
            Some(json!({"label": label, "limits": limits})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

async fn set_limits(app: &TestApp, id: &str, limits: Value) -> (u16, Value) {
    app.json_as(
        "PUT",
        &format!("/api/keys/{id}/limits"),
        ADMIN,
        Some(limits),
    )
    .await
}

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}]})
}

async fn chat(app: &TestApp, key: &str, model: &str) -> reqwest::Response {
    app.request_as("POST", "/v1/chat/completions", Some(key))
        .json(&chat_body(model))
        .send()
        .await
        .unwrap()
}

async fn messages(app: &TestApp, key: &str, model: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": model, "max_tokens": 256,
                      "messages": [{"role": "user", "content": "Say hi"}]}))
        .send()
        .await
        .unwrap()
}

async fn responses(app: &TestApp, key: &str) -> reqwest::Response {
    app.request_as("POST", "/v1/responses", Some(key))
        .json(&json!({"model": MODEL, "input": "Say hi"}))
        .send()
        .await
        .unwrap()
}

/// The `Retry-After` of a refusal, in seconds.
fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Status, `Retry-After` and body of an OpenAI-envelope refusal with `kind` and `code`.
async fn refused(resp: reqwest::Response, kind: &str, code: &str) -> (u16, Option<u64>, Value) {
    let status = resp.status().as_u16();
    let after = resp
        .headers()
        .contains_key("retry-after")
        .then(|| retry_after(&resp));
    let v: Value = resp.json().await.unwrap();
    assert_error_envelope(&v, kind, code);
    (status, after, v)
}

/// Waits for the next minute when this one has under 10 s left, so that a test's requests
/// fall into one requests-per-minute window.
async fn fresh_minute() {
    let into = qwen2api::store::now_ms().rem_euclid(60_000);
    if into > 50_000 {
        let left = u64::try_from(60_000 - into).unwrap() + 50;
        tokio::time::sleep(Duration::from_millis(left)).await;
    }
}

#[tokio::test]
async fn requests_per_minute_are_refused_on_every_surface_in_its_own_envelope() {
    let app = app().await;
    let (_, key) = key_with(&app, "rpm", json!({"requestsPerMinute": 2})).await;
    fresh_minute().await;
    assert_eq!(chat(&app, &key, MODEL).await.status(), 200);
    assert_eq!(responses(&app, &key).await.status(), 200);
    assert_eq!(app.fake.completions().len(), 2);

    let (status, after, v) = refused(
        chat(&app, &key, MODEL).await,
        "rate_limit_error",
        "requests_per_minute_exceeded",
    )
    .await;
    assert_eq!(status, 429);
    assert!((1..=60).contains(&after.unwrap()), "{after:?}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("This API key's limit of 2 requests per minute (requestsPerMinute)"),
        "{message}"
    );

    let resp = responses(&app, &key).await;
    assert!((1..=60).contains(&retry_after(&resp)));
    let (status, ..) = refused(resp, "rate_limit_error", "requests_per_minute_exceeded").await;
    assert_eq!(status, 429);

    let resp = messages(&app, &key, MODEL).await;
    assert_eq!(resp.status(), 429);
    assert!((1..=60).contains(&retry_after(&resp)));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requestsPerMinute"),
        "{v}"
    );

    assert_eq!(
        app.fake.completions().len(),
        2,
        "refused requests reach no upstream"
    );
    // Keys from API_KEY have no limits, and other routes are not counted.
    assert_eq!(chat(&app, KEY, MODEL).await.status(), 200);
    let models = app.request_as("GET", "/v1/models", Some(&key)).send().await;
    assert_eq!(models.unwrap().status(), 200);
}

#[tokio::test]
async fn a_second_request_in_flight_is_refused_until_the_first_has_finished() {
    let app = app().await;
    let (id, key) = key_with(&app, "one-at-a-time", json!({"concurrentRequests": 1})).await;
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&["slow"])).first_delay(Duration::from_millis(800)),
    );
    let slow = {
        let (http, url, key) = (
            app.http.clone(),
            app.url("/v1/chat/completions"),
            key.clone(),
        );
        tokio::spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(key)
                .json(&chat_body(MODEL))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        })
    };
    assert!(common::eventually(Duration::from_secs(2), || app.fake.completions().len() == 1).await);
    assert_eq!(app.state.limiter().in_flight(&id), 1);

    let resp = chat(&app, &key, MODEL).await;
    assert_eq!(retry_after(&resp), 1);
    let (status, _, v) = refused(resp, "rate_limit_error", "concurrent_requests_exceeded").await;
    assert_eq!(status, 429);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 1 concurrent requests (concurrentRequests)"),
        "{v}"
    );

    let (status, v) = slow.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "slow");
    assert_eq!(app.state.limiter().in_flight(&id), 0);
    assert_eq!(chat(&app, &key, MODEL).await.status(), 200);
    assert_eq!(app.fake.completions().len(), 2);
}

#[tokio::test]
async fn tokens_per_day_refuse_once_the_days_usage_reaches_the_limit() {
    let app = app().await;
    let (_, key) = key_with(&app, "budget", json!({"tokensPerDay": 1000})).await;
    // The first answer alone uses more (the fake reports 1049 prompt tokens): it is let
    // through, since nothing was used before it.
    assert_eq!(chat(&app, &key, MODEL).await.status(), 200);
    let resp = chat(&app, &key, MODEL).await;
    let after = retry_after(&resp);
    assert!((1..=86_400).contains(&after), "{after}");
    let (status, _, v) = refused(resp, "rate_limit_error", "tokens_per_day_exceeded").await;
    assert_eq!(status, 429);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("This API key's limit of 1000 tokens per day (tokensPerDay, UTC)"),
        "{v}"
    );
    // Flushed to the store, the count is the same.
    app.state.proxy().usage().flush().await;
    assert_eq!(chat(&app, &key, MODEL).await.status(), 429);
    assert_eq!(app.fake.completions().len(), 1);
}

#[tokio::test]
async fn a_model_outside_the_keys_patterns_is_forbidden() {
    let app = app().await;
    let (_, key) = key_with(
        &app,
        "small",
        json!({"models": ["QWEN3.7-*", "qwen3-coder-?lus"]}),
    )
    .await;
    assert_eq!(chat(&app, &key, MODEL).await.status(), 200);
    assert_eq!(chat(&app, &key, "qwen3-coder-plus").await.status(), 200);

    let (status, after, v) = refused(
        chat(&app, &key, "qwen3.8-max").await,
        "permission_error",
        "model_not_allowed",
    )
    .await;
    assert_eq!((status, after), (403, None));
    assert_eq!(v["error"]["param"], "model");
    assert_eq!(
        v["error"]["message"],
        "This API key may not use the model `qwen3.8-max` (its allowed models: QWEN3.7-*, \
         qwen3-coder-?lus)."
    );

    let resp = messages(&app, &key, "qwen3.8-max").await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "permission_error", "{v}");
    assert_eq!(app.fake.completions().len(), 2);
}

#[tokio::test]
async fn an_expired_key_is_forbidden_everywhere_until_its_expiry_is_moved() {
    let app = app().await;
    let past = qwen2api::store::now_ms() - 1_000;
    let (id, key) = key_with(&app, "old", json!({"expiresAt": past})).await;
    let (status, after, v) = refused(
        chat(&app, &key, MODEL).await,
        "permission_error",
        "key_expired",
    )
    .await;
    assert_eq!((status, after), (403, None));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("This API key expired at 20"),
        "{v}"
    );
    let models = app.request_as("GET", "/v1/models", Some(&key)).send().await;
    assert_eq!(models.unwrap().status(), 403);
    let resp = messages(&app, &key, MODEL).await;
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "permission_error", "{v}");

    let future = qwen2api::store::now_ms() + 3_600_000;
    let (status, v) = set_limits(&app, &id, json!({"expiresAt": future})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(chat(&app, &key, MODEL).await.status(), 200);
    assert_eq!(app.fake.completions().len(), 1);
}

#[tokio::test]
async fn limits_edited_through_the_admin_api_take_effect_at_once() {
    let app = app().await;
    let (id, key) = key_with(&app, "edited", json!(null)).await;
    assert_eq!(chat(&app, &key, MODEL).await.status(), 200);

    let (status, v) = set_limits(&app, &id, json!({"models": ["qwen3-coder-*"]})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"],
        json!({"id": id, "limits": {"requestsPerMinute": null, "concurrentRequests": null,
               "tokensPerDay": null, "models": ["qwen3-coder-*"], "expiresAt": null}})
    );
    assert_eq!(chat(&app, &key, MODEL).await.status(), 403);

    let (_, listed) = app.json_as("GET", "/api/keys", ADMIN, None).await;
    let row = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["limits"]["models"], json!(["qwen3-coder-*"]));
    let env = &listed["data"][0];
    assert_eq!(
        (env["id"].as_str(), &env["limits"]),
        (Some("env-1"), &Value::Null)
    );

    // Replaced as a whole: an empty object lifts every limit.
    assert_eq!(set_limits(&app, &id, json!({})).await.0, 200);
    assert_eq!(chat(&app, &key, MODEL).await.status(), 200);
    assert_eq!(app.fake.completions().len(), 2);
}

#[tokio::test]
async fn bad_limits_are_refused_and_name_the_field() {
    let app = app().await;
    let (id, _) = key_with(&app, "target", json!({})).await;
    for (limits, says) in [
        (json!({"rpm": 5}), "unknown field \"rpm\""),
        (
            json!({"requestsPerMinute": 0}),
            "requestsPerMinute must be at least 1",
        ),
        (json!({"tokensPerDay": -1}), "limits: invalid value"),
        (json!({"models": []}), "models must be 1 to 100 patterns"),
        (json!({"models": [""]}), "models must be 1 to 100 patterns"),
        (json!([1]), "limits must be an object"),
    ] {
        let (status, v) = set_limits(&app, &id, limits.clone()).await;
        assert_eq!(status, 400, "{limits}: {v}");
        assert_error_envelope(&v, "invalid_request_error", "invalid_value");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{limits}: {message}");
        let (status, v) = app
            .json_as(
                "POST",
                "/api/keys",
                ADMIN,
                Some(json!({"label": "bad", "limits": limits})),
            )
            .await;
        assert_eq!(status, 400, "{v}");
    }
    let (status, v) = set_limits(&app, "env-1", json!({})).await;
    assert_eq!(status, 400);
    assert_error_envelope(&v, "invalid_request_error", "configured_key");
    let (status, v) = set_limits(&app, "key_none", json!({})).await;
    assert_eq!(status, 404, "{v}");
    let (status, _) = app
        .json_as(
            "PUT",
            &format!("/api/keys/{id}/limits"),
            KEY,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 403, "only the admin key edits limits");
}

/// Two replicas on one Redis (a fresh key prefix) with one account, or `None` when there is
/// no redis-server (outside CI). The server lives as long as the first item is held.
async fn two_replicas() -> Option<(
    std::sync::Arc<common::redis_server::RedisServer>,
    common::fake_qwen::FakeQwen,
    TestApp,
    TestApp,
)> {
    let redis = common::redis_server::shared()?;
    let fake = common::fake_qwen::FakeQwen::start().await;
    let cookies = format!("token={}", fake.add_token("acct1"));
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let vars = [
        ("DATA_SAVE_MODE", "redis"),
        ("REDIS_URL", redis.url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("STATUS_SYNC_SECONDS", "0.2"),
        ("ADMIN_KEY", ADMIN),
        ("QWEN_COOKIES", cookies.as_str()),
    ];
    let a = TestApp::spawn_with(fake.clone(), &vars).await;
    let b = TestApp::spawn_with(fake.clone(), &vars).await;
    Some((redis, fake, a, b))
}

#[tokio::test]
async fn two_replicas_on_one_redis_share_the_requests_per_minute() {
    let Some((_redis, fake, a, b)) = two_replicas().await else {
        return;
    };
    let (id, key) = key_with(&a, "shared", json!({"requestsPerMinute": 3})).await;
    assert!(
        common::eventually(Duration::from_secs(2), || b
            .state
            .keys()
            .limits(&id)
            .is_some())
        .await,
        "the key reaches the other replica"
    );
    fresh_minute().await;
    assert_eq!(chat(&a, &key, MODEL).await.status(), 200);
    assert_eq!(chat(&b, &key, MODEL).await.status(), 200);
    assert_eq!(chat(&a, &key, MODEL).await.status(), 200);
    for app in [&b, &a] {
        let (status, ..) = refused(
            chat(app, &key, MODEL).await,
            "rate_limit_error",
            "requests_per_minute_exceeded",
        )
        .await;
        assert_eq!(status, 429);
    }
    assert_eq!(fake.completions().len(), 3);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn two_replicas_on_one_redis_share_the_requests_in_flight() {
    let Some((_redis, fake, a, b)) = two_replicas().await else {
        return;
    };
    let (id, key) = key_with(&a, "one-in-flight", json!({"concurrentRequests": 1})).await;
    assert!(
        common::eventually(Duration::from_secs(2), || b
            .state
            .keys()
            .limits(&id)
            .is_some())
        .await,
        "the key reaches the other replica"
    );
    fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&["slow"])).first_delay(Duration::from_millis(800)),
    );
    let slow = {
        let (http, url, key) = (a.http.clone(), a.url("/v1/chat/completions"), key.clone());
        tokio::spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(key)
                .json(&chat_body(MODEL))
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        })
    };
    assert!(common::eventually(Duration::from_secs(2), || fake.completions().len() == 1).await);
    // The request in flight on replica a holds the key's one place for replica b too.
    let (status, ..) = refused(
        chat(&b, &key, MODEL).await,
        "rate_limit_error",
        "concurrent_requests_exceeded",
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        (
            a.state.limiter().in_flight(&id),
            b.state.limiter().in_flight(&id)
        ),
        (1, 0)
    );
    assert_eq!(slow.await.unwrap(), 200);
    // Once it has ended, replica b gets the place (freed in Redis a moment after the answer).
    let mut served = 0;
    for _ in 0..40 {
        let status = chat(&b, &key, MODEL).await.status();
        if status == 200 {
            served += 1;
            break;
        }
        assert_eq!(status, 429);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(served, 1);
    assert_eq!(fake.completions().len(), 2);
    a.stop().await;
    b.stop().await;
}
