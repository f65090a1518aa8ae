//! The call syntax the model is asked to write (a namespaced tag the site does not intercept,
//! docs/tools.md), the other syntaxes models fall back to, and how past calls and results are
//! written back into the prompt in that same syntax.

/// Opens one call: `<q2a:call name="NAME">` then the arguments as a JSON object.
pub const CALL_OPEN: &str = "<q2a:call";
pub const CALL_CLOSE: &str = "</q2a:call>";
const RESULT_OPEN: &str = "<q2a:result";
const RESULT_CLOSE: &str = "</q2a:result>";

/// A way of writing calls that the parser accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// Ours: `<q2a:call name="NAME">{…}</q2a:call>`.
    Own,
    /// Hermes: `<tool_call>{"name": …, "arguments": …}</tool_call>`; may hold several objects,
    /// or Qwen-Coder calls.
    Hermes,
    /// Qwen-Coder: `<function=NAME><parameter=KEY>VALUE</parameter></function>`.
    Coder,
}

impl Syntax {
    pub const ALL: [Syntax; 3] = [Syntax::Own, Syntax::Hermes, Syntax::Coder];

    /// The text that starts a block of this syntax.
    pub fn open(self) -> &'static str {
        match self {
            Syntax::Own => CALL_OPEN,
            Syntax::Hermes => "<tool_call>",
            Syntax::Coder => "<function=",
        }
    }

    /// The text that ends it.
    pub fn close(self) -> &'static str {
        match self {
            Syntax::Own => CALL_CLOSE,
            Syntax::Hermes => "</tool_call>",
            Syntax::Coder => "</function>",
        }
    }
}

/// A past call, as the model is asked to write it.
pub fn call(name: &str, arguments: &str) -> String {
    let arguments = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments.trim()
    };
    format!(
        "{CALL_OPEN} name=\"{}\">\n{arguments}\n{CALL_CLOSE}",
        attr(name)
    )
}

/// A tool's answer to the call `call_id`.
pub fn result(call_id: &str, name: Option<&str>, is_error: bool, content: &str) -> String {
    let name = name.map_or(String::new(), |n| format!(" name=\"{}\"", attr(n)));
    let error = if is_error { " error=\"true\"" } else { "" };
    format!(
        "{RESULT_OPEN} call=\"{}\"{name}{error}>\n{content}\n{RESULT_CLOSE}",
        attr(call_id)
    )
}

/// `value` safe inside a double-quoted attribute.
fn attr(value: &str) -> String {
    value.replace('&', "&amp;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_calls_and_results_are_written_in_the_syntax_the_model_is_asked_for() {
        assert_eq!(
            call("read_file", r#"{"path":"a.rs"}"#),
            "<q2a:call name=\"read_file\">\n{\"path\":\"a.rs\"}\n</q2a:call>"
        );
        assert_eq!(call("now", ""), "<q2a:call name=\"now\">\n{}\n</q2a:call>");
        assert_eq!(
            result("call_1", Some("read_file"), true, "no such file"),
            "<q2a:result call=\"call_1\" name=\"read_file\" error=\"true\">\nno such file\n</q2a:result>"
        );
        assert_eq!(
            result("c\"2", None, false, "ok"),
            "<q2a:result call=\"c&quot;2\">\nok\n</q2a:result>"
        );
    }
}
