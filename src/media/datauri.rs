//! Decoding inline media clients send: `data:` URIs (RFC 2397) and bare base64, with a size
//! limit enforced before and after decoding.

use std::fmt;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::kind::sniff;

/// Decoded media and its MIME type (lower case, without parameters).
#[derive(Clone, PartialEq, Eq)]
pub struct DataUri {
    pub mime: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for DataUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataUri")
            .field("mime", &self.mime)
            .field("len", &self.bytes.len())
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataUriError {
    #[error("not a data URI")]
    NotDataUri,
    #[error("malformed data URI: {0}")]
    Malformed(String),
    #[error("larger than {limit_bytes} bytes")]
    TooLarge { limit_bytes: usize },
}

/// Clients differ on padding and on the alphabet; both are accepted.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// `data:[<mime>][;param=value…][;base64],<payload>`; base64 (standard, with or without padding, whitespace/newlines ignored; also URL-safe) or percent-encoded;
/// mime defaults to text/plain; lower-cased, parameters dropped. The size limit is checked on the decoded size, and an
/// obviously oversized base64 payload is rejected before decoding (len*3/4 > limit + 3).
pub fn parse(uri: &str, max_bytes: usize) -> Result<DataUri, DataUriError> {
    let uri = uri.trim_start();
    let Some(rest) = uri
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("data:"))
        .map(|_| &uri[5..])
    else {
        return Err(DataUriError::NotDataUri);
    };
    let Some((header, payload)) = rest.split_once(',') else {
        return Err(DataUriError::Malformed("no ',' before the payload".into()));
    };
    let mut params = header.split(';');
    let mime = params.next().unwrap_or("").trim().to_ascii_lowercase();
    let is_base64 = header
        .rsplit(';')
        .next()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("base64"))
        && header.contains(';');
    let mime = if mime.is_empty() {
        "text/plain".to_owned()
    } else if valid_mime(&mime) {
        mime
    } else {
        return Err(DataUriError::Malformed(format!("bad media type {mime:?}")));
    };
    let bytes = if is_base64 {
        // Some clients percent-encode the base64 text as if it were a URL component.
        if payload.contains('%') {
            let text = percent_decode(payload.trim(), usize::MAX)?;
            let text = String::from_utf8(text)
                .map_err(|_| DataUriError::Malformed("payload is not base64".into()))?;
            decode_base64(&text, max_bytes)?
        } else {
            decode_base64(payload, max_bytes)?
        }
    } else {
        percent_decode(payload, max_bytes)?
    };
    Ok(DataUri { mime, bytes })
}

/// Raw base64 without the `data:` prefix, as some clients send it (mime then comes from sniff, else application/octet-stream).
pub fn parse_bare_base64(s: &str, max_bytes: usize) -> Result<DataUri, DataUriError> {
    if s.trim_start()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("data:"))
    {
        return parse(s, max_bytes);
    }
    let bytes = decode_base64(s, max_bytes)?;
    if bytes.is_empty() {
        return Err(DataUriError::Malformed("empty payload".into()));
    }
    let mime = sniff(&bytes)
        .unwrap_or("application/octet-stream")
        .to_owned();
    Ok(DataUri { mime, bytes })
}

/// `type/subtype` made of RFC 2045 token characters.
fn valid_mime(mime: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                    )
            })
    };
    mime.split_once('/')
        .is_some_and(|(top, sub)| token(top) && token(sub))
}

fn decode_base64(payload: &str, max_bytes: usize) -> Result<Vec<u8>, DataUriError> {
    let too_large = DataUriError::TooLarge {
        limit_bytes: max_bytes,
    };
    // Cheap checks first: neither a copy nor a decode of something that cannot fit.
    let estimate = |len: usize| len / 4 * 3 + (len % 4) * 3 / 4;
    if estimate(payload.len()) > max_bytes.saturating_add(3) {
        let significant = payload.bytes().filter(|b| !b.is_ascii_whitespace()).count();
        if estimate(significant) > max_bytes.saturating_add(3) {
            return Err(too_large);
        }
    }
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let engine = if compact.contains(['-', '_']) {
        &URL_SAFE
    } else {
        &STANDARD
    };
    let bytes = engine
        .decode(compact.as_bytes())
        .map_err(|e| DataUriError::Malformed(format!("bad base64: {e}")))?;
    if bytes.len() > max_bytes {
        return Err(too_large);
    }
    Ok(bytes)
}

/// `%XX` decoding; a `%` not followed by two hex digits is kept as it is (as browsers do).
fn percent_decode(payload: &str, max_bytes: usize) -> Result<Vec<u8>, DataUriError> {
    let input = payload.as_bytes();
    let mut out = Vec::with_capacity(input.len().min(max_bytes));
    let mut i = 0;
    while i < input.len() {
        let byte = match (
            input[i],
            hex_value(input.get(i + 1)),
            hex_value(input.get(i + 2)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                i += 3;
                (hi << 4) | lo
            }
            (b, _, _) => {
                i += 1;
                b
            }
        };
        if out.len() == max_bytes {
            return Err(DataUriError::TooLarge {
                limit_bytes: max_bytes,
            });
        }
        out.push(byte);
    }
    Ok(out)
}

