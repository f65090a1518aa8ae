//! The one test-suite every `Store` backend passes, with exact expectations, plus the fixtures
//! the backends' own tests (reopen, replicas, encryption) share.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;

use super::{
    AccountRecord, AccountStatus, CredentialKind, Filed, HealthState, KeptChat, KeyLimits,
    KeyRecord, Origin, Store, StoreError, Subject, ThreadEntry, UsageDelta, UsageRow,
};
use crate::config::Secret;

/// Secrets with non-ASCII, quotes, backslashes and control characters: they must come back
/// byte for byte.
pub(crate) const PASSWORD: &str = "pässwörd 密码 🔑 \"q\" \\ \n\t'; DROP TABLE accounts; --";
pub(crate) const TOKEN: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE5MDAwMDAwMDB9.c2lnbmF0dXJl-_";
pub(crate) const COOKIES: &str = "cna=Zm9v; token=ä/ö+ü==; ssxmod_itna=Qq4x%2F+==; x=\"y\"";

/// An account with every field set (`Password`) or a token account with cookies and a proxy.
pub(crate) fn account(id: &str, kind: CredentialKind, created_at: i64) -> AccountRecord {
    match kind {
        CredentialKind::Password => AccountRecord {
            id: id.to_owned(),
            kind,
            email: Some(id.to_owned()),
            password: Some(Secret::new(PASSWORD)),
            token: Some(Secret::new(TOKEN)),
            cookies: None,
            token_expires_at: Some(1_900_000_000),
            proxy: None,
            origin: Origin::Runtime,
            created_at,
        },
        CredentialKind::Token | CredentialKind::Tongyi => AccountRecord {
            id: id.to_owned(),
            kind,
            email: None,
            password: None,
            token: Some(Secret::new(format!("{TOKEN}.{id}"))),
            cookies: Some(Secret::new(COOKIES)),
            token_expires_at: None,
            proxy: Some("socks5://user:pw@127.0.0.1:1080".to_owned()),
            origin: Origin::Env,
            created_at,
        },
    }
}

pub(crate) fn key(id: &str, label: &str, created_at: i64) -> KeyRecord {
    KeyRecord {
        id: id.to_owned(),
        label: label.to_owned(),
        hash: format!("{:0>64}", id.len()),
        hint: format!("sk-q2a-…{id}"),
        created_at,
        limits: KeyLimits::default(),
    }
}

fn delta(day: &str, subject: &Subject, counts: [u64; 3]) -> UsageDelta {
    UsageDelta {
        day: day.to_owned(),
        subject: subject.clone(),
        requests: counts[0],
        prompt_tokens: counts[1],
        completion_tokens: counts[2],
    }
}

fn cooling() -> AccountStatus {
    AccountStatus {
        state: HealthState::Cooling,
        until_ms: Some(1_700_000_123_456),
        reason: Some("rate_limited: try later ⏳".to_owned()),
        failure_count: 3,
        last_used_ms: Some(1_700_000_000_000),
    }
}

fn disabled() -> AccountStatus {
    AccountStatus {
        state: HealthState::Disabled,
        until_ms: None,
        reason: Some("token_expired".to_owned()),
        failure_count: 0,
        last_used_ms: None,
    }
}

