//! `UpstreamError`: every way a call to chat.qwen.ai can fail, classified from status, content
//! type and body, so that the proxy can decide between failing over and answering.

use std::time::Duration;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The token was rejected or has expired.
    #[error("upstream rejected the account's token: {0}")]
    Auth(String),
    /// Rate limit or quota; `retry_after` when the upstream said how long.
    #[error("upstream rate limit or quota: {detail}")]
    RateLimited {
        detail: String,
        retry_after: Option<Duration>,
    },
    /// A WAF page or captcha: the egress address is being challenged.
    #[error("upstream answered with a WAF or captcha challenge: {0}")]
    Challenge(String),
    #[error("the upstream chat is still generating a previous answer")]
    ChatInProgress,
    #[error("upstream content moderation refused the request: {0}")]
    ContentFilter(String),
    #[error("upstream resource not found: {0}")]
    NotFound(String),
    /// The upstream refused the request as malformed; another account would refuse it too.
    #[error("upstream rejected the request: {0}")]
    Rejected(String),
    /// No connection could be made (refused, DNS, TLS handshake, proxy down): nothing was
    /// sent, and the account is not at fault.
    #[error("the upstream could not be reached: {0}")]
    Unreachable(String),
    /// 5xx, connection reset, timeout, "Internal error".
    #[error("upstream failure: {0}")]
    Transient(String),
    #[error("the upstream stream ended without an answer")]
    EmptyAnswer,
    #[error("the upstream stream ended after thinking, without an answer")]
    ThinkingOnly,
    /// The account's site cannot do what was asked (e.g. media on Tongyi); an account of
    /// another site may.
    #[error("the account's site does not support this: {0}")]
    Unsupported(String),
}

impl UpstreamError {
    /// Why a sign-in failed, for logs: an auth failure there is a refused e-mail or password
    /// (the error's own wording speaks of tokens).
    pub fn sign_in_failure(&self) -> String {
        match self {
            UpstreamError::Auth(detail) => {
                format!("the e-mail or password was refused ({detail})")
            }
            other => other.to_string(),
        }
    }

    /// Whether another account (or a new chat) may succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Auth(_)
            | UpstreamError::RateLimited { .. }
            | UpstreamError::ChatInProgress
            | UpstreamError::Unreachable(_)
            | UpstreamError::Transient(_)
            | UpstreamError::EmptyAnswer
            | UpstreamError::ThinkingOnly
            | UpstreamError::Unsupported(_) => true,
            UpstreamError::Challenge(_)
            | UpstreamError::ContentFilter(_)
            | UpstreamError::NotFound(_)
            | UpstreamError::Rejected(_) => false,
        }
    }

    /// A short, stable name for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            UpstreamError::Auth(_) => "auth",
            UpstreamError::RateLimited { .. } => "rate_limited",
            UpstreamError::Challenge(_) => "challenge",
            UpstreamError::ChatInProgress => "chat_in_progress",
            UpstreamError::ContentFilter(_) => "content_filter",
            UpstreamError::NotFound(_) => "not_found",
            UpstreamError::Rejected(_) => "rejected",
            UpstreamError::Unreachable(_) => "unreachable",
            UpstreamError::Transient(_) => "transient",
            UpstreamError::EmptyAnswer => "empty_answer",
            UpstreamError::ThinkingOnly => "thinking_only",
            UpstreamError::Unsupported(_) => "unsupported_by_site",
        }
    }

    pub fn from_reqwest(err: &reqwest::Error) -> Self {
        if err.is_connect() {
            return UpstreamError::Unreachable(format!("could not connect: {err}"));
        }
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not connect"
        } else if err.is_body() || err.is_decode() {
            "connection broke while reading the answer"
        } else {
            "request failed"
        };
        // reqwest's Display may include the URL, never a header: safe to log.
        UpstreamError::Transient(format!("{what}: {err}"))
    }
}

