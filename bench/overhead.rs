//! qwen2api's overhead benchmark (issue 5): the same load sent to a fast fake upstream directly
//! and through the release binary, side by side, with the proxy's CPU per request, its memory
//! idle and under 1,000 open streams, and its start-up time. Run with `bench/run [--quick]`.

#[path = "../tests/it/common/qwen_sse.rs"]
#[expect(
    dead_code,
    reason = "the benchmark uses a few of the tests' event builders"
)]
mod qwen_sse;

#[path = "overhead/driver.rs"]
mod driver;
#[path = "overhead/fake.rs"]
mod fake;
#[path = "overhead/host.rs"]
mod host;
#[path = "overhead/phases.rs"]
mod phases;
#[path = "overhead/procstat.rs"]
mod procstat;
#[path = "overhead/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use driver::{Driver, Mode};
use fake::{FakeServer, Scenario};
use procstat::{Proxy, TempDir};
use report::{Row, Startup};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const API_KEY: &str = "sk-bench";
const UPSTREAM_TOKEN: &str = "bench-token";
/// Answer events per non-stream request, and per streamed request; bytes of text per event.
const JSON_EVENTS: usize = 20;
const STREAM_EVENTS: usize = 200;
const EVENT_BYTES: usize = 8;
/// The real site's chat creation takes 0.3–0.6 s; this row shows what a pool of pre-created
/// chats (`CHAT_PREWARM`) saves: run it with the pool on as `BENCH_PROXY_CHAT_PREWARM=4`.
const SLOW_CHAT_NEW: Duration = Duration::from_millis(50);
/// The real site sends its tokens tens of milliseconds apart, so the proxy sleeps between
/// events; this row shows what waking up for each event costs (1 ms apart keeps it short).
const PACED_EVENT_GAP: Duration = Duration::from_millis(1);
const PACED_CONCURRENCY: usize = 16;
/// Proxy environment variables may be added or overridden as `BENCH_PROXY_<NAME>=value`.
const PROXY_ENV_PREFIX: &str = "BENCH_PROXY_";

