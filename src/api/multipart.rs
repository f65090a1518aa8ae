//! Reading `multipart/form-data` bodies into text fields and files, with the upload limit
//! applied per file and errors in the OpenAI envelope naming the field.

use std::collections::HashMap;

use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;
use bytes::Bytes;

use crate::conversation::InvalidRequest;
use crate::media::kind;
use crate::server::error::AppError;

/// One uploaded file part.
pub struct FilePart {
    pub field: String,
    pub filename: String,
    pub mime: String,
    pub bytes: Bytes,
}

#[derive(Default)]
pub struct Form {
    pub text: HashMap<String, String>,
    pub files: Vec<FilePart>,
}

impl Form {
    pub async fn read(mut mp: Multipart, max_file_bytes: usize) -> Result<Self, AppError> {
        let mut form = Form::default();
        while let Some(mut field) = mp.next_field().await.map_err(bad_form)? {
            let name = field.name().unwrap_or_default().to_owned();
            let Some(filename) = field.file_name().map(str::to_owned) else {
                let text = field.text().await.map_err(bad_form)?;
                form.text.insert(name, text);
                continue;
            };
            let declared = field.content_type().map(str::to_ascii_lowercase);
            let mut buf = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
                if buf.len() + chunk.len() > max_file_bytes {
                    return Err(invalid(
                        format!(
                            "the file is larger than {} MB (MAX_UPLOAD_MB)",
                            max_file_bytes / (1024 * 1024)
                        ),
                        &name,
                        "media_too_large",
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            let mime = declared
                .filter(|m| !m.is_empty() && m != "application/octet-stream")
                .or_else(|| kind::sniff(&buf).map(str::to_owned))
                .or_else(|| kind::mime_from_filename(&filename).map(str::to_owned))
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            form.files.push(FilePart {
                field: name,
                filename,
                mime,
                bytes: Bytes::from(buf),
            });
        }
        Ok(form)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.text
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, AppError> {
        self.get(name).ok_or_else(|| {
            invalid(
                format!("the form field `{name}` is required"),
                name,
                "missing_field",
            )
        })
    }

    /// The last file sent in any of `names` (`image` and `image[]` alike).
    pub fn file(&self, names: &[&str]) -> Option<&FilePart> {
        self.files
            .iter()
            .rev()
            .find(|f| names.contains(&f.field.as_str()))
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, AppError> {
        self.get(name)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(invalid(
                    format!("`{name}` must be true or false"),
                    name,
                    "invalid_value",
                )),
            })
            .transpose()
    }

    pub fn uint(&self, name: &str) -> Result<Option<u64>, AppError> {
        self.get(name)
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    invalid(
                        format!("`{name}` must be a whole number"),
                        name,
                        "invalid_value",
                    )
                })
            })
            .transpose()
    }
}

#[expect(clippy::needless_pass_by_value, reason = "used as map_err(bad_form)")]
fn bad_form(e: MultipartError) -> AppError {
    let status = e.status();
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return AppError::TooLarge;
    }
    AppError::BadRequest {
        message: format!("unreadable multipart form: {}", e.body_text()),
        code: "invalid_multipart",
    }
}

pub fn invalid(message: impl Into<String>, param: &str, code: &'static str) -> AppError {
    AppError::Invalid(InvalidRequest::new(message, param, code))
}
