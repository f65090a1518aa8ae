//! Two servers on one Redis (`DATA_SAVE_MODE=redis`): a cooldown set through one is honoured
//! by the other, the round-robin position is shared, and keys and accounts created through
//! one are used by the other. Needs `redis-server`: a missing one skips these tests with a
//! note, except with `CI=true`, where it fails them.

use crate::common;

use std::time::Duration;

use common::redis_server::{RedisServer, shared as redis};
use std::sync::Arc;

use common::fake_qwen::{FakeQwen, Reply};
use common::{KEY, TestApp, body};
use qwen2api::accounts::Health;
use serde_json::{Value, json};

const ADMIN: &str = "sk-admin-key";
const MODEL: &str = "qwen3.7-plus";
const COMPLETIONS: &str = "/api/v2/chat/completions";

// ---------------------------------------------------------------------------------------------
// Two replicas

struct Replicas {
    a: TestApp,
    b: TestApp,
    fake: FakeQwen,
    _redis: Arc<RedisServer>,
}

fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

/// One server on `redis` under `prefix`, syncing every 0.2 s, configured by `vars` besides.
async fn replica(
    redis: &RedisServer,
    fake: &FakeQwen,
    prefix: &str,
    vars: &[(&str, &str)],
) -> TestApp {
    let mut all = vec![
        ("DATA_SAVE_MODE", "redis"),
        ("REDIS_URL", redis.url.as_str()),
        ("REDIS_KEY_PREFIX", prefix),
        ("STATUS_SYNC_SECONDS", "0.2"),
        ("ADMIN_KEY", ADMIN),
    ];
    all.extend_from_slice(vars);
    TestApp::spawn_with(fake.clone(), &all).await
}

/// Two servers on one Redis under a fresh prefix, with the same two token accounts
/// (`acct1`, `acct2`), syncing every 0.2 s.
async fn replicas() -> Option<Replicas> {
    let redis = redis()?;
    let fake = FakeQwen::start().await;
    let cookies = format!(
        "token={},token={}",
        fake.add_token("acct1"),
        fake.add_token("acct2")
    );
    let prefix = unique_prefix();
    let a = replica(&redis, &fake, &prefix, &[("QWEN_COOKIES", &cookies)]).await;
    let b = replica(&redis, &fake, &prefix, &[("QWEN_COOKIES", &cookies)]).await;
    Some(Replicas {
        a,
        b,
        fake,
        _redis: redis,
    })
}

async fn admin(app: &TestApp, method: &str, path: &str, json: Option<Value>) -> (u16, Value) {
    app.json_as(method, path, ADMIN, json).await
}

/// [`common::eventually_async`] for up to 2 s, failing the test with `what`.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let within = Duration::from_secs(2);
    assert!(
        common::eventually_async(within, check).await,
        "not within 2 s: {what}"
    );
}

/// Labels of the accounts that served completions, in order.
fn served(fake: &FakeQwen) -> Vec<String> {
    fake.completions()
        .iter()
        .map(|r| r.label.clone().unwrap_or_default())
        .collect()
}

