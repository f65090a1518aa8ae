//! Settings of the HTTP server itself: load shedding, shutdown, request limits, CORS, the path
//! prefix of every route, the separate admin listener and who may read `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::HeaderValue;

use super::parse::{bool_or, seconds_or, uint_or};
use super::{ConfigError, Vars};

/// Which browser origins may call `/v1` (the admin API never gets CORS headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<HeaderValue>),
    Off,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Requests in flight on `/v1` before new ones get 503 (0: no limit).
    pub max_concurrent: usize,
    /// How long in-flight requests may run on after a shutdown signal.
    pub shutdown_grace: Duration,
    pub max_body_bytes: usize,
    pub max_messages: usize,
    /// How long a stored response is kept for `previous_response_id` and
    /// `GET /v1/responses/{id}` (`RESPONSES_TTL_HOURS`).
    pub responses_ttl: Duration,
    pub cors: CorsOrigins,
    /// When set, the admin API is served only here.
    pub admin_listen: Option<SocketAddr>,
    /// Event loops serving client requests (`WORKER_THREADS`; `None`: one per CPU core). Read
    /// at start.
    pub worker_threads: Option<usize>,
    /// `API_PREFIX`: every route is served under this path (`/qwen`) and not at the bare path;
    /// empty for none. Starts with `/` and never ends with one.
    pub api_prefix: String,
    /// `METRICS_PUBLIC`: `/metrics` answers without the admin key (wherever it is served: on
    /// the admin listener when there is one, else on the main one).
    pub metrics_public: bool,
}

pub fn server(src: &dyn Vars) -> Result<ServerConfig, ConfigError> {
    let mb = uint_or(src, "MAX_BODY_MB", 64usize, 1)?;
    Ok(ServerConfig {
        max_concurrent: uint_or(src, "MAX_CONCURRENT_REQUESTS", 0usize, 0)?,
        shutdown_grace: seconds_or(src, "SHUTDOWN_GRACE_SECONDS", 30.0)?,
        max_body_bytes: mb.saturating_mul(1024 * 1024),
        max_messages: uint_or(src, "MAX_MESSAGES", 2000usize, 1)?,
        responses_ttl: Duration::from_secs(
            uint_or(src, "RESPONSES_TTL_HOURS", 72u64, 1)?.saturating_mul(3600),
        ),
        cors: cors(src)?,
        worker_threads: match uint_or(src, "WORKER_THREADS", 0usize, 0)? {
            0 => None,
            n => Some(n),
        },
        api_prefix: api_prefix(src)?,
        metrics_public: bool_or(src, "METRICS_PUBLIC", false)?,
        admin_listen: match src.get("ADMIN_LISTEN_ADDRESS") {
            Some(raw) => Some(raw.parse().map_err(|_| {
                ConfigError::invalid(
                    "ADMIN_LISTEN_ADDRESS",
                    "an address with a port, e.g. 127.0.0.1:3001",
                    &raw,
                )
            })?),
            None => None,
        },
    })
}

/// `API_PREFIX`: `/` and one or more segments of letters, digits and `-._~`, separated by
/// single slashes; a trailing slash is dropped and `/` alone means no prefix.
fn api_prefix(src: &dyn Vars) -> Result<String, ConfigError> {
    let Some(raw) = src.get("API_PREFIX").filter(|p| p != "/") else {
        return Ok(String::new());
    };
    let trimmed = raw.strip_suffix('/').unwrap_or(&raw);
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Err(bad_prefix(&raw));
    };
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    };
    if rest.split('/').all(segment_ok) {
        Ok(trimmed.to_owned())
    } else {
        Err(bad_prefix(&raw))
    }
}

fn bad_prefix(raw: &str) -> ConfigError {
    ConfigError::invalid(
        "API_PREFIX",
        "a path such as /qwen (letters, digits and -._~ between single slashes)",
        raw,
    )
}

fn cors(src: &dyn Vars) -> Result<CorsOrigins, ConfigError> {
    let Some(raw) = src.get("CORS_ALLOW_ORIGINS") else {
        return Ok(CorsOrigins::Any);
    };
    match raw.as_str() {
        "*" => Ok(CorsOrigins::Any),
        "none" | "off" | "false" => Ok(CorsOrigins::Off),
        list => {
            super::parse::list(list)
                .into_iter()
                .map(|o| {
                    let ok = (o.starts_with("http://") || o.starts_with("https://"))
                        && !o.ends_with('/');
                    ok.then(|| HeaderValue::from_str(&o).ok()).flatten().ok_or_else(|| {
                    ConfigError::invalid(
                        "CORS_ALLOW_ORIGINS",
                        "*, none, or comma-separated origins such as https://chat.example.com",
                        &o,
                    )
                })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(CorsOrigins::List)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(value: &'static str) -> Result<String, ConfigError> {
        api_prefix(&move |name: &str| (name == "API_PREFIX").then(|| value.to_owned()))
    }

    #[test]
    fn api_prefix_is_normalised() {
        assert_eq!(prefix("").unwrap(), "");
        assert_eq!(prefix("/").unwrap(), "");
        assert_eq!(prefix("/qwen").unwrap(), "/qwen");
        assert_eq!(prefix("/qwen/").unwrap(), "/qwen");
        assert_eq!(prefix("/a/b-c_d.e~f").unwrap(), "/a/b-c_d.e~f");
    }

    #[test]
    fn a_bad_api_prefix_names_the_variable() {
        for bad in [
            "qwen", "//", "/a//b", "/a/../b", "/.", "/q?x=1", "/q w", "/{id}", "/*x",
        ] {
            let err = prefix(bad).unwrap_err();
            assert_eq!(err.var, "API_PREFIX", "{bad}");
        }
    }
}
