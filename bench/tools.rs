//! What tool calling costs, in process: the prompt bytes each offered tool adds, and the CPU
//! of reading a streamed answer for calls with 20 tools offered, beside the same answer read
//! without tools. Run by `bench/run`; `--quick` runs few rounds (what CI checks).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use qwen2api::conversation::{AnswerEvent, Finish, TokenUsage, Tool, ToolChoice};
use qwen2api::tools::Plan;
use qwen2api::tools::answer::{Reader, Reading};
use qwen2api::tools::plan::DEFAULT_TEMPLATE;
use serde_json::json;

/// Twenty tools shaped like a coding agent's: a description, two to four parameters with
/// descriptions, an enum here and there.
fn agent_tools() -> Vec<Tool> {
    (0..20)
        .map(|i| Tool {
            name: format!("tool_{i}"),
            description: Some(format!(
                "Does task number {i} in the workspace. Use it when the user asks for task {i}; \
                 it returns the output of the task as text."
            )),
            parameters: Some(json!({
                "type": "object",
                "required": ["path"],
                "properties": {
                    "path": {"type": "string", "description": "Absolute path of the file to work on."},
                    "limit": {"type": "integer", "description": "How many lines at most."},
                    "mode": {"enum": ["fast", "careful"], "description": "How thorough to be."},
                    "flags": {"type": "array", "items": {"type": "string"}}
                }
            })),
            strict: false,
        })
        .collect()
}

/// An answer of 200 text deltas and, with `call`, one call at the end, as the upstream sends
/// them: a few characters at a time.
fn answer(call: bool) -> Vec<AnswerEvent> {
    let mut events: Vec<AnswerEvent> = (0..200)
        .map(|i| AnswerEvent::Text(format!("word{i} ")))
        .collect();
    if call {
        let block =
            "<q2a:call name=\"tool_7\">\n{\"path\": \"/src/main.rs\", \"limit\": 40}\n</q2a:call>";
        for piece in block.as_bytes().chunks(6) {
            events.push(AnswerEvent::Text(
                String::from_utf8_lossy(piece).into_owned(),
            ));
        }
    }
    events.push(AnswerEvent::Usage(TokenUsage::default()));
    events.push(AnswerEvent::Finish(Finish::Stop));
    events
}

/// Mean microseconds per answer over `rounds`.
fn per_answer(rounds: u32, mut one: impl FnMut()) -> f64 {
    for _ in 0..rounds.min(100) {
        one();
    }
    let started = Instant::now();
    for _ in 0..rounds {
        one();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench targets without it,
    // and a benchmark is never a timed test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("tools: benchmark not run in test mode; use bench/run [--quick]");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 200 } else { 20_000 };
    let tools = agent_tools();
    let template: Arc<str> = DEFAULT_TEMPLATE.into();
    let twenty =
        Arc::new(Plan::new(&tools, &ToolChoice::Auto, None, Arc::clone(&template)).unwrap());
    let first = Plan::new(&tools[..1], &ToolChoice::Auto, None, template).unwrap();
    let all = twenty.instructions().len();
    let single = first.instructions().len();
    println!(
        "tools: prompt bytes: {single} with 1 tool, {all} with 20: {} bytes per added tool",
        (all - single) / 19
    );

    let with_call = answer(true);
    let without_call = answer(false);
    let baseline = per_answer(rounds, || {
        for ev in without_call.iter().cloned() {
            black_box(ev);
        }
    });
    let read = per_answer(rounds, || {
        let mut reader = Reader::new(Reading::new(Arc::clone(&twenty), false));
        for ev in with_call.iter().cloned() {
            black_box(reader.read(ev));
        }
    });
    println!(
        "tools: a streamed answer of {} events with 20 tools and one call: {read:.1} µs to read for calls, against {baseline:.1} µs to pass the plain answer on ({rounds} rounds)",
        with_call.len()
    );
}
