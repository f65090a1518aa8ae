//! The proxy's failover and first-byte policy against the in-memory upstream: no HTTP.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::catalog::Catalog;
use super::{Answer, Delivery, Proxy, ProxyError, RunContext, Streamed};
use crate::accounts::AccountManager;
use crate::config::Config;
use crate::conversation::{AnswerEvent, Finish};
use crate::keys::usage::UsageRecorder;
use crate::media::Uploader;
use crate::store::{Store, memory::MemoryStore};
use crate::upstream::scripted::{Script, Scripted};
use crate::upstream::{Turn, Upstream, UpstreamError};

const A: &str = "a@test.local";
const B: &str = "b@test.local";

/// A proxy over accounts `A` and `B` (tried in that order) on `up`.
async fn proxy(up: &Arc<Scripted>) -> Arc<Proxy> {
    let accounts = format!("{A}:pw-a,{B}:pw-b");
    let cfg = Config::from_vars(&move |name: &str| match name {
        "ACCOUNTS" => Some(accounts.clone()),
        "API_KEY" => Some("sk-test".to_owned()),
        _ => None,
    })
    .expect("a test configuration");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let upstream: Arc<dyn Upstream> = Arc::clone(up) as Arc<dyn Upstream>;
    let manager = AccountManager::start(
        &cfg.accounts,
        Arc::clone(&store),
        Arc::clone(&upstream),
        cfg.pool.clone(),
        cfg.lifecycle.clone(),
        false,
    )
    .await
    .expect("accounts start");
    Arc::new(Proxy::new(
        Arc::clone(&upstream),
        manager,
        Catalog::new(cfg.models.clone()),
        UsageRecorder::new(Arc::clone(&store), crate::metrics::Metrics::new()),
        Uploader::new(upstream, store),
        cfg.media.clone(),
        crate::metrics::Metrics::new(),
    ))
}

fn turn() -> Turn {
    Turn::text("qwen-test", "hi")
}

fn streamed(keepalive: Duration) -> Delivery {
    Delivery::Stream { keepalive }
}

/// Every item of a streamed answer.
async fn drain(answer: Answer) -> Vec<Result<Streamed, ProxyError>> {
    let Answer::Stream(events) = answer else {
        panic!("a streamed delivery is answered as a stream");
    };
    events.collect().await
}

