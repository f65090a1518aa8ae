//! The edges of a request's life: a client that goes away mid-stream, the upstream chat deleted
//! once the attempt is over, and keep-alive comments while the upstream is slow to start.

use crate::common;

use std::time::Duration;

use common::fake_qwen::{End, Reply, Split};
use common::qwen_sse::{self, CHAT_ID, PARENT_ID, RID};
use common::{TestApp, body, eventually, sse_json, sse_lines, streamed_content};
use futures::StreamExt;
use serde_json::Value;

const MODEL: &str = "qwen3.7-plus";
const KEEPALIVE: &str = ": keep-alive";

/// `DELETE /api/v2/chats/<id>` requests received, as `(chat id, account label)`.
fn deletions(app: &TestApp) -> Vec<(String, Option<String>)> {
    app.fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .filter_map(|r| {
            let id = r.path.strip_prefix("/api/v2/chats/")?.to_owned();
            Some((id, r.label))
        })
        .collect()
}

/// The OpenAI error envelope with this type and code, and no `param`.
#[track_caller]
fn assert_envelope(v: &Value, kind: &str, code: &str) {
    common::assert_error_envelope(v, kind, code);
    assert!(v["error"]["param"].is_null(), "{v}");
}

// ---------------------------------------------------------------------------------------------
// 16. Client disconnect

#[tokio::test]
async fn client_disconnect_mid_stream_closes_the_upstream_and_releases_the_lease() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        Some("acct1"),
        Reply::sse_with(
            qwen_sse::stream(&[
                qwen_sse::created(CHAT_ID, PARENT_ID, RID, "0"),
                qwen_sse::answer(RID, "Hi", 1),
            ]),
            Split::AtEvents,
        )
        .end(End::Hang),
    );
    let resp = app.chat(body(MODEL, true)).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut received = String::new();
    while !received.contains(r#""content":"Hi""#) {
        let chunk = tokio::time::timeout(Duration::from_secs(2), stream.next())
            .await
            .expect("the first answer chunk arrives")
            .expect("the stream is still open")
            .unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(app.fake.open_streams(), 1);
    assert_eq!(app.leases(), 1);
    drop(stream);
    assert!(
        app.fake.wait_streams_closed(Duration::from_secs(1)).await,
        "the upstream stream is closed once the client has gone"
    );
    assert!(eventually(Duration::from_secs(1), || app.leases() == 0).await);
    // The abandoned chat is cleaned up like any other.
    let chat_id = app.fake.chat_ids().pop().unwrap();
    assert!(
        eventually(Duration::from_secs(1), || deletions(&app)
            .iter()
            .any(|(id, _)| *id == chat_id))
        .await
    );
}

/// Starts `body` in a task and aborts it (closing its connection) once the fake's completion
/// stream is open, that is while the proxy is waiting on the upstream.
async fn abandon_while_upstream_streams(app: &TestApp, body: Value) {
    let pending = app.post("/v1/chat/completions").json(&body).send();
    let task = tokio::spawn(pending);
    assert!(
        eventually(Duration::from_secs(1), || app.fake.open_streams() == 1).await,
        "the upstream stream opens"
    );
    assert_eq!(app.leases(), 1);
    task.abort();
    let _ = task.await;
}

#[tokio::test]
async fn client_disconnect_before_the_first_event_closes_the_upstream() {
    let app = TestApp::with_accounts(1, &[]).await;
    // Headers, then silence: the proxy is still deciding the status when the client leaves.
    app.fake.push_completion(
        Some("acct1"),
        Reply::sse(qwen_sse::fast_answer(&["late"])).first_delay(Duration::from_secs(30)),
    );
    abandon_while_upstream_streams(&app, body(MODEL, true)).await;
    assert!(app.fake.wait_streams_closed(Duration::from_secs(1)).await);
    assert!(eventually(Duration::from_secs(1), || app.leases() == 0).await);
}

