//! The typed configuration tree, read once from the environment (and `.env`) and validated at start.

mod accounts;
mod aliases;
mod lifecycle;
mod logging;
mod media;
pub mod parse;
mod secret;
mod server;
pub mod shown;
mod tongyi;
mod tools;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};

pub use accounts::{AccountCredential, AccountSpec, cookie_token, validate_proxy};
pub use aliases::{Glob, ModelAliases};
pub use lifecycle::{AuthMode, LifecycleConfig, StoreConfig};
pub use logging::{LOG_FILE_NAME, LogConfig, LogFiles, LogFormat, TraceExport, TraceProtocol};
pub use media::MediaConfig;
pub use parse::Vars;
pub use secret::{ProxyUrl, Secret, mask_url_password};
pub use server::{CorsOrigins, ServerConfig};
pub use tongyi::TongyiConfig;
pub use tools::ToolsConfig;

use parse::{bool_or, choice_or, positive_seconds_or, seconds_or, uint_or};

/// Where reasoning text goes in answers. A request header may choose another per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasoningFormat {
    /// `reasoning_content` beside `content` (the DeepSeek convention).
    Field,
    /// `<think>…</think>` at the start of `content`.
    Tags,
    /// Dropped.
    Hidden,
}

impl ReasoningFormat {
    pub const CHOICES: &[(&str, ReasoningFormat)] = &[
        ("field", Self::Field),
        ("tags", Self::Tags),
        ("hidden", Self::Hidden),
    ];

    pub fn parse(value: &str) -> Option<Self> {
        parse::lookup(Self::CHOICES, value)
    }
}

/// How web-search sources are rendered into the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchInfoMode {
    Table,
    Text,
}

/// Whether answer text may arrive cumulatively (each event repeating the text so far).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    /// Detect cumulative events and emit only what is new.
    Auto,
    /// Trust `incremental_output`: every event is new text.
    Incremental,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub keys: KeysConfig,
    pub accounts: Vec<AccountSpec>,
    pub upstream: UpstreamConfig,
    /// The Tongyi web chat (docs/upstream.md §12).
    pub tongyi: TongyiConfig,
    pub output: OutputConfig,
    pub models: ModelsConfig,
    pub pool: PoolConfig,
    pub auth_mode: AuthMode,
    pub store: StoreConfig,
    pub lifecycle: LifecycleConfig,
    /// The `.env` file watched for changes (`ENV_FILE`, default `.env`).
    pub env_file: std::path::PathBuf,
    pub server: ServerConfig,
    pub media: MediaConfig,
    pub tools: ToolsConfig,
    pub logging: LogConfig,
}

#[derive(Clone, Debug)]
pub struct KeysConfig {
    /// Keys that may call `/v1/*`.
    pub api_keys: Vec<Secret>,
    /// The admin key, when one is configured (or, for compatibility, the first API key).
    pub admin_key: Option<Secret>,
    /// True when the admin key is the first `API_KEY` because `ADMIN_KEY` is unset.
    pub admin_from_first_api_key: bool,
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub base_url: Url,
    pub web_version: String,
    pub bx_v: String,
    pub user_agent: String,
    /// Merged into every upstream request's headers; `None` removes a default header.
    pub extra_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    pub send_auth_header: bool,
    /// Outbound proxy for every account that has none of its own.
    pub proxy: Option<ProxyUrl>,
    pub connect_timeout: Duration,
    /// Until the upstream's response headers arrive.
    pub first_byte_timeout: Duration,
    /// The longest silence allowed between two upstream stream reads.
    pub idle_timeout: Duration,
    /// Delete each upstream chat after its completion (a chat kept for continuation: when
    /// its entry expires or is replaced).
    pub chat_cleanup: bool,
    /// `CONVERSATION_CONTINUATION`: continue an earlier answer's upstream chat, sending only
    /// the new turn.
    pub conversation_continuation: bool,
    /// `CONVERSATION_TTL_SECONDS`: how long an answered chat is kept for continuation.
    pub conversation_ttl: Duration,
    /// Chats kept pre-created per account, model and chat type (0: off).
    pub chat_prewarm: usize,
    pub chat_prewarm_ttl: Duration,
}

#[derive(Clone, Debug)]
pub struct OutputConfig {
    pub reasoning_format: ReasoningFormat,
    pub search_info_mode: SearchInfoMode,
    pub stream_mode: StreamMode,
    pub keepalive: Duration,
}

