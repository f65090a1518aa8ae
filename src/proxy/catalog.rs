//! The model catalog: the upstream list cached for `MODELS_CACHE_TTL`, the OpenAI ids derived
//! from it (`-thinking`, `-search`, `-thinking-search`, `-image`, `-image-edit`, `-video`,
//! aliases), and resolution of a requested id (aliases, alias patterns, Claude defaults).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::config::ModelsConfig;
use crate::conversation::ChatType;
use crate::upstream::{ResolvedModel, Site, UpstreamError, UpstreamModel};

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
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent capabilities the upstream lists, not states"
)]
pub struct ModelEntry {
    pub id: String,
    pub created: u64,
    pub can_think: bool,
    pub can_search: bool,
    pub must_think: bool,
    /// Takes text chat: lists `t2t` among its chat types, or lists none.
    pub chat: bool,
    /// Generation chat types the model lists (`t2i`, `image_edit`, `t2v`).
    pub media: Vec<ChatType>,
    /// Its context length in tokens, when the list gives one.
    pub context: Option<u64>,
    /// The sites that serve it (filled in when the list is made; empty: any).
    pub sites: Vec<Site>,
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
            chat: m.chat_types().is_empty() || m.chat_types().iter().any(|t| t == "t2t"),
            media: m
                .chat_types()
                .iter()
                .filter_map(|t| ChatType::parse(t))
                .filter(|t| t.feature().is_some())
                .collect(),
            context: m.context_length(),
            sites: Vec::new(),
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
    /// The site that serves it (the first, when several do).
    pub owner: Site,
}

pub struct Catalog {
    cfg: ModelsConfig,
    current: RwLock<Option<Arc<KnownModels>>>,
    refreshing: tokio::sync::Mutex<()>,
    /// The built-in list stands in because a fetch made without any usable account failed:
    /// once an account can fetch, it is fetched at once (else unknown ids would pass through
    /// to the upstream, for up to a minute, instead of being 404).
    fallback_without_account: AtomicBool,
    /// A Claude override missing from the upstream list has been logged.
    warned_override: AtomicBool,
    /// The site whose model list is fetched (and whose models an id passed through is for).
    fetched_from: Site,
    /// Models other sites serve, from the configuration (they publish no list).
    configured: Vec<(Site, Vec<String>)>,
}

impl Catalog {
    pub fn new(cfg: ModelsConfig) -> Self {
        Self {
            cfg,
            current: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            fallback_without_account: AtomicBool::new(false),
            warned_override: AtomicBool::new(false),
            fetched_from: Site::default(),
            configured: Vec::new(),
        }
    }

    /// The site the list is fetched from, and the configured models of the others: each
    /// model lists the sites that serve it (a fetched one may be served by another site too).
    #[must_use]
    pub fn with_sites(mut self, fetched_from: Site, configured: Vec<(Site, Vec<String>)>) -> Self {
        self.fetched_from = fetched_from;
        self.configured = configured;
        self
    }