#[tokio::test]
async fn client_disconnect_during_a_buffered_answer_closes_the_upstream() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        Some("acct1"),
        Reply::sse_with(
            qwen_sse::stream(&[
                qwen_sse::created(CHAT_ID, PARENT_ID, RID, "0"),
                qwen_sse::answer(RID, "Hi", 1),
            ]),
            Split::AtEvents,
        )
        .end(End::Hang),
    );
    abandon_while_upstream_streams(&app, body(MODEL, false)).await;
    assert!(app.fake.wait_streams_closed(Duration::from_secs(1)).await);
    assert!(eventually(Duration::from_secs(1), || app.leases() == 0).await);
}

// ---------------------------------------------------------------------------------------------
// 17. Chat cleanup

/// Continuation off: an answered chat is not kept (continuation.rs covers kept chats, deleted
/// when their entries expire or are replaced).
const NOT_KEPT: (&str, &str) = ("CONVERSATION_CONTINUATION", "false");

#[tokio::test]
async fn completed_chat_is_deleted() {
    let app = TestApp::with_accounts(1, &[NOT_KEPT]).await;
    let resp = app.chat(body(MODEL, false)).await;
    assert_eq!(resp.status(), 200);
    let ids = app.fake.chat_ids();
    assert_eq!(ids.len(), 1);
    assert!(
        eventually(Duration::from_secs(1), || !deletions(&app).is_empty()).await,
        "DELETE /api/v2/chats/<id> is sent after the answer"
    );
    assert_eq!(
        deletions(&app),
        [(ids[0].clone(), Some("acct1".to_owned()))]
    );
    assert_eq!(app.leases(), 0);
}

#[tokio::test]
async fn completed_streamed_chat_is_deleted() {
    let app = TestApp::with_accounts(1, &[NOT_KEPT]).await;
    let resp = app.chat(body(MODEL, true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        streamed_content(&sse_json(&resp.text().await.unwrap())),
        "Hi!"
    );
    let ids = app.fake.chat_ids();
    assert!(eventually(Duration::from_secs(1), || !deletions(&app).is_empty()).await);
    assert_eq!(
        deletions(&app),
        [(ids[0].clone(), Some("acct1".to_owned()))]
    );
}

#[tokio::test]
async fn chats_of_failed_attempts_are_deleted_too() {
    let app = TestApp::with_accounts(2, &[NOT_KEPT]).await;
    app.fake
        .push_completion(Some("acct1"), Reply::http(502, "text/plain", "Bad Gateway"));
    let resp = app.chat(body(MODEL, false)).await;
    assert_eq!(resp.status(), 200);
    let ids = app.fake.chat_ids();
    assert_eq!(ids.len(), 2);
    assert!(eventually(Duration::from_secs(1), || deletions(&app).len() == 2).await);
    let mut got = deletions(&app);
    got.sort();
    let mut want = vec![
        (ids[0].clone(), Some("acct1".to_owned())),
        (ids[1].clone(), Some("acct2".to_owned())),
    ];
    want.sort();
    assert_eq!(
        got, want,
        "each chat is deleted with its own account's token"
    );
}

#[tokio::test]
async fn chat_left_busy_is_deleted_after_the_retry() {
    let app = TestApp::with_accounts(1, &[NOT_KEPT]).await;
    app.fake.push_completion(
        Some("acct1"),
        Reply::http(
            200,
            "application/json",
            qwen_sse::business_error("Bad_Request", "The chat is in progress!"),
        ),
    );
    let resp = app.chat(body(MODEL, false)).await;
    assert_eq!(resp.status(), 200);
    let ids = app.fake.chat_ids();
    assert_eq!(ids.len(), 2);
    assert!(eventually(Duration::from_secs(1), || deletions(&app).len() == 2).await);
    let mut got: Vec<String> = deletions(&app).into_iter().map(|(id, _)| id).collect();
    got.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn with_continuation_the_busy_chat_is_deleted_and_the_answered_one_kept() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.push_completion(
        Some("acct1"),
        Reply::http(
            200,
            "application/json",
            qwen_sse::business_error("Bad_Request", "The chat is in progress!"),
        ),
    );
    let resp = app.chat(body(MODEL, false)).await;
    assert_eq!(resp.status(), 200);
    let ids = app.fake.chat_ids();
    assert_eq!(ids.len(), 2);
    assert!(eventually(Duration::from_secs(1), || !deletions(&app).is_empty()).await);
    // Time for a wrong second deletion to show.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        deletions(&app),
        [(ids[0].clone(), Some("acct1".to_owned()))]
    );
}

