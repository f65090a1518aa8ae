//! Media in and out of chats: what clients send or point to (inline data, bare base64, remote
//! URLs: decoding, type detection, size limits, safe fetching), image size → aspect ratio, the
//! uploads to chat.qwen.ai, the `/v1/files` store and the video jobs.

pub mod datauri;
pub mod fetch;
pub mod file_store;
pub mod input;
pub mod jobs;
pub mod kind;
pub mod size;
pub mod upload;

pub use datauri::{DataUri, DataUriError, parse_bare_base64};
pub use fetch::{FetchError, Fetched, RemoteFetcher, is_public};
pub use kind::{MediaKind, extension_for, mime_from_filename, sniff};
pub use size::{BadSize, ratio_for_size, ratio_in_prompt, requested_ratio};
pub use upload::Uploader;
