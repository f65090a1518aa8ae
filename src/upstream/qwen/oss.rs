//! Alibaba OSS uploads with the STS credentials chat.qwen.ai hands out: the credentials type, the
//! V4 signature of a single PUT, the object URL, and when a pre-signed download URL expires.

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::{Month, OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::config::Secret;

/// The body is not hashed: OSS accepts this marker in place of the payload digest.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const ALGORITHM: &str = "OSS4-HMAC-SHA256";

/// Upload credentials handed out by getstsToken (both flat and wrapped shapes deserialize into it).
#[derive(Clone, serde::Deserialize)]
#[serde(from = "StsShape")]
pub struct StsToken {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Secret,
    pub file_id: String,
    pub file_path: String,
    pub file_url: String,
    pub bucketname: String,
    pub region: String,
    pub endpoint: String,
}

/// `/api/v1/files/getstsToken` answers with the fields at top level, `/api/v2/…` wraps them in
/// the usual `{"success":…,"data":{…}}` envelope.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StsShape {
    Wrapped { data: StsFields },
    Flat(StsFields),
}

#[derive(serde::Deserialize)]
struct StsFields {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    file_id: String,
    file_path: String,
    file_url: String,
    bucketname: String,
    region: String,
    /// Older answers may leave it out; `object_url` then falls back to the region's host.
    #[serde(default)]
    endpoint: String,
}

impl From<StsShape> for StsToken {
    fn from(shape: StsShape) -> Self {
        let (StsShape::Wrapped { data: f } | StsShape::Flat(f)) = shape;
        Self {
            access_key_id: f.access_key_id,
            access_key_secret: Secret::new(f.access_key_secret),
            security_token: Secret::new(f.security_token),
            file_id: f.file_id,
            file_path: f.file_path,
            file_url: f.file_url,
            bucketname: f.bucketname,
            region: f.region,
            endpoint: f.endpoint,
        }
    }
}

impl fmt::Debug for StsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The query of the pre-signed URL is itself a credential (it grants reads).
        let url = match self.file_url.split_once('?') {
            Some((base, _)) => format!("{base}?*****"),
            None => self.file_url.clone(),
        };
        f.debug_struct("StsToken")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .field("file_id", &self.file_id)
            .field("file_path", &self.file_path)
            .field("file_url", &url)
            .field("bucketname", &self.bucketname)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// A PUT ready to send: the object URL and the headers to set, names in lower case.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedPut {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
}

impl fmt::Debug for SignedPut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| *n).collect();
        f.debug_struct("SignedPut")
            .field("url", &self.url)
            .field("headers", &names)
            .finish()
    }
}

/// Signs a PUT of `file_path` with `content_type` at `now`.
pub fn sign_put(sts: &StsToken, content_type: &str, now: OffsetDateTime) -> SignedPut {
    let now = now.to_offset(UtcOffset::UTC);
    let day = format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let stamp = format!(
        "{day}T{:02}{:02}{:02}Z",
        now.hour(),
        now.minute(),
        now.second()
    );
    let region = signing_region(&sts.region);
    let content_type = content_type.trim();
    let token = sts.security_token.expose().trim();
    let key = encode_key(&sts.file_path);

    // Already in the order of their lower-case names, as the canonical form requires.
    let signed = [
        ("content-type", content_type),
        ("x-oss-content-sha256", UNSIGNED_PAYLOAD),
        ("x-oss-date", stamp.as_str()),
        ("x-oss-security-token", token),
    ];
    let mut canonical_headers = String::new();
    for (name, value) in signed {
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
    }
    let canonical_request = format!(
        "PUT\n/{bucket}/{key}\n\n{canonical_headers}\n\n{UNSIGNED_PAYLOAD}",
        bucket = sts.bucketname,
    );
    let scope = format!("{day}/{region}/oss/aliyun_v4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{stamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );

    let secret = format!("aliyun_v4{}", sts.access_key_secret.expose());
    let k1 = hmac(secret.as_bytes(), day.as_bytes());
    let k2 = hmac(&k1, region.as_bytes());
    let k3 = hmac(&k2, b"oss");
    let k4 = hmac(&k3, b"aliyun_v4_request");
    let signature = hex::encode(hmac(&k4, string_to_sign.as_bytes()));

    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope},Signature={signature}",
        sts.access_key_id
    );
    SignedPut {
        url: object_url_encoded(&sts.endpoint, &sts.bucketname, &sts.region, &key),
        headers: vec![
            ("content-type", content_type.to_owned()),
            ("x-oss-date", stamp),
            ("x-oss-content-sha256", UNSIGNED_PAYLOAD.to_owned()),
            ("x-oss-security-token", token.to_owned()),
            ("authorization", authorization),
        ],
    }
}

