//! A session shaped like Codex CLI's (`wire_api = "responses"`, as described in issue 21 from
//! Codex CLI 0.171): `store: false`, streamed, `include: ["reasoning.encrypted_content"]`,
//! `reasoning.summary: "auto"`, `session-id` / `thread-id` headers, developer and user
//! messages, a `function` shell tool, the freeform `apply_patch` tool, `web_search` and a
//! `namespace` of tools, about 41 KB for a one-line prompt. Each turn sends the whole history
//! back (reasoning with its `encrypted_content`, calls with their namespace, outputs), on one
//! sticky account.

use crate::common;

use std::fmt::Write as _;

use common::fake_qwen::Reply;
use common::{KEY, TestApp, qwen_sse};
use serde_json::{Value, json};

const SESSION: &str = "0199f3c2-7a51-7d02-9f4e-2b1c3d4e5f60";
const MODEL: &str = "qwen3.8-max-thinking";

fn tools() -> Value {
    json!([
        {"type": "function", "name": "shell", "strict": false,
         "description": "Runs a shell command and returns its output.",
         "parameters": {"type": "object", "additionalProperties": false, "required": ["command"],
                        "properties": {"command": {"type": "array", "items": {"type": "string"}},
                                       "workdir": {"type": "string"},
                                       "timeout_ms": {"type": "number"}}}},
        {"type": "function", "name": "update_plan", "strict": false,
         "description": "Updates the task plan.",
         "parameters": {"type": "object", "required": ["plan"],
                        "properties": {"explanation": {"type": "string"},
                                       "plan": {"type": "array", "items": {"type": "object",
                                                "properties": {"step": {"type": "string"}, "status": {"type": "string"}},
                                                "required": ["step", "status"]}}}}},
        {"type": "custom", "name": "apply_patch",
         "description": "Use the `apply_patch` tool to edit files.",
         "format": {"type": "grammar", "syntax": "lark",
                    "definition": "start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\nend_patch: \"*** End Patch\" LF?"}},
        {"type": "web_search", "external_web_access": false},
        {"type": "namespace", "name": "mcp__github", "description": "GitHub tools.",
         "tools": [{"type": "function", "name": "search_issues", "description": "Searches issues.",
                    "parameters": {"type": "object", "required": ["query"],
                                   "properties": {"query": {"type": "string"}}}}]},
    ])
}

/// Instructions of Codex's size and kind (about 39 KB).
fn instructions() -> String {
    let mut text = String::from("You are Codex, a coding agent running in a terminal.\n");
    let mut i = 0;
    while text.len() < 39_000 {
        i += 1;
        let _ = write!(
            text,
            "\n## Practice {i}\nBefore changing area {i}, read the relevant files, plan the \
             change with update_plan, edit with apply_patch, run the project's tests with \
             shell, and summarise what changed. Keep the diff minimal.\n"
        );
    }
    text
}

struct Session<'a> {
    app: &'a TestApp,
    instructions: String,
    input: Vec<Value>,
}

impl Session<'_> {
    /// One turn: the whole input so far; the output items are added to it.
    async fn turn(&mut self) -> Vec<Value> {
        let body = json!({
            "model": MODEL, "instructions": self.instructions, "input": self.input,
            "tools": tools(), "tool_choice": "auto", "parallel_tool_calls": true,
            "reasoning": {"effort": "medium", "summary": "auto"}, "store": false, "stream": true,
            "include": ["reasoning.encrypted_content"], "prompt_cache_key": SESSION,
            "client_metadata": {"x-codex-turn": "1"},
        });
        let resp = self
            .app
            .http
            .post(self.app.url("/v1/responses"))
            .bearer_auth(KEY)
            .header("session-id", SESSION)
            .header("thread-id", SESSION)
            .header("originator", "codex_cli_rs")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("x-qwen2api-warning").is_none());
        let text = resp.text().await.unwrap();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter_map(|b| b.split_once("\ndata: ").map(|(_, d)| d))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.completed", "{text}");
        let output: Vec<Value> = events
            .iter()
            .filter(|e| e["type"] == "response.output_item.done")
            .map(|e| e["item"].clone())
            .collect();
        assert_eq!(last["response"]["output"], json!(output));
        self.input.extend(output.iter().cloned());
        output
    }
}

