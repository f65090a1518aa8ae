//! `DATA_SAVE_MODE=file` across restarts: runtime accounts, runtime keys, usage and account
//! health survive; environment accounts follow the environment; credentials are sealed on
//! disk with `DATA_ENCRYPTION_KEY`; and an acknowledged admin write survives SIGKILL of the
//! real binary.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fake_qwen::{FakeQwen, Reply, sha256_hex};
use common::{KEY, TestApp, body};
use qwen2api::store::HealthState;
use serde_json::{Value, json};

const ADMIN: &str = "sk-admin-key";
const MODEL: &str = "qwen3.7-plus";
const COMPLETIONS: &str = "/api/v2/chat/completions";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A server on the SQLite store in `dir`, configured by `vars` besides.
async fn spawn(fake: &FakeQwen, dir: &Path, vars: &[(&str, &str)]) -> TestApp {
    let mut all = vec![
        ("DATA_SAVE_MODE", "file"),
        ("DATA_DIR", dir.to_str().unwrap()),
        ("ADMIN_KEY", ADMIN),
    ];
    all.extend_from_slice(vars);
    TestApp::spawn_with(fake.clone(), &all).await
}

/// Stops a server the way the binary does at shutdown: pending usage counters are written.
async fn shut_down(app: TestApp) {
    app.state.flush().await;
    app.stop().await;
}

async fn admin(app: &TestApp, method: &str, path: &str, json: Option<Value>) -> (u16, Value) {
    app.json_as(method, path, ADMIN, json).await
}

/// `(accountId, state, reason)` of every account, sorted by id.
async fn accounts(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    let (status, v) = admin(app, "GET", "/api/accountsHealth", None).await;
    assert_eq!(status, 200, "{v}");
    let mut rows: Vec<_> = v["data"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["accountId"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
                a["reason"].as_str().map(str::to_owned),
            )
        })
        .collect();
    rows.sort();
    rows
}

async fn account_ids(app: &TestApp) -> Vec<String> {
    accounts(app).await.into_iter().map(|(id, ..)| id).collect()
}

fn completions(fake: &FakeQwen, label: &str) -> usize {
    fake.count_for(label, "POST", COMPLETIONS)
}

