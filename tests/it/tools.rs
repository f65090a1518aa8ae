//! Tool calling end to end against the fake: what the model is told (every tool and parameter,
//! built-in names aliased, history in the call syntax), and calls read out of its answer,
//! streamed and not, whatever way the upstream body is cut.

use crate::common;

use common::fake_qwen::{Reply, Split};
use common::{TestApp, qwen_sse, sse_json};
use serde_json::{Value, json};

const MODEL: &str = "qwen3.7-plus";

fn tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "read",
            "description": "Reads a file.",
            "parameters": {"type": "object", "required": ["path"], "properties": {
                "path": {"type": "string", "description": "Absolute path."},
                "limit": {"type": "integer"}
            }}
        }},
        {"type": "function", "function": {
            "name": "grep",
            "description": "Searches files.",
            "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}}}
        }}
    ])
}

fn request(stream: bool, messages: &Value) -> Value {
    json!({"model": MODEL, "stream": stream, "tools": tools(), "messages": messages})
}

fn ask(stream: bool) -> Value {
    request(
        stream,
        &json!([{"role": "user", "content": "Show me a.rs"}]),
    )
}

/// The model's answer: text, then a call of `read` (as the model was told to name it).
const ANSWER: [&str; 3] = [
    "Let me read it. ",
    "<q2a:call name=\"read_tool\">\n{\"path\": ",
    "\"/src/a.rs\", 'limit': 10,}\n</q2a:call>",
];

/// The one message the fake received.
fn prompt(app: &TestApp) -> String {
    let sent = app.fake.completions().pop().expect("a completion");
    let body = sent.json.expect("a JSON body");
    body["messages"][0]["content"]
        .as_str()
        .expect("a text prompt")
        .to_owned()
}

#[tokio::test]
async fn a_call_streams_as_tool_call_chunks_however_the_upstream_body_is_cut() {
    let app = TestApp::with_accounts(1, &[]).await;
    for split in [Split::Whole, Split::Every(1), Split::Odd, Split::AtEvents] {
        app.fake
            .push_completion(None, Reply::sse_with(qwen_sse::fast_answer(&ANSWER), split));
        let resp = app.chat(ask(true)).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let chunks = sse_json(&text);
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "Let me read it. ", "{split:?}");
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        // The header, then the arguments.
        assert_eq!(calls.len(), 2, "{split:?}: {text}");
        let id = calls[0]["id"].as_str().unwrap();
        assert!(id.starts_with("call_") && id.len() == 29, "{id}");
        assert_eq!(
            calls[0],
            &json!({"index": 0, "id": id, "type": "function", "function": {"name": "read", "arguments": ""}})
        );
        assert_eq!(
            calls[1],
            &json!({"index": 0, "function": {"arguments": "{\"limit\":10,\"path\":\"/src/a.rs\"}"}})
        );
        let finishes: Vec<&str> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(finishes, ["tool_calls"], "{split:?}");
    }
}

#[tokio::test]
async fn a_whole_answer_has_its_calls_in_the_message() {
    let app = TestApp::with_accounts(1, &[]).await;
    let two = [
        "<q2a:call name=\"grep\">{\"pattern\": \"fn main\"}</q2a:call>\n",
        "<tool_call>{\"name\": \"read_tool\", \"arguments\": \"{\\\"path\\\": \\\"/b\\\"}\"}</tool_call>",
    ];
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&two)));
    let v: Value = app.chat(ask(false)).await.json().await.unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let message = &choice["message"];
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{v}");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "grep");
    assert_eq!(
        calls[0]["function"]["arguments"],
        r#"{"pattern":"fn main"}"#
    );
    assert_eq!(calls[1]["function"]["name"], "read");
    assert_eq!(calls[1]["function"]["arguments"], r#"{"path":"/b"}"#);
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    // Only a newline between the two blocks was text: no content.
    assert!(message["content"].is_null(), "{v}");
}