/// Runs the three turns: a namespaced call, a freeform patch, the answer. Returns the calls' ids.
async fn session(app: &TestApp) -> (String, String) {
    let answers = [
        qwen_sse::thinking_answer(
            &[&["Look for the issue first."]],
            &[
                "<q2a:call name=\"mcp__github.search_issues\">{\"query\": \"flaky test\"}</q2a:call>",
            ],
        ),
        qwen_sse::thinking_answer(
            &[&["Patch the test."]],
            &[
                "<q2a:call name=\"apply_patch\">{\"input\": \"*** Begin Patch\\n*** Update File: t.rs\\n-a\\n+b\\n*** End Patch\\n\"}</q2a:call>",
            ],
        ),
        qwen_sse::thinking_answer(&[&["Done."]], &["Fixed the flaky test."]),
    ];
    for a in answers {
        app.fake.push_completion(None, Reply::sse(a));
    }
    let mut s = Session {
        app,
        instructions: instructions(),
        input: vec![
            json!({"type": "message", "role": "developer", "content": [
                {"type": "input_text", "text": "<permissions instructions>sandbox: workspace-write</permissions instructions>"}]}),
            json!({"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "<environment_context><cwd>/repo</cwd></environment_context>"}]}),
            json!({"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Fix the flaky test."}]}),
        ],
    };
    let size = serde_json::to_vec(
        &json!({"instructions": s.instructions, "input": s.input, "tools": tools()}),
    )
    .unwrap()
    .len();
    assert!((38_000..48_000).contains(&size), "{size}");

    // Turn 1: reasoning (summary and envelope), then a call in a namespace.
    let out = s.turn().await;
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["type"], "reasoning");
    assert_eq!(out[0]["summary"][0]["text"], "Look for the issue first.");
    assert!(
        out[0]["encrypted_content"]
            .as_str()
            .unwrap()
            .starts_with("qwen2api.r1.")
    );
    assert_eq!(out[1]["type"], "function_call");
    assert_eq!(
        (out[1]["name"].as_str(), out[1]["namespace"].as_str()),
        (Some("search_issues"), Some("mcp__github"))
    );
    assert_eq!(out[1]["arguments"], r#"{"query":"flaky test"}"#);
    let call_1 = out[1]["call_id"].as_str().unwrap().to_owned();
    s.input.push(
        json!({"type": "function_call_output", "call_id": call_1, "output": "#12 flaky: t.rs"}),
    );

    // Turn 2: the freeform patch.
    let out = s.turn().await;
    assert_eq!(out[1]["type"], "custom_tool_call");
    assert_eq!(
        out[1]["input"],
        "*** Begin Patch\n*** Update File: t.rs\n-a\n+b\n*** End Patch\n"
    );
    let call_2 = out[1]["call_id"].as_str().unwrap().to_owned();
    s.input
        .push(json!({"type": "custom_tool_call_output", "call_id": call_2, "output": "Success."}));

    // Turn 3: the answer.
    let out = s.turn().await;
    assert_eq!(out[1]["content"][0]["text"], "Fixed the flaky test.");

    (call_1, call_2)
}

/// The completions the fake received, all on one account.
fn sent_on_one_account(app: &TestApp) -> Vec<common::fake_qwen::Recorded> {
    let sent = app.fake.completions();
    assert_eq!(sent.len(), 3);
    let labels: Vec<_> = sent.iter().map(|r| r.label.clone()).collect();
    assert!(
        labels.iter().all(|l| l.is_some() && *l == labels[0]),
        "{labels:?}"
    );
    sent
}