/// The object URL: `https://<bucket>.<endpoint>/<key>`; path style `<endpoint>/<bucket>/<key>` when the endpoint
/// carries its own scheme (`http://…`/`https://…`, kept as given) or is an IP address (v4/v6, optional port; then `https://`).
/// An empty endpoint falls back to `<region>.aliyuncs.com` (region as given, e.g. `oss-ap-southeast-1`).
pub fn object_url(endpoint: &str, bucket: &str, region: &str, key: &str) -> String {
    object_url_encoded(endpoint, bucket, region, &encode_key(key))
}

fn object_url_encoded(endpoint: &str, bucket: &str, region: &str, encoded_key: &str) -> String {
    let endpoint = endpoint.trim().trim_end_matches('/');
    if endpoint.is_empty() {
        let region = region.trim();
        return format!("https://{bucket}.{region}.aliyuncs.com/{encoded_key}");
    }
    let lower = endpoint.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return format!("{endpoint}/{bucket}/{encoded_key}");
    }
    if let Some(host) = ip_host(endpoint) {
        return format!("https://{host}/{bucket}/{encoded_key}");
    }
    format!("https://{bucket}.{endpoint}/{encoded_key}")
}

/// The endpoint as a URL authority when it is an IP address (with or without a port), IPv6
/// in brackets; `None` for a host name.
fn ip_host(endpoint: &str) -> Option<String> {
    use std::net::{IpAddr, SocketAddr};
    if let Ok(ip) = endpoint.parse::<IpAddr>() {
        return Some(match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
    }
    if let Ok(sock) = endpoint.parse::<SocketAddr>() {
        return Some(sock.to_string());
    }
    let inner = endpoint.strip_prefix('[')?.strip_suffix(']')?;
    let v6 = inner.parse::<std::net::Ipv6Addr>().ok()?;
    Some(format!("[{v6}]"))
}

/// V4 scopes name the region without the `oss-` prefix the STS answer carries.
fn signing_region(region: &str) -> &str {
    let region = region.trim();
    region.strip_prefix("oss-").unwrap_or(region)
}

/// RFC 3986 encoding of an object key: unreserved characters and `/` stay, the rest is `%XX`.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// When the pre-signed `file_url` stops working: V4 `x-oss-date` + `x-oss-expires` (seconds), or V1 `Expires=<unix secs>`; None if neither.
pub fn signed_url_expiry(file_url: &str) -> Option<SystemTime> {
    let query = file_url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let (mut date, mut expires, mut v1) = (None, None, None);
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = value.trim();
        if name.eq_ignore_ascii_case("x-oss-date") {
            date = Some(value);
        } else if name.eq_ignore_ascii_case("x-oss-expires") {
            expires = Some(value);
        } else if name.eq_ignore_ascii_case("Expires") {
            v1 = Some(value);
        }
    }
    let unix = match (date, expires) {
        (Some(d), Some(e)) => parse_stamp(d)?.checked_add(e.parse::<u64>().ok()?)?,
        _ => v1?.parse::<u64>().ok()?,
    };
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(unix))
}