fn health(app: &TestApp, id: &str) -> Option<Health> {
    app.state.proxy().pool().get(id).map(|a| a.health())
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_cooldown_set_through_one_replica_is_honoured_by_the_other() {
    let Some(r) = replicas().await else { return };
    r.fake.push_completion(
        Some("acct1"),
        Reply::json(429, json!({"detail": "Too Many Requests"})),
    );
    // Through A until acct1 has been asked (the shared turn decides which account is first).
    for _ in 0..2 {
        if r.fake.count_for("acct1", "POST", COMPLETIONS) == 0 {
            r.a.chat_ok(KEY).await;
        }
    }
    assert_eq!(r.fake.count_for("acct1", "POST", COMPLETIONS), 1);
    assert!(matches!(
        health(&r.a, "account_1"),
        Some(Health::Cooling { .. })
    ));

    eventually("B sees account_1 cooling", || async {
        matches!(health(&r.b, "account_1"), Some(Health::Cooling { .. }))
    })
    .await;
    let before = r.fake.completions().len();
    for _ in 0..4 {
        r.b.chat_ok(KEY).await;
    }
    assert_eq!(
        served(&r.fake)[before..],
        ["acct2", "acct2", "acct2", "acct2"],
        "B skips the account A put in cooldown"
    );
    let (_, v) = admin(&r.b, "GET", "/api/accountsHealth", None).await;
    let row = &v["data"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["accountId"] == "account_1")
        .unwrap()
        .clone();
    assert_eq!(row["state"], "cooling", "{v}");
    assert_eq!(row["reason"], "rate_limited", "{v}");
}

#[tokio::test]
async fn round_robin_is_shared_by_both_replicas() {
    let Some(r) = replicas().await else { return };
    // Alternating A, B, A, B…: with one shared position the accounts alternate too (with a
    // position per replica they would come in pairs: acct1, acct1, acct2, acct2, …).
    for _ in 0..4 {
        r.a.chat_ok(KEY).await;
        r.b.chat_ok(KEY).await;
    }
    let order = served(&r.fake);
    assert_eq!(order.len(), 8);
    for pair in order.windows(2) {
        assert_ne!(pair[0], pair[1], "accounts alternate: {order:?}");
    }
    assert_eq!(order.iter().filter(|l| *l == "acct1").count(), 4);
}

#[tokio::test]
async fn a_key_created_on_one_replica_works_on_the_other() {
    let Some(r) = replicas().await else { return };
    let (status, created) = admin(&r.a, "POST", "/api/keys", Some(json!({"label": "ci"}))).await;
    assert_eq!(status, 200, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let models = |app: &TestApp| app.http.get(app.url("/v1/models")).bearer_auth(&key).send();
    eventually("B accepts the new key", || async {
        models(&r.b).await.unwrap().status() == 200
    })
    .await;
    r.b.chat_ok(&key).await;
    // The label is taken for B too.
    let (status, v) = admin(&r.b, "POST", "/api/keys", Some(json!({"label": "ci"}))).await;
    assert_eq!(status, 409, "{v}");

    // Revoked through B: A stops accepting it.
    let (status, v) = admin(&r.b, "DELETE", &format!("/api/keys/{id}"), None).await;
    assert_eq!(status, 200, "{v}");
    eventually("A refuses the revoked key", || async {
        models(&r.a).await.unwrap().status() == 401
    })
    .await;
}

#[tokio::test]
async fn an_account_added_on_one_replica_is_used_by_the_other() {
    let Some(r) = replicas().await else { return };
    let cookie = format!("token={}", r.fake.add_token("acct3"));
    let (status, v) = admin(
        &r.a,
        "POST",
        "/api/addAccount",
        Some(json!({"num": 3, "cookie": cookie})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    eventually("B has account_3", || async {
        health(&r.b, "account_3") == Some(Health::Active)
    })
    .await;
    // Three consecutive shared turns through B: each account once.
    for _ in 0..3 {
        r.b.chat_ok(KEY).await;
    }
    let mut order = served(&r.fake);
    order.sort();
    assert_eq!(order, ["acct1", "acct2", "acct3"]);

    // Deleted through B: A stops using it.
    let (status, v) = admin(&r.b, "DELETE", "/api/deleteAccount/account_3", None).await;
    assert_eq!(status, 200, "{v}");
    eventually("A drops account_3", || async {
        health(&r.a, "account_3").is_none()
    })
    .await;
    for _ in 0..3 {
        r.a.chat_ok(KEY).await;
    }
    assert_eq!(r.fake.count_for("acct3", "POST", COMPLETIONS), 1);
}

#[tokio::test]
async fn usage_from_both_replicas_adds_up() {
    let Some(r) = replicas().await else { return };
    for _ in 0..2 {
        r.a.chat_ok(KEY).await;
        r.b.chat_ok(KEY).await;
    }
    // Each replica flushes its own counters; the totals are the same seen from either.
    r.a.state.flush().await;
    r.b.state.flush().await;
    let (status, v) = admin(&r.b, "GET", "/api/usage?days=1", None).await;
    assert_eq!(status, 200, "{v}");
    let keys = v["data"]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{v}");
    assert_eq!(keys[0]["id"], "env-1");
    assert_eq!(keys[0]["requests"], 4);
    assert_eq!(keys[0]["promptTokens"], 4 * 1049);
    let requests: u64 = v["data"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 4, "{v}");
    let (_, from_a) = admin(&r.a, "GET", "/api/usage?days=1", None).await;
    assert_eq!(from_a["data"], v["data"]);
}

#[tokio::test]
async fn an_ended_cooldown_in_the_store_does_not_reset_failure_counts() {
    let Some(redis) = redis() else { return };
    let fake = FakeQwen::start().await;
    let cookies = format!("token={}", fake.add_token("acct1"));
    let app = replica(
        &redis,
        &fake,
        &unique_prefix(),
        &[
            ("QWEN_COOKIES", &cookies),
            ("ACCOUNT_FAILURE_THRESHOLD", "2"),
            ("RATE_LIMIT_COOLDOWN_SECONDS", "0.3"),
        ],
    )
    .await;
    let account = app.state.proxy().pool().get("account_1").unwrap();
    fake.push_completion(
        None,
        Reply::json(429, json!({"detail": "Too Many Requests"})),
    );
    let resp = app.chat(body(MODEL, false)).await;
    assert_eq!(resp.status(), 429);
    eventually("the cooldown ends", || async {
        account.health() == Health::Active
    })
    .await;
    // Let a few syncs pass, then one transient failure: with the rate limit before it, the
    // second failure since the last success (issue 22: failures of any class count), which
    // reaches the threshold of 2.
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.push_completion(None, Reply::json(500, json!({"detail": "boom"})));
    assert_eq!(app.chat(body(MODEL, false)).await.status(), 502);
    let after = account.status();
    assert_eq!(after.failure_count, 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = account.status();
    assert_eq!(later.failure_count, 2, "the streak is kept: {later:?}");
    assert_eq!(
        later.last_used_ms, after.last_used_ms,
        "lastUsed does not go back"
    );
    assert!(
        matches!(account.health(), Health::Cooling { ref reason, .. } if reason == "transient"),
        "{:?}",
        account.health()
    );
}
