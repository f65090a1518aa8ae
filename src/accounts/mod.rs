//! Qwen accounts and their health, the round-robin pool over them, and the lease guard that
//! counts in-flight requests per account.

mod pool;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

pub use pool::{Lease, Pool, Unavailable};

use crate::config::{PoolConfig, Secret};
use crate::upstream::{Credentials, UpstreamError};

/// How an account signs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountKind {
    Password,
    Token,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Active,
    /// Not picked until `until`.
    Cooling {
        until: Instant,
        reason: String,
    },
    /// Not picked until something (a new token, an operator) brings it back.
    Disabled {
        reason: String,
    },
}

#[derive(Debug)]
pub struct Account {
    pub id: String,
    pub kind: AccountKind,
    creds: RwLock<Credentials>,
    health: Mutex<Health>,
    inflight: AtomicUsize,
    served: AtomicU64,
}

impl Account {
    pub fn new(
        id: String,
        kind: AccountKind,
        token: Secret,
        cookies: Option<Secret>,
        proxy: Option<String>,
    ) -> Self {
        Self {
            id,
            kind,
            creds: RwLock::new(Credentials {
                token,
                cookies,
                proxy,
            }),
            health: Mutex::new(Health::Active),
            inflight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
        }
    }

    pub fn credentials(&self) -> Credentials {
        self.creds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn health(&self) -> Health {
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if let Health::Cooling { until, .. } = &*h {
            if *until <= Instant::now() {
                *h = Health::Active;
            }
        }
        h.clone()
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

    pub fn disable(&self, reason: &str) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = Health::Disabled {
            reason: reason.to_owned(),
        };
    }

    /// Updates health after a failed call, by the failure's class.
    pub fn record_failure(&self, err: &UpstreamError, cfg: &PoolConfig) {
        let next = match err {
            UpstreamError::Auth(_) => Some(Health::Disabled {
                reason: match self.kind {
                    AccountKind::Token => "token_expired".to_owned(),
                    AccountKind::Password => "token_rejected".to_owned(),
                },
            }),
            UpstreamError::RateLimited { retry_after, .. } => Some(cooling(
                retry_after.unwrap_or(cfg.rate_limit_cooldown),
                "rate_limited",
            )),
            UpstreamError::Transient(_)
            | UpstreamError::EmptyAnswer
            | UpstreamError::ThinkingOnly
            | UpstreamError::ChatInProgress => (!cfg.transient_cooldown.is_zero())
                .then(|| cooling(cfg.transient_cooldown, err.class())),
            // The request or the egress is at fault, not the account.
            UpstreamError::Challenge(_)
            | UpstreamError::ContentFilter(_)
            | UpstreamError::NotFound(_)
            | UpstreamError::Rejected(_) => None,
        };
        if let Some(next) = next {
            match &next {
                Health::Disabled { reason } if self.kind == AccountKind::Token => tracing::warn!(
                    account = %self.id, %reason,
                    "the upstream rejected this account's token; it needs a new token or cookie"
                ),
                Health::Disabled { reason } => {
                    tracing::warn!(account = %self.id, %reason, "account disabled");
                }
                _ => {
                    tracing::info!(account = %self.id, class = err.class(), "account cooling down");
                }
            }
            *self.health.lock().unwrap_or_else(PoisonError::into_inner) = next;
        }
    }
}

fn cooling(d: Duration, reason: &str) -> Health {
    Health::Cooling {
        until: Instant::now() + d,
        reason: reason.to_owned(),
    }
}
