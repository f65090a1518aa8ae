//! The scale-out profile without Docker: Redis, three real binaries (`DATA_SAVE_MODE=redis`)
//! and nginx running the shipped `deploy/nginx/scale.conf`, all on loopback, the fake upstream
//! behind them. Mixed traffic survives a replica stopped with SIGTERM mid-flight and one
//! killed outright; keys, per-key limits and conversations hold across replicas; video jobs
//! stay with their replica and files are seen by all; streams pass event by event. The figures
//! (distribution, retries, drain time, latency) are printed, never asserted as timings. The
//! compose file's `scale` profile is checked against this topology.
//! Needs `redis-server` and `nginx`: a missing one skips these tests with a note, except with
//! `CI=true`, where it fails them.

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::binary::{Server, read_log};
use common::fake_chats::{parent_of, prompt_of};
use common::fake_media::{self, TaskStep};
use common::fake_qwen::{FakeQwen, Reply, Split};
use common::nginx::{self, Nginx};
use common::qwen_sse;
use common::redis_server::RedisServer;
use futures::StreamExt;
use serde_json::{Value, json};

const KEY: &str = "sk-scale-key";
const ADMIN: &str = "sk-scale-admin";
const MODEL: &str = "qwen3.7-plus";
const CHATS_NEW: &str = "/api/v2/chats/new";

// ---------------------------------------------------------------------------------------------
// The topology

struct Cluster {
    fake: FakeQwen,
    replicas: Vec<Option<Server>>,
    addrs: [SocketAddr; 3],
    dirs: Vec<tempfile::TempDir>,
    /// `DATA_DIR` of every replica, as the compose file's one volume for all three.
    _data: tempfile::TempDir,
    nginx: Nginx,
    http: reqwest::Client,
    _redis: Arc<RedisServer>,
}

impl Cluster {
    /// Redis, three replicas with the same two accounts under a fresh key prefix, and nginx
    /// in front; `None` when redis-server or nginx is missing (outside CI).
    async fn start() -> Option<Cluster> {
        let redis = common::redis_server::shared()?;
        let fake = FakeQwen::start().await;
        let cookies = format!(
            "token={},token={}",
            fake.add_token("acct1"),
            fake.add_token("acct2")
        );
        let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
        let base = fake.base_url();
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_string_lossy().into_owned();
        let vars = [
            ("API_KEY", KEY),
            ("ADMIN_KEY", ADMIN),
            ("QWEN_COOKIES", cookies.as_str()),
            ("QWEN_BASE_URL", base.as_str()),
            ("DATA_SAVE_MODE", "redis"),
            ("REDIS_URL", redis.url.as_str()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("STATUS_SYNC_SECONDS", "0.2"),
            ("MAX_INFLIGHT_PER_ACCOUNT", "0"),
            ("SHUTDOWN_GRACE_SECONDS", "30"),
            ("WORKER_THREADS", "1"),
            ("DATA_DIR", data_dir.as_str()),
            ("VIDEO_POLL_INTERVAL_SECONDS", "0.05"),
        ];
        let mut dirs = Vec::new();
        let mut replicas = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            replicas.push(Some(Server::start(dir.path(), &vars)));
            dirs.push(dir);
        }
        let addrs = [0, 1, 2].map(|i| replicas[i].as_ref().unwrap().addr);
        let nginx = nginx::start(&addrs)?;
        Some(Cluster {
            fake,
            replicas,
            addrs,
            dirs,
            _data: data,
            nginx,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            _redis: redis,
        })
    }

