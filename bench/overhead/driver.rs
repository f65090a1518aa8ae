//! The load driver: a fixed number of requests at a fixed concurrency, either straight to the
//! fake upstream (the calls the proxy itself makes) or through qwen2api, with per-request
//! latency, time to first byte and time to last byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use tokio::sync::Semaphore;

use crate::fake::MODEL;

/// One request gives up after this long (counted as an error).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the requests go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// To the fake: `chats/new`, the completion stream read to its end, `DELETE` fired after.
    Direct,
    /// To qwen2api's `POST /v1/chat/completions`.
    Proxy,
}

/// What the client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Json,
    Stream,
}

pub struct Driver {
    http: reqwest::Client,
    upstream: String,
    proxy: String,
    upstream_token: String,
    api_key: String,
    new_chat_body: Bytes,
    proxy_json_body: Bytes,
    proxy_stream_body: Bytes,
}

/// Timings of one successful request, in microseconds from its first byte sent.
#[derive(Clone, Copy)]
pub struct Sample {
    pub total_us: u64,
    pub ttfb_us: u64,
    pub chunks: u64,
}

/// The outcome of one load phase.
#[derive(Default)]
pub struct Load {
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub wall: Duration,
    /// Sorted, µs.
    pub total_us: Vec<u64>,
    /// Sorted, µs.
    pub ttfb_us: Vec<u64>,
    /// Body reads that returned data, over all successful requests: how finely the answer
    /// was cut into writes on its way.
    pub chunks: u64,
}

