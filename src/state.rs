//! `AppState`: the configuration and the proxy, shared by every handler. Wiring only.

use std::sync::Arc;

use crate::accounts::{Account, AccountKind, Pool};
use crate::catalog::Catalog;
use crate::config::{AccountCredential, AccountSpec, Config, Secret};
use crate::proxy::Proxy;
use crate::upstream::QwenClient;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    proxy: Arc<Proxy>,
}

impl AppState {
    /// Builds everything the server needs; email+password accounts are signed in here, one
    /// at a time. An account that cannot sign in is kept, disabled, and the reason logged.
    pub async fn build(config: Config) -> Self {
        let client = Arc::new(QwenClient::new(Arc::new(config.upstream.clone())));
        let mut accounts = Vec::with_capacity(config.accounts.len());
        for spec in &config.accounts {
            accounts.push(Arc::new(open_account(&client, spec).await));
        }
        if accounts.is_empty() {
            tracing::warn!(
                "no Qwen account is configured (ACCOUNTS, QWEN_COOKIES or QWEN_AUTH_TOKEN); chat requests will fail with 503"
            );
        }
        let pool = Pool::new(accounts);
        let catalog = Catalog::new(config.models.clone());
        let proxy = Arc::new(Proxy::new(client, pool, catalog, config.pool.clone()));
        Self(Arc::new(Inner { config, proxy }))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.0.proxy
    }
}

async fn open_account(client: &QwenClient, spec: &AccountSpec) -> Account {
    match &spec.credential {
        AccountCredential::Token { token, cookies } => Account::new(
            spec.id.clone(),
            AccountKind::Token,
            token.clone(),
            cookies.clone(),
            spec.proxy.clone(),
        ),
        AccountCredential::Password { email, password } => {
            match client.sign_in(email, password, spec.proxy.as_deref()).await {
                Ok(token) => {
                    tracing::info!(account = %spec.id, "signed in");
                    Account::new(
                        spec.id.clone(),
                        AccountKind::Password,
                        token,
                        None,
                        spec.proxy.clone(),
                    )
                }
                Err(e) => {
                    tracing::warn!(account = %spec.id, class = e.class(), error = %e, "sign-in failed; the account is skipped");
                    let account = Account::new(
                        spec.id.clone(),
                        AccountKind::Password,
                        Secret::new(""),
                        None,
                        spec.proxy.clone(),
                    );
                    account.disable("sign_in_failed");
                    account
                }
            }
        }
    }
}