fn conflict(result: Result<(), StoreError>) -> String {
    match result {
        Err(StoreError::Conflict(what)) => what,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Runs every check on a fresh, empty store.
pub(crate) async fn run(store: &dyn Store) {
    assert!(["memory", "sqlite", "redis"].contains(&store.backend()));
    starts_empty(store).await;
    accounts(store).await;
    statuses(store).await;
    keys(store).await;
    key_limits(store).await;
    hits(store).await;
    slots(store).await;
    usage(store).await;
    settings(store).await;
    cache(store).await;
    turns(store).await;
    threads(store).await;
}

fn entry(account: &str, chat: &str, response: &str) -> ThreadEntry {
    ThreadEntry {
        account_id: account.to_owned(),
        chat_id: chat.to_owned(),
        response_id: response.to_owned(),
    }
}

/// Conversation entries: put, replace, expire, and the chats they keep, claimed once.
async fn threads(store: &dyn Store) {
    let now = super::now_ms();
    let later = now + 60_000;
    assert_eq!(store.get_thread("k1").await.unwrap(), None);
    assert_eq!(store.claim_expired_chats(now, 10).await.unwrap(), []);
    // A conversation of two turns in chat c1: both entries name it.
    let first = store
        .put_thread("k1", &entry("acct-1", "c1", "r1"), later)
        .await
        .unwrap();
    assert_eq!(first, Filed::default());
    store
        .put_thread("k2", &entry("acct-1", "c1", "r2"), later + 1_000)
        .await
        .unwrap();
    assert_eq!(
        store.get_thread("k1").await.unwrap(),
        Some(entry("acct-1", "c1", "r1"))
    );
    // Replaced by an entry in another chat: c1 is still named by k2, so it is kept.
    let filed = store
        .put_thread("k1", &entry("acct-2", "c2", "r9"), later)
        .await
        .unwrap();
    assert_eq!(filed.replaced, Some(entry("acct-1", "c1", "r1")));
    assert_eq!(filed.orphaned, None);
    // Replacing k2 too leaves c1 named by no entry: it is handed back to be deleted.
    let filed = store
        .put_thread("k2", &entry("acct-2", "c2", "r10"), later)
        .await
        .unwrap();
    assert_eq!(
        filed.orphaned,
        Some(KeptChat {
            account_id: "acct-1".into(),
            chat_id: "c1".into()
        })
    );
    // The same chat again (a regenerated answer) keeps it.
    let filed = store
        .put_thread("k2", &entry("acct-2", "c2", "r11"), later)
        .await
        .unwrap();
    assert_eq!(filed.orphaned, None);
    assert_eq!(store.claim_expired_chats(now, 10).await.unwrap(), []);
    // Once every entry of c2 has expired, c2 is claimed once.
    let claimed = store.claim_expired_chats(later + 5, 10).await.unwrap();
    assert_eq!(
        claimed,
        [KeptChat {
            account_id: "acct-2".into(),
            chat_id: "c2".into()
        }]
    );
    assert_eq!(store.claim_expired_chats(later + 5, 10).await.unwrap(), []);
    // An entry that has expired is not found; its chat is claimed by at most `limit` at once.
    store
        .put_thread("short-a", &entry("acct-3", "c3", "r"), now + 150)
        .await
        .unwrap();
    store
        .put_thread("short-b", &entry("acct-3", "c4", "r"), now + 160)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(store.get_thread("short-a").await.unwrap(), None);
    let now = super::now_ms();
    let one = store.claim_expired_chats(now, 1).await.unwrap();
    let two = store.claim_expired_chats(now, 10).await.unwrap();
    let ids: Vec<&str> = one.iter().chain(&two).map(|c| c.chat_id.as_str()).collect();
    assert_eq!(ids, ["c3", "c4"]);
}

async fn starts_empty(store: &dyn Store) {
    assert_eq!(store.list_accounts().await.unwrap(), []);
    assert!(store.account_statuses().await.unwrap().is_empty());
    assert_eq!(store.list_keys().await.unwrap(), []);
    assert_eq!(store.usage("").await.unwrap(), []);
    assert_eq!(store.get_setting("sticky").await.unwrap(), None);
    assert!(!store.delete_account("nobody").await.unwrap());
    assert!(!store.delete_key("nothing").await.unwrap());
}

async fn accounts(store: &dyn Store) {
    let alice = account("alice@example.com", CredentialKind::Password, 1_000);
    // Same `created_at` as alice: the id breaks the tie.
    let first = account("account_1", CredentialKind::Token, 1_000);
    let odd = account("zed|odd:id ü", CredentialKind::Token, 500);
    for a in [&alice, &first, &odd] {
        store.insert_account(a).await.unwrap();
    }
    assert_eq!(
        store.list_accounts().await.unwrap(),
        [odd.clone(), first.clone(), alice.clone()]
    );

    let mut changed = alice.clone();
    changed.token = Some(Secret::new("another token"));
    assert_eq!(
        conflict(store.insert_account(&changed).await),
        "account alice@example.com"
    );
    assert_eq!(
        store.list_accounts().await.unwrap(),
        [odd.clone(), first.clone(), alice.clone()],
        "a refused insert changes nothing"
    );

    // An upsert replaces every field, including clearing optional ones.
    let replaced = AccountRecord {
        password: None,
        token: Some(Secret::new("fresh-token-ß")),
        cookies: Some(Secret::new(COOKIES)),
        token_expires_at: None,
        proxy: Some("http://proxy.local:8080".to_owned()),
        origin: Origin::Env,
        ..alice.clone()
    };
    store.upsert_account(&replaced).await.unwrap();
    let later = account("later@example.com", CredentialKind::Password, 2_000);
    store.upsert_account(&later).await.unwrap();
    assert_eq!(
        store.list_accounts().await.unwrap(),
        [odd.clone(), first.clone(), replaced.clone(), later.clone()]
    );

    assert!(store.delete_account(&odd.id).await.unwrap());
    assert!(!store.delete_account(&odd.id).await.unwrap());
    assert!(store.delete_account(&later.id).await.unwrap());
    assert_eq!(
        store.list_accounts().await.unwrap(),
        [first.clone(), replaced]
    );
    assert!(store.delete_account(&alice.id).await.unwrap());
    assert!(store.delete_account(&first.id).await.unwrap());
    assert_eq!(store.list_accounts().await.unwrap(), []);
}

async fn statuses(store: &dyn Store) {
    let alice = account("alice@example.com", CredentialKind::Password, 1_000);
    let bob = account("account_2", CredentialKind::Token, 1_001);
    store.insert_account(&alice).await.unwrap();
    store.insert_account(&bob).await.unwrap();

    store
        .set_account_status(&alice.id, &cooling())
        .await
        .unwrap();
    store
        .set_account_status(&bob.id, &disabled())
        .await
        .unwrap();
    let expected = |a: AccountStatus| {
        [(alice.id.clone(), a), (bob.id.clone(), disabled())]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>()
    };
    assert_eq!(store.account_statuses().await.unwrap(), expected(cooling()));

    store
        .set_account_status(&alice.id, &AccountStatus::default())
        .await
        .unwrap();
    assert_eq!(
        store.account_statuses().await.unwrap(),
        expected(AccountStatus::default())
    );

    // Re-applying the environment's accounts at start must not forget their cooldowns.
    store
        .set_account_status(&alice.id, &cooling())
        .await
        .unwrap();
    store.upsert_account(&alice).await.unwrap();
    assert_eq!(store.account_statuses().await.unwrap(), expected(cooling()));

    assert!(store.delete_account(&alice.id).await.unwrap());
    let only_bob: std::collections::HashMap<_, _> =
        [(bob.id.clone(), disabled())].into_iter().collect();
    assert_eq!(store.account_statuses().await.unwrap(), only_bob);
    assert_eq!(
        store.list_accounts().await.unwrap(),
        std::slice::from_ref(&bob)
    );

    // A re-added account starts without the old status.
    store.insert_account(&alice).await.unwrap();
    assert_eq!(store.account_statuses().await.unwrap(), only_bob);

    assert!(store.delete_account(&alice.id).await.unwrap());
    assert!(store.delete_account(&bob.id).await.unwrap());
    assert!(store.account_statuses().await.unwrap().is_empty());
}

async fn keys(store: &dyn Store) {
    let ci = key("key-1", "ci", 10);
    let laptop = key("key-2", "laptop ключ 🔑", 5);
    store.insert_key(&ci).await.unwrap();
    store.insert_key(&laptop).await.unwrap();
    assert_eq!(
        store.list_keys().await.unwrap(),
        [laptop.clone(), ci.clone()]
    );

    assert_eq!(
        conflict(store.insert_key(&key("key-3", "ci", 11)).await),
        "key label ci"
    );
    assert_eq!(
        conflict(store.insert_key(&key("key-1", "fresh", 12)).await),
        "key key-1"
    );
    assert_eq!(
        store.list_keys().await.unwrap(),
        [laptop.clone(), ci.clone()]
    );
    // The refused inserts left neither their id nor their label behind.
    let fresh = key("key-4", "fresh", 13);
    store.insert_key(&fresh).await.unwrap();
    let key3 = key("key-3", "other", 14);
    store.insert_key(&key3).await.unwrap();

    assert!(store.delete_key(&ci.id).await.unwrap());
    assert!(!store.delete_key(&ci.id).await.unwrap());
    // A revoked key's label is free again.
    let ci_again = key("key-5", "ci", 15);
    store.insert_key(&ci_again).await.unwrap();
    assert_eq!(
        store.list_keys().await.unwrap(),
        [
            laptop.clone(),
            fresh.clone(),
            key3.clone(),
            ci_again.clone()
        ]
    );

    for k in [&laptop, &fresh, &key3, &ci_again] {
        assert!(store.delete_key(&k.id).await.unwrap());
    }
    assert_eq!(store.list_keys().await.unwrap(), []);
}

/// Limits are stored with the key, set at creation or later, and cleared.
async fn key_limits(store: &dyn Store) {
    let limits = KeyLimits {
        requests_per_minute: Some(60),
        concurrent_requests: Some(2),
        tokens_per_day: Some(1_000_000_000_000),
        models: Some(vec!["qwen3-*".to_owned(), "Qwen?.5-PLUS".to_owned()]),
        expires_at: Some(1_767_225_600_123),
    };
    let mut limited = key("key-1", "limited", 1);
    limited.limits = limits.clone();
    let plain = key("key-2", "plain", 2);
    store.insert_key(&limited).await.unwrap();
    store.insert_key(&plain).await.unwrap();
    assert_eq!(
        store.list_keys().await.unwrap(),
        [limited.clone(), plain.clone()]
    );

    let changed = KeyLimits {
        requests_per_minute: Some(1),
        ..KeyLimits::default()
    };
    assert!(store.set_key_limits("key-2", &changed).await.unwrap());
    assert!(
        store
            .set_key_limits("key-1", &KeyLimits::default())
            .await
            .unwrap()
    );
    assert!(!store.set_key_limits("key-9", &changed).await.unwrap());
    let listed = store.list_keys().await.unwrap();
    assert_eq!(listed.len(), 2, "setting limits adds no key");
    assert_eq!(listed[0].limits, KeyLimits::default());
    assert_eq!(listed[1].limits, changed);
    assert_eq!(listed[1].hash, plain.hash, "the rest of the key is kept");
    // The label index is untouched: the label is still taken.
    assert_eq!(
        conflict(store.insert_key(&key("key-3", "plain", 3)).await),
        "key label plain"
    );
    for id in ["key-1", "key-2"] {
        assert!(store.delete_key(id).await.unwrap());
    }
}

/// Places are held up to the limit, renewed by their holder whatever the count, freed, and
/// freed by themselves once their time has passed.
async fn slots(store: &dyn Store) {
    let later = super::now_ms() + 60_000;
    assert!(store.hold_slot("conc:k", "a", 2, later).await.unwrap());
    assert!(store.hold_slot("conc:k", "b", 2, later).await.unwrap());
    assert!(!store.hold_slot("conc:k", "c", 2, later).await.unwrap());
    assert!(store.hold_slot("conc:other", "c", 2, later).await.unwrap());
    // A renewal is not a new place.
    assert!(store.hold_slot("conc:k", "a", 2, later + 1).await.unwrap());
    store.free_slot("conc:k", "a").await.unwrap();
    store.free_slot("conc:k", "nobody").await.unwrap();
    assert!(store.hold_slot("conc:k", "c", 2, later).await.unwrap());
    assert!(!store.hold_slot("conc:k", "d", 2, later).await.unwrap());
    // A place whose holder stopped renewing it (a replica gone) frees itself.
    let soon = super::now_ms() + 50;
    assert!(store.hold_slot("conc:x", "gone", 1, soon).await.unwrap());
    assert!(!store.hold_slot("conc:x", "next", 1, later).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    assert!(store.hold_slot("conc:x", "next", 1, later).await.unwrap());
    for (name, holder) in [
        ("conc:k", "b"),
        ("conc:k", "c"),
        ("conc:other", "c"),
        ("conc:x", "next"),
    ] {
        store.free_slot(name, holder).await.unwrap();
    }
}

/// Counters count up from 1 each, until they expire.
async fn hits(store: &dyn Store) {
    let later = super::now_ms() + 60_000;
    assert_eq!(store.count_hit("rpm:a:1", later).await.unwrap(), 1);
    assert_eq!(store.count_hit("rpm:a:1", later).await.unwrap(), 2);
    assert_eq!(store.count_hit("rpm:b:1", later).await.unwrap(), 1);
    assert_eq!(store.count_hit("rpm:a:1", later).await.unwrap(), 3);

    let soon = super::now_ms() + 50;
    assert_eq!(store.count_hit("rpm:c:1", soon).await.unwrap(), 1);
    assert_eq!(store.count_hit("rpm:c:1", soon).await.unwrap(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    assert_eq!(
        store
            .count_hit("rpm:c:1", super::now_ms() + 60_000)
            .await
            .unwrap(),
        1,
        "an expired counter starts again"
    );
    assert_eq!(store.count_hit("rpm:a:1", later).await.unwrap(), 4);
}

async fn usage(store: &dyn Store) {
    let alice = Subject::Account("alice@example.com".to_owned());
    let odd = Subject::Account("we|ird:id|requests".to_owned());
    let k1 = Subject::Key("key-1".to_owned());
    let (day0, day1, day2) = ("2025-01-31", "2025-02-01", "2025-02-02");

    store.add_usage(&[]).await.unwrap();
    assert_eq!(store.usage("").await.unwrap(), []);
    store
        .add_usage(&[
            delta(day1, &alice, [1, 10, 20]),
            delta(day1, &k1, [1, 10, 20]),
            // The same subject twice in one batch.
            delta(day1, &alice, [1, 5, 7]),
        ])
        .await
        .unwrap();
    store
        .add_usage(&[
            delta(day2, &odd, [1, 1, 1]),
            delta(day1, &alice, [3, 100, 200]),
            delta(day0, &k1, [2, 0, 0]),
        ])
        .await
        .unwrap();
    store
        .add_usage(&[
            // Beyond 32 bits.
            delta(day2, &k1, [1, 5_000_000_000, 3]),
            delta(day2, &alice, [1, 1, 1]),
        ])
        .await
        .unwrap();
    // Concurrent batches add up too.
    let batch = [delta(day2, &alice, [1, 2, 3])];
    let results = join_all((0..10).map(|_| store.add_usage(&batch))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let row = |day: &str, subject: &Subject, counts: [u64; 3]| -> UsageRow {
        delta(day, subject, counts)
    };
    let all = vec![
        row(day0, &k1, [2, 0, 0]),
        row(day1, &alice, [5, 115, 227]),
        row(day1, &k1, [1, 10, 20]),
        row(day2, &alice, [11, 21, 31]),
        row(day2, &odd, [1, 1, 1]),
        row(day2, &k1, [1, 5_000_000_000, 3]),
    ];
    assert_eq!(store.usage("").await.unwrap(), all);
    assert_eq!(store.usage(day0).await.unwrap(), all);
    assert_eq!(store.usage(day1).await.unwrap(), all[1..]);
    assert_eq!(store.usage("2025-02-01T00").await.unwrap(), all[3..]);
    assert_eq!(store.usage(day2).await.unwrap(), all[3..]);
    assert_eq!(store.usage("2025-02-03").await.unwrap(), []);
}

async fn cache(store: &dyn Store) {
    let now = super::now_ms();
    assert_eq!(store.cache_get("up:a").await.unwrap(), None);
    store
        .cache_put("up:a", "url-1", now + 60_000)
        .await
        .unwrap();
    store.cache_put("up:gone", "old", now - 1).await.unwrap();
    assert_eq!(
        store.cache_get("up:a").await.unwrap().as_deref(),
        Some("url-1")
    );
    assert_eq!(store.cache_get("up:gone").await.unwrap(), None);
    store
        .cache_put("up:a", "url-2", now + 60_000)
        .await
        .unwrap();
    assert_eq!(
        store.cache_get("up:a").await.unwrap().as_deref(),
        Some("url-2")
    );
    // A value put with a time already past is gone at once, also over one that was live
    // (how a stored response is deleted).
    store.cache_put("up:a", "", 0).await.unwrap();
    assert_eq!(store.cache_get("up:a").await.unwrap(), None);
    store.cache_put("up:short", "x", now + 150).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(store.cache_get("up:short").await.unwrap(), None);
}

async fn settings(store: &dyn Store) {
    assert_eq!(store.get_setting("sticky").await.unwrap(), None);
    store.set_setting("sticky", "true").await.unwrap();
    assert_eq!(
        store.get_setting("sticky").await.unwrap().as_deref(),
        Some("true")
    );
    store.set_setting("sticky", "false").await.unwrap();
    store
        .set_setting("greeting", "grüß dich 🔑\n\"x\"")
        .await
        .unwrap();
    store.set_setting("empty", "").await.unwrap();
    assert_eq!(
        store.get_setting("sticky").await.unwrap().as_deref(),
        Some("false")
    );
    assert_eq!(
        store.get_setting("greeting").await.unwrap().as_deref(),
        Some("grüß dich 🔑\n\"x\"")
    );
    assert_eq!(
        store.get_setting("empty").await.unwrap().as_deref(),
        Some("")
    );
    assert_eq!(store.get_setting("Sticky").await.unwrap(), None);
}

async fn turns(store: &dyn Store) {
    let mut last = store.next_turn().await.unwrap();
    assert_eq!(last, 1, "the first turn");
    for _ in 0..5 {
        let turn = store.next_turn().await.unwrap();
        assert_eq!(turn, last + 1);
        last = turn;
    }
    let concurrent: BTreeSet<u64> = join_all((0..20).map(|_| store.next_turn()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(concurrent, (last + 1..=last + 20).collect());
}

/// Writes one of everything, for reopen and replica tests.
pub(crate) async fn fill(store: &dyn Store) {
    store
        .insert_account(&account("alice@example.com", CredentialKind::Password, 1))
        .await
        .unwrap();
    store
        .insert_account(&account("account_1", CredentialKind::Token, 2))
        .await
        .unwrap();
    store
        .set_account_status("account_1", &cooling())
        .await
        .unwrap();
    store.insert_key(&key("key-1", "ci", 3)).await.unwrap();
    store
        .add_usage(&[
            delta("2025-02-01", &Subject::Key("key-1".to_owned()), [1, 2, 3]),
            delta(
                "2025-02-02",
                &Subject::Account("account_1".to_owned()),
                [4, 5, 6],
            ),
        ])
        .await
        .unwrap();
    store.set_setting("sticky", "true").await.unwrap();
}

/// Everything a store holds, comparable.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    accounts: Vec<AccountRecord>,
    statuses: BTreeMap<String, AccountStatus>,
    keys: Vec<KeyRecord>,
    usage: Vec<UsageRow>,
    sticky: Option<String>,
}

pub(crate) async fn snapshot(store: &dyn Store) -> Snapshot {
    let snapshot = Snapshot {
        accounts: store.list_accounts().await.unwrap(),
        statuses: store
            .account_statuses()
            .await
            .unwrap()
            .into_iter()
            .collect(),
        keys: store.list_keys().await.unwrap(),
        usage: store.usage("").await.unwrap(),
        sticky: store.get_setting("sticky").await.unwrap(),
    };
    assert!(
        !snapshot.accounts.is_empty(),
        "the snapshot of an empty store proves nothing"
    );
    snapshot
}
