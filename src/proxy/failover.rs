//! Failover bookkeeping for one request: which accounts were tried, which egresses were
//! challenged, what went wrong last, and the error the client gets when no account is left.

use std::sync::Arc;
use std::time::Duration;

use super::{Proxy, ProxyError};
use crate::accounts::{Account, AccountManager, Health, Lease, Pool, Unavailable};
use crate::config::Secret;
use crate::conversation::{Feature, TokenUsage};
use crate::metrics::Metrics;
use crate::upstream::{Site, UpstreamError};

/// Failover bookkeeping for one request: which accounts were tried and what went wrong.
pub(super) struct Failover {
    pub(super) retry_count: usize,
    pub(super) tried: Vec<String>,
    /// Egresses (per-account proxy or none) that answered with a WAF challenge.
    pub(super) challenged: Vec<Option<String>>,
    pub(super) last: Option<UpstreamError>,
    /// The caller's own account, in passthrough mode (tried once, never failed over).
    pub(super) passthrough: Option<Arc<Account>>,
    /// The generation feature the request uses: its quota is rested per account.
    pub(super) feature: Option<Feature>,
    /// A password account whose token was rejected: signed in again and tried once more
    /// before failing over (the upstream may have forgotten its tokens in a restart).
    pub(super) sign_in_again: Option<Arc<Account>>,
    pub(super) signed_in_again: bool,
    metrics: Arc<Metrics>,
}

impl Failover {
    pub(super) fn new(
        accounts: &AccountManager,
        passthrough: Option<&Secret>,
        feature: Option<Feature>,
        metrics: &Arc<Metrics>,
    ) -> Self {
        Self {
            retry_count: accounts.config().retry_count,
            tried: Vec::new(),
            challenged: Vec::new(),
            last: None,
            passthrough: passthrough.map(|t| Arc::new(Account::passthrough(t.clone()))),
            feature,
            sign_in_again: None,
            signed_in_again: false,
            metrics: Arc::clone(metrics),
        }
    }

    /// How soon the first usable account whose feature quota rests has it again.
    pub(super) fn feature_back(&self, pool: &Pool) -> Option<Duration> {
        let feature = self.feature?;
        pool.accounts()
            .iter()
            .filter(|a| a.is_usable())
            .filter_map(|a| a.feature_cooling(feature))
            .min()
    }

    pub(super) async fn lease(
        &mut self,
        accounts: &AccountManager,
        model: &str,
        sites: &[Site],
        sticky: Option<&str>,
    ) -> Result<Lease, ProxyError> {
        // Only accounts of a site that serves the model (none named: any site).
        let off_site = |a: &Account| !sites.is_empty() && !sites.contains(&a.site());
        if let Some(own) = &self.passthrough {
            if self.tried.is_empty() {
                self.tried.push(own.id.clone());
                return Ok(Lease::detached(Arc::clone(own)));
            }
            return Err(self.give_up(accounts.pool()));
        }
        if let Some(account) = self.sign_in_again.take() {
            self.tried.push(account.id.clone());
            if accounts.sign_in(&account).await.is_ok() {
                let others = |a: &Account| a.id != account.id && !off_site(a);
                if let Ok(l) = accounts.lease(model, sticky, &others).await {
                    crate::metrics::request::account(&l.account().id);
                    self.count_failover();
                    return Ok(l);
                }
            }
        }
        if self.tried.len() >= self.retry_count {
            return Err(self.give_up(accounts.pool()));
        }
        let (tried, challenged, feature) = (&self.tried, &self.challenged, self.feature);
        let skip = |a: &Account| {
            tried.contains(&a.id)
                || off_site(a)
                || challenged.iter().any(|p| *p == a.credentials().proxy)
                || feature.is_some_and(|f| a.feature_cooling(f).is_some())
        };
        match accounts.lease(model, sticky, &skip).await {
            Ok(l) => {
                crate::metrics::request::account(&l.account().id);
                self.tried.push(l.account().id.clone());
                self.count_failover();
                Ok(l)
            }
            Err(_) if self.last.is_some() => Err(self.give_up(accounts.pool())),
            Err(Unavailable::Cooling { retry_after }) => {
                Err(ProxyError::AllCooling { retry_after })
            }
            Err(Unavailable::Busy { retry_after }) => Err(ProxyError::AllBusy { retry_after }),
            // Every account left may be resting this request's feature.
            Err(Unavailable::NoneUsable) => Err(match self.feature_back(accounts.pool()) {
                Some(retry_after) => ProxyError::AllCooling { retry_after },
                None => ProxyError::NoAccount,
            }),
        }
    }

