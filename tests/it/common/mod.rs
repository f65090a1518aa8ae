//! Test harness: `TestApp` starts the real server on 127.0.0.1:0 against a `FakeQwen`.

pub mod binary;
pub mod fake_chats;
pub mod fake_media;
pub mod fake_qwen;
pub mod fake_tongyi;
pub mod nginx;
pub mod qwen_sse;
pub mod redis_server;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fake_qwen::FakeQwen;
use qwen2api::AppState;
use qwen2api::reload::Reloader;
use serde_json::Value;

/// Polls `check` every 10 ms until it holds or `within` has passed; whether it held.
/// Background effects (a lease dropped after the response, a chat deleted by a spawned task)
/// are not ordered with what the client sees.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    eventually_async(within, || std::future::ready(check())).await
}

/// [`eventually`] for a check that waits itself (a request to another replica).
pub async fn eventually_async<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts an OpenAI error envelope, `{"error":{"message","type","param","code"}}` with exactly
/// these keys, a message, and this type and code.
#[track_caller]
pub fn assert_error_envelope(v: &Value, kind: &str, code: &str) {
    let top: Vec<&String> = v.as_object().expect("an object").keys().collect();
    assert_eq!(top, ["error"], "{v}");
    let e = v["error"].as_object().expect("error is an object");
    let mut keys: Vec<&str> = e.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"], "{v}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(e["type"], kind, "{v}");
    assert_eq!(e["code"], code, "{v}");
}

pub const KEY: &str = "sk-test-key";

/// Serving loops of a `TestApp` (the binary runs one per core).
const TEST_LOOPS: usize = 2;
/// An `ENV_FILE` for a test server that names no file: a path inside a folder that does not
/// exist. Test servers run with the package root as their working directory, where a
/// developer keeps the `.env` of their own server (with real accounts): the default `.env`
/// would read it and change what the tests see.
pub fn no_env_file() -> String {
    std::env::temp_dir()
        .join(format!("qwen2api-no-env-{}", uuid::Uuid::new_v4().simple()))
        .join(".env")
        .to_string_lossy()
        .into_owned()
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub fake: FakeQwen,
    pub state: AppState,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// A server with `n` token accounts labelled `acct1`…`acctN` (ids `account_1`…).
    pub async fn with_accounts(n: usize, vars: &[(&str, &str)]) -> TestApp {
        let fake = FakeQwen::start().await;
        let cookies: Vec<String> = (1..=n)
            .map(|i| format!("token={}", fake.add_token(&format!("acct{i}"))))
            .collect();
        let cookies = cookies.join(",");
        let mut all: Vec<(&str, &str)> = vec![("QWEN_COOKIES", cookies.as_str())];
        all.extend_from_slice(vars);
        TestApp::spawn_with(fake, &all).await
    }

    /// A server configured by `vars` (plus `API_KEY` and the fake's URL unless given). It
    /// reads no `.env` unless `vars` names one with `ENV_FILE` (see [`no_env_file`]).
    pub async fn spawn_with(fake: FakeQwen, vars: &[(&str, &str)]) -> TestApp {
        let base = fake.base_url();
        let mut owned: Vec<(String, String)> = vec![
            ("API_KEY".into(), KEY.into()),
            ("QWEN_BASE_URL".into(), base),
            ("DATA_SAVE_MODE".into(), "none".into()),
            ("ENV_FILE".into(), no_env_file()),
        ];
        for (k, v) in vars {
            owned.retain(|(name, _)| name != k);
            owned.push(((*k).to_owned(), (*v).to_owned()));
        }
        let reloader = Reloader::new(owned.into_iter().collect());
        let config = reloader.load().expect("test configuration is valid");
        let state = AppState::build(config, Some(reloader))
            .await
            .expect("state builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Served as the binary serves: thread-per-core event loops (two here), each with its
        // own runtime, so upstream connection pools per loop are exercised too.
        let (tx, rx) = tokio::sync::watch::channel(false);
        let served = tokio::spawn(qwen2api::server::event_loop::serve(
            listener,
            qwen2api::server::router(state.clone()),
            TEST_LOOPS,
            move || {
                let mut rx = rx.clone();
                async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                }
            },
        ));
        TestApp {
            addr,
            fake,
            state,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            shutdown: Some(tx),
            served: Some(served),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(KEY)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(KEY)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(KEY)
    }

    /// `method path` with `key` as the bearer token, or with no `Authorization` header.
    pub fn request_as(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let req = self.http.request(method, self.url(path));
        match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    /// Sends `method path` with `key` and an optional JSON body; the answer must be JSON.
    /// Returns its status and body.
    pub async fn json_as(
        &self,
        method: &str,
        path: &str,
        key: &str,
        json: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.request_as(method, path, Some(key));
        if let Some(j) = json {
            req = req.json(&j);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()["content-type"], "application/json");
        (status, resp.json().await.unwrap())
    }

    /// `GET path` with the test key; it must answer 200 with JSON, returned.
    pub async fn get_json(&self, path: &str) -> Value {
        let (status, v) = self.json_as("GET", path, KEY, None).await;
        assert_eq!(status, 200, "{path}: {v}");
        v
    }

    /// A non-streamed chat with `key`; it must answer 200 with some text, returned as JSON.
    pub async fn chat_ok(&self, key: &str) -> Value {
        let resp = self
            .http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body("qwen3.7-plus", false))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{v}");
        let text = v["choices"][0]["message"]["content"].as_str();
        assert!(text.is_some_and(|t| !t.is_empty()), "{v}");
        v
    }

    pub async fn chat(&self, body: Value) -> reqwest::Response {
        self.post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Sum of in-flight leases over every account.
    pub fn leases(&self) -> usize {
        self.state
            .proxy()
            .pool()
            .accounts()
            .iter()
            .map(|a| a.inflight())
            .sum()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(h) = self.served.take() {
            let _ = h.await;
        }
    }
}

/// Status and `error` object of an answer that must be an OpenAI error envelope.
pub async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    let e = v["error"].as_object().expect("OpenAI error envelope");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(e.contains_key("param") && e.contains_key("code") && e.contains_key("type"));
    (status, v["error"].clone())
}

pub fn body(model: &str, stream: bool) -> Value {
    serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// The `data:` payloads and comments of an SSE body, in order.
pub fn sse_lines(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The JSON chunks of an SSE body (comments and `[DONE]` left out).
pub fn sse_json(text: &str) -> Vec<Value> {
    sse_lines(text)
        .iter()
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Concatenated `delta.content` of a stream's chunks.
pub fn streamed_content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| {
            c["choices"].get(0)?["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

pub fn streamed_reasoning(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| {
            c["choices"].get(0)?["delta"]["reasoning_content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Replaces the random `id` and the `created` time so bodies can be compared byte for byte.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("chatcmpl-") {
        out.push_str(&rest[..i]);
        out.push_str("chatcmpl-ID");
        rest = &rest[i + 9..];
        let end = rest.find('"').unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("\"created\":") {
        result.push_str(&rest[..i + 10]);
        rest = &rest[i + 10..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        result.push('0');
        rest = &rest[end..];
    }
    result.push_str(rest);
    result
}
