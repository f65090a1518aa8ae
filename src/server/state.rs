//! `AppState`: configuration, store, keys, accounts, the proxy and the metrics, shared by every
//! handler.
//! Wiring only.

use std::sync::Arc;

use crate::accounts::AccountManager;
use crate::config::Config;
use crate::keys::KeyRing;
use crate::keys::limits::Limiter;
use crate::keys::usage::UsageRecorder;
use crate::media::fetch::RemoteFetcher;
use crate::media::file_store::FileStore;
use crate::media::input::MediaInput;
use crate::media::jobs::VideoJobs;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::proxy::catalog::Catalog;
use crate::reload::Reloader;
use crate::store::{self, SaveMode, StoreError};
use crate::telemetry::recent::Recent;
use crate::upstream::qwen::{Qwen, QwenClient, Shaping};
use crate::upstream::tongyi::Tongyi;
use crate::upstream::{Site, Sites, Upstream};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    proxy: Arc<Proxy>,
    store: Arc<dyn crate::store::Store>,
    keys: Arc<KeyRing>,
    limiter: Limiter,
    reloader: Option<Reloader>,
    files: FileStore,
    fetcher: Option<RemoteFetcher>,
    videos: VideoJobs,
    metrics: Arc<Metrics>,
    recent: Arc<Recent>,
}

/// Every site's upstream behind one door: each call goes to its account's site
/// (upstream/site.rs).
fn upstreams(config: &Config) -> Arc<dyn Upstream> {
    let qwen: Arc<dyn Upstream> = Arc::new(Qwen::new(
        Arc::new(QwenClient::new(Arc::new(config.upstream.clone()))),
        config.output.stream_mode,
        Shaping {
            prompt_file_threshold: config.media.prompt_file_threshold,
            tool_template: Arc::clone(&config.tools.prompt_template),
        },
    ));
    let tongyi: Arc<dyn Upstream> = Arc::new(Tongyi::new(
        Arc::new(config.tongyi.clone()),
        &config.upstream,
        Shaping {
            prompt_file_threshold: 0,
            tool_template: Arc::clone(&config.tools.prompt_template),
        },
    ));
    Arc::new(Sites::new(Site::Qwen, qwen).with(Site::Tongyi, tongyi))
}

/// Tongyi publishes no model list: the configured one is served while a Tongyi account exists
/// at start, or when it was configured explicitly (`TONGYI_MODELS`).
fn tongyi_models(config: &Config, accounts: &AccountManager) -> Vec<String> {
    let present = accounts
        .pool()
        .accounts()
        .iter()
        .any(|a| a.site() == Site::Tongyi);
    if config.tongyi.models_configured || present {
        config.tongyi.models.clone()
    } else {
        Vec::new()
    }
}

impl AppState {
    /// Opens the store, loads keys and accounts (signing in where needed, one at a time) and
    /// starts the background upkeep. `reloader` re-reads the configuration on demand.
    pub async fn build(config: Config, reloader: Option<Reloader>) -> Result<Self, StoreError> {
        let s = &config.store;
        let store = store::open(
            s.mode,
            &s.data_dir,
            s.redis_url.as_ref().map(crate::config::Secret::expose),
            &s.redis_prefix,
            s.encryption_key.as_ref(),
        )
        .await?;
        tracing::info!(backend = store.backend(), "store opened");
        let metrics = Metrics::new();
        let store = crate::metrics::store::counted(store, &metrics);
        let shared = s.mode == SaveMode::Redis;
        let client = upstreams(&config);
        let accounts = AccountManager::start(
            &config.accounts,
            Arc::clone(&store),
            Arc::clone(&client),
            config.pool.clone(),
            config.lifecycle.clone(),
            shared,
        )
        .await?;
        if accounts.pool().accounts().is_empty()
            && config.auth_mode == crate::config::AuthMode::Keys
        {
            tracing::warn!(
                "no Qwen account is configured (ACCOUNTS, QWEN_COOKIES, QWEN_AUTH_TOKEN or the admin API); chat requests will fail with 503"
            );
        }
        accounts.spawn_upkeep(s.status_sync);
        let keys = KeyRing::load(&config.keys, Arc::clone(&store)).await?;
        if shared {
            let (keys, every) = (Arc::clone(&keys), s.status_sync);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let _ = keys.refresh().await;
                }
            });
        }
        let usage = UsageRecorder::new(Arc::clone(&store), Arc::clone(&metrics));
        usage.spawn_flusher(s.usage_flush);
        let limiter = Limiter::new(Arc::clone(&store), Arc::clone(&usage));
        let catalog = Catalog::new(config.models.clone()).with_sites(
            Site::Qwen,
            vec![(Site::Tongyi, tongyi_models(&config, &accounts))],
        );
        let uploader = crate::media::Uploader::new(Arc::clone(&client), Arc::clone(&store));
        let proxy = Arc::new(Proxy::new(
            client,
            accounts,
            catalog,
            usage,
            uploader,
            config.media.clone(),
            Arc::clone(&metrics),
        ));
        proxy.spawn_sweep();
        let files = FileStore::new((s.mode != SaveMode::None).then(|| s.data_dir.join("files")));
        let fetcher = config.media.fetch_remote.then(|| {
            RemoteFetcher::new(
                std::time::Duration::from_secs(30),
                config.media.max_upload_bytes,
            )
        });
        Ok(Self(Arc::new(Inner {
            config,
            proxy,
            store,
            keys,
            limiter,
            reloader,
            files,
            fetcher,
            videos: VideoJobs::default(),
            metrics,
            recent: Recent::new(),
        })))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The store, for what a surface keeps itself (stored responses).
    pub fn store(&self) -> &Arc<dyn crate::store::Store> {
        &self.0.store
    }

    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.0.proxy
    }

    pub fn accounts(&self) -> &Arc<AccountManager> {
        self.0.proxy.accounts()
    }

    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.0.keys
    }

    /// The counters of per-key limits.
    pub fn limiter(&self) -> &Limiter {
        &self.0.limiter
    }

    pub fn files(&self) -> &FileStore {
        &self.0.files
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// The last client requests, for the admin page.
    pub fn recent(&self) -> &Arc<Recent> {
        &self.0.recent
    }

    /// Where each finished request is recorded (metrics, recent requests).
    pub fn tracking(&self) -> crate::metrics::request::Tracking {
        crate::metrics::request::Tracking {
            metrics: Arc::clone(&self.0.metrics),
            recent: Arc::clone(&self.0.recent),
        }
    }

    pub fn videos(&self) -> &VideoJobs {
        &self.0.videos
    }

    /// How chat requests read their media parts.
    pub fn media_input(&self) -> MediaInput<'_> {
        MediaInput {
            max_bytes: self.0.config.media.max_upload_bytes,
            fetcher: self.0.fetcher.as_ref(),
            files: &self.0.files,
        }
    }

    pub fn reloader(&self) -> Option<&Reloader> {
        self.0.reloader.as_ref()
    }

    /// Writes what is still only in memory (usage counters); called at shutdown.
    pub async fn flush(&self) {
        self.0.proxy.usage().flush().await;
    }
}
