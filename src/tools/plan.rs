//! What a request offers the model, as the model is told it: each tool under a name the site
//! does not intercept (built-in names get an alias), compact signatures, and the rules of the
//! call syntax for this `tool_choice` (docs/tools.md).

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::parse::{Offered, Parser};
use super::syntax::CALL_OPEN;
use crate::conversation::{Message, Tool, ToolChoice};

/// Tool names the site treats as its own built-in tools: a call to one is run (and refused)
/// by the platform instead of reaching us (docs/upstream.md §12).
const BUILT_IN: &[&str] = &[
    "read",
    "write",
    "web_search",
    "search",
    "code_interpreter",
    "image_gen",
    "image_generation",
    "image_edit",
    "browser",
    "web_extractor",
    "python",
];

/// The tools of one request, ready for the prompt and for reading the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Each offered tool, by the name the model is told.
    tools: Vec<Offer>,
    pub choice: Choice,
    /// At most one call per answer (`parallel_tool_calls: false`).
    pub single: bool,
    /// Calls the conversation's recent history holds `REPEATS` times or more: the client's
    /// name, the canonical arguments, and how many times.
    repeated: Vec<(String, String, usize)>,
    template: Arc<str>,
}

/// The instructions' template (`TOOL_PROMPT_FILE` replaces it) and its places.
pub const DEFAULT_TEMPLATE: &str = include_str!("prompt.txt");
pub const TOOLS: &str = "{{TOOLS}}";
const CHOICE: &str = "{{CHOICE}}";
const PARALLEL: &str = "{{PARALLEL}}";

/// How many of the last calls of a conversation the loop guard looks at.
const RECENT_CALLS: usize = 10;
/// A call made this many times among them is not made again without a word.
const REPEATS: usize = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Offer {
    /// The name the client gave it.
    name: String,
    /// The name the model is told.
    prompted: String,
    description: Option<String>,
    parameters: Value,
    strict: bool,
}

/// Whether a call is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    Auto,
    /// Some call must come.
    Required,
    /// A call of this tool (by the client's name) must come; it is the only one offered.
    Named(String),
}

impl Plan {
    /// The plan for these tools and choice; `None` when no tool is offered (`tool_choice:
    /// "none"`, no tools, or a named tool that is not among them).
    pub fn new(
        tools: &[Tool],
        choice: &ToolChoice,
        parallel: Option<bool>,
        template: Arc<str>,
    ) -> Option<Self> {
        let (choice, offered): (Choice, Vec<&Tool>) = match choice {
            ToolChoice::None => return None,
            ToolChoice::Auto => (Choice::Auto, tools.iter().collect()),
            ToolChoice::Required => (Choice::Required, tools.iter().collect()),
            ToolChoice::Named(n) => (
                Choice::Named(n.clone()),
                tools.iter().filter(|t| t.name == *n).collect(),
            ),
        };
        if offered.is_empty() {
            return None;
        }
        let names: Vec<&str> = offered.iter().map(|t| t.name.as_str()).collect();
        let tools = offered
            .iter()
            .map(|t| Offer {
                name: t.name.clone(),
                prompted: alias(&t.name, &names),
                description: t.description.clone(),
                parameters: t
                    .parameters
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
                strict: t.strict,
            })
            .collect();
        Some(Self {
            tools,
            choice,
            single: parallel == Some(false),
            repeated: Vec::new(),
            template,
        })
    }

    /// The plan, knowing the calls of the conversation so far (for the loop guard).
    #[must_use]
    pub fn with_history(mut self, messages: &[Message]) -> Self {
        let recent: Vec<(String, String)> = messages
            .iter()
            .flat_map(|m| &m.tool_calls)
            .rev()
            .take(RECENT_CALLS)
            .map(|c| (c.name.clone(), canonical_text(&c.arguments)))
            .collect();
        for (name, args) in &recent {
            let times = recent
                .iter()
                .filter(|(n, a)| n == name && a == args)
                .count();
            if times >= REPEATS && !self.repeated.iter().any(|(n, a, _)| n == name && a == args) {
                self.repeated.push((name.clone(), args.clone(), times));
            }
        }
        self
    }

