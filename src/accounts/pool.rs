//! `Pool`: picks a usable account (round-robin, or sticky by caller), honouring per-account
//! pacing and `MODEL_TO_ACCOUNT_MAP`, waiting for a free slot; `Lease`: one in-flight request,
//! released on drop.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::{Account, Health};
use crate::config::PoolConfig;

#[derive(Debug, Default)]
pub struct Pool {
    accounts: RwLock<Vec<Arc<Account>>>,
    cursor: std::sync::atomic::AtomicUsize,
    /// Woken whenever a lease ends, for requests waiting for a free slot.
    freed: Arc<Notify>,
}

/// What a request needs from the pool.
pub struct Pick<'a> {
    /// The upstream model, for `MODEL_TO_ACCOUNT_MAP`.
    pub model: &'a str,
    /// Same key, same account (when `STICKY_ACCOUNTS` is on).
    pub sticky_key: Option<&'a str>,
    /// Accounts this request must not use (already tried).
    pub skip: &'a (dyn Fn(&Account) -> bool + Sync),
    /// The round-robin position (shared between replicas when the store is).
    pub turn: u64,
}

/// Why no account could be leased.
#[derive(Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// Every candidate is busy (at its in-flight cap or pacing interval) after waiting.
    Busy { retry_after: Duration },
    /// Every candidate is cooling down; the first is back after `retry_after`.
    Cooling { retry_after: Duration },
    /// No candidate is usable at all (none configured, or all disabled).
    NoneUsable,
}

enum Try {
    Got(Lease),
    Busy(Duration),
    Failed(Unavailable),
}

impl Pool {
    pub fn new(accounts: Vec<Arc<Account>>) -> Self {
        Self {
            accounts: RwLock::new(accounts),
            ..Self::default()
        }
    }

    pub fn accounts(&self) -> Vec<Arc<Account>> {
        self.accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Account>> {
        self.accounts().into_iter().find(|a| a.id == id)
    }

    /// Replaces the account list; leases on removed accounts stay valid until they end.
    pub fn set_accounts(&self, accounts: Vec<Arc<Account>>) {
        *self
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner) = accounts;
        self.freed.notify_waiters();
    }

    /// The first account that is neither cooling down nor disabled.
    pub fn first_usable(&self) -> Option<Arc<Account>> {
        self.accounts().into_iter().find(|a| a.is_usable())
    }

    pub fn usable_count(&self) -> usize {
        self.accounts().iter().filter(|a| a.is_usable()).count()
    }

    /// The soonest time a cooling account is usable again.
    pub fn soonest_back(&self) -> Option<Duration> {
        let now = SystemTime::now();
        self.accounts()
            .iter()
            .filter_map(|a| match a.health() {
                Health::Cooling { until, .. } => {
                    Some(until.duration_since(now).unwrap_or_default())
                }
                _ => None,
            })
            .min()
    }

    /// A local round-robin position, for stores that are not shared.
    pub fn next_turn(&self) -> u64 {
        self.cursor.fetch_add(1, Ordering::Relaxed) as u64
    }

    /// Leases an account for `pick`, waiting up to `cfg.wait` while every candidate is busy.
    pub async fn acquire(&self, pick: &Pick<'_>, cfg: &PoolConfig) -> Result<Lease, Unavailable> {
        let deadline = tokio::time::Instant::now() + cfg.wait;
        loop {
            // Registered before trying, so that a lease ending in between is not missed.
            let freed = self.freed.notified();
            match self.try_acquire(pick, cfg) {
                Try::Got(l) => return Ok(l),
                Try::Failed(u) => return Err(u),
                Try::Busy(pace) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(Unavailable::Busy {
                            retry_after: pace.max(Duration::from_secs(1)),
                        });
                    }
                    // Wake on a freed slot, when a pacing interval ends, or at the deadline.
                    let until = if pace.is_zero() {
                        deadline
                    } else {
                        (now + pace).min(deadline)
                    };
                    tokio::select! {
                        () = freed => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
            }
        }
    }

