//! Upstream bytes per turn of a 20-turn agent session, with and without continuation: the
//! real app (in process) against the tests' fake chat.qwen.ai, through `/v1/chat/completions`
//! with ten tools, a system prompt and a 6 KB tool result per turn, as a coding agent sends
//! them. Every byte of every request body the fake receives during a turn is counted (chats/new,
//! the completion, upload tickets and uploads of a prompt sent as a file, deletions).
//! `cargo bench --bench continuation` (`-- --quick`: 5 turns, what CI checks).

#[path = "../tests/it/common/mod.rs"]
#[expect(
    dead_code,
    reason = "the integration tests' harness, of which this uses the app and the fake"
)]
mod common;

use std::fmt::Write as _;
use std::time::Instant;

use common::TestApp;
use common::fake_qwen::Reply;
use common::qwen_sse;
use serde_json::{Value, json};

const TURNS: usize = 20;
/// The bytes of each tool result the agent sends back.
const RESULT_BYTES: usize = 6 * 1024;

fn tools() -> Value {
    let tools: Vec<Value> = (0..10)
        .map(|i| {
            json!({"type": "function", "function": {
                "name": format!("tool_{i}"),
                "description": format!("Does task {i} in the workspace and returns its output as text."),
                "parameters": {"type": "object", "required": ["path"], "properties": {
                    "path": {"type": "string", "description": "Absolute path of the file."},
                    "limit": {"type": "integer", "description": "How many lines at most."}
                }}
            }})
        })
        .collect();
    json!(tools)
}

/// A tool result of [`RESULT_BYTES`]: numbered source lines.
fn result(turn: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    while out.len() < RESULT_BYTES {
        let _ = writeln!(
            out,
            "{turn:02}:{line:04}: let value_{line} = compute({line});"
        );
        line += 1;
    }
    out.truncate(RESULT_BYTES);
    out
}

struct Turn {
    bytes: usize,
    requests: usize,
    millis: f64,
}

/// One session of `turns` turns; the per-turn figures.
async fn session(continuation: bool, turns: usize) -> Vec<Turn> {
    let flag = if continuation { "true" } else { "false" };
    let app = TestApp::with_accounts(1, &[("CONVERSATION_CONTINUATION", flag)]).await;
    app.fake.number_answers();
    let tools = tools();
    let mut history = vec![
        json!({"role": "system", "content": "You are a careful coding agent. ".repeat(50)}),
        json!({"role": "user", "content": "Find where the values are computed and explain it."}),
    ];
    let mut out = Vec::new();
    for turn in 1..=turns {
        let reply = if turn == turns {
            qwen_sse::fast_answer(&["The values are computed in compute()."])
        } else {
            let call = format!(
                "<q2a:call name=\"tool_{}\">\n{{\"path\": \"/src/file_{turn}.rs\"}}\n</q2a:call>",
                turn % 10
            );
            qwen_sse::fast_answer(&["Reading the next file. ", &call])
        };
        app.fake.push_completion(None, Reply::sse(reply));
        let before = app.fake.requests().len();
        let started = Instant::now();
        let body =
            json!({"model": "qwen3.7-plus", "stream": false, "tools": tools, "messages": history});
        let resp = app.chat(body).await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        let message = v["choices"][0]["message"].clone();
        // Background deletions of this turn's chats land shortly after the answer.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let sent = &app.fake.requests()[before..];
        out.push(Turn {
            bytes: sent.iter().map(|r| r.bytes.len()).sum(),
            requests: sent.len(),
            millis,
        });
        if let Some(id) = message["tool_calls"][0]["id"].as_str() {
            let id = id.to_owned();
            history.push(message);
            history.push(json!({"role": "tool", "tool_call_id": id, "content": result(turn)}));
        }
    }
    app.stop().await;
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let turns = if quick { 5 } else { TURNS };
    let with = session(true, turns).await;
    let without = session(false, turns).await;
    println!(
        "upstream request bytes per turn, {turns}-turn agent session (10 tools, {RESULT_BYTES} B tool results)"
    );
    println!(
        "{:>4} | {:>10} {:>4} {:>8} | {:>10} {:>4} {:>8}",
        "turn", "with B", "req", "ms", "without B", "req", "ms"
    );
    for (i, (w, o)) in with.iter().zip(&without).enumerate() {
        println!(
            "{:>4} | {:>10} {:>4} {:>8.1} | {:>10} {:>4} {:>8.1}",
            i + 1,
            w.bytes,
            w.requests,
            w.millis,
            o.bytes,
            o.requests,
            o.millis
        );
    }
    let total = |t: &[Turn]| t.iter().map(|x| x.bytes).sum::<usize>();
    println!(
        "total | {:>10}           | {:>10}",
        total(&with),
        total(&without)
    );
}
