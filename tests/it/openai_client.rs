//! The server driven by a real OpenAI client library (async-openai), unmodified but for its base URL.

use crate::common;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
};
use common::fake_qwen::Reply;
use common::qwen_sse;
use common::{KEY, TestApp};
use futures::StreamExt;

fn client(app: &TestApp) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(app.url("/v1"))
            .with_api_key(KEY),
    )
}

fn request(model: &str) -> async_openai::types::chat::CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("Say hello")
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn plain_completion() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&["Hello", ", world"])),
    );
    let resp = client(&app)
        .chat()
        .create(request("qwen3.7-plus"))
        .await
        .unwrap();
    assert_eq!(resp.model, "qwen3.7-plus");
    assert!(resp.id.starts_with("chatcmpl-"));
    assert_eq!(
        resp.choices[0].message.content.as_deref(),
        Some("Hello, world")
    );
    let usage = resp.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (1049, 2, 1051)
    );
}

#[tokio::test]
async fn streamed_completion() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        None,
        Reply::sse(qwen_sse::fast_answer(&["Hel", "lo", " 世界"])),
    );
    let mut stream = client(&app)
        .chat()
        .create_stream(request("qwen3.7-plus"))
        .await
        .unwrap();
    let mut text = String::new();
    let mut finish = None;
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        chunks += 1;
        if let Some(choice) = chunk.choices.first() {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
            finish = finish.or(choice.finish_reason);
        }
    }
    assert_eq!(text, "Hello 世界");
    assert_eq!(chunks, 5, "role, three content chunks, finish");
    assert!(finish.is_some());
}

