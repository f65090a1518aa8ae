//! Qwen accounts and their health, the pool that leases them (round-robin or sticky, paced,
//! waiting for a free slot), and the manager that keeps them signed in and persisted.

pub mod jwt;
mod manager;
mod pool;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use manager::{AccountManager, AddAccount, ManagerError, ReloadReport};
pub use pool::{Lease, Pick, Pool, Unavailable};

use crate::config::{PoolConfig, Secret};
use crate::conversation::Feature;
use crate::store::{AccountRecord, AccountStatus, CredentialKind, HealthState, Origin};
use crate::upstream::{Credentials, UpstreamError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Active,
    /// Not picked until `until`.
    Cooling {
        until: SystemTime,
        reason: String,
    },
    /// Not picked until something (a new token, a re-test, an operator) brings it back.
    Disabled {
        reason: String,
    },
}

impl Health {
    pub fn state(&self) -> HealthState {
        match self {
            Health::Active => HealthState::Active,
            Health::Cooling { .. } => HealthState::Cooling,
            Health::Disabled { .. } => HealthState::Disabled,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Health::Active => None,
            Health::Cooling { reason, .. } | Health::Disabled { reason } => Some(reason),
        }
    }
}

/// What can change about an account while it serves.
#[derive(Debug)]
struct Login {
    email: Option<String>,
    password: Option<Secret>,
    creds: Credentials,
    token_expires_at: Option<i64>,
}

#[derive(Debug)]
struct HealthCell {
    health: Health,
    /// Failures of any class since the last success (request faults aside); transient ones
    /// cool the account at `ACCOUNT_FAILURE_THRESHOLD`.
    failures: u32,
    /// Consecutive rate limits, for the exponential cooldown.
    rate_limits: u32,
    last_used: Option<SystemTime>,
}

#[derive(Debug)]
pub struct Account {
    pub id: String,
    pub kind: CredentialKind,
    pub origin: Origin,
    created_at: i64,
    login: RwLock<Login>,
    health: Mutex<HealthCell>,
    inflight: AtomicUsize,
    last_start: Mutex<Option<std::time::Instant>>,
    served: AtomicU64,
    /// Generation features whose daily quota ran out, until when (chat health is separate).
    features: Mutex<Vec<(Feature, SystemTime)>>,
}

impl Account {
    /// An account from its stored record (the token may be missing until it signs in).
    pub fn from_record(rec: &AccountRecord) -> Self {
        let token = rec.token.clone().unwrap_or_else(|| Secret::new(""));
        Self {
            id: rec.id.clone(),
            kind: rec.kind,
            origin: rec.origin,
            created_at: rec.created_at,
            login: RwLock::new(Login {
                email: rec.email.clone(),
                password: rec.password.clone(),
                token_expires_at: rec.token_expires_at.or_else(|| jwt::expiry(token.expose())),
                creds: Credentials {
                    token,
                    cookies: rec.cookies.clone(),
                    proxy: rec.proxy.clone(),
                    site: rec.kind.site(),
                },
            }),
            health: Mutex::new(HealthCell {
                health: Health::Active,
                failures: 0,
                rate_limits: 0,
                last_used: None,
            }),
            inflight: AtomicUsize::new(0),
            last_start: Mutex::new(None),
            served: AtomicU64::new(0),
            features: Mutex::new(Vec::new()),
        }
    }

    /// The caller's own token as a one-request account (`AUTH_MODE=passthrough`).
    pub fn passthrough(token: Secret) -> Self {
        Self::from_record(&AccountRecord {
            id: "passthrough".to_owned(),
            kind: CredentialKind::Token,
            email: None,
            password: None,
            token: Some(token),
            cookies: None,
            token_expires_at: None,
            proxy: None,
            origin: Origin::Runtime,
            created_at: 0,
        })
    }

    /// The record to store for this account now.
    pub fn record(&self) -> AccountRecord {
        let l = self.login.read().unwrap_or_else(PoisonError::into_inner);
        AccountRecord {
            id: self.id.clone(),
            kind: self.kind,
            email: l.email.clone(),
            password: l.password.clone(),
            token: Some(l.creds.token.clone()).filter(|t| !t.expose().is_empty()),
            cookies: l.creds.cookies.clone(),
            token_expires_at: l.token_expires_at,
            proxy: l.creds.proxy.clone(),
            origin: self.origin,
            created_at: self.created_at,
        }
    }