    fn try_acquire(&self, pick: &Pick<'_>, cfg: &PoolConfig) -> Try {
        let accounts = self.accounts.read().unwrap_or_else(PoisonError::into_inner);
        let n = accounts.len();
        if n == 0 {
            return Try::Failed(Unavailable::NoneUsable);
        }
        let now = SystemTime::now();
        let mut soonest_cool: Option<Duration> = None;
        let mut busy: Option<Duration> = None;
        let mut order: Vec<usize> = Vec::with_capacity(n);
        // Round-robin order from this turn; sticky requests rank accounts by rendezvous hash.
        let start = usize::try_from(pick.turn % n as u64).unwrap_or(0);
        order.extend((0..n).map(|i| (start + i) % n));
        if let (true, Some(key)) = (cfg.sticky, pick.sticky_key) {
            order.sort_by_key(|&i| std::cmp::Reverse(rendezvous(key, &accounts[i].id)));
        }
        for i in order {
            let account = &accounts[i];
            if (pick.skip)(account)
                || !cfg.may_serve(&account.id, pick.model)
                || !account.has_token()
            {
                continue;
            }
            match account.health() {
                Health::Active => {}
                Health::Cooling { until, .. } => {
                    let left = until.duration_since(now).unwrap_or_default();
                    soonest_cool = Some(soonest_cool.map_or(left, |s| s.min(left)));
                    continue;
                }
                Health::Disabled { .. } => continue,
            }
            match self.pace(account, cfg) {
                Ok(lease) => return Try::Got(lease),
                Err(wait) => {
                    busy = Some(busy.map_or(wait, |b| b.min(wait)));
                    // A sticky caller waits for its own account rather than moving on.
                    if cfg.sticky && pick.sticky_key.is_some() {
                        break;
                    }
                }
            }
        }
        match (busy, soonest_cool) {
            (Some(wait), _) => Try::Busy(wait),
            (None, Some(retry_after)) => Try::Failed(Unavailable::Cooling { retry_after }),
            (None, None) => Try::Failed(Unavailable::NoneUsable),
        }
    }

    /// Takes a slot on `account` if its in-flight cap and pacing interval allow; otherwise how
    /// long until pacing allows (zero: wait for a slot to be freed).
    fn pace(&self, account: &Arc<Account>, cfg: &PoolConfig) -> Result<Lease, Duration> {
        let mut last = account
            .last_start
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cfg.max_inflight > 0 && account.inflight.load(Ordering::Acquire) >= cfg.max_inflight {
            return Err(Duration::ZERO);
        }
        if let Some(prev) = *last {
            let since = prev.elapsed();
            if since < cfg.min_interval {
                return Err(cfg.min_interval.saturating_sub(since));
            }
        }
        *last = Some(Instant::now());
        drop(last);
        Ok(Lease::new(Arc::clone(account), Arc::clone(&self.freed)))
    }
}

fn rendezvous(key: &str, account: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (key, account).hash(&mut h);
    h.finish()
}

/// An account held for one request; the in-flight count drops when the lease does.
#[derive(Debug)]
pub struct Lease {
    account: Arc<Account>,
    freed: Arc<Notify>,
}

impl Lease {
    fn new(account: Arc<Account>, freed: Arc<Notify>) -> Self {
        account.inflight.fetch_add(1, Ordering::AcqRel);
        account.served.fetch_add(1, Ordering::Relaxed);
        account.mark_used();
        Self { account, freed }
    }

