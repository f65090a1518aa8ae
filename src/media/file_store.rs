//! `FileStore`: the bytes behind `/v1/files` ids, kept so that a chat on any account can upload
//! them again with that account. On disk under `DATA_DIR/files` (written to a temporary name and
//! renamed, so a crash never leaves half a file), or in memory with `DATA_SAVE_MODE=none`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: String,
    pub filename: String,
    pub bytes: u64,
    pub mime: String,
    pub purpose: String,
    /// Unix seconds.
    pub created_at: u64,
}

pub struct FileStore {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<String, (FileRecord, Bytes)>>,
}

impl FileStore {
    /// `dir: None` keeps files in memory only.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            memory: Mutex::new(HashMap::new()),
        }
    }

    pub async fn put(
        &self,
        filename: &str,
        mime: &str,
        purpose: &str,
        bytes: Bytes,
    ) -> std::io::Result<FileRecord> {
        let meta = FileRecord {
            id: format!("file-{}", uuid::Uuid::new_v4().simple()),
            filename: filename.to_owned(),
            bytes: bytes.len() as u64,
            mime: mime.to_owned(),
            purpose: purpose.to_owned(),
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        match &self.dir {
            None => {
                self.lock().insert(meta.id.clone(), (meta.clone(), bytes));
            }
            Some(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                let json = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
                // Bytes first, then the metadata that makes the id visible.
                write_atomic(dir, &format!("{}.bin", meta.id), &bytes).await?;
                write_atomic(dir, &format!("{}.json", meta.id), &json).await?;
            }
        }
        Ok(meta)
    }

    pub async fn meta(&self, id: &str) -> Option<FileRecord> {
        if !valid_id(id) {
            return None;
        }
        match &self.dir {
            None => self.lock().get(id).map(|(m, _)| m.clone()),
            Some(dir) => {
                let raw = tokio::fs::read(dir.join(format!("{id}.json"))).await.ok()?;
                serde_json::from_slice(&raw).ok()
            }
        }
    }

    pub async fn get(&self, id: &str) -> Option<(FileRecord, Bytes)> {
        let meta = self.meta(id).await?;
        match &self.dir {
            None => self.lock().get(id).map(|(m, b)| (m.clone(), b.clone())),
            Some(dir) => {
                let bytes = tokio::fs::read(dir.join(format!("{id}.bin"))).await.ok()?;
                Some((meta, Bytes::from(bytes)))
            }
        }
    }

    pub async fn delete(&self, id: &str) -> bool {
        if !valid_id(id) {
            return false;
        }
        match &self.dir {
            None => self.lock().remove(id).is_some(),
            Some(dir) => {
                let existed = tokio::fs::remove_file(dir.join(format!("{id}.json")))
                    .await
                    .is_ok();
                let _ = tokio::fs::remove_file(dir.join(format!("{id}.bin"))).await;
                existed
            }
        }
    }

    /// Every file, newest first.
    pub async fn list(&self) -> Vec<FileRecord> {
        let mut out: Vec<FileRecord> = match &self.dir {
            None => self.lock().values().map(|(m, _)| m.clone()).collect(),
            Some(dir) => {
                let mut out = Vec::new();
                if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
                    while let Ok(Some(e)) = entries.next_entry().await {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if let Some(id) = name.strip_suffix(".json")
                            && let Some(m) = self.meta(id).await
                        {
                            out.push(m);
                        }
                    }
                }
                out
            }
        };
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (FileRecord, Bytes)>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ids are ours (`file-<hex>`); anything else never reaches the file system.
fn valid_id(id: &str) -> bool {
    id.strip_prefix("file-").is_some_and(|h| {
        !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

async fn write_atomic(dir: &std::path::Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, data).await?;
    tokio::fs::rename(&tmp, dir.join(name)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(store: FileStore) {
        let meta = store
            .put(
                "a.png",
                "image/png",
                "vision",
                Bytes::from_static(b"\x89PNG"),
            )
            .await
            .unwrap();
        assert!(meta.id.starts_with("file-"));
        let (m, b) = store.get(&meta.id).await.unwrap();
        assert_eq!((m, &b[..]), (meta.clone(), &b"\x89PNG"[..]));
        assert_eq!(store.list().await, std::slice::from_ref(&meta));
        assert!(store.get("../../etc/passwd").await.is_none());
        assert!(store.delete(&meta.id).await);
        assert!(!store.delete(&meta.id).await);
        assert!(store.get(&meta.id).await.is_none());
    }

    #[tokio::test]
    async fn memory_and_disk_behave_alike() {
        round_trip(FileStore::new(None)).await;
        let dir = tempfile::tempdir().unwrap();
        round_trip(FileStore::new(Some(dir.path().join("files")))).await;
    }
}