/// The syntax reminder that ends each prompt.
const REMINDER: &str = "\n\n(Answer in plain text, or call tools with <q2a:call name=\"…\"> blocks as described above.)";

#[tokio::test]
async fn a_codex_session_continues_one_upstream_chat_sending_only_each_new_tail() {
    let app = TestApp::with_accounts(3, &[("STICKY_ACCOUNTS", "true")]).await;
    app.fake.number_answers();
    let (call_1, call_2) = session(&app).await;
    let sent = sent_on_one_account(&app);
    let chats: Vec<_> = sent.iter().map(|r| r.query_param("chat_id")).collect();
    assert!(
        chats.iter().all(|c| c.is_some() && *c == chats[0]),
        "{chats:?}"
    );
    let bodies: Vec<Value> = sent.iter().map(|r| r.json.clone().unwrap()).collect();
    let parents: Vec<_> = bodies.iter().map(common::fake_chats::parent_of).collect();
    assert_eq!(
        parents,
        [
            None,
            Some("answer-1".to_owned()),
            Some("answer-2".to_owned())
        ]
    );
    let first = prompt_of(&bodies[0]);
    assert!(first.contains("- mcp__github.search_issues(query: string): Searches issues."));
    assert!(first.contains("user:Fix the flaky test."));
    assert_eq!(
        prompt_of(&bodies[1]),
        format!(
            "<q2a:result call=\"{call_1}\" name=\"mcp__github.search_issues\">\n#12 flaky: t.rs\n</q2a:result>{REMINDER}"
        )
    );
    assert_eq!(
        prompt_of(&bodies[2]),
        format!(
            "<q2a:result call=\"{call_2}\" name=\"apply_patch\">\nSuccess.\n</q2a:result>{REMINDER}"
        )
    );
}

#[tokio::test]
async fn without_continuation_each_codex_turn_sends_the_whole_history() {
    let app = TestApp::with_accounts(
        3,
        &[
            ("STICKY_ACCOUNTS", "true"),
            ("CONVERSATION_CONTINUATION", "false"),
        ],
    )
    .await;
    let (call_1, call_2) = session(&app).await;
    // The history in the call syntax, the namespaced tool under its flat name, the freeform
    // input as the `input` argument.
    let sent = sent_on_one_account(&app);
    let last = sent.last().unwrap().json.clone().unwrap();
    let fc = &last["messages"][0]["feature_config"];
    assert_eq!(fc["thinking_enabled"], true);
    // `external_web_access: false`: no live search.
    assert_eq!(last["messages"][0]["chat_type"], "t2t");
    let prompt = prompt_of(&last);
    for needle in [
        "- mcp__github.search_issues(query: string): Searches issues.",
        "<q2a:call name=\"mcp__github.search_issues\">\n{\"query\":\"flaky test\"}\n</q2a:call>",
        &format!(
            "<q2a:result call=\"{call_1}\" name=\"mcp__github.search_issues\">\n#12 flaky: t.rs\n</q2a:result>"
        ),
        "<q2a:call name=\"apply_patch\">\n{\"input\":\"*** Begin Patch\\n*** Update File: t.rs\\n-a\\n+b\\n*** End Patch\\n\"}\n</q2a:call>",
        &format!("<q2a:result call=\"{call_2}\" name=\"apply_patch\">\nSuccess.\n</q2a:result>"),
        "user:Fix the flaky test.",
    ] {
        assert!(prompt.contains(needle), "{needle:?} not in the prompt");
    }
    assert!(
        !prompt.contains("Look for the issue first."),
        "reasoning is not sent upstream"
    );
}

/// The prompt as sent: under `PROMPT_FILE_THRESHOLD_KB`, the message itself.
fn prompt_of(body: &Value) -> String {
    assert_eq!(body["messages"][0]["files"], json!([]));
    body["messages"][0]["content"].as_str().unwrap().to_owned()
}
