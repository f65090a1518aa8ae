//! The phases of a run: the pre-flight check, holding streams open for memory, and one row
//! (direct, then through qwen2api, with CPU and RSS around the proxied phase).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::driver::{Driver, Mode, Via};
use crate::fake::{self, FakeServer, Scenario};
use crate::procstat::{Busy, Proxy, RssSampler};
use crate::report::{Memory, Row, Side};
use crate::{BoxError, EVENT_BYTES, JSON_EVENTS, Plan, STREAM_EVENTS};

/// One request each way, checked in full, so a misconfigured run fails instead of timing
/// error answers.
pub async fn preflight(fake: &FakeServer, driver: &Arc<Driver>) -> Result<(), BoxError> {
    fake.state
        .set_scenario(Scenario::new(JSON_EVENTS, EVENT_BYTES));
    let direct = driver
        .load(Via::Direct, Mode::Json, 1, 1, Duration::from_secs(10))
        .await;
    if direct.ok != 1 {
        return Err(format!("the fake upstream failed: {:?}", direct.first_error).into());
    }
    let (_, body) = driver.proxied(Mode::Json).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    let got = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("");
    let want = fake::answer_text(JSON_EVENTS, EVENT_BYTES);
    if got != want {
        return Err(
            format!("non-stream answer through the proxy: got {got:?}, want {want:?}").into(),
        );
    }
    fake.state
        .set_scenario(Scenario::new(STREAM_EVENTS, EVENT_BYTES));
    let (_, body) = driver.proxied(Mode::Stream).await?;
    let text = String::from_utf8(body)?;
    let mut got = String::new();
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            break;
        }
        let chunk: serde_json::Value = serde_json::from_str(data)?;
        got.push_str(
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or(""),
        );
    }
    let want = fake::answer_text(STREAM_EVENTS, EVENT_BYTES);
    if got != want {
        return Err(
            format!("streamed answer through the proxy: got {got:?}, want {want:?}").into(),
        );
    }
    settle(fake).await;
    Ok(())
}

/// How long after the held streams end (and their connections close) RSS is read again:
/// qwen2api gives freed memory back after a quiet period, and once more 0.6 s later.
pub const AFTER_QUIET: Duration = Duration::from_secs(2);

/// Peak RSS while `n` streams are held open through the proxy, then while they all finish.
pub async fn hold(
    fake: &FakeServer,
    proxy: &Proxy,
    driver: &Arc<Driver>,
    n: usize,
    idle_kib: u64,
) -> Result<Memory, BoxError> {
    // Connections of its own, closed after the streams end.
    let driver = Arc::new(driver.with_new_connections());
    let mut s = Scenario::new(STREAM_EVENTS, EVENT_BYTES);
    s.hold = true;
    fake.state.set_scenario(s);
    fake.state.rearm();
    let sampler = RssSampler::start(proxy.pid);
    let opened = Arc::new(AtomicUsize::new(0));
    eprintln!("holding {n} streams open through qwen2api …");
    let started = Instant::now();
    let holder = tokio::spawn({
        let driver = Arc::clone(&driver);
        let opened = Arc::clone(&opened);
        async move { driver.hold_streams(n, 100, opened).await }
    });
    while opened.load(Ordering::Acquire) < n
        && !holder.is_finished()
        && started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let open_time = started.elapsed();
    // Ten more samples with everything open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak_held_kib = sampler.stop();
    let sampler = RssSampler::start(proxy.pid);
    fake.state.release();
    let load = holder.await?;
    settle(fake).await;
    let peak_release_kib = sampler.stop();
    // With the client connections closed and quiet, qwen2api gives freed memory back
    // (`src/allocator.rs`).
    drop(driver);
    tokio::time::sleep(AFTER_QUIET).await;
    let after_kib = proxy.rss_kib()?;
    if load.errors > 0 {
        return Err(format!(
            "{} of {n} held streams failed, first: {}",
            load.errors,
            load.first_error.as_deref().unwrap_or("?")
        )
        .into());
    }
    Ok(Memory {
        idle_kib,
        peak_held_kib,
        peak_release_kib,
        after_kib,
        streams: n,
        opened: opened.load(Ordering::Acquire),
        open_time,
        load,
    })
}

#[expect(clippy::too_many_arguments, reason = "one call site, all plain inputs")]
pub async fn row(
    plan: &Plan,
    fake: &FakeServer,
    proxy: &Proxy,
    driver: &Arc<Driver>,
    name: String,
    mode: Mode,
    concurrency: usize,
    requests: usize,
) -> Result<Row, BoxError> {
    let driver = &Arc::new(driver.with_new_connections());
    eprintln!("{name}, concurrency {concurrency}: direct …");
    let warmup = requests.min(concurrency.max(10));
    let cap = plan.phase_cap;
    let ticks_per_s = plan.ticks_per_s;
    driver
        .load(Via::Direct, mode, warmup, concurrency, cap)
        .await;
    settle(fake).await;
    let busy = Busy::now(proxy.pid)?;
    let load = driver
        .load(Via::Direct, mode, requests, concurrency, cap)
        .await;
    let settled = settle(fake).await;
    let others = Busy::now(proxy.pid)?.others_since(&busy, load.wall, ticks_per_s);
    let direct = Side {
        load,
        cpu_ticks: None,
        peak_rss_kib: None,
        settled,
        others,
    };

    eprintln!("{name}, concurrency {concurrency}: through qwen2api …");
    driver
        .load(Via::Proxy, mode, warmup, concurrency, cap)
        .await;
    settle(fake).await;
    let sampler = RssSampler::start(proxy.pid);
    let busy = Busy::now(proxy.pid)?;
    let before = proxy.cpu_ticks()?;
    let load = driver
        .load(Via::Proxy, mode, requests, concurrency, cap)
        .await;
    // The proxy deletes chats after answering; that work belongs to the phase.
    let settled = settle(fake).await;
    let after = proxy.cpu_ticks()?;
    let others = Busy::now(proxy.pid)?.others_since(&busy, load.wall, ticks_per_s);
    let proxied = Side {
        load,
        cpu_ticks: Some((
            after.0.saturating_sub(before.0),
            after.1.saturating_sub(before.1),
        )),
        peak_rss_kib: Some(sampler.stop()),
        settled,
        others,
    };
    if let Some(e) = &proxied.load.first_error {
        eprintln!(
            "  {} errors through the proxy, first: {e}",
            proxied.load.errors
        );
    }
    if let Some(e) = &direct.load.first_error {
        eprintln!("  {} errors direct, first: {e}", direct.load.errors);
    }
    Ok(Row {
        name,
        mode,
        concurrency,
        requests,
        direct,
        proxy: proxied,
    })
}

/// Waits until every chat created has been deleted and no stream is open (the proxy deletes
/// in the background); false if that took more than 15 s.
pub async fn settle(fake: &FakeServer) -> bool {
    let started = Instant::now();
    while !fake.state.quiet() {
        if started.elapsed() > Duration::from_secs(15) {
            eprintln!("  (the fake upstream did not settle: some chats were never deleted)");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}
