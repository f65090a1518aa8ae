//! `AppJson`: our JSON extractor, so a malformed body gets the OpenAI error envelope with
//! `param` naming the field, not axum's plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::server::error::AppError;

pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(AppError::UnsupportedMediaType);
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::TooLarge
            } else {
                AppError::BadJson {
                    message: rej.body_text(),
                    param: None,
                }
            }
        })?;
        parse(&bytes).map(AppJson)
    }
}

/// Deeper nesting than any chat request needs is refused before parsing.
pub const MAX_JSON_DEPTH: usize = 64;

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if depth(bytes) > MAX_JSON_DEPTH {
        return Err(AppError::BadJson {
            message: format!("nested deeper than {MAX_JSON_DEPTH} levels"),
            param: None,
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        // `?` stands for a key that could not be read; `.` for the top level.
        let param = match path.trim_end_matches(".?") {
            "." | "?" => missing_field(&message),
            p => Some(p.to_owned()),
        };
        AppError::BadJson { message, param }
    })?;
    de.end().map_err(|e| AppError::BadJson {
        message: e.to_string(),
        param: None,
    })?;
    Ok(value)
}

/// The deepest nesting of arrays and objects, strings skipped.
fn depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// serde reports a missing field at the parent's path; the field itself is the useful `param`.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::ChatCompletionRequest;

    fn param(body: &str) -> Option<String> {
        match parse::<ChatCompletionRequest>(body.as_bytes()) {
            Err(AppError::BadJson { param, .. }) => param,
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn params_name_the_broken_field() {
        assert_eq!(param(r#"{"model":"m"}"#).as_deref(), Some("messages"));
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[],"stream":"yes"}"#).as_deref(),
            Some("stream")
        );
        assert_eq!(param("{\"model\":").as_deref(), Some("model"));
        assert_eq!(param(r#"{"model":"m","messages":[]} x"#), None);
        let deep = format!(
            "{{\"model\":\"m\",\"x\":{}{}}}",
            "[".repeat(64),
            "]".repeat(64)
        );
        assert!(matches!(
            parse::<ChatCompletionRequest>(deep.as_bytes()),
            Err(AppError::BadJson { .. })
        ));
        assert_eq!(depth(br#"{"a":"[[[[{{{{","b":[{"c":"\"]"}]}"#), 3);
    }
}
