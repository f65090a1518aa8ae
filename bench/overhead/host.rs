//! The machine the run happens on: its description for the results, and a warning when the
//! binary to measure is older than the sources.

use std::path::Path;
use std::time::SystemTime;

use crate::manifest_dir;

/// nproc, CPU model, memory, kernel and the commit measured.
pub fn machine() -> serde_json::Value {
    let cmd = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .current_dir(manifest_dir())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
    };
    let nproc = cmd("nproc", &[])
        .and_then(|s| s.parse::<usize>().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| format!("{} MiB RAM", kib / 1024));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned());
    let commit = cmd("git", &["rev-parse", "--short", "HEAD"]).map(|c| {
        let dirty = cmd("git", &["status", "--porcelain", "--", "src", "Cargo.toml"])
            .is_some_and(|s| !s.is_empty());
        if dirty { format!("{c}+changes") } else { c }
    });
    serde_json::json!({
        "nproc": nproc,
        "cpu": cpu,
        "memory": memory,
        "kernel": kernel,
        "commit": commit,
    })
}

/// A binary older than the sources measures yesterday's code: say so.
pub fn warn_if_stale(bin: &Path) {
    fn newest(p: &Path) -> Option<SystemTime> {
        let meta = std::fs::metadata(p).ok()?;
        if !meta.is_dir() {
            return meta.modified().ok();
        }
        std::fs::read_dir(p)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| newest(&e.path()))
            .max()
    }
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok();
    let sources = newest(&manifest_dir().join("src"));
    if let (Some(built), Some(sources)) = (built, sources)
        && sources > built
    {
        eprintln!(
            "overhead: warning: {} is older than src/; run bench/run to rebuild it",
            bin.display()
        );
    }
}
