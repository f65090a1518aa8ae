//! Reads a JWT's `exp` claim (payload decoded, signature not checked: we only need to know when
//! the upstream will stop accepting it).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `exp` claim in unix seconds, if the token is a JWT that has one.
pub fn expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp_and_ignores_garbage() {
        let payload =
            URL_SAFE_NO_PAD.encode(br#"{"id":"u","last_password_change":1,"exp":1780000000}"#);
        assert_eq!(
            expiry(&format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig")),
            Some(1_780_000_000)
        );
        assert_eq!(expiry("not-a-jwt"), None);
        assert_eq!(expiry("a.!!!.c"), None);
        let no_exp = URL_SAFE_NO_PAD.encode(br#"{"id":"u"}"#);
        assert_eq!(expiry(&format!("h.{no_exp}.s")), None);
    }
}
