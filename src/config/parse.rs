//! Typed readers for environment values: each failure names the variable and the form it expects.

use std::time::Duration;

use super::ConfigError;

/// The variables configuration is read from: the process environment, or a map in tests.
pub trait Vars {
    /// The value of `name`, with surrounding white space and one pair of matching quotes
    /// removed; `None` when unset or empty.
    fn get(&self, name: &str) -> Option<String>;

    /// The first of `names` that is set, with the name it was found under.
    fn first(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names.iter().find_map(|n| self.get(n).map(|v| (*n, v)))
    }
}

impl<F> Vars for F
where
    F: Fn(&str) -> Option<String>,
{
    fn get(&self, name: &str) -> Option<String> {
        self(name)
            .map(|v| unquote(v.trim()).trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}

/// `v` without one pair of matching quotes around it. `docker run --env-file` (unlike a `.env`
/// read by the server, or compose's `env_file`) keeps quotes as part of the value, so that
/// `ACCOUNTS="a@b.c:pw"` or `MODEL_TO_ACCOUNT_MAP='{"m":["a@b.c"]}'` would otherwise arrive
/// with its quotes. A value holding its quote character inside as well is left as it is.
pub fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q))
            && !inner.contains(q)
        {
            return inner;
        }
    }
    v
}

pub fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::invalid(
            var,
            "true/false, 1/0 or yes/no",
            value,
        )),
    }
}

pub fn bool_or(src: &dyn Vars, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    src.get(var).map_or(Ok(default), |v| parse_bool(var, &v))
}

/// Seconds, possibly with a fraction (`2.5`); never negative.
pub fn seconds_or(
    src: &dyn Vars,
    var: &'static str,
    default: f64,
) -> Result<Duration, ConfigError> {
    let Some(raw) = src.get(var) else {
        return Ok(Duration::from_secs_f64(default));
    };
    match raw.parse::<f64>() {
        Ok(s) if (0.0..1e12).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(ConfigError::invalid(
            var,
            "a number of seconds such as 15 or 2.5",
            &raw,
        )),
    }
}

/// Like [`seconds_or`], but zero is refused (an interval or a timeout of 0 would never fire sensibly).
pub fn positive_seconds_or(
    src: &dyn Vars,
    var: &'static str,
    default: f64,
) -> Result<Duration, ConfigError> {
    let d = seconds_or(src, var, default)?;
    if d.is_zero() {
        return Err(ConfigError::invalid(
            var,
            "a number of seconds greater than 0",
            "0",
        ));
    }
    Ok(d)
}

pub fn uint_or<T>(src: &dyn Vars, var: &'static str, default: T, min: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = src.get(var) else {
        return Ok(default);
    };
    match raw.parse::<T>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(ConfigError::invalid_owned(
            var,
            format!("a whole number ≥ {min}"),
            &raw,
        )),
    }
}

/// The value named by `value` (trimmed, any case) among `choices`.
pub fn lookup<T: Copy>(choices: &[(&str, T)], value: &str) -> Option<T> {
    let lower = value.trim().to_ascii_lowercase();
    choices
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, v)| *v)
}

/// One of a fixed set of words, compared without regard to case.
pub fn choice_or<T: Copy>(
    src: &dyn Vars,
    var: &'static str,
    choices: &[(&str, T)],
    default: T,
) -> Result<T, ConfigError> {
    let Some(raw) = src.get(var) else {
        return Ok(default);
    };
    lookup(choices, &raw).ok_or_else(|| {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        ConfigError::invalid_owned(var, format!("one of {}", names.join(", ")), &raw)
    })
}

/// A comma-separated list with empty items dropped.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(pairs: &'static [(&'static str, &'static str)]) -> impl Vars {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn booleans_accept_every_spelling() {
        for (v, want) in [
            ("TRUE", true),
            ("Yes", true),
            ("1", true),
            ("no", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool("X", v).unwrap(), want, "{v}");
        }
        let err = parse_bool("OUTPUT_THINK", "maybe").unwrap_err().to_string();
        assert!(
            err.contains("OUTPUT_THINK") && err.contains("true/false"),
            "{err}"
        );
    }

    #[test]
    fn seconds_take_fractions_and_refuse_garbage() {
        let s = src(&[("A", "2.5"), ("B", "-1"), ("C", "soon"), ("D", "  ")]);
        assert_eq!(
            seconds_or(&s, "A", 1.0).unwrap(),
            Duration::from_millis(2500)
        );
        assert!(seconds_or(&s, "B", 1.0).is_err());
        assert!(
            seconds_or(&s, "C", 1.0)
                .unwrap_err()
                .to_string()
                .contains('C')
        );
        assert_eq!(seconds_or(&s, "D", 1.0).unwrap(), Duration::from_secs(1));
    }

    #[test]
    fn one_pair_of_matching_quotes_is_removed_as_docker_env_files_keep_them() {
        let s = src(&[
            ("A", "\"a@b.c:pw\""),
            ("B", r#"'{"m":["a@b.c"]}'"#),
            ("C", "\"half"),
            ("D", r#""say "hi"""#),
            ("E", "' '"),
            ("F", "'mixed\""),
        ]);
        assert_eq!(s.get("A").as_deref(), Some("a@b.c:pw"));
        assert_eq!(s.get("B").as_deref(), Some(r#"{"m":["a@b.c"]}"#));
        assert_eq!(s.get("C").as_deref(), Some("\"half"));
        assert_eq!(s.get("D").as_deref(), Some(r#""say "hi"""#));
        assert_eq!(s.get("E"), None, "quoted blank is unset");
        assert_eq!(s.get("F").as_deref(), Some("'mixed\""));
    }
}
