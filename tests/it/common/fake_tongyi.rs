//! Fake Tongyi web chat (2025 form, docs/upstream.md §13) for integration tests: cookie + XSRF
//! accounts, answers written the way the site writes them (an echoed prompt block, `think`
//! blocks as JSON strings, cumulative text, a reset, an incremental block), `NOT_LOGIN`,
//! sessions continued by `sessionId` + `parentMsgId`, and a log of every request.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const CONVERSATION: &str = "/dialog/conversation";
pub const DELETE: &str = "/dialog/session/delete";

/// What one conversation request answers.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// Reasoning (when the request asked for thinking) and text, written with every habit of
    /// the site: echo, think JSON, cumulative text, a reset to nothing, an incremental block.
    Answer { think: String, text: String },
    /// `{"errorCode":"NOT_LOGIN"}` inside a 200 event stream.
    NotLogin,
    /// An HTTP error with a JSON body.
    Status(u16),
}

impl Scenario {
    pub fn text(text: &str) -> Scenario {
        Scenario::Answer {
            think: "Thinking it over.".into(),
            text: text.into(),
        }
    }
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Shared {
    /// XSRF token → the cookie that must come with it.
    accounts: HashMap<String, String>,
    /// Per XSRF token, then for anyone.
    scripts: HashMap<Option<String>, VecDeque<Scenario>>,
    /// Session id → the msgIds of its answers, in order.
    sessions: HashMap<String, Vec<String>>,
    requests: Vec<Received>,
    next: usize,
}

#[derive(Clone)]
pub struct FakeTongyi {
    inner: Arc<Mutex<Shared>>,
    addr: SocketAddr,
    _task: Arc<Task>,
}

struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FakeTongyi {
    pub async fn start() -> FakeTongyi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake tongyi");
        });
        FakeTongyi {
            inner,
            addr,
            _task: Arc::new(Task(task)),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An account the fake accepts → `(cookie, xsrf)`.
    pub fn add_account(&self, label: &str) -> (String, String) {
        let cookie = format!("cna=c-{label}; tongyi_sso_ticket=t-{label}");
        let xsrf = format!("xsrf-{label}");
        self.lock().accounts.insert(xsrf.clone(), cookie.clone());
        (cookie, xsrf)
    }

    /// What the next conversation request of `xsrf` (or of anyone) answers.
    pub fn push(&self, xsrf: Option<&str>, scenario: Scenario) {
        self.lock()
            .scripts
            .entry(xsrf.map(str::to_owned))
            .or_default()
            .push_back(scenario);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.lock().requests.clone()
    }

    /// The conversation requests made with `xsrf`.
    pub fn conversations_of(&self, xsrf: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == CONVERSATION && r.header("x-xsrf-token") == Some(xsrf))
            .collect()
    }

    pub fn conversations(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == CONVERSATION)
            .collect()
    }

    pub fn deletes(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == DELETE)
            .filter_map(|r| r.body["sessionId"].as_str().map(str::to_owned))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.inner.lock().unwrap()
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Shared>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = inner.lock().unwrap();
    s.requests.push(Received {
        path: uri.path().to_owned(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let xsrf = headers
        .get("x-xsrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if s.accounts.get(&xsrf).is_none_or(|c| c != cookie) {
        return json_reply(
            &json!({"success": false, "errorCode": "NOT_LOGIN", "errorMsg": "未登录"}),
        );
    }
    match uri.path() {
        CONVERSATION => conversation(&mut s, &xsrf, &body),
        DELETE => {
            let id = body["sessionId"].as_str().unwrap_or_default();
            s.sessions.remove(id);
            json_reply(&json!({"success": true}))
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn conversation(s: &mut Shared, xsrf: &str, body: &Value) -> Response {
    let scenario = s
        .scripts
        .get_mut(&Some(xsrf.to_owned()))
        .and_then(VecDeque::pop_front)
        .or_else(|| s.scripts.get_mut(&None).and_then(VecDeque::pop_front))
        .unwrap_or_else(|| Scenario::text("Hello from Tongyi."));
    let (think, text) = match scenario {
        Scenario::NotLogin => {
            return sse(&[r#"{"errorCode":"NOT_LOGIN","errorMsg":"login expired"}"#.to_owned()]);
        }
        Scenario::Status(code) => {
            return (
                StatusCode::from_u16(code).unwrap(),
                [(header::CONTENT_TYPE, "application/json")],
                json!({"errorCode": "SYSTEM_ERROR", "errorMsg": "busy"}).to_string(),
            )
                .into_response();
        }
        Scenario::Answer { think, text } => (think, text),
    };
    // A continued session must name the last answer of a session the fake knows.
    let session = body["sessionId"].as_str().unwrap_or_default().to_owned();
    let parent = body["parentMsgId"].as_str().unwrap_or_default();
    let session = if session.is_empty() {
        s.next += 1;
        let id = format!("session-{}", s.next);
        s.sessions.insert(id.clone(), Vec::new());
        id
    } else {
        match s.sessions.get(&session) {
            Some(msgs) if msgs.last().map(String::as_str) == Some(parent) => session,
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "application/json")],
                    json!({"errorCode": "SESSION_NOT_FOUND", "errorMsg": "no such session or parent"}).to_string(),
                )
                    .into_response();
            }
        }
    };
    s.next += 1;
    let msg = format!("msg-{}", s.next);
    s.sessions.get_mut(&session).unwrap().push(msg.clone());
    let prompt = body["contents"][0]["content"].as_str().unwrap_or_default();
    let thinking = body["feature_config"]["thinking_enabled"] == true;
    sse(&answer(
        &session,
        &msg,
        prompt,
        thinking.then_some(think.as_str()),
        &text,
    ))
}

/// The events of one answer. The text is cut in thirds, sent cumulatively, then reset to
/// nothing, then sent whole but for its last character, which follows as an incremental
/// block; the last event repeats the whole text.
fn answer(session: &str, msg: &str, prompt: &str, think: Option<&str>, text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let upto = |n: usize| chars[..n.min(chars.len())].iter().collect::<String>();
    let third = chars.len() / 3;
    let head = |extra: Value| {
        let mut blocks = vec![json!({"role": "user", "contentType": "text", "content": prompt})];
        if let Some(t) = think {
            let half: String = t.chars().take(t.chars().count() / 2).collect();
            blocks.push(json!({"role": "assistant", "contentType": "think",
                "content": json!({"content": half}).to_string()}));
        }
        blocks.push(extra);
        blocks
    };
    let text_block = |t: String| json!({"role": "assistant", "contentType": "text", "content": t});
    let event = |status: &str, contents: Vec<Value>| {
        json!({"sessionId": session, "msgId": msg, "msgStatus": status, "contents": contents,
               "extra": {"ignored": true}})
        .to_string()
    };
    let mut full_think = Vec::new();
    if let Some(t) = think {
        full_think
            .push(json!({"contentType": "think", "content": json!({"content": t}).to_string()}));
    }
    let mut second = full_think.clone();
    second.push(text_block(upto(third)));
    vec![
        event(
            "processing",
            head(json!({"contentType": "plugin", "content": "{}"})),
        ),
        event("processing", second),
        event("processing", vec![text_block(upto(2 * third))]),
        event("processing", vec![text_block(String::new())]),
        event(
            "processing",
            vec![text_block(upto(chars.len().saturating_sub(1)))],
        ),
        event(
            "processing",
            vec![json!({"contentType": "text", "incremental": true,
                        "content": chars.last().map(char::to_string).unwrap_or_default()})],
        ),
        event("finished", vec![text_block(text.to_owned())]),
        "[DONE]".to_owned(),
    ]
}

fn sse(events: &[String]) -> Response {
    let body: String = events
        .iter()
        .flat_map(|e| ["data: ", e.as_str(), "\n\n"])
        .collect();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream;charset=UTF-8")],
        body,
    )
        .into_response()
}

fn json_reply(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}