fn hex_value(b: Option<&u8>) -> Option<u8> {
    char::from(*b?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn base64_image() {
        let d = parse(&format!("data:image/png;base64,{}", b64(PNG)), 1024).unwrap();
        assert_eq!(d.mime, "image/png");
        assert_eq!(d.bytes, PNG);
    }

    #[test]
    fn mime_is_lowercased_and_parameters_dropped() {
        let d = parse("DATA:Image/PNG;name=a.png;charset=x;BASE64,aGk=", 10).unwrap();
        assert_eq!(d.mime, "image/png");
        assert_eq!(d.bytes, b"hi");
        let d = parse("data:text/plain;charset=utf-8,a%20b", 10).unwrap();
        assert_eq!(d.mime, "text/plain");
        assert_eq!(d.bytes, b"a b");
    }

    #[test]
    fn mime_defaults_to_text_plain() {
        let d = parse("data:,Hello%2C%20World%21", 100).unwrap();
        assert_eq!(d.mime, "text/plain");
        assert_eq!(d.bytes, b"Hello, World!");
        let d = parse("data:;base64,aGk", 100).unwrap();
        assert_eq!(d.mime, "text/plain");
        assert_eq!(d.bytes, b"hi");
    }

    #[test]
    fn base64_variants() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        let std = b64(&bytes);
        let unpadded = std.trim_end_matches('=');
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert!(url.contains(['-', '_']));
        let mut wrapped = String::new();
        for line in std.as_bytes().chunks(76) {
            wrapped.push_str(std::str::from_utf8(line).unwrap());
            wrapped.push_str("\r\n");
        }
        for payload in [&std, unpadded, &url, &wrapped, &format!("  {std}\n")] {
            let d = parse(
                &format!("data:application/octet-stream;base64,{payload}"),
                256,
            )
            .unwrap_or_else(|e| panic!("{payload:?}: {e}"));
            assert_eq!(d.bytes, bytes);
        }
        // Base64 text that was itself percent-encoded.
        let d = parse("data:text/plain;base64,aGk%2B", 10).unwrap();
        assert_eq!(d.bytes, b"hi>");
    }

    #[test]
    fn percent_encoding() {
        let d = parse("data:text/plain,%E4%B8%AD%zz%4", 100).unwrap();
        assert_eq!(d.bytes, "中%zz%4".as_bytes());
        let d = parse("data:text/plain,", 100).unwrap();
        assert!(d.bytes.is_empty());
    }

    #[test]
    fn not_a_data_uri() {
        for s in ["", "http://x/y.png", "dat", "data", "aGVsbG8="] {
            assert_eq!(parse(s, 10), Err(DataUriError::NotDataUri), "{s:?}");
        }
    }

    #[test]
    fn malformed() {
        assert!(matches!(
            parse("data:image/png;base64", 10),
            Err(DataUriError::Malformed(_))
        ));
        assert!(matches!(
            parse("data:image/png;base64,@@@@", 10),
            Err(DataUriError::Malformed(_))
        ));
        assert!(matches!(
            parse("data:image;base64,aGk=", 10),
            Err(DataUriError::Malformed(_))
        ));
        assert!(matches!(
            parse("data:image/p ng;base64,aGk=", 10),
            Err(DataUriError::Malformed(_))
        ));
        // A parameter merely named like the flag is not the flag.
        let d = parse("data:text/plain;base64=no,aGk=", 10).unwrap();
        assert_eq!(d.bytes, b"aGk=");
    }

    #[test]
    fn size_limit_on_decoded_bytes() {
        let ten = b64(&[7u8; 10]); // 16 chars, 2 of padding
        assert_eq!(
            parse(&format!("data:a/b;base64,{ten}"), 10).unwrap().bytes,
            [7u8; 10]
        );
        assert_eq!(
            parse(&format!("data:a/b;base64,{ten}"), 9),
            Err(DataUriError::TooLarge { limit_bytes: 9 })
        );
        assert_eq!(
            parse("data:text/plain,abc", 2),
            Err(DataUriError::TooLarge { limit_bytes: 2 })
        );
        assert_eq!(parse("data:text/plain,%41%42", 2).unwrap().bytes, b"AB");
        // Whitespace does not count against the limit.
        let spaced: String = ten.chars().flat_map(|c| [c, '\n', ' ']).collect();
        assert_eq!(
            parse(&format!("data:a/b;base64,{spaced}"), 10)
                .unwrap()
                .bytes,
            [7u8; 10]
        );
    }

    #[test]
    fn oversized_base64_is_refused_before_decoding() {
        // Not valid base64 at all: only the early length check can answer TooLarge.
        let junk = "@".repeat(4000);
        assert_eq!(
            parse(&format!("data:a/b;base64,{junk}"), 1000),
            Err(DataUriError::TooLarge { limit_bytes: 1000 })
        );
        assert_eq!(
            parse_bare_base64(&junk, 1000),
            Err(DataUriError::TooLarge { limit_bytes: 1000 })
        );
    }

    #[test]
    fn bare_base64_sniffs_the_type() {
        let d = parse_bare_base64(&b64(PNG), 100).unwrap();
        assert_eq!(d.mime, "image/png");
        assert_eq!(d.bytes, PNG);
        let d = parse_bare_base64(&b64(b"plain bytes"), 100).unwrap();
        assert_eq!(d.mime, "application/octet-stream");
        let d = parse_bare_base64("data:image/gif;base64,R0lGODlh", 100).unwrap();
        assert_eq!(d.mime, "image/gif");
        assert!(matches!(
            parse_bare_base64("", 100),
            Err(DataUriError::Malformed(_))
        ));
        assert!(matches!(
            parse_bare_base64("not base64!", 100),
            Err(DataUriError::Malformed(_))
        ));
    }

    #[test]
    fn debug_shows_length_not_bytes() {
        let d = DataUri {
            mime: "image/png".into(),
            bytes: vec![1, 2, 3],
        };
        assert_eq!(format!("{d:?}"), r#"DataUri { mime: "image/png", len: 3 }"#);
    }
}
