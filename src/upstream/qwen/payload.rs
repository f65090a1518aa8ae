//! The v2 request bodies (docs/upstream.md §5.1–§5.2) built from a turn.

use serde::Serialize;

use crate::conversation::{ChatType, Media, MediaSource};
use crate::media::MediaKind;
use crate::upstream::Turn;
pub use crate::upstream::Uploaded;

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
    pub fn new(req: &'a Turn) -> Self {
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
    /// Aspect ratio for t2i/t2v, also repeated on the message (docs/upstream.md §9.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<&'static str>,
}

/// The message `content`: the prompt, or (with media passed by URL) an array of parts (§5.4).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum WireContent<'a> {
    Text(&'a str),
    Parts(Vec<ContentItem<'a>>),
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ContentItem<'a> {
    Text { text: &'a str },
    Image { image: &'a str },
    Video { video: &'a str },
    Audio { audio: &'a str },
}

/// One `files[]` entry in the shape the site's own front end sends (docs/upstream.md §10.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub file: FileInfo,
    pub id: String,
    pub url: String,
    pub name: String,
    #[serde(rename = "collection_name")]
    pub collection_name: &'static str,
    pub progress: u8,
    pub status: &'static str,
    pub green_net: &'static str,
    pub size: u64,
    pub error: &'static str,
    pub item_id: String,
    #[serde(rename = "file_type")]
    pub file_type: String,
    pub show_type: &'static str,
    #[serde(rename = "file_class")]
    pub file_class: &'static str,
    pub upload_task_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileInfo {
    pub created_at: i64,
    pub data: serde_json::Map<String, serde_json::Value>,
    pub filename: String,
    pub hash: Option<String>,
    pub id: String,
    pub user_id: String,
    pub meta: FileMeta,
    pub update_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileMeta {
    pub name: String,
    pub size: u64,
    pub content_type: String,
    pub parse_meta: ParseMeta,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParseMeta {
    pub parse_status: &'static str,
}

impl FileEntry {
    pub fn new(up: &Uploaded, kind: MediaKind, name: &str, mime: &str, size: u64) -> Self {
        let user_id = up
            .file_path
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Self {
            kind: kind.show_type(),
            file: FileInfo {
                created_at: up.uploaded_at,
                data: serde_json::Map::new(),
                filename: name.to_owned(),
                hash: None,
                id: up.file_id.clone(),
                user_id,
                meta: FileMeta {
                    name: name.to_owned(),
                    size,
                    content_type: mime.to_owned(),
                    parse_meta: ParseMeta {
                        parse_status: "success",
                    },
                },
                update_at: up.uploaded_at,
            },
            id: up.file_id.clone(),
            url: up.file_url.clone(),
            name: name.to_owned(),
            collection_name: "",
            progress: 0,
            status: "uploaded",
            green_net: "success",
            size,
            error: "",
            item_id: uuid::Uuid::new_v4().to_string(),
            file_type: mime.to_owned(),
            show_type: kind.show_type(),
            file_class: kind.file_class(),
            upload_task_id: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// A `files[]` item: an uploaded file, or (image edit) an image passed by URL (§9.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum WireFile {
    Uploaded(Box<FileEntry>),
    Url {
        #[serde(rename = "type")]
        kind: &'static str,
        url: String,
    },
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
    pub content: WireContent<'a>,
    #[serde(rename = "user_action")]
    pub user_action: &'static str,
    pub files: &'a [WireFile],
    pub timestamp: u64,
    pub models: [&'a str; 1],
    #[serde(rename = "chat_type")]
    pub chat_type: &'static str,
    #[serde(rename = "sub_chat_type")]
    pub sub_chat_type: &'static str,
    #[serde(rename = "feature_config")]
    pub feature_config: FeatureConfig,
    pub extra: Extra,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[expect(clippy::struct_excessive_bools, reason = "the upstream's own flags")]
pub struct FeatureConfig {
    pub thinking_enabled: bool,
    /// Without `"phase"` the site sends no phases and nothing can be routed
    /// (docs/upstream.md §1.3).
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
    /// `files` are the uploads made for this attempt's account, in attachment order.
    pub fn new(req: &'a Turn, chat_id: &'a str, files: &'a [WireFile]) -> Self {
        let ts = now().as_secs();
        let chat_type = req.chat_type.as_str();
        let search = matches!(req.chat_type, ChatType::Search);
        // Generation answers with media, not reasoning.
        let thinking = req.thinking && req.chat_type.feature().is_none();
        let size = req.size.filter(|_| req.chat_type.feature().is_some());
        Self {
            // Video is a task answered with JSON (docs/upstream.md §9.3).
            stream: req.chat_type != ChatType::Video,
            version: "2.1",
            incremental_output: true,
            chat_id,
            chat_id_camel: chat_id,
            chat_mode: "normal",
            model: &req.model,
            // A continued chat names the answer the new message follows, at the top and on
            // the message (docs/upstream.md §5.5).
            parent_id: req.parent.as_deref(),
            parent_id_camel: req.parent.as_deref(),
            messages: [WireMessage {
                fid: uuid::Uuid::new_v4().to_string(),
                parent_id: req.parent.as_deref(),
                parent_id_snake: req.parent.as_deref(),
                children_ids: [uuid::Uuid::new_v4().to_string()],
                role: "user",
                content: content(req),
                user_action: "chat",
                files,
                timestamp: ts,
                models: [&req.model],
                chat_type,
                sub_chat_type: chat_type,
                feature_config: FeatureConfig {
                    thinking_enabled: thinking,
                    output_schema: "phase",
                    research_mode: "normal",
                    auto_thinking: false,
                    thinking_mode: if thinking { "Thinking" } else { "Disabled" },
                    thinking_format: "summary",
                    thinking_budget: req.thinking_budget.filter(|_| thinking),
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
                size,
            }],
            timestamp: ts,
            size,
        }
    }
}

/// Media passed by URL go into a content array next to the prompt; uploads go into `files[]`.
/// For image edit the URL is a `files[]` item instead (see [`url_files`]).
fn content(req: &Turn) -> WireContent<'_> {
    if req.chat_type == ChatType::ImageEdit {
        return WireContent::Text(&req.prompt);
    }
    let urls: Vec<ContentItem<'_>> = req
        .attachments
        .iter()
        .filter_map(|a| match &a.source {
            MediaSource::Url(u) => Some(match a.kind {
                MediaKind::Video => ContentItem::Video { video: u },
                MediaKind::Audio => ContentItem::Audio { audio: u },
                MediaKind::Image | MediaKind::Document => ContentItem::Image { image: u },
            }),
            MediaSource::Blob(_) => None,
        })
        .collect();
    if urls.is_empty() {
        return WireContent::Text(&req.prompt);
    }
    let mut parts = vec![ContentItem::Text { text: &req.prompt }];
    parts.extend(urls);
    WireContent::Parts(parts)
}

/// `files[]` items for attachments passed by URL, which only image edit takes this way.
pub fn url_files(req: &Turn) -> Vec<WireFile> {
    if req.chat_type != ChatType::ImageEdit {
        return Vec::new();
    }
    req.attachments
        .iter()
        .filter_map(|a: &Media| match &a.source {
            MediaSource::Url(u) => Some(WireFile::Url {
                kind: "image",
                url: u.clone(),
            }),
            MediaSource::Blob(_) => None,
        })
        .collect()
}

fn now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
