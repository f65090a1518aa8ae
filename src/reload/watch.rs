//! The `.env` watcher: wakes when something in the file's folder may have replaced or
//! rewritten the file, and reloads once the writes have settled. notify watches the folder on
//! every platform; only events about the file itself, and of the kinds that can change it,
//! wake the reloader (a log file appended to beside `.env` does not).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{file_changed, reload};
use crate::server::AppState;

/// Editors write in several steps: a reload waits this long after the first event of a burst.
const SETTLE: Duration = Duration::from_millis(300);

/// Watching stops when this is dropped.
pub struct Watch {
    _notifier: notifier::Notifier,
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
    let notifier = notifier::Notifier::start(&dir, name, tx)?;
    let applier = tokio::spawn(apply_changes(state.clone(), rx));
    tracing::info!(file = %file.display(), "watching the configuration file");
    Some(Watch {
        _notifier: notifier,
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

mod notifier {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    use notify::{Event, Watcher};

    use super::{OsString, Path, concerns, mpsc};

    /// notify's own watcher (inotify, kqueue, FSEvents, ReadDirectoryChangesW) on the folder;
    /// it stops when dropped.
    pub struct Notifier {
        _watcher: notify::RecommendedWatcher,
    }

    impl Notifier {
        pub fn start(dir: &Path, name: OsString, tx: mpsc::UnboundedSender<()>) -> Option<Self> {
            let mut watcher =
                notify::recommended_watcher(move |res: notify::Result<Event>| match res {
                    Ok(ev) if relevant(&ev, &name) => {
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "the configuration watcher failed"),
                })
                .map_err(|e| tracing::warn!(error = %e, "cannot watch the configuration file"))
                .ok()?;
            if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the configuration folder");
                return None;
            }
            Some(Self { _watcher: watcher })
        }
    }

    /// Whether `ev` may have changed the file `name`: a creation (a symlink too), a write
    /// (while going on, or closed), a rename in or out, a deletion; and any event after which
    /// the watcher lost track (an overflow may have dropped the one that mattered). Not an
    /// open, a read or a change of metadata. Other files in the folder (a log appended to
    /// beside `.env`) never count.
    pub(super) fn relevant(ev: &Event, name: &OsString) -> bool {
        if ev.need_rescan() {
            return true;
        }
        let kind = match ev.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Any
            | EventKind::Other => true,
            EventKind::Modify(ModifyKind::Metadata(_)) | EventKind::Access(_) => false,
            EventKind::Modify(_) => true,
        };
        kind && ev.paths.iter().any(|p| concerns(p.file_name(), name))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::notifier::Notifier;

    /// Waits up to `limit` for a wake-up.
    async fn woke(rx: &mut mpsc::UnboundedReceiver<()>, limit: Duration) -> bool {
        tokio::time::timeout(limit, rx.recv()).await.is_ok()
    }

    #[tokio::test]
    async fn appending_to_a_log_beside_the_file_wakes_nothing_and_rewriting_the_file_does() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "A=1\n").unwrap();
        let mut log = std::fs::File::create(dir.path().join("qwen2api.log")).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _notifier = Notifier::start(dir.path(), ".env".into(), tx).unwrap();

        for i in 0..100 {
            writeln!(log, "line {i}").unwrap();
            log.flush().unwrap();
        }
        drop(log);
        std::fs::write(dir.path().join("other.txt"), "x").unwrap();
        assert!(
            !woke(&mut rx, Duration::from_millis(500)).await,
            "woken by another file"
        );
        std::fs::write(dir.path().join(".env"), "A=2\n").unwrap();
        assert!(woke(&mut rx, Duration::from_secs(5)).await, "the rewrite");
    }

    #[tokio::test]
    async fn a_file_moved_into_place_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _notifier = Notifier::start(dir.path(), ".env".into(), tx).unwrap();
        let tmp = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
        std::fs::write(tmp.path(), "A=3\n").unwrap();
        assert!(!woke(&mut rx, Duration::from_millis(300)).await);
        tmp.persist(dir.path().join(".env")).unwrap();
        assert!(woke(&mut rx, Duration::from_secs(5)).await, "the rename");
    }

    #[tokio::test]
    async fn a_deleted_file_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "A=1\n").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _notifier = Notifier::start(dir.path(), ".env".into(), tx).unwrap();
        std::fs::remove_file(dir.path().join(".env")).unwrap();
        assert!(woke(&mut rx, Duration::from_secs(5)).await, "the deletion");
    }
}
