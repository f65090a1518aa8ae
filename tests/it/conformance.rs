//! The official SDKs, unmodified, against the real server and the fake upstream: the scripts in
//! `conformance/` run in the Python named by `QWEN2API_CONFORMANCE_PYTHON` (`.ci/run` makes a
//! virtual environment with the pinned packages). Without it the tests are skipped with a
//! note, except under `CI=true`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::fake_qwen::{Recorded, Reply};
use common::{KEY, TestApp, qwen_sse};
use serde_json::json;

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
    print!("{}", String::from_utf8_lossy(&out.stdout));
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
        // The later turns continued the first one's upstream chat: the last one sent only the
        // last result, after the previous answer.
        let loop_sent = &sent[before..];
        assert!(
            loop_sent
                .iter()
                .all(|r| r.query_param("chat_id") == loop_sent[0].query_param("chat_id"))
        );
        let last = loop_sent[2].json.clone().unwrap();
        assert!(common::fake_chats::parent_of(&last).is_some());
        let prompt = common::fake_chats::prompt_of(&last);
        assert!(
            prompt.starts_with("<q2a:result call=")
                && prompt.contains("name=\"read_file\">\nfn main() {}\n</q2a:result>"),
            "{prompt}"
        );
        assert!(!prompt.contains("<q2a:call name=\"grep\">"), "{prompt}");
    }
    assert_eq!(app.leases(), 0);
}

/// The text prompt of one upstream request.
fn prompt_of(sent: &Recorded) -> String {
    let body = sent.json.as_ref().expect("a JSON body");
    body["messages"][0]["content"]
        .as_str()
        .expect("a text prompt")
        .to_owned()
}

/// The model's side of the tool loop of `anthropic_messages.py`; the first turn thinks when
/// `thinking` (the streamed loop).
fn push_tool_loop(app: &TestApp, thinking: bool) {
    let weather =
        "<q2a:call name=\"get_weather\">{\"city\": \"Oslo\", \"unit\": \"celsius\"}</q2a:call>";
    let first = if thinking {
        qwen_sse::thinking_answer(&[&["Two tools."]], &["Let me check. ", weather])
    } else {
        qwen_sse::fast_answer(&[weather])
    };
    app.fake.push_completion(None, Reply::sse(first));
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&[
            "<q2a:call name=\"get_time\">\n{\"timezone\": \"Europe/Oslo\"}\n</q2a:call>",
        ])),
    );
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&[
            "Oslo: 12 degrees, ",
            "light rain, 14:05.",
        ])),
    );
}

#[tokio::test]
async fn openai_sdk_responses_create_stream_tool_loops_custom_tool_and_stored() {
    let Some(python) = python() else {
        return;
    };
    let app = TestApp::with_accounts(1, &[]).await;
    let call = [
        "I'll look. ",
        "<q2a:call name=\"shell\">{\"command\": [\"ls\"]}</q2a:call>",
    ];
    let answers: Vec<String> = vec![
        qwen_sse::fast_answer(&["Hi", "!"]),
        qwen_sse::thinking_answer(&[&["Think."]], &["Hel", "lo"]),
        qwen_sse::fast_answer(&call),
        qwen_sse::fast_answer(&["Two files."]),
        qwen_sse::fast_answer(&call),
        qwen_sse::fast_answer(&["Two files."]),
        qwen_sse::fast_answer(&[
            "<q2a:call name=\"apply_patch\">{\"input\": \"*** Begin Patch\\n*** End Patch\"}</q2a:call>",
        ]),
    ];
    let n = answers.len();
    for a in answers {
        app.fake.push_completion(None, Reply::sse(a));
    }
    run(&python, "openai_responses.py", &app, &[]).await;
    assert_eq!(app.fake.completions().len(), n);
}

