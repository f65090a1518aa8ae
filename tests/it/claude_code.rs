//! A session shaped like Claude Code's (as captured from Claude Code 2.1.197): its path, headers
//! and body fields, a system prompt long enough to go upstream as `prompt.txt`, Claude Code's
//! tools with their parameter names and JSON Schema 2020-12 schemas, and several streamed tool
//! rounds, each carrying the whole history, on one sticky account, ending in text.

use crate::common;

use std::fmt::Write as _;

use common::fake_qwen::{Recorded, Reply};
use common::{KEY, TestApp, qwen_sse};
use serde_json::{Value, json};

const SESSION: &str = "9b1e7c1a-5d3e-4f43-9a57-1f0c2d3e4b5a";
const BETAS: &str = "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14,context-management-2025-06-27";
const SCHEMA: &str = "https://json-schema.org/draft/2020-12/schema";

/// Claude Code's tools, with its names, parameter names and JSON Schema 2020-12 schemas
/// (`$schema` included); descriptions shortened.
fn tools() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/claude_code/tools.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A system prompt of Claude Code's size and kind: about 100 KB of instructions.
fn long_system_prompt() -> String {
    let mut text = String::from(
        "You are Claude Code, Anthropic's official CLI for Claude.\n\
         You are an interactive CLI tool that helps users with software engineering tasks.\n",
    );
    let mut i = 0;
    while text.len() < 100_000 {
        i += 1;
        let _ = write!(
            text,
            "\n# Guideline {i}\nWhen a task touches area {i} of the code, read the files first, \
             follow the conventions already in use, prefer editing an existing file to writing \
             a new one, keep the change small, run the tests with the project's own command, \
             and report what changed in one or two sentences. Never commit unless asked.\n"
        );
    }
    text.push_str("\nEND OF SYSTEM PROMPT\n");
    text
}

/// One round's request body, with the whole conversation so far.
fn request(system: &str, messages: &[Value]) -> Value {
    json!({
        "model": "claude-opus-4-8",
        "max_tokens": 64000,
        "stream": true,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": format!(
            "{{\"device_id\":\"4c1f0e\",\"account_uuid\":\"\",\"session_id\":\"{SESSION}\"}}"
        )},
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.3f1; cc_entrypoint=cli; cch=00000;"},
            {"type": "text", "text": system, "cache_control": {"type": "ephemeral"}},
        ],
        "tools": tools(),
        "messages": messages,
    })
}

/// One event of the stream: its name and its JSON.
struct Event {
    name: String,
    data: Value,
}

/// The events of an Anthropic stream; every one must be an `event:` line and a `data:` line
/// whose `type` is the event's name.
fn events(body: &str) -> Vec<Event> {
    body.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|block| {
            let lines: Vec<&str> = block.lines().collect();
            assert_eq!(lines.len(), 2, "{block}");
            let name = lines[0].strip_prefix("event: ").expect(block).to_owned();
            let data: Value =
                serde_json::from_str(lines[1].strip_prefix("data: ").expect(block)).expect(block);
            assert_eq!(data["type"], name.as_str(), "{block}");
            Event { name, data }
        })
        .collect()
}

/// The stream condensed: one entry per event, runs of the same delta kind as one.
fn trace(events: &[Event]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let d = &e.data;
        let entry = match e.name.as_str() {
            "content_block_start" => {
                let b = &d["content_block"];
                match b["type"].as_str().unwrap() {
                    "tool_use" => format!("start tool_use {}", b["name"].as_str().unwrap()),
                    kind => format!("start {kind}"),
                }
            }
            "content_block_delta" => format!("delta {}", d["delta"]["type"].as_str().unwrap()),
            "content_block_stop" => "stop".to_owned(),
            "message_delta" => format!(
                "message_delta {}",
                d["delta"]["stop_reason"].as_str().unwrap()
            ),
            other => other.to_owned(),
        };
        if entry.starts_with("delta") && out.last() == Some(&entry) {
            continue;
        }
        out.push(entry);
    }
    out
}

