//! Conversations that continue the upstream chat (docs/upstream.md §5.5): from the second turn
//! on only the new tail goes up, after the previous answer's id; tool loops stay in one chat on
//! both surfaces; an edited history, an expired entry, a deleted chat and a cooling account
//! fall back to a new chat with the whole conversation, never to an error; replicas on one
//! Redis continue each other's conversations; kept chats are deleted when their entries expire
//! or are replaced; `CONVERSATION_CONTINUATION=false` is the old behaviour.

use std::time::Duration;

use crate::common;

use common::fake_chats::{parent_of, prompt_of};
use common::fake_qwen::{FakeQwen, Recorded, Reply};
use common::redis_server::shared as redis;
use common::{KEY, TestApp, qwen_sse};
use serde_json::{Value, json};

const MODEL: &str = "qwen3.7-plus";
const CHATS_NEW: &str = "/api/v2/chats/new";

/// An app with `n` accounts whose answers are numbered `answer-1`, `answer-2`, …
async fn app(n: usize, vars: &[(&str, &str)]) -> TestApp {
    let app = TestApp::with_accounts(n, vars).await;
    app.fake.number_answers();
    app
}

/// A non-streamed chat completion; it must succeed. Returns the assistant message.
async fn chat(app: &TestApp, messages: &Value, tools: Option<&Value>) -> Value {
    let mut body = json!({"model": MODEL, "stream": false, "messages": messages});
    if let Some(t) = tools {
        body["tools"] = t.clone();
    }
    let resp = app.chat(body).await;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v["choices"][0]["message"].clone()
}

/// A streamed chat completion; it must succeed. Returns the text streamed.
async fn chat_streamed(app: &TestApp, messages: &Value) -> String {
    let body = json!({"model": MODEL, "stream": true, "messages": messages});
    let resp = app.chat(body).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    common::streamed_content(&common::sse_json(&text))
}

fn answer(text: &str) -> Reply {
    Reply::sse(qwen_sse::fast_answer(&[text]))
}

