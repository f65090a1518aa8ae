//! `Pool`: round-robin over usable accounts; `Lease`: one in-flight request, released on drop.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::{Account, Health};

#[derive(Debug, Default)]
pub struct Pool {
    accounts: RwLock<Vec<Arc<Account>>>,
    cursor: std::sync::atomic::AtomicUsize,
}

/// Why no account could be leased.
#[derive(Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// Every candidate is cooling down; the first is back after `retry_after`.
    Cooling { retry_after: Duration },
    /// No candidate is usable at all (none configured, or all disabled).
    NoneUsable,
}

impl Pool {
    pub fn new(accounts: Vec<Arc<Account>>) -> Self {
        Self {
            accounts: RwLock::new(accounts),
            cursor: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn accounts(&self) -> Vec<Arc<Account>> {
        self.accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn usable_count(&self) -> usize {
        self.accounts().iter().filter(|a| a.is_usable()).count()
    }

    /// The next usable account, in turn, for which `skip` is false.
    pub fn acquire(&self, skip: impl Fn(&Account) -> bool) -> Result<Lease, Unavailable> {
        let accounts = self.accounts.read().unwrap_or_else(PoisonError::into_inner);
        let n = accounts.len();
        if n == 0 {
            return Err(Unavailable::NoneUsable);
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut soonest: Option<Instant> = None;
        for i in 0..n {
            let account = &accounts[(start + i) % n];
            if skip(account) {
                continue;
            }
            match account.health() {
                Health::Active => return Ok(Lease::new(Arc::clone(account))),
                Health::Cooling { until, .. } => {
                    soonest = Some(soonest.map_or(until, |s| s.min(until)));
                }
                Health::Disabled { .. } => {}
            }
        }
        match soonest {
            Some(at) => Err(Unavailable::Cooling {
                retry_after: at.saturating_duration_since(Instant::now()),
            }),
            None => Err(Unavailable::NoneUsable),
        }
    }
}

/// An account held for one request; the in-flight count drops when the lease does.
#[derive(Debug)]
pub struct Lease {
    account: Arc<Account>,
}

impl Lease {
    fn new(account: Arc<Account>) -> Self {
        account.inflight.fetch_add(1, Ordering::Relaxed);
        account.served.fetch_add(1, Ordering::Relaxed);
        Self { account }
    }

    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.account.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::AccountKind;
    use crate::config::{PoolConfig, Secret};
    use crate::upstream::UpstreamError;

    fn pool(n: usize) -> Pool {
        Pool::new(
            (0..n)
                .map(|i| {
                    Arc::new(Account::new(
                        format!("a{i}"),
                        AccountKind::Token,
                        Secret::new("t"),
                        None,
                        None,
                    ))
                })
                .collect(),
        )
    }

    fn cfg() -> PoolConfig {
        PoolConfig {
            retry_count: 3,
            rate_limit_cooldown: Duration::from_secs(60),
            transient_cooldown: Duration::ZERO,
        }
    }

    #[test]
    fn round_robin_skips_unhealthy_and_counts_leases() {
        let p = pool(3);
        p.accounts()[1].record_failure(&UpstreamError::Auth("x".into()), &cfg());
        let ids: Vec<String> = (0..4)
            .map(|_| p.acquire(|_| false).unwrap().account().id.clone())
            .collect();
        assert_eq!(ids, ["a0", "a2", "a2", "a0"]);
        let l = p.acquire(|_| false).unwrap();
        assert_eq!(l.account().inflight(), 1);
        drop(l);
        assert!(p.accounts().iter().all(|a| a.inflight() == 0));
    }

    #[test]
    fn cooling_and_disabled_accounts_explain_themselves() {
        let p = pool(2);
        let limited = UpstreamError::RateLimited {
            detail: "q".into(),
            retry_after: None,
        };
        p.accounts()[0].record_failure(&limited, &cfg());
        p.accounts()[1].record_failure(&UpstreamError::Auth("x".into()), &cfg());
        match p.acquire(|_| false).unwrap_err() {
            Unavailable::Cooling { retry_after } => assert!(retry_after > Duration::from_secs(58)),
            other @ Unavailable::NoneUsable => panic!("{other:?}"),
        }
        p.accounts()[0].record_failure(&UpstreamError::Auth("x".into()), &cfg());
        assert_eq!(p.acquire(|_| false).unwrap_err(), Unavailable::NoneUsable);
    }
}
