//! `encrypted_content` of reasoning items: the reasoning text in an opaque envelope a client
//! hands back unchanged (Codex asks for it with `include: ["reasoning.encrypted_content"]` and
//! returns the items in `input`). It is encoded, not encrypted: the text is the client's own.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const PREFIX: &str = "qwen2api.r1.";

/// The envelope for a reasoning text.
pub fn seal(text: &str) -> String {
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(text))
}

/// The reasoning text back, or `None` for an envelope this server did not write.
pub fn open(sealed: &str) -> Option<String> {
    let body = sealed.strip_prefix(PREFIX)?;
    let bytes = URL_SAFE_NO_PAD.decode(body).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_text_opens_to_itself_and_foreign_envelopes_do_not_open() {
        let sealed = seal("Étape 1: 2+2=4\n");
        assert!(sealed.starts_with("qwen2api.r1."));
        assert!(!sealed.contains("2+2"));
        assert_eq!(open(&sealed).as_deref(), Some("Étape 1: 2+2=4\n"));
        assert_eq!(open("gAAAAABo-openai-envelope"), None);
        assert_eq!(open("qwen2api.r1.!!!"), None);
    }
}