fn texts(items: &[Result<Streamed, ProxyError>]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            Ok(Streamed::Event(AnswerEvent::Text(t))) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn tokens_completed(up: &Scripted) -> Vec<String> {
    up.calls()
        .into_iter()
        .filter_map(|c| c.strip_prefix("complete ").map(str::to_owned))
        .collect()
}

fn inflight(p: &Proxy, id: &str) -> usize {
    p.pool().get(id).expect("the account").inflight()
}

#[tokio::test]
async fn a_rate_limited_account_fails_over_to_the_next() {
    let up = Scripted::new();
    up.script(
        A,
        Script::Refuse(UpstreamError::RateLimited {
            detail: "quota".into(),
            retry_after: None,
        }),
    );
    let p = proxy(&up).await;
    let answer = p
        .answer(
            turn(),
            streamed(Duration::from_secs(30)),
            RunContext::default(),
        )
        .await
        .expect("B answers");
    let items = drain(answer).await;
    assert_eq!(texts(&items), ["ok"]);
    assert!(matches!(
        items.last(),
        Some(Ok(Streamed::Event(AnswerEvent::Finish(Finish::Stop))))
    ));
    assert_eq!(
        tokens_completed(&up),
        [Scripted::token_of(A), Scripted::token_of(B)]
    );
    assert!(!p.pool().get(A).unwrap().is_usable(), "A rests");
    assert_eq!(
        (inflight(&p, A), inflight(&p, B)),
        (0, 0),
        "leases released"
    );
}

#[tokio::test]
async fn a_failure_after_the_first_visible_event_is_not_failed_over() {
    let up = Scripted::new();
    up.script(
        A,
        Script::Answer(vec![
            Ok(AnswerEvent::Text("partial".into())),
            Err(UpstreamError::Transient("reset".into())),
        ]),
    );
    let p = proxy(&up).await;
    let answer = p
        .answer(
            turn(),
            streamed(Duration::from_secs(30)),
            RunContext::default(),
        )
        .await
        .expect("the answer starts");
    let items = drain(answer).await;
    assert_eq!(texts(&items), ["partial"]);
    assert!(matches!(
        items.last(),
        Some(Err(ProxyError::MidStream(UpstreamError::Transient(_))))
    ));
    assert_eq!(tokens_completed(&up), [Scripted::token_of(A)]);
    assert_eq!(
        (inflight(&p, A), inflight(&p, B)),
        (0, 0),
        "leases released"
    );
}

#[tokio::test]
async fn invisible_events_are_held_back_so_a_later_failure_still_fails_over() {
    let up = Scripted::new();
    up.script(
        A,
        Script::Answer(vec![
            Ok(AnswerEvent::Text(String::new())),
            Ok(AnswerEvent::Reasoning(String::new())),
            Err(UpstreamError::Transient("reset".into())),
        ]),
    );
    let p = proxy(&up).await;
    let answer = p
        .answer(
            turn(),
            streamed(Duration::from_secs(30)),
            RunContext::default(),
        )
        .await
        .expect("B answers");
    let items = drain(answer).await;
    assert_eq!(
        texts(&items),
        ["ok"],
        "nothing of A's attempt reaches the client"
    );
    assert_eq!(tokens_completed(&up).len(), 2);
}

#[tokio::test]
async fn a_whole_answer_fails_over_even_after_text() {
    let up = Scripted::new();
    up.script(
        A,
        Script::Answer(vec![
            Ok(AnswerEvent::Text("partial".into())),
            Err(UpstreamError::Transient("reset".into())),
        ]),
    );
    let p = proxy(&up).await;
    let Answer::Whole(events) = p
        .answer(turn(), Delivery::Whole, RunContext::default())
        .await
        .expect("B answers")
    else {
        panic!("a whole delivery is answered whole");
    };
    assert_eq!(events[0], AnswerEvent::Text("ok".into()));
    assert!(!events.contains(&AnswerEvent::Text("partial".into())));
    assert_eq!(
        (inflight(&p, A), inflight(&p, B)),
        (0, 0),
        "leases released"
    );
}

#[tokio::test]
async fn every_account_failing_is_one_error_before_any_byte() {
    let up = Scripted::new();
    for who in [A, B] {
        up.script(who, Script::Refuse(UpstreamError::Transient("down".into())));
    }
    let p = proxy(&up).await;
    let err = p
        .answer(
            turn(),
            streamed(Duration::from_secs(30)),
            RunContext::default(),
        )
        .await
        .err()
        .expect("no account answers");
    assert!(matches!(err, ProxyError::Failed { .. }), "{err:?}");
    assert_eq!(
        (inflight(&p, A), inflight(&p, B)),
        (0, 0),
        "leases released"
    );
}

#[tokio::test]
async fn a_silent_upstream_gets_a_keep_alive_first() {
    let up = Scripted::new();
    up.script(A, Script::Silent);
    let p = proxy(&up).await;
    let answer = p
        .answer(
            turn(),
            streamed(Duration::from_millis(20)),
            RunContext::default(),
        )
        .await
        .expect("the stream starts");
    let Answer::Stream(mut events) = answer else {
        panic!("streamed");
    };
    assert!(matches!(events.next().await, Some(Ok(Streamed::KeepAlive))));
    drop(events);
    // The attempt's lease goes with the stream.
    tokio::task::yield_now().await;
    assert_eq!(inflight(&p, A), 0);
}

#[tokio::test]
async fn an_answer_that_ends_with_nothing_is_an_error() {
    let up = Scripted::new();
    up.script(A, Script::Answer(Vec::new()));
    let p = proxy(&up).await;
    let err = p
        .answer(
            turn(),
            streamed(Duration::from_secs(30)),
            RunContext::default(),
        )
        .await
        .err()
        .expect("nothing came");
    assert!(
        matches!(err, ProxyError::MidStream(UpstreamError::EmptyAnswer)),
        "{err:?}"
    );
}