/// `YYYYMMDDTHHMMSSZ` → seconds since the Unix epoch.
fn parse_stamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(num(0, 4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(4, 6)?).ok()?).ok()?;
    let day = u8::try_from(num(6, 8)?).ok()?;
    let hour = u8::try_from(num(9, 11)?).ok()?;
    let minute = u8::try_from(num(11, 13)?).ok()?;
    let second = u8::try_from(num(13, 15)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let time = time::Time::from_hms(hour, minute, second).ok()?;
    let unix = PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp();
    u64::try_from(unix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sts() -> StsToken {
        StsToken {
            access_key_id: "STS.NTestAccessKeyId".into(),
            access_key_secret: Secret::new("TestSecretKey/abc+def"),
            security_token: Secret::new("CAIS-token-value=="),
            file_id: "fid-1".into(),
            file_path: "user-123/2026 photo (1)+é.png".into(),
            file_url: "https://qwen-webui-prod.oss-accelerate.aliyuncs.com/x?x-oss-signature=abc"
                .into(),
            bucketname: "qwen-webui-prod".into(),
            region: "oss-ap-southeast-1".into(),
            endpoint: "oss-accelerate.aliyuncs.com".into(),
        }
    }

    fn header<'a>(put: &'a SignedPut, name: &str) -> &'a str {
        put.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    /// A second, literal construction of the same signature, so a slip in `sign_put`'s string
    /// building shows up as a mismatch rather than agreeing with itself.
    fn independent_signature() -> String {
        let canonical = "PUT\n\
            /qwen-webui-prod/user-123/2026%20photo%20%281%29%2B%C3%A9.png\n\
            \n\
            content-type:image/png\n\
            x-oss-content-sha256:UNSIGNED-PAYLOAD\n\
            x-oss-date:20260105T030405Z\n\
            x-oss-security-token:CAIS-token-value==\n\
            \n\
            \n\
            UNSIGNED-PAYLOAD";
        let mut h = Sha256::new();
        h.update(canonical);
        let digest = hex::encode(h.finalize());
        let to_sign = format!(
            "OSS4-HMAC-SHA256\n20260105T030405Z\n20260105/ap-southeast-1/oss/aliyun_v4_request\n{digest}"
        );
        let mut key = b"aliyun_v4TestSecretKey/abc+def".to_vec();
        for part in [
            "20260105",
            "ap-southeast-1",
            "oss",
            "aliyun_v4_request",
            &to_sign,
        ] {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(part.as_bytes());
            key = mac.finalize().into_bytes().to_vec();
        }
        hex::encode(key)
    }

    #[test]
    fn signs_a_put_as_an_independent_construction_does() {
        let now = datetime!(2026-01-05 11:04:05 +8);
        let put = sign_put(&sts(), " image/png ", now);
        assert_eq!(
            put.url,
            "https://qwen-webui-prod.oss-accelerate.aliyuncs.com/user-123/2026%20photo%20%281%29%2B%C3%A9.png"
        );
        let names: Vec<&str> = put.headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "x-oss-date",
                "x-oss-content-sha256",
                "x-oss-security-token",
                "authorization"
            ]
        );
        assert_eq!(header(&put, "content-type"), "image/png");
        assert_eq!(header(&put, "x-oss-date"), "20260105T030405Z");
        assert_eq!(header(&put, "x-oss-content-sha256"), "UNSIGNED-PAYLOAD");
        assert_eq!(header(&put, "x-oss-security-token"), "CAIS-token-value==");
        assert_eq!(
            header(&put, "authorization"),
            format!(
                "OSS4-HMAC-SHA256 Credential=STS.NTestAccessKeyId/20260105/ap-southeast-1/oss/aliyun_v4_request,Signature={}",
                independent_signature()
            )
        );
    }

    #[test]
    fn signature_is_a_known_vector() {
        // Computed outside Rust (Python's hmac/hashlib over the same literal strings), so that a
        // change to either construction above is noticed.
        const EXPECTED: &str = "0f0f2215d87c90ffd03600dc59ae3d4ff1c55d34686e8b1db7ac6cec0c91ff8a";
        assert_eq!(independent_signature(), EXPECTED);
        let put = sign_put(&sts(), "image/png", datetime!(2026-01-05 03:04:05 UTC));
        let auth = header(&put, "authorization");
        assert_eq!(auth.rsplit_once(",Signature=").unwrap().1, EXPECTED);
    }

    #[test]
    fn the_signature_depends_on_every_input() {
        let now = datetime!(2026-01-05 03:04:05 UTC);
        let base = header(&sign_put(&sts(), "image/png", now), "authorization").to_owned();
        let mut other = sts();
        other.security_token = Secret::new("other");
        assert_ne!(
            header(&sign_put(&other, "image/png", now), "authorization"),
            base
        );
        assert_ne!(
            header(&sign_put(&sts(), "image/jpeg", now), "authorization"),
            base
        );
        let later = datetime!(2026-01-05 03:04:06 UTC);
        assert_ne!(
            header(&sign_put(&sts(), "image/png", later), "authorization"),
            base
        );
    }

    #[test]
    fn region_loses_its_oss_prefix_only_for_signing() {
        assert_eq!(signing_region("oss-ap-southeast-1"), "ap-southeast-1");
        assert_eq!(signing_region("cn-hangzhou"), "cn-hangzhou");
        let mut t = sts();
        t.region = "oss-cn-hangzhou".into();
        t.endpoint = String::new();
        let put = sign_put(&t, "text/plain", datetime!(2026-01-05 03:04:05 UTC));
        assert!(
            header(&put, "authorization").contains("/20260105/cn-hangzhou/oss/aliyun_v4_request,")
        );
        assert!(
            put.url
                .starts_with("https://qwen-webui-prod.oss-cn-hangzhou.aliyuncs.com/")
        );
    }

    #[test]
    fn url_styles() {
        let u = |e: &str| object_url(e, "bkt", "oss-ap-southeast-1", "u/a b.png");
        assert_eq!(
            u("oss-accelerate.aliyuncs.com"),
            "https://bkt.oss-accelerate.aliyuncs.com/u/a%20b.png"
        );
        assert_eq!(
            u("oss-accelerate.aliyuncs.com/"),
            "https://bkt.oss-accelerate.aliyuncs.com/u/a%20b.png"
        );
        assert_eq!(
            u(""),
            "https://bkt.oss-ap-southeast-1.aliyuncs.com/u/a%20b.png"
        );
        assert_eq!(u("10.1.2.3"), "https://10.1.2.3/bkt/u/a%20b.png");
        assert_eq!(u("10.1.2.3:9000"), "https://10.1.2.3:9000/bkt/u/a%20b.png");
        assert_eq!(u("::1"), "https://[::1]/bkt/u/a%20b.png");
        assert_eq!(u("[::1]"), "https://[::1]/bkt/u/a%20b.png");
        assert_eq!(u("[::1]:9000"), "https://[::1]:9000/bkt/u/a%20b.png");
        assert_eq!(
            u("http://127.0.0.1:4566"),
            "http://127.0.0.1:4566/bkt/u/a%20b.png"
        );
        assert_eq!(
            u("https://oss.example.test/"),
            "https://oss.example.test/bkt/u/a%20b.png"
        );
        assert_eq!(
            u("oss.example.test:8443"),
            "https://bkt.oss.example.test:8443/u/a%20b.png"
        );
    }

    #[test]
    fn path_style_put_signs_the_same_canonical_uri() {
        let now = datetime!(2026-01-05 03:04:05 UTC);
        let mut t = sts();
        t.endpoint = "http://127.0.0.1:9000".into();
        let put = sign_put(&t, "image/png", now);
        assert_eq!(
            put.url,
            "http://127.0.0.1:9000/qwen-webui-prod/user-123/2026%20photo%20%281%29%2B%C3%A9.png"
        );
        assert!(header(&put, "authorization").ends_with(&independent_signature()));
    }

    #[test]
    fn key_encoding_keeps_unreserved_and_slashes() {
        assert_eq!(encode_key("a/B-9_.~z"), "a/B-9_.~z");
        assert_eq!(encode_key("a b?c=d&e#f%"), "a%20b%3Fc%3Dd%26e%23f%25");
        assert_eq!(encode_key("中"), "%E4%B8%AD");
    }

    #[test]
    fn expiry_from_v4_and_v1_urls() {
        let v4 = "https://b.e/k.png?x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-date=20260105T030405Z&x-oss-expires=3600&x-oss-signature=ab";
        let at = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(datetime!(2026-01-05 04:04:05 UTC).unix_timestamp()).unwrap(),
            );
        assert_eq!(signed_url_expiry(v4), Some(at));
        let v1 = "https://b.e/k.png?OSSAccessKeyId=x&Expires=1780000000&Signature=s%3D";
        assert_eq!(
            signed_url_expiry(v1),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000))
        );
        assert_eq!(signed_url_expiry("https://b.e/k.png"), None);
        assert_eq!(signed_url_expiry("https://b.e/k.png?a=1"), None);
        assert_eq!(
            signed_url_expiry("https://b.e/k?x-oss-date=2026T&x-oss-expires=3"),
            None
        );
        assert_eq!(
            signed_url_expiry("https://b.e/k?x-oss-date=20261305T000000Z&x-oss-expires=3"),
            None
        );
        assert_eq!(signed_url_expiry("https://b.e/k?Expires=soon"), None);
    }

    #[test]
    fn deserializes_flat_and_wrapped_answers() {
        let fields = r#"{"access_key_id":"AK","access_key_secret":"SK","security_token":"TOK",
            "file_id":"f","file_path":"u/f.png","file_url":"https://x/u/f.png?sig=1",
            "bucketname":"b","region":"oss-ap-southeast-1","endpoint":"oss-accelerate.aliyuncs.com"}"#;
        let flat: StsToken = serde_json::from_str(fields).unwrap();
        let wrapped: StsToken = serde_json::from_str(&format!(
            r#"{{"success":true,"request_id":"r","data":{fields}}}"#
        ))
        .unwrap();
        for t in [flat, wrapped] {
            assert_eq!(t.access_key_id, "AK");
            assert_eq!(t.access_key_secret.expose(), "SK");
            assert_eq!(t.security_token.expose(), "TOK");
            assert_eq!(t.file_path, "u/f.png");
            assert_eq!(t.endpoint, "oss-accelerate.aliyuncs.com");
        }
        let no_endpoint = fields.replace(r#","endpoint":"oss-accelerate.aliyuncs.com""#, "");
        let t: StsToken = serde_json::from_str(&no_endpoint).unwrap();
        assert_eq!(t.endpoint, "");
        assert!(serde_json::from_str::<StsToken>(r#"{"success":false}"#).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let printed = format!("{:?}", sts());
        assert!(printed.contains("STS.NTestAccessKeyId"));
        assert!(!printed.contains("TestSecretKey"));
        assert!(!printed.contains("CAIS-token-value"));
        assert!(!printed.contains("x-oss-signature=abc"));
        let put = sign_put(&sts(), "image/png", datetime!(2026-01-05 03:04:05 UTC));
        let printed = format!("{put:?}");
        assert!(!printed.contains("CAIS-token-value"));
        assert!(!printed.contains("Signature="));
    }
}