    /// The web chat the account belongs to.
    pub fn site(&self) -> crate::upstream::Site {
        self.kind.site()
    }

    /// False until a password account has signed in.
    pub fn has_token(&self) -> bool {
        !self
            .login
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .creds
            .token
            .expose()
            .is_empty()
    }

    pub fn credentials(&self) -> Credentials {
        self.login
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .creds
            .clone()
    }

    /// Email and password, for accounts that can sign in again.
    pub fn password_login(&self) -> Option<(String, Secret)> {
        let l = self.login.read().unwrap_or_else(PoisonError::into_inner);
        Some((l.email.clone()?, l.password.clone()?))
    }

    pub fn token_expires_at(&self) -> Option<i64> {
        self.login
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .token_expires_at
    }

    pub fn set_token(&self, token: Secret) {
        let mut l = self.login.write().unwrap_or_else(PoisonError::into_inner);
        l.token_expires_at = jwt::expiry(token.expose());
        l.creds.token = token;
    }

    pub fn set_proxy(&self, proxy: Option<String>) {
        self.login
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .creds
            .proxy = proxy;
    }

    /// Replaces the credentials with those of `rec` (a reload changed them).
    pub fn update_login(&self, rec: &AccountRecord) {
        let mut l = self.login.write().unwrap_or_else(PoisonError::into_inner);
        l.email.clone_from(&rec.email);
        l.password.clone_from(&rec.password);
        l.creds.cookies.clone_from(&rec.cookies);
        l.creds.proxy.clone_from(&rec.proxy);
        // No token: a password account whose password changed must sign in again.
        let token = rec.token.clone().unwrap_or_else(|| Secret::new(""));
        l.token_expires_at = rec.token_expires_at.or_else(|| jwt::expiry(token.expose()));
        l.creds.token = token;
    }