const CHALLENGE_MARKERS: &[&str] = &[
    "aliyun_waf",
    "captcha",
    "awsc",
    "baxia",
    "punish",
    "x5sec",
    "fail_sys_user_validate",
    "rgv587_error",
    "_____tmd_____",
    "安全验证",
    "人机验证",
    "请完成验证",
];

/// Classifies a non-stream answer: an HTTP error, or a 200 whose body is JSON or HTML
/// instead of an event stream.
pub fn classify_body(status: u16, content_type: &str, body: &str) -> UpstreamError {
    let lower = body.to_lowercase();
    let html = content_type.contains("html") || lower.trim_start().starts_with('<');
    if CHALLENGE_MARKERS.iter().any(|m| lower.contains(m)) {
        return UpstreamError::Challenge(format!(
            "HTTP {status}, {}",
            if html { "HTML page" } else { "JSON" }
        ));
    }
    if html {
        return match status {
            401 => UpstreamError::Auth(format!("HTTP {status} with an HTML page")),
            _ => UpstreamError::Transient(format!("HTTP {status} with an unexpected HTML page")),
        };
    }
    let json: Option<Value> = serde_json::from_str(body).ok();
    let fields = json
        .as_ref()
        .map(ErrorFields::from_value)
        .unwrap_or_default();
    if let Some(err) = classify_fields(&fields) {
        return err;
    }
    let detail = fields.text().unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        401 | 403 => UpstreamError::Auth(detail),
        404 => UpstreamError::NotFound(detail),
        429 => UpstreamError::RateLimited {
            detail,
            retry_after: None,
        },
        s if s >= 500 => UpstreamError::Transient(detail),
        400..=499 => UpstreamError::Rejected(detail),
        _ => UpstreamError::Transient(format!("unexpected answer ({detail})")),
    }
}

/// Classifies an error event found inside the stream (`{"success":false,…}` or `{"error":…}`).
pub fn classify_event(value: &Value) -> UpstreamError {
    let fields = ErrorFields::from_value(value);
    classify_fields(&fields).unwrap_or_else(|| {
        UpstreamError::Transient(
            fields
                .text()
                .unwrap_or_else(|| "error event in stream".into()),
        )
    })
}

/// The code, message and `num` of an error body in any of the shapes the site uses.
#[derive(Debug, Default)]
struct ErrorFields {
    code: Option<String>,
    message: Option<String>,
    num: Option<f64>,
}