#[derive(Clone, Debug)]
pub struct ModelsConfig {
    pub simple_map: bool,
    pub cache_ttl: Duration,
    /// Extra model ids and patterns, and the ids they stand for.
    pub aliases: ModelAliases,
    /// `ANTHROPIC_DEFAULT_MODEL`: what Claude names other than Haiku stand for (else chosen
    /// from the model list).
    pub anthropic_default_model: Option<String>,
    /// `ANTHROPIC_SMALL_MODEL`: what Claude Haiku names stand for (else chosen from the list).
    pub anthropic_small_model: Option<String>,
}

#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// How many accounts one request may try before it gives up.
    pub retry_count: usize,
    /// First cooldown after a rate limit without a period; doubles per repeat up to the max.
    pub rate_limit_cooldown: Duration,
    pub rate_limit_cooldown_max: Duration,
    pub transient_cooldown: Duration,
    /// Consecutive transient failures before an account cools down.
    pub failure_threshold: u32,
    /// Concurrent requests per account (0: unlimited).
    pub max_inflight: usize,
    /// Least time between two requests starting on one account.
    pub min_interval: Duration,
    /// How long a request waits for a free account before a 429.
    pub wait: Duration,
    /// Same caller, same account (rendezvous hashing over usable accounts).
    pub sticky: bool,
    /// Model id → the only account ids that may serve it.
    pub model_accounts: BTreeMap<String, Vec<String>>,
}

impl PoolConfig {
    /// Whether `account` may serve `model` under `MODEL_TO_ACCOUNT_MAP`.
    pub fn may_serve(&self, account: &str, model: &str) -> bool {
        self.model_accounts
            .get(model)
            .is_none_or(|ids| ids.iter().any(|i| i == account))
    }
}

/// A bad configuration value: the message names the variable and the expected form.
#[derive(Debug, thiserror::Error)]
#[error("{var}: expected {expected}{got}")]
pub struct ConfigError {
    pub var: &'static str,
    pub expected: String,
    got: String,
}

impl ConfigError {
    pub fn invalid(var: &'static str, expected: &str, got: &str) -> Self {
        Self::invalid_owned(var, expected.to_owned(), got)
    }

    pub fn invalid_owned(var: &'static str, expected: String, got: &str) -> Self {
        let shown: String = got.chars().take(80).collect();
        Self {
            var,
            expected,
            got: format!(", got {shown:?}"),
        }
    }

    /// For values that may hold secrets: the value itself is not repeated.
    pub fn secret(var: &'static str, expected: impl Into<String>) -> Self {
        Self {
            var,
            expected: expected.into(),
            got: String::new(),
        }
    }
}

pub const DEFAULT_BASE_URL: &str = "https://chat.qwen.ai";
pub const DEFAULT_WEB_VERSION: &str = "0.2.81";
pub const DEFAULT_BX_V: &str = "2.5.36";
pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/149.0.0.0 Safari/537.36";

/// Variables the Node project reads that this version does not act on yet; a line in the log
/// says so rather than letting people believe they took effect.
const NOT_YET_SUPPORTED: &[&str] = &["CACHE_MODE"];