    fn replica_url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.addrs[i])
    }

    /// Which replica (0, 1, 2) an address is.
    fn index_of(&self, addr: SocketAddr) -> usize {
        self.addrs.iter().position(|a| *a == addr).unwrap()
    }

    /// Sends `kind` to `base` (nginx or a replica) with `X-Request-Id: id`; `Ok` only for a
    /// 200 with the whole answer, its id echoed.
    async fn run(&self, kind: Kind, base: &str, id: &str) -> Result<(), String> {
        let (path, body) = kind.request();
        let resp = self
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(KEY)
            .header("anthropic-version", "2023-06-01")
            .header("x-request-id", id)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{id}: {e}"))?;
        let status = resp.status().as_u16();
        let echoed = resp.headers().get("x-request-id").cloned();
        let text = resp.text().await.map_err(|e| format!("{id}: cut: {e}"))?;
        if status != 200 {
            return Err(format!("{id}: {status} {text}"));
        }
        if echoed.as_ref().and_then(|v| v.to_str().ok()) != Some(id) {
            return Err(format!("{id}: X-Request-Id came back as {echoed:?}"));
        }
        kind.check(&text).map_err(|e| format!("{id}: {e}"))
    }

    /// `GET path` through nginx with the test key; its status and JSON body.
    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(self.nginx.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// The replicas (by index) that served the `n` requests for `path`, in order.
    async fn served_path(&self, path: &str, n: usize) -> Vec<usize> {
        let line = format!(" {path} ");
        self.nginx
            .logged(n, |l| l.request.contains(&line))
            .await
            .iter()
            .map(|l| self.index_of(l.served_by().expect("a replica answered")))
            .collect()
    }

    /// The replica that served each of the `n` requests whose ids start with `prefix`, by
    /// index, and how many replicas nginx tried for it.
    async fn served(&self, prefix: &str, n: usize) -> Vec<(String, usize, usize)> {
        self.nginx
            .logged(n, |l| l.request_id.starts_with(prefix))
            .await
            .into_iter()
            .map(|l| {
                assert_eq!(l.status, 200, "{l:?}");
                let by = self.index_of(l.served_by().expect("a replica answered"));
                (l.request_id, by, l.upstreams.len())
            })
            .collect()
    }
}

/// Requests per replica, as `{1: n, 2: n, 3: n}` (replicas counted from 1).
fn distribution(served: &[(String, usize, usize)]) -> BTreeMap<usize, usize> {
    let mut by = BTreeMap::new();
    for (_, replica, _) in served {
        *by.entry(replica + 1).or_insert(0) += 1;
    }
    by
}

// ---------------------------------------------------------------------------------------------
// Mixed traffic: three surfaces, streamed and whole

/// The answer every request gets from the fake: ten parts.
const PARTS: [&str; 10] = [
    "w0 ", "w1 ", "w2 ", "w3 ", "w4 ", "w5 ", "w6 ", "w7 ", "w8 ", "w9 ",
];

fn text() -> String {
    PARTS.concat()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Chat,
    ChatStream,
    Messages,
    MessagesStream,
    Responses,
    ResponsesStream,
}

const KINDS: [Kind; 6] = [
    Kind::Chat,
    Kind::ChatStream,
    Kind::Messages,
    Kind::MessagesStream,
    Kind::Responses,
    Kind::ResponsesStream,
];

impl Kind {
    fn request(self) -> (&'static str, Value) {
        let messages = json!([{"role": "user", "content": "Say hi"}]);
        match self {
            Kind::Chat | Kind::ChatStream => (
                "/v1/chat/completions",
                json!({"model": MODEL, "stream": matches!(self, Kind::ChatStream),
                       "messages": messages}),
            ),
            Kind::Messages | Kind::MessagesStream => (
                "/v1/messages",
                json!({"model": MODEL, "max_tokens": 256,
                       "stream": matches!(self, Kind::MessagesStream), "messages": messages}),
            ),
            Kind::Responses | Kind::ResponsesStream => (
                "/v1/responses",
                json!({"model": MODEL, "stream": matches!(self, Kind::ResponsesStream),
                       "input": "Say hi"}),
            ),
        }
    }