impl Driver {
    pub fn new(upstream: &str, proxy: &str, upstream_token: &str, api_key: &str) -> Self {
        let http = Self::client();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let new_chat_body = serde_json::json!({
            "title": "New Chat", "models": [MODEL], "chat_mode": "normal",
            "chat_type": "t2t", "timestamp": u64::try_from(now).unwrap_or(0), "project_id": "",
        });
        let proxy_body = |stream: bool| {
            Bytes::from(
                serde_json::json!({
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "Say hello in one sentence."}],
                    "stream": stream,
                })
                .to_string(),
            )
        };
        Self {
            http,
            upstream: upstream.to_owned(),
            proxy: proxy.to_owned(),
            upstream_token: format!("Bearer {upstream_token}"),
            api_key: format!("Bearer {api_key}"),
            new_chat_body: Bytes::from(new_chat_body.to_string()),
            proxy_json_body: proxy_body(false),
            proxy_stream_body: proxy_body(true),
        }
    }

    /// A keep-alive client that holds every connection it opened until it is dropped.
    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .tcp_nodelay(true)
            .no_proxy()
            .http1_only()
            .pool_max_idle_per_host(4096)
            .pool_idle_timeout(Duration::from_secs(600))
            .build()
            .expect("a plain HTTP client builds")
    }

    /// The same driver with a connection pool of its own: a row opens only the connections
    /// its concurrency needs, and the ones an earlier row left open (up to 256 per side)
    /// are closed when that row's driver is dropped, so they are not counted in this row's
    /// memory.
    pub fn with_new_connections(&self) -> Self {
        Self {
            http: Self::client(),
            upstream: self.upstream.clone(),
            proxy: self.proxy.clone(),
            upstream_token: self.upstream_token.clone(),
            api_key: self.api_key.clone(),
            new_chat_body: self.new_chat_body.clone(),
            proxy_json_body: self.proxy_json_body.clone(),
            proxy_stream_body: self.proxy_stream_body.clone(),
        }
    }

    /// Runs `n` requests (stopping early at `cap`) with `concurrency` in flight.
    pub async fn load(
        self: &Arc<Self>,
        via: Via,
        mode: Mode,
        n: usize,
        concurrency: usize,
        cap: Duration,
    ) -> Load {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency.min(n).max(1))
            .map(|_| {
                let this = Arc::clone(self);
                let next = Arc::clone(&next);
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    let mut errors = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < n && started.elapsed() < cap {
                        match tokio::time::timeout(REQUEST_TIMEOUT, this.one(via, mode)).await {
                            Ok(Ok(s)) => samples.push(s),
                            Ok(Err(e)) => errors.push(e),
                            Err(_) => errors.push(format!("no answer within {REQUEST_TIMEOUT:?}")),
                        }
                    }
                    (samples, errors)
                })
            })
            .collect();
        let mut load = Load::default();
        for w in workers {
            let (samples, errors) = match w.await {
                Ok(r) => r,
                Err(e) => (Vec::new(), vec![format!("driver task failed: {e}")]),
            };
            load.ok += samples.len();
            load.errors += errors.len();
            if load.first_error.is_none() {
                load.first_error = errors.into_iter().next();
            }
            load.total_us.extend(samples.iter().map(|s| s.total_us));
            load.ttfb_us.extend(samples.iter().map(|s| s.ttfb_us));
            load.chunks += samples.iter().map(|s| s.chunks).sum::<u64>();
        }
        load.wall = started.elapsed();
        load.total_us.sort_unstable();
        load.ttfb_us.sort_unstable();
        load
    }

    async fn one(&self, via: Via, mode: Mode) -> Result<Sample, String> {
        match via {
            Via::Direct => self.direct().await,
            Via::Proxy => self.proxied(mode).await.map(|(s, _)| s),
        }
    }

    /// The upstream calls the proxy makes for one request, timed the same way. The `DELETE`
    /// is fired after the answer and not awaited, as the proxy does it.
    async fn direct(&self) -> Result<Sample, String> {
        let t0 = Instant::now();
        let resp = self
            .http
            .post(format!("{}/api/v2/chats/new", self.upstream))
            .header(AUTHORIZATION, &self.upstream_token)
            .header(CONTENT_TYPE, "application/json")
            .body(self.new_chat_body.clone())
            .send()
            .await
            .map_err(|e| format!("chats/new: {e}"))?;
        let body = resp.bytes().await.map_err(|e| format!("chats/new: {e}"))?;
        let chat_id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["data"]["id"].as_str().map(str::to_owned))
            .ok_or("chats/new answered without data.id")?;
        let completion = completion_body(&chat_id);
        let resp = self
            .http
            .post(format!(
                "{}/api/v2/chat/completions?chat_id={chat_id}",
                self.upstream
            ))
            .header(AUTHORIZATION, &self.upstream_token)
            .header(CONTENT_TYPE, "application/json")
            .body(completion)
            .send()
            .await
            .map_err(|e| format!("completions: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("completions: HTTP {}", resp.status()));
        }
        let (ttfb, chunks, _) = read_to_end(resp, t0, false).await?;
        let total = t0.elapsed();
        let http = self.http.clone();
        let url = format!("{}/api/v2/chats/{chat_id}", self.upstream);
        let auth = self.upstream_token.clone();
        tokio::spawn(async move {
            let _ = http.delete(url).header(AUTHORIZATION, auth).send().await;
        });
        Ok(Sample {
            total_us: micros(total),
            ttfb_us: micros(ttfb),
            chunks,
        })
    }

    /// One request through qwen2api; also hands back the body (for the pre-flight check).
    pub async fn proxied(&self, mode: Mode) -> Result<(Sample, Vec<u8>), String> {
        let t0 = Instant::now();
        let body = match mode {
            Mode::Json => self.proxy_json_body.clone(),
            Mode::Stream => self.proxy_stream_body.clone(),
        };
        let resp = self
            .http
            .post(format!("{}/v1/chat/completions", self.proxy))
            .header(AUTHORIZATION, &self.api_key)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("proxy: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("proxy: HTTP {status}: {text}"));
        }
        let (ttfb, chunks, body) = read_to_end(resp, t0, true).await?;
        let total = t0.elapsed();
        if mode == Mode::Stream && !body.ends_with(b"data: [DONE]\n\n") {
            return Err("proxy: the stream did not end with data: [DONE]".into());
        }
        Ok((
            Sample {
                total_us: micros(total),
                ttfb_us: micros(ttfb),
                chunks,
            },
            body,
        ))
    }

    /// Opens `n` streams through the proxy, at most `opening` at a time, and keeps each open
    /// until the upstream lets it finish. `opened` counts streams whose first byte arrived.
    pub async fn hold_streams(
        self: &Arc<Self>,
        n: usize,
        opening: usize,
        opened: Arc<AtomicUsize>,
    ) -> Load {
        let gate = Arc::new(Semaphore::new(opening));
        let started = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let this = Arc::clone(self);
                let gate = Arc::clone(&gate);
                let opened = Arc::clone(&opened);
                tokio::spawn(async move {
                    let permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                    let resp = this
                        .http
                        .post(format!("{}/v1/chat/completions", this.proxy))
                        .header(AUTHORIZATION, &this.api_key)
                        .header(CONTENT_TYPE, "application/json")
                        .body(this.proxy_stream_body.clone())
                        .send()
                        .await
                        .map_err(|e| format!("proxy: {e}"))?;
                    if !resp.status().is_success() {
                        return Err(format!("proxy: HTTP {}", resp.status()));
                    }
                    let mut resp = resp;
                    let first = resp.chunk().await.map_err(|e| e.to_string())?;
                    if first.is_none() {
                        return Err("proxy: empty stream".into());
                    }
                    opened.fetch_add(1, Ordering::AcqRel);
                    drop(permit);
                    while resp.chunk().await.map_err(|e| e.to_string())?.is_some() {}
                    Ok(())
                })
            })
            .collect();
        let mut load = Load::default();
        for t in tasks {
            match t.await {
                Ok(Ok(())) => load.ok += 1,
                Ok(Err(e)) => {
                    load.errors += 1;
                    load.first_error.get_or_insert(e);
                }
                Err(e) => {
                    load.errors += 1;
                    load.first_error.get_or_insert(e.to_string());
                }
            }
        }
        load.wall = started.elapsed();
        load
    }
}

