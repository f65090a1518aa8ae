//! The Tongyi web chat as configured: its endpoint, headers and body overrides, its models,
//! and its accounts (`CN_ACCOUNT_<n>_COOKIE` / `CN_ACCOUNT_<n>_XSRF_TOKEN`, `TONGYI_ACCOUNTS`).
//! Every constant of the site is a setting (docs/upstream.md §13.5).

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::accounts::validate_proxy;
use super::{AccountCredential, AccountSpec, ConfigError, ProxyUrl, Secret, Vars};

pub const DEFAULT_BASE_URL: &str = "https://api.tongyi.com";
pub const DEFAULT_CONVERSATION_PATH: &str = "/dialog/conversation";
pub const DEFAULT_DELETE_PATH: &str = "/dialog/session/delete";
pub const DEFAULT_ORIGIN: &str = "https://www.tongyi.com";
pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) \
    AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// The site publishes no model list: these are the ids its 2025 page sent.
pub const DEFAULT_MODELS: &str = "qwen-max,qwen-plus,qwen-turbo";

/// The highest `<n>` of `CN_ACCOUNT_<n>_COOKIE` that is looked at.
const MAX_NUMBERED: usize = 100;

#[derive(Clone, Debug)]
pub struct TongyiConfig {
    pub base_url: Url,
    pub conversation_path: String,
    pub delete_path: String,
    /// `Origin`, and `Referer` with a trailing `/`.
    pub origin: String,
    pub user_agent: String,
    /// `TONGYI_HEADERS_JSON`: merged over the default headers; `None` removes one.
    pub headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// `TONGYI_BODY_JSON`: top-level fields set over the built body (`null` removes one).
    pub body: Map<String, Value>,
    /// The model ids the site serves (`TONGYI_MODELS`, or Qwen-2api's `SUPPORTED_MODELS`).
    pub models: Vec<String>,
    /// The list was configured (else it is listed only while a Tongyi account exists).
    pub models_configured: bool,
}

pub fn tongyi(src: &dyn Vars) -> Result<TongyiConfig, ConfigError> {
    let base = src
        .get("TONGYI_BASE_URL")
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    let base_url = Url::parse(base.trim_end_matches('/'))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            ConfigError::invalid(
                "TONGYI_BASE_URL",
                "an http(s) URL such as https://api.tongyi.com",
                &base,
            )
        })?;
    let path = |var: &'static str, default: &str| -> Result<String, ConfigError> {
        let p = src.get(var).unwrap_or_else(|| default.to_owned());
        if p.starts_with('/') {
            Ok(p)
        } else {
            Err(ConfigError::invalid(var, "a path starting with /", &p))
        }
    };
    let configured = src.first(&["TONGYI_MODELS", "SUPPORTED_MODELS"]);
    let models_configured = configured.is_some();
    let models = configured.map_or_else(|| DEFAULT_MODELS.to_owned(), |(_, v)| v);
    Ok(TongyiConfig {
        base_url,
        conversation_path: path("TONGYI_CONVERSATION_PATH", DEFAULT_CONVERSATION_PATH)?,
        delete_path: path("TONGYI_DELETE_PATH", DEFAULT_DELETE_PATH)?,
        origin: src
            .get("TONGYI_ORIGIN")
            .unwrap_or_else(|| DEFAULT_ORIGIN.to_owned())
            .trim_end_matches('/')
            .to_owned(),
        user_agent: src
            .get("TONGYI_USER_AGENT")
            .unwrap_or_else(|| DEFAULT_USER_AGENT.to_owned()),
        headers: super::header_overrides(
            src,
            "TONGYI_HEADERS_JSON",
            r#"{"x-platform":"pc_tongyi"}"#,
        )?,
        body: body(src)?,
        models: super::parse::list(&models),
        models_configured,
    })
}

fn body(src: &dyn Vars) -> Result<Map<String, Value>, ConfigError> {
    const VAR: &str = "TONGYI_BODY_JSON";
    let Some(raw) = src.get(VAR) else {
        return Ok(Map::new());
    };
    match serde_json::from_str(&raw) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ConfigError::secret(
            VAR,
            r#"a JSON object of body fields, e.g. {"sessionType":"text_chat"}"#,
        )),
    }
}

/// The id of the Tongyi account numbered `n` (`CN_ACCOUNT_<n>_…`; Qwen-2api's
/// `MODEL_TO_ACCOUNT_MAP` names accounts by this number).
pub fn account_id(n: usize) -> String {
    format!("tongyi_{n}")
}

/// `CN_ACCOUNT_<n>_COOKIE` with `CN_ACCOUNT_<n>_XSRF_TOKEN` (n = 1…100, gaps allowed), then
/// each entry of `TONGYI_ACCOUNTS`, numbered on after the highest `n`.
pub fn accounts(src: &dyn Vars) -> Result<Vec<AccountSpec>, ConfigError> {
    let mut out = Vec::new();
    let mut last = 0;
    for n in 1..=MAX_NUMBERED {
        let cookie = src.get(&format!("CN_ACCOUNT_{n}_COOKIE"));
        let xsrf = src.get(&format!("CN_ACCOUNT_{n}_XSRF_TOKEN"));
        match (cookie, xsrf) {
            (Some(cookie), Some(xsrf)) => {
                out.push(spec(n, cookie, xsrf, None));
                last = n;
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError::secret(
                    "CN_ACCOUNT_<n>_COOKIE",
                    format!(
                        "CN_ACCOUNT_{n}_COOKIE and CN_ACCOUNT_{n}_XSRF_TOKEN set together (one \
                         of them is missing)"
                    ),
                ));
            }
        }
    }
    if let Some(raw) = src.get("TONGYI_ACCOUNTS") {
        for entry in super::parse::list(&raw) {
            last += 1;
            out.push(listed_account(last, &entry)?);
        }
    }
    Ok(out)
}