/// `(chat id, parent, prompt)` of each completion the fake received.
fn sent(fake: &FakeQwen) -> Vec<(String, Option<String>, String)> {
    fake.completions()
        .iter()
        .map(|r: &Recorded| {
            let body = r.json.clone().unwrap();
            (
                r.query_param("chat_id").unwrap().to_owned(),
                parent_of(&body),
                prompt_of(&body),
            )
        })
        .collect()
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

async fn wait_for(what: &str, check: impl FnMut() -> bool) {
    assert!(
        common::eventually(Duration::from_secs(3), check).await,
        "not within 3 s: {what}"
    );
}

#[tokio::test]
async fn a_five_turn_conversation_sends_only_the_new_turn_from_the_second_on() {
    let app = app(1, &[]).await;
    let mut history = vec![json!({"role": "system", "content": "Be brief."})];
    for turn in 1..=5 {
        history.push(user(&format!("Question {turn}?")));
        app.fake
            .push_completion(None, answer(&format!("Answer {turn}.")));
        // Streamed and whole alternate: both file the answer.
        let text = if turn % 2 == 0 {
            chat_streamed(&app, &json!(history)).await
        } else {
            chat(&app, &json!(history), None).await["content"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(text, format!("Answer {turn}."));
        history.push(json!({"role": "assistant", "content": text}));
    }
    assert_eq!(app.fake.count("POST", CHATS_NEW), 1);
    let chat = app.fake.chat_ids()[0].clone();
    let sent = sent(&app.fake);
    let expected: Vec<(String, Option<String>, String)> = (1..=5)
        .map(|turn| {
            let prompt = if turn == 1 {
                "system:Be brief.;user:Question 1?".to_owned()
            } else {
                format!("Question {turn}?")
            };
            let parent = (turn > 1).then(|| format!("answer-{}", turn - 1));
            (chat.clone(), parent, prompt)
        })
        .collect();
    assert_eq!(sent, expected);
    // Both places the site reads the parent from carry it.
    let last = app.fake.completions().pop().unwrap().json.unwrap();
    assert_eq!(last["parent_id"], "answer-4");
    assert_eq!(last["parentId"], "answer-4");
    assert_eq!(last["messages"][0]["parentId"], "answer-4");
    assert_eq!(last["messages"][0]["parent_id"], "answer-4");
    // The site's chat holds the conversation as ten messages, each after the one before.
    let kept = app.fake.chat(&chat).unwrap();
    assert_eq!(kept.len(), 10);
    for pair in kept.windows(2) {
        assert_eq!(pair[1].parent_id.as_deref(), Some(pair[0].id.as_str()));
    }
    // The kept chat is not deleted after its answers.
    assert_eq!(app.fake.deleted_chats(), Vec::<String>::new());
}

#[tokio::test]
async fn a_regenerated_answer_continues_from_the_same_parent() {
    let app = app(1, &[]).await;
    app.fake.push_completion(None, answer("One."));
    let first = chat(&app, &json!([user("Hi")]), None).await;
    let history = json!([user("Hi"), first, user("Again")]);
    for text in ["Two.", "Two, again."] {
        app.fake.push_completion(None, answer(text));
        chat(&app, &history, None).await;
    }
    let parents: Vec<Option<String>> = sent(&app.fake).into_iter().map(|s| s.1).collect();
    assert_eq!(
        parents,
        [None, Some("answer-1".into()), Some("answer-1".into())]
    );
    assert_eq!(app.fake.count("POST", CHATS_NEW), 1);
}

#[tokio::test]
async fn reasoning_replayed_inline_in_think_tags_still_continues() {
    let app = app(1, &[("REASONING_FORMAT", "tags")]).await;
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::thinking_answer(
            &[&["Thinking it over."]],
            &["One."],
        )),
    );
    let first = chat(&app, &json!([user("Hi")]), None).await;
    let content = first["content"].as_str().unwrap();
    assert!(
        content.starts_with("<think>") && content.ends_with("One."),
        "{content}"
    );
    app.fake.push_completion(None, answer("Two."));
    chat(&app, &json!([user("Hi"), first, user("Again")]), None).await;
    let last = sent(&app.fake).pop().unwrap();
    assert_eq!((last.1, last.2), (Some("answer-1".into()), "Again".into()));
}

fn grep_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "grep", "description": "Searches files.",
        "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}}}}}])
}

fn call(pattern: &str) -> Reply {
    let block = format!("<q2a:call name=\"grep\">\n{{\"pattern\": \"{pattern}\"}}\n</q2a:call>");
    Reply::sse(qwen_sse::fast_answer(&["Searching. ", &block]))
}

