//! The `multipart/form-data` bodies, described for the OpenAPI document only: the handlers read
//! forms field by field (`api::multipart::Form`), so these structs name the fields they read.
//! Keep them in step with `files.rs` and `images.rs`.

#![expect(
    dead_code,
    reason = "schemas for the document; the forms themselves are read field by field"
)]

use utoipa::ToSchema;

/// `POST /v1/files` and `POST /v1/files/upload`.
#[derive(ToSchema)]
pub struct FileUpload {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Kept with the file; `user_data` when absent.
    purpose: Option<String>,
}

/// `POST /v1/images/edits`: the image to edit and the instruction.
#[derive(ToSchema)]
pub struct ImageEdit {
    /// The image (also accepted as `image[]`).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    prompt: String,
    model: Option<String>,
    /// 1 to 4.
    n: Option<u32>,
    size: Option<String>,
    /// `url` (the default) or `b64_json`.
    response_format: Option<String>,
    user: Option<String>,
    /// Accepted and ignored: the upstream edits from the instruction alone.
    #[schema(value_type = Option<String>, format = Binary)]
    mask: Option<Vec<u8>>,
}

/// `POST /v1/chat/multimodal` as a form (it also takes a chat completion body as JSON): the
/// prompt and any number of files, each field a file.
#[derive(ToSchema)]
pub struct MultimodalChat {
    prompt: String,
    /// The first listed model when absent.
    model: Option<String>,
    stream: Option<bool>,
    enable_thinking: Option<bool>,
    thinking_budget: Option<u64>,
}

/// `POST /v1/image/upload_and_chat`.
#[derive(ToSchema)]
pub struct ImageChat {
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    prompt: String,
    model: Option<String>,
    stream: Option<bool>,
    enable_thinking: Option<bool>,
    thinking_budget: Option<u64>,
}

/// `POST /v1/video/upload_and_chat`.
#[derive(ToSchema)]
pub struct VideoChat {
    #[schema(value_type = String, format = Binary)]
    video: Vec<u8>,
    prompt: String,
    model: Option<String>,
    stream: Option<bool>,
    enable_thinking: Option<bool>,
    thinking_budget: Option<u64>,
}