/// One `TONGYI_ACCOUNTS` entry: `xsrf:cookie`, optionally followed by `|proxy`. Entries are
/// separated by commas, which a `Cookie` header value cannot hold (RFC 6265 §4.2.1); a `|`
/// can, so only a suffix that is a proxy URL is split off.
fn listed_account(n: usize, entry: &str) -> Result<AccountSpec, ConfigError> {
    const FORM: &str = "comma-separated xsrf:cookie entries, each optionally followed by |proxy \
                        (e.g. 1b2c…:cna=x; tongyi_sso_ticket=y|socks5://127.0.0.1:1080)";
    let Some((xsrf, rest)) = entry.split_once(':') else {
        return Err(ConfigError::secret("TONGYI_ACCOUNTS", FORM));
    };
    let (cookie, proxy) = match rest.rsplit_once('|') {
        Some((cookie, proxy)) if proxy.contains("://") => (
            cookie,
            Some(ProxyUrl::new(validate_proxy("TONGYI_ACCOUNTS", proxy)?)),
        ),
        _ => (rest, None),
    };
    let (xsrf, cookie) = (xsrf.trim(), cookie.trim());
    if xsrf.is_empty() || cookie.is_empty() || !cookie.contains('=') || xsrf.contains('=') {
        return Err(ConfigError::secret("TONGYI_ACCOUNTS", FORM));
    }
    Ok(spec(n, cookie.to_owned(), xsrf.to_owned(), proxy))
}

fn spec(n: usize, cookie: String, xsrf: String, proxy: Option<ProxyUrl>) -> AccountSpec {
    AccountSpec {
        id: account_id(n),
        credential: AccountCredential::Tongyi {
            cookie: Secret::new(cookie),
            xsrf: Secret::new(xsrf),
        },
        proxy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::src;

    #[test]
    fn numbered_then_listed_accounts() {
        let got = accounts(&src(&[
            ("CN_ACCOUNT_1_COOKIE", "a=1; b=2"),
            ("CN_ACCOUNT_1_XSRF_TOKEN", "x1"),
            ("CN_ACCOUNT_3_COOKIE", "c=3"),
            ("CN_ACCOUNT_3_XSRF_TOKEN", "x3"),
            (
                "TONGYI_ACCOUNTS",
                "x4:d=4; e=a|b, x5:f=5|socks5://127.0.0.1:1080",
            ),
        ]))
        .unwrap();
        let ids: Vec<&str> = got.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["tongyi_1", "tongyi_3", "tongyi_4", "tongyi_5"]);
        let AccountCredential::Tongyi { cookie, xsrf } = &got[2].credential else {
            panic!("a Tongyi account");
        };
        assert_eq!((cookie.expose(), xsrf.expose()), ("d=4; e=a|b", "x4"));
        assert!(got[2].proxy.is_none());
        assert_eq!(
            got[3].proxy.as_ref().map(ProxyUrl::as_str),
            Some("socks5://127.0.0.1:1080")
        );
        assert!(
            !format!("{got:?}").contains("d=4"),
            "cookies stay out of Debug"
        );
    }

    #[test]
    fn half_an_account_or_a_bad_entry_names_the_variable() {
        let err = accounts(&src(&[("CN_ACCOUNT_2_COOKIE", "a=1")])).unwrap_err();
        assert_eq!(err.var, "CN_ACCOUNT_<n>_COOKIE");
        assert!(err.expected.contains("CN_ACCOUNT_2_XSRF_TOKEN"));
        let err = accounts(&src(&[("TONGYI_ACCOUNTS", "no-colon")])).unwrap_err();
        assert_eq!(err.var, "TONGYI_ACCOUNTS");
    }

    #[test]
    fn overrides_are_read_and_bad_ones_refused() {
        let c = tongyi(&src(&[
            ("SUPPORTED_MODELS", "qwen-max, qwen-long"),
            (
                "TONGYI_HEADERS_JSON",
                r#"{"X-Platform":"pc_qianwen","x-a":null}"#,
            ),
            ("TONGYI_BODY_JSON", r#"{"sessionType":"chat"}"#),
        ]))
        .unwrap();
        assert_eq!(c.models, ["qwen-max", "qwen-long"]);
        let headers: Vec<(&str, Option<&str>)> = c
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_ref().and_then(|v| v.to_str().ok())))
            .collect();
        assert_eq!(
            headers,
            [("x-platform", Some("pc_qianwen")), ("x-a", None)],
            "names lower-cased, null kept as a removal"
        );
        assert!(
            !format!("{c:?}").contains("pc_qianwen"),
            "header overrides stay out of Debug"
        );
        assert_eq!(c.body["sessionType"], "chat");
        assert_eq!(c.base_url.as_str(), "https://api.tongyi.com/");
        for (var, bad) in [
            ("TONGYI_BODY_JSON", "[1]"),
            ("TONGYI_HEADERS_JSON", "{"),
            ("TONGYI_BASE_URL", "api.tongyi.com"),
            ("TONGYI_CONVERSATION_PATH", "dialog"),
        ] {
            assert_eq!(tongyi(&src(&[(var, bad)])).unwrap_err().var, var);
        }
    }
}
