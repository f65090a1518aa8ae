//! Memory after a burst: counts the requests open, and once the server has been quiet for a
//! moment after serving many, asks the allocator to give freed memory back to the system.
//!
//! glibc keeps what a thread freed in that thread's arena and returns only the top of each
//! heap, so after a burst of concurrent requests the process stays near its peak until the
//! next burst reuses it. Kept by measurement (`bench/run --memory`, 1,000 streams held then
//! released, three runs each, one sitting, 2026-12-04; bench/RESULTS.md): RSS 2 s after the
//! burst was 28–32 MiB with this release, 156–178 MiB without it, and glibc's own settings
//! did not help (`MALLOC_ARENA_MAX=2`: 143–186 MiB, `=1`: 174–184 MiB,
//! `trim_threshold=128 KiB`: 164–177 MiB: the freed memory is spread through the heaps, not
//! at their tops). mimalloc instead of glibc was worse on every figure (idle 21 MiB instead
//! of 11, 92 KiB per open stream instead of 61, 96–277 MiB after the burst).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;

/// Requests started since the process began.
static STARTED: AtomicU64 = AtomicU64::new(0);
/// Requests whose response body has not ended (or been dropped) yet.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// How often the quiet check runs; the server must have been quiet for a whole period.
const PERIOD: Duration = Duration::from_millis(200);
/// Requests since the last release before another is worth its arena walk.
const MIN_REQUESTS: u64 = 64;
/// Quiet periods after a release before the one follow-up release (which comes a period
/// later still, 0.6 s after the first): what the burst's client and upstream connections free
/// when they close, after their requests have ended, would otherwise stay until the next burst
/// (27 to 48 MiB a second after 1,000 streams in the benchmark, depending on which came first).
const FOLLOW_UP_PERIODS: u32 = 2;

/// One request, counted open until dropped (with its response body).
pub struct Open(());

impl Open {
    pub fn start() -> Self {
        STARTED.fetch_add(1, Ordering::Relaxed);
        OPEN.fetch_add(1, Ordering::AcqRel);
        Self(())
    }

    /// `body`, holding this request open until it has been sent or dropped.
    pub fn hold(self, body: Body) -> Body {
        crate::server::body::hold(body, self)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Decides when to release: after at least `MIN_REQUESTS` requests since the last time, once a
/// whole period went by with none open and none started; and once more `FOLLOW_UP_PERIODS`
/// quiet periods after that.
#[derive(Debug, Default)]
struct Quiet {
    seen: u64,
    released_at: u64,
    /// Quiet periods left before the follow-up release, if one is due.
    follow_up: Option<u32>,
}

impl Quiet {
    fn tick(&mut self, started: u64, open: usize) -> bool {
        let quiet = open == 0 && started == self.seen;
        self.seen = started;
        if !quiet {
            return false;
        }
        if started - self.released_at >= MIN_REQUESTS {
            self.released_at = started;
            self.follow_up = Some(FOLLOW_UP_PERIODS);
            return true;
        }
        match self.follow_up {
            Some(0) => {
                self.follow_up = None;
                true
            }
            Some(left) => {
                self.follow_up = Some(left - 1);
                false
            }
            None => false,
        }
    }
}

/// Runs for the life of the process (on the background runtime).
pub async fn release_when_quiet() {
    let mut quiet = Quiet::default();
    let mut ticks = tokio::time::interval(PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if quiet.tick(
            STARTED.load(Ordering::Relaxed),
            OPEN.load(Ordering::Acquire),
        ) {
            // The walk locks each arena in turn: off the runtime threads.
            let _ = tokio::task::spawn_blocking(|| {
                let before = resident_kib();
                let released = release_freed();
                tracing::debug!(
                    released,
                    before_kib = before,
                    after_kib = resident_kib(),
                    "returned freed memory"
                );
            })
            .await;
        }
    }
}

/// Resident memory in KiB, if `/proc` tells.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Asks glibc to give its arenas' free pages back (`malloc_trim(0)`); true if any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "malloc_trim has no safe wrapper; the measured release after a burst needs it"
)]
fn release_freed() -> bool {
    // SAFETY: malloc_trim takes no pointers and touches only glibc's own free lists, under
    // the arena locks every other allocator call takes too.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Other allocators (musl, macOS) return large free blocks themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::{FOLLOW_UP_PERIODS, MIN_REQUESTS, Quiet};

    /// The quiet ticks until the next release (`None`: none within 100).
    fn next_release(q: &mut Quiet, started: u64) -> Option<u32> {
        (1..=100).find(|_| q.tick(started, 0))
    }

    #[test]
    fn releases_after_a_burst_goes_quiet_and_once_more_later() {
        let mut q = Quiet::default();
        // A burst: requests keep starting, some open.
        assert!(!q.tick(100, 40));
        assert!(!q.tick(200, 0), "requests started during this period");
        assert!(q.tick(200, 0), "a whole quiet period after 200 requests");
        assert_eq!(next_release(&mut q, 200), Some(FOLLOW_UP_PERIODS + 1));
        assert_eq!(next_release(&mut q, 200), None, "nothing new since");
        // A trickle of fewer than MIN_REQUESTS does not call it again.
        assert!(!q.tick(210, 0));
        assert_eq!(next_release(&mut q, 210), None);
        // Enough new requests, then quiet again.
        let more = 200 + MIN_REQUESTS;
        assert!(!q.tick(more, 0));
        assert!(q.tick(more, 0));
        assert_eq!(next_release(&mut q, more), Some(FOLLOW_UP_PERIODS + 1));
    }

    #[test]
    fn the_follow_up_waits_for_quiet_periods() {
        let mut q = Quiet::default();
        assert!(!q.tick(100, 0));
        assert!(q.tick(100, 0));
        // A few requests after the burst: the periods they start or are open in do not count.
        assert!(!q.tick(103, 0));
        for _ in 0..20 {
            assert!(!q.tick(103, 1));
        }
        assert_eq!(next_release(&mut q, 103), Some(FOLLOW_UP_PERIODS + 1));
    }

    #[test]
    fn never_while_a_request_is_open() {
        let mut q = Quiet::default();
        assert!(!q.tick(500, 1));
        assert!(!q.tick(500, 1), "a stream is still being sent");
        assert!(q.tick(500, 0));
    }

    #[test]
    fn a_release_call_is_harmless() {
        let _ = super::release_freed();
        let _ = super::resident_kib();
    }
}
