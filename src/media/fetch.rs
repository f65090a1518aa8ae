//! Fetching media from URLs that clients supply, without letting them reach the gateway's own
//! network: every hop's addresses are checked and the connection is pinned to them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, LOCATION};

use super::kind::{mime_from_filename, sniff};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 3;

/// Host names refused without asking DNS: they name the machine itself or a cloud metadata
/// service, whatever they happen to resolve to here.
const BLOCKED_NAMES: &[&str] = &["localhost", "metadata", "metadata.google.internal"];

/// Media fetched from a URL and its MIME type (lower case, without parameters).
pub struct Fetched {
    pub bytes: Bytes,
    pub mime: String,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("mime", &self.mime)
            .field("len", &self.bytes.len())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL names an address the gateway must not reach (loopback, private, metadata …).
    #[error("address not allowed: {0}")]
    Forbidden(String),
    #[error("unusable URL: {0}")]
    BadUrl(String),
    #[error("larger than {limit_bytes} bytes")]
    TooLarge { limit_bytes: usize },
    /// The remote answered with this non-success status.
    #[error("the remote server answered HTTP {0}")]
    Http(u16),
    #[error("fetch failed: {0}")]
    Failed(String),
}

/// Which addresses may be connected to; `is_public` except in tests.
type Policy = fn(IpAddr) -> bool;

/// Fetches client-supplied http(s) URLs under an address policy, a time limit and a size limit.
#[derive(Debug, Clone)]
pub struct RemoteFetcher {
    timeout: Duration,
    max_bytes: usize,
    allow: Policy,
}

impl RemoteFetcher {
    pub fn new(timeout: Duration, max_bytes: usize) -> Self {
        Self {
            timeout,
            max_bytes,
            allow: is_public,
        }
    }

    /// A fetcher that may reach a local test server.
    #[cfg(test)]
    fn with_policy(timeout: Duration, max_bytes: usize, allow: Policy) -> Self {
        Self {
            timeout,
            max_bytes,
            allow,
        }
    }

    /// http/https only; the host is resolved and every resolved address must be public, else
    /// `Forbidden`; the connection is pinned to the checked addresses; redirects are followed
    /// by hand (at most 3), each hop checked the same way; the size limit is enforced while the
    /// body streams in (Content-Length first); the MIME type comes from Content-Type, else
    /// sniffing, else the URL's extension.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        match tokio::time::timeout(self.timeout, self.fetch_within(url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Failed(format!(
                "no complete answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn fetch_within(&self, raw: &str) -> Result<Fetched, FetchError> {
        let mut url = check_url(raw, self.allow)?;
        let mut redirects = 0;
        loop {
            let addrs = check_hop(&url, self.allow).await?;
            let client = pinned_client(&url, &addrs, self.timeout)?;
            let resp = client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| FetchError::Failed(describe(&e)))?;
            let status = resp.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let Some(location) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok())
                else {
                    return Err(FetchError::Http(status));
                };
                if redirects == MAX_REDIRECTS {
                    return Err(FetchError::Failed(format!(
                        "more than {MAX_REDIRECTS} redirects"
                    )));
                }
                redirects += 1;
                url = next_hop(&url, location, self.allow)?;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(FetchError::Http(status));
            }
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let bytes = read_limited(resp, self.max_bytes).await?;
            let mime = pick_mime(content_type.as_deref(), &bytes, &url);
            return Ok(Fetched { bytes, mime });
        }
    }
}

/// Parses and checks a URL before anything is resolved: scheme, credentials, host names that are
/// refused outright, numeric hosts written in a non-canonical form, literal addresses.
fn check_url(raw: &str, allow: Policy) -> Result<Url, FetchError> {
    let raw = raw.trim();
    let url = Url::parse(raw).map_err(|e| FetchError::BadUrl(e.to_string()))?;
    check_parsed(&url, raw_host(raw).as_deref(), allow)?;
    Ok(url)
}

fn check_parsed(url: &Url, raw_host: Option<&str>, allow: Policy) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::BadUrl(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::BadUrl("credentials in the URL".into()));
    }
    match host_of(url) {
        None => Err(FetchError::BadUrl("no host".into())),
        Some(Host::Ip(IpAddr::V4(ip))) => {
            // `2130706433`, `0x7f.1`, `127.1`, `127.0.0.%31` all parse to 127.0.0.1: only the
            // dotted-decimal spelling is accepted, so that what was checked is what was written.
            if raw_host.is_some_and(|h| h != ip.to_string()) {
                return Err(FetchError::BadUrl(
                    "numeric host not in dotted-decimal form".into(),
                ));
            }
            check_ip(IpAddr::V4(ip), allow)
        }
        Some(Host::Ip(ip)) => check_ip(ip, allow),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if BLOCKED_NAMES.contains(&name.as_str()) || name.ends_with(".localhost") {
                return Err(FetchError::Forbidden(format!("host {name:?}")));
            }
            Ok(())
        }
    }
}

enum Host<'a> {
    Ip(IpAddr),
    Domain(&'a str),
}

/// The parsed host; the URL parser has already turned every numeric spelling into an address.
fn host_of(url: &Url) -> Option<Host<'_>> {
    if let Some(name) = url.domain() {
        return Some(Host::Domain(name));
    }
    let host = url.host_str()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok().map(Host::Ip)
}

