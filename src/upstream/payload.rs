//! The v2 request bodies (protocol §5.1–§5.2) built from the internal request.

use serde::Serialize;

use crate::chat::ChatRequest;

/// `POST /api/v2/chats/new`.
#[derive(Debug, Serialize)]
pub struct NewChatBody<'a> {
    pub title: &'static str,
    pub models: [&'a str; 1],
    pub chat_mode: &'static str,
    pub chat_type: &'static str,
    pub timestamp: u128,
    pub project_id: &'static str,
}

impl<'a> NewChatBody<'a> {
    pub fn new(req: &'a ChatRequest) -> Self {
        Self {
            title: "New Chat",
            models: [&req.model],
            chat_mode: "normal",
            chat_type: req.chat_type.as_str(),
            timestamp: now().as_millis(),
            project_id: "",
        }
    }
}

/// `POST /api/v2/chat/completions?chat_id=…`.
#[derive(Debug, Serialize)]
pub struct CompletionBody<'a> {
    pub stream: bool,
    pub version: &'static str,
    pub incremental_output: bool,
    pub chat_id: &'a str,
    #[serde(rename = "chatId")]
    pub chat_id_camel: &'a str,
    pub chat_mode: &'static str,
    pub model: &'a str,
    pub parent_id: Option<&'a str>,
    #[serde(rename = "parentId")]
    pub parent_id_camel: Option<&'a str>,
    pub messages: [WireMessage<'a>; 1],
    pub timestamp: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireMessage<'a> {
    pub fid: String,
    pub parent_id: Option<&'a str>,
    #[serde(rename = "parent_id")]
    pub parent_id_snake: Option<&'a str>,
    pub children_ids: [String; 1],
    pub role: &'static str,
    pub content: &'a str,
    #[serde(rename = "user_action")]
    pub user_action: &'static str,
    pub files: [(); 0],
    pub timestamp: u64,
    pub models: [&'a str; 1],
    #[serde(rename = "chat_type")]
    pub chat_type: &'static str,
    #[serde(rename = "sub_chat_type")]
    pub sub_chat_type: &'static str,
    #[serde(rename = "feature_config")]
    pub feature_config: FeatureConfig,
    pub extra: Extra,
}

#[derive(Debug, Serialize)]
#[expect(clippy::struct_excessive_bools, reason = "the upstream's own flags")]
pub struct FeatureConfig {
    pub thinking_enabled: bool,
    /// Without `"phase"` the site sends no phases and nothing can be routed (protocol §1.3).
    pub output_schema: &'static str,
    pub research_mode: &'static str,
    pub auto_thinking: bool,
    pub thinking_mode: &'static str,
    pub thinking_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u64>,
    pub auto_search: bool,
    // The site's own tools stay off: otherwise it intercepts text that looks like a tool call.
    pub function_calling: bool,
    pub enable_tools: bool,
    pub enable_function_call: bool,
    pub tool_choice: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Extra {
    pub meta: ExtraMeta,
}

#[derive(Debug, Serialize)]
pub struct ExtraMeta {
    #[serde(rename = "subChatType")]
    pub sub_chat_type: &'static str,
}

impl<'a> CompletionBody<'a> {
    pub fn new(req: &'a ChatRequest, chat_id: &'a str) -> Self {
        let ts = now().as_secs();
        let chat_type = req.chat_type.as_str();
        let search = matches!(req.chat_type, crate::chat::ChatType::Search);
        Self {
            stream: true,
            version: "2.1",
            incremental_output: true,
            chat_id,
            chat_id_camel: chat_id,
            chat_mode: "normal",
            model: &req.model,
            parent_id: None,
            parent_id_camel: None,
            messages: [WireMessage {
                fid: uuid::Uuid::new_v4().to_string(),
                parent_id: None,
                parent_id_snake: None,
                children_ids: [uuid::Uuid::new_v4().to_string()],
                role: "user",
                content: &req.prompt,
                user_action: "chat",
                files: [],
                timestamp: ts,
                models: [&req.model],
                chat_type,
                sub_chat_type: chat_type,
                feature_config: FeatureConfig {
                    thinking_enabled: req.thinking,
                    output_schema: "phase",
                    research_mode: "normal",
                    auto_thinking: false,
                    thinking_mode: if req.thinking { "Thinking" } else { "Disabled" },
                    thinking_format: "summary",
                    thinking_budget: req.thinking_budget.filter(|_| req.thinking),
                    auto_search: search,
                    function_calling: false,
                    enable_tools: false,
                    enable_function_call: false,
                    tool_choice: "none",
                },
                extra: Extra {
                    meta: ExtraMeta {
                        sub_chat_type: chat_type,
                    },
                },
            }],
            timestamp: ts,
        }
    }
}

fn now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
