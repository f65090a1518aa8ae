//! Settings of media input and generation: upload limits, remote fetching, long-prompt files,
//! the default image model and video task polling.

use std::time::Duration;

use super::parse::{bool_or, positive_seconds_or, uint_or};
use super::{ConfigError, Vars};

#[derive(Clone, Debug)]
pub struct MediaConfig {
    /// `MAX_UPLOAD_MB`: the largest media part (decoded) a request may carry.
    pub max_upload_bytes: usize,
    /// `FETCH_REMOTE_MEDIA`: fetch client http(s) media URLs here (public addresses only) and
    /// upload them, instead of passing the URL to the upstream.
    pub fetch_remote: bool,
    /// `PROMPT_FILE_THRESHOLD_KB`: a flattened prompt above this goes up as a `.txt` file (0: never).
    pub prompt_file_threshold: usize,
    /// `IMAGE_MODEL`: the model `/v1/images/*` use when the request names none.
    pub image_model: Option<String>,
    /// `VIDEO_MODEL`: the model `/v1/videos` uses when the request names none.
    pub video_model: Option<String>,
    pub video_poll_interval: Duration,
    pub video_timeout: Duration,
}

pub fn media(src: &dyn Vars) -> Result<MediaConfig, ConfigError> {
    let mb = uint_or(src, "MAX_UPLOAD_MB", 20usize, 1)?;
    let kb = uint_or(src, "PROMPT_FILE_THRESHOLD_KB", 100usize, 0)?;
    let name = |var: &str| {
        src.get(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    Ok(MediaConfig {
        max_upload_bytes: mb.saturating_mul(1024 * 1024),
        fetch_remote: bool_or(src, "FETCH_REMOTE_MEDIA", false)?,
        prompt_file_threshold: kb.saturating_mul(1024),
        image_model: name("IMAGE_MODEL"),
        video_model: name("VIDEO_MODEL"),
        video_poll_interval: positive_seconds_or(src, "VIDEO_POLL_INTERVAL_SECONDS", 5.0)?,
        video_timeout: positive_seconds_or(src, "VIDEO_TIMEOUT_SECONDS", 600.0)?,
    })
}
