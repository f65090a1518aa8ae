//! `Encrypted`: wraps any store so account credentials (password, token, cookies) are stored
//! sealed with AES-256-GCM under `DATA_ENCRYPTION_KEY`, and opened again on the way out.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::{
    AccountRecord, AccountStatus, Filed, KeptChat, KeyLimits, KeyRecord, Store, StoreError,
    StoreResult, ThreadEntry, UsageDelta, UsageRow,
};
use crate::config::Secret;

/// Marks a sealed value; the version leaves room for another scheme later.
const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;

/// A store whose account credentials are encrypted at rest. Everything else passes through.
///
/// Stored form: `enc:v1:<base64(nonce || ciphertext)>`, a fresh random nonce per value. The
/// account id and the field name are authenticated with it, so a sealed token cannot be moved
/// to another account or field unnoticed. Values without the prefix are read as they are, so a
/// store written before a key was set keeps working (and is sealed as accounts are rewritten).
pub struct Encrypted<S: Store + ?Sized = dyn Store> {
    inner: Arc<S>,
    cipher: Aes256Gcm,
}

impl<S: Store + ?Sized> fmt::Debug for Encrypted<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encrypted")
            .field("inner", &self.inner.backend())
            .finish_non_exhaustive()
    }
}

/// Which credential a value is; also its associated data.
#[derive(Clone, Copy)]
enum Field {
    Password,
    Token,
    Cookies,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Token => "token",
            Self::Cookies => "cookies",
        }
    }
}

fn associated_data(id: &str, field: Field) -> Vec<u8> {
    // The field name has no NUL, so `field NUL id` cannot be read two ways.
    let mut aad = Vec::with_capacity(field.name().len() + 1 + id.len());
    aad.extend_from_slice(field.name().as_bytes());
    aad.push(0);
    aad.extend_from_slice(id.as_bytes());
    aad
}

impl<S: Store + ?Sized> Encrypted<S> {
    /// The AES key is the sha256 of `passphrase`.
    pub fn new(inner: Arc<S>, passphrase: &Secret) -> Self {
        let key = Sha256::digest(passphrase.expose().as_bytes());
        Self {
            inner,
            cipher: Aes256Gcm::new(&key),
        }
    }