impl Config {
    /// Reads the process environment (after `.env` has been loaded into it).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&|name: &str| std::env::var(name).ok())
    }

    pub fn from_vars(src: &dyn Vars) -> Result<Self, ConfigError> {
        let listen = listen_addr(src)?;
        let auth_mode = lifecycle::auth_mode(src)?;
        let keys = keys(src, auth_mode)?;
        let mut accounts = accounts::from_vars(src)?;
        accounts.extend(tongyi::accounts(src)?);
        let reasoning_format = if bool_or(src, "OUTPUT_THINK", true)? {
            choice_or(
                src,
                "REASONING_FORMAT",
                ReasoningFormat::CHOICES,
                ReasoningFormat::Field,
            )?
        } else {
            ReasoningFormat::Hidden
        };
        let output = OutputConfig {
            reasoning_format,
            search_info_mode: choice_or(
                src,
                "SEARCH_INFO_MODE",
                &[
                    ("table", SearchInfoMode::Table),
                    ("text", SearchInfoMode::Text),
                ],
                SearchInfoMode::Table,
            )?,
            stream_mode: choice_or(
                src,
                "QWEN_STREAM_MODE",
                &[
                    ("auto", StreamMode::Auto),
                    ("incremental", StreamMode::Incremental),
                ],
                StreamMode::Auto,
            )?,
            keepalive: positive_seconds_or(src, "SSE_KEEPALIVE_SECONDS", 15.0)?,
        };
        let models = ModelsConfig {
            simple_map: bool_or(src, "SIMPLE_MODEL_MAP", false)?,
            cache_ttl: seconds_or(src, "MODELS_CACHE_TTL", 3600.0)?,
            aliases: aliases::aliases(src)?,
            anthropic_default_model: src.get("ANTHROPIC_DEFAULT_MODEL"),
            anthropic_small_model: src.get("ANTHROPIC_SMALL_MODEL"),
        };
        let pacing = lifecycle::pacing(src)?;
        let pool = PoolConfig {
            retry_count: uint_or(src, "RETRY_COUNT", 3usize, 1)?,
            rate_limit_cooldown: seconds_or(src, "RATE_LIMIT_COOLDOWN_SECONDS", 600.0)?,
            rate_limit_cooldown_max: pacing.rate_limit_cooldown_max,
            transient_cooldown: seconds_or(src, "TRANSIENT_COOLDOWN_SECONDS", 5.0)?,
            failure_threshold: pacing.failure_threshold,
            max_inflight: pacing.max_inflight,
            min_interval: pacing.min_interval,
            wait: pacing.wait,
            sticky: pacing.sticky,
            model_accounts: pacing.model_accounts,
        };
        Ok(Self {
            listen,
            keys,
            accounts,
            upstream: upstream(src)?,
            tongyi: tongyi::tongyi(src)?,
            output,
            models,
            pool,
            auth_mode,
            store: lifecycle::store(src)?,
            lifecycle: lifecycle::lifecycle(src)?,
            env_file: lifecycle::env_file(src),
            server: server::server(src)?,
            media: media::media(src)?,
            tools: tools::tools(src)?,
            logging: logging::logging(src)?,
        })
    }

    /// Variables that are set but have no effect in this version.
    pub fn unsupported_vars(src: &dyn Vars) -> Vec<&'static str> {
        NOT_YET_SUPPORTED
            .iter()
            .copied()
            .filter(|v| src.get(v).is_some())
            .collect()
    }
}

fn listen_addr(src: &dyn Vars) -> Result<SocketAddr, ConfigError> {
    // `LISTEN_PORT` is Qwen-2api's name.
    let (var, _) = src
        .first(&["SERVICE_PORT", "LISTEN_PORT"])
        .unwrap_or(("SERVICE_PORT", String::new()));
    let port = uint_or(src, var, 3000u16, 0)?;
    let host = src
        .get("LISTEN_ADDRESS")
        .unwrap_or_else(|| "0.0.0.0".to_owned());
    let ip: IpAddr = match host.as_str() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| {
                ConfigError::invalid("LISTEN_ADDRESS", "an IP address such as 0.0.0.0", h)
            })?,
    };
    Ok(SocketAddr::new(ip, port))
}

fn keys(src: &dyn Vars, mode: AuthMode) -> Result<KeysConfig, ConfigError> {
    // `API_MASTER_KEY` is Qwen-2api's name.
    let api_keys: Vec<Secret> = src
        .first(&["API_KEY", "API_MASTER_KEY"])
        .map(|(_, v)| parse::list(&v).into_iter().map(Secret::new).collect())
        .unwrap_or_default();
    let admin = src.get("ADMIN_KEY").map(Secret::new);
    if api_keys.is_empty() && admin.is_none() && mode == AuthMode::Keys {
        return Err(ConfigError::secret(
            "API_KEY",
            "at least one key (comma-separated) so that the API is not open to anyone; \
             set API_KEY and preferably ADMIN_KEY",
        ));
    }
    let admin_from_first_api_key = admin.is_none();
    let admin_key = admin.or_else(|| api_keys.first().cloned());
    Ok(KeysConfig {
        api_keys,
        admin_key,
        admin_from_first_api_key,
    })
}