    /// An attempt is about to start after a failed one: a failover, by the failure's class.
    fn count_failover(&self) {
        if let Some(last) = &self.last {
            self.metrics.failover(last.class());
            crate::metrics::request::failed_over();
        }
    }

    /// Records a failure before anything was sent: `Ok` to try the next account, `Err` to stop.
    pub(super) fn failed(
        &mut self,
        accounts: &Arc<AccountManager>,
        account: &Arc<Account>,
        err: UpstreamError,
    ) -> Result<(), ProxyError> {
        tracing::warn!(account = %account.id, class = err.class(), error = %err, "upstream attempt failed");
        if matches!(err, UpstreamError::Auth(_))
            && self.passthrough.is_none()
            && !self.signed_in_again
            && accounts.claim_sign_in_again(account)
        {
            self.signed_in_again = true;
            self.tried.retain(|id| *id != account.id);
            self.sign_in_again = Some(Arc::clone(account));
            self.last = Some(err);
            return Ok(());
        }
        match (&err, self.feature) {
            (_, _) if self.passthrough.is_some() => {}
            (UpstreamError::RateLimited { retry_after, .. }, Some(feature)) => {
                let rest = retry_after.unwrap_or(accounts.config().rate_limit_cooldown);
                account.cool_feature(feature, rest);
                self.metrics.cooldown(&account.id, "feature_rate_limited");
            }
            _ => self.report(accounts, account, &err),
        }
        let retry = err.is_retryable() || matches!(err, UpstreamError::Challenge(_));
        if matches!(err, UpstreamError::Challenge(_)) {
            self.metrics.challenge(&account.id);
            self.challenged.push(account.credentials().proxy);
        }
        self.last = Some(err);
        if retry {
            Ok(())
        } else {
            Err(self.give_up(accounts.pool()))
        }
    }

    /// Reports a failure to the accounts, counting the cooldown it starts, if any.
    pub(super) fn report(
        &self,
        accounts: &Arc<AccountManager>,
        account: &Arc<Account>,
        err: &UpstreamError,
    ) {
        let was_cooling = matches!(account.health(), Health::Cooling { .. });
        accounts.report_failure(account, err);
        if let Health::Cooling { reason, .. } = account.health()
            && !was_cooling
        {
            self.metrics.cooldown(&account.id, &reason);
        }
    }

    pub(super) fn succeeded(
        &self,
        proxy: &Proxy,
        account: &Account,
        key_id: Option<&str>,
        usage: TokenUsage,
    ) {
        crate::metrics::request::served(&account.id, usage.input, usage.output);
        if self.passthrough.is_none() {
            proxy.accounts.report_success(account);
            proxy
                .usage
                .record(&account.id, key_id, usage.input, usage.output);
        }
    }

    pub(super) fn give_up(&mut self, pool: &Pool) -> ProxyError {
        let last = self
            .last
            .take()
            .unwrap_or(UpstreamError::Transient("no attempt was made".into()));
        if self.passthrough.is_some() && matches!(last, UpstreamError::Auth(_)) {
            return ProxyError::PassthroughRejected;
        }
        let retry_after = match &last {
            UpstreamError::RateLimited { retry_after, .. } => Some(
                self.feature_back(pool)
                    .or_else(|| pool.soonest_back())
                    .or(*retry_after)
                    .unwrap_or(Duration::from_secs(60)),
            ),
            _ => None,
        };
        ProxyError::Failed {
            last,
            challenged: !self.challenged.is_empty(),
            retry_after,
            usable_accounts: if self.passthrough.is_some() {
                0
            } else {
                pool.usable_count()
            },
        }
    }
}
