//! What a newcomer meets in the first hour: the tests ignore the developer's `.env` while the
//! binary reads it; `--help`, `--version` and `healthcheck` say what they do and why they fail;
//! a `.env` line that does not parse is named without its value; liveness and readiness.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::binary::{Server, free_port, read_log};
use common::fake_qwen::FakeQwen;
use common::{KEY, TestApp, body};
use serde_json::Value;

/// A bogus `.env` in the package root (the tests' working directory), where a developer who
/// followed the README keeps theirs. Removed on drop, also when the test fails; a developer's
/// own `.env` already there is left alone (it then serves as the bogus one).
struct RootEnv {
    path: PathBuf,
    ours: bool,
}

impl RootEnv {
    fn place() -> RootEnv {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(
            std::env::current_dir().unwrap().canonicalize().unwrap(),
            root.canonicalize().unwrap(),
            "tests run in the package root, where the default ENV_FILE points"
        );
        let path = root.join(".env");
        let ours = !path.exists();
        if ours {
            std::fs::write(
                &path,
                "# written by tests/newcomer.rs; removed when it ends\n\
                 API_KEY=sk-bogus-from-root-env\n\
                 ACCOUNTS=bogus@example.com:bogus-password\n\
                 QWEN_COOKIES=token=bogus.jwt.token\n\
                 RETRY_COUNT=7\n",
            )
            .unwrap();
        }
        RootEnv { path, ours }
    }
}

impl Drop for RootEnv {
    fn drop(&mut self) {
        if self.ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[tokio::test]
async fn the_test_harness_never_reads_the_env_file_in_the_package_root() {
    let _root = RootEnv::place();
    let app = TestApp::with_accounts(1, &[]).await;
    // Exactly the harness's account: none from the file.
    let ids: Vec<String> = app
        .state
        .proxy()
        .pool()
        .accounts()
        .iter()
        .map(|a| a.id.clone())
        .collect();
    assert_eq!(ids, ["account_1"]);
    assert_eq!(
        app.state.config().pool.retry_count,
        3,
        "RETRY_COUNT default"
    );
    let reloader = app.state.reloader().expect("the harness has a reloader");
    assert!(!reloader.env_file().exists());
    assert_ne!(reloader.env_file(), Path::new(".env"));
    let resp = app.chat(body("qwen3.7-plus", false)).await;
    assert_eq!(resp.status(), 200);
    let bogus = app
        .http
        .get(app.url("/v1/models"))
        .bearer_auth("sk-bogus-from-root-env")
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 401, "the file's API_KEY is not in force");
    app.stop().await;
}

fn run(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qwen2api"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// Multi-threaded: the fake answers the binary's sign-in while this thread waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reads_the_env_file_in_its_working_directory() {
    let fake = FakeQwen::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "API_KEY=sk-from-file\nACCOUNTS=bogus@example.com:wrong-password\nQWEN_BASE_URL={}\n\
             DATA_SAVE_MODE=none\n",
            fake.base_url()
        ),
    )
    .unwrap();
    let server = Server::start(dir.path(), &[]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let health: Value = http
        .get(server.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(
        health["accounts"]["total"], 1,
        "the file's account: {health}"
    );
    assert_eq!(health["accounts"]["usable"], 0, "{health}");
    assert_eq!(health["ready"], false, "{health}");
    let ready = http.get(server.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "not_ready");
    let reason = ready["reason"].as_str().unwrap();
    assert!(reason.contains("1 disabled"), "{reason}");
    let models = http
        .get(server.url("/v1/models"))
        .bearer_auth("sk-from-file")
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200, "the file's API_KEY is in force");

    // `healthcheck` against this server: alive (exit 0, with the reason it is not ready), and
    // not ready with --ready (exit 1, with the reason).
    let port = server.addr.port().to_string();
    let vars = [("SERVICE_PORT", port.as_str())];
    let alive = run(dir.path(), &["healthcheck"], &vars);
    assert!(alive.status.success(), "{}", text(&alive.stderr));
    assert!(
        text(&alive.stderr).contains("alive, but not ready"),
        "{}",
        text(&alive.stderr)
    );
    let not_ready = run(dir.path(), &["healthcheck", "--ready"], &vars);
    assert_eq!(not_ready.status.code(), Some(1));
    assert!(
        text(&not_ready.stderr).contains("503"),
        "{}",
        text(&not_ready.stderr)
    );

    let log = read_log(dir.path());
    assert!(
        log.contains("the e-mail or password was refused"),
        "a wrong password is named as such: {log}"
    );
    assert!(!log.contains("rejected the account's token"), "{log}");
    assert!(!log.contains("wrong-password"), "{log}");
}