    fn cell(&self) -> std::sync::MutexGuard<'_, HealthCell> {
        let mut c = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if let Health::Cooling { until, .. } = &c.health
            && *until <= SystemTime::now()
        {
            c.health = Health::Active;
        }
        c
    }

    /// Rests `feature` on this account for `d` (its quota ran out); chat is unaffected.
    pub fn cool_feature(&self, feature: Feature, d: Duration) {
        let until = SystemTime::now() + d;
        let mut f = self.features.lock().unwrap_or_else(PoisonError::into_inner);
        f.retain(|(k, _)| *k != feature);
        f.push((feature, until));
        tracing::info!(account = %self.id, feature = feature.as_str(), seconds = d.as_secs(), "feature quota used up; resting it on this account");
    }

    /// How long `feature` still rests on this account, if it does.
    pub fn feature_cooling(&self, feature: Feature) -> Option<Duration> {
        let now = SystemTime::now();
        self.features
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(k, _)| *k == feature)
            .and_then(|(_, until)| until.duration_since(now).ok())
            .filter(|d| !d.is_zero())
    }

    pub fn health(&self) -> Health {
        self.cell().health.clone()
    }

    pub fn is_usable(&self) -> bool {
        self.health() == Health::Active
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// The status to share with other replicas and keep across restarts.
    pub fn status(&self) -> AccountStatus {
        let c = self.cell();
        AccountStatus {
            state: c.health.state(),
            until_ms: match &c.health {
                Health::Cooling { until, .. } => Some(unix_ms(*until)),
                _ => None,
            },
            reason: c.health.reason().map(str::to_owned),
            failure_count: c.failures,
            last_used_ms: c.last_used.map(unix_ms),
        }
    }

    /// Takes a status read from the store (another replica's change, or the last run's).
    pub fn apply_status(&self, s: &AccountStatus) {
        let mut c = self.cell();
        c.health = match s.state {
            HealthState::Active => Health::Active,
            HealthState::Cooling => {
                let until = UNIX_EPOCH
                    + Duration::from_millis(u64::try_from(s.until_ms.unwrap_or(0)).unwrap_or(0));
                if until <= SystemTime::now() {
                    Health::Active
                } else {
                    Health::Cooling {
                        until,
                        reason: s.reason.clone().unwrap_or_default(),
                    }
                }
            }
            HealthState::Disabled => Health::Disabled {
                reason: s.reason.clone().unwrap_or_default(),
            },
        };
        c.failures = s.failure_count;
        if let Some(ms) = s.last_used_ms {
            c.last_used = Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
        }
    }

    pub fn set_health(&self, health: Health) {
        let mut c = self.cell();
        if health == Health::Active {
            c.failures = 0;
            c.rate_limits = 0;
        }
        c.health = health;
    }

    /// A completed request: failure streaks end.
    pub fn record_success(&self) {
        let mut c = self.cell();
        c.failures = 0;
        c.rate_limits = 0;
    }

    /// Updates health after a failed call, by the failure's class. Returns true when the
    /// health changed (so that the caller persists it).
    pub fn record_failure(&self, err: &UpstreamError, cfg: &PoolConfig) -> bool {
        let mut c = self.cell();
        // Every failure since the last success counts (`failureCount`), except those that are
        // the request's fault rather than the account's.
        let request_fault = matches!(
            err,
            UpstreamError::ContentFilter(_)
                | UpstreamError::NotFound(_)
                | UpstreamError::Rejected(_)
                | UpstreamError::Unsupported(_)
        );
        if !request_fault {
            c.failures = c.failures.saturating_add(1);
        }
        let next = match err {
            UpstreamError::Auth(_) => Some(Health::Disabled {
                reason: match self.kind {
                    CredentialKind::Token => "token_expired".to_owned(),
                    CredentialKind::Password => "token_rejected".to_owned(),
                    CredentialKind::Tongyi => TONGYI_LOGGED_OUT.to_owned(),
                },
            }),
            UpstreamError::RateLimited { retry_after, .. } => {
                c.rate_limits += 1;
                let backoff = cfg
                    .rate_limit_cooldown
                    .saturating_mul(1 << (c.rate_limits - 1).min(16))
                    .min(cfg.rate_limit_cooldown_max.max(cfg.rate_limit_cooldown));
                Some(cooling(retry_after.unwrap_or(backoff), "rate_limited"))
            }
            UpstreamError::Transient(_)
            | UpstreamError::EmptyAnswer
            | UpstreamError::ThinkingOnly
            | UpstreamError::ChatInProgress => (c.failures >= cfg.failure_threshold
                && !cfg.transient_cooldown.is_zero())
            .then(|| cooling(cfg.transient_cooldown, err.class())),
            // The request, the network or the egress is at fault, not the account: a refused
            // connection says nothing about the account, and cooling it would only turn the
            // next request's honest "unreachable" into "every account is cooling down".
            UpstreamError::Unreachable(_)
            | UpstreamError::Challenge(_)
            | UpstreamError::ContentFilter(_)
            | UpstreamError::NotFound(_)
            | UpstreamError::Rejected(_)
            | UpstreamError::Unsupported(_) => None,
        };
        let Some(next) = next else {
            return false;
        };
        match &next {
            Health::Disabled { reason } if self.kind == CredentialKind::Token => tracing::warn!(
                account = %self.id, %reason,
                "the upstream rejected this account's token; it needs a new token or cookie"
            ),
            Health::Disabled { reason } => {
                tracing::warn!(account = %self.id, %reason, "account disabled");
            }
            _ => tracing::info!(account = %self.id, class = err.class(), "account cooling down"),
        }
        c.health = next;
        true
    }

    fn mark_used(&self) {
        self.cell().last_used = Some(SystemTime::now());
    }
}

/// Why a Tongyi account whose cookie was refused is disabled.
pub const TONGYI_LOGGED_OUT: &str = "cookie expired or logged out; the server cannot refresh \
                                     Tongyi cookies: paste a new cookie";

fn cooling(d: Duration, reason: &str) -> Health {
    Health::Cooling {
        until: SystemTime::now() + d,
        reason: reason.to_owned(),
    }
}

pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
