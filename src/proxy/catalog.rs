//! The model catalog: the upstream list cached for `MODELS_CACHE_TTL`, the OpenAI ids derived
//! from it (`-thinking`, `-search`, `-thinking-search`, `-image`, `-image-edit`, `-video`,
//! aliases), and resolution of a requested id.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::config::ModelsConfig;
use crate::conversation::ChatType;
use crate::upstream::{ResolvedModel, UpstreamError, UpstreamModel};

/// How long a fallback list is kept before the upstream is asked again.
const FALLBACK_RETRY: Duration = Duration::from_secs(60);

const SUFFIXES: &[(&str, bool, bool)] = &[
    ("-thinking-search", true, true),
    ("-thinking", true, false),
    ("-search", false, true),
];

/// The generation variants `/v1/models` lists, in that order.
const LISTED_MEDIA_SUFFIXES: &[(&str, ChatType)] = &[
    ("-image", ChatType::Image),
    ("-image-edit", ChatType::ImageEdit),
    ("-video", ChatType::Video),
];

/// Generation suffixes and the chat type each selects, longest first (`-draw` is an unlisted
/// alias of `-image`).
const MEDIA_SUFFIXES: &[(&str, ChatType)] = &[
    ("-image-edit", ChatType::ImageEdit),
    ("-image", ChatType::Image),
    ("-draw", ChatType::Image),
    ("-video", ChatType::Video),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelEntry {
    pub id: String,
    pub created: u64,
    pub can_think: bool,
    pub can_search: bool,
    pub must_think: bool,
    /// Generation chat types the model lists (`t2i`, `image_edit`, `t2v`).
    pub media: Vec<ChatType>,
}

impl ModelEntry {
    pub fn supports(&self, t: ChatType) -> bool {
        match t {
            ChatType::Text => true,
            ChatType::Search => self.can_search,
            _ => self.media.contains(&t),
        }
    }
}

impl From<&UpstreamModel> for ModelEntry {
    fn from(m: &UpstreamModel) -> Self {
        Self {
            id: m.id.clone(),
            created: m.info.as_ref().and_then(|i| i.created_at).unwrap_or(0),
            can_think: m.can_think(),
            can_search: m.can_search(),
            must_think: m.must_think(),
            media: m
                .chat_types()
                .iter()
                .filter_map(|t| ChatType::parse(t))
                .filter(|t| t.feature().is_some())
                .collect(),
        }
    }
}

/// One fetched (or fallback) list.
#[derive(Debug)]
pub struct KnownModels {
    pub models: Vec<ModelEntry>,
    pub fetched: Instant,
    /// The built-in list, served because the upstream's could not be had.
    pub fallback: bool,
}

/// A model `/v1/models` lists: an id a client can ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedModel {
    pub id: String,
    /// Unix seconds, as the upstream gives it (0 for an alias).
    pub created: u64,
}

pub struct Catalog {
    cfg: ModelsConfig,
    current: RwLock<Option<Arc<KnownModels>>>,
    refreshing: tokio::sync::Mutex<()>,
    /// The built-in list stands in because a fetch made without any usable account failed:
    /// once an account can fetch, it is fetched at once (else unknown ids would pass through
    /// to the upstream, for up to a minute, instead of being 404).
    fallback_without_account: AtomicBool,
}

impl Catalog {
    pub fn new(cfg: ModelsConfig) -> Self {
        Self {
            cfg,
            current: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            fallback_without_account: AtomicBool::new(false),
        }
    }

    fn fresh(&self, with_account: bool) -> Option<Arc<KnownModels>> {
        let snap = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        if snap.fallback && with_account && self.fallback_without_account.load(Ordering::Relaxed) {
            return None;
        }
        let ttl = if snap.fallback {
            self.cfg.cache_ttl.min(FALLBACK_RETRY)
        } else {
            self.cfg.cache_ttl
        };
        (snap.fetched.elapsed() < ttl).then_some(snap)
    }

