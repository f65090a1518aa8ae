//! `AppError`: every way a request to our API can fail, each with one status, rendered as the
//! OpenAI error envelope (and as the same envelope inside a stream that has already begun), or
//! as Anthropic's for requests on its surface.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::conversation::InvalidRequest;
use crate::keys::limits::LimitError;
use crate::openai::{ErrorBody, ErrorEnvelope};
use crate::proxy::{PrepareError, ProxyError};
use crate::telemetry::LoggedError;
use crate::upstream::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{}", .0.message)]
    Invalid(InvalidRequest),
    #[error("invalid JSON body: {message}")]
    BadJson {
        message: String,
        param: Option<String>,
    },
    #[error("the request body is larger than the limit")]
    TooLarge,
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("this route needs the admin key")]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    BadRequest { message: String, code: &'static str },
    #[error("sign-in failed: {}", .0.sign_in_failure())]
    SignIn(UpstreamError),
    #[error("storage failed: {0}")]
    Store(String),
    #[error("too many requests in flight")]
    Overloaded,
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A generation answered, but without the image or video asked for.
    #[error("{0}")]
    NoMedia(String),
    /// A runtime key's limit refuses the request.
    #[error(transparent)]
    KeyLimit(#[from] LimitError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

impl From<PrepareError> for AppError {
    fn from(e: PrepareError) -> Self {
        match e {
            PrepareError::ModelNotFound(m) => AppError::ModelNotFound(m),
            PrepareError::Invalid(inv) => AppError::Invalid(inv),
        }
    }
}

/// An error as it is shown to clients. Every error response carries it as an extension, so a
/// surface with its own envelope (Anthropic's) can write it again.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Rendered {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        Self {
            status,
            kind,
            code: Some(code),
            message,
            param: None,
            retry_after: None,
        }
    }

    fn retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }

    /// The `{"error":{…}}` JSON.
    pub fn body(&self) -> String {
        let env = ErrorEnvelope {
            error: ErrorBody {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        serde_json::to_string(&env).expect("error envelopes always serialize")
    }

    /// Anthropic's status and error type: 529 `overloaded_error` when no account can take the
    /// request (none usable, a WAF challenge, load shed), other server-side failures 500
    /// `api_error`.
    pub fn anthropic_status(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        let overloaded = matches!(
            self.code,
            Some("server_overloaded" | "no_available_account" | "upstream_challenge")
        );
        match self.status {
            S::UNAUTHORIZED => (S::UNAUTHORIZED, "authentication_error"),
            S::FORBIDDEN => (S::FORBIDDEN, "permission_error"),
            S::NOT_FOUND => (S::NOT_FOUND, "not_found_error"),
            S::PAYLOAD_TOO_LARGE => (S::PAYLOAD_TOO_LARGE, "request_too_large"),
            S::TOO_MANY_REQUESTS => (S::TOO_MANY_REQUESTS, "rate_limit_error"),
            _ if overloaded => (
                S::from_u16(529).expect("529 is a valid status"),
                "overloaded_error",
            ),
            s if s.is_server_error() => (S::INTERNAL_SERVER_ERROR, "api_error"),
            s => (s, "invalid_request_error"),
        }
    }

    /// Anthropic's `{"type":"error","error":{"type","message"}}` JSON.
    pub fn anthropic_body(&self) -> String {
        let env = crate::anthropic::ErrorEnvelope {
            kind: "error",
            error: crate::anthropic::ErrorBody {
                kind: self.anthropic_status().1,
                message: &self.message,
            },
        };
        serde_json::to_string(&env).expect("error envelopes always serialize")
    }
}

impl AppError {
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per variant, matched exhaustively: the whole table in one place"
    )]
    pub fn render(&self) -> Rendered {
        use StatusCode as S;
        match self {
            AppError::Invalid(inv) => Rendered {
                param: inv.param.clone(),
                ..Rendered::new(
                    S::BAD_REQUEST,
                    "invalid_request_error",
                    inv.code,
                    inv.message.clone(),
                )
            },
            AppError::BadJson { param, .. } => Rendered {
                param: param.clone(),
                ..Rendered::new(
                    S::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_json",
                    self.to_string(),
                )
            },
            AppError::TooLarge => Rendered::new(
                S::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "body_too_large",
                self.to_string(),
            ),
            AppError::UnsupportedMediaType => Rendered::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "unsupported_media_type",
                self.to_string(),
            ),
            AppError::Unauthorized => Rendered::new(
                S::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
                "Missing or invalid API key. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`."
                    .to_owned(),
            ),
            AppError::Forbidden => Rendered::new(
                S::FORBIDDEN,
                "permission_error",
                "admin_key_required",
                "This route needs the admin key (ADMIN_KEY).".to_owned(),
            ),
            AppError::Conflict(m) => {
                Rendered::new(S::CONFLICT, "invalid_request_error", "conflict", m.clone())
            }
            AppError::NotFound(m) => Rendered::new(
                S::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                m.clone(),
            ),
            AppError::BadRequest { message, code } => Rendered::new(
                S::BAD_REQUEST,
                "invalid_request_error",
                code,
                message.clone(),
            ),
            AppError::SignIn(UpstreamError::Auth(_)) => Rendered::new(
                S::BAD_REQUEST,
                "invalid_request_error",
                "sign_in_failed",
                "Qwen refused the email or password.".to_owned(),
            ),
            AppError::SignIn(e) => render_upstream(e, None),
            AppError::Store(_) => Rendered::new(
                S::INTERNAL_SERVER_ERROR,
                "server_error",
                "storage_error",
                "The change could not be stored; nothing was changed.".to_owned(),
            ),
            AppError::Overloaded => Rendered::new(
                S::SERVICE_UNAVAILABLE,
                "server_error",
                "server_overloaded",
                "The server is at its limit of concurrent requests; retry shortly.".to_owned(),
            )
            .retry_after(Duration::from_secs(1)),
            AppError::ModelNotFound(_) => Rendered {
                param: Some("model".to_owned()),
                ..Rendered::new(
                    S::NOT_FOUND,
                    "invalid_request_error",
                    "model_not_found",
                    self.to_string(),
                )
            },
            AppError::RouteNotFound(_) => Rendered::new(
                S::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                self.to_string(),
            ),
            AppError::MethodNotAllowed => Rendered::new(
                S::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method_not_allowed",
                self.to_string(),
            ),
            AppError::NoMedia(m) => Rendered::new(
                S::BAD_GATEWAY,
                "server_error",
                "no_media_in_answer",
                m.clone(),
            ),
            AppError::KeyLimit(e) => render_limit(e),
            AppError::Proxy(p) => render_proxy(p),
        }
    }
}

