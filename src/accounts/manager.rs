//! `AccountManager`: the accounts' lifecycle. Merges configured accounts with stored ones,
//! signs in (at start, before expiry, after a rejected token), re-tests disabled accounts,
//! persists health, and applies runtime changes (admin API, reload).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Account, Health, Lease, Pick, Pool, Unavailable};
use crate::config::{AccountCredential, AccountSpec, LifecycleConfig, PoolConfig, Secret};
use crate::store::{
    AccountRecord, AccountStatus, CredentialKind, Origin, Store, StoreError, now_ms,
};
use crate::upstream::{Upstream, UpstreamError};

/// A rejected token is signed in again at most once in this window; a second rejection
/// inside it disables the account.
const RELOGIN_WINDOW: Duration = Duration::from_secs(60);

/// An account to add at runtime (the admin API's two forms).
#[derive(Debug)]
pub enum AddAccount {
    /// A browser cookie string (or a bare JWT); the id is `account_<num>`.
    Cookie { num: Option<String>, cookie: Secret },
    /// Signed in at once; the id is the email.
    Password { email: String, password: Secret },
    /// A Tongyi browser cookie and its XSRF token; the id is `tongyi_<num>`.
    Tongyi {
        num: Option<String>,
        cookie: Secret,
        xsrf: Secret,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("account {0} already exists")]
    Conflict(String),
    #[error("no account {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("sign-in failed: {}", .0.sign_in_failure())]
    SignIn(UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub updated: Vec<String>,
}

pub struct AccountManager {
    pool: Pool,
    store: Arc<dyn Store>,
    client: Arc<dyn Upstream>,
    cfg: PoolConfig,
    life: LifecycleConfig,
    /// Several replicas share the store: turns come from it and health is re-read from it.
    shared: bool,
    /// One sign-in at a time, never a burst.
    signing_in: tokio::sync::Mutex<()>,
    relogins: Mutex<HashMap<String, Instant>>,
    /// The statuses last read from (or written to) a shared store: only a change there is
    /// another replica's news; an unchanged (e.g. expired) one must not undo local counts.
    seen: Mutex<HashMap<String, AccountStatus>>,
}

impl AccountManager {
    /// Loads stored accounts, applies the configured ones (their credentials win), restores
    /// health, and signs in password accounts whose token is missing or about to expire.
    pub async fn start(
        specs: &[AccountSpec],
        store: Arc<dyn Store>,
        client: Arc<dyn Upstream>,
        cfg: PoolConfig,
        life: LifecycleConfig,
        shared: bool,
    ) -> Result<Arc<Self>, StoreError> {
        let manager = Arc::new(Self {
            pool: Pool::default(),
            store,
            client,
            cfg,
            life,
            shared,
            signing_in: tokio::sync::Mutex::new(()),
            relogins: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        });
        refuse_sealed_without_key(&manager.store.list_accounts().await?)?;
        manager.apply_specs(specs).await?;
        let statuses = manager.store.account_statuses().await?;
        for a in manager.pool.accounts() {
            if let Some(s) = statuses.get(&a.id) {
                a.apply_status(s);
            }
        }
        for a in manager.pool.accounts() {
            if a.kind == CredentialKind::Password && manager.needs_sign_in(&a) {
                let _ = manager.sign_in(&a).await;
            }
        }
        Ok(manager)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// Leases an account, with the round-robin turn from the store when it is shared.
    pub async fn lease(
        &self,
        model: &str,
        sticky_key: Option<&str>,
        skip: &(dyn Fn(&Account) -> bool + Sync),
    ) -> Result<Lease, Unavailable> {
        let turn = if self.shared {
            match self.store.next_turn().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "shared round-robin unavailable; using the local one");
                    self.pool.next_turn()
                }
            }
        } else {
            self.pool.next_turn()
        };
        self.pool
            .acquire(
                &Pick {
                    model,
                    sticky_key,
                    skip,
                    turn,
                },
                &self.cfg,
            )
            .await
    }

    pub fn report_success(&self, account: &Account) {
        account.record_success();
    }

    /// Records a failure: health is updated and persisted; a password account whose token was
    /// rejected signs in again (once per window) in the background.
    pub fn report_failure(self: &Arc<Self>, account: &Arc<Account>, err: &UpstreamError) {
        if !account.record_failure(err, &self.cfg) {
            return;
        }
        self.persist_status(account);
        if matches!(err, UpstreamError::Auth(_)) && account.kind == CredentialKind::Password {
            if !self.claim_sign_in_again(account) {
                tracing::warn!(account = %account.id, "token rejected again right after signing in; account stays disabled");
                return;
            }
            let (this, account) = (Arc::clone(self), Arc::clone(account));
            tokio::spawn(async move {
                let _ = this.sign_in(&account).await;
            });
        }
    }

    /// Whether a password account whose token was just rejected may sign in again now (once
    /// per `RELOGIN_WINDOW`); if so, the window starts.
    pub fn claim_sign_in_again(&self, account: &Account) -> bool {
        if account.kind != CredentialKind::Password {
            return false;
        }
        let mut r = self.relogins.lock().unwrap_or_else(PoisonError::into_inner);
        if r.get(&account.id)
            .is_some_and(|t| t.elapsed() < RELOGIN_WINDOW)
        {
            return false;
        }
        r.insert(account.id.clone(), Instant::now());
        true
    }

    fn persist_status(&self, account: &Account) {
        let (store, id, status) = (
            Arc::clone(&self.store),
            account.id.clone(),
            account.status(),
        );
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), status.clone());
        tokio::spawn(async move {
            if let Err(e) = store.set_account_status(&id, &status).await {
                tracing::warn!(account = %id, error = %e, "cannot store account status");
            }
        });
    }

    fn needs_sign_in(&self, a: &Account) -> bool {
        if a.credentials().token.expose().is_empty() {
            return true;
        }
        let left_ms = a
            .token_expires_at()
            .map(|exp| exp.saturating_mul(1000) - now_ms());
        let before_ms = i64::try_from(self.life.refresh_before.as_millis()).unwrap_or(i64::MAX);
        left_ms.is_some_and(|left| left < before_ms)
    }

    /// Signs `account` in again; on success it is active with the new token, on failure it
    /// is disabled with the reason. One sign-in at a time across the process.
    pub async fn sign_in(&self, account: &Arc<Account>) -> Result<(), UpstreamError> {
        let Some((email, password)) = account.password_login() else {
            return Err(UpstreamError::Auth("the account has no password".into()));
        };
        let _one_at_a_time = self.signing_in.lock().await;
        let proxy = account.credentials().proxy;
        match self
            .client
            .sign_in(&email, &password, proxy.as_deref())
            .await
        {
            Ok(token) => {
                account.set_token(token);
                account.set_health(Health::Active);
                tracing::info!(account = %account.id, "signed in");
                if let Err(e) = self.store.upsert_account(&account.record()).await {
                    tracing::warn!(account = %account.id, error = %e, "cannot store the new token");
                }
                self.persist_status(account);
                Ok(())
            }
            Err(e) => {
                if let UpstreamError::Auth(detail) = &e {
                    // At sign-in an auth failure is about the password, not a token.
                    tracing::warn!(
                        account = %account.id, %detail,
                        "sign-in failed: the e-mail or password was refused; the account stays \
                         disabled until its password is changed (ACCOUNTS, then reload) or a \
                         re-test succeeds"
                    );
                } else {
                    tracing::warn!(account = %account.id, class = e.class(), error = %e, "sign-in failed");
                }
                account.set_health(Health::Disabled {
                    reason: format!("sign_in_failed: {}", e.class()),
                });
                self.persist_status(account);
                Err(e)
            }
        }
    }

    /// Adds an account at runtime; it lives in the store only.
    pub async fn add(&self, req: AddAccount) -> Result<Arc<Account>, ManagerError> {
        let mut rec = match req {
            AddAccount::Cookie { num, cookie } => {
                let raw = cookie.expose().trim();
                let token = crate::config::cookie_token(raw)
                    .or_else(|| {
                        (raw.split('.').count() == 3 && !raw.contains([';', ' ']))
                            .then(|| raw.to_owned())
                    })
                    .ok_or_else(|| {
                        ManagerError::Invalid(
                            "cookie must hold token=<jwt> (or be a bare JWT)".into(),
                        )
                    })?;
                let id = match num {
                    Some(n) if !n.trim().is_empty() => format!("account_{}", n.trim()),
                    _ => self.free_id("account"),
                };
                let cookies = raw.contains('=').then(|| Secret::new(raw));
                record(
                    id,
                    CredentialKind::Token,
                    None,
                    None,
                    Some(Secret::new(token)),
                    cookies,
                )
            }
            AddAccount::Tongyi { num, cookie, xsrf } => {
                let (c, x) = (cookie.expose().trim(), xsrf.expose().trim());
                if !c.contains('=') || x.is_empty() || x.contains([';', '=', ' ']) {
                    return Err(ManagerError::Invalid(
                        "a Tongyi account needs the browser cookie (name=value pairs) and its \
                         XSRF token"
                            .into(),
                    ));
                }
                let id = match num {
                    Some(n) if !n.trim().is_empty() => format!("tongyi_{}", n.trim()),
                    _ => self.free_id("tongyi"),
                };
                record(
                    id,
                    CredentialKind::Tongyi,
                    None,
                    None,
                    Some(Secret::new(x)),
                    Some(Secret::new(c)),
                )
            }
            AddAccount::Password { email, password } => {
                if !email.contains('@') || password.expose().is_empty() {
                    return Err(ManagerError::Invalid(
                        "email and password are required".into(),
                    ));
                }
                record(
                    email.clone(),
                    CredentialKind::Password,
                    Some(email),
                    Some(password),
                    None,
                    None,
                )
            }
        };
        if self.pool.get(&rec.id).is_some() {
            return Err(ManagerError::Conflict(rec.id));
        }
        if let Some((email, password)) = rec.email.clone().zip(rec.password.clone()) {
            let _one_at_a_time = self.signing_in.lock().await;
            let token = self
                .client
                .sign_in(&email, &password, None)
                .await
                .map_err(ManagerError::SignIn)?;
            rec.token_expires_at = super::jwt::expiry(token.expose());
            rec.token = Some(token);
        }
        self.store.insert_account(&rec).await.map_err(|e| match e {
            StoreError::Conflict(_) => ManagerError::Conflict(rec.id.clone()),
            other @ StoreError::Backend(_) => ManagerError::Store(other),
        })?;
        let account = Arc::new(Account::from_record(&rec));
        let mut all = self.pool.accounts();
        all.push(Arc::clone(&account));
        self.pool.set_accounts(all);
        tracing::info!(account = %account.id, "account added");
        Ok(account)
    }

    fn free_id(&self, prefix: &str) -> String {
        // Among n + 1 candidates at least one is free.
        (1..=self.pool.accounts().len() + 1)
            .map(|n| format!("{prefix}_{n}"))
            .find(|id| self.pool.get(id).is_none())
            .unwrap_or_default()
    }

    /// Removes an account; requests already using it finish normally.
    pub async fn delete(&self, id: &str) -> Result<(), ManagerError> {
        if self.pool.get(id).is_none() {
            return Err(ManagerError::NotFound(id.to_owned()));
        }
        self.store.delete_account(id).await?;
        self.pool.set_accounts(
            self.pool
                .accounts()
                .into_iter()
                .filter(|a| a.id != id)
                .collect(),
        );
        tracing::info!(account = %id, "account deleted");
        Ok(())
    }

    pub async fn set_proxy(&self, id: &str, proxy: Option<String>) -> Result<(), ManagerError> {
        let account = self
            .pool
            .get(id)
            .ok_or_else(|| ManagerError::NotFound(id.to_owned()))?;
        let proxy = match proxy {
            Some(p) => Some(
                crate::config::validate_proxy("proxy", &p)
                    .map_err(|e| ManagerError::Invalid(e.to_string()))?,
            ),
            None => None,
        };
        account.set_proxy(proxy);
        self.store.upsert_account(&account.record()).await?;
        Ok(())
    }

    /// Applies a new set of configured accounts (start or reload): adds, updates and removes
    /// environment accounts; runtime accounts are left alone.
    pub async fn apply_specs(&self, specs: &[AccountSpec]) -> Result<ReloadReport, StoreError> {
        let stored: HashMap<String, AccountRecord> = self
            .store
            .list_accounts()
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let current: HashMap<String, Arc<Account>> = self
            .pool
            .accounts()
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect();
        let mut report = ReloadReport::default();
        let mut next: Vec<Arc<Account>> = Vec::new();
        for spec in specs {
            let mut rec = spec_record(spec);
            let old = current
                .get(&rec.id)
                .map(|a| a.record())
                .or_else(|| stored.get(&rec.id).cloned());
            if let Some(old) = &old {
                rec.created_at = old.created_at;
                // A password account keeps the token it signed in for while its password stays.
                if rec.kind == CredentialKind::Password && old.password == rec.password {
                    rec.token.clone_from(&old.token);
                    rec.token_expires_at = old.token_expires_at;
                }
                if old.proxy.is_some() && spec.proxy.is_none() {
                    rec.proxy.clone_from(&old.proxy);
                }
            }
            if old.as_ref() != Some(&rec) {
                self.store.upsert_account(&rec).await?;
            }
            if let Some(a) = current.get(&rec.id).filter(|a| a.origin == Origin::Env) {
                if old.as_ref() != Some(&rec) {
                    let new_login = old.as_ref().is_none_or(|o| {
                        o.token != rec.token
                            || o.password != rec.password
                            || o.cookies != rec.cookies
                    });
                    a.update_login(&rec);
                    if new_login {
                        // New credentials deserve a new chance (a failed sign-in disables again).
                        a.set_health(Health::Active);
                    }
                    report.updated.push(rec.id.clone());
                }
                next.push(Arc::clone(a));
            } else {
                report.added.push(rec.id.clone());
                next.push(Arc::new(Account::from_record(&rec)));
            }
        }
        for rec in stored.values().filter(|r| r.origin == Origin::Env) {
            if !specs.iter().any(|s| s.id == rec.id) {
                self.store.delete_account(&rec.id).await?;
            }
        }
        for (id, a) in &current {
            if a.origin == Origin::Env && !specs.iter().any(|s| s.id == *id) {
                report.removed.push(id.clone());
            }
        }
        // Runtime accounts: those already serving, plus any only in the store (first start).
        // An environment account replaces a runtime one of the same id.
        let configured = |id: &str| specs.iter().any(|s| s.id == id);
        for a in current
            .values()
            .filter(|a| a.origin == Origin::Runtime && !configured(&a.id))
        {
            next.push(Arc::clone(a));
        }
        for rec in stored.values().filter(|r| {
            r.origin == Origin::Runtime && !current.contains_key(&r.id) && !configured(&r.id)
        }) {
            next.push(Arc::new(Account::from_record(rec)));
        }
        self.pool.set_accounts(next);
        Ok(report)
    }

    /// Background upkeep until the process ends: token refresh, re-tests, and (with a shared
    /// store) picking up other replicas' changes.
    pub fn spawn_upkeep(self: &Arc<Self>, status_sync: Duration) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(jitter(this.life.refresh_check)).await;
                this.refresh_expiring().await;
            }
        });
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(jitter(this.life.retest)).await;
                this.retest_disabled().await;
            }
        });
        if self.shared {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(status_sync).await;
                    this.sync_from_store().await;
                }
            });
        }
    }

    /// Signs in again every password account whose token is about to expire, one at a time
    /// with a pause between; flags token accounts whose token has expired.
    pub async fn refresh_expiring(&self) {
        for a in self.pool.accounts() {
            match a.kind {
                CredentialKind::Password if self.needs_sign_in(&a) => {
                    let _ = self.sign_in(&a).await;
                    tokio::time::sleep(self.life.refresh_pause).await;
                }
                CredentialKind::Token
                    if a.is_usable()
                        && a.token_expires_at().is_some_and(|e| e <= now_ms() / 1000) =>
                {
                    tracing::warn!(account = %a.id, "token expired; this account needs a new token or cookie");
                    a.set_health(Health::Disabled {
                        reason: "token_expired".into(),
                    });
                    self.persist_status(&a);
                }
                _ => {}
            }
        }
    }

    /// Tests one account now, whatever its state: a password account signs in again, a token
    /// account has its token checked (active when accepted, disabled when refused); a Tongyi
    /// account cannot be checked (`Unsupported`, state unchanged). The inner result is the
    /// upstream's answer.
    pub async fn retest(&self, id: &str) -> Result<Result<(), UpstreamError>, ManagerError> {
        let account = self
            .pool
            .get(id)
            .ok_or_else(|| ManagerError::NotFound(id.to_owned()))?;
        let outcome = match account.kind {
            CredentialKind::Password => self.sign_in(&account).await,
            CredentialKind::Token => {
                let checked = self.client.check_token(&account.credentials()).await;
                match &checked {
                    Ok(()) => account.set_health(Health::Active),
                    Err(UpstreamError::Auth(_)) => account.set_health(Health::Disabled {
                        reason: "token_rejected".into(),
                    }),
                    Err(_) => {}
                }
                self.persist_status(&account);
                checked
            }
            // The site has no way to check a cookie short of a chat (docs/upstream.md §13):
            // the account keeps its state, and a NOT_LOGIN answer still disables it.
            CredentialKind::Tongyi => Err(UpstreamError::Unsupported(
                "a Tongyi cookie can only be checked by a chat; its state is unchanged".into(),
            )),
        };
        tracing::info!(account = %account.id, ok = outcome.is_ok(), "account re-tested");
        Ok(outcome)
    }

    /// Tries disabled accounts again: password accounts sign in, token accounts are checked.
    pub async fn retest_disabled(&self) {
        for a in self.pool.accounts() {
            if !matches!(a.health(), Health::Disabled { .. }) {
                continue;
            }
            match a.kind {
                CredentialKind::Password => {
                    let _ = self.sign_in(&a).await;
                    tokio::time::sleep(self.life.refresh_pause).await;
                }
                CredentialKind::Token | CredentialKind::Tongyi => {
                    if self.client.check_token(&a.credentials()).await.is_ok() {
                        tracing::info!(account = %a.id, "token accepted again");
                        a.set_health(Health::Active);
                        self.persist_status(&a);
                    }
                }
            }
        }
    }

    /// Picks up accounts, credentials and health written by other replicas.
    pub async fn sync_from_store(&self) {
        let (records, statuses) = match (
            self.store.list_accounts().await,
            self.store.account_statuses().await,
        ) {
            (Ok(r), Ok(s)) => (r, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "cannot read shared account state");
                return;
            }
        };
        let current = self.pool.accounts();
        let mut next = Vec::with_capacity(records.len());
        for rec in &records {
            let a = match current.iter().find(|a| a.id == rec.id) {
                Some(a) => {
                    if a.record() != *rec {
                        a.update_login(rec);
                    }
                    Arc::clone(a)
                }
                None => Arc::new(Account::from_record(rec)),
            };
            if let Some(s) = statuses.get(&rec.id) {
                let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
                if seen.get(&rec.id) != Some(s) {
                    a.apply_status(s);
                    seen.insert(rec.id.clone(), s.clone());
                }
            }
            next.push(a);
        }
        self.pool.set_accounts(next);
    }
}