#[tokio::test]
async fn anthropic_sdk_create_stream_thinking_tool_loops_and_count_tokens() {
    let Some(python) = python() else {
        return;
    };
    let app = TestApp::with_accounts(1, &[]).await;
    let answers: [String; 4] = [
        qwen_sse::fast_answer(&["Hello ", "from Qwen."]),
        qwen_sse::fast_answer(&["Hello ", "again."]),
        qwen_sse::fast_answer(&["One, ", "two, ", "three."]),
        qwen_sse::thinking_answer(
            &[
                &["Light scatters."],
                &["Light scatters.", "Blue scatters most."],
            ],
            &["Rayleigh ", "scattering."],
        ),
    ];
    for a in answers {
        app.fake.push_completion(None, Reply::sse(a));
    }
    push_tool_loop(&app, false);
    push_tool_loop(&app, true);
    run(
        &python,
        "anthropic_messages.py",
        &app,
        &[("PART", "messages")],
    )
    .await;

    // Two creates, two streams, two loops of three turns; count_tokens and the refused key
    // reach no upstream.
    let sent = app.fake.completions();
    assert_eq!(sent.len(), 10);
    let features =
        |i: usize| sent[i].json.as_ref().unwrap()["messages"][0]["feature_config"].clone();
    assert_eq!(features(0)["thinking_enabled"], false);
    assert_eq!(features(3)["thinking_enabled"], true);
    assert_eq!(features(3)["thinking_budget"], 1024);
    assert_eq!(features(7)["thinking_budget"], 1024);
    // The last turn of each loop continued the loop's upstream chat with only the last result;
    // the replayed thinking block (signature and all) was accepted and not sent up.
    for (first, last) in [(&sent[4], &sent[6]), (&sent[7], &sent[9])] {
        assert_eq!(first.query_param("chat_id"), last.query_param("chat_id"));
        assert!(common::fake_chats::parent_of(last.json.as_ref().unwrap()).is_some());
        let prompt = prompt_of(last);
        assert!(
            prompt.starts_with("<q2a:result call=")
                && prompt.contains("name=\"get_time\">\n14:05\n</q2a:result>"),
            "{prompt}"
        );
        assert!(!prompt.contains("get_weather"), "{prompt}");
        assert!(!prompt.contains("Two tools."), "{prompt}");
    }
    assert_eq!(app.leases(), 0);
}

#[tokio::test]
async fn anthropic_sdk_raises_rate_limit_error_for_429() {
    let Some(python) = python() else {
        return;
    };
    let app = TestApp::with_accounts(1, &[]).await;
    let limited = json!({"success": false, "data": {"code": "RateLimited", "num": 2,
        "details": "You have reached the upper limit for today's usage."}});
    app.fake.push_completion(None, Reply::json(200, limited));
    run(
        &python,
        "anthropic_messages.py",
        &app,
        &[("PART", "rate_limit")],
    )
    .await;
    assert_eq!(app.fake.completions().len(), 1);
    assert_eq!(app.leases(), 0);
}

/// The issue names `anthropic.InternalServerError` for 529; SDK 2.17 raises its subclass
/// `anthropic.OverloadedError` (status 529), which the script asserts exactly.
#[tokio::test]
async fn anthropic_sdk_raises_overloaded_error_for_529() {
    let Some(python) = python() else {
        return;
    };
    let app = TestApp::with_accounts(1, &[]).await;
    // A challenge from the site's firewall, for the whole answer and for the stream.
    let challenge =
        json!({"ret": ["FAIL_SYS_USER_VALIDATE::哎哟喂,被挤爆啦,请稍后重试"], "success": false});
    for _ in 0..2 {
        app.fake
            .push_completion(None, Reply::json(200, challenge.clone()));
    }
    let env = [("PART", "overloaded"), ("EXPECT", "WAF/captcha challenge")];
    run(&python, "anthropic_messages.py", &app, &env).await;
    assert_eq!(app.fake.completions().len(), 2);
    // No usable account: the only one's token is revoked.
    app.fake.revoke("acct1");
    let env = [
        ("PART", "overloaded"),
        ("EXPECT", "No Qwen account is usable"),
    ];
    run(&python, "anthropic_messages.py", &app, &env).await;
    assert_eq!(app.fake.completions().len(), 2);
    assert_eq!(app.leases(), 0);
}

/// `GET /openapi.json` (and the same under `API_PREFIX`) passes openapi-spec-validator, a
/// validator that shares no code with utoipa.
#[tokio::test]
async fn openapi_document_passes_an_independent_validator() {
    let Some(python) = python() else {
        return;
    };
    for (prefix, vars) in [("", &[][..]), ("/qwen", &[("API_PREFIX", "/qwen")][..])] {
        let app = TestApp::with_accounts(1, vars).await;
        let url = app.url(&format!("{prefix}/openapi.json"));
        run(
            &python,
            "openapi_validate.py",
            &app,
            &[("QWEN2API_OPENAPI_URL", &url)],
        )
        .await;
        app.stop().await;
    }
}