/// The assistant message the stream built, as Claude Code sends it back: thinking with its
/// signature, text, and `tool_use` blocks with their parsed inputs.
fn assistant_content(events: &[Event]) -> Vec<Value> {
    let mut blocks: Vec<Value> = Vec::new();
    let mut json_parts: Vec<String> = Vec::new();
    for e in events {
        let d = &e.data;
        match e.name.as_str() {
            "content_block_start" => {
                assert_eq!(d["index"], blocks.len(), "blocks are numbered in order");
                blocks.push(d["content_block"].clone());
                json_parts.push(String::new());
            }
            "content_block_delta" => {
                let i = usize::try_from(d["index"].as_u64().unwrap()).unwrap();
                let delta = &d["delta"];
                let b = &mut blocks[i];
                match delta["type"].as_str().unwrap() {
                    "thinking_delta" => append(b, "thinking", &delta["thinking"]),
                    "signature_delta" => b["signature"] = delta["signature"].clone(),
                    "text_delta" => append(b, "text", &delta["text"]),
                    "input_json_delta" => {
                        json_parts[i].push_str(delta["partial_json"].as_str().unwrap());
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            _ => {}
        }
    }
    for (b, json) in blocks.iter_mut().zip(json_parts) {
        if b["type"] == "tool_use" {
            b["input"] = serde_json::from_str(&json).expect("input_json_delta adds up to JSON");
        }
    }
    blocks
}

fn append(block: &mut Value, field: &str, more: &Value) {
    let text = format!(
        "{}{}",
        block[field].as_str().unwrap_or_default(),
        more.as_str().unwrap()
    );
    block[field] = Value::String(text);
}

/// A conversation as Claude Code keeps it: the same system prompt and tools every round, the
/// history growing.
struct Session<'a> {
    app: &'a TestApp,
    system: String,
    messages: Vec<Value>,
}

impl Session<'_> {
    /// Sends the conversation as Claude Code does, checks the stream against `expected`, adds
    /// the answer to the history and returns its content blocks.
    async fn turn(&mut self, expected: &[String]) -> Vec<Value> {
        let resp = self
            .app
            .http
            .post(self.app.url("/v1/messages?beta=true"))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", BETAS)
            .header("X-Claude-Code-Session-Id", SESSION)
            .header("x-app", "cli")
            .header("user-agent", "claude-cli/2.1.197 (external, cli)")
            .json(&request(&self.system, &self.messages))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let evs = events(&resp.text().await.unwrap());
        assert_eq!(trace(&evs), expected);
        let start = &evs[0].data["message"];
        assert!(start["id"].as_str().unwrap().starts_with("msg_"), "{start}");
        assert_eq!(start["model"], "claude-opus-4-8");
        // The system prompt alone is some 25,000 tokens.
        let input = start["usage"]["input_tokens"].as_u64().unwrap();
        assert!(input > 20_000, "{start}");
        let content = assistant_content(&evs);
        self.messages
            .push(json!({"role": "assistant", "content": content}));
        content
    }

    /// The user turn answering `content`'s calls, as Claude Code writes it.
    fn answer(&mut self, content: &[Value], outputs: &[&str]) {
        let uses: Vec<&Value> = content.iter().filter(|b| b["type"] == "tool_use").collect();
        assert_eq!(uses.len(), outputs.len());
        let blocks: Vec<Value> = uses
            .iter()
            .zip(outputs)
            .map(|(u, text)| {
                json!({"type": "tool_result", "tool_use_id": u["id"],
                       "content": [{"type": "text", "text": text}]})
            })
            .collect();
        self.messages
            .push(json!({"role": "user", "content": blocks}));
    }
}

/// The condensed stream of a message with these blocks (`thinking`, `text`, `tool_use NAME`)
/// in Anthropic's order: `message_start`, `ping`, each block's start, deltas (a thinking
/// block's signature last) and stop, `message_delta` with the stop reason, `message_stop`.
fn expected(blocks: &[&str], stop_reason: &str) -> Vec<String> {
    let mut out = vec!["message_start".to_owned(), "ping".to_owned()];
    for b in blocks {
        out.push(format!("start {b}"));
        match *b {
            "thinking" => {
                out.push("delta thinking_delta".to_owned());
                out.push("delta signature_delta".to_owned());
            }
            "text" => out.push("delta text_delta".to_owned()),
            _ => out.push("delta input_json_delta".to_owned()),
        }
        out.push("stop".to_owned());
    }
    out.push(format!("message_delta {stop_reason}"));
    out.push("message_stop".to_owned());
    out
}

/// The `prompt.txt` a round uploaded, and the message that pointed at it.
fn uploaded_prompt(app: &TestApp, before: usize, sent: &Recorded) -> String {
    let objects = app.fake.objects();
    let message = sent.json.as_ref().unwrap()["messages"][0].clone();
    assert!(
        message["content"].as_str().unwrap().contains("prompt.txt"),
        "{message}"
    );
    assert_eq!(message["files"][0]["name"], "prompt.txt", "{message}");
    String::from_utf8(objects[before].bytes.to_vec()).unwrap()
}

/// The name and input of each `tool_use` block.
fn tool_uses(content: &[Value]) -> Vec<(String, Value)> {
    content
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| {
            assert!(b["id"].as_str().unwrap().starts_with("toolu_"), "{b}");
            (b["name"].as_str().unwrap().to_owned(), b["input"].clone())
        })
        .collect()
}

