//! No secret ever reaches the logs, even at `LOG_LEVEL=trace`, nor the admin API's answers.

use crate::common;

use std::time::Duration;

use common::binary::{Server, read_log};
use common::fake_qwen::{FakeQwen, Reply};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario touching every secret, then one scan of the log"
)]
async fn a_full_scenario_at_trace_level_logs_no_secret() {
    let fake = FakeQwen::start().await;
    fake.add_user("alice@example.com", "pw-Sup3rSecret!");
    let cookie_token = fake.add_token("cookie-acct");
    let added_token = fake.add_token("added-acct");
    let cookies = format!("cna=CNASECRET42; token={cookie_token}");
    let (api_key, admin_key) = ("sk-user-KEYSECRET9", "sk-admin-ADMINSECRET7");
    let dir = tempfile::tempdir().unwrap();
    let base = fake.base_url();
    let server = Server::start(
        dir.path(),
        &[
            ("API_KEY", api_key),
            ("ADMIN_KEY", admin_key),
            ("ACCOUNTS", "alice@example.com:pw-Sup3rSecret!"),
            ("QWEN_COOKIES", &cookies),
            ("QWEN_BASE_URL", &base),
            ("DATA_SAVE_MODE", "file"),
            ("DATA_DIR", "data"),
            ("DATA_ENCRYPTION_KEY", "enc-PASSPHRASE-55"),
            ("LOG_LEVEL", "trace"),
        ],
    );
    let http = reqwest::Client::new();
    let chat = |stream: bool| {
        http.post(server.url("/v1/chat/completions"))
            .bearer_auth(api_key)
            .json(&json!({"model":"qwen3.7-plus","stream":stream,"messages":[{"role":"user","content":"hi"}]}))
            .send()
    };
    assert_eq!(chat(false).await.unwrap().status(), 200);
    assert!(chat(true).await.unwrap().text().await.unwrap().ends_with(
        "[DONE]

"
    ));
    // A rejected token, then a failing sign-in path.
    fake.push_completion(None, Reply::json(401, json!({"detail": "Unauthorized"})));
    chat(false).await.unwrap();
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(admin_key).send();
    let added = admin(
        http.post(server.url("/api/addAccount"))
            .json(&json!({"num": 7, "cookie": format!("token={added_token}")})),
    )
    .await
    .unwrap();
    assert_eq!(added.status(), 200);
    let key: Value = admin(
        http.post(server.url("/api/keys"))
            .json(&json!({"label": "ci"})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let new_key = key["key"].as_str().unwrap().to_owned();
    let with_new = http
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&new_key)
        .json(&json!({"model":"qwen3.7-plus","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(with_new.status(), 200);
    let health = admin(http.get(server.url("/api/accountsHealth")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let keys = admin(http.get(server.url("/api/keys")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let status = admin(http.get(server.url("/api/configStatus")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Wrong keys are refused and not echoed either.
    let wrong = http
        .get(server.url("/v1/models"))
        .bearer_auth("sk-WRONG-GUESS-1")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    server.terminate();
    server.exit_code(Duration::from_secs(10)).await;

    let log = read_log(dir.path());
    assert!(
        log.contains("TRACE") || log.contains("trace"),
        "trace logging is on"
    );
    assert!(log.lines().count() > 20, "the scenario was logged");
    let payload = |t: &str| t.split('.').nth(1).unwrap().to_owned();
    let secrets = [
        "pw-Sup3rSecret!".to_owned(),
        common::fake_qwen::sha256_hex("pw-Sup3rSecret!"),
        cookie_token.clone(),
        payload(&cookie_token),
        added_token.clone(),
        payload(&added_token),
        "CNASECRET42".to_owned(),
        api_key.to_owned(),
        admin_key.to_owned(),
        new_key.clone(),
        "enc-PASSPHRASE-55".to_owned(),
        "sk-WRONG-GUESS-1".to_owned(),
    ];
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "a secret is in the log: …{}",
            &s[s.len() - 4..]
        );
        for (what, body) in [
            ("accountsHealth", &health),
            ("keys", &keys),
            ("configStatus", &status),
        ] {
            assert!(
                !body.contains(s.as_str()),
                "a secret is in {what}: …{}",
                &s[s.len() - 4..]
            );
        }
    }
    let db = std::fs::read(dir.path().join("data/qwen2api.db")).unwrap();
    for s in [
        "pw-Sup3rSecret!",
        &cookie_token,
        &added_token,
        "CNASECRET42",
    ] {
        assert!(
            !db.windows(s.len()).any(|w| w == s.as_bytes()),
            "plaintext in the database"
        );
    }
}

#[test]
fn debug_output_hides_secrets() {
    let vars: std::collections::HashMap<String, String> = [
        ("API_KEY", "sk-DEBUGKEY1"),
        ("ADMIN_KEY", "sk-DEBUGADMIN2"),
        (
            "ACCOUNTS",
            "a@b.c:DEBUGPASS3|http://user:DEBUGPROXYPW@127.0.0.1:8080",
        ),
        ("QWEN_COOKIES", "token=DEBUGTOKEN4; cna=DEBUGCNA5"),
        ("DATA_ENCRYPTION_KEY", "DEBUGENC6"),
        ("REDIS_URL", "redis://:DEBUGREDIS7@127.0.0.1:6379"),
        ("DATA_SAVE_MODE", "none"),
        ("ENV_FILE", &common::no_env_file()),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let config = qwen2api::reload::Reloader::new(vars).load().unwrap();
    let shown = format!("{config:?}");
    for s in [
        "DEBUGKEY1",
        "DEBUGADMIN2",
        "DEBUGPASS3",
        "DEBUGPROXYPW",
        "DEBUGTOKEN4",
        "DEBUGCNA5",
        "DEBUGENC6",
        "DEBUGREDIS7",
    ] {
        assert!(!shown.contains(s), "{s} is in the Debug output");
    }
}

/// The request span names the route template, not the raw path: account ids in paths are
/// e-mail addresses, and a raw path has no bound on its values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_logs_name_the_route_template_not_the_path() {
    let fake = FakeQwen::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = fake.base_url();
    let admin_key = "sk-admin-route-log";
    let server = Server::start(
        dir.path(),
        &[
            ("ADMIN_KEY", admin_key),
            ("QWEN_BASE_URL", &base),
            ("DATA_SAVE_MODE", "none"),
        ],
    );
    let http = reqwest::Client::new();
    let put = http
        .put(server.url("/api/accounts/bob.private@example.com/proxy"))
        .bearer_auth(admin_key)
        .json(&json!({"proxy": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 404);
    let missing = http
        .get(server.url("/no/such/place-carol@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let logged = |needle: &str| read_log(dir.path()).contains(needle);
    assert!(
        common::eventually(Duration::from_secs(5), || logged("route=(no route)")).await,
        "{}",
        read_log(dir.path())
    );
    let log = read_log(dir.path());
    // The span part of each request line (`request{method=… request_id=… route=…}`) holds no
    // raw path; the request id (a new UUID each) is left out of the comparison.
    let spans: Vec<String> = log
        .lines()
        .filter_map(|l| l.split_once("request{").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once("}: ").map(|(span, _)| span))
        .map(|span| {
            span.split(' ')
                .filter(|field| !field.starts_with("request_id="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        spans,
        [
            "method=PUT route=/api/accounts/{account_id}/proxy",
            "method=GET route=(no route)"
        ],
        "{log}"
    );
}