fn upstream(src: &dyn Vars) -> Result<UpstreamConfig, ConfigError> {
    let (var, base) = src
        .first(&["QWEN_BASE_URL", "QWEN_CHAT_PROXY_URL"])
        .unwrap_or(("QWEN_BASE_URL", DEFAULT_BASE_URL.to_owned()));
    let base_url = Url::parse(base.trim_end_matches('/'))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            ConfigError::invalid(var, "an http(s) URL such as https://chat.qwen.ai", &base)
        })?;
    let proxy = match src.first(&["UPSTREAM_PROXY", "PROXY_URL"]) {
        Some((var, p)) => Some(ProxyUrl::new(accounts::validate_proxy(var, &p)?)),
        None => None,
    };
    let first_byte_timeout = positive_seconds_or(src, "UPSTREAM_FIRST_BYTE_TIMEOUT_SECONDS", 60.0)?;
    Ok(UpstreamConfig {
        base_url,
        web_version: src
            .get("QWEN_WEB_VERSION")
            .unwrap_or_else(|| DEFAULT_WEB_VERSION.to_owned()),
        bx_v: src
            .get("QWEN_BX_V")
            .unwrap_or_else(|| DEFAULT_BX_V.to_owned()),
        user_agent: src
            .get("QWEN_USER_AGENT")
            .unwrap_or_else(|| DEFAULT_USER_AGENT.to_owned()),
        extra_headers: header_overrides(src, "QWEN_EXTRA_HEADERS", r#"{"bx-ua":"…","bx-v":null}"#)?,
        send_auth_header: bool_or(src, "QWEN_SEND_AUTH_HEADER", true)?,
        proxy,
        connect_timeout: positive_seconds_or(src, "UPSTREAM_CONNECT_TIMEOUT_SECONDS", 10.0)?,
        first_byte_timeout,
        idle_timeout: positive_seconds_or(src, "UPSTREAM_IDLE_TIMEOUT_SECONDS", 300.0)?,
        chat_cleanup: bool_or(src, "CHAT_CLEANUP", true)?,
        conversation_continuation: bool_or(src, "CONVERSATION_CONTINUATION", true)?,
        conversation_ttl: positive_seconds_or(src, "CONVERSATION_TTL_SECONDS", 3600.0)?,
        chat_prewarm: uint_or(src, "CHAT_PREWARM", 0usize, 0)?,
        chat_prewarm_ttl: positive_seconds_or(src, "CHAT_PREWARM_TTL_SECONDS", 120.0)?,
    })
}

