//! Prometheus metrics: one registry per app (so that test apps in one process never share
//! counts), the typed families in it, the calls that record each event, and the scrape
//! (`GET /metrics`, Prometheus text format 0.0.4). `request` times each HTTP request; `store`
//! counts store errors; `labels` keeps every label bounded. docs/metrics.md lists them.

mod labels;
pub mod request;
pub mod store;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::accounts::Pool;
use crate::store::HealthState;
pub use labels::surface;
use labels::{
    AccountLabels, ChatLabels, CooldownLabels, FirstByteLabels, LatencyLabels, ReasonLabels,
    RequestLabels, StateLabels, StoreLabels, TokenLabels,
};

/// The content type of a scrape.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Model label values kept before new ones become `other` (the catalog is the source, this is
/// the bound should it ever grow without one).
const MAX_MODELS: usize = 64;
/// The label of a request that named no model (or was refused before resolving it).
const NO_MODEL: &str = "none";
const OTHER_MODEL: &str = "other";

/// Whole requests: from a millisecond to the longest answers (minutes).
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Waiting for a model to start answering: a tenth of a second to a minute.
const FIRST_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0,
];
/// The proxy's own time: well under a millisecond to seconds (uploads, slow leases).
const OWN_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn histograms<L: Clone + std::hash::Hash + Eq>(buckets: fn() -> Histogram) -> Histograms<L> {
    Family::new_with_constructor(buckets)
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histograms<LatencyLabels>,
    first_token: Histograms<LatencyLabels>,
    upstream_first_byte: Histograms<FirstByteLabels>,
    own_time: Histograms<LatencyLabels>,
    failovers: Family<ReasonLabels, Counter>,
    accounts: Family<StateLabels, Gauge>,
    cooldowns: Family<CooldownLabels, Counter>,
    challenges: Family<AccountLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    store_errors: Family<StoreLabels, Counter>,
    chats: Family<ChatLabels, Counter>,
    fallbacks: Family<ReasonLabels, Counter>,
    models: Mutex<HashSet<String>>,
    /// One scrape at a time: the account gauges are set from the pool, then encoded.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let m = Self {
            requests: Family::default(),
            duration: histograms(|| Histogram::new(REQUEST_BUCKETS.iter().copied())),
            first_token: histograms(|| Histogram::new(FIRST_BUCKETS.iter().copied())),
            upstream_first_byte: histograms(|| Histogram::new(FIRST_BUCKETS.iter().copied())),
            own_time: histograms(|| Histogram::new(OWN_BUCKETS.iter().copied())),
            failovers: Family::default(),
            accounts: Family::default(),
            cooldowns: Family::default(),
            challenges: Family::default(),
            tokens: Family::default(),
            store_errors: Family::default(),
            chats: Family::default(),
            fallbacks: Family::default(),
            models: Mutex::new(HashSet::new()),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        let mut registry = Registry::with_prefix("qwen2api");
        m.register(&mut registry);
        Arc::new(Self { registry, ..m })
    }

    fn register(&self, r: &mut Registry) {
        let m = self;
        r.register(
            "http_requests",
            "HTTP requests by surface, route template, model and status",
            m.requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Whole requests, from arrival to the last byte of the answer",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register_with_unit(
            "time_to_first_token",
            "Streams: from arrival to the first visible event sent (not a keep-alive)",
            Unit::Seconds,
            m.first_token.clone(),
        );
        r.register_with_unit(
            "upstream_time_to_first_byte",
            "Each upstream completion attempt: from sending it to its first event",
            Unit::Seconds,
            m.upstream_first_byte.clone(),
        );
        r.register_with_unit(
            "proxy_own_time",
            "Answered requests: whole request time minus upstream time (from the first \
             completion request sent to the upstream answer's last event)",
            Unit::Seconds,
            m.own_time.clone(),
        );
        r.register(
            "failovers",
            "Attempts started after a failed one (on another account, or on the same one \
             signed in again), by the failed attempt's cause",
            m.failovers.clone(),
        );
        r.register(
            "accounts",
            "Pool accounts by state, at scrape time",
            m.accounts.clone(),
        );
        r.register(
            "account_cooldowns",
            "Accounts sent cooling, by account and reason",
            m.cooldowns.clone(),
        );
        r.register(
            "waf_challenges",
            "WAF or captcha challenges met, by account",
            m.challenges.clone(),
        );
        r.register(
            "tokens",
            "Tokens counted for usage, by direction (in, out), key id and account",
            m.tokens.clone(),
        );
        r.register(
            "store_errors",
            "Store calls that failed, by backend and operation",
            m.store_errors.clone(),
        );
        r.register(
            "continuation_chats",
            "Answers of continuable conversations, by chat (continued, new)",
            m.chats.clone(),
        );
        r.register(
            "continuation_fallbacks",
            "Continuations given up for a new chat, by reason",
            m.fallbacks.clone(),
        );
        r.register(
            "build",
            "The running build",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "commit",
                    option_env!("QWEN2API_GIT_COMMIT").unwrap_or("unknown"),
                ),
            ]),
        );
    }

    /// The text of a scrape, with the account gauges read from `pool` now.
    pub fn render(&self, pool: &Pool) -> Result<String, std::fmt::Error> {
        let _one = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        let mut counts = [0i64; 3];
        for a in pool.accounts() {
            counts[state_index(a.health().state())] += 1;
        }
        for (state, n) in [
            HealthState::Active,
            HealthState::Cooling,
            HealthState::Disabled,
        ]
        .into_iter()
        .zip(counts)
        {
            self.accounts
                .get_or_create(&StateLabels {
                    state: state_name(state),
                })
                .set(n);
        }
        let mut out = String::with_capacity(8 * 1024);
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The label for a model id: itself while fewer than [`MAX_MODELS`] are known, else
    /// `other`; `none` for no model.
    pub fn model_label(&self, model: Option<&str>) -> String {
        let Some(model) = model.filter(|m| !m.is_empty()) else {
            return NO_MODEL.to_owned();
        };
        let mut known = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        if known.contains(model) {
            return model.to_owned();
        }
        if known.len() < MAX_MODELS && labels::sane(model) {
            known.insert(model.to_owned());
            return model.to_owned();
        }
        OTHER_MODEL.to_owned()
    }

    /// One finished HTTP request (see [`request::Marks`]).
    pub fn request_done(&self, done: &request::Finished<'_>) {
        let surface = surface(done.route);
        let model = self.model_label(done.model);
        self.requests
            .get_or_create(&RequestLabels {
                surface,
                route: done.route.to_owned(),
                model: model.clone(),
                status: done.status,
            })
            .inc();
        let latency = LatencyLabels { surface, model };
        self.duration
            .get_or_create(&latency)
            .observe(done.total.as_secs_f64());
        if let Some(d) = done.first_token {
            self.first_token
                .get_or_create(&latency)
                .observe(d.as_secs_f64());
        }
        if let Some(upstream) = done.upstream {
            let own = done.total.saturating_sub(upstream);
            self.own_time
                .get_or_create(&latency)
                .observe(own.as_secs_f64());
        }
    }

    /// An upstream completion attempt's first event, `waited` after it was sent.
    pub fn upstream_first_byte(&self, model: &str, waited: Duration) {
        let model = self.model_label(Some(model));
        self.upstream_first_byte
            .get_or_create(&FirstByteLabels { model })
            .observe(waited.as_secs_f64());
    }

    /// An attempt started after a failed one (another account, or the same one signed in
    /// again); `cause` is the failed one's
    /// [`UpstreamError::class`](crate::upstream::UpstreamError::class).
    pub fn failover(&self, cause: &'static str) {
        self.failovers
            .get_or_create(&ReasonLabels { reason: cause })
            .inc();
    }

    /// An account sent cooling; `reason` is the health's reason (an error class).
    pub fn cooldown(&self, account: &str, reason: &str) {
        self.cooldowns
            .get_or_create(&CooldownLabels {
                account: account.to_owned(),
                reason: labels::reason(reason),
            })
            .inc();
    }

    pub fn challenge(&self, account: &str) {
        self.challenges
            .get_or_create(&AccountLabels {
                account: account.to_owned(),
            })
            .inc();
    }

    /// Tokens of one answered request; `key` is the key's id, never the key.
    pub fn tokens(&self, account: &str, key: Option<&str>, input: u64, output: u64) {
        let key = key.unwrap_or("none");
        for (direction, n) in [("in", input), ("out", output)] {
            self.tokens
                .get_or_create(&TokenLabels {
                    direction,
                    key: key.to_owned(),
                    account: account.to_owned(),
                })
                .inc_by(n);
        }
    }

    pub fn store_error(&self, backend: &'static str, operation: &'static str) {
        self.store_errors
            .get_or_create(&StoreLabels { backend, operation })
            .inc();
    }

    /// An answer of a continuable conversation, sent into its earlier chat or a new one.
    pub fn continuation_chat(&self, continued: bool) {
        let chat = if continued { "continued" } else { "new" };
        self.chats.get_or_create(&ChatLabels { chat }).inc();
    }

    /// A continuation given up before the first byte; `reason` is a fixed word or an error
    /// class.
    pub fn continuation_fallback(&self, reason: &'static str) {
        self.fallbacks.get_or_create(&ReasonLabels { reason }).inc();
    }
}

fn state_index(s: HealthState) -> usize {
    match s {
        HealthState::Active => 0,
        HealthState::Cooling => 1,
        HealthState::Disabled => 2,
    }
}

fn state_name(s: HealthState) -> &'static str {
    match s {
        HealthState::Active => "active",
        HealthState::Cooling => "cooling",
        HealthState::Disabled => "disabled",
    }
}