    /// Marks the fetched models with their site and adds the configured ones.
    fn add_sites(&self, mut models: Vec<ModelEntry>) -> Vec<ModelEntry> {
        for m in &mut models {
            if m.sites.is_empty() {
                m.sites.push(self.fetched_from);
            }
        }
        for (site, ids) in &self.configured {
            for id in ids {
                match models.iter_mut().find(|m| m.id.eq_ignore_ascii_case(id)) {
                    Some(m) if !m.sites.contains(site) => m.sites.push(*site),
                    Some(_) => {}
                    None => models.push(ModelEntry {
                        id: id.clone(),
                        created: 0,
                        can_think: true,
                        can_search: true,
                        must_think: false,
                        chat: true,
                        media: Vec::new(),
                        context: None,
                        sites: vec![*site],
                    }),
                }
            }
        }
        models
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
                models: self.add_sites(list.iter().map(ModelEntry::from).collect()),
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
                    models: self.add_sites(fallback()),
                    fetched: Instant::now(),
                    fallback: true,
                }
            }
        };
        let snap = Arc::new(snap);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&snap));
        snap
    }

    /// The OpenAI ids clients can pick from, in upstream order, then the exact aliases (a
    /// pattern names no single id to list).
    pub fn list(&self, snap: &KnownModels) -> Vec<ListedModel> {
        let mut out = Vec::new();
        let fetched = self.fetched_from;
        let mut push = |id: String, created: u64, owner: Site| {
            out.push(ListedModel { id, created, owner });
        };
        for m in &snap.models {
            let owner = m.sites.first().copied().unwrap_or(fetched);
            push(m.id.clone(), m.created, owner);
            if self.cfg.simple_map {
                continue;
            }
            for (suffix, think, search) in SUFFIXES.iter().rev() {
                if (!think || m.can_think) && (!search || m.can_search) {
                    push(format!("{}{suffix}", m.id), m.created, owner);
                }
            }
            for (suffix, t) in LISTED_MEDIA_SUFFIXES {
                if m.supports(*t) {
                    push(format!("{}{suffix}", m.id), m.created, owner);
                }
            }
        }
        for alias in self.cfg.aliases.listed() {
            push(alias.to_owned(), 0, fetched);
        }
        out
    }

    /// Maps a requested id to an upstream model; `None` when it names no model we serve. While
    /// the built-in list is in use, unknown ids are passed through as given.
    ///
    /// In order: an exact alias of the whole id; then, with the suffix taken off, an exact
    /// alias of the rest, an upstream id, the first matching alias pattern, a pattern matching
    /// the whole id, the built-in Claude defaults. A suffix applies on top of an alias target,
    /// which may carry its own suffix.
    pub fn resolve(&self, snap: &KnownModels, requested: &str) -> Option<ResolvedModel> {
        let requested = without_context_tag(requested);
        let aliases = &self.cfg.aliases;
        if let Some(target) = aliases.exact(requested) {
            let (base, v) = split(target);
            return self.build(snap, aliases.exact(base).unwrap_or(base), v, None);
        }
        let (base, v) = split(requested);
        if let Some(target) = aliases.exact(base) {
            return self.on_target(snap, target, v, None);
        }
        if snap.find(base).is_some() {
            return self.build(snap, base, v, None);
        }
        if let Some(target) = aliases.pattern(base) {
            return self.on_target(snap, target, v, None);
        }
        if let Some(target) = aliases.pattern(requested) {
            return self.on_target(snap, target, Variant::default(), None);
        }
        if let Some((target, var)) = self.claude_default(snap, base) {
            return self.on_target(snap, target, v, var);
        }
        self.build(snap, base, v, None)
    }

    /// What a Claude id stands for when no alias names it: Haiku ids the small model, other
    /// `claude-` ids the default one; each is the configured override (with the variable it
    /// came from) or else chosen from the list ([`KnownModels::strong`], [`KnownModels::fast`]).
    fn claude_default<'a>(
        &'a self,
        snap: &'a KnownModels,
        base: &str,
    ) -> Option<(&'a str, Option<&'static str>)> {
        let lower = base.to_ascii_lowercase();
        if !lower.starts_with("claude-") {
            return None;
        }
        let small = lower.contains("haiku");
        let (var, configured) = if small {
            ("ANTHROPIC_SMALL_MODEL", &self.cfg.anthropic_small_model)
        } else {
            ("ANTHROPIC_DEFAULT_MODEL", &self.cfg.anthropic_default_model)
        };
        if let Some(id) = configured {
            return Some((id.as_str(), Some(var)));
        }
        let chosen = if small { snap.fast() } else { snap.strong() }?;
        Some((chosen.id.as_str(), None))
    }

    /// An alias target (which may carry its own suffix) with the requested suffix on top.
    fn on_target(
        &self,
        snap: &KnownModels,
        target: &str,
        requested: Variant,
        configured_by: Option<&'static str>,
    ) -> Option<ResolvedModel> {
        let (base, own) = split(target);
        self.build(snap, base, requested.over(own), configured_by)
    }

    /// The upstream model `base` with the variant `v`, if the model offers it. An id missing
    /// from the list passes through while the built-in list is in use, or when the variable
    /// `configured_by` named it (an override is the user's word; it is logged once).
    fn build(
        &self,
        snap: &KnownModels,
        base: &str,
        v: Variant,
        configured_by: Option<&'static str>,
    ) -> Option<ResolvedModel> {
        let text = v.media.is_none();
        match snap.find(base) {
            Some(m) => {
                let offered = match v.media {
                    Some(t) => m.supports(t),
                    None => (!v.thinking || m.can_think) && (!v.search || m.can_search),
                };
                offered.then(|| ResolvedModel {
                    upstream_id: m.id.clone(),
                    thinking: text && v.thinking,
                    search: text && v.search,
                    must_think: text && m.must_think,
                    media: v.media,
                    context_tokens: m.context,
                    sites: m.sites.clone(),
                })
            }
            None if (snap.fallback || configured_by.is_some()) && !base.is_empty() => {
                if let Some(var) = configured_by
                    && !snap.fallback
                    && !self.warned_override.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        var,
                        model = base,
                        "the configured model is not in the upstream list; sending it as written"
                    );
                }
                Some(ResolvedModel {
                    upstream_id: base.to_owned(),
                    thinking: text && v.thinking,
                    search: text && v.search,
                    must_think: false,
                    media: v.media,
                    context_tokens: None,
                    sites: vec![self.fetched_from],
                })
            }
            None => None,
        }
    }
}

