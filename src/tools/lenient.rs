//! Reading the JSON a model writes: strict JSON first, then JSON5 (single quotes, unquoted keys,
//! trailing commas), inside an optional Markdown fence; and splitting a run of objects.

use serde_json::Value;

/// `text` as JSON, forgiving what models get wrong; `None` when it is not JSON even so.
pub fn parse(text: &str) -> Option<Value> {
    let text = unfence(text.trim());
    if text.is_empty() {
        return None;
    }
    serde_json::from_str(text)
        .ok()
        .or_else(|| json5::from_str(text).ok())
}

/// The inside of a Markdown code fence around all of `text` (```` ```json … ``` ````), or `text`.
pub fn unfence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    // The info string (`json`) runs to the end of the first line.
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

/// The top-level `{…}` objects in `text`, in order, as text (balanced braces outside strings,
/// either quote). An object whose end never came runs to the end of `text`.
pub fn objects(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == q {
                quote = None;
            }
            continue;
        }
        match b {
            b'"' | b'\'' if depth > 0 => quote = Some(b),
            b'{' => {
                if depth == 0 {
                    start = i;
                }
                depth += 1;
            }
            b'}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    found.push(&text[start..=i]);
                }
            }
            _ => {}
        }
    }
    if depth > 0 {
        found.push(&text[start..]);
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strict_json_and_the_mistakes_models_make() {
        assert_eq!(parse(r#"{"a": 1}"#), Some(json!({"a": 1})));
        assert_eq!(
            parse("{'a': 'x', b: [1, 2,],}"),
            Some(json!({"a": "x", "b": [1, 2]}))
        );
        assert_eq!(
            parse("```json\n{\"a\": true}\n```"),
            Some(json!({"a": true}))
        );
        assert_eq!(parse("```\n{\"a\": null}\n```\n"), Some(json!({"a": null})));
        assert_eq!(parse("not json"), None);
        assert_eq!(parse("  "), None);
    }

    #[test]
    fn objects_are_split_by_their_braces_not_by_braces_in_strings() {
        let text = r#"{"a": "}{"} , {'b': {"c": 1}} {"open": "#;
        assert_eq!(
            objects(text),
            [r#"{"a": "}{"}"#, r#"{'b': {"c": 1}}"#, r#"{"open": "#]
        );
        assert_eq!(
            objects(r#"[{"a":1},{"b":"\"}"}]"#),
            [r#"{"a":1}"#, r#"{"b":"\"}"}"#]
        );
        assert!(objects("no braces").is_empty());
    }
}