/// Reads a response body to its end: time to its first byte (from `t0`), the number of
/// reads, and the body itself when `keep` (else nothing is copied).
async fn read_to_end(
    mut resp: reqwest::Response,
    t0: Instant,
    keep: bool,
) -> Result<(Duration, u64, Vec<u8>), String> {
    let mut ttfb = None;
    let mut body = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading: {e}"))? {
        ttfb.get_or_insert_with(|| t0.elapsed());
        chunks += 1;
        if keep {
            body.extend_from_slice(&chunk);
        }
    }
    let Some(ttfb) = ttfb else {
        return Err("empty body".into());
    };
    Ok((ttfb, chunks, body))
}

/// The completion body the proxy sends (docs/upstream.md §5.2), for a direct request.
fn completion_body(chat_id: &str) -> String {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serde_json::json!({
        "stream": true, "version": "2.1", "incremental_output": true,
        "chat_id": chat_id, "chatId": chat_id, "chat_mode": "normal", "model": MODEL,
        "parent_id": null, "parentId": null,
        "messages": [{
            "fid": "9b2a1f0e-5c4d-4e3f-8a7b-6c5d4e3f2a1b", "parentId": null, "parent_id": null,
            "childrenIds": ["1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"], "role": "user",
            "content": "Say hello in one sentence.", "user_action": "chat", "files": [],
            "timestamp": ts, "models": [MODEL], "chat_type": "t2t", "sub_chat_type": "t2t",
            "feature_config": {
                "thinking_enabled": false, "output_schema": "phase", "research_mode": "normal",
                "auto_thinking": false, "thinking_mode": "Disabled", "thinking_format": "summary",
                "auto_search": false,
            },
            "extra": {"meta": {"subChatType": "t2t"}},
        }],
        "timestamp": ts,
    })
    .to_string()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
