//! A client that goes away before the first byte: the upstream call is dropped and the lease freed.

use crate::common;

use std::time::Duration;

use common::fake_qwen::{End, Reply};
use common::qwen_sse::{self as sse, RID};
use common::{TestApp, body};

#[tokio::test]
async fn disconnect_while_waiting_for_the_first_content() {
    let app = TestApp::with_accounts(1, &[]).await;
    let stream = sse::stream(&[sse::created(sse::CHAT_ID, sse::PARENT_ID, RID, "0")]);
    app.fake
        .push_completion(None, Reply::sse(stream).end(End::Hang));
    let req = app
        .post("/v1/chat/completions")
        .json(&body("qwen3.7-plus", true))
        .send();
    let client = tokio::spawn(req);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while app.fake.open_streams() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(app.fake.open_streams(), 1, "the upstream stream is open");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !client.is_finished(),
        "no byte may be sent before the first content"
    );
    assert_eq!(app.leases(), 1);
    client.abort();
    assert!(
        app.fake.wait_streams_closed(Duration::from_secs(1)).await,
        "upstream stream still open"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while app.leases() != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.leases(), 0);
}