/// 403 `permission_error` for what waiting does not change, 429 with `Retry-After` otherwise.
fn render_limit(e: &LimitError) -> Rendered {
    use StatusCode as S;
    let (status, kind, code) = match e {
        LimitError::Expired(_) => (S::FORBIDDEN, "permission_error", "key_expired"),
        LimitError::ModelNotAllowed(..) => (S::FORBIDDEN, "permission_error", "model_not_allowed"),
        LimitError::RequestsPerMinute { .. } => (
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "requests_per_minute_exceeded",
        ),
        LimitError::ConcurrentRequests { .. } => (
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "concurrent_requests_exceeded",
        ),
        LimitError::TokensPerDay { .. } => (
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "tokens_per_day_exceeded",
        ),
    };
    let mut r = Rendered::new(status, kind, code, e.to_string());
    if matches!(e, LimitError::ModelNotAllowed(..)) {
        r.param = Some("model".to_owned());
    }
    if let Some(d) = e.retry_after() {
        r = r.retry_after(d);
    }
    r
}

fn render_proxy(err: &ProxyError) -> Rendered {
    use StatusCode as S;
    match err {
        ProxyError::AllCooling { retry_after } => Rendered::new(
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limit_exceeded",
            "Every Qwen account is rate-limited or cooling down; retry later.".to_owned(),
        )
        .retry_after(*retry_after),
        ProxyError::PassthroughRejected => Rendered::new(
            S::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "chat.qwen.ai rejected the token sent as the bearer key (passthrough mode).".to_owned(),
        ),
        ProxyError::AllBusy { retry_after } => Rendered::new(
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limit_exceeded",
            "Every Qwen account is busy with other requests; retry shortly.".to_owned(),
        )
        .retry_after(*retry_after),
        ProxyError::Failed {
            challenged: true, ..
        } => Rendered::new(
            S::SERVICE_UNAVAILABLE,
            "server_error",
            "upstream_challenge",
            "chat.qwen.ai answered with a WAF/captcha challenge; the server's address is being \
             verified. Retry later or use another egress proxy."
                .to_owned(),
        )
        .retry_after(ProxyError::retry_after_challenge()),
        ProxyError::NoAccount
        | ProxyError::Failed {
            last: UpstreamError::Auth(_),
            usable_accounts: 0,
            ..
        } => no_account(),
        ProxyError::Failed {
            last, retry_after, ..
        } => render_upstream(last, *retry_after),
        ProxyError::MidStream(e) | ProxyError::Call(e) => render_upstream(e, None),
        ProxyError::InvalidToolArguments => Rendered::new(
            S::BAD_GATEWAY,
            "server_error",
            "invalid_tool_arguments",
            "The model's call of a strict tool did not fit the tool's parameters, also when \
             asked again."
                .to_owned(),
        ),
        ProxyError::FormatNotFollowed(problem) => Rendered::new(
            S::BAD_GATEWAY,
            "server_error",
            "format_not_followed",
            format!(
                "The model's answer did not follow the requested JSON format (response_format or \
                 text.format), also when asked again: {problem}"
            ),
        ),
        ProxyError::ToolCallMissing => Rendered::new(
            S::BAD_GATEWAY,
            "server_error",
            "tool_call_missing",
            "A tool call was required (tool_choice), but the model answered without one, also \
             when asked again."
                .to_owned(),
        ),
    }
}