impl ErrorFields {
    fn from_value(v: &Value) -> Self {
        let data = v.get("data");
        let error = v.get("error").or_else(|| data.and_then(|d| d.get("error")));
        let text = |v: Option<&Value>| -> Option<String> {
            match v? {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        let code = text(data.and_then(|d| d.get("code")))
            .or_else(|| text(error.and_then(|e| e.get("code"))))
            .or_else(|| text(v.get("code")));
        let message = text(data.and_then(|d| d.get("details")))
            .or_else(|| text(error.and_then(|e| e.get("message"))))
            .or_else(|| text(error.and_then(|e| e.get("details"))))
            .or_else(|| error.and_then(Value::as_str).map(str::to_owned))
            .or_else(|| text(v.get("detail")))
            .or_else(|| text(v.get("message")));
        let num = data.and_then(|d| d.get("num")).and_then(Value::as_f64);
        Self { code, message, num }
    }

    fn text(&self) -> Option<String> {
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => Some(format!("{c}: {m}")),
            (Some(t), None) | (None, Some(t)) => Some(t.clone()),
            (None, None) => None,
        }
    }
}

fn classify_fields(f: &ErrorFields) -> Option<UpstreamError> {
    let code = f.code.as_deref().unwrap_or("").to_ascii_lowercase();
    let msg = f.message.as_deref().unwrap_or("").to_lowercase();
    let detail = f.text()?;
    let has = |needles: &[&str]| needles.iter().any(|n| msg.contains(n) || code.contains(n));
    Some(if has(&["chat is in progress"]) {
        UpstreamError::ChatInProgress
    } else if code == "ratelimited"
        || has(&[
            "quota",
            "token-limit",
            "rate limit",
            "upper limit",
            "too many requests",
        ])
    {
        let retry_after = f
            .num
            .filter(|n| *n > 0.0 && *n < 1e6)
            .map(|h| Duration::from_secs_f64(h * 3600.0));
        UpstreamError::RateLimited {
            detail,
            retry_after,
        }
    } else if has(&["data_inspection_failed", "内容安全", "inappropriate"]) {
        UpstreamError::ContentFilter(detail)
    } else if has(&[
        "unauthorized",
        "invalid token",
        "token expired",
        "please login",
        "not login",
        "invalid access token",
    ]) {
        UpstreamError::Auth(detail)
    } else if code == "not_found" || has(&["not exist", "does not exist"]) {
        UpstreamError::NotFound(detail)
    } else if has(&[
        "internal error",
        "internal_error",
        "overload",
        "temporarily unavailable",
        "timeout",
    ]) {
        UpstreamError::Transient(detail)
    } else if code == "bad_request" || code == "invalid_input" || code.contains("invalid") {
        UpstreamError::Rejected(detail)
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_failure_gets_its_class() {
        let cases: &[(u16, &str, &str, &str)] = &[
            (
                200,
                "application/json",
                r#"{"success":false,"request_id":"r","data":{"code":"Bad_Request","details":"The chat is in progress!"}}"#,
                "chat_in_progress",
            ),
            (
                200,
                "application/json",
                r#"{"success":false,"data":{"code":"RateLimited","num":2,"details":"quota exceeded"}}"#,
                "rate_limited",
            ),
            (
                200,
                "application/json",
                r#"{"error": {"code": "internal_error", "message": "Allocated quota exceeded, please increase your quota limit."}}"#,
                "rate_limited",
            ),
            (
                200,
                "application/json",
                r#"{"success":false,"data":{"code":"data_inspection_failed","details":"内容安全警告"}}"#,
                "content_filter",
            ),
            (
                200,
                "application/json",
                r#"{"ret":["FAIL_SYS_USER_VALIDATE::哎哟喂,被挤爆啦"],"success":false}"#,
                "challenge",
            ),
            (
                403,
                "text/html",
                "<html><meta name=aliyun_waf_aa content=1></html>",
                "challenge",
            ),
            (
                200,
                "text/html; charset=utf-8",
                "<!doctype html><title>x</title>",
                "transient",
            ),
            (
                401,
                "application/json",
                r#"{"detail":"Unauthorized"}"#,
                "auth",
            ),
            (403, "application/json", r#"{"detail":"Forbidden"}"#, "auth"),
            (429, "text/plain", "slow down", "rate_limited"),
            (502, "text/plain", "bad gateway", "transient"),
            (
                200,
                "application/json",
                r#"{"success":false,"data":{"code":"Bad_Request","details":"Internal error"}}"#,
                "transient",
            ),
            (
                200,
                "application/json",
                r#"{"success":false,"data":{"code":"Not_Found","details":"chat is not exist"}}"#,
                "not_found",
            ),
            (
                200,
                "application/json",
                r#"{"success":false,"data":{"code":"invalid_input","details":"thinking required"}}"#,
                "rejected",
            ),
            (
                422,
                "application/json",
                r#"{"detail":["Field 'query -> chat_id': Field required"]}"#,
                "rejected",
            ),
        ];
        for (status, ct, body, want) in cases {
            assert_eq!(classify_body(*status, ct, body).class(), *want, "{body}");
        }
    }

    #[test]
    fn rate_limit_hours_become_retry_after() {
        let e = classify_body(
            200,
            "application/json",
            r#"{"success":false,"data":{"code":"RateLimited","num":2,"details":"x"}}"#,
        );
        assert_eq!(
            e,
            UpstreamError::RateLimited {
                detail: "RateLimited: x".into(),
                retry_after: Some(Duration::from_secs(7200))
            }
        );
    }
}