impl KnownModels {
    /// The listed model named `id`, without regard to case.
    pub fn find(&self, id: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.id.eq_ignore_ascii_case(id))
    }

    /// The strong model Claude Opus and Sonnet ids stand for: the first listed text chat model
    /// whose id names no small variant (`flash`, `turbo`, `mini`); else the first text chat
    /// model; else the first model. The site lists its flagship first.
    pub fn strong(&self) -> Option<&ModelEntry> {
        let small = |m: &&ModelEntry| {
            let id = m.id.to_ascii_lowercase();
            ["flash", "turbo", "mini"].iter().any(|w| id.contains(w))
        };
        let chat = || self.models.iter().filter(|m| m.chat);
        chat()
            .find(|m| !small(m))
            .or_else(|| chat().next())
            .or_else(|| self.models.first())
    }

    /// The fast model Claude Haiku ids stand for: the first listed text chat model whose id
    /// holds `flash` or `turbo`; else the strong one.
    pub fn fast(&self) -> Option<&ModelEntry> {
        self.models
            .iter()
            .filter(|m| m.chat)
            .find(|m| {
                let id = m.id.to_ascii_lowercase();
                id.contains("flash") || id.contains("turbo")
            })
            .or_else(|| self.strong())
    }
}

/// What an id's suffix asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Variant {
    thinking: bool,
    search: bool,
    media: Option<ChatType>,
}

impl Variant {
    /// The requested suffix (`self`) on top of an alias target's own; a media suffix wins.
    fn over(self, target: Variant) -> Variant {
        Variant {
            thinking: self.thinking || target.thinking,
            search: self.search || target.search,
            media: self.media.or(target.media),
        }
    }
}

