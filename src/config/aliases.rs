//! `MODEL_ALIASES` (or the Node project's `MODEL_MAP`): extra model ids and glob patterns, kept
//! in the order written, because among patterns the first match wins.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::ConfigError;
use super::parse::Vars;

const FORM: &str = r#"a JSON object of model ids such as {"gpt-4o":"qwen3.7-plus","claude-*haiku*":"qwen3.7-flash"}, or pairs such as gpt-4o=qwen3.7-plus,claude-*=qwen3.8-max"#;

/// Client model ids and the ids they stand for. A name holding `*` (any run of characters) or
/// `?` (one character) is a pattern; every other name is an exact id. Both are matched without
/// regard to ASCII case, against the whole requested id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelAliases {
    exact: Vec<(String, String)>,
    patterns: Vec<(Glob, String)>,
}

impl ModelAliases {
    /// Sorts `(name, target)` pairs into exact ids and patterns, keeping their order. A repeated
    /// exact name keeps its last target, as a JSON object read into a map did.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut out = Self::default();
        for (name, target) in pairs {
            if name.contains(['*', '?']) {
                out.patterns.push((Glob::new(&name), target));
            } else if let Some(slot) = out
                .exact
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            {
                slot.1 = target;
            } else {
                out.exact.push((name, target));
            }
        }
        out
    }

    /// The target of the exact alias `id`.
    pub fn exact(&self, id: &str) -> Option<&str> {
        self.exact
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(id))
            .map(|(_, t)| t.as_str())
    }

    /// The target of the first pattern that matches the whole of `id`.
    pub fn pattern(&self, id: &str) -> Option<&str> {
        let id: Vec<char> = id.chars().map(|c| c.to_ascii_lowercase()).collect();
        self.patterns
            .iter()
            .find(|(g, _)| g.matches(&id))
            .map(|(_, t)| t.as_str())
    }

    /// The exact alias names, in the order written (patterns name no single model to list).
    pub fn listed(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().map(|(n, _)| n.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }
}

/// A lower-cased glob: `*` is any run of characters (also none), `?` exactly one.
/// Also the allowed models of a key (`keys::limits`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob(Vec<char>);

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.chars().map(|c| c.to_ascii_lowercase()).collect())
    }

    /// Whether all of `s` matches, without regard to ASCII case.
    pub fn is_match(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().map(|c| c.to_ascii_lowercase()).collect();
        self.matches(&s)
    }

    /// Whether the lower-cased `s` matches as a whole. Linear backtracking to the last `*`:
    /// O(pattern × id) at worst, never exponential.
    fn matches(&self, s: &[char]) -> bool {
        let p = &self.0;
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, si));
                    pi += 1;
                }
                Some(&c) if c == '?' || c == s[si] => {
                    pi += 1;
                    si += 1;
                }
                _ => {
                    let Some((sp, ss)) = star else {
                        return false;
                    };
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

/// Reads `MODEL_ALIASES`, or else `MODEL_MAP` (the Node project's name for the same thing).
pub fn aliases(src: &dyn Vars) -> Result<ModelAliases, ConfigError> {
    let Some((var, raw)) = src.first(&["MODEL_ALIASES", "MODEL_MAP"]) else {
        return Ok(ModelAliases::default());
    };
    let pairs = if raw.starts_with('{') {
        serde_json::from_str::<Ordered>(&raw)
            .map_err(|_| ConfigError::invalid(var, FORM, &raw))?
            .0
    } else {
        pairs(&raw).ok_or_else(|| ConfigError::invalid(var, FORM, &raw))?
    };
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, v)| k.trim().is_empty() || v.trim().is_empty())
    {
        return Err(ConfigError::invalid(var, "non-empty ids on both sides", k));
    }
    Ok(ModelAliases::from_pairs(pairs))
}

/// `a=b,c=d` (the Node project's `MODEL_MAP` form); `None` when an item has no `=`.
fn pairs(raw: &str) -> Option<Vec<(String, String)>> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (k, v) = item.split_once('=')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// A JSON object of strings read in the order written (a map would sort the patterns).
struct Ordered(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of model ids")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    out.push(pair);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<ModelAliases, ConfigError> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        aliases(&move |name: &str| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn globs_match_the_whole_id_without_regard_to_case() {
        let g = |p: &str, s: &str| Glob::new(p).matches(&s.chars().collect::<Vec<_>>());
        assert!(g("claude-*haiku*", "claude-haiku-4-5"));
        assert!(g("claude-*haiku*", "claude-3-5-haiku-20241022"));
        assert!(
            !g("claude-*haiku*", "xclaude-haiku"),
            "anchored at the start"
        );
        assert!(!g("claude-*", "claude"), "the dash is required");
        assert!(g("claude-*", "claude-"), "a star may match nothing");
        assert!(g("gpt-4?", "gpt-4o"));
        assert!(!g("gpt-4?", "gpt-4"));
        assert!(!g("gpt-4?", "gpt-4o-mini"), "anchored at the end");
        assert!(g("*", ""));
        assert!(g("a*b*c", "aXbYbZc"));
        assert!(!g("a*b*c", "aXbYbZ"));
        let a = ModelAliases::from_pairs([("Claude-*".to_owned(), "x".to_owned())]);
        assert_eq!(a.pattern("CLAUDE-Opus-4-1"), Some("x"));
    }

    #[test]
    fn json_keeps_the_order_written_and_pairs_are_accepted() {
        let a = read(&[(
            "MODEL_ALIASES",
            r#"{"z-*":"first","gpt-4o":"qwen3.7-plus","*":"last"}"#,
        )])
        .unwrap();
        assert_eq!(a.pattern("z-1"), Some("first"), "not sorted after `*`");
        assert_eq!(a.pattern("y"), Some("last"));
        assert_eq!(a.exact("GPT-4o"), Some("qwen3.7-plus"));
        assert_eq!(a.listed().collect::<Vec<_>>(), ["gpt-4o"]);
        let b = read(&[(
            "MODEL_MAP",
            "claude-opus-5=qwen3.8-max, *=qwen3.8-max-thinking",
        )])
        .unwrap();
        assert_eq!(b.exact("claude-opus-5"), Some("qwen3.8-max"));
        assert_eq!(b.pattern("anything"), Some("qwen3.8-max-thinking"));
        let c = read(&[
            ("MODEL_ALIASES", "gpt-4o=qwen3.7-plus"),
            ("MODEL_MAP", "a=b"),
        ])
        .unwrap();
        assert_eq!(c.exact("a"), None, "MODEL_ALIASES wins");
    }

    #[test]
    fn bad_forms_name_the_variable() {
        for (var, value) in [
            ("MODEL_ALIASES", "gpt-4o"),
            ("MODEL_ALIASES", r#"{"a":1}"#),
            ("MODEL_ALIASES", r#"{"a":" "}"#),
            ("MODEL_MAP", "a=b,c"),
            ("MODEL_MAP", "=b"),
        ] {
            let err = read(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}: {err}");
        }
    }
}