/// How much work a run does.
struct Plan {
    quick: bool,
    concurrencies: &'static [usize],
    json_requests: usize,
    stream_requests: usize,
    slow_chat_requests: usize,
    paced_requests: usize,
    /// A phase stops early after this long (its request count is then lower).
    phase_cap: Duration,
    open_streams: usize,
    startup_runs: usize,
    ticks_per_s: u64,
    /// `--rows TEXT`: only the load rows whose name contains TEXT, without the memory and
    /// start-up phases and without writing JSON (for profiling one kind of load).
    rows: Option<String>,
    /// `--memory`: only the memory phase, without writing JSON (for comparing allocator
    /// settings, e.g. `BENCH_PROXY_MALLOC_ARENA_MAX=2 bench/run --memory`).
    memory_only: bool,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let ticks_per_s = procstat::clock_ticks_per_second();
        if quick {
            Self {
                quick,
                concurrencies: &[1, 16],
                json_requests: 20,
                stream_requests: 20,
                slow_chat_requests: 10,
                paced_requests: 16,
                phase_cap: Duration::from_secs(5),
                open_streams: 100,
                startup_runs: 2,
                ticks_per_s,
                rows: None,
                memory_only: false,
            }
        } else {
            Self {
                quick,
                concurrencies: &[1, 16, 64, 256],
                json_requests: 4000,
                stream_requests: 2000,
                slow_chat_requests: 100,
                paced_requests: 480,
                phase_cap: Duration::from_secs(20),
                open_streams: 1000,
                startup_runs: 5,
                ticks_per_s,
                rows: None,
                memory_only: false,
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench targets without it,
    // and a benchmark is never a timed test.
    if !args.iter().any(|a| a == "--bench") {
        println!("overhead: benchmark not run in test mode; use bench/run [--quick]");
        return ExitCode::SUCCESS;
    }
    let mut plan = Plan::new(args.iter().any(|a| a == "--quick"));
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--bench" | "--quick" => {}
            "--rows" => plan.rows = rest.next().cloned(),
            "--memory" => plan.memory_only = true,
            // For profiling: more requests per row, so that a profiler has time to attach.
            "--requests" => {
                if let Some(n) = rest.next().and_then(|n| n.parse().ok()) {
                    plan.json_requests = n;
                    plan.stream_requests = n;
                }
            }
            _ => eprintln!("overhead: ignoring unknown argument {a:?}"),
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("overhead: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overhead: {e}");
            ExitCode::FAILURE
        }
    }
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[expect(
    clippy::too_many_lines,
    reason = "the phases in the order they run, one after another, read top to bottom"
)]
async fn run(plan: &Plan) -> Result<(), BoxError> {
    let bin = std::env::var_os("QWEN2API_BIN").map_or_else(
        || manifest_dir().join("target/release/qwen2api"),
        PathBuf::from,
    );
    if !bin.is_file() {
        return Err(format!(
            "{} not found: build it with `cargo build --release --bin qwen2api` (bench/run does)",
            bin.display()
        )
        .into());
    }
    host::warn_if_stale(&bin);
    let machine = host::machine();
    let ticks_per_s = plan.ticks_per_s;
    println!(
        "machine: {} cores ({}), {}; qwen2api {}{}",
        machine["nproc"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory"].as_str().unwrap_or("?"),
        machine["commit"].as_str().unwrap_or("?"),
        if plan.quick { "; --quick" } else { "" },
    );

    let mut open_streams = plan.open_streams;
    if let Some(limit) = procstat::open_files_limit() {
        // The driver's and the fake's ends of every stream live in this process.
        let need = 2 * u64::try_from(open_streams).unwrap_or(u64::MAX) + 256;
        if limit < need {
            open_streams = usize::try_from(limit.saturating_sub(256) / 2)
                .unwrap_or(0)
                .max(1);
            eprintln!(
                "overhead: open-file limit {limit} is too low for {} streams; holding {open_streams} \
                 (raise it with `ulimit -n`, as bench/run does)",
                plan.open_streams
            );
        }
    }

    let fake = fake::start().await?;
    let dir = TempDir::new()?;
    let env = proxy_env(&fake);

    if plan.rows.is_some() {
        let proxy = Proxy::start(&bin, &dir.0, &env).await?;
        println!("qwen2api pid {}", proxy.pid);
        let rows = measure(plan, &fake, &proxy).await?;
        print!("\n{}", report::table(&rows, ticks_per_s));
        return Ok(());
    }

    let mut startup = Startup { trials: Vec::new() };
    for _ in 0..plan.startup_runs {
        if plan.memory_only {
            break;
        }
        let p = Proxy::start(&bin, &dir.0, &env).await?;
        startup.trials.push(p.startup);
    }

    // Memory gets a process of its own, so that neither the held streams nor the load rows
    // leave the other an allocator already grown.
    let proxy = Proxy::start(&bin, &dir.0, &env).await?;
    startup.trials.push(proxy.startup);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let idle_kib = proxy.rss_kib()?;
    let driver = driver_for(&fake, &proxy);
    let memory = phases::hold(&fake, &proxy, &driver, open_streams, idle_kib)
        .await
        .map_err(|e| with_log(&e, &proxy))?;
    drop(proxy);
    if plan.memory_only {
        print!("{}", report::memory_lines(&memory, &startup));
        return Ok(());
    }

    let proxy = Proxy::start(&bin, &dir.0, &env).await?;
    startup.trials.push(proxy.startup);
    let rows = measure(plan, &fake, &proxy).await?;
    drop(proxy);

    print!("\n{}", report::table(&rows, ticks_per_s));
    println!(
        "latency = time to last byte; C = concurrency; n = requests through the proxy; \
         CPU = qwen2api user+system ms per request ({ticks_per_s} ticks/s); \
         RSS = qwen2api peak in the phase"
    );
    print!("{}", report::memory_lines(&memory, &startup));

    let results = serde_json::json!({
        "generated_unix": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "quick": plan.quick,
        "machine": machine,
        "clock_ticks_per_s": ticks_per_s,
        "settings": {
            "json_events": JSON_EVENTS,
            "stream_events": STREAM_EVENTS,
            "event_bytes": EVENT_BYTES,
            "upstream_body_bytes": {
                "non_stream": Scenario::new(JSON_EVENTS, EVENT_BYTES).body_len(),
                "stream": Scenario::new(STREAM_EVENTS, EVENT_BYTES).body_len(),
            },
            "slow_chat_new_ms": u64::try_from(SLOW_CHAT_NEW.as_millis()).unwrap_or(0),
            "phase_cap_s": plan.phase_cap.as_secs(),
            "proxy_env": env.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "API_KEY" | "QWEN_AUTH_TOKEN"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        },
        "rows": rows.iter().map(|r| r.json(ticks_per_s)).collect::<Vec<_>>(),
        "memory_startup": report::memory_json(&memory, &startup),
    });
    let name = if plan.quick {
        "quick.json"
    } else {
        "latest.json"
    };
    let out = manifest_dir().join("bench/results").join(name);
    std::fs::create_dir_all(out.parent().unwrap_or(manifest_dir()))?;
    std::fs::write(&out, serde_json::to_string_pretty(&results)? + "\n")?;
    println!("results: {}", out.display());
    Ok(())
}

/// A load driver for the fake directly and for this proxy.
fn driver_for(fake: &FakeServer, proxy: &Proxy) -> Arc<Driver> {
    Arc::new(Driver::new(
        &fake.base_url,
        &format!("http://{}", proxy.addr),
        UPSTREAM_TOKEN,
        API_KEY,
    ))
}

fn with_log(e: &BoxError, proxy: &Proxy) -> BoxError {
    format!("{e}\nqwen2api's last log lines:\n{}", proxy.log_tail(20)).into()
}

/// The load rows, on a proxy that has served nothing yet; a failure comes with its log tail.
async fn measure(plan: &Plan, fake: &FakeServer, proxy: &Proxy) -> Result<Vec<Row>, BoxError> {
    let driver = driver_for(fake, proxy);
    load_rows(plan, fake, proxy, &driver)
        .await
        .map_err(|e| with_log(&e, proxy))
}

async fn load_rows(
    plan: &Plan,
    fake: &FakeServer,
    proxy: &Proxy,
    driver: &Arc<Driver>,
) -> Result<Vec<Row>, BoxError> {
    phases::preflight(fake, driver).await?;
    let mut rows = Vec::new();
    let specs = [
        (Mode::Json, JSON_EVENTS, plan.json_requests),
        (Mode::Stream, STREAM_EVENTS, plan.stream_requests),
    ];
    // `--rows` picks rows by a part of their name, or one row by its name and concurrency.
    let wanted = |name: &str, c: usize| {
        plan.rows
            .as_ref()
            .is_none_or(|r| name.contains(r.as_str()) || *r == format!("{name} C={c}"))
    };
    for (mode, events, requests) in specs {
        for &c in plan.concurrencies {
            let name = match mode {
                Mode::Json => format!("non-stream, {events} events"),
                Mode::Stream => format!("stream, {events} events x {EVENT_BYTES} B"),
            };
            if !wanted(&name, c) {
                continue;
            }
            fake.state.set_scenario(Scenario::new(events, EVENT_BYTES));
            rows.push(phases::row(plan, fake, proxy, driver, name, mode, c, requests).await?);
        }
    }
    let mut paced = Scenario::new(STREAM_EVENTS, EVENT_BYTES);
    paced.event_delay = PACED_EVENT_GAP;
    let name = format!(
        "stream, {STREAM_EVENTS} events {} ms apart",
        PACED_EVENT_GAP.as_millis()
    );
    if wanted(&name, PACED_CONCURRENCY) {
        fake.state.set_scenario(paced);
        let (c, n) = (PACED_CONCURRENCY, plan.paced_requests);
        rows.push(phases::row(plan, fake, proxy, driver, name, Mode::Stream, c, n).await?);
    }
    let mut slow = Scenario::new(JSON_EVENTS, EVENT_BYTES);
    slow.chat_new_delay = SLOW_CHAT_NEW;
    fake.state.set_scenario(slow);
    let name = format!(
        "non-stream, chats/new delayed {} ms",
        SLOW_CHAT_NEW.as_millis()
    );
    let n = plan.slow_chat_requests;
    if !wanted(&name, 1) {
        return Ok(rows);
    }
    rows.push(phases::row(plan, fake, proxy, driver, name, Mode::Json, 1, n).await?);
    Ok(rows)
}

/// The proxy's environment: one token account pointed at the fake, with no cap on its
/// requests in flight (pacing is policy, not overhead), keep-alives and idle timeouts out of
/// the way of held streams, then any `BENCH_PROXY_*` overrides.
fn proxy_env(fake: &FakeServer) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("API_KEY", API_KEY),
        ("QWEN_AUTH_TOKEN", UPSTREAM_TOKEN),
        ("QWEN_BASE_URL", fake.base_url.as_str()),
        ("LOG_LEVEL", "info"),
        // Plain log lines, so that the tail shown on failure is readable.
        ("NO_COLOR", "1"),
        ("CHAT_CLEANUP", "true"),
        // One-shot requests: a kept chat would wait an hour for its conversation's next turn,
        // and the fake would not settle. `BENCH_PROXY_CONVERSATION_CONTINUATION=true` measures
        // what filing each answer costs.
        ("CONVERSATION_CONTINUATION", "false"),
        ("MAX_INFLIGHT_PER_ACCOUNT", "0"),
        ("SSE_KEEPALIVE_SECONDS", "600"),
        ("UPSTREAM_IDLE_TIMEOUT_SECONDS", "900"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in std::env::vars() {
        let Some(name) = k.strip_prefix(PROXY_ENV_PREFIX) else {
            continue;
        };
        env.retain(|(existing, _)| existing != name);
        env.push((name.to_owned(), v));
    }
    env
}
