//! `GET /metrics`: who may read it, that it parses as the Prometheus text format, and the exact
//! counts and label sets after a chat, a streamed Messages request, a Responses request, a
//! failover and a WAF challenge.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::fake_qwen::Reply;
use common::{KEY, TestApp, body, qwen_sse};
use serde_json::{Value, json};

const ADMIN: &str = "sk-admin-metrics";
const MODEL: &str = "qwen3.7-plus";
const WAF_PAGE: &str = "<!DOCTYPE html><html><head><meta name=\"aliyun_waf_aa\" \
                        content=\"1\"><title>Verification</title></head><body>\
                        <div id=\"nocaptcha\"></div></body></html>";

/// One sample line: its metric name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (0.0.4) strictly: every sample belongs to a family
/// declared by `# HELP` and `# TYPE` before it, with the suffixes its type allows; label
/// values are quoted and escaped; values are numbers. Panics on anything else.
fn parse(text: &str) -> Vec<Sample> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: BTreeSet<String> = BTreeSet::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "the text ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP has a text");
            assert!(valid_name(name), "{line}");
            assert!(helped.insert(name.to_owned()), "HELP twice: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none());
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let s = sample(line);
            let family = types
                .iter()
                .find(|(f, kind)| {
                    let suffixes: &[&str] = match kind.as_str() {
                        "histogram" => &["_bucket", "_sum", "_count"],
                        _ => &[""],
                    };
                    suffixes.iter().any(|x| s.name == format!("{f}{x}"))
                })
                .unwrap_or_else(|| panic!("sample of no declared family: {line}"));
            if family.1 == "histogram" && s.name.ends_with("_bucket") {
                assert!(s.labels.contains_key("le"), "{line}");
            }
            samples.push(s);
        }
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn sample(line: &str) -> Sample {
    let (head, value) = line.rsplit_once(' ').expect("a sample has a value");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("not a number: {line}")),
    };
    let (name, labels) = match head.split_once('{') {
        None => (head, BTreeMap::new()),
        Some((name, rest)) => (name, labels(rest.strip_suffix('}').expect(line))),
    };
    assert!(valid_name(name), "{line}");
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes.
fn labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(valid_name(key), "label name {key:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("an escape").1 {
                    'n' => value.push('\n'),
                    c @ ('"' | '\\') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                (_, c) => value.push(c),
            }
        };
        assert!(out.insert(key.to_owned(), value).is_none(), "label twice");
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out
}

/// The value of the sample `name` whose labels are exactly `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut found = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want);
    let first = found.next()?;
    assert!(found.next().is_none(), "{name} {want:?} twice");
    Some(first.value)
}

/// The label sets of every sample of `name`.
fn label_sets(samples: &[Sample], name: &str) -> Vec<BTreeMap<String, String>> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.labels.clone())
        .collect()
}

async fn scrape(app: &TestApp, key: Option<&str>) -> reqwest::Response {
    app.request_as("GET", "/metrics", key).send().await.unwrap()
}

