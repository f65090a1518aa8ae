//! `VideoJobs`: the `/v1/videos` jobs of this process, each a background generation whose state
//! is read by `GET /v1/videos/{id}`. Finished jobs are forgotten after a day.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

const KEEP_FINISHED: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    InProgress,
    Completed,
    Failed,
}

/// A job as `GET /v1/videos/{id}` shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VideoJob {
    pub id: String,
    pub object: &'static str,
    pub model: String,
    pub prompt: String,
    pub status: JobStatus,
    pub created_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    #[serde(skip)]
    finished: Option<Instant>,
}

#[derive(Default)]
pub struct VideoJobs {
    jobs: Mutex<HashMap<String, VideoJob>>,
}

impl VideoJobs {
    pub fn create(&self, model: &str, prompt: &str, size: Option<&str>) -> VideoJob {
        let job = VideoJob {
            id: format!("video_{}", uuid::Uuid::new_v4().simple()),
            object: "video",
            model: model.to_owned(),
            prompt: prompt.to_owned(),
            status: JobStatus::Queued,
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            size: size.map(str::to_owned),
            url: None,
            error: None,
            finished: None,
        };
        let mut jobs = self.lock();
        jobs.retain(|_, j| j.finished.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
        jobs.insert(job.id.clone(), job.clone());
        job
    }

    pub fn get(&self, id: &str) -> Option<VideoJob> {
        self.lock().get(id).cloned()
    }

    pub fn start(&self, id: &str) {
        self.update(id, |j| j.status = JobStatus::InProgress);
    }

    pub fn complete(&self, id: &str, url: String) {
        self.update(id, |j| {
            j.status = JobStatus::Completed;
            j.url = Some(url);
            j.finished = Some(Instant::now());
        });
    }

    /// `error` is the OpenAI error object (`{"message","type","code"}`).
    pub fn fail(&self, id: &str, error: serde_json::Value) {
        self.update(id, |j| {
            j.status = JobStatus::Failed;
            j.error = Some(error);
            j.finished = Some(Instant::now());
        });
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut VideoJob)) {
        if let Some(j) = self.lock().get_mut(id) {
            f(j);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VideoJob>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_moves_through_its_states() {
        let jobs = VideoJobs::default();
        let j = jobs.create("m", "a cat", Some("16:9"));
        assert_eq!(jobs.get(&j.id).unwrap().status, JobStatus::Queued);
        jobs.start(&j.id);
        assert_eq!(jobs.get(&j.id).unwrap().status, JobStatus::InProgress);
        jobs.complete(&j.id, "https://v/1.mp4".into());
        let done = serde_json::to_value(jobs.get(&j.id).unwrap()).unwrap();
        assert_eq!(done["status"], "completed");
        assert_eq!(done["url"], "https://v/1.mp4");
        assert_eq!(done["object"], "video");
        assert!(done.get("error").is_none());
        assert!(jobs.get("video_nope").is_none());
    }
}