#[tokio::test]
async fn every_tool_and_parameter_reaches_the_model_and_built_in_names_are_aliased() {
    let app = TestApp::with_accounts(1, &[]).await;
    let resp = app.chat(ask(false)).await;
    assert_eq!(resp.status(), 200);
    let prompt = prompt(&app);
    assert!(
        prompt.contains(
            "- read_tool(limit?: integer, path: string): Reads a file.\n    path: Absolute path.\n"
        ),
        "{prompt}"
    );
    assert!(
        prompt.contains("- grep(pattern?: string): Searches files.\n"),
        "{prompt}"
    );
    assert!(!prompt.contains("- read("), "{prompt}");
    assert!(prompt.contains("<q2a:call name=\"TOOL_NAME\">"), "{prompt}");
    assert!(prompt.starts_with("system:You can call tools."), "{prompt}");
    assert!(
        prompt.ends_with("user:Show me a.rs\n\n(Answer in plain text, or call tools with <q2a:call name=\"…\"> blocks as described above.)"),
        "{prompt}"
    );
    // No native tool switch is sent: the site would try to run the calls itself.
    let sent = app.fake.completions().pop().unwrap().json.unwrap();
    assert!(sent.get("tools").is_none(), "{sent}");
    let fc = &sent["messages"][0]["feature_config"];
    assert_ne!(fc["function_calling"], true, "{fc}");
}

#[tokio::test]
async fn history_is_written_in_the_call_syntax_under_the_prompted_names() {
    let app = TestApp::with_accounts(1, &[]).await;
    let messages = json!([
        {"role": "user", "content": "Show me a.rs"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"/a.rs\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "name": "read", "content": "fn main() {}"},
    ]);
    let resp = app.chat(request(false, &messages)).await;
    assert_eq!(resp.status(), 200);
    let prompt = prompt(&app);
    assert!(
        prompt.contains(
            ";assistant:<q2a:call name=\"read_tool\">\n{\"path\":\"/a.rs\"}\n</q2a:call>;"
        ),
        "{prompt}"
    );
    assert!(
        prompt.contains(";tool:<q2a:result call=\"call_1\" name=\"read_tool\">\nfn main() {}\n</q2a:result>\n\n(Answer"),
        "{prompt}"
    );
}

#[tokio::test]
async fn with_tool_choice_none_nothing_is_offered_and_call_syntax_is_text() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&ANSWER)));
    let mut req = ask(false);
    req["tool_choice"] = json!("none");
    let v: Value = app.chat(req).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], ANSWER.concat());
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{v}"
    );
    assert_eq!(prompt(&app), "Show me a.rs");
}

#[tokio::test]
async fn a_named_tool_is_the_only_one_offered_and_one_call_is_kept_without_parallel_calls() {
    let app = TestApp::with_accounts(1, &[]).await;
    let two = [
        "<q2a:call name=\"grep\">{\"pattern\": \"a\"}</q2a:call>",
        "<q2a:call name=\"grep\">{\"pattern\": \"b\"}</q2a:call>",
    ];
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&two)));
    let mut req = ask(false);
    req["tool_choice"] = json!({"type": "function", "function": {"name": "grep"}});
    req["parallel_tool_calls"] = json!(false);
    let v: Value = app.chat(req).await.json().await.unwrap();
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"pattern":"a"}"#);
    assert!(v["choices"][0]["message"]["content"].is_null(), "{v}");
    let prompt = prompt(&app);
    assert!(prompt.contains("- grep("), "{prompt}");
    assert!(!prompt.contains("read_tool("), "{prompt}");
    assert!(prompt.contains("must contain a tool call"), "{prompt}");
    assert!(prompt.contains("at most one call"), "{prompt}");
}