async fn samples(app: &TestApp) -> Vec<Sample> {
    let resp = scrape(app, Some(ADMIN)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse(&resp.text().await.unwrap())
}

/// A request is counted when its body is done, a moment after the client has read it.
async fn requests_of(app: &TestApp, surface: &str, want: f64) -> Vec<Sample> {
    for _ in 0..100 {
        let s = samples(app).await;
        let got: f64 = s
            .iter()
            .filter(|s| s.name == "qwen2api_http_requests_total" && s.labels["surface"] == surface)
            .map(|s| s.value)
            .sum();
        if got >= want {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{surface}: fewer than {want} requests counted");
}

fn answer(text: &str) -> Reply {
    Reply::sse(qwen_sse::fast_answer(&[text]))
}

#[tokio::test]
async fn a_chat_a_streamed_message_and_a_response_are_counted_exactly() {
    let app = TestApp::with_accounts(1, &[("ADMIN_KEY", ADMIN)]).await;
    for text in ["One", "Two", "Three"] {
        app.fake.push_completion(None, answer(text));
    }
    let chat: Value = app.chat(body(MODEL, false)).await.json().await.unwrap();
    let streamed = app
        .post("/v1/messages")
        .json(&json!({"model": MODEL, "max_tokens": 100, "stream": true,
                      "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let sse = streamed.text().await.unwrap();
    assert!(sse.contains("Two"), "{sse}");
    let resp = app
        .post("/v1/responses")
        .json(&json!({"model": MODEL, "input": "Hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let response: Value = resp.json().await.unwrap();
    requests_of(&app, "chat.completions", 1.0).await;
    requests_of(&app, "messages", 1.0).await;
    let s = requests_of(&app, "responses", 1.0).await;

    let requests = "qwen2api_http_requests_total";
    let route = |surface: &str, route: &str| {
        value(
            &s,
            requests,
            &[
                ("surface", surface),
                ("route", route),
                ("model", MODEL),
                ("status", "200"),
            ],
        )
    };
    assert_eq!(route("chat.completions", "/v1/chat/completions"), Some(1.0));
    assert_eq!(route("messages", "/v1/messages"), Some(1.0));
    assert_eq!(route("responses", "/v1/responses"), Some(1.0));
    let keys: BTreeSet<Vec<String>> = label_sets(&s, requests)
        .into_iter()
        .map(|l| l.into_keys().collect())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        keys.first().unwrap(),
        &["model", "route", "status", "surface"]
    );

    // Every answered request: its whole time, its upstream's first byte, the proxy's own time.
    let per_surface =
        |name: &str, surface: &str| value(&s, name, &[("surface", surface), ("model", MODEL)]);
    for surface in ["chat.completions", "messages", "responses"] {
        for name in [
            "qwen2api_http_request_duration_seconds_count",
            "qwen2api_proxy_own_time_seconds_count",
        ] {
            assert_eq!(per_surface(name, surface), Some(1.0), "{name} {surface}");
        }
    }
    assert_eq!(
        value(
            &s,
            "qwen2api_upstream_time_to_first_byte_seconds_count",
            &[("model", MODEL)]
        ),
        Some(3.0)
    );
    // Time to first token: streams only.
    let ttft = "qwen2api_time_to_first_token_seconds_count";
    assert_eq!(per_surface(ttft, "messages"), Some(1.0));
    assert_eq!(per_surface(ttft, "chat.completions"), None);
    assert_eq!(per_surface(ttft, "responses"), None);

    assert_tokens(&s, &chat, &response, &sse);

    let accounts = |state: &str| value(&s, "qwen2api_accounts", &[("state", state)]);
    assert_eq!(accounts("active"), Some(1.0));
    assert_eq!(accounts("cooling"), Some(0.0));
    assert_eq!(accounts("disabled"), Some(0.0));
    assert!(label_sets(&s, "qwen2api_failovers_total").is_empty());
    assert!(label_sets(&s, "qwen2api_store_errors_total").is_empty());

    // Three new chats, none continued: no conversation had an earlier answer.
    assert_eq!(
        value(&s, "qwen2api_continuation_chats_total", &[("chat", "new")]),
        Some(3.0)
    );
    assert_eq!(
        value(
            &s,
            "qwen2api_continuation_chats_total",
            &[("chat", "continued")]
        ),
        None
    );

    let build = label_sets(&s, "qwen2api_build_info");
    assert_eq!(build.len(), 1);
    assert_eq!(build[0]["version"], env!("CARGO_PKG_VERSION"));
    assert!(!build[0]["commit"].is_empty());
}

/// Tokens: what the chat and the response reported, plus the stream's, under the key's id.
fn assert_tokens(s: &[Sample], chat: &Value, response: &Value, sse: &str) {
    let tokens = |direction: &str| {
        whole(
            value(
                s,
                "qwen2api_tokens_total",
                &[
                    ("direction", direction),
                    ("key", "env-1"),
                    ("account", "account_1"),
                ],
            )
            .unwrap(),
        )
    };
    let streamed = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|v| v["type"] == "message_delta")
        .map(|v| v["usage"].clone())
        .next_back()
        .unwrap();
    let n = |v: &Value| v.as_u64().unwrap();
    let usage_in = n(&chat["usage"]["prompt_tokens"])
        + n(&response["usage"]["input_tokens"])
        + n(&streamed["input_tokens"]);
    let usage_out = n(&chat["usage"]["completion_tokens"])
        + n(&response["usage"]["output_tokens"])
        + n(&streamed["output_tokens"]);
    assert!(usage_out > 0);
    assert_eq!(tokens("out"), usage_out);
    assert_eq!(tokens("in"), usage_in);
    assert_eq!(label_sets(s, "qwen2api_tokens_total").len(), 2);
}

/// A counter's value as the whole number it is.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "counters in these tests are small whole numbers"
)]
fn whole(v: f64) -> u64 {
    assert!(v.fract() == 0.0 && v >= 0.0, "{v}");
    v as u64
}

#[tokio::test]
async fn a_failover_and_a_challenge_show_with_their_cause_and_account() {
    let app = TestApp::with_accounts(2, &[("ADMIN_KEY", ADMIN)]).await;
    app.fake.push_completion(
        Some("acct1"),
        Reply::http(
            200,
            "application/json",
            qwen_sse::business_error("Bad_Request", "Internal error"),
        ),
    );
    app.fake
        .push_completion(Some("acct2"), answer("From acct2"));
    app.chat_ok(KEY).await;
    let s = requests_of(&app, "chat.completions", 1.0).await;
    assert_eq!(
        label_sets(&s, "qwen2api_failovers_total"),
        [BTreeMap::from([(
            "reason".to_owned(),
            "transient".to_owned()
        )])]
    );
    assert_eq!(
        value(&s, "qwen2api_failovers_total", &[("reason", "transient")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "qwen2api_account_cooldowns_total",
            &[("account", "account_1"), ("reason", "transient")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "qwen2api_accounts", &[("state", "cooling")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "qwen2api_accounts", &[("state", "active")]),
        Some(1.0)
    );

    // A WAF page on the account left: counted for it; no account shares none of its egress,
    // so nothing is tried after it.
    app.fake
        .push_completion(Some("acct2"), Reply::html(200, WAF_PAGE));
    let resp = app.chat(body(MODEL, false)).await;
    assert_ne!(resp.status(), 200);
    let s = requests_of(&app, "chat.completions", 2.0).await;
    assert_eq!(
        value(
            &s,
            "qwen2api_waf_challenges_total",
            &[("account", "account_2")]
        ),
        Some(1.0)
    );
    assert_eq!(label_sets(&s, "qwen2api_waf_challenges_total").len(), 1);
    assert_eq!(
        value(&s, "qwen2api_failovers_total", &[("reason", "challenge")]),
        None
    );
}

#[tokio::test]
async fn the_admin_key_is_needed_unless_metrics_are_public() {
    let app = TestApp::with_accounts(1, &[("ADMIN_KEY", ADMIN)]).await;
    assert_eq!(scrape(&app, None).await.status(), 401);
    assert_eq!(scrape(&app, Some(KEY)).await.status(), 403);
    assert_eq!(scrape(&app, Some(ADMIN)).await.status(), 200);
    let public =
        TestApp::with_accounts(1, &[("ADMIN_KEY", ADMIN), ("METRICS_PUBLIC", "true")]).await;
    let resp = scrape(&public, None).await;
    assert_eq!(resp.status(), 200);
    let s = parse(&resp.text().await.unwrap());
    assert_eq!(
        value(&s, "qwen2api_accounts", &[("state", "active")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn with_an_admin_listener_metrics_are_served_there_only() {
    let app = TestApp::with_accounts(
        1,
        &[
            ("ADMIN_KEY", ADMIN),
            ("ADMIN_LISTEN_ADDRESS", "127.0.0.1:9"),
        ],
    )
    .await;
    assert_eq!(scrape(&app, Some(ADMIN)).await.status(), 404);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = qwen2api::server::admin_router(app.state.clone());
    tokio::spawn(qwen2api::server::serve_app(
        listener,
        admin,
        std::future::pending(),
    ));
    let url = format!("http://{addr}/metrics");
    let resp = app.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app.http.get(&url).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    parse(&resp.text().await.unwrap());
}