/// A header override variable (`QWEN_EXTRA_HEADERS`, `TONGYI_HEADERS_JSON`): a JSON object of
/// header names to a value (added or replacing) or null (removed). Values may be credentials
/// (cookies, bx-ua): the raw value is never echoed in an error, and each value prints as
/// `Sensitive` in `Debug`. `example` is a sample object for the error message.
pub(crate) fn header_overrides(
    src: &dyn Vars,
    var: &'static str,
    example: &str,
) -> Result<Vec<(HeaderName, Option<HeaderValue>)>, ConfigError> {
    let form = format!("a JSON object of header names to strings or null, e.g. {example}");
    let Some(raw) = src.get(var) else {
        return Ok(Vec::new());
    };
    let map: BTreeMap<String, Option<String>> =
        serde_json::from_str(&raw).map_err(|_| ConfigError::secret(var, form.clone()))?;
    map.into_iter()
        .map(|(name, value)| {
            let name =
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                    ConfigError::secret(var, format!("{form} (bad header name {name:?})"))
                })?;
            let mut value = value
                .map(|v| HeaderValue::from_str(&v))
                .transpose()
                .map_err(|_| ConfigError::secret(var, format!("{form} (bad value for {name})")))?;
            if let Some(v) = value.as_mut() {
                v.set_sensitive(true);
            }
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn src(pairs: &[(&str, &str)]) -> impl Vars + use<> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn defaults_follow_the_node_project() {
        let c = Config::from_vars(&src(&[("API_KEY", "sk-1,sk-2")])).unwrap();
        assert_eq!(c.listen, "0.0.0.0:3000".parse().unwrap());
        assert_eq!(c.upstream.base_url.as_str(), "https://chat.qwen.ai/");
        assert_eq!(c.output.reasoning_format, ReasoningFormat::Field);
        assert_eq!(c.output.search_info_mode, SearchInfoMode::Table);
        assert_eq!(c.output.keepalive, Duration::from_secs(15));
        assert_eq!(c.models.cache_ttl, Duration::from_secs(3600));
        assert_eq!(c.pool.retry_count, 3);
        assert!(c.keys.admin_from_first_api_key);
        assert!(c.keys.admin_key.as_ref().unwrap().matches("sk-1"));
        assert_eq!(c.keys.api_keys.len(), 2);
    }

    #[test]
    fn conversations_continue_for_an_hour_unless_switched_off() {
        let c = Config::from_vars(&src(&[("API_KEY", "k")])).unwrap();
        assert!(c.upstream.conversation_continuation);
        assert_eq!(c.upstream.conversation_ttl, Duration::from_secs(3600));
        let c = Config::from_vars(&src(&[
            ("API_KEY", "k"),
            ("CONVERSATION_CONTINUATION", "false"),
            ("CONVERSATION_TTL_SECONDS", "90"),
        ]))
        .unwrap();
        assert!(!c.upstream.conversation_continuation);
        assert_eq!(c.upstream.conversation_ttl, Duration::from_secs(90));
        for (var, bad) in [
            ("CONVERSATION_TTL_SECONDS", "0"),
            ("CONVERSATION_CONTINUATION", "maybe"),
        ] {
            let err = Config::from_vars(&src(&[("API_KEY", "k"), (var, bad)])).unwrap_err();
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn worker_threads_default_to_one_per_core() {
        let c = Config::from_vars(&src(&[("API_KEY", "k")])).unwrap();
        assert_eq!(c.server.worker_threads, None);
        let c = Config::from_vars(&src(&[("API_KEY", "k"), ("WORKER_THREADS", "0")])).unwrap();
        assert_eq!(c.server.worker_threads, None);
        let c = Config::from_vars(&src(&[("API_KEY", "k"), ("WORKER_THREADS", "1")])).unwrap();
        assert_eq!(c.server.worker_threads, Some(1));
        let err =
            Config::from_vars(&src(&[("API_KEY", "k"), ("WORKER_THREADS", "x")])).unwrap_err();
        assert_eq!(err.var, "WORKER_THREADS");
    }

    #[test]
    fn claude_model_overrides_are_read_as_written() {
        let c = Config::from_vars(&src(&[("API_KEY", "k")])).unwrap();
        assert_eq!(c.models.anthropic_default_model, None);
        assert_eq!(c.models.anthropic_small_model, None);
        assert!(c.models.aliases.is_empty());
        let c = Config::from_vars(&src(&[
            ("API_KEY", "k"),
            ("ANTHROPIC_DEFAULT_MODEL", " qwen3.8-max-thinking "),
            ("ANTHROPIC_SMALL_MODEL", "Not-Listed-Yet"),
            ("MODEL_ALIASES", "claude-*haiku*=qwen3.7-flash"),
        ]))
        .unwrap();
        assert_eq!(
            c.models.anthropic_default_model.as_deref(),
            Some("qwen3.8-max-thinking")
        );
        assert_eq!(
            c.models.anthropic_small_model.as_deref(),
            Some("Not-Listed-Yet")
        );
        assert_eq!(
            c.models.aliases.pattern("claude-haiku-4-5"),
            Some("qwen3.7-flash")
        );
    }

    #[test]
    fn no_key_refuses_to_start() {
        let err = Config::from_vars(&src(&[])).unwrap_err();
        assert_eq!(err.var, "API_KEY");
    }

    #[test]
    fn aliases_from_the_node_project_are_accepted() {
        let c = Config::from_vars(&src(&[
            ("API_KEY", "k"),
            ("QWEN_CHAT_PROXY_URL", "http://127.0.0.1:9/"),
            ("PROXY_URL", "socks5://127.0.0.1:1080"),
            ("OUTPUT_THINK", "no"),
        ]))
        .unwrap();
        assert_eq!(c.upstream.base_url.as_str(), "http://127.0.0.1:9/");
        assert_eq!(
            c.upstream.proxy.as_ref().map(ProxyUrl::as_str),
            Some("socks5://127.0.0.1:1080")
        );
        assert_eq!(c.output.reasoning_format, ReasoningFormat::Hidden);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("SERVICE_PORT", "http"),
            ("LISTEN_ADDRESS", "everywhere"),
            ("SEARCH_INFO_MODE", "html"),
            ("QWEN_EXTRA_HEADERS", "[1]"),
            ("MODEL_ALIASES", "gpt-4o"),
            ("RETRY_COUNT", "0"),
            ("SSE_KEEPALIVE_SECONDS", "0"),
            ("QWEN_BASE_URL", "chat.qwen.ai"),
            ("LOG_LEVEL", "loud=[[["),
        ] {
            let err = Config::from_vars(&src(&[("API_KEY", "k"), (var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn extra_headers_can_remove_defaults_and_are_not_echoed() {
        let c = Config::from_vars(&src(&[
            ("API_KEY", "k"),
            ("QWEN_EXTRA_HEADERS", r#"{"BX-UA":"abc","bx-v":null}"#),
        ]))
        .unwrap();
        assert_eq!(c.upstream.extra_headers.len(), 2);
        assert_eq!(c.upstream.extra_headers[0].0.as_str(), "bx-ua");
        assert!(c.upstream.extra_headers[1].1.is_none());
        let err = Config::from_vars(&src(&[("API_KEY", "k"), ("QWEN_EXTRA_HEADERS", "{secret")]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