#[tokio::test]
async fn a_long_agent_prompt_goes_up_as_a_file_with_the_tools_in_it() {
    let app = TestApp::with_accounts(1, &[("PROMPT_FILE_THRESHOLD_KB", "1")]).await;
    let long = "x".repeat(1500);
    let messages = json!([
        {"role": "user", "content": long},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "grep", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "no match"},
    ]);
    let resp = app.chat(request(false, &messages)).await;
    assert_eq!(resp.status(), 200);
    let file = app
        .fake
        .objects()
        .pop()
        .expect("the prompt went up as a file");
    let file = String::from_utf8(file.bytes.to_vec()).unwrap();
    assert!(file.starts_with("system:You can call tools."), "{file}");
    assert!(
        file.contains("- read_tool(limit?: integer, path: string)"),
        "{file}"
    );
    assert!(
        file.contains("<q2a:call name=\"grep\">\n{}\n</q2a:call>"),
        "{file}"
    );
    assert!(
        file.contains("<q2a:result call=\"call_1\" name=\"grep\">\nno match\n</q2a:result>"),
        "{file}"
    );
    let message = prompt(&app);
    assert!(message.contains("prompt.txt"), "{message}");
    assert!(
        message.ends_with("blocks as described above.)"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// The corrective round

fn streamed_calls(chunks: &[Value]) -> Vec<Value> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .cloned()
        .collect()
}

fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// The model falls short with `first`, is asked again, and calls `grep` properly.
async fn asked_again_after(first: &[&str], correction: &str) {
    let app = TestApp::with_accounts(1, &[]).await;
    let good = ["<q2a:call name=\"grep\">{\"pattern\": \"x\"}</q2a:call>"];
    for stream in [false, true] {
        app.fake
            .push_completion(None, Reply::sse(qwen_sse::fast_answer(first)));
        app.fake
            .push_completion(None, Reply::sse(qwen_sse::fast_answer(&good)));
        let before = app.fake.completions().len();
        let resp = app.chat(ask(stream)).await;
        assert_eq!(resp.status(), 200);
        let (text, calls, finish) = if stream {
            let body = resp.text().await.unwrap();
            let chunks = sse_json(&body);
            let finish = chunks
                .iter()
                .find_map(|c| c["choices"][0]["finish_reason"].as_str())
                .map(str::to_owned);
            (streamed_text(&chunks), streamed_calls(&chunks), finish)
        } else {
            let v: Value = resp.json().await.unwrap();
            // Both rounds are counted.
            assert_eq!(
                v["usage"]["prompt_tokens"],
                2 * qwen_sse::INPUT_TOKENS,
                "{v}"
            );
            assert_eq!(v["usage"]["completion_tokens"], first.len() + 1, "{v}");
            let m = &v["choices"][0]["message"];
            (
                m["content"].as_str().unwrap_or_default().to_owned(),
                m["tool_calls"].as_array().cloned().unwrap_or_default(),
                v["choices"][0]["finish_reason"].as_str().map(str::to_owned),
            )
        };
        assert_eq!(app.fake.completions().len(), before + 2, "asked once more");
        assert_eq!(finish.as_deref(), Some("tool_calls"));
        assert_eq!(calls[0]["function"]["name"], "grep", "{calls:?}");
        // What fell short never reached the client.
        assert!(
            !text.contains("q2a") && !text.contains("does not"),
            "{text}"
        );
        let second = prompt(&app);
        let answer = first.concat();
        let expected = format!(";assistant:{};user:{correction}", answer.trim());
        assert!(second.contains(&expected), "{second}");
        assert!(second.starts_with("system:You can call tools."), "{second}");
    }
}

#[tokio::test]
async fn an_unreadable_call_is_asked_for_again() {
    asked_again_after(
        &["Checking. <q2a:call name=\"grep\">{\"pattern\": </q2a:call>"],
        "Your tool call could not be read.",
    )
    .await;
}

#[tokio::test]
async fn the_sites_refusal_of_a_call_is_asked_for_again() {
    asked_again_after(
        &["Tool read does not exists."],
        "Your tool call was not received",
    )
    .await;
}

#[tokio::test]
async fn a_required_call_that_never_comes_is_an_error_and_its_text_is_never_shown() {
    let app = TestApp::with_accounts(1, &[]).await;
    for stream in [false, true] {
        for _ in 0..2 {
            app.fake.push_completion(
                None,
                Reply::sse(qwen_sse::fast_answer(&["I would rather chat."])),
            );
        }
        let mut req = ask(stream);
        req["tool_choice"] = json!("required");
        let resp = app.chat(req).await;
        if stream {
            assert_eq!(resp.status(), 200);
            let body = resp.text().await.unwrap();
            assert!(!body.contains("rather chat"), "{body}");
            assert!(body.contains("\"code\":\"tool_call_missing\""), "{body}");
            assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
        } else {
            assert_eq!(resp.status(), 502);
            let v: Value = resp.json().await.unwrap();
            common::assert_error_envelope(&v, "server_error", "tool_call_missing");
        }
        let second = prompt(&app);
        assert!(
            second.contains(";assistant:I would rather chat.;user:This answer must call a tool."),
            "{second}"
        );
    }
    assert_eq!(app.fake.completions().len(), 4);
    assert_eq!(app.leases(), 0);
}

#[tokio::test]
async fn arguments_that_do_not_fit_are_asked_for_again_and_slips_are_coerced() {
    let app = TestApp::with_accounts(1, &[]).await;
    let bad = ["<q2a:call name=\"read_tool\">{\"limit\": \"many\"}</q2a:call>"];
    let slip = ["<q2a:call name=\"read_tool\">{\"path\": \"/a\", \"limit\": \"10\"}</q2a:call>"];
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&bad)));
    app.fake
        .push_completion(None, Reply::sse(qwen_sse::fast_answer(&slip)));
    let v: Value = app.chat(ask(false)).await.json().await.unwrap();
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(
        calls[0]["function"]["arguments"],
        r#"{"limit":10,"path":"/a"}"#
    );
    let second = prompt(&app);
    assert!(
        second.contains(
            ";user:Your call of read_tool had arguments that do not fit its parameters: "
        ),
        "{second}"
    );
    assert!(
        second.contains("\"path\" is a required property"),
        "{second}"
    );
    assert!(second.contains("/limit: "), "{second}");
    assert_eq!(app.fake.completions().len(), 2);
}

