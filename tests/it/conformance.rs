//! The official SDKs, unmodified, against the real server and the fake upstream: the scripts in
//! `conformance/` run in the Python named by `QWEN2API_CONFORMANCE_PYTHON` (`.ci/run` makes a
//! virtual environment with the pinned packages). Without it the tests are skipped with a
//! note, except under `CI=true`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::fake_qwen::Reply;
use common::{KEY, TestApp, qwen_sse};

/// The Python to run the scripts with, or `None` (after a note) when there is none here.
fn python() -> Option<String> {
    match std::env::var("QWEN2API_CONFORMANCE_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true requires the conformance tests: set QWEN2API_CONFORMANCE_PYTHON"
            );
            eprintln!(
                "note: QWEN2API_CONFORMANCE_PYTHON is not set; skipping the SDK conformance tests"
            );
            None
        }
    }
}

/// Runs `conformance/<script>` against `app` with `env`; panics with its output on failure.
async fn run(python: &str, script: &str, app: &TestApp, env: &[(&str, &str)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conformance")
        .join(script);
    let base = app.url("/v1");
    let mut cmd = Command::new(python);
    cmd.arg(&path)
        .env("QWEN2API_BASE_URL", &base)
        .env("QWEN2API_KEY", KEY)
        .env("NO_PROXY", "127.0.0.1,localhost");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("the conformance Python runs");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn openai_sdk_agent_loop_with_tools_streamed_and_not() {
    let Some(python) = python() else {
        return;
    };
    let app = TestApp::with_accounts(1, &[]).await;
    for stream in ["0", "1"] {
        // The model's side: a search, a read, then the answer.
        let turns: [&[&str]; 3] = [
            &[
                "I will search. ",
                "<q2a:call name=\"grep\">{\"pattern\": \"fn main\"}</q2a:call>",
            ],
            &["<q2a:call name=\"read_file\">\n{\"path\": \"src/main.rs\"}\n</q2a:call>"],
            &["It is in ", "src/main.rs."],
        ];
        for t in turns {
            app.fake
                .push_completion(None, Reply::sse(qwen_sse::fast_answer(t)));
        }
        let before = app.fake.completions().len();
        run(&python, "openai_agent_loop.py", &app, &[("STREAM", stream)]).await;
        let sent = app.fake.completions();
        assert_eq!(sent.len(), before + 3, "three turns");
        // The last turn carried both calls and both results, in the call syntax.
        let last = sent.last().unwrap().json.clone().unwrap();
        let prompt = last["messages"][0]["content"].as_str().unwrap();
        assert!(
            prompt.contains("<q2a:call name=\"grep\">\n{\"pattern\":\"fn main\"}\n</q2a:call>"),
            "{prompt}"
        );
        assert!(
            prompt.contains("name=\"read_file\">\nfn main() {}\n</q2a:result>"),
            "{prompt}"
        );
    }
    assert_eq!(app.leases(), 0);
}