    /// Whether `body` is the whole answer in this surface's shape.
    fn check(self, body: &str) -> Result<(), String> {
        let got = match self {
            Kind::Chat => whole(body)?["choices"][0]["message"]["content"]
                .as_str()
                .map(str::to_owned),
            Kind::Messages => {
                let v = whole(body)?;
                v["content"].as_array().map(|blocks| {
                    blocks
                        .iter()
                        .filter_map(|b| b["text"].as_str())
                        .collect::<String>()
                })
            }
            Kind::Responses => {
                let v = whole(body)?;
                (v["status"] == "completed").then(|| output_text(&v))
            }
            Kind::ChatStream => body
                .ends_with("data: [DONE]\n\n")
                .then(|| common::streamed_content(&common::sse_json(body))),
            Kind::MessagesStream => {
                let events = sse_data(body);
                let stopped = events.last().is_some_and(|e| e["type"] == "message_stop");
                stopped.then(|| deltas(&events, "content_block_delta", |e| &e["delta"]["text"]))
            }
            Kind::ResponsesStream => {
                let events = sse_data(body);
                let done = events
                    .last()
                    .is_some_and(|e| e["type"] == "response.completed");
                done.then(|| deltas(&events, "response.output_text.delta", |e| &e["delta"]))
            }
        };
        match got {
            Some(t) if t == text() => Ok(()),
            _ => Err(format!("{self:?}: not the whole answer: {body}")),
        }
    }
}

fn whole(body: &str) -> Result<Value, String> {
    serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body}"))
}