/// `GET /api/usage?days=1` as `id → requests`, accounts and keys apart.
async fn usage(app: &TestApp) -> (Vec<(String, u64)>, Vec<(String, u64)>) {
    let (status, v) = admin(app, "GET", "/api/usage?days=1", None).await;
    assert_eq!(status, 200, "{v}");
    let pick = |list: &Value| {
        let mut rows: Vec<(String, u64)> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["promptTokens"], r["requests"].as_u64().unwrap() * 1049);
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["requests"].as_u64().unwrap(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    (pick(&v["data"]["accounts"]), pick(&v["data"]["keys"]))
}

/// Waits until the store holds `state` for `id` (health is written off the request path).
async fn stored_state(app: &TestApp, id: &str, state: HealthState) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let statuses = app
            .state
            .accounts()
            .store()
            .account_statuses()
            .await
            .unwrap();
        if statuses.get(id).is_some_and(|s| s.state == state) {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never stored as {state:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every byte the store left in `dir` (the database, its WAL and shared-memory files).
fn bytes_on_disk(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The tokens the fake saw in `Authorization` headers.
fn bearer_tokens(fake: &FakeQwen) -> Vec<String> {
    fake.requests()
        .iter()
        .filter_map(|r| r.header("authorization")?.strip_prefix("Bearer "))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Restart with the same SQLite file

#[tokio::test]
async fn restart_keeps_runtime_accounts_keys_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQwen::start().await;
    let cookies = format!("token={}", fake.add_token("env"));
    fake.add_user("pw@example.com", "pw");
    let vars = [("QWEN_COOKIES", cookies.as_str())];

    let app = spawn(&fake, dir.path(), &vars).await;
    let runtime = format!("token={}", fake.add_token("runtime"));
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"num": 9, "cookie": runtime})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"email": "pw@example.com", "password": "pw"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, created) = admin(&app, "POST", "/api/keys", Some(json!({"label": "ci"}))).await;
    assert_eq!(status, 200, "{created}");
    let key_id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        app.chat_ok(&key).await;
    }
    app.chat_ok(KEY).await;
    let before = accounts(&app).await;
    shut_down(app).await;
    assert_eq!(fake.sign_ins().len(), 1);

    let app = spawn(&fake, dir.path(), &vars).await;
    assert_eq!(accounts(&app).await, before);
    assert_eq!(
        account_ids(&app).await,
        ["account_1", "account_9", "pw@example.com"]
    );
    // The stored token is far from expiry: no sign-in at start.
    assert_eq!(fake.sign_ins().len(), 1, "the stored token is reused");
    let (status, keys) = admin(&app, "GET", "/api/keys", None).await;
    assert_eq!(status, 200, "{keys}");
    assert!(
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == key_id.as_str() && k["label"] == "ci"),
        "{keys}"
    );
    assert_eq!(
        usage(&app).await,
        (
            vec![
                ("account_1".to_owned(), 2),
                ("account_9".to_owned(), 1),
                ("pw@example.com".to_owned(), 1),
            ],
            vec![("env-1".to_owned(), 1), (key_id.clone(), 3)],
        )
    );

    // The old plaintext still authenticates, and every account serves.
    for _ in 0..3 {
        app.chat_ok(&key).await;
    }
    // Before the restart account_1 served twice (four requests, three accounts).
    for (label, n) in [("env", 3), ("runtime", 2), ("pw@example.com", 2)] {
        assert_eq!(completions(&fake, label), n, "{label}");
    }
    assert_eq!(
        usage(&app).await.1,
        vec![("env-1".to_owned(), 1), (key_id, 6)]
    );
    // A key revoked before a restart stays revoked.
    let (status, _) = admin(
        &app,
        "DELETE",
        &format!("/api/keys/{}", created["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    app.stop().await;
    let app = spawn(&fake, dir.path(), &vars).await;
    let resp = app
        .http
        .get(app.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn restart_keeps_cooldowns_and_disabled_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQwen::start().await;
    let cookies: Vec<String> = (1..=3)
        .map(|i| format!("token={}", fake.add_token(&format!("acct{i}"))))
        .collect();
    let cookies = cookies.join(",");
    let vars = [("QWEN_COOKIES", cookies.as_str())];

    let app = spawn(&fake, dir.path(), &vars).await;
    fake.push_completion(
        Some("acct1"),
        Reply::json(429, json!({"detail": "Too Many Requests"})),
    );
    fake.revoke("acct2");
    app.chat_ok(KEY).await;
    assert_eq!(completions(&fake, "acct3"), 1);
    stored_state(&app, "account_1", HealthState::Cooling).await;
    stored_state(&app, "account_2", HealthState::Disabled).await;
    shut_down(app).await;

    let app = spawn(&fake, dir.path(), &vars).await;
    assert_eq!(
        accounts(&app).await,
        [
            (
                "account_1".to_owned(),
                "cooling".to_owned(),
                Some("rate_limited".to_owned())
            ),
            (
                "account_2".to_owned(),
                "disabled".to_owned(),
                Some("token_expired".to_owned())
            ),
            ("account_3".to_owned(), "active".to_owned(), None),
        ]
    );
    for _ in 0..3 {
        app.chat_ok(KEY).await;
    }
    assert_eq!(
        completions(&fake, "acct1"),
        1,
        "still cooling after the restart"
    );
    assert_eq!(fake.count("POST", "/api/v2/chats/new"), 6);
    assert_eq!(completions(&fake, "acct3"), 4);
}

#[tokio::test]
async fn a_stored_token_close_to_expiry_is_replaced_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQwen::start().await;
    // Sign-in tokens live an hour: within the default 24 h refresh window.
    fake.set_sign_in_lifetime(Duration::from_secs(3600));
    fake.add_user("pw@example.com", "pw");
    let accounts = ("ACCOUNTS", "pw@example.com:pw");
    shut_down(spawn(&fake, dir.path(), &[accounts]).await).await;
    assert_eq!(fake.sign_ins().len(), 1);
    shut_down(spawn(&fake, dir.path(), &[accounts]).await).await;
    assert_eq!(fake.sign_ins().len(), 2, "an hour left is less than 24 h");
    let app = spawn(
        &fake,
        dir.path(),
        &[accounts, ("TOKEN_REFRESH_BEFORE_HOURS", "0.5")],
    )
    .await;
    assert_eq!(fake.sign_ins().len(), 2, "an hour left is more than 30 min");
    app.chat_ok(KEY).await;
    assert_eq!(completions(&fake, "pw@example.com"), 1);
}

#[tokio::test]
async fn environment_accounts_follow_the_environment_and_runtime_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQwen::start().await;
    fake.add_user("pw@example.com", "pw-1");
    let first = format!(
        "token={},token={}",
        fake.add_token("a1"),
        fake.add_token("a2")
    );
    let app = spawn(
        &fake,
        dir.path(),
        &[
            ("QWEN_COOKIES", &first),
            ("ACCOUNTS", "pw@example.com:pw-1"),
        ],
    )
    .await;
    let runtime = format!("token={}", fake.add_token("rt"));
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"num": 9, "cookie": runtime})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        account_ids(&app).await,
        ["account_1", "account_2", "account_9", "pw@example.com"]
    );
    shut_down(app).await;

    // account_2 is gone from the environment, account_1 has a new token, the password changed.
    fake.add_user("pw@example.com", "pw-2");
    let second = format!("token={}", fake.add_token("a1-new"));
    let app = spawn(
        &fake,
        dir.path(),
        &[
            ("QWEN_COOKIES", &second),
            ("ACCOUNTS", "pw@example.com:pw-2"),
        ],
    )
    .await;
    assert_eq!(
        account_ids(&app).await,
        ["account_1", "account_9", "pw@example.com"]
    );
    let sign_ins = fake.sign_ins();
    assert_eq!(sign_ins.len(), 2, "the new password signs in");
    assert_eq!(
        sign_ins[1].json,
        Some(json!({"email": "pw@example.com", "password": sha256_hex("pw-2")}))
    );
    for _ in 0..3 {
        app.chat_ok(KEY).await;
    }
    for label in ["a1-new", "rt", "pw@example.com"] {
        assert_eq!(completions(&fake, label), 1, "{label}");
    }
    assert_eq!(completions(&fake, "a1") + completions(&fake, "a2"), 0);
    shut_down(app).await;

    // Still gone on the next start, and the token signed in for the new password is reused.
    let app = spawn(
        &fake,
        dir.path(),
        &[
            ("QWEN_COOKIES", &second),
            ("ACCOUNTS", "pw@example.com:pw-2"),
        ],
    )
    .await;
    assert_eq!(
        account_ids(&app).await,
        ["account_1", "account_9", "pw@example.com"]
    );
    assert_eq!(fake.sign_ins().len(), 2);
}

