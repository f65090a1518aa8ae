//! Media in a chat request: OpenAI content parts (`image_url`, `input_audio`, `video_url`,
//! `file`) read into attachments — data URIs decoded, `file_id`s looked up, remote URLs fetched
//! safely or passed through — each failure naming its part.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::datauri::{self, DataUriError};
use super::fetch::{FetchError, RemoteFetcher};
use super::file_store::FileStore;
use super::{MediaKind, kind};
use crate::conversation::{Blob, InvalidRequest, Media, MediaSource};
use crate::openai::{ContentPart, MediaAt, Message, MessageContent, Role};

/// What reading media needs from the server.
pub struct MediaInput<'a> {
    pub max_bytes: usize,
    /// `Some` when `FETCH_REMOTE_MEDIA=true`.
    pub fetcher: Option<&'a RemoteFetcher>,
    pub files: &'a FileStore,
}

impl MediaInput<'_> {
    /// The media parts of a request's user messages, read, each with where it was. (Image edit
    /// picks its image among them, or among the images the assistant answered with, when the
    /// conversation is prepared for the upstream.)
    pub async fn read(&self, messages: &[Message]) -> Result<Vec<MediaAt>, InvalidRequest> {
        let mut out = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if let (Some(MessageContent::Parts(parts)), Role::User) = (&m.content, m.role) {
                for (j, p) in parts.iter().enumerate() {
                    let param = format!("messages[{i}].content[{j}]");
                    if let Some(media) = self.part(p, &param).await? {
                        out.push(MediaAt {
                            message: i,
                            part: j,
                            media,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    async fn part(&self, p: &ContentPart, param: &str) -> Result<Option<Media>, InvalidRequest> {
        let (want, url, filename): (Option<MediaKind>, String, Option<String>) = match p {
            ContentPart::Text { .. } => return Ok(None),
            ContentPart::Unknown => {
                return Err(InvalidRequest::new(
                    "unknown content part type",
                    param,
                    "unsupported_content",
                ));
            }
            ContentPart::ImageUrl { image_url } => {
                (Some(MediaKind::Image), url_field(image_url, param)?, None)
            }
            ContentPart::VideoUrl { video_url } => {
                (Some(MediaKind::Video), url_field(video_url, param)?, None)
            }
            ContentPart::InputAudio { input_audio } => {
                return self.audio(input_audio, param).map(Some);
            }
            ContentPart::File { file } => match self.file(file, param).await? {
                FileInput::Stored(media) => return Ok(Some(media)),
                FileInput::Data { data, filename } => (None, data, filename),
            },
        };
        self.url(url, want, filename, param).await.map(Some)
    }

    /// Media named by a URL: a `data:` URI decoded, or an http(s) URL fetched
    /// (`FETCH_REMOTE_MEDIA=true`) or passed on as is. `want`: the kind the part promised
    /// (`None`: any, from the data's type).
    pub async fn url(
        &self,
        url: String,
        want: Option<MediaKind>,
        filename: Option<String>,
        param: &str,
    ) -> Result<Media, InvalidRequest> {
        let attachment = if url.starts_with("data:") {
            let d = datauri::parse(&url, self.max_bytes)
                .map_err(|e| data_error(&e, param, self.max_bytes))?;
            let mime = if d.mime == "application/octet-stream"
                || d.mime == "text/plain" && want.is_some()
            {
                kind::sniff(&d.bytes).map_or(d.mime.clone(), str::to_owned)
            } else {
                d.mime.clone()
            };
            blob_attachment(Bytes::from(d.bytes), mime, filename, want, param)?
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let Some(want) = want else {
                return Err(InvalidRequest::new(
                    "file_data must be a data: URI",
                    param,
                    "invalid_value",
                ));
            };
            match self.fetcher {
                None => Media {
                    kind: want,
                    source: MediaSource::Url(url),
                },
                Some(fetcher) => {
                    let got = fetcher
                        .fetch(&url)
                        .await
                        .map_err(|e| fetch_error(&e, param))?;
                    let name = url_filename(&url);
                    blob_attachment(got.bytes, got.mime, name, Some(want), param)?
                }
            }
        } else {
            return Err(InvalidRequest::new(
                "media must be a data: URI or an http(s) URL",
                param,
                "invalid_value",
            ));
        };
        Ok(attachment)
    }
}

impl MediaInput<'_> {
    /// A plain-text document given inline, as a `text/plain` file.
    pub fn text_document(
        &self,
        text: &str,
        filename: Option<String>,
        param: &str,
    ) -> Result<Media, InvalidRequest> {
        if text.len() > self.max_bytes {
            return Err(InvalidRequest::new(
                format!("the document is larger than {} bytes", self.max_bytes),
                param,
                "media_too_large",
            ));
        }
        blob_attachment(
            Bytes::copy_from_slice(text.as_bytes()),
            "text/plain".to_owned(),
            filename.or_else(|| Some("document.txt".to_owned())),
            Some(MediaKind::Document),
            param,
        )
    }

    /// An `input_audio` part: base64 `data` and a `format` (wav when absent).
    fn audio(&self, input_audio: &Value, param: &str) -> Result<Media, InvalidRequest> {
        let data = input_audio
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                InvalidRequest::new("input_audio needs `data` (base64)", param, "invalid_value")
            })?;
        let format = input_audio
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or("wav")
            .to_ascii_lowercase();
        let mime = match format.as_str() {
            "mp3" | "mpeg" => "audio/mpeg",
            "wav" => "audio/wav",
            "ogg" => "audio/ogg",
            "m4a" | "mp4" => "audio/mp4",
            "flac" => "audio/flac",
            "webm" => "audio/webm",
            other => {
                return Err(InvalidRequest::new(
                    format!("input_audio format {other:?} is not supported"),
                    param,
                    "unsupported_media_type",
                ));
            }
        };
        let decoded = datauri::parse_bare_base64(data, self.max_bytes)
            .map_err(|e| data_error(&e, param, self.max_bytes))?;
        let blob = Blob::new(Bytes::from(decoded.bytes), mime, format!("audio.{format}"));
        Ok(Media {
            kind: MediaKind::Audio,
            source: MediaSource::Blob(Arc::new(blob)),
        })
    }

    /// A `file` part: a `file_id` from `POST /v1/files`, or inline `file_data` (with an
    /// optional `filename`) read like any other media URL.
    async fn file(&self, file: &Value, param: &str) -> Result<FileInput, InvalidRequest> {
        if let Some(id) = file.get("file_id").and_then(Value::as_str) {
            return self.file_id(id, param).await.map(FileInput::Stored);
        }
        let data = file
            .get("file_data")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                InvalidRequest::new(
                    "a file part needs `file_id` or `file_data`",
                    param,
                    "invalid_value",
                )
            })?;
        let filename = file
            .get("filename")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(FileInput::Data {
            data: data.to_owned(),
            filename,
        })
    }
}