/// Call → result → call → result → answer on chat completions, in `app`; returns the prompts.
async fn openai_tool_loop(app: &TestApp) -> Vec<String> {
    let tools = grep_tool();
    let mut history = vec![user("Where is main?")];
    for (reply, result) in [
        (call("main"), "src/a.rs:1"),
        (call("fn main"), "src/b.rs:9"),
    ] {
        app.fake.push_completion(None, reply);
        let msg = chat(app, &json!(history), Some(&tools)).await;
        let id = msg["tool_calls"][0]["id"].as_str().unwrap().to_owned();
        history.push(msg);
        history.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
    }
    app.fake.push_completion(None, answer("It is in src/b.rs."));
    let last = chat(app, &json!(history), Some(&tools)).await;
    assert_eq!(last["content"], "It is in src/b.rs.");
    app.fake
        .completions()
        .iter()
        .map(|r| prompt_of(r.json.as_ref().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_tool_loop_on_chat_completions_continues_one_chat() {
    let app = app(1, &[]).await;
    let prompts = openai_tool_loop(&app).await;
    assert_eq!(app.fake.count("POST", CHATS_NEW), 1);
    let parents: Vec<Option<String>> = sent(&app.fake).into_iter().map(|s| s.1).collect();
    assert_eq!(
        parents,
        [None, Some("answer-1".into()), Some("answer-2".into())]
    );
    // Each continued turn is the tool result exactly as the flattened prompt writes it: the
    // same conversation without continuation ends with `;tool:` and that text.
    let flat = app_without_continuation().await;
    let flattened = openai_tool_loop(&flat).await;
    assert_eq!(flat.fake.count("POST", CHATS_NEW), 3);
    // The call ids are the proxy's own, fresh in each run.
    let (prompts, flattened) = (
        prompts
            .iter()
            .map(|p| without_call_ids(p))
            .collect::<Vec<_>>(),
        flattened
            .iter()
            .map(|p| without_call_ids(p))
            .collect::<Vec<_>>(),
    );
    for turn in 1..3 {
        assert!(
            flattened[turn].ends_with(&format!(";tool:{}", prompts[turn])),
            "turn {turn}: {:?} is not the end of {:?}",
            prompts[turn],
            flattened[turn]
        );
        assert!(
            prompts[turn].starts_with("<q2a:result"),
            "{}",
            prompts[turn]
        );
    }
    assert!(prompts[2].contains("src/b.rs:9"), "{}", prompts[2]);
}

/// `text` with each `call="…"` attribute emptied.
fn without_call_ids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("call=\"") {
        out.push_str(&rest[..at + 6]);
        rest = &rest[at + 6..];
        rest = &rest[rest.find('"').unwrap_or(0)..];
    }
    out.push_str(rest);
    out
}

async fn app_without_continuation() -> TestApp {
    app(1, &[("CONVERSATION_CONTINUATION", "false")]).await
}

async fn anthropic(app: &TestApp, body: &Value) -> Value {
    let resp = app
        .http
        .post(app.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

#[tokio::test]
async fn a_tool_loop_on_messages_continues_one_chat() {
    let app = app(1, &[]).await;
    let tools = json!([{"name": "grep", "description": "Searches files.",
        "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}}}}]);
    let mut history = vec![user("Where is main?")];
    for (reply, result) in [
        (call("main"), "src/a.rs:1"),
        (call("fn main"), "src/b.rs:9"),
    ] {
        app.fake.push_completion(None, reply);
        let body = json!({"model": MODEL, "max_tokens": 1024, "tools": tools, "messages": history});
        let msg = anthropic(&app, &body).await;
        assert_eq!(msg["stop_reason"], "tool_use", "{msg}");
        let id = msg["content"][1]["id"].as_str().unwrap().to_owned();
        history.push(json!({"role": "assistant", "content": msg["content"]}));
        history.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": result}]}));
    }
    app.fake.push_completion(None, answer("It is in src/b.rs."));
    let body = json!({"model": MODEL, "max_tokens": 1024, "tools": tools, "messages": history});
    let last = anthropic(&app, &body).await;
    assert_eq!(last["content"][0]["text"], "It is in src/b.rs.");
    assert_eq!(app.fake.count("POST", CHATS_NEW), 1);
    let sent = sent(&app.fake);
    let parents: Vec<Option<String>> = sent.iter().map(|s| s.1.clone()).collect();
    assert_eq!(
        parents,
        [None, Some("answer-1".into()), Some("answer-2".into())]
    );
    assert!(sent[2].2.starts_with("<q2a:result"), "{}", sent[2].2);
    assert!(sent[2].2.contains("src/b.rs:9"), "{}", sent[2].2);
    assert!(!sent[2].2.contains("src/a.rs:1"), "{}", sent[2].2);
}

#[tokio::test]
async fn an_edited_earlier_message_starts_a_new_chat() {
    let app = app(1, &[]).await;
    app.fake.push_completion(None, answer("One."));
    let first = chat(&app, &json!([user("Hi")]), None).await;
    app.fake.push_completion(None, answer("Two."));
    chat(&app, &json!([user("Hello"), first, user("Again")]), None).await;
    assert_eq!(app.fake.count("POST", CHATS_NEW), 2);
    let sent = sent(&app.fake);
    assert_eq!(sent[1].1, None);
    assert_eq!(sent[1].2, "user:Hello;assistant:One.;user:Again");
}

/// Turn one, then `between`, then turn two: it must be answered in a new chat with the whole
/// conversation.
async fn falls_back(app: &TestApp, between: impl AsyncFnOnce(&TestApp, &str)) {
    app.fake.push_completion(None, answer("One."));
    let first = chat(app, &json!([user("Hi")]), None).await;
    let chat_id = app.fake.chat_ids()[0].clone();
    between(app, &chat_id).await;
    app.fake.push_completion(None, answer("Two."));
    let second = chat(app, &json!([user("Hi"), first, user("Again")]), None).await;
    assert_eq!(second["content"], "Two.");
    assert_eq!(app.fake.count("POST", CHATS_NEW), 2);
    let last = sent(&app.fake).pop().unwrap();
    assert_eq!(last.0, app.fake.chat_ids()[1]);
    assert_eq!(last.1, None);
    assert_eq!(last.2, "user:Hi;assistant:One.;user:Again");
}

#[tokio::test]
async fn an_expired_entry_falls_back_and_its_chat_is_deleted() {
    let app = app(1, &[("CONVERSATION_TTL_SECONDS", "0.3")]).await;
    falls_back(&app, async |app, chat_id| {
        let id = chat_id.to_owned();
        wait_for("the expired chat is deleted", || {
            app.fake.deleted_chats().contains(&id)
        })
        .await;
    })
    .await;
    assert_eq!(app.fake.completions().len(), 2);
}

#[tokio::test]
async fn a_deleted_chat_falls_back_without_an_error() {
    let app = app(1, &[]).await;
    falls_back(&app, async |app, chat_id| app.fake.delete_chat(chat_id)).await;
    // The continuation was refused (`Not_Found`), then the new chat answered.
    let sent = sent(&app.fake);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1].1.as_deref(), Some("answer-1"));
}

#[tokio::test]
async fn a_busy_chat_falls_back_without_an_error() {
    let app = app(1, &[]).await;
    falls_back(&app, async |app, _| {
        let busy = qwen_sse::business_error("Bad_Request", "The chat is in progress!");
        app.fake
            .push_completion(None, Reply::http(200, "application/json", busy));
    })
    .await;
    let sent = sent(&app.fake);
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1].1.as_deref(), Some("answer-1"));
}

#[tokio::test]
async fn a_cooling_account_falls_back_to_another_account() {
    let app = app(2, &[]).await;
    falls_back(&app, async |app, _| {
        let label = app.fake.completions()[0].label.clone().unwrap();
        let id = format!("account_{}", label.trim_start_matches("acct"));
        let account = app.state.proxy().pool().get(&id).unwrap();
        let err = qwen2api::upstream::UpstreamError::RateLimited {
            detail: "test".into(),
            retry_after: Some(Duration::from_secs(600)),
        };
        app.state.accounts().report_failure(&account, &err);
        assert!(!account.is_usable());
    })
    .await;
    let labels: Vec<Option<String>> = app
        .fake
        .completions()
        .into_iter()
        .map(|r| r.label)
        .collect();
    assert_eq!(labels.len(), 2);
    assert_ne!(labels[0], labels[1]);
}

#[tokio::test]
async fn a_replaced_entry_deletes_the_chat_no_entry_names() {
    let app = app(1, &[]).await;
    // The same first turn twice with the same answer: the second entry replaces the first.
    for _ in 0..2 {
        app.fake.push_completion(None, answer("One."));
        chat(&app, &json!([user("Hi")]), None).await;
    }
    let ids = app.fake.chat_ids();
    assert_eq!(ids.len(), 2);
    let first = ids[0].clone();
    wait_for("the replaced chat is deleted", || {
        app.fake.deleted_chats() == [first.clone()]
    })
    .await;
    // The next turn continues the second chat.
    app.fake.push_completion(None, answer("Two."));
    chat(
        &app,
        &json!([user("Hi"), {"role": "assistant", "content": "One."}, user("More")]),
        None,
    )
    .await;
    let last = sent(&app.fake).pop().unwrap();
    assert_eq!((last.0, last.1), (ids[1].clone(), Some("answer-2".into())));
}

#[tokio::test]
async fn switched_off_every_turn_is_a_new_flattened_chat_deleted_after_its_answer() {
    let app = app_without_continuation().await;
    app.fake.push_completion(None, answer("One."));
    let first = chat(&app, &json!([user("Hi")]), None).await;
    app.fake.push_completion(None, answer("Two."));
    chat(&app, &json!([user("Hi"), first, user("Again")]), None).await;
    let sent = sent(&app.fake);
    assert_eq!(sent[1].1, None);
    assert_eq!(sent[1].2, "user:Hi;assistant:One.;user:Again");
    let ids = app.fake.chat_ids();
    wait_for("both chats are deleted", || {
        let mut deleted = app.fake.deleted_chats();
        deleted.sort();
        let mut all = ids.clone();
        all.sort();
        deleted == all
    })
    .await;
}

#[tokio::test]
async fn passthrough_callers_are_not_continued() {
    let fake = FakeQwen::start().await;
    fake.number_answers();
    let token = fake.add_token("alice");
    let app = TestApp::spawn_with(fake, &[("API_KEY", ""), ("AUTH_MODE", "passthrough")]).await;
    let ask = async |messages: Value| -> Value {
        let resp = app
            .http
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&json!({"model": MODEL, "messages": messages}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["choices"][0]["message"].clone()
    };
    app.fake.push_completion(None, answer("One."));
    let first = ask(json!([user("Hi")])).await;
    app.fake.push_completion(None, answer("Two."));
    ask(json!([user("Hi"), first, user("Again")])).await;
    let sent = sent(&app.fake);
    assert_eq!(sent[1].1, None);
    assert_eq!(sent[1].2, "user:Hi;assistant:One.;user:Again");
    let ids = app.fake.chat_ids();
    wait_for("both chats are deleted", || {
        app.fake.deleted_chats().len() == ids.len()
    })
    .await;
}

#[tokio::test]
async fn two_replicas_on_one_redis_continue_each_others_conversations() {
    let Some(redis) = redis() else { return };
    let fake = FakeQwen::start().await;
    fake.number_answers();
    let cookies = format!("token={}", fake.add_token("acct1"));
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let vars = [
        ("DATA_SAVE_MODE", "redis"),
        ("REDIS_URL", redis.url.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
        ("QWEN_COOKIES", cookies.as_str()),
    ];
    let a = TestApp::spawn_with(fake.clone(), &vars).await;
    let b = TestApp::spawn_with(fake.clone(), &vars).await;
    let mut history = vec![user("Question 1?")];
    for (turn, app) in [&a, &b, &a].into_iter().enumerate() {
        fake.push_completion(None, answer(&format!("Answer {}.", turn + 1)));
        let msg = chat(app, &json!(history), None).await;
        history.push(msg);
        history.push(user(&format!("Question {}?", turn + 2)));
    }
    assert_eq!(fake.count("POST", CHATS_NEW), 1);
    let sent = sent(&fake);
    let summary: Vec<(Option<String>, String)> = sent.into_iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(
        summary,
        [
            (None, "Question 1?".to_owned()),
            (Some("answer-1".into()), "Question 2?".into()),
            (Some("answer-2".into()), "Question 3?".into()),
        ]
    );
}
