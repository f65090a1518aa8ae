//! A call's arguments against its tool's JSON Schema: obvious type slips coerced (`"3"` for an
//! integer, `"true"` for a boolean, a JSON text for an object or array), then validated; with
//! `strict`, properties the schema does not name are refused too.

use serde_json::{Map, Value};

/// Coerces `args` toward `schema`, then checks them; the problems found, each naming where.
pub fn check(schema: &Value, strict: bool, args: &mut Map<String, Value>) -> Result<(), String> {
    coerce(schema, args);
    // Only a strict check needs a schema of its own.
    let mut schema = std::borrow::Cow::Borrowed(schema);
    if strict && let Value::Object(s) = schema.to_mut() {
        s.entry("additionalProperties")
            .or_insert(Value::Bool(false));
    }
    let validator = match jsonschema::validator_for(&schema) {
        Ok(v) => v,
        Err(e) => {
            // The client's schema is not one: nothing to check against.
            tracing::debug!(error = %e, "a tool's parameters are not a valid JSON Schema");
            return Ok(());
        }
    };
    let instance = Value::Object(std::mem::take(args));
    let problems: Vec<String> = validator
        .iter_errors(&instance)
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
    if let Value::Object(back) = instance {
        *args = back;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// String values where the schema wants another type, converted when they read as it.
fn coerce(schema: &Value, args: &mut Map<String, Value>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, value) in args.iter_mut() {
        let Some(prop) = props.get(key) else {
            continue;
        };
        let Some(ty) = prop.get("type").and_then(Value::as_str) else {
            continue;
        };
        if let Value::String(s) = &*value
            && let Some(v) = converted(ty, s.trim())
        {
            *value = v;
        }
        if let (Value::Object(inner), "object") = (&mut *value, ty) {
            coerce(prop, inner);
        }
    }
}

/// `text` as a value of the JSON type `ty`, when it reads as one.
fn converted(ty: &str, t: &str) -> Option<Value> {
    match ty {
        "integer" => t.parse::<i64>().ok().map(Value::from),
        "number" => t
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Value::from),
        "boolean" => match t {
            "true" | "True" => Some(Value::Bool(true)),
            "false" | "False" => Some(Value::Bool(false)),
            _ => None,
        },
        "object" => serde_json::from_str::<Value>(t)
            .ok()
            .filter(Value::is_object),
        "array" => serde_json::from_str::<Value>(t)
            .ok()
            .filter(Value::is_array),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "required": ["path"], "properties": {
            "path": {"type": "string"},
            "limit": {"type": "integer"},
            "all": {"type": "boolean"},
            "mode": {"enum": ["fast", "safe"]},
            "opts": {"type": "object", "properties": {"depth": {"type": "integer"}}}
        }})
    }

    fn args(v: Value) -> Map<String, Value> {
        let Value::Object(m) = v else { panic!() };
        m
    }

    #[test]
    fn type_slips_are_coerced() {
        let mut a =
            args(json!({"path": "a", "limit": " 3", "all": "true", "opts": "{\"depth\": \"2\"}"}));
        assert_eq!(check(&schema(), false, &mut a), Ok(()));
        assert_eq!(
            Value::Object(a),
            json!({"path": "a", "limit": 3, "all": true, "opts": {"depth": 2}})
        );
        let mut a = args(json!({"path": "a", "opts": {"depth": "2"}}));
        assert_eq!(check(&schema(), false, &mut a), Ok(()));
        assert_eq!(a["opts"]["depth"], 2);
    }

    #[test]
    fn what_is_wrong_is_named() {
        let mut a = args(json!({"limit": "many", "mode": "slow"}));
        let problems = check(&schema(), false, &mut a).unwrap_err();
        assert!(
            problems.contains("\"path\" is a required property"),
            "{problems}"
        );
        assert!(problems.contains("/limit: "), "{problems}");
        assert!(problems.contains("/mode: "), "{problems}");
        // Unknown properties pass unless strict.
        let mut a = args(json!({"path": "a", "colour": "red"}));
        assert_eq!(check(&schema(), false, &mut a), Ok(()));
        let problems = check(&schema(), true, &mut a).unwrap_err();
        assert!(problems.contains("colour"), "{problems}");
    }

    #[test]
    fn a_schema_that_is_not_one_checks_nothing() {
        let mut a = args(json!({"x": 1}));
        assert_eq!(check(&json!({"type": 12}), true, &mut a), Ok(()));
    }
}