#[tokio::test]
async fn errors_reach_the_client_as_api_errors() {
    let app = TestApp::with_accounts(1, &[]).await;
    match client(&app).chat().create(request("no-such-model")).await {
        Err(OpenAIError::ApiError(e)) => {
            assert_eq!(e.status_code, 404);
            assert_eq!(e.api_error.code.as_deref(), Some("model_not_found"));
            assert_eq!(e.api_error.param.as_deref(), Some("model"));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    let bad = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(app.url("/v1"))
            .with_api_key("nope"),
    );
    match bad.chat().create(request("qwen3.7-plus")).await {
        Err(OpenAIError::ApiError(e)) => {
            assert_eq!(e.api_error.code.as_deref(), Some("invalid_api_key"));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// One turn of an agent: the text, the calls as `(id, name, arguments)` and the finish reason,
/// put together from the chunks when streamed (by `index`, as an agent does).
async fn turn(
    app: &TestApp,
    req: async_openai::types::chat::CreateChatCompletionRequest,
    stream: bool,
) -> (
    String,
    Vec<(String, String, String)>,
    Option<async_openai::types::chat::FinishReason>,
) {
    use async_openai::types::chat::ChatCompletionMessageToolCalls;

    if stream {
        let mut events = client(app).chat().create_stream(req).await.unwrap();
        let mut content = String::new();
        let mut calls: Vec<(String, String, String)> = Vec::new();
        let mut finish = None;
        while let Some(chunk) = events.next().await {
            let chunk = chunk.unwrap();
            let Some(choice) = chunk.choices.into_iter().next() else {
                continue;
            };
            content.push_str(choice.delta.content.as_deref().unwrap_or_default());
            for c in choice.delta.tool_calls.unwrap_or_default() {
                let i = c.index as usize;
                if i == calls.len() {
                    calls.push(Default::default());
                }
                let f = c.function.unwrap_or_default();
                if let Some(id) = c.id {
                    calls[i].0 = id;
                }
                calls[i].1.push_str(f.name.as_deref().unwrap_or_default());
                calls[i]
                    .2
                    .push_str(f.arguments.as_deref().unwrap_or_default());
            }
            finish = choice.finish_reason.or(finish);
        }
        (content, calls, finish)
    } else {
        let resp = client(app).chat().create(req).await.unwrap();
        let choice = resp.choices.into_iter().next().unwrap();
        let calls = choice
            .message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|c| match c {
                ChatCompletionMessageToolCalls::Function(f) => {
                    (f.id, f.function.name, f.function.arguments)
                }
                ChatCompletionMessageToolCalls::Custom(_) => panic!("a custom call"),
            })
            .collect();
        (
            choice.message.content.unwrap_or_default(),
            calls,
            choice.finish_reason,
        )
    }
}

/// A search tool and a file reader.
fn agent_tools() -> Vec<async_openai::types::chat::ChatCompletionTools> {
    use async_openai::types::chat::{ChatCompletionTool, ChatCompletionTools, FunctionObject};

    [("grep", "pattern"), ("read_file", "path")]
        .into_iter()
        .map(|(name, param)| {
            ChatCompletionTools::Function(ChatCompletionTool {
                function: FunctionObject {
                    name: name.into(),
                    description: Some(format!("The {name} tool.")),
                    parameters: Some(serde_json::json!({
                        "type": "object", "required": [param],
                        "properties": {param: {"type": "string"}}
                    })),
                    strict: None,
                },
            })
        })
        .collect()
}

/// An agent loop with tools: search, read, answer, streamed and not.
#[tokio::test]
async fn agent_loop_with_tools_streamed_and_not() {
    use async_openai::types::chat::{
        ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
        ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
        ChatCompletionRequestToolMessageArgs, FinishReason, FunctionCall,
    };

    let app = TestApp::with_accounts(1, &[]).await;
    let tools = agent_tools();
    for stream in [false, true] {
        let turns: [&[&str]; 3] = [
            &["<q2a:call name=\"grep\">{\"pattern\": \"fn main\"}</q2a:call>"],
            &["Now the file. <q2a:call name=\"read_file\">{\"path\": \"src/main.rs\"}</q2a:call>"],
            &["It is in src/main.rs."],
        ];
        for t in turns {
            app.fake
                .push_completion(None, Reply::sse(qwen_sse::fast_answer(t)));
        }
        let mut messages: Vec<ChatCompletionRequestMessage> = vec![
            ChatCompletionRequestUserMessageArgs::default()
                .content("Where is main?")
                .build()
                .unwrap()
                .into(),
        ];
        let mut called = Vec::new();
        let answer = loop {
            let req = CreateChatCompletionRequestArgs::default()
                .model("qwen3.7-plus")
                .messages(messages.clone())
                .tools(tools.clone())
                .build()
                .unwrap();
            let (content, calls, finish) = turn(&app, req, stream).await;
            if calls.is_empty() {
                assert_eq!(finish, Some(FinishReason::Stop));
                break content;
            }
            assert_eq!(finish, Some(FinishReason::ToolCalls));
            assert_eq!(calls.len(), 1);
            let (id, name, arguments) = calls[0].clone();
            assert!(id.starts_with("call_"), "{id}");
            called.push((name.clone(), arguments.clone()));
            let mut assistant = ChatCompletionRequestAssistantMessageArgs::default();
            if !content.is_empty() {
                assistant.content(content);
            }
            messages.push(
                assistant
                    .tool_calls(vec![ChatCompletionMessageToolCalls::Function(
                        ChatCompletionMessageToolCall {
                            id: id.clone(),
                            function: FunctionCall { name, arguments },
                        },
                    )])
                    .build()
                    .unwrap()
                    .into(),
            );
            messages.push(
                ChatCompletionRequestToolMessageArgs::default()
                    .tool_call_id(id)
                    .content("src/main.rs:1: fn main() {}")
                    .build()
                    .unwrap()
                    .into(),
            );
        };
        assert_eq!(answer, "It is in src/main.rs.");
        assert_eq!(
            called,
            [
                ("grep".to_owned(), r#"{"pattern":"fn main"}"#.to_owned()),
                (
                    "read_file".to_owned(),
                    r#"{"path":"src/main.rs"}"#.to_owned()
                ),
            ]
        );
        // The SDK's re-serialised history matches what the proxy answered: the turns after
        // the first continue its upstream chat and send only the tool's result.
        let sent = app.fake.completions();
        let loop_calls = &sent[sent.len() - 3..];
        let chat = loop_calls[0].query_param("chat_id").unwrap();
        let first = loop_calls[0].json.as_ref().unwrap();
        assert!(first["parent_id"].is_null());
        for later in &loop_calls[1..] {
            assert_eq!(later.query_param("chat_id"), Some(chat));
            let body = later.json.as_ref().unwrap();
            assert!(body["parent_id"].is_string(), "{body}");
            let prompt = body["messages"][0]["content"].as_str().unwrap();
            assert!(prompt.starts_with("<q2a:result"), "{prompt}");
            assert!(prompt.contains("src/main.rs:1: fn main() {}"), "{prompt}");
            assert!(!prompt.contains("Where is main?"), "{prompt}");
        }
    }
}
