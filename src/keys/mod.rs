//! Downstream keys: those configured (`API_KEY`, `ADMIN_KEY`) and those created at runtime
//! (stored hashed, shown once). Identifies callers in constant time.
//! `usage` counts what each key (and each account) used; `limits` what a runtime key may use.

pub mod limits;
pub mod usage;

use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{KeysConfig, Secret};
use crate::store::{KeyLimits, KeyRecord, Store, StoreError, now_ms};

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// `key_id` is `admin` for `ADMIN_KEY`, `env-1` when the first `API_KEY` is also the admin
    /// key (no `ADMIN_KEY` set): its requests count under the key's own id.
    Admin { key_id: &'static str },
    /// `key_id` is `env-<n>` for the n-th `API_KEY`, else the runtime key's id.
    User { key_id: String },
}

impl Caller {
    pub fn key_id(&self) -> &str {
        match self {
            Caller::Admin { key_id } => key_id,
            Caller::User { key_id } => key_id,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin { .. })
    }
}

/// A key as listed by the admin API (never its plaintext).
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyView {
    pub id: String,
    pub label: String,
    pub key: String,
    pub created: Option<i64>,
    pub source: &'static str,
    /// `null` for keys from `API_KEY`, which have no limits.
    pub limits: Option<KeyLimits>,
}

pub struct KeyRing {
    env: ArcSwap<KeysConfig>,
    runtime: ArcSwap<Vec<KeyRecord>>,
    store: Arc<dyn Store>,
}

impl KeyRing {
    pub async fn load(cfg: &KeysConfig, store: Arc<dyn Store>) -> Result<Arc<Self>, StoreError> {
        let runtime = store.list_keys().await?;
        Ok(Arc::new(Self {
            env: ArcSwap::from_pointee(cfg.clone()),
            runtime: ArcSwap::from_pointee(runtime),
            store,
        }))
    }

    /// Takes the configured keys of a reloaded configuration.
    pub fn set_env(&self, cfg: &KeysConfig) {
        self.env.store(Arc::new(cfg.clone()));
    }