    /// How many times the recent history made this call, when that is too many.
    pub fn repeats(&self, name: &str, args: &Map<String, Value>) -> Option<usize> {
        let args = Value::Object(args.clone()).to_string();
        self.repeated
            .iter()
            .find(|(n, a, _)| n == name && *a == args)
            .map(|(.., times)| *times)
    }

    /// The name the model is told for the client's `name` (itself when it was not renamed, or
    /// not offered).
    pub fn prompted<'a>(&'a self, name: &'a str) -> &'a str {
        self.tools
            .iter()
            .find(|t| t.name == name)
            .map_or(name, |t| t.prompted.as_str())
    }

    /// The client's name for a name the model wrote.
    pub fn client_name<'a>(&'a self, prompted: &'a str) -> &'a str {
        self.tools
            .iter()
            .find(|t| t.prompted == prompted)
            .map_or(prompted, |t| t.name.as_str())
    }

    /// Checks (and coerces) the arguments of a call of the tool the client calls `name`:
    /// `Err` with what is wrong, and whether the tool is strict.
    pub fn check(&self, name: &str, args: &mut Map<String, Value>) -> Result<(), (String, bool)> {
        let Some(tool) = self.tools.iter().find(|t| t.name == name) else {
            return Ok(());
        };
        super::validate::check(&tool.parameters, tool.strict, args).map_err(|e| (e, tool.strict))
    }

    /// A parser for an answer to this plan.
    pub fn parser(&self) -> Parser {
        Parser::new(Offered::new(
            self.tools
                .iter()
                .map(|t| (t.prompted.clone(), t.parameters.clone())),
        ))
    }

    /// The instructions that go before the conversation: the template with this plan's tools
    /// and rules in its places.
    pub fn instructions(&self) -> String {
        let mut tools = String::new();
        for t in &self.tools {
            let _ = write!(tools, "\n- {}({})", t.prompted, signature(&t.parameters));
            if let Some(d) = t
                .description
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
            {
                let _ = write!(tools, ": {d}");
            }
            tools.push('\n');
            for (key, about) in parameter_notes(&t.parameters) {
                let _ = writeln!(tools, "    {key}: {about}");
            }
        }
        let choice = match self.choice {
            Choice::Auto => {
                "Call a tool when it helps with the task; otherwise answer in plain text."
            }
            Choice::Required | Choice::Named(_) => "This answer must contain a tool call.",
        };
        let parallel = if self.single {
            "Make at most one call in this answer."
        } else {
            "You may make several calls in one answer, one block each, when they do not depend on each other."
        };
        self.template
            .replace(TOOLS, &tools)
            .replace(CHOICE, choice)
            .replace(PARALLEL, parallel)
    }

    /// A line after the conversation that recalls the syntax.
    pub fn reminder(&self) -> String {
        match &self.choice {
            Choice::Auto => format!(
                "(Answer in plain text, or call tools with {CALL_OPEN} name=\"…\"> blocks as described above.)"
            ),
            Choice::Required | Choice::Named(_) => format!(
                "(Call a tool now with a {CALL_OPEN} name=\"…\"> block as described above.)"
            ),
        }
    }
}

/// Arguments as compact JSON with sorted keys, so that equal arguments compare equal.
fn canonical_text(arguments: &str) -> String {
    super::lenient::parse(arguments).map_or_else(|| arguments.trim().to_owned(), |v| v.to_string())
}

/// `name`, or an alias for a name the site would take for one of its own tools; never one of
/// `taken`.
fn alias(name: &str, taken: &[&str]) -> String {
    if !BUILT_IN.contains(&name.to_ascii_lowercase().as_str()) {
        return name.to_owned();
    }
    let mut alias = format!("{name}_tool");
    while taken.contains(&alias.as_str()) {
        alias.push('_');
    }
    alias
}