/// The client's view of an upstream failure. The upstream's own wording is logged, not echoed:
/// it can name internal addresses.
fn render_upstream(e: &UpstreamError, retry_after: Option<Duration>) -> Rendered {
    use StatusCode as S;
    let (status, kind, message) = match e {
        UpstreamError::RateLimited { .. } => (
            S::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "Qwen's rate limit or quota was reached.",
        ),
        UpstreamError::ContentFilter(_) => (
            S::BAD_REQUEST,
            "invalid_request_error",
            "The request was refused by Qwen's content moderation.",
        ),
        UpstreamError::Auth(_) => (
            S::BAD_GATEWAY,
            "server_error",
            "The upstream rejected the account's token.",
        ),
        UpstreamError::Challenge(_) => (
            S::SERVICE_UNAVAILABLE,
            "server_error",
            "chat.qwen.ai answered with a WAF/captcha challenge.",
        ),
        UpstreamError::EmptyAnswer => (
            S::BAD_GATEWAY,
            "server_error",
            "The upstream ended without an answer.",
        ),
        UpstreamError::ThinkingOnly => (
            S::BAD_GATEWAY,
            "server_error",
            "The upstream stopped after thinking, without an answer.",
        ),
        UpstreamError::NotFound(_) => (
            S::BAD_GATEWAY,
            "server_error",
            "The upstream could not find the chat.",
        ),
        UpstreamError::Rejected(_) => (
            S::BAD_GATEWAY,
            "server_error",
            "The upstream refused the request.",
        ),
        UpstreamError::Unreachable(_) => (
            S::BAD_GATEWAY,
            "server_error",
            "The upstream (QWEN_BASE_URL) could not be reached: the connection failed. Check the \
             server's network, its outbound proxy and QWEN_BASE_URL; no account is at fault.",
        ),
        UpstreamError::ChatInProgress | UpstreamError::Transient(_) => (
            S::BAD_GATEWAY,
            "server_error",
            "The upstream failed (error, timeout or broken connection); retry later.",
        ),
        UpstreamError::Unsupported(_) => (
            S::BAD_REQUEST,
            "invalid_request_error",
            "No account able to serve this request is available: the web chat of the accounts \
             left does not support it (e.g. images, files or media generation on a Tongyi \
             account).",
        ),
    };
    let mut r = Rendered::new(status, kind, upstream_code(e), message.to_owned());
    if let Some(d) = retry_after.filter(|_| status == S::TOO_MANY_REQUESTS) {
        r = r.retry_after(d);
    } else if status == S::TOO_MANY_REQUESTS {
        r = r.retry_after(Duration::from_secs(60));
    }
    r
}

fn no_account() -> Rendered {
    Rendered::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "no_available_account",
        "No Qwen account is usable: every configured account failed to sign in or was \
         rejected by the upstream."
            .to_owned(),
    )
}

fn upstream_code(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Auth(_) => "upstream_auth_failed",
        UpstreamError::RateLimited { .. } => "rate_limit_exceeded",
        UpstreamError::Challenge(_) => "upstream_challenge",
        UpstreamError::ContentFilter(_) => "content_filter",
        UpstreamError::EmptyAnswer | UpstreamError::ThinkingOnly => "upstream_empty_answer",
        UpstreamError::Unreachable(_) => "upstream_unreachable",
        UpstreamError::ChatInProgress | UpstreamError::Transient(_) => "upstream_error",
        UpstreamError::NotFound(_) => "upstream_not_found",
        UpstreamError::Rejected(_) => "upstream_rejected",
        UpstreamError::Unsupported(_) => "unsupported_by_site",
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let r = self.render();
        let mut resp = (
            r.status,
            [(header::CONTENT_TYPE, "application/json")],
            r.body(),
        )
            .into_response();
        if let Some(d) = r.retry_after {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        // Carried to the logging middleware, which logs each error once.
        resp.extensions_mut().insert(LoggedError(format!("{self}")));
        resp.extensions_mut().insert(r);
        resp
    }
}
