//! Structured answers (`response_format` / `text.format`): what the model is told for a JSON
//! object or a JSON schema, and the check of its answer (fences and JSON5 forgiven, the schema
//! validated) that decides between passing it on as compact JSON and one repair round.

use serde_json::Value;

use crate::conversation::ResponseFormat;

/// The JSON schema of a `json_schema` format: the `schema` member of the client's object
/// (OpenAI's `{"name", "schema", "strict"}`), or the object itself when it has none.
fn schema_of(raw: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(raw).ok()?;
    match v.get("schema") {
        Some(s) => Some(s.clone()),
        None => v.get("json_schema").and_then(|j| j.get("schema")).cloned(),
    }
}

/// What the model is told, after the conversation; `None` for plain text.
pub fn instruction(format: &ResponseFormat) -> Option<String> {
    match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(
            "Answer with one JSON object only: no prose before or after it, no Markdown fence."
                .to_owned(),
        ),
        ResponseFormat::JsonSchema(raw) => {
            let schema = schema_of(raw).map_or_else(|| raw.clone(), |s| s.to_string());
            Some(format!(
                "Answer with one JSON value only, following this JSON Schema exactly: no prose \
                 before or after it, no Markdown fence.\nSchema: {schema}"
            ))
        }
    }
}

/// The answer as the format wants it (its JSON as the model wrote it, out of any fence; or,
/// when it had to be read as JSON5, as compact JSON), or what is wrong with it.
pub fn check(format: &ResponseFormat, answer: &str) -> Result<String, String> {
    if *format == ResponseFormat::Text {
        return Ok(answer.to_owned());
    }
    let Some(value) = super::lenient::parse(answer) else {
        return Err("the answer is not JSON".to_owned());
    };
    match format {
        ResponseFormat::JsonObject if !value.is_object() => {
            return Err("the answer is JSON, but not an object".to_owned());
        }
        ResponseFormat::JsonSchema(raw) => {
            if let Some(schema) = schema_of(raw)
                && let Ok(validator) = jsonschema::validator_for(&schema)
            {
                let problems: Vec<String> = validator
                    .iter_errors(&value)
                    .take(5)
                    .map(|e| {
                        let at = e.instance_path().to_string();
                        if at.is_empty() {
                            e.to_string()
                        } else {
                            format!("{at}: {e}")
                        }
                    })
                    .collect();
                if !problems.is_empty() {
                    return Err(problems.join("; "));
                }
            }
        }
        _ => {}
    }
    let unfenced = super::lenient::unfence(answer.trim());
    if serde_json::from_str::<Value>(unfenced).is_ok() {
        Ok(unfenced.to_owned())
    } else {
        Ok(value.to_string())
    }
}

/// The next user message after an answer that failed [`check`].
pub fn correction(problem: &str) -> String {
    format!(
        "Your answer did not follow the required format: {problem}. Answer again with the JSON \
         only, following the format exactly."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> ResponseFormat {
        ResponseFormat::JsonSchema(
            r#"{"type":"json_schema","name":"p","schema":{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"],"additionalProperties":false}}"#
                .to_owned(),
        )
    }

    #[test]
    fn answers_are_checked_and_given_back_compact() {
        assert_eq!(
            check(&schema(), "```json\n{ \"n\": 3 }\n```"),
            Ok(r#"{ "n": 3 }"#.to_owned())
        );
        let err = check(&schema(), r#"{"n": "three"}"#).unwrap_err();
        assert!(err.contains("/n"), "{err}");
        assert!(check(&schema(), r#"{"n": 1, "x": 2}"#).is_err());
        assert_eq!(
            check(&schema(), "Sure! Here it is."),
            Err("the answer is not JSON".to_owned())
        );
        assert_eq!(
            check(&ResponseFormat::JsonObject, "{'a': 1,}"),
            Ok(r#"{"a":1}"#.to_owned())
        );
        assert!(check(&ResponseFormat::JsonObject, "[1]").is_err());
        assert_eq!(check(&ResponseFormat::Text, " hi "), Ok(" hi ".to_owned()));
    }

    #[test]
    fn the_instruction_carries_the_schema_itself() {
        let i = instruction(&schema()).unwrap();
        assert!(i.ends_with(r#"Schema: {"additionalProperties":false,"properties":{"n":{"type":"integer"}},"required":["n"],"type":"object"}"#), "{i}");
        assert!(
            instruction(&ResponseFormat::JsonObject)
                .unwrap()
                .contains("JSON object")
        );
        assert_eq!(instruction(&ResponseFormat::Text), None);
        // The chat surface's `json_schema` member holds the same object.
        let chat =
            ResponseFormat::JsonSchema(r#"{"name":"p","schema":{"type":"string"}}"#.to_owned());
        assert!(
            instruction(&chat)
                .unwrap()
                .ends_with(r#"Schema: {"type":"string"}"#)
        );
    }
}
