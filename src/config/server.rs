//! Settings of the HTTP server itself: load shedding, shutdown, request limits, CORS and the
//! separate admin listener.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::HeaderValue;

use super::parse::{seconds_or, uint_or};
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
    pub cors: CorsOrigins,
    /// When set, the admin API is served only here.
    pub admin_listen: Option<SocketAddr>,
    /// Event loops serving client requests (`WORKER_THREADS`; `None`: one per CPU core). Read
    /// at start.
    pub worker_threads: Option<usize>,
}

pub fn server(src: &dyn Vars) -> Result<ServerConfig, ConfigError> {
    let mb = uint_or(src, "MAX_BODY_MB", 64usize, 1)?;
    Ok(ServerConfig {
        max_concurrent: uint_or(src, "MAX_CONCURRENT_REQUESTS", 0usize, 0)?,
        shutdown_grace: seconds_or(src, "SHUTDOWN_GRACE_SECONDS", 30.0)?,
        max_body_bytes: mb.saturating_mul(1024 * 1024),
        max_messages: uint_or(src, "MAX_MESSAGES", 2000usize, 1)?,
        cors: cors(src)?,
        worker_threads: match uint_or(src, "WORKER_THREADS", 0usize, 0)? {
            0 => None,
            n => Some(n),
        },
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
