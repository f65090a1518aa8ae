//! The label sets of the metrics, and the functions that keep their values bounded: the
//! surface a route belongs to, cooldown reasons, and what a model id may look like.

use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub surface: &'static str,
    /// The route template (`/v1/responses/{id}`), never the raw path.
    pub route: String,
    pub model: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub surface: &'static str,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FirstByteLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    pub account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CooldownLabels {
    pub account: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub direction: &'static str,
    pub key: String,
    pub account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub backend: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChatLabels {
    pub chat: &'static str,
}

/// The client surface a route template belongs to.
pub fn surface(route: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("/v1/chat/completions", "chat.completions"),
        ("/v1/chat/multimodal", "chat.completions"),
        ("/v1/image/upload_and_chat", "chat.completions"),
        ("/v1/video/upload_and_chat", "chat.completions"),
        ("/v1/messages", "messages"),
        ("/v1/responses", "responses"),
        ("/v1/images", "images"),
        ("/v1/videos", "videos"),
        ("/v1/files", "files"),
        ("/v2/files", "files"),
        ("/v1/models", "models"),
        ("/models", "models"),
        ("/api/", "admin"),
        ("/verify", "admin"),
        ("/metrics", "metrics"),
    ];
    if !route.starts_with('/') {
        return "none";
    }
    PREFIXES
        .iter()
        .find(|(p, _)| route.starts_with(p))
        .map_or("service", |(_, s)| s)
}

/// A cooldown reason as a label: the health reasons the accounts set, else `other`.
pub fn reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "rate_limited",
        "transient",
        "empty_answer",
        "thinking_only",
        "chat_in_progress",
        "feature_rate_limited",
    ];
    KNOWN
        .iter()
        .find(|k| **k == reason)
        .copied()
        .unwrap_or("other")
}

/// Whether a model id is fit to be a label value: short, and plain characters only.
pub fn sane(model: &str) -> bool {
    model.len() <= 64
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_their_surface() {
        for (route, want) in [
            ("/v1/chat/completions", "chat.completions"),
            ("/v1/messages/count_tokens", "messages"),
            ("/v1/responses/{id}/input_items", "responses"),
            ("/v1/images/edits", "images"),
            ("/v1/videos/{id}", "videos"),
            ("/v2/files/getstsToken", "files"),
            ("/api/keys/{id}", "admin"),
            ("/verify", "admin"),
            ("/health", "service"),
            ("/metrics", "metrics"),
            ("(no route)", "none"),
        ] {
            assert_eq!(surface(route), want, "{route}");
        }
    }

    #[test]
    fn odd_values_are_bounded() {
        assert_eq!(reason("rate_limited"), "rate_limited");
        assert_eq!(reason("token_expired"), "other");
        assert!(sane("qwen3.7-plus"));
        assert!(!sane("a b"));
        assert!(!sane(&"x".repeat(65)));
    }
}
