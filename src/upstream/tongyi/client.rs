//! Tongyi's HTTP calls (docs/upstream.md §13.1, §13.4): the conversation POST answering an
//! event stream, and the session delete. Endpoint, headers and body are settings
//! (`TONGYI_*`), so a changed site can be followed without a rebuild.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use serde_json::Value;

use super::reader;
use super::wire::{ConversationBody, Event, FeatureConfig, Part};
use crate::config::{TongyiConfig, UpstreamConfig};
use crate::upstream::qwen::ByteStream;
use crate::upstream::{Credentials, Turn, UpstreamError, error};

pub struct TongyiClient {
    cfg: Arc<TongyiConfig>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    /// The outbound proxy for accounts without their own.
    proxy: Option<String>,
    /// One pooled client per outbound proxy.
    clients: Mutex<HashMap<Option<String>, reqwest::Client>>,
}

impl TongyiClient {
    pub fn new(cfg: Arc<TongyiConfig>, common: &UpstreamConfig) -> Self {
        Self {
            cfg,
            connect_timeout: common.connect_timeout,
            first_byte_timeout: common.first_byte_timeout,
            idle_timeout: common.idle_timeout,
            proxy: common.proxy.as_ref().map(|p| p.as_str().to_owned()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn http(&self, creds: &Credentials) -> Result<reqwest::Client, UpstreamError> {
        let proxy = creds.proxy.clone().or_else(|| self.proxy.clone());
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&proxy) {
            return Ok(c.clone());
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http1_only()
            .retry(reqwest::retry::never().max_retries_per_request(0));
        builder = match &proxy {
            Some(p) => builder.proxy(
                reqwest::Proxy::all(p)
                    .map_err(|_| UpstreamError::Transient("invalid proxy URL".into()))?,
            ),
            None => builder.no_proxy(),
        };
        let client = builder
            .build()
            .map_err(|e| UpstreamError::Transient(format!("cannot build HTTP client: {e}")))?;
        clients.insert(proxy, client.clone());
        Ok(client)
    }

    /// The account's headers (§13.1), then `TONGYI_HEADERS_JSON` over them.
    fn headers(&self, creds: &Credentials) -> Result<HeaderMap, UpstreamError> {
        let value = |v: &str, what: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                UpstreamError::Rejected(format!("the account's {what} is not a valid header value"))
            })
        };
        let cookie = creds.cookies.as_ref().map_or("", |c| c.expose());
        let mut h = HeaderMap::new();
        let mut secret = value(cookie, "cookie")?;
        secret.set_sensitive(true);
        h.insert(header::COOKIE, secret);
        let mut xsrf = value(creds.token.expose(), "XSRF token")?;
        xsrf.set_sensitive(true);
        h.insert("x-xsrf-token", xsrf);
        h.insert("x-platform", HeaderValue::from_static("pc_tongyi"));
        h.insert(header::ORIGIN, value(&self.cfg.origin, "origin")?);
        h.insert(
            header::REFERER,
            value(&format!("{}/", self.cfg.origin), "referer")?,
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::USER_AGENT,
            value(&self.cfg.user_agent, "user agent")?,
        );
        for (name, v) in &self.cfg.headers {
            match v {
                Some(v) => {
                    h.insert(name.clone(), v.clone());
                }
                None => {
                    h.remove(name);
                }
            }
        }
        Ok(h)
    }

    fn url(&self, path: &str) -> reqwest::Url {
        let mut url = self.cfg.base_url.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// The request body (§13.2) with `TONGYI_BODY_JSON` set over its top-level fields.
    fn body(&self, turn: &Turn, session_id: &str) -> Result<Vec<u8>, UpstreamError> {
        let body = ConversationBody {
            action: "next",
            contents: [Part {
                role: "user",
                content: &turn.prompt,
                content_type: "text",
            }],
            model: &turn.model,
            parent_msg_id: turn.parent.as_deref().unwrap_or(""),
            request_id: uuid::Uuid::new_v4().simple().to_string(),
            session_id,
            session_type: "text_chat",
            user_action: "new_top",
            feature_config: FeatureConfig {
                search_enabled: turn.chat_type == crate::conversation::ChatType::Search,
                thinking_enabled: turn.thinking,
            },
        };
        let mut value = serde_json::to_value(&body)
            .map_err(|e| UpstreamError::Rejected(format!("cannot encode the request: {e}")))?;
        if let Value::Object(map) = &mut value {
            for (k, v) in &self.cfg.body {
                if v.is_null() {
                    map.remove(k);
                } else {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
        serde_json::to_vec(&value)
            .map_err(|e| UpstreamError::Rejected(format!("cannot encode the request: {e}")))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, UpstreamError> {
        match tokio::time::timeout(self.first_byte_timeout, req.send()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(UpstreamError::from_reqwest(&e)),
            Err(_) => Err(UpstreamError::Transient(format!(
                "no response within {:?}",
                self.first_byte_timeout
            ))),
        }
    }

    /// An answer that is not an event stream, classified: a JSON `errorCode` first
    /// (`NOT_LOGIN`), then as any upstream error body.
    async fn refusal(&self, resp: reqwest::Response) -> UpstreamError {
        let status = resp.status().as_u16();
        let ct = content_type(resp.headers());
        let body = match tokio::time::timeout(self.idle_timeout, resp.text()).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return UpstreamError::from_reqwest(&e),
            Err(_) => return UpstreamError::Transient("timed out reading the answer".into()),
        };
        if let Ok(Event {
            error_code: Some(code),
            error_msg,
            ..
        }) = serde_json::from_str::<Event>(&body)
            && !code.is_empty()
        {
            return reader::classify(&code, error_msg.as_deref());
        }
        error::classify_body(status, &ct, &body)
    }

    /// Sends the turn into the session `session_id` (empty: a new one) → the raw answer.
    pub async fn conversation(
        &self,
        creds: &Credentials,
        turn: &Turn,
        session_id: &str,
    ) -> Result<ByteStream, UpstreamError> {
        let req = self
            .http(creds)?
            .post(self.url(&self.cfg.conversation_path))
            .headers(self.headers(creds)?)
            .body(self.body(turn, session_id)?);
        let resp = self.send(req).await?;
        let ct = content_type(resp.headers());
        if resp.status().as_u16() != 200 || !ct.starts_with("text/event-stream") {
            return Err(self.refusal(resp).await);
        }
        let idle = self.idle_timeout;
        let mut resp = resp;
        Ok(Box::pin(async_stream::stream! {
            loop {
                match tokio::time::timeout(idle, resp.chunk()).await {
                    Ok(Ok(Some(bytes))) => yield Ok(bytes),
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => {
                        yield Err(UpstreamError::from_reqwest(&e));
                        break;
                    }
                    Err(_) => {
                        yield Err(UpstreamError::Transient(format!("the stream was silent for {idle:?}")));
                        break;
                    }
                }
            }
        }))
    }

    /// Deletes a session (§13.4); one already gone counts as deleted.
    pub async fn delete_session(
        &self,
        creds: &Credentials,
        session_id: &str,
    ) -> Result<(), UpstreamError> {
        let body = serde_json::to_vec(&serde_json::json!({ "sessionId": session_id }))
            .map_err(|e| UpstreamError::Rejected(e.to_string()))?;
        let req = self
            .http(creds)?
            .post(self.url(&self.cfg.delete_path))
            .headers(self.headers(creds)?)
            .header(header::ACCEPT, "application/json")
            .body(body);
        let resp = self.send(req).await?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) || status == 404 {
            return Ok(());
        }
        Err(self.refusal(resp).await)
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}
