//! The results: per-row figures, the table printed to the terminal and the JSON file.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::driver::{Load, Mode};

/// One side (direct or through the proxy) of a row.
pub struct Side {
    pub load: Load,
    /// qwen2api's (user, system) CPU over the phase, in clock ticks (proxy side only).
    pub cpu_ticks: Option<(u64, u64)>,
    /// qwen2api's highest RSS sampled during the phase (proxy side only).
    pub peak_rss_kib: Option<u64>,
    /// False when the background chat deletions had not all arrived in time.
    pub settled: bool,
    /// Share of the machine (all cores) used by other processes during the phase.
    pub others: Option<f64>,
}

pub struct Row {
    pub name: String,
    pub mode: Mode,
    pub concurrency: usize,
    pub requests: usize,
    pub direct: Side,
    pub proxy: Side,
}

pub struct Memory {
    pub idle_kib: u64,
    pub peak_held_kib: u64,
    /// Highest RSS while the held streams were let go all at once.
    pub peak_release_kib: u64,
    /// RSS `phases::AFTER_QUIET` after they finished and their connections were closed.
    pub after_kib: u64,
    pub streams: usize,
    pub opened: usize,
    pub open_time: Duration,
    pub load: Load,
}

pub struct Startup {
    pub trials: Vec<Duration>,
}

impl Startup {
    pub fn median(&self) -> Duration {
        let mut t = self.trials.clone();
        t.sort_unstable();
        t.get(t.len() / 2).copied().unwrap_or_default()
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "counts and microseconds far below 2^52"
)]
fn f(n: u64) -> f64 {
    n as f64
}

fn count(n: usize) -> f64 {
    f(u64::try_from(n).unwrap_or(u64::MAX))
}

/// Nearest-rank percentile of sorted microseconds, in ms.
fn pct_ms(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * count(sorted.len())).ceil();
    // `rank` is within 1..=len here, so the conversion cannot truncate.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "bounded above"
    )]
    let i = (rank as usize).clamp(1, sorted.len()) - 1;
    Some(f(sorted[i]) / 1000.0)
}

fn rps(load: &Load) -> Option<f64> {
    let s = load.wall.as_secs_f64();
    (load.ok > 0 && s > 0.0).then(|| count(load.ok) / s)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn mib(kib: u64) -> f64 {
    f(kib) / 1024.0
}

impl Side {
    fn cpu_ms_per_request(&self, ticks_per_s: u64) -> Option<f64> {
        let (user, sys) = self.cpu_ticks?;
        let ticks = user + sys;
        (self.load.ok > 0).then(|| f(ticks) * 1000.0 / f(ticks_per_s) / count(self.load.ok))
    }

    fn json(&self, mode: Mode, ticks_per_s: u64) -> Value {
        let l = &self.load;
        let lat = |p| pct_ms(&l.total_us, p);
        let ttfb = |p| pct_ms(&l.ttfb_us, p);
        let mut v = json!({
            "ok": l.ok,
            "errors": l.errors,
            "first_error": l.first_error,
            "wall_s": l.wall.as_secs_f64(),
            "rps": rps(l),
            "latency_ms": {"p50": lat(50.0), "p90": lat(90.0), "p99": lat(99.0), "max": lat(100.0)},
            "settled": self.settled,
            "other_processes_cpu_share": self.others,
        });
        if mode == Mode::Stream {
            v["ttfb_ms"] = json!({"p50": ttfb(50.0), "p90": ttfb(90.0), "p99": ttfb(99.0)});
            v["ttlb_ms"] = v["latency_ms"].clone();
        }
        if let Some((user, sys)) = self.cpu_ticks {
            v["cpu_ticks"] = json!({"user": user, "system": sys});
            v["cpu_ms_per_request"] = json!(self.cpu_ms_per_request(ticks_per_s));
        }
        if l.ok > 0 {
            v["reads_per_response"] = json!(f(l.chunks) / count(l.ok));
        }
        if let Some(k) = self.peak_rss_kib {
            v["peak_rss_mib"] = json!(mib(k));
        }
        v
    }
}

impl Row {
    pub fn json(&self, ticks_per_s: u64) -> Value {
        let (d, p) = (&self.direct.load, &self.proxy.load);
        let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
        let mut v = json!({
            "row": self.name,
            "mode": match self.mode { Mode::Json => "non-stream", Mode::Stream => "stream" },
            "concurrency": self.concurrency,
            "requests": self.requests,
            "direct": self.direct.json(self.mode, ticks_per_s),
            "proxy": self.proxy.json(self.mode, ticks_per_s),
            "ratio_proxy_over_direct": {
                "rps": ratio(rps(p), rps(d)),
                "p50": ratio(pct_ms(&p.total_us, 50.0), pct_ms(&d.total_us, 50.0)),
                "p99": ratio(pct_ms(&p.total_us, 99.0), pct_ms(&d.total_us, 99.0)),
            },
            "added_latency_ms": {
                "p50": diff(pct_ms(&p.total_us, 50.0), pct_ms(&d.total_us, 50.0)),
                "p99": diff(pct_ms(&p.total_us, 99.0), pct_ms(&d.total_us, 99.0)),
            },
        });
        if self.mode == Mode::Stream {
            v["added_latency_ms"]["ttfb_p50"] =
                json!(diff(pct_ms(&p.ttfb_us, 50.0), pct_ms(&d.ttfb_us, 50.0)));
        }
        v
    }
}

fn opt(v: Option<f64>, decimals: usize, width: usize) -> String {
    v.map_or_else(
        || format!("{:>width$}", "-"),
        |x| format!("{x:>width$.decimals$}"),
    )
}

/// The terminal table: one line per row, latency = time to last byte.
pub fn table(rows: &[Row], ticks_per_s: u64) -> String {
    let mut out = String::new();
    let others = |r: &Row| match (r.direct.others, r.proxy.others) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let busiest = rows.iter().filter_map(others).fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "{:<38} {:>4} {:>6} | {:>8} {:>8} {:>5} | {:>7} {:>7} | {:>7} {:>7} | {:>6} {:>6} | {:>7} | {:>6} | {:>5} | {:>6}",
        "row",
        "C",
        "n",
        "rps dir",
        "proxy",
        "p/d",
        "p50 dir",
        "proxy",
        "p99 dir",
        "proxy",
        "TTFB d",
        "proxy",
        "CPU ms",
        "RSS MB",
        "err",
        "other%"
    );
    let _ = writeln!(out, "{}", "-".repeat(159));
    for r in rows {
        let (d, p) = (&r.direct.load, &r.proxy.load);
        let ttfb = |l: &Load| {
            if r.mode == Mode::Stream {
                opt(pct_ms(&l.ttfb_us, 50.0), 2, 6)
            } else {
                format!("{:>6}", "-")
            }
        };
        let _ = writeln!(
            out,
            "{:<38} {:>4} {:>6} | {} {} {} | {} {} | {} {} | {} {} | {} | {} | {:>5} | {}",
            r.name,
            r.concurrency,
            p.ok,
            opt(rps(d), 0, 8),
            opt(rps(p), 0, 8),
            opt(ratio(rps(p), rps(d)), 2, 5),
            opt(pct_ms(&d.total_us, 50.0), 2, 7),
            opt(pct_ms(&p.total_us, 50.0), 2, 7),
            opt(pct_ms(&d.total_us, 99.0), 2, 7),
            opt(pct_ms(&p.total_us, 99.0), 2, 7),
            ttfb(d),
            ttfb(p),
            opt(r.proxy.cpu_ms_per_request(ticks_per_s), 3, 7),
            opt(r.proxy.peak_rss_kib.map(mib), 1, 6),
            format!("{}/{}", d.errors, p.errors),
            opt(others(r).map(|x| 100.0 * x), 0, 6),
        );
    }
    if busiest > 0.10 {
        let _ = writeln!(
            out,
            "warning: other processes used up to {:.0}% of the machine during a phase; \
             requests/s and latency are not reliable (CPU ms per request is less affected)",
            100.0 * busiest
        );
    }
    out
}

