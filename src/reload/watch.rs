//! The `.env` watcher: wakes when something in the file's folder may have replaced or
//! rewritten the file, and reloads once the writes have settled. On Linux it asks inotify only
//! for writes that were closed, creations, moves and deletions, so a log file being appended to
//! beside `.env` does not wake it at every line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{file_changed, reload};
use crate::state::AppState;

/// Editors write in several steps: a reload waits this long after the first event of a burst.
const SETTLE: Duration = Duration::from_millis(300);

/// Watching stops when this is dropped.
pub struct Watch {
    _source: source::Source,
    applier: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.applier.abort();
    }
}

/// Watches the `.env` file's folder (editors and Docker replace the file rather than write it)
/// and reloads when the file changes. `None` when there is nothing to watch or the folder
/// cannot be watched (logged).
pub fn watch(state: &AppState) -> Option<Watch> {
    let reloader = state.reloader()?;
    let file = reloader.env_file().to_path_buf();
    let name = file.file_name()?.to_owned();
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let source = source::Source::start(&dir, name, tx)?;
    let applier = tokio::spawn(apply_changes(state.clone(), rx));
    tracing::info!(file = %file.display(), "watching the configuration file");
    Some(Watch {
        _source: source,
        applier,
    })
}

/// Reloads after each burst of events in which the file's bytes changed.
async fn apply_changes(state: AppState, mut rx: mpsc::UnboundedReceiver<()>) {
    while rx.recv().await.is_some() {
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        let Some(reloader) = state.reloader() else {
            break;
        };
        if !file_changed(reloader) {
            continue;
        }
        if let Err(e) = reload(&state).await {
            tracing::error!(error = %e, "configuration change rejected; the previous configuration stays");
        }
    }
}

/// Whether an event about `changed` (a name in the folder) concerns the file `name`.
fn concerns(changed: Option<&std::ffi::OsStr>, name: &OsString) -> bool {
    changed == Some(name.as_os_str())
}

#[cfg(target_os = "linux")]
mod source {
    use super::{OsString, Path, concerns, mpsc};
    use futures::StreamExt;
    use inotify::{EventMask, EventStream, Inotify, WatchMask};
    use tokio::task::JoinHandle;

    /// What can change a file in a folder: a write that was closed, a creation (a symlink
    /// too), a rename in or out, a deletion. Not a write still going on (`IN_MODIFY`), nor an
    /// open or a read.
    const MASK: WatchMask = WatchMask::CLOSE_WRITE
        .union(WatchMask::CREATE)
        .union(WatchMask::MOVED_TO)
        .union(WatchMask::MOVED_FROM)
        .union(WatchMask::DELETE);

    pub struct Source(JoinHandle<()>);

    impl Drop for Source {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    impl Source {
        pub fn start(dir: &Path, name: OsString, tx: mpsc::UnboundedSender<()>) -> Option<Self> {
            let mut events = folder_events(dir)
                .map_err(|e| {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the configuration folder");
                })
                .ok()?;
            Some(Self(tokio::spawn(async move {
                while let Some(ev) = events.next().await {
                    let ev = match ev {
                        Ok(ev) => ev,
                        Err(e) => {
                            tracing::warn!(error = %e, "the configuration watcher stopped");
                            break;
                        }
                    };
                    // An overflow may have dropped the event that mattered.
                    let relevant = ev.mask.contains(EventMask::Q_OVERFLOW)
                        || concerns(ev.name.as_deref(), &name);
                    if relevant && tx.send(()).is_err() {
                        break;
                    }
                }
            })))
        }
    }

    /// The folder's events, as far as `MASK` goes.
    pub(super) fn folder_events(dir: &Path) -> std::io::Result<EventStream<[u8; 1024]>> {
        let inotify = Inotify::init()?;
        inotify.watches().add(dir, MASK)?;
        inotify.into_event_stream([0; 1024])
    }
}

#[cfg(not(target_os = "linux"))]
mod source {
    use super::{OsString, Path, concerns, mpsc};
    use notify::Watcher;

    /// notify's own watcher (kqueue, FSEvents, ReadDirectoryChangesW); it stops when dropped.
    pub struct Source(notify::RecommendedWatcher);

    impl Source {
        pub fn start(dir: &Path, name: OsString, tx: mpsc::UnboundedSender<()>) -> Option<Self> {
            let mut watcher =
                notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                    if let Ok(ev) = res {
                        if ev.paths.iter().any(|p| concerns(p.file_name(), &name)) {
                            let _ = tx.send(());
                        }
                    }
                })
                .map_err(|e| tracing::warn!(error = %e, "cannot watch the configuration file"))
                .ok()?;
            if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the configuration folder");
                return None;
            }
            Some(Self(watcher))
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use futures::StreamExt;

    use super::source::folder_events;

    #[tokio::test]
    async fn appending_to_a_log_beside_the_file_wakes_nothing_and_rewriting_the_file_does() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "A=1\n").unwrap();
        let mut log = std::fs::File::create(dir.path().join("qwen2api.log")).unwrap();
        let mut events = folder_events(dir.path()).unwrap();

        for i in 0..100 {
            writeln!(log, "line {i}").unwrap();
            log.flush().unwrap();
        }
        std::fs::write(dir.path().join(".env"), "A=2\n").unwrap();

        // Events come in order: the first one is the rewrite, so the appends made none.
        let first = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event for the rewrite")
            .unwrap()
            .unwrap();
        assert_eq!(first.name.as_deref(), Some(std::ffi::OsStr::new(".env")));
        assert!(
            first.mask.contains(inotify::EventMask::CLOSE_WRITE),
            "{:?}",
            first.mask
        );
        drop(log);
    }

    #[tokio::test]
    async fn a_file_moved_into_place_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let mut events = folder_events(dir.path()).unwrap();
        let tmp = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
        std::fs::write(tmp.path(), "A=3\n").unwrap();
        tmp.persist(dir.path().join(".env")).unwrap();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
                .await
                .expect("an event for the rename")
                .unwrap()
                .unwrap();
            if ev.name.as_deref() == Some(std::ffi::OsStr::new(".env")) {
                assert!(
                    ev.mask.contains(inotify::EventMask::MOVED_TO),
                    "{:?}",
                    ev.mask
                );
                break;
            }
        }
    }
}