    fn seal(&self, id: &str, field: Field, value: &Secret) -> StoreResult<Secret> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(id, field);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| {
                StoreError::Backend(format!(
                    "cannot encrypt the {} of account {id}",
                    field.name()
                ))
            })?;
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(Secret::new(format!("{PREFIX}{}", STANDARD.encode(blob))))
    }

    fn open(&self, id: &str, field: Field, value: &Secret) -> StoreResult<Secret> {
        let Some(encoded) = value.expose().strip_prefix(PREFIX) else {
            return Ok(value.clone());
        };
        let fail = || {
            StoreError::Backend(format!(
                "cannot decrypt the {} of account {id} (wrong DATA_ENCRYPTION_KEY?)",
                field.name()
            ))
        };
        let blob = STANDARD.decode(encoded).map_err(|_| fail())?;
        if blob.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let aad = associated_data(id, field);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| fail())?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| fail())
    }

    fn map_secrets(
        &self,
        account: &AccountRecord,
        f: impl Fn(&Self, &str, Field, &Secret) -> StoreResult<Secret>,
    ) -> StoreResult<AccountRecord> {
        let apply = |field: Field, value: &Option<Secret>| {
            value
                .as_ref()
                .map(|v| f(self, &account.id, field, v))
                .transpose()
        };
        Ok(AccountRecord {
            password: apply(Field::Password, &account.password)?,
            token: apply(Field::Token, &account.token)?,
            cookies: apply(Field::Cookies, &account.cookies)?,
            ..account.clone()
        })
    }

    fn seal_account(&self, account: &AccountRecord) -> StoreResult<AccountRecord> {
        self.map_secrets(account, Self::seal)
    }

    fn open_account(&self, account: &AccountRecord) -> StoreResult<AccountRecord> {
        self.map_secrets(account, Self::open)
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for Encrypted<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        self.inner
            .list_accounts()
            .await?
            .iter()
            .map(|a| self.open_account(a))
            .collect()
    }

    async fn upsert_account(&self, account: &AccountRecord) -> StoreResult<()> {
        let sealed = self.seal_account(account)?;
        self.inner.upsert_account(&sealed).await
    }

    async fn insert_account(&self, account: &AccountRecord) -> StoreResult<()> {
        let sealed = self.seal_account(account)?;
        self.inner.insert_account(&sealed).await
    }

    async fn delete_account(&self, id: &str) -> StoreResult<bool> {
        self.inner.delete_account(id).await
    }

    async fn account_statuses(&self) -> StoreResult<HashMap<String, AccountStatus>> {
        self.inner.account_statuses().await
    }

    async fn set_account_status(&self, id: &str, status: &AccountStatus) -> StoreResult<()> {
        self.inner.set_account_status(id, status).await
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.inner.list_keys().await
    }

    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        self.inner.insert_key(key).await
    }

    async fn delete_key(&self, id: &str) -> StoreResult<bool> {
        self.inner.delete_key(id).await
    }

    async fn set_key_limits(&self, id: &str, limits: &KeyLimits) -> StoreResult<bool> {
        self.inner.set_key_limits(id, limits).await
    }

    async fn count_hit(&self, name: &str, expires_at_ms: i64) -> StoreResult<u64> {
        self.inner.count_hit(name, expires_at_ms).await
    }

    async fn hold_slot(
        &self,
        name: &str,
        holder: &str,
        limit: u32,
        until_ms: i64,
    ) -> StoreResult<bool> {
        self.inner.hold_slot(name, holder, limit, until_ms).await
    }

    async fn free_slot(&self, name: &str, holder: &str) -> StoreResult<()> {
        self.inner.free_slot(name, holder).await
    }

    async fn add_usage(&self, batch: &[UsageDelta]) -> StoreResult<()> {
        self.inner.add_usage(batch).await
    }

    async fn usage(&self, since_day: &str) -> StoreResult<Vec<UsageRow>> {
        self.inner.usage(since_day).await
    }

    async fn get_setting(&self, name: &str) -> StoreResult<Option<String>> {
        self.inner.get_setting(name).await
    }

    async fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        self.inner.set_setting(name, value).await
    }

    async fn cache_get(&self, key: &str) -> StoreResult<Option<String>> {
        self.inner.cache_get(key).await
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at_ms: i64) -> StoreResult<()> {
        self.inner.cache_put(key, value, expires_at_ms).await
    }

    async fn next_turn(&self) -> StoreResult<u64> {
        self.inner.next_turn().await
    }

    // Thread entries hold ids, not credentials: they pass through as they are.
    async fn put_thread(
        &self,
        key: &str,
        entry: &ThreadEntry,
        expires_at_ms: i64,
    ) -> StoreResult<Filed> {
        self.inner.put_thread(key, entry, expires_at_ms).await
    }

    async fn get_thread(&self, key: &str) -> StoreResult<Option<ThreadEntry>> {
        self.inner.get_thread(key).await
    }

    async fn claim_expired_chats(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<KeptChat>> {
        self.inner.claim_expired_chats(now_ms, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::{self, COOKIES, PASSWORD, TOKEN};
    use crate::store::{CredentialKind, MemoryStore};

    fn passphrase() -> Secret {
        Secret::new("correct horse battery staple")
    }

    #[tokio::test]
    async fn encrypted_passes_the_suite() {
        let store = Encrypted::new(Arc::new(MemoryStore::new()), &passphrase());
        suite::run(&store).await;
    }

    #[tokio::test]
    async fn inner_store_holds_only_sealed_values() {
        let inner = Arc::new(MemoryStore::new());
        let store = Encrypted::new(Arc::clone(&inner), &passphrase());
        let alice = suite::account("alice@example.com", CredentialKind::Password, 1);
        let bob = suite::account("account_1", CredentialKind::Token, 2);
        store.insert_account(&alice).await.unwrap();
        store.upsert_account(&bob).await.unwrap();

        let raw = inner.list_accounts().await.unwrap();
        let sealed: Vec<&str> = raw
            .iter()
            .flat_map(|a| [&a.password, &a.token, &a.cookies])
            .filter_map(|v| v.as_ref().map(Secret::expose))
            .collect();
        assert_eq!(
            sealed.len(),
            4,
            "alice: password + token; bob: token + cookies"
        );
        for value in &sealed {
            let encoded = value.strip_prefix("enc:v1:").expect("sealed");
            let decoded = STANDARD.decode(encoded).expect("base64");
            assert!(decoded.len() >= NONCE_LEN + 16, "nonce, ciphertext and tag");
            for plain in [PASSWORD, TOKEN, COOKIES] {
                assert!(!value.contains(plain));
            }
        }
        // Everything but the credentials is stored as given.
        assert_eq!(raw[0].email, alice.email);
        assert_eq!(raw[1].proxy, bob.proxy);
        // A fresh nonce per write: the same value never looks the same twice.
        store.upsert_account(&alice).await.unwrap();
        let again = inner.list_accounts().await.unwrap();
        assert_ne!(again[0].password, raw[0].password);

        assert_eq!(store.list_accounts().await.unwrap(), [alice, bob]);
    }

    #[tokio::test]
    async fn plain_values_from_before_the_key_still_read() {
        let inner = Arc::new(MemoryStore::new());
        let alice = suite::account("alice@example.com", CredentialKind::Password, 1);
        inner.insert_account(&alice).await.unwrap();
        let store = Encrypted::new(Arc::clone(&inner), &passphrase());
        assert_eq!(store.list_accounts().await.unwrap(), [alice]);
    }

    #[tokio::test]
    async fn wrong_key_fails_without_showing_the_value() {
        let inner = Arc::new(MemoryStore::new());
        let alice = suite::account("alice@example.com", CredentialKind::Password, 1);
        Encrypted::new(Arc::clone(&inner), &passphrase())
            .insert_account(&alice)
            .await
            .unwrap();

        let wrong = Encrypted::new(
            Arc::clone(&inner),
            &Secret::new("Correct horse battery staple"),
        );
        let Err(StoreError::Backend(message)) = wrong.list_accounts().await else {
            panic!("a wrong key must fail");
        };
        assert_eq!(
            message,
            "cannot decrypt the password of account alice@example.com \
             (wrong DATA_ENCRYPTION_KEY?)"
        );
        let raw = inner.list_accounts().await.unwrap();
        assert!(!message.contains(raw[0].password.as_ref().unwrap().expose()));
        assert!(!message.contains(PASSWORD));
    }

    #[tokio::test]
    async fn a_sealed_value_moved_to_another_account_does_not_open() {
        let inner = Arc::new(MemoryStore::new());
        let store = Encrypted::new(Arc::clone(&inner), &passphrase());
        let alice = suite::account("alice@example.com", CredentialKind::Password, 1);
        store.insert_account(&alice).await.unwrap();
        let mut stolen = inner.list_accounts().await.unwrap().remove(0);
        stolen.id = "mallory@example.com".to_owned();
        stolen.created_at = 2;
        inner.insert_account(&stolen).await.unwrap();

        let Err(StoreError::Backend(message)) = store.list_accounts().await else {
            panic!("a moved value must not open");
        };
        assert!(message.contains("account mallory@example.com"), "{message}");
    }

    #[tokio::test]
    async fn garbage_after_the_prefix_is_a_decrypt_error() {
        let inner = Arc::new(MemoryStore::new());
        let mut alice = suite::account("alice@example.com", CredentialKind::Password, 1);
        alice.token = Some(Secret::new("enc:v1:not base64!"));
        alice.password = None;
        inner.insert_account(&alice).await.unwrap();
        let store = Encrypted::new(inner, &passphrase());
        let Err(StoreError::Backend(message)) = store.list_accounts().await else {
            panic!("garbage must not open");
        };
        assert_eq!(
            message,
            "cannot decrypt the token of account alice@example.com (wrong DATA_ENCRYPTION_KEY?)"
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let store = Encrypted::new(Arc::new(MemoryStore::new()), &passphrase());
        assert_eq!(format!("{store:?}"), "Encrypted { inner: \"memory\", .. }");
    }
}