const LIB_RS: &str = "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}";
const GREP_OUT: &str = "src/lib.rs:1:pub fn add(a: i32, b: i32) -> i32 {";
const EDITED: &str = "The file /repo/src/lib.rs has been updated.";
const TEST_OUT: &str = "test tests::adds ... ok\n\ntest result: ok. 1 passed; 0 failed";

/// The model's side of the session: read and grep (after thinking), edit, run the tests,
/// answer. `Read` is a site built-in's name, so the model is told `Read_tool`.
fn push_answers(app: &TestApp) {
    let read = "<q2a:call name=\"Read_tool\">{\"file_path\": \"/repo/src/lib.rs\", \"offset\": 1, \"limit\": 200}</q2a:call>";
    let grep = "<q2a:call name=\"Grep\">\n{\"pattern\": \"fn add\", \"path\": \"/repo\", \"glob\": \"*.rs\", \"output_mode\": \"content\"}\n</q2a:call>";
    let edit = "<q2a:call name=\"Edit\">{\"file_path\": \"/repo/src/lib.rs\", \"old_string\": \"    a - b\", \"new_string\": \"    a + b\", \"replace_all\": false}</q2a:call>";
    let bash = "<q2a:call name=\"Bash\">{\"command\": \"cargo test\", \"timeout\": 120000, \"description\": \"Run the tests\"}</q2a:call>";
    let answers = [
        qwen_sse::thinking_answer(
            &[&["The test fails; look at add."]],
            &["I'll look at the code first. ", read, grep],
        ),
        qwen_sse::fast_answer(&[edit]),
        qwen_sse::fast_answer(&["Now the tests. ", bash]),
        qwen_sse::thinking_answer(
            &[&["They pass."]],
            &[
                "Fixed: `add` subtracted; ",
                "it adds now and the test passes.",
            ],
        ),
    ];
    for a in answers {
        app.fake.push_completion(None, Reply::sse(a));
    }
}

