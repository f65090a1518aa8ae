//! The qwen2api child process: spawned with a clean environment, killed when dropped (also on
//! error and panic), and measured through /proc (CPU ticks, resident memory, start-up time).

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// A running qwen2api; killed and reaped on drop.
pub struct Proxy {
    child: std::process::Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// Spawn → first accepted TCP connection.
    pub startup: Duration,
}

impl Proxy {
    /// Starts `bin` in a fresh directory under `dir` (no `.env`, no data from an earlier
    /// process; its log beside that directory) with exactly `env`, listening on a free loopback port, and waits until the
    /// port accepts a connection.
    pub async fn start(bin: &Path, dir: &Path, env: &[(String, String)]) -> io::Result<Proxy> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // The log beside the working directory, not in it: nothing that a watcher of the
        // folder where a `.env` would be sees written at every line.
        let home = dir.join(format!("qwen2api-{port}"));
        let dir = home.join("work");
        fs::create_dir_all(&dir)?;
        let log = home.join("qwen2api.log");
        let out = fs::File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.current_dir(&dir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LISTEN_ADDRESS", "127.0.0.1")
            .env("SERVICE_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let started = Instant::now();
        let child = cmd.spawn()?;
        let mut proxy = Proxy {
            pid: child.id(),
            child,
            addr,
            log,
            startup: Duration::ZERO,
        };
        // Blocking connects with 1 ms pauses: finer than the runtime's timer allows.
        let waited = tokio::task::spawn_blocking(move || wait_for_port(addr, started))
            .await
            .map_err(io::Error::other)?;
        let Some(startup) = waited else {
            let exited = proxy.child.try_wait()?;
            return Err(io::Error::other(format!(
                "qwen2api did not accept connections on {addr} within 10 s \
                 (exit status: {exited:?}); its log:\n{}",
                proxy.log_tail(30)
            )));
        };
        proxy.startup = startup;
        Ok(proxy)
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// (user, system) CPU time in clock ticks.
    pub fn cpu_ticks(&self) -> io::Result<(u64, u64)> {
        cpu_ticks(self.pid)
    }

    pub fn rss_kib(&self) -> io::Result<u64> {
        rss_kib(self.pid)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the child binds it right after).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(addr: SocketAddr, started: Instant) -> Option<Duration> {
    while started.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Clock ticks per second for /proc/<pid>/stat times (`getconf CLK_TCK`, else 100).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// utime and stime of the whole process (all threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> io::Result<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; everything after its ')' is plain.
    let (_, rest) = stat
        .rsplit_once(')')
        .ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no field {n} in /proc/{pid}/stat")))
    };
    Ok((field(14)?, field(15)?))
}

/// VmRSS in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// CPU time the whole machine spent busy, and how much of it was this benchmark's own (this
/// process and qwen2api): the rest is other work that competed with the measurement.
#[derive(Clone, Copy)]
pub struct Busy {
    machine: u64,
    ours: u64,
}

impl Busy {
    pub fn now(proxy_pid: u32) -> io::Result<Self> {
        let stat = fs::read_to_string("/proc/stat")?;
        let cpu = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .ok_or_else(|| io::Error::other("no cpu line in /proc/stat"))?;
        // user nice system idle iowait irq softirq steal …: all but idle and iowait are busy.
        let machine = cpu
            .split_whitespace()
            .skip(1)
            .take(8)
            .enumerate()
            .filter(|(i, _)| !matches!(i, 3 | 4))
            .filter_map(|(_, v)| v.parse::<u64>().ok())
            .sum();
        let (u, s) = cpu_ticks(std::process::id())?;
        let (pu, ps) = cpu_ticks(proxy_pid)?;
        Ok(Self {
            machine,
            ours: u + s + pu + ps,
        })
    }

    /// The share of the whole machine (all cores) that other processes used since `before`;
    /// `None` when the phase was too short for clock ticks to say.
    #[expect(clippy::cast_precision_loss, reason = "tick counts far below 2^52")]
    pub fn others_since(&self, before: &Busy, wall: Duration, ticks_per_s: u64) -> Option<f64> {
        let others = (self.machine.saturating_sub(before.machine))
            .saturating_sub(self.ours.saturating_sub(before.ours));
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let capacity = wall.as_secs_f64() * ticks_per_s as f64 * cores as f64;
        (capacity >= 50.0).then(|| (others as f64 / capacity).min(1.0))
    }
}

/// Samples a process's RSS every 50 ms and keeps the highest value.
pub struct RssSampler {
    pid: u32,
    peak: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let task = tokio::spawn({
            let peak = Arc::clone(&peak);
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                loop {
                    tick.tick().await;
                    if let Ok(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                }
            }
        });
        Self { pid, peak, task }
    }

    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Takes a last sample and returns the peak in KiB.
    pub fn stop(self) -> u64 {
        self.task.abort();
        if let Ok(kib) = rss_kib(self.pid) {
            self.peak.fetch_max(kib, Ordering::Relaxed);
        }
        self.peak_kib()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The soft limit on open files of this process (children inherit it).
pub fn open_files_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A scratch directory removed on drop: the child's working directory, so no `.env` is read.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("qwen2api-bench-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
