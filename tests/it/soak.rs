//! A bounded soak: minutes of mixed traffic with about 5 % injected upstream faults, reporting
//! memory and open file descriptors, which must stay flat. Ignored by default; run with
//! `SOAK_SECONDS=180 cargo test --release --test soak -- --ignored --nocapture`.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::binary::Server;
use common::fake_qwen::{End, FakeQwen, Reply};
use common::qwen_sse::{self as sse, RID};
use common::{KEY, body};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// One of the failure replies, chosen by `n`.
fn fault(n: u64) -> Reply {
    match n % 5 {
        0 => Reply::http(502, "text/plain", "bad gateway"),
        1 => Reply::json(
            200,
            serde_json::json!({"success": false, "data": {"code": "Bad_Request", "details": "Internal error"}}),
        ),
        2 => Reply::sse(sse::stream(&[
            sse::created(sse::CHAT_ID, sse::PARENT_ID, RID, "0"),
            sse::answer(RID, "cut", 1),
        ]))
        .end(End::Reset),
        3 => Reply::sse(sse::stream(&[
            sse::created(sse::CHAT_ID, sse::PARENT_ID, RID, "0"),
            sse::finished(RID),
        ])),
        _ => Reply::json(429, serde_json::json!({"detail": "Too Many Requests"})),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak run takes minutes; run it on purpose (see the module docs)"]
async fn soak_with_faults_keeps_memory_and_descriptors_flat() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    // The server runs as its own process, so that its memory is measured alone (the fake
    // upstream in this process keeps a record of every request it serves).
    let fake = FakeQwen::start().await;
    let cookies: Vec<String> = (1..=3)
        .map(|i| format!("token={}", fake.add_token(&format!("acct{i}"))))
        .collect();
    let (cookies, base) = (cookies.join(","), fake.base_url());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("API_KEY", KEY),
            ("QWEN_COOKIES", &cookies),
            ("QWEN_BASE_URL", &base),
            ("DATA_SAVE_MODE", "file"),
            ("DATA_DIR", "data"),
            ("TRANSIENT_COOLDOWN_SECONDS", "0"),
            ("RATE_LIMIT_COOLDOWN_SECONDS", "0.2"),
            ("RATE_LIMIT_COOLDOWN_MAX_SECONDS", "0.2"),
            ("MAX_INFLIGHT_PER_ACCOUNT", "0"),
            ("LOG_LEVEL", "warn"),
        ],
    );
    let pid = server.child.id();
    let url = server.url("/v1/chat/completions");
    let http = reqwest::Client::new();
    let (done, failed, seq) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(1)),
    );
    let run = |until: Instant| {
        (0..8)
            .map(|worker| {
                let (fake, http, url, done, failed, seq) = (
                    fake.clone(),
                    http.clone(),
                    url.clone(),
                    Arc::clone(&done),
                    Arc::clone(&failed),
                    Arc::clone(&seq),
                );
                tokio::spawn(async move {
                    while Instant::now() < until {
                        // A cheap LCG: about 1 request in 20 meets an injected fault.
                        let n = seq
                            .fetch_add(1, Ordering::Relaxed)
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .rotate_right(29);
                        if n % 20 == 0 {
                            fake.push_completion(None, fault(n / 20));
                        }
                        let req = http
                            .post(&url)
                            .bearer_auth(KEY)
                            .json(&body("qwen3.7-plus", worker % 2 == 0));
                        let Ok(resp) = req.send().await else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let ok = resp.status() == 200
                            && resp.text().await.is_ok_and(|t| !t.contains("\"error\""));
                        if ok { &done } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    // Warm up, then measure from a settled baseline.
    for h in run(Instant::now() + Duration::from_secs(seconds.min(20) / 4)) {
        h.await.unwrap();
    }
    let (rss0, fds0) = (rss_kib(pid), open_fds(pid));
    let start = Instant::now();
    for h in run(start + Duration::from_secs(seconds)) {
        h.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss1, fds1) = (rss_kib(pid), open_fds(pid));
    let (ok, bad) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "soak: {ok} answered, {bad} failed ({} per mille) in {:?}; RSS {rss0} → {rss1} KiB ({:+} KiB); fds {fds0} → {fds1}",
        bad * 1000 / (ok + bad).max(1),
        start.elapsed(),
        i128::from(rss1) - i128::from(rss0),
    );
    assert!(ok > 0);
    assert!(
        bad * 100 <= (ok + bad) * 5,
        "failures stay below the injected rate thanks to failover"
    );
    assert!(fds1 <= fds0 + 16, "file descriptors leak: {fds0} → {fds1}");
    assert!(
        rss1 <= rss0 + 32 * 1024,
        "memory grows: {rss0} → {rss1} KiB"
    );
    drop(server);
}