/// `id` without its suffix (matched without regard to case), and what the suffix asks for.
fn split(id: &str) -> (&str, Variant) {
    let lower = id.to_ascii_lowercase();
    // `to_ascii_lowercase` keeps byte lengths, so a length in `lower` cuts `id` too.
    if let Some((base, t)) = MEDIA_SUFFIXES
        .iter()
        .find_map(|(s, t)| lower.strip_suffix(s).map(|b| (&id[..b.len()], *t)))
    {
        let v = Variant {
            media: Some(t),
            ..Variant::default()
        };
        return (base, v);
    }
    SUFFIXES
        .iter()
        .find_map(|(s, thinking, search)| {
            lower.strip_suffix(s).map(|b| {
                let v = Variant {
                    thinking: *thinking,
                    search: *search,
                    media: None,
                };
                (&id[..b.len()], v)
            })
        })
        .unwrap_or((id, Variant::default()))
}

/// `id` without a trailing bracketed tag such as Claude Code's `[1m]` (a context-size marker
/// that names no other model).
fn without_context_tag(id: &str) -> &str {
    id.strip_suffix(']')
        .and_then(|rest| rest.rfind('['))
        .map(|i| &id[..i])
        .filter(|base| !base.is_empty())
        .unwrap_or(id)
}

/// Served when the upstream list cannot be fetched.
fn fallback() -> Vec<ModelEntry> {
    let entry = |id: &str, can_think: bool, can_search: bool, must_think: bool| ModelEntry {
        id: id.to_owned(),
        created: 0,
        can_think,
        can_search,
        must_think,
        chat: true,
        media: vec![ChatType::Image, ChatType::ImageEdit, ChatType::Video],
        context: None,
        sites: Vec::new(),
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
    use crate::config::ModelAliases;

    fn entry(id: &str, can_think: bool, can_search: bool, media: Vec<ChatType>) -> ModelEntry {
        ModelEntry {
            id: id.into(),
            created: 1,
            can_think,
            can_search,
            must_think: false,
            chat: true,
            media,
            context: None,
            sites: Vec::new(),
        }
    }

    fn config(aliases: &[(&str, &str)]) -> ModelsConfig {
        ModelsConfig {
            simple_map: false,
            cache_ttl: Duration::from_secs(60),
            aliases: ModelAliases::from_pairs(
                aliases
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            ),
            anthropic_default_model: None,
            anthropic_small_model: None,
        }
    }

    fn known(models: Vec<ModelEntry>) -> KnownModels {
        KnownModels {
            models,
            fetched: Instant::now(),
            fallback: false,
        }
    }

    #[test]
    fn models_list_the_sites_that_serve_them_and_resolve_with_them() {
        let other = Site::Tongyi;
        let c = Catalog::new(config(&[])).with_sites(
            Site::Qwen,
            vec![(other, vec!["qwen-max".into(), "QWEN3.7-plus".into()])],
        );
        let snap = known(c.add_sites(vec![
            entry("qwen3.7-plus", true, true, vec![]),
            entry("qwen3-coder-plus", false, false, vec![]),
        ]));
        let sites = |id: &str| c.resolve(&snap, id).map(|m| m.sites);
        assert_eq!(sites("qwen3.7-plus"), Some(vec![Site::Qwen, other]));
        assert_eq!(sites("qwen3-coder-plus"), Some(vec![Site::Qwen]));
        assert_eq!(sites("qwen-max-thinking"), Some(vec![other]));
        let owners: Vec<(String, Site)> = c
            .list(&snap)
            .into_iter()
            .filter(|m| !m.id.contains("-thinking") && !m.id.contains("-search"))
            .map(|m| (m.id, m.owner))
            .collect();
        assert_eq!(
            owners,
            [
                ("qwen3.7-plus".to_owned(), Site::Qwen),
                ("qwen3-coder-plus".to_owned(), Site::Qwen),
                ("qwen-max".to_owned(), other),
            ]
        );
    }

    fn catalog(simple: bool) -> (Catalog, KnownModels) {
        let c = Catalog::new(ModelsConfig {
            simple_map: simple,
            ..config(&[("gpt-4o", "qwen3.7-plus"), ("claude-*", "qwen3.7-plus")])
        });
        let snap = known(vec![
            entry(
                "qwen3.7-plus",
                true,
                true,
                vec![ChatType::Image, ChatType::Video],
            ),
            entry("qwen3-coder-plus", false, false, vec![]),
        ]);
        (c, snap)
    }

    /// The upstream id, thinking and search a request resolves to.
    fn to(c: &Catalog, snap: &KnownModels, id: &str) -> Option<(String, bool, bool)> {
        c.resolve(snap, id)
            .map(|r| (r.upstream_id, r.thinking, r.search))
    }

    #[expect(
        clippy::unnecessary_wraps,
        reason = "the expected side of comparisons with `to`"
    )]
    fn ok(id: &str, thinking: bool, search: bool) -> Option<(String, bool, bool)> {
        Some((id.to_owned(), thinking, search))
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
            ],
            "the pattern alias is not listed"
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

    #[test]
    fn patterns_go_in_the_order_written_after_exact_aliases() {
        let c = Catalog::new(config(&[
            ("claude-*haiku*", "qwen3-coder-plus"),
            ("claude-*", "qwen3.7-plus"),
            ("claude-opus-4-1", "qwen3-coder-plus"),
            ("gpt-4?", "qwen3-coder-plus"),
            ("*", "qwen3.7-plus"),
        ]));
        let (_, snap) = catalog(false);
        let t = |id| to(&c, &snap, id);
        assert_eq!(t("claude-haiku-4-5"), ok("qwen3-coder-plus", false, false));
        assert_eq!(
            t("claude-sonnet-4-5-20250929"),
            ok("qwen3.7-plus", false, false)
        );
        assert_eq!(
            t("claude-opus-4-1"),
            ok("qwen3-coder-plus", false, false),
            "exact wins"
        );
        assert_eq!(t("CLAUDE-Opus-4-1"), ok("qwen3-coder-plus", false, false));
        assert_eq!(
            t("Claude-3-5-HAIKU-latest"),
            ok("qwen3-coder-plus", false, false)
        );
        assert_eq!(t("GPT-4o"), ok("qwen3-coder-plus", false, false));
        assert_eq!(
            t("gpt-4o-mini"),
            ok("qwen3.7-plus", false, false),
            "`?` is one char"
        );
        assert_eq!(
            t("qwen3-coder-plus"),
            ok("qwen3-coder-plus", false, false),
            "an upstream id is never captured by a pattern"
        );
        let reversed = Catalog::new(config(&[
            ("claude-*", "qwen3.7-plus"),
            ("claude-*haiku*", "qwen3-coder-plus"),
        ]));
        assert_eq!(
            to(&reversed, &snap, "claude-haiku-4-5"),
            ok("qwen3.7-plus", false, false),
            "the first pattern written wins"
        );
    }

    #[test]
    fn suffixes_apply_on_top_of_a_pattern_alias() {
        let c = Catalog::new(config(&[
            ("claude-*", "qwen3.7-plus"),
            ("deep-*", "qwen3.7-plus-thinking"),
            ("*-fast", "qwen3-coder-plus"),
        ]));
        let (_, snap) = catalog(false);
        let t = |id| to(&c, &snap, id);
        assert_eq!(
            t("claude-opus-4-1-thinking"),
            ok("qwen3.7-plus", true, false)
        );
        assert_eq!(t("claude-opus-4-1-Search"), ok("qwen3.7-plus", false, true));
        assert_eq!(
            t("deep-1-search"),
            ok("qwen3.7-plus", true, true),
            "both suffixes"
        );
        assert_eq!(
            t("x-fast"),
            ok("qwen3-coder-plus", false, false),
            "whole-id match"
        );
        let r = c.resolve(&snap, "claude-opus-4-1-video").unwrap();
        assert_eq!(
            (r.upstream_id.as_str(), r.media, r.thinking),
            ("qwen3.7-plus", Some(ChatType::Video), false)
        );
        let r = c.resolve(&snap, "deep-1-image").unwrap();
        assert_eq!((r.media, r.thinking), (Some(ChatType::Image), false));
        assert_eq!(t("claude-sonnet-4-5[1m]"), ok("qwen3.7-plus", false, false));
        let coder = Catalog::new(config(&[("claude-*", "qwen3-coder-plus")]));
        assert!(
            coder.resolve(&snap, "claude-x-thinking").is_none(),
            "the target cannot think"
        );
    }

    fn live_list() -> KnownModels {
        let mut image_only = entry("wanx-image", false, false, vec![ChatType::Image]);
        image_only.chat = false;
        known(vec![
            image_only,
            entry("qwen3-coder-flash", false, false, vec![]),
            entry("qwen3.7-plus", true, true, vec![]),
            entry("qwen3.8-max", true, true, vec![]),
            entry("qwen-turbo-latest", false, false, vec![]),
        ])
    }

    #[test]
    fn claude_names_work_without_aliases() {
        let c = Catalog::new(config(&[]));
        let snap = live_list();
        assert_eq!(snap.strong().unwrap().id, "qwen3.7-plus");
        assert_eq!(snap.fast().unwrap().id, "qwen3-coder-flash");
        let t = |id| to(&c, &snap, id);
        assert_eq!(
            t("claude-sonnet-4-5-20250929"),
            ok("qwen3.7-plus", false, false)
        );
        assert_eq!(t("claude-opus-4-1"), ok("qwen3.7-plus", false, false));
        assert_eq!(
            t("claude-opus-4-8-thinking"),
            ok("qwen3.7-plus", true, false)
        );
        assert_eq!(t("claude-someday-9"), ok("qwen3.7-plus", false, false));
        assert_eq!(t("claude-haiku-4-5"), ok("qwen3-coder-flash", false, false));
        assert_eq!(
            t("Claude-3-5-Haiku-20241022"),
            ok("qwen3-coder-flash", false, false)
        );
        assert_eq!(t("claude"), None, "not a `claude-` id");
        assert_eq!(t("my-claude-haiku"), None);
        let no_fast = known(vec![
            entry("qwen3.7-plus", true, true, vec![]),
            entry("qwen3.8-max", true, true, vec![]),
        ]);
        assert_eq!(
            to(&c, &no_fast, "claude-haiku-4-5"),
            ok("qwen3.7-plus", false, false),
            "no flash or turbo model: the strong one"
        );
        let only_fast = known(vec![entry("qwen3.7-flash", false, false, vec![])]);
        assert_eq!(only_fast.strong().unwrap().id, "qwen3.7-flash");
        let user = Catalog::new(config(&[("claude-*haiku*", "qwen3.8-max")]));
        assert_eq!(
            to(&user, &snap, "claude-haiku-4-5"),
            ok("qwen3.8-max", false, false),
            "a user alias wins over the default"
        );
        assert_eq!(
            to(&user, &snap, "claude-opus-4-1"),
            ok("qwen3.7-plus", false, false)
        );
    }

    #[test]
    fn claude_overrides_win_and_pass_through() {
        let c = Catalog::new(ModelsConfig {
            anthropic_default_model: Some("qwen3.8-max-thinking".into()),
            anthropic_small_model: Some("qwen9-nano".into()),
            ..config(&[])
        });
        let snap = live_list();
        let t = |id| to(&c, &snap, id);
        assert_eq!(t("claude-opus-4-1"), ok("qwen3.8-max", true, false));
        assert_eq!(t("claude-sonnet-4-5-search"), ok("qwen3.8-max", true, true));
        assert_eq!(
            t("claude-haiku-4-5"),
            ok("qwen9-nano", false, false),
            "an unknown override is sent as written"
        );
        assert_eq!(
            t("claude-haiku-4-5"),
            ok("qwen9-nano", false, false),
            "twice"
        );
        assert_eq!(t("qwen9-nano"), None, "the override is no new id");
    }
}