#[tokio::test]
async fn usage_is_written_in_batches_off_the_request_path() {
    let fake = FakeQwen::start().await;
    let cookies = format!("token={}", fake.add_token("acct1"));
    let today = qwen2api::store::today();
    let requests = |rows: &[qwen2api::store::UsageRow]| -> Vec<u64> {
        rows.iter().map(|r| r.requests).collect()
    };

    // A long interval: answered requests are not in the store yet.
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(
        &fake,
        dir.path(),
        &[("QWEN_COOKIES", &cookies), ("USAGE_FLUSH_SECONDS", "60")],
    )
    .await;
    for _ in 0..3 {
        app.chat_ok(KEY).await;
    }
    let store = std::sync::Arc::clone(app.state.accounts().store());
    assert_eq!(
        store.usage(&today).await.unwrap(),
        [],
        "no write per request"
    );
    // `GET /api/usage` writes what is pending first.
    admin(&app, "GET", "/api/usage?days=1", None).await;
    assert_eq!(requests(&store.usage(&today).await.unwrap()), [3, 3]);

    // A short interval: the timer writes them.
    let dir = tempfile::tempdir().unwrap();
    let app = spawn(
        &fake,
        dir.path(),
        &[("QWEN_COOKIES", &cookies), ("USAGE_FLUSH_SECONDS", "0.2")],
    )
    .await;
    for _ in 0..3 {
        app.chat_ok(KEY).await;
    }
    let store = std::sync::Arc::clone(app.state.accounts().store());
    let deadline = Instant::now() + Duration::from_secs(2);
    while requests(&store.usage(&today).await.unwrap()) != [3, 3] {
        assert!(Instant::now() < deadline, "usage never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn runtime_keys_are_stored_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQwen::start().await;
    let app = spawn(&fake, dir.path(), &[]).await;
    let (status, created) = admin(&app, "POST", "/api/keys", Some(json!({"label": "ci"}))).await;
    assert_eq!(status, 200, "{created}");
    let key = created["key"].as_str().unwrap();
    app.stop().await;
    let disk = bytes_on_disk(dir.path());
    assert!(contains(&disk, "ci"), "the key's record is on disk");
    assert!(!contains(&disk, key), "the plaintext key is not on disk");
    assert!(!contains(&disk, &key[7..]), "nor its random part");
}

#[tokio::test]
async fn an_environment_account_taking_a_runtime_accounts_id_is_listed_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQwen::start().await;
    let one = format!("token={}", fake.add_token("acct1"));
    let app = spawn(&fake, dir.path(), &[("QWEN_COOKIES", &one)]).await;
    // Added without a number: it gets the first free id, account_2.
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"cookie": format!("token={}", fake.add_token("rt"))})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["accountId"], "account_2");
    shut_down(app).await;

    // The environment now names a second cookie account, whose id is account_2 too.
    let two = format!("{one},token={}", fake.add_token("acct2"));
    let app = spawn(&fake, dir.path(), &[("QWEN_COOKIES", &two)]).await;
    let (_, v) = admin(&app, "GET", "/api/accountsHealth", None).await;
    let ids: Vec<&str> = v["data"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["accountId"].as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "each id once: {v}");
    assert_eq!(v["data"]["totalAccounts"], unique.len(), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Encryption at rest

/// Fills a store in `dir` with a password account, an env token account and a runtime cookie
/// account; returns the secrets that must not be on disk in plaintext.
async fn fill(fake: &FakeQwen, dir: &Path, vars: &[(&str, &str)]) -> Vec<String> {
    fake.add_user("enc@example.com", "pw-secret-123");
    let env_token = fake.add_token("env-enc");
    let runtime_token = fake.add_token("rt-enc");
    let cookies = format!("token={env_token}");
    let mut all = vec![
        ("QWEN_COOKIES", cookies.as_str()),
        ("ACCOUNTS", "enc@example.com:pw-secret-123"),
    ];
    all.extend_from_slice(vars);
    let app = spawn(fake, dir, &all).await;
    let (status, v) = admin(
        &app,
        "POST",
        "/api/addAccount",
        Some(json!({"num": 9, "cookie": format!("token={runtime_token}; ssxmod_itna=cookie-secret-456")})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    for _ in 0..3 {
        app.chat_ok(KEY).await;
    }
    shut_down(app).await;
    let mut secrets = bearer_tokens(fake);
    secrets.sort();
    secrets.dedup();
    assert_eq!(secrets.len(), 3, "three accounts' tokens: {secrets:?}");
    secrets.extend(["pw-secret-123".to_owned(), "cookie-secret-456".to_owned()]);
    secrets
}

#[tokio::test]
async fn encryption_key_keeps_tokens_and_passwords_off_the_disk() {
    // Without a key, the secrets are on disk as they are (so the search below can find them).
    let plain_dir = tempfile::tempdir().unwrap();
    let fake = FakeQwen::start().await;
    let secrets = fill(&fake, plain_dir.path(), &[]).await;
    let disk = bytes_on_disk(plain_dir.path());
    for s in &secrets {
        assert!(
            contains(&disk, s),
            "{s} is stored in plaintext without a key"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQwen::start().await;
    let vars = [("DATA_ENCRYPTION_KEY", "correct horse battery staple")];
    let secrets = fill(&fake, dir.path(), &vars).await;
    let disk = bytes_on_disk(dir.path());
    assert!(!disk.is_empty());
    for s in &secrets {
        assert!(!contains(&disk, s), "{s} is on disk in plaintext");
    }

    // The same key opens them again: every account serves, and the stored token is reused.
    let env = format!("token={}", fake.add_token("env-enc"));
    let app = spawn(
        &fake,
        dir.path(),
        &[
            ("QWEN_COOKIES", env.as_str()),
            ("ACCOUNTS", "enc@example.com:pw-secret-123"),
            vars[0],
        ],
    )
    .await;
    assert_eq!(fake.sign_ins().len(), 1);
    for _ in 0..3 {
        app.chat_ok(KEY).await;
    }
    for label in ["env-enc", "rt-enc", "enc@example.com"] {
        assert_eq!(completions(&fake, label), 2, "{label}");
    }
}

// ---------------------------------------------------------------------------------------------
// SIGKILL right after an acknowledged admin write (the real binary)

/// The `qwen2api` binary, killed when dropped.
struct Binary {
    child: Child,
    port: u16,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Binary {
    /// Starts the binary on a free port with only these variables and `dir` as its working
    /// directory (so no stray `.env` is read), and waits until it answers.
    async fn start(dir: &Path, fake: &FakeQwen) -> Binary {
        Binary::start_with(dir, fake, &[]).await
    }

    async fn start_with(dir: &Path, fake: &FakeQwen, vars: &[(&str, &str)]) -> Binary {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let child = Command::new(env!("CARGO_BIN_EXE_qwen2api"))
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("API_KEY", KEY)
                .env("ADMIN_KEY", ADMIN)
                .env("SERVICE_PORT", port.to_string())
                .env("LISTEN_ADDRESS", "127.0.0.1")
                .env("QWEN_BASE_URL", fake.base_url())
                .env("DATA_SAVE_MODE", "file")
                .env("DATA_DIR", dir)
                .envs(vars.iter().copied())
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the qwen2api binary starts");
            let mut bin = Binary { child, port };
            if bin.ready().await {
                return bin;
            }
        }
        panic!("the binary did not come up on any of 5 ports");
    }

    /// Polls `/health`; false if the process exited (the port was taken) or never answered.
    async fn ready(&mut self) -> bool {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(r) = http.get(self.url("/health")).send().await
                && r.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGTERM, then waits for the process to exit; true if it exited successfully.
    async fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "the binary did not exit on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill9(mut self) {
        // `Child::kill` is SIGKILL on Unix: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

#[tokio::test]
async fn sigkill_right_after_acknowledged_admin_writes_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQwen::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let bin = Binary::start(dir.path(), &fake).await;
    let key = http
        .post(bin.url("/api/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"label": "durable"}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 200);
    let key: Value = key.json().await.unwrap();
    let account = http
        .post(bin.url("/api/addAccount"))
        .bearer_auth(ADMIN)
        .json(&json!({"num": 3, "cookie": format!("token={}", fake.add_token("durable"))}))
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), 200);
    bin.kill9();

    let bin = Binary::start(dir.path(), &fake).await;
    let keys: Value = http
        .get(bin.url("/api/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == key["id"] && k["label"] == "durable"),
        "{keys}"
    );
    let health: Value = http
        .get(bin.url("/api/accountsHealth"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = health["data"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["accountId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["account_3"], "{health}");
    let resp = http
        .get(bin.url("/v1/models"))
        .bearer_auth(key["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the created key still works");
}

#[tokio::test]
async fn usage_counted_before_a_graceful_shutdown_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeQwen::start().await;
    let cookies = format!("token={}", fake.add_token("acct1"));
    let vars = [("QWEN_COOKIES", cookies.as_str())];
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let bin = Binary::start_with(dir.path(), &fake, &vars).await;
    for _ in 0..2 {
        let resp = http
            .post(bin.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&body(MODEL, false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Counters are flushed every USAGE_FLUSH_SECONDS (5): these are still in memory.
    assert!(bin.terminate().await, "a clean exit");

    let bin = Binary::start_with(dir.path(), &fake, &vars).await;
    let v: Value = http
        .get(bin.url("/api/usage?days=1"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["accounts"][0]["id"], "account_1", "{v}");
    assert_eq!(v["data"]["accounts"][0]["requests"], 2, "{v}");
    assert_eq!(v["data"]["keys"][0]["id"], "env-1", "{v}");
    assert_eq!(v["data"]["keys"][0]["requests"], 2, "{v}");
}