    /// A lease on an account outside any pool (passthrough mode).
    pub fn detached(account: Arc<Account>) -> Self {
        Self::new(account, Arc::new(Notify::new()))
    }

    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.account.inflight.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AccountRecord, CredentialKind, Origin};
    use crate::upstream::UpstreamError;

    fn account(id: &str) -> Arc<Account> {
        Arc::new(Account::from_record(&AccountRecord {
            id: id.to_owned(),
            kind: CredentialKind::Token,
            email: None,
            password: None,
            token: Some(crate::config::Secret::new("t")),
            cookies: None,
            token_expires_at: None,
            proxy: None,
            origin: Origin::Env,
            created_at: 0,
        }))
    }

    fn pool(n: usize) -> Pool {
        Pool::new((0..n).map(|i| account(&format!("a{i}"))).collect())
    }

    fn cfg() -> PoolConfig {
        PoolConfig {
            retry_count: 3,
            rate_limit_cooldown: Duration::from_secs(60),
            rate_limit_cooldown_max: Duration::from_secs(240),
            transient_cooldown: Duration::ZERO,
            failure_threshold: 1,
            max_inflight: 0,
            min_interval: Duration::ZERO,
            wait: Duration::ZERO,
            sticky: false,
            model_accounts: std::collections::BTreeMap::new(),
        }
    }

    fn pick<'a>(p: &Pool, skip: &'a (dyn Fn(&Account) -> bool + Sync)) -> Pick<'a> {
        Pick {
            model: "m",
            sticky_key: None,
            skip,
            turn: p.next_turn(),
        }
    }

    #[tokio::test]
    async fn round_robin_skips_unhealthy_and_counts_leases() {
        let p = pool(3);
        p.accounts()[1].record_failure(&UpstreamError::Auth("x".into()), &cfg());
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(
                p.acquire(&pick(&p, &|_| false), &cfg())
                    .await
                    .unwrap()
                    .account()
                    .id
                    .clone(),
            );
        }
        assert_eq!(ids, ["a0", "a2", "a2", "a0"]);
        let l = p.acquire(&pick(&p, &|_| false), &cfg()).await.unwrap();
        assert_eq!(l.account().inflight(), 1);
        drop(l);
        assert!(p.accounts().iter().all(|a| a.inflight() == 0));
    }

    #[tokio::test]
    async fn cooling_and_disabled_accounts_explain_themselves() {
        let p = pool(2);
        let limited = UpstreamError::RateLimited {
            detail: "q".into(),
            retry_after: None,
        };
        p.accounts()[0].record_failure(&limited, &cfg());
        p.accounts()[1].record_failure(&UpstreamError::Auth("x".into()), &cfg());
        match p.acquire(&pick(&p, &|_| false), &cfg()).await.unwrap_err() {
            Unavailable::Cooling { retry_after } => assert!(retry_after > Duration::from_secs(58)),
            other => panic!("{other:?}"),
        }
        p.accounts()[0].record_failure(&UpstreamError::Auth("x".into()), &cfg());
        assert_eq!(
            p.acquire(&pick(&p, &|_| false), &cfg()).await.unwrap_err(),
            Unavailable::NoneUsable
        );
    }

    #[test]
    fn rate_limit_cooldown_doubles_up_to_the_max() {
        let a = account("a");
        let limited = UpstreamError::RateLimited {
            detail: "q".into(),
            retry_after: None,
        };
        let mut waits = Vec::new();
        for _ in 0..4 {
            a.record_failure(&limited, &cfg());
            let Health::Cooling { until, .. } = a.health() else {
                panic!()
            };
            waits.push(until.duration_since(SystemTime::now()).unwrap().as_secs() + 1);
        }
        assert_eq!(waits, [60, 120, 240, 240]);
        a.record_success();
        a.record_failure(&limited, &cfg());
        let Health::Cooling { until, .. } = a.health() else {
            panic!()
        };
        assert_eq!(
            until.duration_since(SystemTime::now()).unwrap().as_secs() + 1,
            60
        );
    }

    #[tokio::test]
    async fn busy_accounts_make_requests_wait_then_429() {
        let p = pool(1);
        let c = PoolConfig {
            max_inflight: 1,
            wait: Duration::from_millis(200),
            ..cfg()
        };
        let held = p.acquire(&pick(&p, &|_| false), &c).await.unwrap();
        let started = Instant::now();
        let err = p.acquire(&pick(&p, &|_| false), &c).await.unwrap_err();
        assert!(matches!(err, Unavailable::Busy { .. }));
        assert!(started.elapsed() >= Duration::from_millis(190));
        // A slot freed while waiting is taken at once.
        let p = Arc::new(p);
        let waiter = {
            let p = Arc::clone(&p);
            let c = PoolConfig {
                wait: Duration::from_secs(5),
                ..c.clone()
            };
            tokio::spawn(async move {
                p.acquire(&pick(&p, &|_| false), &c)
                    .await
                    .map(|l| l.account().id.clone())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap().unwrap(), "a0");
    }

    #[tokio::test]
    async fn pacing_interval_and_model_map() {
        let p = pool(2);
        let mut c = PoolConfig {
            min_interval: Duration::from_millis(100),
            wait: Duration::from_secs(1),
            ..cfg()
        };
        c.model_accounts.insert("special".into(), vec!["a1".into()]);
        let only = |_: &Account| false;
        let special = Pick {
            model: "special",
            sticky_key: None,
            skip: &only,
            turn: 0,
        };
        assert_eq!(p.acquire(&special, &c).await.unwrap().account().id, "a1");
        let started = Instant::now();
        assert_eq!(p.acquire(&special, &c).await.unwrap().account().id, "a1");
        assert!(started.elapsed() >= Duration::from_millis(90), "paced");
        let other = Pick {
            model: "other",
            sticky_key: None,
            skip: &only,
            turn: 0,
        };
        assert_eq!(p.acquire(&other, &c).await.unwrap().account().id, "a0");
    }

    #[tokio::test]
    async fn sticky_callers_keep_their_account() {
        let p = pool(5);
        let c = PoolConfig {
            sticky: true,
            ..cfg()
        };
        let none = |_: &Account| false;
        let first = |key| Pick {
            model: "m",
            sticky_key: Some(key),
            skip: &none,
            turn: p.next_turn(),
        };
        let a = p
            .acquire(&first("user-1"), &c)
            .await
            .unwrap()
            .account()
            .id
            .clone();
        for _ in 0..5 {
            assert_eq!(
                p.acquire(&first("user-1"), &c).await.unwrap().account().id,
                a
            );
        }
        let mut keys = std::collections::HashSet::new();
        for i in 0..40 {
            let key = format!("user-{i}");
            let pick = Pick {
                model: "m",
                sticky_key: Some(&key),
                skip: &none,
                turn: p.next_turn(),
            };
            keys.insert(p.acquire(&pick, &c).await.unwrap().account().id.clone());
        }
        assert!(keys.len() >= 3, "different callers spread: {keys:?}");
        p.get(&a)
            .unwrap()
            .record_failure(&UpstreamError::Auth("x".into()), &c);
        assert_ne!(
            p.acquire(&first("user-1"), &c).await.unwrap().account().id,
            a
        );
    }
}
