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