fn check_ip(ip: IpAddr, allow: Policy) -> Result<(), FetchError> {
    if allow(ip) {
        Ok(())
    } else {
        Err(FetchError::Forbidden(format!("address {ip}")))
    }
}

/// The host as written in `raw` (after `://`, without credentials or port), lower-cased.
fn raw_host(raw: &str) -> Option<String> {
    let rest = raw.split_once("://")?.1;
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        let end = host_port.find(']')?;
        return Some(host_port[..=end].to_ascii_lowercase());
    }
    let host = host_port.split_once(':').map_or(host_port, |(h, _)| h);
    Some(host.to_ascii_lowercase())
}

/// The check of one hop, before connecting: the URL's own checks, then the host's addresses
/// (all of them must be allowed). The answer is what the connection will be pinned to.
async fn check_hop(url: &Url, allow: Policy) -> Result<Vec<SocketAddr>, FetchError> {
    check_parsed(url, None, allow)?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::BadUrl("no port".into()))?;
    let addrs: Vec<SocketAddr> = match host_of(url) {
        Some(Host::Ip(ip)) => vec![SocketAddr::new(ip, port)],
        Some(Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| FetchError::Failed(format!("cannot resolve {name:?}: {e}")))?
            .collect(),
        None => return Err(FetchError::BadUrl("no host".into())),
    };
    if addrs.is_empty() {
        return Err(FetchError::Failed("the host has no address".into()));
    }
    if addrs.iter().any(|a| !allow(a.ip())) {
        // The addresses themselves are not echoed: they may describe an internal network.
        return Err(FetchError::Forbidden(format!(
            "host {:?} resolves to a non-public address",
            url.host_str().unwrap_or("")
        )));
    }
    Ok(addrs)
}

/// Where a redirect leads, checked like the first URL. A relative `Location` keeps the host.
fn next_hop(current: &Url, location: &str, allow: Policy) -> Result<Url, FetchError> {
    let location = location.trim();
    if let Ok(absolute) = Url::parse(location) {
        check_parsed(&absolute, raw_host(location).as_deref(), allow)?;
        return Ok(absolute);
    }
    let joined = current
        .join(location)
        .map_err(|e| FetchError::BadUrl(format!("redirect to {location:?}: {e}")))?;
    check_parsed(&joined, None, allow)?;
    Ok(joined)
}

/// A resolver that answers every lookup with the addresses already checked, so the connection
/// cannot go anywhere a second, different DNS answer would send it.
struct Pinned(Vec<SocketAddr>);

impl Resolve for Pinned {
    fn resolve(&self, _name: Name) -> Resolving {
        let addrs: Addrs = Box::new(self.0.clone().into_iter());
        Box::pin(std::future::ready(Ok(addrs)))
    }
}

/// One client per hop: its resolver knows only that hop's checked addresses. No proxy (a proxy
/// would resolve the name itself) and no automatic redirects (each hop is checked here).
fn pinned_client(
    url: &Url,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .user_agent(concat!("qwen2api/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(Pinned(addrs.to_vec())));
    if let Some(name) = url.domain() {
        builder = builder.resolve_to_addrs(name, addrs);
    }
    builder
        .build()
        .map_err(|e| FetchError::Failed(format!("cannot build HTTP client: {e}")))
}

/// The body, refused as soon as it is known to exceed `max_bytes`.
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    max_bytes: usize,
) -> Result<Bytes, FetchError> {
    let too_large = || FetchError::TooLarge {
        limit_bytes: max_bytes,
    };
    let declared = resp.content_length();
    if declared.is_some_and(|len| len > u64::try_from(max_bytes).unwrap_or(u64::MAX)) {
        return Err(too_large());
    }
    let capacity = declared
        .and_then(|len| usize::try_from(len).ok())
        .unwrap_or(0)
        .min(max_bytes);
    let mut body = BytesMut::with_capacity(capacity);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::Failed(describe(&e)))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Content-Type unless it is missing or says nothing (`application/octet-stream`), then the
/// bytes, then the extension of the URL's path.
fn pick_mime(content_type: Option<&str>, body: &[u8], url: &Url) -> String {
    let declared = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| {
            m.contains('/')
                && !matches!(
                    m.as_str(),
                    "application/octet-stream" | "binary/octet-stream" | "application/unknown"
                )
        });
    declared
        .or_else(|| sniff(body).map(str::to_owned))
        .or_else(|| mime_from_filename(url.path()).map(str::to_owned))
        .unwrap_or_else(|| "application/octet-stream".to_owned())
}

/// A reqwest error with its causes, which carry the useful part (refused, reset, TLS …).
fn describe(err: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Address policy: only globally routable unicast addresses; IPv6 forms that embed an IPv4
/// address (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network"
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // CGNAT
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-compatible `::a.b.c.d`; also covers `::` and `::1` (0.0.0.0 and 0.0.0.1).
    if s[..6] == [0; 6] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // 6to4 2002::/16 carries the IPv4 address in the next 32 bits.
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    // Only global unicast 2000::/3; this leaves out ULA fc00::/7, link-local fe80::/10,
    // multicast ff00::/8, discard 100::/64, local NAT64 64:ff9b:1::/48 …
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    // 2001::/23 is IETF assignments (Teredo, benchmarking, ORCHID); 2001:db8::/32 and
    // 3fff::/20 (RFC 9637) are documentation.
    let refused =
        (s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8)) || (s[0] == 0x3fff && s[1] < 0x1000);
    !refused
}

#[cfg(test)]
mod tests;