pub fn memory_lines(m: &Memory, startup: &Startup) -> String {
    let per_stream = per_stream_kib(m.peak_held_kib, m.idle_kib, m.streams);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "memory: idle {:.1} MiB after start; peak {:.1} MiB with {} open streams ({} opened \
         in {:.2} s) => {:.1} KiB per open stream; {:.1} MiB peak while they all finish, {:.1} \
         MiB {} s after they finished and their connections closed",
        mib(m.idle_kib),
        mib(m.peak_held_kib),
        m.streams,
        m.opened,
        m.open_time.as_secs_f64(),
        per_stream,
        mib(m.peak_release_kib),
        mib(m.after_kib),
        crate::phases::AFTER_QUIET.as_secs(),
    );
    let trials: Vec<String> = startup
        .trials
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
        .collect();
    let _ = writeln!(
        out,
        "start-up: {:.1} ms median from spawn to an accepted TCP connection ({} runs: {} ms)",
        startup.median().as_secs_f64() * 1000.0,
        startup.trials.len(),
        trials.join(", ")
    );
    out
}

fn per_stream_kib(peak: u64, idle: u64, streams: usize) -> f64 {
    f(peak.saturating_sub(idle)) / count(streams.max(1))
}

pub fn memory_json(m: &Memory, startup: &Startup) -> Value {
    json!({
        "idle_rss_mib": mib(m.idle_kib),
        "peak_rss_held_mib": mib(m.peak_held_kib),
        "peak_rss_release_mib": mib(m.peak_release_kib),
        "rss_after_release_mib": mib(m.after_kib),
        "open_streams": m.streams,
        "streams_opened": m.opened,
        "open_time_s": m.open_time.as_secs_f64(),
        "held_streams_completed": m.load.ok,
        "held_stream_errors": m.load.errors,
        "held_first_error": m.load.first_error,
        "rss_per_open_stream_kib": per_stream_kib(m.peak_held_kib, m.idle_kib, m.streams),
        "startup_ms": {
            "median": startup.median().as_secs_f64() * 1000.0,
            "runs": startup.trials.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
        },
    })
}