    /// The current list, fetched with `fetch` when missing or stale. One fetch at a time; a
    /// failed fetch keeps a stale upstream list if there is one, else serves the built-in list.
    /// `with_account`: whether `fetch` uses an account's credentials.
    pub async fn snapshot<F, Fut>(&self, with_account: bool, fetch: F) -> Arc<KnownModels>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<UpstreamModel>, UpstreamError>>,
    {
        if let Some(s) = self.fresh(with_account) {
            return s;
        }
        let _guard = self.refreshing.lock().await;
        if let Some(s) = self.fresh(with_account) {
            return s;
        }
        let fetched = fetch().await;
        self.fallback_without_account
            .store(fetched.is_err() && !with_account, Ordering::Relaxed);
        let snap = match fetched {
            Ok(list) if !list.is_empty() => KnownModels {
                models: list.iter().map(ModelEntry::from).collect(),
                fetched: Instant::now(),
                fallback: false,
            },
            result => {
                let why = result
                    .err()
                    .map_or_else(|| "empty list".to_owned(), |e| e.to_string());
                let stale = self
                    .current
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if let Some(stale) = stale.filter(|s| !s.fallback) {
                    tracing::warn!(error = %why, "cannot refresh the model list; keeping the previous one");
                    return stale;
                }
                tracing::warn!(error = %why, "cannot fetch the upstream model list; serving the built-in list");
                KnownModels {
                    models: fallback(),
                    fetched: Instant::now(),
                    fallback: true,
                }
            }
        };
        let snap = Arc::new(snap);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&snap));
        snap
    }

    /// The OpenAI ids clients can pick from, in upstream order, then the aliases.
    pub fn list(&self, snap: &KnownModels) -> Vec<ListedModel> {
        let mut out = Vec::new();
        let mut push = |id: String, created: u64| out.push(ListedModel { id, created });
        for m in &snap.models {
            push(m.id.clone(), m.created);
            if self.cfg.simple_map {
                continue;
            }
            for (suffix, think, search) in SUFFIXES.iter().rev() {
                if (!think || m.can_think) && (!search || m.can_search) {
                    push(format!("{}{suffix}", m.id), m.created);
                }
            }
            for (suffix, t) in LISTED_MEDIA_SUFFIXES {
                if m.supports(*t) {
                    push(format!("{}{suffix}", m.id), m.created);
                }
            }
        }
        for alias in self.cfg.aliases.keys() {
            push(alias.clone(), 0);
        }
        out
    }

    /// Maps a requested id to an upstream model; `None` when it names no model we serve. While
    /// the built-in list is in use, unknown ids are passed through as given.
    pub fn resolve(&self, snap: &KnownModels, requested: &str) -> Option<ResolvedModel> {
        let requested = self
            .cfg
            .aliases
            .get(requested)
            .map_or(requested, String::as_str);
        let lower = requested.to_ascii_lowercase();
        if let Some((base, t)) = MEDIA_SUFFIXES
            .iter()
            .find_map(|(s, t)| lower.strip_suffix(s).map(|b| (&requested[..b.len()], *t)))
        {
            let base = self.cfg.aliases.get(base).map_or(base, String::as_str);
            let found = snap.models.iter().find(|m| m.id.eq_ignore_ascii_case(base));
            return match found {
                Some(m) if m.supports(t) => Some(ResolvedModel {
                    upstream_id: m.id.clone(),
                    thinking: false,
                    search: false,
                    must_think: false,
                    media: Some(t),
                }),
                None if snap.fallback && !base.is_empty() => Some(ResolvedModel {
                    upstream_id: base.to_owned(),
                    thinking: false,
                    search: false,
                    must_think: false,
                    media: Some(t),
                }),
                Some(_) | None => None,
            };
        }
        let (base, thinking, search) = SUFFIXES
            .iter()
            .find_map(|(s, t, q)| {
                lower
                    .strip_suffix(s)
                    .map(|b| (&requested[..b.len()], *t, *q))
            })
            .unwrap_or((requested, false, false));
        let base = self.cfg.aliases.get(base).map_or(base, String::as_str);
        let found = snap.models.iter().find(|m| m.id.eq_ignore_ascii_case(base));
        match found {
            Some(m) if (!thinking || m.can_think) && (!search || m.can_search) => {
                Some(ResolvedModel {
                    upstream_id: m.id.clone(),
                    thinking,
                    search,
                    must_think: m.must_think,
                    media: None,
                })
            }
            None if snap.fallback && !base.is_empty() => Some(ResolvedModel {
                upstream_id: base.to_owned(),
                thinking,
                search,
                must_think: false,
                media: None,
            }),
            Some(_) | None => None,
        }
    }
}