/// The session's four rounds; returns how many objects were uploaded before the last one.
async fn run_session(app: &TestApp) -> usize {
    let tools = tools();
    assert_eq!(tools.as_array().unwrap().len(), 17);
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["input_schema"]["$schema"] == SCHEMA)
    );
    push_answers(app);
    let mut session = Session {
        app,
        system: long_system_prompt(),
        messages: vec![
            json!({"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nThe working directory is /repo.\n</system-reminder>"},
                {"type": "text", "text": "The test in src/lib.rs fails. Fix it."}
            ]}),
            json!({"role": "system", "content": "Mid-conversation note: the user prefers small diffs."}),
        ],
    };

    // Round 1: thinking, text, then two calls, each streamed as input_json_delta.
    let blocks = ["thinking", "text", "tool_use Read", "tool_use Grep"];
    let content = session.turn(&expected(&blocks, "tool_use")).await;
    assert_eq!(content[0]["thinking"], "The test fails; look at add.");
    assert!(
        content[0]["signature"]
            .as_str()
            .unwrap()
            .starts_with("qwen2api.")
    );
    assert_eq!(content[1]["text"], "I'll look at the code first. ");
    assert_eq!(
        tool_uses(&content),
        [
            (
                "Read".to_owned(),
                json!({"file_path": "/repo/src/lib.rs", "offset": 1, "limit": 200})
            ),
            (
                "Grep".to_owned(),
                json!({"pattern": "fn add", "path": "/repo", "glob": "*.rs", "output_mode": "content"})
            ),
        ]
    );
    session.answer(&content, &[LIB_RS, GREP_OUT]);

    // Round 2: an edit.
    let content = session
        .turn(&expected(&["tool_use Edit"], "tool_use"))
        .await;
    assert_eq!(
        tool_uses(&content),
        [(
            "Edit".to_owned(),
            json!({"file_path": "/repo/src/lib.rs", "old_string": "    a - b",
                   "new_string": "    a + b", "replace_all": false})
        )]
    );
    session.answer(&content, &[EDITED]);

    // Round 3: text, then a command.
    let content = session
        .turn(&expected(&["text", "tool_use Bash"], "tool_use"))
        .await;
    assert_eq!(
        tool_uses(&content),
        [(
            "Bash".to_owned(),
            json!({"command": "cargo test", "timeout": 120_000, "description": "Run the tests"})
        )]
    );
    session.answer(&content, &[TEST_OUT]);

    // Round 4: the answer.
    let before = app.fake.objects().len();
    let content = session
        .turn(&expected(&["thinking", "text"], "end_turn"))
        .await;
    assert_eq!(
        content[1]["text"],
        "Fixed: `add` subtracted; it adds now and the test passes."
    );
    before
}

#[tokio::test]
async fn a_claude_code_session_runs_tool_rounds_in_one_upstream_chat_and_ends_in_text() {
    // Three accounts, so that a session spread over them would show.
    let app = TestApp::with_accounts(3, &[("STICKY_ACCOUNTS", "true")]).await;
    app.fake.number_answers();
    run_session(&app).await;
    // One chat: the first round uploads the long prompt, each later one sends only the tool
    // results after the previous answer.
    let sent = app.fake.completions();
    assert_eq!(sent.len(), 4);
    let chat = sent[0].query_param("chat_id");
    let bodies: Vec<Value> = sent.iter().map(|r| r.json.clone().unwrap()).collect();
    let parents: Vec<_> = bodies.iter().map(common::fake_chats::parent_of).collect();
    assert_eq!(
        parents,
        [
            None,
            Some("answer-1".into()),
            Some("answer-2".into()),
            Some("answer-3".into())
        ]
    );
    for r in &sent {
        assert_eq!(r.query_param("chat_id"), chat);
        assert_eq!(r.label, sent[0].label, "sticky session");
    }
    assert_eq!(
        app.fake.objects().len(),
        1,
        "only the first round uploads its prompt"
    );
    let tails: Vec<String> = bodies[1..]
        .iter()
        .map(common::fake_chats::prompt_of)
        .collect();
    assert!(tails[0].contains(&format!("name=\"Read_tool\">\n{LIB_RS}\n</q2a:result>")));
    assert!(tails[0].contains(&format!("name=\"Grep\">\n{GREP_OUT}\n</q2a:result>")));
    assert!(tails[1].contains(&format!("name=\"Edit\">\n{EDITED}\n</q2a:result>")));
    assert!(tails[2].contains(&format!("name=\"Bash\">\n{TEST_OUT}\n</q2a:result>")));
    for t in &tails {
        assert!(t.len() < 1000, "a tail, not the history: {} bytes", t.len());
        assert!(!t.contains("END OF SYSTEM PROMPT"));
    }
    assert_eq!(app.leases(), 0);
}

#[tokio::test]
async fn without_continuation_each_claude_code_round_uploads_the_whole_history() {
    let app = TestApp::with_accounts(
        3,
        &[
            ("STICKY_ACCOUNTS", "true"),
            ("CONVERSATION_CONTINUATION", "false"),
        ],
    )
    .await;
    let before = run_session(&app).await;
    check_upstream(&app, before);
}

