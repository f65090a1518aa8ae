//! The upstream side: the error every upstream call shares, and chat.qwen.ai's client in
//! `qwen/`.

pub mod error;
pub mod qwen;

pub use error::UpstreamError;
// Old paths, kept for one commit while the files move.
pub use qwen::{ByteStream, CallKind, Credentials, QwenClient, files, headers, oss, payload, wire};
pub(crate) use qwen::{h1, scan};
