//! The browser-like header set of docs/upstream.md §3.1, built per request from configuration.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::UpstreamConfig;
pub use crate::upstream::Credentials;

/// Which call the headers are for: the site varies `accept` and `referer` by endpoint.
#[derive(Clone, Copy, Debug)]
pub enum CallKind<'a> {
    Json,
    Completion { chat_id: &'a str },
}

/// The header values that are the same on every call, checked and converted once per client
/// (a value that is not a valid header, e.g. a bad `USER_AGENT`, is left out, as before).
#[derive(Debug)]
pub struct Template {
    /// `user-agent` … `version`, sent before the per-call `timezone` and `x-request-id`.
    head: Vec<(HeaderName, HeaderValue)>,
    /// `origin` and the `sec-fetch-*` trio, after them.
    tail: Vec<(HeaderName, HeaderValue)>,
    json_referer: Option<HeaderValue>,
    /// `<origin>/c/`, completed with the chat id per call.
    chat_referer: String,
}

impl Template {
    pub fn new(cfg: &UpstreamConfig) -> Self {
        let origin = cfg.base_url.origin().ascii_serialization();
        let pairs = |list: &[(&'static str, &str)]| {
            list.iter()
                .filter_map(|(name, value)| {
                    let v = HeaderValue::from_str(value).ok()?;
                    Some((HeaderName::from_static(name), v))
                })
                .collect()
        };
        Self {
            head: pairs(&[
                ("user-agent", &cfg.user_agent),
                (
                    "sec-ch-ua",
                    r#""Google Chrome";v="149", "Chromium";v="149", "Not)A;Brand";v="24""#,
                ),
                ("sec-ch-ua-mobile", "?0"),
                ("sec-ch-ua-platform", "\"Windows\""),
                ("accept-language", "zh-CN,zh;q=0.9,en;q=0.8"),
                ("content-type", "application/json"),
                ("bx-v", &cfg.bx_v),
                ("source", "web"),
                ("version", &cfg.web_version),
            ]),
            tail: pairs(&[
                ("origin", &origin),
                ("sec-fetch-dest", "empty"),
                ("sec-fetch-mode", "cors"),
                ("sec-fetch-site", "same-origin"),
            ]),
            json_referer: HeaderValue::from_str(&format!("{origin}/")).ok(),
            chat_referer: format!("{origin}/c/"),
        }
    }
}

pub fn build(
    template: &Template,
    cfg: &UpstreamConfig,
    creds: Option<&Credentials>,
    kind: CallKind<'_>,
) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(24);
    for (name, value) in &template.head {
        h.insert(name.clone(), value.clone());
    }
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("timezone", &timezone());
    put("x-request-id", &uuid::Uuid::new_v4().to_string());
    for (name, value) in &template.tail {
        h.insert(name.clone(), value.clone());
    }
    match kind {
        CallKind::Json => {
            h.insert(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("application/json, text/plain, */*"),
            );
            if let Some(v) = &template.json_referer {
                h.insert(reqwest::header::REFERER, v.clone());
            }
        }
        CallKind::Completion { chat_id } => {
            h.insert(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
            let referer = [template.chat_referer.as_str(), chat_id].concat();
            if let Ok(v) = HeaderValue::from_str(&referer) {
                h.insert(reqwest::header::REFERER, v);
            }
            h.insert(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            );
        }
    }
    if let Some(creds) = creds {
        let token = creds.token.expose();
        let mut secret = |name: HeaderName, value: &str| {
            if let Ok(mut v) = HeaderValue::from_str(value) {
                v.set_sensitive(true);
                h.insert(name, v);
            }
        };
        if cfg.send_auth_header {
            secret(reqwest::header::AUTHORIZATION, &format!("Bearer {token}"));
        }
        secret(
            reqwest::header::COOKIE,
            &cookie_header(
                token,
                creds.cookies.as_ref().map(crate::config::Secret::expose),
            ),
        );
    }
    for (name, value) in &cfg.extra_headers {
        match value {
            Some(v) => {
                h.insert(name.clone(), v.clone());
            }
            None => {
                h.remove(name);
            }
        }
    }
    h
}

/// `token=<jwt>` followed by the account's other browser cookies.
fn cookie_header(token: &str, cookies: Option<&str>) -> String {
    let mut out = format!("token={token}");
    for pair in cookies.unwrap_or("").split(';') {
        let pair = pair.trim();
        let name = pair.split('=').next().unwrap_or("").trim();
        if !pair.is_empty() && name != "token" {
            out.push_str("; ");
            out.push_str(pair);
        }
    }
    out
}

/// `Date#toString()`-style, ASCII only (a non-ASCII zone name breaks the header,
/// docs/upstream.md §3.1).
fn timezone() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[weekday repr:short] [month repr:short] [day] [year] [hour]:[minute]:[second] GMT+0000"
    );
    now.format(&fmt).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_keeps_browser_cookies_and_replaces_token() {
        assert_eq!(
            cookie_header("new", Some("cna=1; token=old; x=y")),
            "token=new; cna=1; x=y"
        );
        assert_eq!(cookie_header("t", None), "token=t");
    }

    #[test]
    fn timezone_is_ascii() {
        let tz = timezone();
        assert!(tz.is_ascii() && tz.ends_with("GMT+0000"), "{tz}");
    }
}
