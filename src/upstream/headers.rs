//! The browser-like header set of protocol §3.1, built per request from configuration.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::UpstreamConfig;

/// The credentials one upstream call runs with.
#[derive(Clone)]
pub struct Credentials {
    pub token: crate::config::Secret,
    /// Browser cookies to send along (their `token` is replaced by the current one).
    pub cookies: Option<crate::config::Secret>,
    pub proxy: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token)
            .field("cookies", &self.cookies)
            .field(
                "proxy",
                &self.proxy.as_deref().map(crate::config::mask_url_password),
            )
            .finish()
    }
}

/// Which call the headers are for: the site varies `accept` and `referer` by endpoint.
#[derive(Clone, Copy, Debug)]
pub enum CallKind<'a> {
    Json,
    Completion { chat_id: &'a str },
}

pub fn build(cfg: &UpstreamConfig, creds: Option<&Credentials>, kind: CallKind<'_>) -> HeaderMap {
    let origin = cfg.base_url.origin().ascii_serialization();
    let mut h = HeaderMap::with_capacity(24);
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("user-agent", &cfg.user_agent);
    put(
        "sec-ch-ua",
        r#""Google Chrome";v="149", "Chromium";v="149", "Not)A;Brand";v="24""#,
    );
    put("sec-ch-ua-mobile", "?0");
    put("sec-ch-ua-platform", "\"Windows\"");
    put("accept-language", "zh-CN,zh;q=0.9,en;q=0.8");
    put("content-type", "application/json");
    put("bx-v", &cfg.bx_v);
    put("source", "web");
    put("version", &cfg.web_version);
    put("timezone", &timezone());
    put("x-request-id", &uuid::Uuid::new_v4().to_string());
    put("origin", &origin);
    put("sec-fetch-dest", "empty");
    put("sec-fetch-mode", "cors");
    put("sec-fetch-site", "same-origin");
    match kind {
        CallKind::Json => {
            put("accept", "application/json, text/plain, */*");
            put("referer", &format!("{origin}/"));
        }
        CallKind::Completion { chat_id } => {
            put("accept", "text/event-stream");
            put("referer", &format!("{origin}/c/{chat_id}"));
            put("x-accel-buffering", "no");
        }
    }
    if let Some(creds) = creds {
        let token = creds.token.expose();
        if cfg.send_auth_header {
            put("authorization", &format!("Bearer {token}"));
        }
        put(
            "cookie",
            &cookie_header(
                token,
                creds.cookies.as_ref().map(crate::config::Secret::expose),
            ),
        );
        if let Some(v) = h.get_mut("authorization") {
            v.set_sensitive(true);
        }
        if let Some(v) = h.get_mut("cookie") {
            v.set_sensitive(true);
        }
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

/// `Date#toString()`-style, ASCII only (a non-ASCII zone name breaks the header, protocol §3.1).
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
