//! Configuration reload from the `.env` file (`ENV_FILE`): accounts added and removed while a
//! stream is in flight, an invalid file rejected with the old configuration kept, API keys
//! swapped, variables that need a restart reported, and the file watcher picking up a file
//! replaced by rename (as editors and Docker do).

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fake_qwen::{FakeQwen, Reply, Split, fixture_bytes};
use common::{KEY, TestApp, body, sse_json, sse_lines, streamed_content};
use qwen2api::AppState;
use qwen2api::reload::Reloader;
use serde_json::{Value, json};

const MODEL: &str = "qwen3.7-plus";
const COMPLETIONS: &str = "/api/v2/chat/completions";

// ---------------------------------------------------------------------------------------------
// Helpers

/// A temporary folder holding the `.env` file a server is pointed at.
struct EnvFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl EnvFile {
    fn new(text: &str) -> EnvFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, text).unwrap();
        EnvFile { _dir: dir, path }
    }

    fn var(&self) -> (&'static str, &str) {
        ("ENV_FILE", self.path.to_str().unwrap())
    }

    /// Edits the file in place.
    fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }

    /// Writes a new file beside it and renames it over, as editors and Docker do.
    fn replace(&self, text: &str) {
        let tmp = self.path.with_file_name(".env.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

/// `POST /api/reloadConfig` with `key`; returns the status and the body.
async fn reload(http: &reqwest::Client, base: &str, key: &str) -> (u16, Value) {
    let resp = http
        .post(format!("{base}/api/reloadConfig"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn reload_app(app: &TestApp) -> (u16, Value) {
    // Without ADMIN_KEY the first API_KEY is the admin key.
    reload(&app.http, &app.url(""), KEY).await
}

async fn account_ids(app: &TestApp) -> Vec<String> {
    let v: Value = app.get_json("/api/accountsHealth").await;
    let mut ids: Vec<String> = v["data"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["accountId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn config_status(app: &TestApp) -> Value {
    let v: Value = app.get_json("/api/configStatus").await;
    v["data"].clone()
}

fn sign_in_emails(fake: &FakeQwen) -> Vec<String> {
    fake.sign_ins()
        .iter()
        .map(|r| {
            r.json.as_ref().unwrap()["email"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A fake with sign-in users `a`, `b` and `c` (`@example.com`, password `pw`).
async fn fake_with_users() -> FakeQwen {
    let fake = FakeQwen::start().await;
    for u in ["a", "b", "c"] {
        fake.add_user(&format!("{u}@example.com"), "pw");
    }
    fake
}

fn accounts_line(users: &[&str]) -> String {
    let list: Vec<String> = users
        .iter()
        .map(|u| format!("{u}@example.com:pw"))
        .collect();
    format!("ACCOUNTS={}\n", list.join(","))
}

/// The captured answer, one event per body frame with a pause between.
fn slow_answer(pause: Duration) -> Reply {
    Reply::sse_with(fixture_bytes("capture_fast_answer.sse"), Split::AtEvents).delay(pause)
}

/// A server whose process environment is exactly `base` (unlike `TestApp`, which always sets
/// `API_KEY`), so that keys can come from the file.
struct Server {
    addr: SocketAddr,
    http: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start(base: &[(&str, &str)]) -> Server {
        let vars: HashMap<String, String> = base
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let reloader = Reloader::new(vars);
        let config = reloader.load().expect("valid configuration");
        let state = AppState::build(config, Some(reloader)).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(qwen2api::server::serve(listener, state, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            _shutdown: tx,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn models_status(&self, key: &str) -> u16 {
        self.http
            .get(format!("{}/v1/models", self.base()))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

async fn poll<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn reload_adds_and_removes_accounts_while_a_stream_is_in_flight() {
    let file = EnvFile::new(&accounts_line(&["a", "b"]));
    let app = TestApp::spawn_with(fake_with_users().await, &[file.var()]).await;
    assert_eq!(account_ids(&app).await, ["a@example.com", "b@example.com"]);
    assert_eq!(app.fake.sign_ins().len(), 2);

    // A stream in flight on one account; that account is the one removed.
    app.fake
        .push_completion(None, slow_answer(Duration::from_millis(150)));
    let mut resp = app.chat(body(MODEL, true)).await;
    assert_eq!(resp.status(), 200);
    let mut text = String::new();
    while !text.contains("\"Hi\"") {
        let chunk = resp.chunk().await.unwrap().expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let victim = app.fake.completions()[0].label.clone().unwrap();
    let kept_user = if victim == "a@example.com" { "b" } else { "a" };
    let kept_id = format!("{kept_user}@example.com");

    file.write(&accounts_line(&[kept_user, "c"]));
    let (status, v) = reload_app(&app).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "data": {
            "accounts": {"added": ["c@example.com"], "removed": [victim], "updated": []},
            "keysChanged": false,
            "restartRequired": [],
        }})
    );
    assert_eq!(
        account_ids(&app).await,
        [kept_id.clone(), "c@example.com".to_owned()]
    );
    assert_eq!(
        sign_in_emails(&app.fake)[2],
        "c@example.com",
        "the new account signs in"
    );
    assert_eq!(app.fake.open_streams(), 1, "the stream is still going");

    while let Some(chunk) = resp.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(sse_lines(&text).last().unwrap(), "data: [DONE]", "{text}");
    let chunks = sse_json(&text);
    assert!(chunks.iter().all(|c| c.get("error").is_none()), "{text}");
    assert_eq!(streamed_content(&chunks), "Hi!");

    for _ in 0..2 {
        app.chat_ok(KEY).await;
    }
    assert_eq!(app.fake.count_for(&victim, "POST", COMPLETIONS), 1);
    assert_eq!(app.fake.count_for(&kept_id, "POST", COMPLETIONS), 1);
    assert_eq!(app.fake.count_for("c@example.com", "POST", COMPLETIONS), 1);
    assert_eq!(app.leases(), 0);
}

#[tokio::test]
async fn an_invalid_file_is_rejected_and_the_old_configuration_stays() {
    let file = EnvFile::new(&accounts_line(&["a"]));
    let app = TestApp::spawn_with(fake_with_users().await, &[file.var()]).await;
    file.write(&format!("{}RETRY_COUNT=0\n", accounts_line(&["b", "c"])));
    let (status, v) = reload_app(&app).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["code"], "invalid_configuration", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("RETRY_COUNT"),
        "names the variable: {message}"
    );
    // Nothing applied: same accounts, no sign-in, still serving.
    assert_eq!(account_ids(&app).await, ["a@example.com"]);
    assert_eq!(sign_in_emails(&app.fake), ["a@example.com"]);
    app.chat_ok(KEY).await;
    assert_eq!(config_status(&app).await["retryCount"], 3);

    // Fixed: the change goes through, measured against the last good configuration.
    file.write(&accounts_line(&["b", "c"]));
    let (status, v) = reload_app(&app).await;
    assert_eq!(status, 200, "{v}");
    let mut added: Vec<String> =
        serde_json::from_value(v["data"]["accounts"]["added"].clone()).unwrap();
    added.sort();
    assert_eq!(added, ["b@example.com", "c@example.com"]);
    assert_eq!(v["data"]["accounts"]["removed"], json!(["a@example.com"]));
    assert_eq!(account_ids(&app).await, ["b@example.com", "c@example.com"]);
}

#[tokio::test]
async fn a_changed_api_key_works_after_reload_and_the_old_one_stops() {
    let fake = FakeQwen::start().await;
    let cookies = format!("QWEN_COOKIES=token={}\n", fake.add_token("acct1"));
    let file = EnvFile::new(&format!("API_KEY=sk-old\n{cookies}"));
    let base = fake.base_url();
    let server = Server::start(&[
        ("QWEN_BASE_URL", &base),
        ("DATA_SAVE_MODE", "none"),
        ("ADMIN_KEY", "sk-admin"),
        ("ENV_FILE", path_str(&file.path)),
    ])
    .await;
    assert_eq!(server.models_status("sk-old").await, 200);
    assert_eq!(server.models_status("sk-new").await, 401);

    file.write(&format!("API_KEY=sk-new\n{cookies}"));
    let (status, v) = reload(&server.http, &server.base(), "sk-admin").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"],
        json!({
            "accounts": {"added": [], "removed": [], "updated": []},
            "keysChanged": true,
            "restartRequired": [],
        })
    );
    assert_eq!(server.models_status("sk-new").await, 200);
    assert_eq!(server.models_status("sk-old").await, 401);
    let verify: Value = server
        .http
        .post(format!("{}/verify", server.base()))
        .json(&json!({"apiKey": "sk-new"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        verify,
        json!({"status": 200, "message": "success", "isAdmin": false})
    );
}

#[tokio::test]
async fn a_changed_admin_key_and_a_changed_cookie_apply_on_reload() {
    let fake = FakeQwen::start().await;
    let old = fake.add_token("old");
    let file = EnvFile::new(&format!("ADMIN_KEY=sk-adm-1\nQWEN_COOKIES=token={old}\n"));
    let app = TestApp::spawn_with(fake, &[file.var()]).await;
    let health = |key: &'static str| {
        app.http
            .get(app.url("/api/accountsHealth"))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(health("sk-adm-1").await.unwrap().status(), 200);
    assert_eq!(health(KEY).await.unwrap().status(), 403);

    let new = app.fake.add_token("new");
    file.write(&format!("ADMIN_KEY=sk-adm-2\nQWEN_COOKIES=token={new}\n"));
    let (status, v) = reload(&app.http, &app.url(""), "sk-adm-1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"],
        json!({
            "accounts": {"added": [], "removed": [], "updated": ["account_1"]},
            "keysChanged": true,
            "restartRequired": [],
        })
    );
    assert_eq!(health("sk-adm-2").await.unwrap().status(), 200);
    assert_eq!(health("sk-adm-1").await.unwrap().status(), 401);
    app.chat_ok(KEY).await;
    assert_eq!(app.fake.count_for("new", "POST", COMPLETIONS), 1);
    assert_eq!(app.fake.count_for("old", "POST", COMPLETIONS), 0);
}

#[tokio::test]
async fn variables_that_need_a_restart_are_reported_and_the_environment_wins() {
    let fake = FakeQwen::start().await;
    let cookies = format!("QWEN_COOKIES=token={}\n", fake.add_token("acct1"));
    let file = EnvFile::new(&cookies);
    let app = TestApp::spawn_with(fake, &[file.var()]).await;
    // API_KEY is set in the process environment, which wins over the file.
    file.write(&format!(
        "{cookies}MAX_INFLIGHT_PER_ACCOUNT=5\nSSE_KEEPALIVE_SECONDS=30\nAPI_KEY=sk-from-file\n"
    ));
    let (status, v) = reload_app(&app).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"],
        json!({
            "accounts": {"added": [], "removed": [], "updated": []},
            "keysChanged": false,
            "restartRequired": ["MAX_INFLIGHT_PER_ACCOUNT", "SSE_KEEPALIVE_SECONDS"],
        })
    );
    // Not applied until a restart.
    assert_eq!(config_status(&app).await["maxInflightPerAccount"], 2);
    let resp = app
        .http
        .get(app.url("/v1/models"))
        .bearer_auth("sk-from-file")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    app.chat_ok(KEY).await;
}

#[tokio::test]
async fn the_watcher_applies_a_file_replaced_by_rename() {
    let file = EnvFile::new(&accounts_line(&["a"]));
    let app = TestApp::spawn_with(fake_with_users().await, &[file.var()]).await;
    let _watcher = qwen2api::reload::watch(&app.state).expect("watching the folder");

    file.replace(&accounts_line(&["a", "c"]));
    poll("the watcher adds c", Duration::from_secs(3), || async {
        account_ids(&app).await == ["a@example.com", "c@example.com"]
    })
    .await;
    assert_eq!(
        sign_in_emails(&app.fake),
        ["a@example.com", "c@example.com"]
    );
    for _ in 0..2 {
        app.chat_ok(KEY).await;
    }
    assert_eq!(app.fake.count_for("c@example.com", "POST", COMPLETIONS), 1);

    // An invalid replacement changes nothing; a valid one after it applies.
    file.replace(&format!("{}RETRY_COUNT=0\n", accounts_line(&["a"])));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(account_ids(&app).await, ["a@example.com", "c@example.com"]);
    file.replace(&accounts_line(&["c"]));
    poll("the watcher removes a", Duration::from_secs(3), || async {
        account_ids(&app).await == ["c@example.com"]
    })
    .await;
}

#[tokio::test]
async fn a_reload_never_lists_an_account_twice() {
    let fake = FakeQwen::start().await;
    let one = format!("QWEN_COOKIES=token={}\n", fake.add_token("acct1"));
    let file = EnvFile::new(&one);
    let app = TestApp::spawn_with(fake, &[file.var()]).await;
    let resp = app
        .post("/api/addAccount")
        .json(&json!({"cookie": format!("token={}", app.fake.add_token("rt"))}))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"]["accountId"], "account_2", "the first free id");

    file.write(&format!(
        "QWEN_COOKIES=token={},token={}\n",
        app.fake.add_token("acct1-again"),
        app.fake.add_token("acct2")
    ));
    let (status, v) = reload_app(&app).await;
    assert_eq!(status, 200, "{v}");
    let ids = account_ids(&app).await;
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "each id once");
    assert_eq!(app.state.proxy().pool().accounts().len(), unique.len());
}