#[test]
fn help_and_version_answer_without_starting_a_server() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--help", "-h"] {
        let out = run(dir.path(), &[flag], &[]);
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(help.contains("Usage: qwen2api"), "{help}");
        assert!(help.contains("healthcheck"), "{help}");
        assert!(help.contains("README"), "{help}");
    }
    let out = run(dir.path(), &["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("qwen2api {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(dir.path(), &["--bogus"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--help"),
        "{}",
        text(&out.stderr)
    );
    let out = run(dir.path(), &["srve"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("srve"), "{}", text(&out.stderr));
}

#[test]
fn healthcheck_says_why_it_fails_when_no_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let out = run(
        dir.path(),
        &["healthcheck"],
        &[("SERVICE_PORT", &port), ("API_KEY", KEY)],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("nothing answers"), "{err}");
    assert!(err.contains(&port), "{err}");
}

#[test]
fn a_line_of_the_env_file_that_does_not_parse_is_named_without_its_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "API_KEY=sk-1\nACCOUNTS=alice@example.com:alice-pw-1 bob@example.com:bob-pw-2\n",
    )
    .unwrap();
    let out = run(dir.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("line 2") && err.contains("ACCOUNTS"), "{err}");
    assert!(
        !err.contains("alice-pw-1") && !err.contains("bob-pw-2"),
        "{err}"
    );
}

#[test]
fn accounts_separated_by_semicolons_are_refused_with_how_to_separate_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[],
        &[
            ("API_KEY", KEY),
            ("ACCOUNTS", "a@example.com:pw-a;b@example.com:pw-b"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("ACCOUNTS") && err.contains("comma"), "{err}");
    assert!(!err.contains("pw-a") && !err.contains("pw-b"), "{err}");
}

#[tokio::test]
async fn values_wrapped_in_quotes_as_docker_env_files_keep_them_are_unquoted() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let cookies = format!("\"token={token}\"");
    let app = TestApp::spawn_with(
        fake,
        &[("API_KEY", "'sk-quoted'"), ("QWEN_COOKIES", &cookies)],
    )
    .await;
    let resp = app
        .http
        .get(app.url("/v1/models"))
        .bearer_auth("sk-quoted")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .http
        .post(app.url("/v1/chat/completions"))
        .bearer_auth("sk-quoted")
        .json(&body("qwen3.7-plus", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the unquoted token is sent");
    app.stop().await;
}

#[tokio::test]
async fn health_stays_liveness_and_ready_answers_503_with_the_reason() {
    let app = TestApp::with_accounts(1, &[]).await;
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.fake.revoke("acct1");
    let resp = app.chat(body("qwen3.7-plus", false)).await;
    assert_eq!(resp.status(), 503);
    let health: Value = app
        .http
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["ready"], false);
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let v: Value = ready.json().await.unwrap();
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("1 disabled (token_expired)"),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_any_account_readiness_says_how_to_configure_one() {
    let fake = FakeQwen::start().await;
    let app = TestApp::spawn_with(fake, &[]).await;
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let v: Value = ready.json().await.unwrap();
    assert!(v["reason"].as_str().unwrap().contains("ACCOUNTS"), "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_with_no_env_file_logs_that_it_runs_from_the_environment() {
    let fake = FakeQwen::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = fake.base_url();
    let _server = Server::start(
        dir.path(),
        &[
            ("API_KEY", KEY),
            ("QWEN_BASE_URL", &base),
            ("DATA_SAVE_MODE", "none"),
        ],
    );
    // Logged before the port is bound.
    let log = read_log(dir.path());
    assert!(
        log.contains("configured from the environment alone"),
        "{log}"
    );
}

#[test]
fn the_example_env_file_holds_what_the_readme_uses_and_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example");
    let reloader = qwen2api::reload::Reloader::new(
        [("ENV_FILE".to_owned(), path.to_owned())]
            .into_iter()
            .collect(),
    );
    let config = reloader
        .load()
        .expect(".env.example is a valid configuration");
    assert_eq!(reloader.var("API_KEY").as_deref(), Some("sk-change-me"));
    assert!(
        reloader.var("ADMIN_KEY").is_some(),
        "the admin examples use $ADMIN_KEY"
    );
    assert!(!config.keys.admin_from_first_api_key);
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.lines().any(|l| l == "ACCOUNTS="),
        "an uncommented ACCOUNTS= line to fill in"
    );
    assert!(text.contains("QWEN_BASE_URL"));
    assert!(config.accounts.is_empty());
}