/// Served when the upstream list cannot be fetched.
fn fallback() -> Vec<ModelEntry> {
    let entry = |id: &str, can_think: bool, can_search: bool, must_think: bool| ModelEntry {
        id: id.to_owned(),
        created: 0,
        can_think,
        can_search,
        must_think,
        media: vec![ChatType::Image, ChatType::ImageEdit, ChatType::Video],
    };
    vec![
        entry("qwen3.7-plus", true, true, false),
        entry("qwen3.7-max", true, true, false),
        entry("qwen3.8-max", true, true, true),
        entry("qwen3-max", true, true, false),
        entry("qwen3-coder-plus", false, true, false),
        entry("qwen3-vl-plus", true, true, false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn catalog(simple: bool) -> (Catalog, KnownModels) {
        let mut aliases = BTreeMap::new();
        aliases.insert("gpt-4o".to_owned(), "qwen3.7-plus".to_owned());
        let c = Catalog::new(ModelsConfig {
            simple_map: simple,
            cache_ttl: Duration::from_secs(60),
            aliases,
        });
        let snap = KnownModels {
            models: vec![
                ModelEntry {
                    id: "qwen3.7-plus".into(),
                    created: 1,
                    can_think: true,
                    can_search: true,
                    must_think: false,
                    media: vec![ChatType::Image, ChatType::Video],
                },
                ModelEntry {
                    id: "qwen3-coder-plus".into(),
                    created: 2,
                    can_think: false,
                    can_search: false,
                    must_think: false,
                    media: vec![],
                },
            ],
            fetched: Instant::now(),
            fallback: false,
        };
        (c, snap)
    }

    #[test]
    fn variants_follow_capabilities() {
        let (c, snap) = catalog(false);
        let ids: Vec<String> = c.list(&snap).into_iter().map(|m| m.id).collect();
        assert_eq!(
            ids,
            [
                "qwen3.7-plus",
                "qwen3.7-plus-search",
                "qwen3.7-plus-thinking",
                "qwen3.7-plus-thinking-search",
                "qwen3.7-plus-image",
                "qwen3.7-plus-video",
                "qwen3-coder-plus",
                "gpt-4o"
            ]
        );
        let (c, snap) = catalog(true);
        assert_eq!(c.list(&snap).len(), 3);
    }

    #[test]
    fn resolution() {
        let (c, snap) = catalog(false);
        let r = c.resolve(&snap, "Qwen3.7-Plus-Thinking-Search").unwrap();
        assert_eq!(
            (r.upstream_id.as_str(), r.thinking, r.search),
            ("qwen3.7-plus", true, true)
        );
        let r = c.resolve(&snap, "gpt-4o-thinking").unwrap();
        assert_eq!((r.upstream_id.as_str(), r.thinking), ("qwen3.7-plus", true));
        assert!(c.resolve(&snap, "gpt-4o").is_some());
        assert!(c.resolve(&snap, "qwen3-coder-plus-thinking").is_none());
        assert!(c.resolve(&snap, "nope").is_none());
        let fb = KnownModels {
            fallback: true,
            ..snap
        };
        assert_eq!(c.resolve(&fb, "nope-search").unwrap().upstream_id, "nope");
        let r = c.resolve(&fb, "qwen3.7-plus-draw").unwrap();
        assert_eq!(r.media, Some(ChatType::Image));
        let r = c.resolve(&fb, "gpt-4o-video").unwrap();
        assert_eq!(
            (r.upstream_id.as_str(), r.media),
            ("qwen3.7-plus", Some(ChatType::Video))
        );
        assert_eq!(
            c.resolve(&fb, "nope-image-edit").unwrap().media,
            Some(ChatType::ImageEdit)
        );
        let (c, snap) = catalog(false);
        assert!(
            c.resolve(&snap, "qwen3.7-plus-image-edit").is_none(),
            "not listed by the model"
        );
        assert!(c.resolve(&snap, "qwen3-coder-plus-image").is_none());
    }
}
