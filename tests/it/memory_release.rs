//! The real binary gives freed memory back once it goes quiet after a burst (and once more a
//! second later), and not while a stream is still being sent.

use crate::common;

use std::time::Duration;

use common::binary::{Server, read_log};
use common::fake_qwen::{End, FakeQwen, Reply, Split};
use common::qwen_sse as sse;

const RELEASED: &str = "returned freed memory";

/// Times "returned freed memory" is in the log once it is there or `limit` has passed.
async fn releases(dir: &std::path::Path, limit: Duration) -> usize {
    common::eventually(limit, || read_log(dir).contains(RELEASED)).await;
    read_log(dir).matches(RELEASED).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freed_memory_goes_back_after_a_burst_once_no_stream_is_open() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    fake.set_default_completion(Reply::sse_with(sse::fast_answer(&["Hi"]), Split::Odd));
    let dir = tempfile::tempdir().unwrap();
    let base = fake.base_url();
    let server = Server::start(
        dir.path(),
        &[
            ("API_KEY", "sk-mem"),
            ("QWEN_AUTH_TOKEN", &token),
            ("QWEN_BASE_URL", &base),
            ("DATA_SAVE_MODE", "none"),
            ("MAX_INFLIGHT_PER_ACCOUNT", "0"),
            ("LOG_LEVEL", "info,qwen2api=debug"),
        ],
    );
    let http = reqwest::Client::new();
    let ask = |stream: bool| {
        http.post(server.url("/v1/chat/completions"))
            .bearer_auth("sk-mem")
            .json(&serde_json::json!({"model":"qwen3.7-plus","stream":stream,"messages":[{"role":"user","content":"hi"}]}))
            .send()
    };

    // A stream whose upstream goes silent stays open: 80 requests around it are not enough.
    fake.push_completion(
        None,
        Reply::sse_with(sse::fast_answer(&["Hi"]), Split::AtEvents).end(End::Hang),
    );
    let held = ask(true).await.unwrap();
    assert_eq!(held.status(), 200);
    let burst = (0..80).map(|_| async {
        let resp = ask(false).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    });
    futures::future::join_all(burst).await;
    assert_eq!(
        releases(dir.path(), Duration::from_millis(800)).await,
        0,
        "released while a stream was open"
    );

    // Once its client hangs up, the next quiet period gives the memory back, and one more
    // release 0.6 s later takes what closing connections freed; then no more.
    drop(held);
    assert_eq!(releases(dir.path(), Duration::from_secs(5)).await, 1);
    let count = || read_log(dir.path()).matches(RELEASED).count();
    common::eventually(Duration::from_secs(5), || count() == 2).await;
    assert_eq!(count(), 2);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(count(), 2);
    server.terminate();
    assert_eq!(server.exit_code(Duration::from_secs(10)).await, Some(0));
}
