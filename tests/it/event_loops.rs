//! The real binary serves requests from `WORKER_THREADS` single-threaded event loops, streams
//! through each of them, and stops them all on SIGTERM.

use crate::common;

use std::time::Duration;

use common::binary::{Server, read_log};
use common::fake_qwen::{FakeQwen, Reply, Split};
use common::qwen_sse as sse;

/// Names of the process's threads that are serving loops (`qwen2api-loop-N`).
fn loop_threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("qwen2api-loop-"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_sets_the_serving_loops_and_each_one_streams() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    fake.set_default_completion(Reply::sse_with(
        sse::fast_answer(&["Hello", ", world"]),
        Split::Odd,
    ));
    let dir = tempfile::tempdir().unwrap();
    let base = fake.base_url();
    let server = Server::start(
        dir.path(),
        &[
            ("API_KEY", "sk-loops"),
            ("QWEN_AUTH_TOKEN", &token),
            ("QWEN_BASE_URL", &base),
            ("DATA_SAVE_MODE", "none"),
            ("MAX_INFLIGHT_PER_ACCOUNT", "0"),
            ("WORKER_THREADS", "3"),
        ],
    );
    // Twelve connections at once, dealt to the three loops in turn: every stream is whole.
    let streams = (0..12).map(|_| {
        let url = server.url("/v1/chat/completions");
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth("sk-loops")
                .json(&serde_json::json!({"model":"qwen3.7-plus","stream":true,"messages":[{"role":"user","content":"hi"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.text().await.unwrap()
        }
    });
    for body in futures::future::join_all(streams).await {
        assert!(body.contains("\"content\":\"Hello\""), "{body}");
        assert!(body.contains("\"content\":\", world\""), "{body}");
        assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    }
    assert_eq!(fake.count("POST", "/api/v2/chat/completions"), 12);
    // The port accepts as soon as it is bound, before the loops start; once a request has
    // been answered, every loop exists (they all start before the first connection is dealt).
    assert_eq!(
        loop_threads(server.child.id()),
        ["qwen2api-loop-0", "qwen2api-loop-1", "qwen2api-loop-2"]
    );
    server.terminate();
    let code = server.exit_code(Duration::from_secs(10)).await;
    let log = read_log(dir.path());
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("loops=3"), "{log}");
}