/// `path: string, limit?: integer, mode?: "a" | "b"` for an object schema.
fn signature(schema: &Value) -> String {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return String::new();
    };
    props
        .iter()
        .map(|(key, p)| {
            let optional = if required.contains(&key.as_str()) {
                ""
            } else {
                "?"
            };
            format!("{key}{optional}: {}", type_of(p))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A compact type: `string`, `integer`, `"a" | "b"`, `string[]`, `{a: string}`.
fn type_of(schema: &Value) -> String {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(options) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        return options.iter().map(type_of).collect::<Vec<_>>().join(" | ");
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ if schema.get("properties").is_some() => "object".to_owned(),
        _ => "any".to_owned(),
    };
    match ty.as_str() {
        "array" => match schema.get("items") {
            Some(items) => format!("{}[]", type_of(items)),
            None => "array".to_owned(),
        },
        "object" if schema.get("properties").is_some() => format!("{{{}}}", signature(schema)),
        _ => ty,
    }
}

/// Each top-level parameter's description (and default), for the lines under a signature.
fn parameter_notes(schema: &Value) -> Vec<(String, String)> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .filter_map(|(key, p)| {
            let about = p.get("description").and_then(Value::as_str).map(str::trim);
            let default = p.get("default").map(|d| format!("(default {d})"));
            let note = match (about.filter(|a| !a.is_empty()), default) {
                (Some(a), Some(d)) => format!("{a} {d}"),
                (Some(a), None) => a.to_owned(),
                (None, Some(d)) => d,
                (None, None) => return None,
            };
            Some((key.clone(), note.replace('\n', " ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn default() -> Arc<str> {
        DEFAULT_TEMPLATE.into()
    }

    fn tool(name: &str, parameters: Value) -> Tool {
        Tool {
            name: name.to_owned(),
            description: Some(format!("Does {name}.")),
            parameters: Some(parameters),
            strict: false,
        }
    }

    #[test]
    fn signatures_are_compact_and_name_every_parameter() {
        let t = tool(
            "edit",
            json!({"type": "object", "required": ["path", "edits"], "properties": {
                "path": {"type": "string", "description": "Absolute path."},
                "edits": {"type": "array", "items": {"type": "object", "properties": {"old": {"type": "string"}}}},
                "mode": {"enum": ["fast", "safe"], "default": "safe"},
                "n": {"type": ["integer", "null"]}
            }}),
        );
        let plan = Plan::new(&[t], &ToolChoice::Auto, None, default()).unwrap();
        let text = plan.instructions();
        assert!(
            text.contains(
                "- edit(edits: {old?: string}[], mode?: \"fast\" | \"safe\", n?: integer | null, path: string): Does edit.\n    mode: (default \"safe\")\n    path: Absolute path.\n"
            ),
            "{text}"
        );
        assert!(text.contains("<q2a:call name=\"TOOL_NAME\">"), "{text}");
        assert!(!text.contains("<tool_call>{"), "{text}");
        assert!(text.contains("several calls"), "{text}");
    }

    #[test]
    fn built_in_names_get_an_alias_that_maps_back() {
        let tools = [
            tool("read", json!({})),
            tool("read_tool", json!({})),
            tool("grep", json!({})),
        ];
        let plan = Plan::new(&tools, &ToolChoice::Auto, None, default()).unwrap();
        assert_eq!(plan.prompted("read"), "read_tool_");
        assert_eq!(plan.client_name("read_tool_"), "read");
        assert_eq!(plan.prompted("read_tool"), "read_tool");
        assert_eq!(plan.prompted("grep"), "grep");
        assert!(plan.instructions().contains("- read_tool_()"));
        assert!(!plan.instructions().contains("- read()"));
    }

    #[test]
    fn choice_and_parallel_calls_shape_what_is_offered_and_asked() {
        let tools = [tool("a", json!({})), tool("b", json!({}))];
        assert_eq!(Plan::new(&tools, &ToolChoice::None, None, default()), None);
        assert_eq!(Plan::new(&[], &ToolChoice::Auto, None, default()), None);
        let named = Plan::new(
            &tools,
            &ToolChoice::Named("b".into()),
            Some(false),
            default(),
        )
        .unwrap();
        let text = named.instructions();
        assert!(text.contains("- b()") && !text.contains("- a()"), "{text}");
        assert!(text.contains("must contain a tool call"), "{text}");
        assert!(text.contains("at most one call"), "{text}");
        assert!(named.single);
        assert!(named.reminder().contains("Call a tool now"));
        assert_eq!(
            Plan::new(&tools, &ToolChoice::Named("zz".into()), None, default()),
            None
        );
    }
}