    /// Re-reads runtime keys (another replica may have created or revoked some).
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let keys = self.store.list_keys().await?;
        self.runtime.store(Arc::new(keys));
        Ok(())
    }

    /// Every key is compared, so the time taken does not tell which one nearly matched.
    pub fn identify(&self, presented: &str) -> Option<Caller> {
        let env = self.env.load();
        let mut found: Option<Caller> = None;
        if env.admin_key.as_ref().is_some_and(|k| k.matches(presented)) {
            found = Some(Caller::Admin {
                key_id: if env.admin_from_first_api_key {
                    "env-1"
                } else {
                    "admin"
                },
            });
        }
        for (i, k) in env.api_keys.iter().enumerate() {
            if k.matches(presented) && found.is_none() {
                found = Some(Caller::User {
                    key_id: format!("env-{}", i + 1),
                });
            }
        }
        let hash = hash_key(presented);
        for k in self.runtime.load().iter() {
            let same: bool = k.hash.as_bytes().ct_eq(hash.as_bytes()).into();
            if same && found.is_none() {
                found = Some(Caller::User {
                    key_id: k.id.clone(),
                });
            }
        }
        found
    }

    /// Creates a key; its plaintext is returned here and never again.
    pub async fn create(
        &self,
        label: &str,
        limits: KeyLimits,
    ) -> Result<(KeyRecord, Secret), StoreError> {
        let plain = format!("sk-q2a-{}", uuid::Uuid::new_v4().simple());
        let rec = KeyRecord {
            id: format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            label: label.to_owned(),
            hash: hash_key(&plain),
            hint: mask(&plain),
            created_at: now_ms(),
            limits,
        };
        self.store.insert_key(&rec).await?;
        self.refresh().await?;
        Ok((rec, Secret::new(plain)))
    }

    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.store.delete_key(id).await?;
        self.refresh().await?;
        Ok(removed)
    }

    /// Replaces a runtime key's limits; false when there is no such key.
    pub async fn set_limits(&self, id: &str, limits: &KeyLimits) -> Result<bool, StoreError> {
        let changed = self.store.set_key_limits(id, limits).await?;
        self.refresh().await?;
        Ok(changed)
    }

    /// The limits of the runtime key `key_id`, when it has any (keys from `API_KEY` and
    /// `ADMIN_KEY` have none). As of the last refresh: edits made through another replica
    /// arrive with the next one (`STATUS_SYNC_SECONDS`).
    pub fn limits(&self, key_id: &str) -> Option<KeyLimits> {
        self.runtime
            .load()
            .iter()
            .find(|k| k.id == key_id)
            .filter(|k| !k.limits.is_none())
            .map(|k| k.limits.clone())
    }

    /// Whether `id` names a key from `API_KEY`/`ADMIN_KEY` (revoked by editing those).
    pub fn is_configured(&self, id: &str) -> bool {
        let env = self.env.load();
        match id
            .strip_prefix("env-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => (1..=env.api_keys.len()).contains(&n),
            None => id == "admin" && env.admin_key.is_some(),
        }
    }

    /// The label of the key `key_id` names, as the request log shows it: `ADMIN_KEY`,
    /// `API_KEY` (with its number past the first), or a runtime key's own label.
    pub fn label(&self, key_id: &str) -> Option<String> {
        if key_id == "admin" {
            return Some("ADMIN_KEY".to_owned());
        }
        if let Some(n) = key_id
            .strip_prefix("env-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            return Some(if n == 1 {
                "API_KEY".to_owned()
            } else {
                format!("API_KEY #{n}")
            });
        }
        self.runtime
            .load()
            .iter()
            .find(|k| k.id == key_id)
            .map(|k| k.label.clone())
    }

    /// Whether the admin key is the first `API_KEY` (no `ADMIN_KEY` set), as now configured.
    pub fn admin_from_first_api_key(&self) -> bool {
        self.env.load().admin_from_first_api_key
    }

    pub fn list(&self) -> Vec<KeyView> {
        let env = self.env.load();
        let mut out: Vec<KeyView> = env
            .api_keys
            .iter()
            .enumerate()
            .map(|(i, k)| KeyView {
                id: format!("env-{}", i + 1),
                label: "API_KEY".to_owned(),
                key: mask(k.expose()),
                created: None,
                source: "env",
                limits: None,
            })
            .collect();
        out.extend(self.runtime.load().iter().map(|k| KeyView {
            id: k.id.clone(),
            label: k.label.clone(),
            key: k.hint.clone(),
            created: Some(k.created_at),
            source: "runtime",
            limits: Some(k.limits.clone()),
        }));
        out
    }
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// `sk-q2a-…9f3c`: enough to recognise a key, not to use it.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "…".to_owned();
    }
    let head: String = chars.iter().take(4).collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn cfg() -> KeysConfig {
        KeysConfig {
            api_keys: vec![Secret::new("sk-user-1"), Secret::new("sk-user-2")],
            admin_key: Some(Secret::new("sk-admin")),
            admin_from_first_api_key: false,
        }
    }

    #[tokio::test]
    async fn identifies_every_kind_of_key() {
        let ring = KeyRing::load(&cfg(), Arc::new(MemoryStore::new()))
            .await
            .unwrap();
        assert_eq!(
            ring.identify("sk-admin"),
            Some(Caller::Admin { key_id: "admin" })
        );
        assert_eq!(
            ring.identify("sk-user-2"),
            Some(Caller::User {
                key_id: "env-2".into()
            })
        );
        assert_eq!(ring.identify("sk-user"), None);
        let (rec, plain) = ring.create("ci", KeyLimits::default()).await.unwrap();
        assert_eq!(
            ring.identify(plain.expose()),
            Some(Caller::User {
                key_id: rec.id.clone()
            })
        );
        assert!(
            !ring
                .list()
                .iter()
                .any(|k| k.key.contains(&plain.expose()[7..]))
        );
        assert!(
            ring.create("ci", KeyLimits::default()).await.is_err(),
            "duplicate label"
        );
        assert_eq!(ring.limits(&rec.id), None, "no limits set");
        let limits = KeyLimits {
            requests_per_minute: Some(3),
            ..KeyLimits::default()
        };
        assert!(ring.set_limits(&rec.id, &limits).await.unwrap());
        assert_eq!(ring.limits(&rec.id), Some(limits.clone()));
        assert!(!ring.set_limits("key_none", &limits).await.unwrap());
        assert_eq!(ring.limits("env-1"), None);
        assert_eq!(ring.label(&rec.id).as_deref(), Some("ci"));
        assert_eq!(ring.label("env-2").as_deref(), Some("API_KEY #2"));
        assert_eq!(ring.label("admin").as_deref(), Some("ADMIN_KEY"));
        assert!(ring.revoke(&rec.id).await.unwrap());
        assert_eq!(ring.identify(plain.expose()), None);
        assert_eq!(ring.label(&rec.id), None);
    }

    #[test]
    fn masks_keep_only_the_ends() {
        assert_eq!(mask("sk-q2a-0123456789abcdef"), "sk-q…cdef");
        assert_eq!(mask("short"), "…");
    }

    #[tokio::test]
    async fn the_first_api_key_standing_in_for_the_admin_key_keeps_its_own_id() {
        let cfg = KeysConfig {
            api_keys: vec![Secret::new("sk-user-1"), Secret::new("sk-user-2")],
            admin_key: Some(Secret::new("sk-user-1")),
            admin_from_first_api_key: true,
        };
        let ring = KeyRing::load(&cfg, Arc::new(MemoryStore::new()))
            .await
            .unwrap();
        let caller = ring.identify("sk-user-1").unwrap();
        assert!(caller.is_admin());
        assert_eq!(caller.key_id(), "env-1");
    }
}
