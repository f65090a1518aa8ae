//! `CHAT_PREWARM`: requests take a chat created ahead of time; stale ones are not used.

use crate::common;

use std::time::Duration;

use common::{TestApp, body};

/// [`common::eventually`] for up to 2 s, failing the test when it does not hold.
async fn until(cond: impl FnMut() -> bool) {
    assert!(common::eventually(Duration::from_secs(2), cond).await);
}

#[tokio::test]
async fn requests_use_chats_created_ahead_of_time() {
    let app = TestApp::with_accounts(1, &[("CHAT_PREWARM", "2")]).await;
    assert_eq!(app.chat(body("qwen3.7-plus", false)).await.status(), 200);
    // The first request created its own chat; two more are made in the background.
    until(|| app.fake.count("POST", "/api/v2/chats/new") == 3).await;
    let ready: Vec<String> = app.fake.chat_ids()[1..].to_vec();
    assert_eq!(app.chat(body("qwen3.7-plus", false)).await.status(), 200);
    let used = app
        .fake
        .completions()
        .pop()
        .unwrap()
        .query_param("chat_id")
        .unwrap()
        .to_owned();
    assert!(
        ready.contains(&used),
        "the second request used a pre-created chat"
    );
    // The pool is topped up again, and only for this model and chat type.
    until(|| app.fake.count("POST", "/api/v2/chats/new") == 4).await;
    assert_eq!(
        app.chat(body("qwen3.7-plus-search", false)).await.status(),
        200
    );
    let search_chat = app
        .fake
        .completions()
        .pop()
        .unwrap()
        .query_param("chat_id")
        .unwrap()
        .to_owned();
    assert!(!ready.contains(&search_chat));
}

#[tokio::test]
async fn stale_chats_are_deleted_not_used() {
    let app = TestApp::with_accounts(
        1,
        &[("CHAT_PREWARM", "1"), ("CHAT_PREWARM_TTL_SECONDS", "0.2")],
    )
    .await;
    app.chat(body("qwen3.7-plus", false)).await;
    until(|| app.fake.count("POST", "/api/v2/chats/new") == 2).await;
    let stale = app.fake.chat_ids()[1].clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.chat(body("qwen3.7-plus", false)).await;
    let used = app
        .fake
        .completions()
        .pop()
        .unwrap()
        .query_param("chat_id")
        .unwrap()
        .to_owned();
    assert_ne!(used, stale);
    let stale_path = format!("/api/v2/chats/{stale}");
    until(|| app.fake.count("DELETE", &stale_path) == 1).await;
}

#[tokio::test]
async fn off_by_default() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.chat(body("qwen3.7-plus", false)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.fake.count("POST", "/api/v2/chats/new"), 1);
}
