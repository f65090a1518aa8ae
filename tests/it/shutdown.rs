//! SIGTERM on the real binary: open streams run to `[DONE]`, then the process exits 0.

use crate::common;

use std::time::Duration;

use common::binary::{Server, read_log};
use common::fake_qwen::{FakeQwen, Reply, Split};
use common::qwen_sse as sse;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_twenty_open_streams_finish() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let parts: Vec<String> = (0..10).map(|i| format!("w{i} ")).collect();
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    // Ten answer events 100 ms apart: each stream is open for about a second.
    fake.set_default_completion(
        Reply::sse_with(sse::fast_answer(&refs), Split::AtEvents).delay(Duration::from_millis(100)),
    );
    let dir = tempfile::tempdir().unwrap();
    let base = fake.base_url();
    let server = Server::start(
        dir.path(),
        &[
            ("API_KEY", "sk-shutdown"),
            ("QWEN_AUTH_TOKEN", &token),
            ("QWEN_BASE_URL", &base),
            ("DATA_SAVE_MODE", "none"),
            ("MAX_INFLIGHT_PER_ACCOUNT", "0"),
            ("SHUTDOWN_GRACE_SECONDS", "20"),
        ],
    );
    let http = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..20 {
        let resp = http
            .post(server.url("/v1/chat/completions"))
            .bearer_auth("sk-shutdown")
            .json(&serde_json::json!({"model":"qwen3.7-plus","stream":true,"messages":[{"role":"user","content":"hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(resp.bytes_stream());
    }
    // Every stream has begun (its first chunk read) before the signal.
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for s in &mut streams {
        bodies.push(s.next().await.unwrap().unwrap().to_vec());
    }
    server.terminate();
    let readers = streams
        .into_iter()
        .zip(bodies)
        .map(|(mut s, mut body)| async move {
            while let Some(chunk) = s.next().await {
                body.extend_from_slice(&chunk.expect("the stream is not cut"));
            }
            String::from_utf8(body).unwrap()
        });
    let done = futures::future::join_all(readers).await;
    for body in &done {
        assert!(
            body.ends_with("data: [DONE]\n\n"),
            "a stream did not finish: {body}"
        );
        assert!(body.contains("w9 "), "a stream lost text: {body}");
    }
    let code = server.exit_code(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "{}", read_log(dir.path()));
}