/// Values sealed with `DATA_ENCRYPTION_KEY` read back as themselves when the key is missing;
/// using them as tokens would only fail upstream, so the start is refused instead.
fn refuse_sealed_without_key(records: &[AccountRecord]) -> Result<(), StoreError> {
    let sealed = |s: &Option<Secret>| {
        s.as_ref()
            .is_some_and(|s| s.expose().starts_with("enc:v1:"))
    };
    match records
        .iter()
        .find(|r| sealed(&r.password) || sealed(&r.token) || sealed(&r.cookies))
    {
        Some(r) => Err(StoreError::Backend(format!(
            "account {} is stored encrypted: set DATA_ENCRYPTION_KEY to the key it was written with",
            r.id
        ))),
        None => Ok(()),
    }
}

fn record(
    id: String,
    kind: CredentialKind,
    email: Option<String>,
    password: Option<Secret>,
    token: Option<Secret>,
    cookies: Option<Secret>,
) -> AccountRecord {
    AccountRecord {
        token_expires_at: token.as_ref().and_then(|t| super::jwt::expiry(t.expose())),
        id,
        kind,
        email,
        password,
        token,
        cookies,
        proxy: None,
        origin: Origin::Runtime,
        created_at: now_ms(),
    }
}

fn spec_record(spec: &AccountSpec) -> AccountRecord {
    let mut rec = match &spec.credential {
        AccountCredential::Password { email, password } => record(
            spec.id.clone(),
            CredentialKind::Password,
            Some(email.clone()),
            Some(password.clone()),
            None,
            None,
        ),
        AccountCredential::Token { token, cookies } => record(
            spec.id.clone(),
            CredentialKind::Token,
            None,
            None,
            Some(token.clone()),
            cookies.clone(),
        ),
        AccountCredential::Tongyi { cookie, xsrf } => record(
            spec.id.clone(),
            CredentialKind::Tongyi,
            None,
            None,
            Some(xsrf.clone()),
            Some(cookie.clone()),
        ),
    };
    rec.proxy = spec.proxy.as_ref().map(|p| p.as_str().to_owned());
    rec.origin = Origin::Env;
    rec
}

/// `d` ± 10 %, so that replicas and accounts do not act in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = f64::from(u32::try_from(uuid::Uuid::new_v4().as_u128() % 2001).unwrap_or(1000))
        / 10_000.0
        - 0.1;
    d.mul_f64(1.0 + r)
}
