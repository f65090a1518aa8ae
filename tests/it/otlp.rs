//! OTLP trace export (feature `otlp`): the real binary sends one trace per request, with a
//! child span per upstream attempt, to a collector on loopback, and flushes what is queued
//! when it stops.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::binary::{Server, read_log};
use common::fake_qwen::{FakeQwen, Reply};
use common::{KEY, qwen_sse};
use serde_json::{Value, json};

/// What the collector received: each export's content type and JSON body.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// A collector that accepts OTLP/HTTP JSON exports on `/v1/traces`; its base URL.
async fn collector() -> (String, Received) {
    let got: Received = Arc::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(got): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    let kind = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    got.lock().unwrap().push((kind, v));
                    axum::Json(json!({}))
                },
            ),
        )
        .with_state(Arc::clone(&got));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

/// Every span of every export, flattened.
fn spans(got: &Received) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|(_, v)| v["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// A span attribute's value as text (strings, ints and bools alike).
fn attr(span: &Value, key: &str) -> Option<String> {
    let kv = span["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)?;
    let v = &kv["value"];
    ["stringValue", "intValue", "boolValue"]
        .iter()
        .find_map(|k| v.get(*k))
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
}

/// The binary with two accounts, exporting to `endpoint`; the first completion attempt meets
/// a business error and fails over, the second answers.
async fn start(endpoint: &str) -> (FakeQwen, tempfile::TempDir, Server) {
    let fake = FakeQwen::start().await;
    let cookies = format!(
        "token={},token={}",
        fake.add_token("acct1"),
        fake.add_token("acct2")
    );
    // The first attempt meets a business error and fails over; the second answers.
    fake.push_completion(
        None,
        Reply::http(
            200,
            "application/json",
            qwen_sse::business_error("Bad_Request", "Internal error"),
        ),
    );
    fake.push_completion(None, Reply::sse(qwen_sse::fast_answer(&["Hi"])));
    let dir = tempfile::tempdir().unwrap();
    let base = fake.base_url();
    let server = Server::start(
        dir.path(),
        &[
            ("API_KEY", KEY),
            ("QWEN_COOKIES", cookies.as_str()),
            ("QWEN_BASE_URL", base.as_str()),
            ("DATA_SAVE_MODE", "none"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            // Nothing is sent on a schedule during the test: what arrives was flushed at exit.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_SERVICE_NAME", "qwen2api-under-test"),
        ],
    );
    (fake, dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_with_a_span_per_upstream_attempt_flushed_at_exit() {
    let (endpoint, got) = collector().await;
    let (_fake, dir, mut server) = start(&endpoint).await;
    let resp = reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "otlp-trace-1")
        .json(&common::body("qwen3.7-plus", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hi");
    assert!(spans(&got).is_empty(), "exported before the flush");

    server.terminate();
    assert_eq!(
        server.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        read_log(dir.path())
    );
    let all = spans(&got);
    let log = read_log(dir.path());
    assert!(log.contains("exporting traces over OTLP"), "{log}");
    for (kind, _) in got.lock().unwrap().iter() {
        assert_eq!(kind, "application/json");
    }
    let service = got.lock().unwrap()[0].1["resourceSpans"][0]["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv["key"] == "service.name")
        .map(|kv| kv["value"]["stringValue"].clone());
    assert_eq!(service, Some(json!("qwen2api-under-test")));

    let requests: Vec<&Value> = all
        .iter()
        .filter(|s| {
            s["name"] == "request" && attr(s, "request_id").as_deref() == Some("otlp-trace-1")
        })
        .collect();
    assert_eq!(requests.len(), 1, "{all:#?}");
    let request = requests[0];
    assert_eq!(
        attr(request, "route").as_deref(),
        Some("/v1/chat/completions")
    );
    assert_eq!(request["parentSpanId"].as_str().unwrap_or_default(), "");
    assert_attempts(&all, request);
}

/// Two attempt spans under the request span, on two accounts: one failed, one answered.
fn assert_attempts(all: &[Value], request: &Value) {
    let attempts: Vec<&Value> = all
        .iter()
        .filter(|s| s["name"] == "upstream_attempt")
        .collect();
    assert_eq!(attempts.len(), 2, "{all:#?}");
    for a in &attempts {
        assert_eq!(a["traceId"], request["traceId"]);
        assert_eq!(a["parentSpanId"], request["spanId"]);
        assert_eq!(attr(a, "model").as_deref(), Some("qwen3.7-plus"));
    }
    let outcomes: Vec<(Option<String>, Option<String>, Option<String>)> = attempts
        .iter()
        .map(|a| {
            (
                attr(a, "account"),
                attr(a, "outcome"),
                attr(a, "error_class"),
            )
        })
        .collect();
    assert!(
        outcomes.contains(&(
            Some("account_1".into()),
            Some("failed".into()),
            Some("transient".into())
        )) || outcomes.contains(&(
            Some("account_2".into()),
            Some("failed".into()),
            Some("transient".into())
        )),
        "{outcomes:?}"
    );
    let answered: Vec<_> = outcomes
        .iter()
        .filter(|o| o.1.as_deref() == Some("answered"))
        .collect();
    assert_eq!(answered.len(), 1, "{outcomes:?}");
    assert_ne!(
        outcomes[0].0, outcomes[1].0,
        "the failover used the other account"
    );
}