impl MediaInput<'_> {
    /// A file uploaded before with `POST /v1/files`.
    pub async fn file_id(&self, id: &str, param: &str) -> Result<Media, InvalidRequest> {
        let Some((meta, bytes)) = self.files.get(id).await else {
            return Err(InvalidRequest::new(
                format!("no file with id {id:?}; upload it with POST /v1/files first"),
                param,
                "file_not_found",
            ));
        };
        let blob = Blob::new(bytes, meta.mime.clone(), meta.filename.clone());
        Ok(Media {
            kind: MediaKind::from_mime(&meta.mime),
            source: MediaSource::Blob(Arc::new(blob)),
        })
    }
}

/// What a `file` part names: a file uploaded before, or data still to read.
enum FileInput {
    Stored(Media),
    Data {
        data: String,
        filename: Option<String>,
    },
}

/// Checks the type against the part and names the file.
fn blob_attachment(
    bytes: Bytes,
    mime: String,
    filename: Option<String>,
    want: Option<MediaKind>,
    param: &str,
) -> Result<Media, InvalidRequest> {
    let kind = MediaKind::from_mime(&mime);
    if let Some(want) = want
        && kind != want
    {
        return Err(InvalidRequest::new(
            format!("{mime} is not {}", kind_name(want)),
            param,
            "unsupported_media_type",
        ));
    }
    if bytes.is_empty() {
        return Err(InvalidRequest::new(
            "the media is empty",
            param,
            "invalid_value",
        ));
    }
    let filename = filename
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("{}.{}", kind_name(kind), kind::extension_for(&mime)));
    Ok(Media {
        kind,
        source: MediaSource::Blob(Arc::new(Blob::new(bytes, mime, filename))),
    })
}

fn kind_name(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Image => "image",
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
        MediaKind::Document => "document",
    }
}

/// `{"url": "…"}` or a bare string.
fn url_field(v: &Value, param: &str) -> Result<String, InvalidRequest> {
    v.get("url")
        .and_then(Value::as_str)
        .or_else(|| v.as_str())
        .map(str::to_owned)
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| InvalidRequest::new("the part needs a `url`", param, "invalid_value"))
}

fn url_filename(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let last = path.rsplit('/').next()?;
    (!last.is_empty() && last.contains('.')).then(|| last.to_owned())
}

/// The URL of the last `![alt](url)` in a text.
pub fn last_markdown_image(text: &str) -> Option<&str> {
    let start = text.rfind("![")?;
    let rest = &text[start..];
    let open = rest.find("](")? + 2;
    let close = rest[open..].find(')')? + open;
    let url = rest[open..close].trim();
    (url.starts_with("http://") || url.starts_with("https://")).then_some(url)
}

fn data_error(e: &DataUriError, param: &str, limit: usize) -> InvalidRequest {
    match e {
        DataUriError::TooLarge { .. } => InvalidRequest::new(
            format!(
                "the media is larger than {} MB (MAX_UPLOAD_MB)",
                limit / (1024 * 1024)
            ),
            param,
            "media_too_large",
        ),
        other => InvalidRequest::new(format!("bad media data: {other}"), param, "invalid_value"),
    }
}

fn fetch_error(e: &FetchError, param: &str) -> InvalidRequest {
    match e {
        FetchError::Forbidden(_) => InvalidRequest::new(
            "the media URL points to an address this server does not fetch from (loopback, private, link-local or metadata)",
            param,
            "url_not_allowed",
        ),
        FetchError::TooLarge { limit_bytes } => InvalidRequest::new(
            format!(
                "the media is larger than {} MB (MAX_UPLOAD_MB)",
                limit_bytes / (1024 * 1024)
            ),
            param,
            "media_too_large",
        ),
        other => InvalidRequest::new(
            format!("could not fetch the media: {other}"),
            param,
            "media_fetch_failed",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_images_are_found() {
        assert_eq!(
            last_markdown_image("a ![x](https://a/1.png) b ![y]( https://a/2.png )"),
            Some("https://a/2.png")
        );
        assert_eq!(last_markdown_image("![x](javascript:1)"), None);
        assert_eq!(last_markdown_image("none"), None);
    }
}