/// Four turns upstream, all on the session's account, each prompt uploaded as a file; the last
/// one holds the system prompt, the tools (a built-in name under its alias), the
/// mid-conversation system message and the whole history, without the replayed thinking.
fn check_upstream(app: &TestApp, before: usize) {
    let sent = app.fake.completions();
    assert_eq!(sent.len(), 4);
    let account = sent[0].label.clone().expect("a known account");
    for s in &sent {
        assert_eq!(s.label.as_deref(), Some(account.as_str()), "sticky session");
        let features = &s.json.as_ref().unwrap()["messages"][0]["feature_config"];
        assert_eq!(
            features["thinking_enabled"], true,
            "adaptive thinking is on"
        );
    }
    // The system prompt alone is over PROMPT_FILE_THRESHOLD_KB's default 100 KiB.
    assert_eq!(app.fake.objects().len(), 4);
    let file = uploaded_prompt(app, before, &sent[3]);
    for needle in [
        "x-anthropic-billing-header: cc_version=2.1.197.3f1",
        "You are Claude Code, Anthropic's official CLI for Claude.",
        "END OF SYSTEM PROMPT",
        "Mid-conversation note: the user prefers small diffs.",
        "- Read_tool(file_path: string, limit?: number, offset?: number)",
        "- Edit(file_path: string, new_string: string, old_string: string, replace_all?: boolean)",
        "- Bash(command: string, description?: string, run_in_background?: boolean, timeout?: number)",
        "- TodoWrite(",
        "- ListMcpResourcesTool(",
        "The test in src/lib.rs fails. Fix it.",
        "I'll look at the code first. ",
        "<q2a:call name=\"Read_tool\">\n{\"file_path\":\"/repo/src/lib.rs\",\"limit\":200,\"offset\":1}\n</q2a:call>",
        "<q2a:call name=\"Grep\">\n{\"glob\":\"*.rs\",\"output_mode\":\"content\",\"path\":\"/repo\",\"pattern\":\"fn add\"}\n</q2a:call>",
        "<q2a:call name=\"Edit\">\n{\"file_path\":\"/repo/src/lib.rs\",\"new_string\":\"    a + b\",\"old_string\":\"    a - b\",\"replace_all\":false}\n</q2a:call>",
        "Now the tests. ",
        "<q2a:call name=\"Bash\">\n{\"command\":\"cargo test\",\"description\":\"Run the tests\",\"timeout\":120000}\n</q2a:call>",
        &format!("name=\"Read_tool\">\n{LIB_RS}\n</q2a:result>"),
        &format!("name=\"Grep\">\n{GREP_OUT}\n</q2a:result>"),
        &format!("name=\"Edit\">\n{EDITED}\n</q2a:result>"),
        &format!("name=\"Bash\">\n{TEST_OUT}\n</q2a:result>"),
    ] {
        assert!(file.contains(needle), "{needle:?} not in the prompt file");
    }
    assert!(!file.contains("The test fails; look at add."));
    assert_eq!(app.leases(), 0);
}

/// The session id, not the key, is the sticky key: one key's sessions spread over the
/// accounts, and each session keeps to its own.
#[tokio::test]
async fn sessions_of_one_key_keep_their_own_accounts() {
    let app = TestApp::with_accounts(3, &[("STICKY_ACCOUNTS", "true")]).await;
    app.fake
        .set_default_completion(Reply::sse(qwen_sse::fast_answer(&["Hi."])));
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 512,
                      "messages": [{"role": "user", "content": "hi"}]});
    let mut accounts = std::collections::BTreeSet::new();
    for n in 0..8 {
        let session = format!("5f0c2d3e-0000-4000-8000-00000000000{n}");
        let mut labels = Vec::new();
        for _ in 0..2 {
            let resp = app
                .http
                .post(app.url("/v1/messages?beta=true"))
                .header("x-api-key", KEY)
                .header("anthropic-version", "2023-06-01")
                .header("X-Claude-Code-Session-Id", &session)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["content"][0]["text"], "Hi.", "{v}");
            labels.push(app.fake.completions().pop().unwrap().label.unwrap());
        }
        assert_eq!(labels[0], labels[1], "session {session}");
        accounts.insert(labels[0].clone());
    }
    assert!(accounts.len() > 1, "eight sessions on {accounts:?}");
}