#[tokio::test]
async fn a_call_that_still_does_not_fit_is_passed_on_unless_the_tool_is_strict() {
    let app = TestApp::with_accounts(1, &[]).await;
    let bad = ["<q2a:call name=\"read_tool\">{\"limit\": 3}</q2a:call>"];
    for strict in [false, true] {
        for _ in 0..2 {
            app.fake
                .push_completion(None, Reply::sse(qwen_sse::fast_answer(&bad)));
        }
        let mut req = ask(false);
        req["tools"][0]["function"]["strict"] = json!(strict);
        let resp = app.chat(req).await;
        if strict {
            assert_eq!(resp.status(), 502);
            let v: Value = resp.json().await.unwrap();
            common::assert_error_envelope(&v, "server_error", "invalid_tool_arguments");
        } else {
            let v: Value = resp.json().await.unwrap();
            let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
            assert_eq!(calls[0]["function"]["arguments"], r#"{"limit":3}"#, "{v}");
        }
    }
    assert_eq!(app.fake.completions().len(), 4);
}

#[tokio::test]
async fn a_call_made_three_times_already_is_questioned_once_then_passed_on() {
    let app = TestApp::with_accounts(1, &[]).await;
    let mut messages = vec![json!({"role": "user", "content": "Find x"})];
    for i in 0..3 {
        let id = format!("call_{i}");
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": id, "type": "function", "function": {"name": "grep", "arguments": "{\"pattern\": \"x\"}"}}
        ]}));
        messages.push(json!({"role": "tool", "tool_call_id": id, "content": "no match"}));
    }
    let again = ["<q2a:call name=\"grep\">{'pattern': 'x'}</q2a:call>"];
    for _ in 0..2 {
        app.fake
            .push_completion(None, Reply::sse(qwen_sse::fast_answer(&again)));
    }
    let v: Value = app
        .chat(request(false, &Value::Array(messages)))
        .await
        .json()
        .await
        .unwrap();
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"pattern":"x"}"#);
    assert_eq!(app.fake.completions().len(), 2);
    let second = prompt(&app);
    assert!(
        second.contains(";user:You already called grep with exactly these arguments 3 times"),
        "{second}"
    );
}

