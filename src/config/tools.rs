//! Settings of tool calling: the template of the instructions the model is given
//! (`TOOL_PROMPT_FILE`, read once at start; docs/tools.md).

use std::sync::Arc;

use super::{ConfigError, Vars};
use crate::tools::plan::{DEFAULT_TEMPLATE, TOOLS};

#[derive(Clone, Debug)]
pub struct ToolsConfig {
    /// The instructions' template: the built-in one, or the file's.
    pub prompt_template: Arc<str>,
}

pub fn tools(src: &dyn Vars) -> Result<ToolsConfig, ConfigError> {
    const VAR: &str = "TOOL_PROMPT_FILE";
    let Some(path) = src
        .get(VAR)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    else {
        return Ok(ToolsConfig {
            prompt_template: DEFAULT_TEMPLATE.into(),
        });
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError::invalid_owned(VAR, format!("a readable UTF-8 text file ({e})"), &path)
    })?;
    if !text.contains(TOOLS) {
        return Err(ConfigError::invalid_owned(
            VAR,
            format!("a template that holds {TOOLS}, where the tools are listed"),
            &path,
        ));
    }
    Ok(ToolsConfig {
        prompt_template: text.into(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(map: HashMap<String, String>) -> impl Fn(&str) -> Option<String> {
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_built_in_template_unless_a_file_replaces_it() {
        let none = vars(HashMap::new());
        assert_eq!(&*tools(&none).unwrap().prompt_template, DEFAULT_TEMPLATE);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tools.txt");
        std::fs::write(
            &file,
            "Tools:\n{{TOOLS}}\nCall them as <q2a:call name=\"…\">.",
        )
        .unwrap();
        let with = vars(HashMap::from([(
            "TOOL_PROMPT_FILE".to_owned(),
            file.display().to_string(),
        )]));
        assert!(
            tools(&with)
                .unwrap()
                .prompt_template
                .starts_with("Tools:\n{{TOOLS}}")
        );

        std::fs::write(&file, "no place for the tools").unwrap();
        let err = tools(&with).unwrap_err().to_string();
        assert!(err.contains("{{TOOLS}}"), "{err}");
        let missing = vars(HashMap::from([(
            "TOOL_PROMPT_FILE".to_owned(),
            "/no/such/file".to_owned(),
        )]));
        let err = tools(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with("TOOL_PROMPT_FILE: expected a readable"),
            "{err}"
        );
    }
}