#[tokio::test]
async fn chat_cleanup_off_deletes_nothing() {
    let app = TestApp::with_accounts(1, &[("CHAT_CLEANUP", "false")]).await;
    let resp = app.chat(body(MODEL, false)).await;
    assert_eq!(resp.status(), 200);
    // With cleanup on, the deletion arrives within milliseconds (see above); give it the
    // same chance to show up here and check that it does not.
    let appeared = eventually(Duration::from_millis(300), || !deletions(&app).is_empty()).await;
    assert!(
        !appeared,
        "no DELETE with CHAT_CLEANUP=false: {:?}",
        deletions(&app)
    );
    assert_eq!(app.leases(), 0);
}

// ---------------------------------------------------------------------------------------------
// 19. Keep-alive while the upstream is slow to start

#[tokio::test]
async fn keepalive_comments_precede_a_slow_first_event() {
    let app = TestApp::with_accounts(1, &[("SSE_KEEPALIVE_SECONDS", "0.3")]).await;
    app.fake.push_completion(
        Some("acct1"),
        Reply::sse(qwen_sse::fast_answer(&["Hello"])).first_delay(Duration::from_secs(1)),
    );
    let resp = app.chat(body(MODEL, true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    let lines = sse_lines(&text);
    let first_data = lines
        .iter()
        .position(|l| l.starts_with("data: "))
        .expect("data follows");
    assert!(first_data >= 1);
    assert!(lines[..first_data].iter().all(|l| l == KEEPALIVE), "{text}");
    assert_eq!(lines.last().unwrap(), "data: [DONE]");
    let chunks = sse_json(&text);
    assert!(chunks.iter().all(|c| c.get("error").is_none()), "{text}");
    assert_eq!(streamed_content(&chunks), "Hello");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(eventually(Duration::from_secs(1), || app.leases() == 0).await);
}

#[tokio::test]
async fn failure_after_keepalive_is_one_error_event() {
    let app = TestApp::with_accounts(2, &[("SSE_KEEPALIVE_SECONDS", "0.3")]).await;
    // Each account starts slowly, after the keep-alive moment, then ends with no answer.
    let slow_empty = Reply::sse(qwen_sse::stream(&[
        qwen_sse::created(CHAT_ID, PARENT_ID, RID, "0"),
        qwen_sse::finished(RID),
    ]))
    .first_delay(Duration::from_millis(800));
    for label in ["acct1", "acct2"] {
        app.fake.push_completion(Some(label), slow_empty.clone());
    }
    let resp = app.chat(body(MODEL, true)).await;
    // The status went out with the first keep-alive, before anything had failed.
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with(": keep-alive\n\n"), "{text}");
    let lines = sse_lines(&text);
    let data: Vec<&String> = lines.iter().filter(|l| *l != KEEPALIVE).collect();
    assert_eq!(data.len(), 2, "one error event and [DONE]: {text}");
    assert_eq!(data[1], "data: [DONE]");
    let error: Value = serde_json::from_str(data[0].strip_prefix("data: ").unwrap()).unwrap();
    assert_envelope(&error, "server_error", "upstream_empty_answer");
    // Both accounts were tried behind the keep-alives.
    assert_eq!(
        app.fake
            .count_for("acct1", "POST", "/api/v2/chat/completions"),
        1
    );
    assert_eq!(
        app.fake
            .count_for("acct2", "POST", "/api/v2/chat/completions"),
        1
    );
    assert!(eventually(Duration::from_secs(1), || app.leases() == 0).await);
}