#[tokio::test]
async fn tool_prompt_file_replaces_the_instructions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tools.txt");
    std::fs::write(
        &file,
        "Werkzeuge:{{TOOLS}}Regel: {{CHOICE}} / {{PARALLEL}}\nAufruf: <q2a:call name=\"…\">{…}</q2a:call>",
    )
    .unwrap();
    let path = file.display().to_string();
    let app = TestApp::with_accounts(1, &[("TOOL_PROMPT_FILE", &path)]).await;
    assert_eq!(app.chat(ask(false)).await.status(), 200);
    let prompt = prompt(&app);
    assert!(
        prompt.starts_with(
            "system:Werkzeuge:\n- read_tool(limit?: integer, path: string): Reads a file.\n"
        ),
        "{prompt}"
    );
    assert!(
        prompt.contains("Regel: Call a tool when it helps with the task; otherwise answer in plain text. / You may make several calls"),
        "{prompt}"
    );
}

/// A case: what it shows, the model's answer, and the calls expected as `(name, arguments)`.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Every syntax the parser accepts, and what stays text, through the server: streamed and not,
/// with the upstream body cut into single bytes.
#[tokio::test]
async fn every_accepted_syntax_and_what_stays_text_cut_at_every_byte() {
    let hermes = "<tool_call>{\"name\": \"grep\", \"arguments\": {\"pattern\": \"a\"}}\n{\"name\": \"read_tool\", \"arguments\": \"{\\\"path\\\": \\\"/b\\\"}\"}</tool_call>";
    let coder = "<function=read_tool>\n<parameter=path>\n/c\n</parameter>\n<parameter=limit>\n5\n</parameter>\n</function>";
    let fenced = "Like this:\n```\n<q2a:call name=\"grep\">{}</q2a:call>\n```\n";
    let unknown = "<tool_call>{\"name\": \"web_search\", \"arguments\": {}}</tool_call>";
    let cases: [Case; 5] = [
        (
            "ours, unclosed at the end",
            "<q2a:call name=\"grep\">{'pattern': 'z',}",
            &[("grep", r#"{"pattern":"z"}"#)],
        ),
        (
            "hermes, two in one block",
            hermes,
            &[("grep", r#"{"pattern":"a"}"#), ("read", r#"{"path":"/b"}"#)],
        ),
        (
            "qwen-coder",
            coder,
            &[("read", r#"{"limit":5,"path":"/c"}"#)],
        ),
        ("fenced", fenced, &[]),
        ("not offered", unknown, &[]),
    ];
    let app = TestApp::with_accounts(1, &[]).await;
    for (what, answer, expected) in cases {
        for stream in [false, true] {
            let reply = Reply::sse_with(qwen_sse::fast_answer(&[answer]), Split::Every(1));
            app.fake.push_completion(None, reply);
            let resp = app.chat(ask(stream)).await;
            assert_eq!(resp.status(), 200, "{what}");
            let (text, calls) = if stream {
                let chunks = sse_json(&resp.text().await.unwrap());
                let calls: Vec<(String, String)> = streamed_calls(&chunks)
                    .chunks(2)
                    .map(|c| {
                        let name = c[0]["function"]["name"].as_str().unwrap().to_owned();
                        let args = c[1]["function"]["arguments"].as_str().unwrap().to_owned();
                        (name, args)
                    })
                    .collect();
                (streamed_text(&chunks), calls)
            } else {
                let v: Value = resp.json().await.unwrap();
                let m = &v["choices"][0]["message"];
                let calls = m["tool_calls"]
                    .as_array()
                    .map(|calls| {
                        calls
                            .iter()
                            .map(|c| {
                                let f = &c["function"];
                                (
                                    f["name"].as_str().unwrap().to_owned(),
                                    f["arguments"].as_str().unwrap().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (m["content"].as_str().unwrap_or_default().to_owned(), calls)
            };
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(n, a)| ((*n).to_owned(), (*a).to_owned()))
                .collect();
            assert_eq!(calls, expected, "{what}, stream {stream}");
            if expected.is_empty() {
                assert_eq!(text, answer, "{what}, stream {stream}");
            }
        }
    }
}