fn output_text(v: &Value) -> String {
    let items = v["output"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .filter_map(|item| item["content"].as_array())
        .flatten()
        .filter(|c| c["type"] == "output_text")
        .filter_map(|c| c["text"].as_str())
        .collect()
}

/// The JSON `data:` of each SSE event (`[DONE]` left out).
fn sse_data(body: &str) -> Vec<Value> {
    common::sse_lines(body)
        .iter()
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

fn deltas(events: &[Value], kind: &str, text: impl Fn(&Value) -> &Value) -> String {
    events
        .iter()
        .filter(|e| e["type"] == kind)
        .filter_map(|e| text(e).as_str())
        .collect()
}

/// `n` requests of every kind in turn, all at once, ids `{prefix}{i}`; the failures.
async fn burst(cluster: &Cluster, base: &str, prefix: &str, n: usize) -> Vec<String> {
    let runs = (0..n).map(|i| {
        let id = format!("{prefix}{i}");
        async move { cluster.run(KINDS[i % KINDS.len()], base, &id).await }
    });
    futures::future::join_all(runs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

/// An answer of ten parts, `gap` apart.
fn slow_answer(gap: Duration) -> Reply {
    Reply::sse_with(qwen_sse::fast_answer(&PARTS), Split::AtEvents).delay(gap)
}

/// Whether a connection to `addr` is refused (the replica has closed its listener).
fn refuses(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect(addr).is_err()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_through_nginx_loses_nothing_when_a_replica_is_stopped_with_sigterm() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    // Each answer streams for about 0.8 s, so requests are in flight on every replica.
    cluster
        .fake
        .set_default_completion(slow_answer(Duration::from_millis(80)));
    let base = cluster.nginx.url("");
    let stopped = cluster.replicas[1].take().unwrap();

    let before = burst(&cluster, &base, "p1-", 24);
    let in_flight = async {
        assert!(
            common::eventually(Duration::from_secs(10), || cluster.fake.open_streams()
                == 24)
            .await,
            "the 24 requests never were in flight together ({} were)",
            cluster.fake.open_streams()
        );
        stopped.terminate();
        let signalled = Instant::now();
        let drained = tokio::spawn(async move {
            let code = stopped.exit_code(Duration::from_secs(30)).await;
            (code, signalled.elapsed())
        });
        // New requests once the stopped replica takes no connection.
        assert!(
            common::eventually(Duration::from_secs(5), || refuses(cluster.addrs[1])).await,
            "the stopped replica still accepts connections"
        );
        let after = burst(&cluster, &base, "p2-", 24).await;
        (after, drained.await.unwrap())
    };
    let (before, (after, (code, drain))) = tokio::join!(before, in_flight);
    assert_eq!(before, Vec::<String>::new(), "requests in flight failed");
    assert_eq!(
        after,
        Vec::<String>::new(),
        "requests during the drain failed"
    );
    assert_eq!(code, Some(0), "{}", read_log(cluster.dirs[1].path()));

    let first = cluster.served("p1-", 24).await;
    let second = cluster.served("p2-", 24).await;
    assert_eq!((first.len(), second.len()), (24, 24));
    let on_stopped = first.iter().filter(|(_, by, _)| *by == 1).count();
    assert!(
        on_stopped > 0,
        "no request was in flight on the stopped replica"
    );
    let late: Vec<_> = second.iter().filter(|(_, by, _)| *by == 1).collect();
    assert!(late.is_empty(), "the draining replica served {late:?}");
    // Nothing ran twice: a retried request had not reached the replica that refused it.
    assert_eq!(cluster.fake.completions().len(), 48);
    let retried = first.iter().chain(&second).filter(|s| s.2 > 1).count();
    eprintln!(
        "scale-out SIGTERM figures: 48 requests (24 before the signal, 24 during the drain), \
         0 failures, {on_stopped} in flight on the stopped replica, drain {drain:?}, \
         {retried} retried by nginx, per replica before {:?}, during the drain {:?}",
        distribution(&first),
        distribution(&second),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_is_retried_by_nginx_on_another_and_no_request_fails() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    cluster
        .fake
        .set_default_completion(slow_answer(Duration::ZERO));
    // Latency through nginx and straight to one replica, 30 whole chats each, one at a time.
    let mut latencies = BTreeMap::new();
    for (name, base) in [
        ("nginx", cluster.nginx.url("")),
        ("replica", cluster.replica_url(0, "")),
    ] {
        let mut took = Vec::new();
        for i in 0..30 {
            let started = Instant::now();
            let id = format!("lat-{name}-{i}");
            cluster.run(Kind::Chat, &base, &id).await.unwrap();
            took.push(started.elapsed());
        }
        took.sort();
        latencies.insert(name, (took[14], took[28]));
    }

    let mut killed = cluster.replicas[2].take().unwrap();
    killed.child.kill().unwrap();
    assert!(!killed.child.wait().unwrap().success());
    let base = cluster.nginx.url("");
    let mut failures = Vec::new();
    for i in 0..12 {
        if let Err(e) = cluster
            .run(KINDS[i % KINDS.len()], &base, &format!("k-{i}"))
            .await
        {
            failures.push(e);
        }
    }
    assert_eq!(failures, Vec::<String>::new());
    let served = cluster.served("k-", 12).await;
    assert_eq!(served.len(), 12);
    assert!(served.iter().all(|(_, by, _)| *by != 2), "{served:?}");
    let retried = served.iter().filter(|s| s.2 > 1).count();
    assert!(
        retried > 0,
        "nginx never tried the killed replica: {served:?}"
    );
    assert_eq!(cluster.fake.completions().len(), 60 + 12);
    eprintln!(
        "scale-out SIGKILL figures: 12 requests after the kill, 0 failures, {retried} retried \
         by nginx, per replica {:?}; whole chats p50/p95 through nginx {:?}, straight to a \
         replica {:?}",
        distribution(&served),
        latencies["nginx"],
        latencies["replica"],
    );
}

/// Waits for the next minute when this one has under 10 s left, so that the requests fall into
/// one requests-per-minute window.
async fn fresh_minute() {
    let into = qwen2api::store::now_ms().rem_euclid(60_000);
    if into > 50_000 {
        let left = u64::try_from(60_000 - into).unwrap() + 50;
        tokio::time::sleep(Duration::from_millis(left)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_on_one_replica_works_on_all_and_its_rpm_limit_holds_behind_nginx() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let created = cluster
        .http
        .post(cluster.replica_url(0, "/api/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"label": "scale", "limits": {"requestsPerMinute": 6}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    for i in [1, 2] {
        let url = cluster.replica_url(i, "/v1/models");
        let known = common::eventually_async(Duration::from_secs(3), || async {
            let resp = cluster.http.get(&url).bearer_auth(&key).send().await;
            resp.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(known, "replica {} never knew the key", i + 1);
    }

    fresh_minute().await;
    let chat = || {
        cluster
            .http
            .post(cluster.nginx.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
    };
    for _ in 0..6 {
        assert_eq!(chat().await.unwrap().status(), 200);
    }
    let by: Vec<usize> = cluster
        .nginx
        .logged(6, |l| l.status == 200)
        .await
        .iter()
        .map(|l| cluster.index_of(l.served_by().unwrap()))
        .collect();
    let mut replicas = by.clone();
    replicas.sort_unstable();
    replicas.dedup();
    assert_eq!(replicas, [0, 1, 2], "the six requests were spread: {by:?}");
    for _ in 0..2 {
        let refused = chat().await.unwrap();
        assert_eq!(refused.status(), 429);
        let v: Value = refused.json().await.unwrap();
        common::assert_error_envelope(&v, "rate_limit_error", "requests_per_minute_exceeded");
    }
    assert_eq!(
        cluster.fake.completions().len(),
        6,
        "refused requests go nowhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_started_on_one_replica_continues_on_the_others() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    cluster.fake.number_answers();
    let nginx = cluster.nginx.url("");
    let bases = [
        cluster.replica_url(0, ""),
        cluster.replica_url(1, ""),
        nginx,
    ];
    let mut history = vec![json!({"role": "user", "content": "Question 1?"})];
    for (turn, base) in bases.iter().enumerate() {
        let answer = format!("Answer {}.", turn + 1);
        cluster
            .fake
            .push_completion(None, Reply::sse(qwen_sse::fast_answer(&[answer.as_str()])));
        let resp = cluster
            .http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&json!({"model": MODEL, "messages": history}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], answer, "{v}");
        history.push(v["choices"][0]["message"].clone());
        history.push(json!({"role": "user", "content": format!("Question {}?", turn + 2)}));
    }
    assert_eq!(
        cluster.fake.count("POST", CHATS_NEW),
        1,
        "one upstream chat"
    );
    let sent: Vec<(Option<String>, String)> = cluster
        .fake
        .completions()
        .iter()
        .map(|r| {
            let body = r.json.clone().unwrap();
            (parent_of(&body), prompt_of(&body))
        })
        .collect();
    assert_eq!(
        sent,
        [
            (None, "Question 1?".to_owned()),
            (Some("answer-1".into()), "Question 2?".into()),
            (Some("answer-2".into()), "Question 3?".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_jobs_stay_with_their_replica_and_files_are_seen_by_all_behind_nginx() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let url = fake_media::output_url(&cluster.fake.base_url(), "t2v", "mp4");
    cluster
        .fake
        .push_completion(None, fake_media::t2v_reply("task-v"));
    cluster.fake.set_task(
        "task-v",
        vec![TaskStep::Running, TaskStep::Success(url.clone())],
    );
    let resp = cluster
        .http
        .post(cluster.nginx.url("/v1/videos"))
        .bearer_auth(KEY)
        .json(&json!({"prompt": "waves"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let job: Value = resp.json().await.unwrap();
    let path = format!("/v1/videos/{}", job["id"].as_str().unwrap());
    // Round robin would ask the two replicas that do not have the job.
    let mut last = Value::Null;
    for _ in 0..6 {
        let (status, v) = cluster.get(&path).await;
        assert_eq!(status, 200, "{v}");
        last = v;
    }
    let mut by = cluster.served_path("/v1/videos", 1).await;
    by.extend(cluster.served_path(&path, 6).await);
    assert_eq!(by.len(), 7);
    assert!(by.iter().all(|r| *r == by[0]), "one replica: {by:?}");
    for _ in 0..250 {
        if last["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        last = cluster.get(&path).await.1;
    }
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["url"], url.as_str());

    // A file posted through one replica is read through the others (one DATA_DIR for all).
    let form = reqwest::multipart::Form::new()
        .text("purpose", "user_data")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"scale-out notes".to_vec())
                .file_name("notes.txt")
                .mime_str("text/plain")
                .unwrap(),
        );
    let resp = cluster
        .http
        .post(cluster.nginx.url("/v1/files"))
        .bearer_auth(KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let file: Value = resp.json().await.unwrap();
    let path = format!("/v1/files/{}", file["id"].as_str().unwrap());
    for _ in 0..3 {
        let (status, v) = cluster.get(&path).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["filename"], "notes.txt", "{v}");
    }
    let mut by = cluster.served_path(&path, 3).await;
    by.sort_unstable();
    assert_eq!(by, [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_through_nginx_arrives_event_by_event() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    // Two seconds of answer: the first event is out long before the last.
    cluster
        .fake
        .set_default_completion(slow_answer(Duration::from_millis(200)));
    let (path, body) = Kind::ChatStream.request();
    let resp = cluster
        .http
        .post(cluster.nginx.url(path))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("w0 ") {
        let chunk = stream.next().await.expect("more").unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(
        cluster.fake.open_streams(),
        1,
        "the first words came before the upstream had finished: nginx does not hold the stream"
    );
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert_eq!(Kind::ChatStream.check(&text), Ok(()));
}

/// The Python (with PyYAML) of the conformance tests, to read the compose file; `None` (after
/// a note) when there is none here, except under `CI=true`.
fn python() -> Option<String> {
    match std::env::var("QWEN2API_CONFORMANCE_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true requires the compose check: set QWEN2API_CONFORMANCE_PYTHON"
            );
            eprintln!("note: QWEN2API_CONFORMANCE_PYTHON is not set; skipping the compose check");
            None
        }
    }
}

/// Docker cannot run here: the compose file is read as YAML and held to the topology the
/// tests above run (and the single server stays as it was).
#[test]
fn the_compose_scale_profile_is_the_tested_topology() {
    let Some(python) = python() else { return };
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(format!("{root}/docker-compose.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compose: Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = compose["services"].as_object().unwrap();
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    // (serde_json keeps them sorted)
    assert_eq!(
        names,
        [
            "nginx",
            "qwen2api",
            "qwen2api-1",
            "qwen2api-2",
            "qwen2api-3",
            "redis"
        ]
    );

    let single = &services["qwen2api"];
    assert_eq!(single.get("profiles"), None, "the default is unchanged");
    assert_eq!(
        single["environment"],
        json!({"SERVICE_PORT": "3000", "LISTEN_ADDRESS": "0.0.0.0"})
    );
    assert_eq!(
        single["volumes"],
        json!(["./.env:/app/.env:ro", "qwen2api-data:/app/data"])
    );
    assert_eq!(single["ports"], json!(["${SERVICE_PORT:-3000}:3000"]));

    for (name, service) in services.iter().filter(|(n, _)| *n != "qwen2api") {
        assert_eq!(service["profiles"], json!(["scale"]), "{name}");
    }
    let conf = std::fs::read_to_string(format!("{root}/deploy/nginx/scale.conf")).unwrap();
    for name in ["qwen2api-1", "qwen2api-2", "qwen2api-3"] {
        let replica = &services[name];
        assert_eq!(
            replica, &services["qwen2api-1"],
            "{name} is the same replica"
        );
        let env = &replica["environment"];
        assert_eq!(env["DATA_SAVE_MODE"], "redis");
        assert_eq!(env["REDIS_URL"], "redis://redis:6379/");
        // nginx reaches each replica at the port it listens on.
        let upstream = format!("server {name}:{} ", env["SERVICE_PORT"].as_str().unwrap());
        assert_eq!(conf.matches(&upstream).count(), 2, "{upstream}");
        assert_eq!(
            replica["volumes"],
            json!(["./.env:/app/.env:ro", "qwen2api-scale-data:/app/data"])
        );
        assert_eq!(
            replica["depends_on"]["redis"]["condition"],
            "service_healthy"
        );
    }
    let nginx = &services["nginx"];
    assert_eq!(
        nginx["volumes"],
        json!(["./deploy/nginx/scale.conf:/etc/nginx/conf.d/default.conf:ro"])
    );
    assert_eq!(nginx["ports"], json!(["${SERVICE_PORT:-3000}:80"]));
    assert!(conf.contains("listen 80;"));
}
