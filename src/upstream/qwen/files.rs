//! Uploads and generation tasks on chat.qwen.ai: STS credentials, the object-store PUT, the
//! document parse step (docs/upstream.md §10), the t2v task and its status (§9.3), and fetching
//! media the upstream generated.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::oss::{self, StsToken};
use super::payload::WireFile;
use super::{CallKind, Credentials, QwenClient, UpstreamError, content_type, error};
use crate::media::fetch::read_limited;
use crate::upstream::Turn;

/// How often and how long a document's parse status is polled.
const PARSE_POLL: Duration = Duration::from_secs(1);
const PARSE_POLLS: u32 = 60;

/// `GET /api/v1/tasks/status/{id}` as far as we read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    Pending,
    Running,
    Succeeded { url: String },
    Failed { reason: String },
}

#[derive(Deserialize)]
struct TaskStatusWire {
    #[serde(default)]
    task_status: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The STS answer comes flat (v1) or wrapped in `{"success","data"}` (v2).
#[derive(Deserialize)]
#[serde(untagged)]
enum StsAnswer {
    Wrapped { data: StsToken },
    Flat(StsToken),
}

impl QwenClient {
    /// `POST /api/v2/files/getstsToken`: credentials to upload one file.
    pub async fn sts_token(
        &self,
        creds: &Credentials,
        filename: &str,
        size: u64,
        filetype: &str,
    ) -> Result<StsToken, UpstreamError> {
        let body =
            serde_json::json!({"filename": filename, "filesize": size, "filetype": filetype});
        let req = self.request(
            Method::POST,
            "/api/v2/files/getstsToken",
            Some(creds),
            CallKind::Json,
        )?;
        let resp = self.send(req.json(&body)).await?;
        let status = resp.status().as_u16();
        let ct = content_type(resp.headers());
        let text = self.answer_text(resp).await?;
        if (200..300).contains(&status) {
            match serde_json::from_str::<StsAnswer>(&text) {
                Ok(StsAnswer::Wrapped { data } | StsAnswer::Flat(data)) => return Ok(data),
                Err(_) => {}
            }
        }
        Err(match error::classify_body(status, &ct, &text) {
            // A 200 that is neither shape nor an error envelope.
            UpstreamError::Transient(d) if (200..300).contains(&status) => {
                UpstreamError::Transient(format!("getstsToken answered an unknown shape ({d})"))
            }
            other => other,
        })
    }

    /// PUTs the bytes to the object store with the STS credentials (OSS V4 signature). The
    /// store's refusals are not the account's fault, so they are transient.
    pub async fn put_object(
        &self,
        creds: &Credentials,
        sts: &StsToken,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), UpstreamError> {
        let signed = oss::sign_put(sts, content_type, time::OffsetDateTime::now_utc());
        let http = self.http(creds.proxy.as_deref())?;
        let mut req = http.put(&signed.url).body(bytes);
        for (name, value) in &signed.headers {
            req = req.header(*name, value);
        }
        let resp = self.send(req).await?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = self.answer_text(resp).await.unwrap_or_default();
        let code = xml_code(&text).unwrap_or("no error code");
        Err(UpstreamError::Transient(format!(
            "the object store refused the upload: HTTP {status} {code}"
        )))
    }

    /// Starts the parse of an uploaded document and waits until the upstream reports it done.
    pub async fn parse_file(
        &self,
        creds: &Credentials,
        file_id: &str,
    ) -> Result<(), UpstreamError> {
        let req = self.request(
            Method::POST,
            "/api/v2/files/parse",
            Some(creds),
            CallKind::Json,
        )?;
        let resp = self
            .send(req.json(&serde_json::json!({"file_id": file_id})))
            .await?;
        let started: Value = self.json(resp).await?;
        ensure_success(&started)?;
        for _ in 0..PARSE_POLLS {
            let req = self.request(
                Method::POST,
                "/api/v2/files/parse/status",
                Some(creds),
                CallKind::Json,
            )?;
            let resp = self
                .send(req.json(&serde_json::json!({"file_id_list": [file_id]})))
                .await?;
            let answer: Value = self.json(resp).await?;
            ensure_success(&answer)?;
            let status = answer
                .pointer("/data/0/status")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match status {
                "success" => return Ok(()),
                "failed" | "error" => {
                    return Err(UpstreamError::Rejected(format!(
                        "the upstream could not parse the document ({status})"
                    )));
                }
                _ => tokio::time::sleep(PARSE_POLL).await,
            }
        }
        Err(UpstreamError::Transient(
            "the document was still being parsed after a minute".into(),
        ))
    }

    /// The t2v completion (`stream:false`): answers with the task to poll.
    pub async fn start_video(
        &self,
        creds: &Credentials,
        req: &Turn,
        chat_id: &str,
        files: &[WireFile],
    ) -> Result<String, UpstreamError> {
        let resp = self
            .post_completion(creds, req, chat_id, files, CallKind::Json)
            .await?;
        let answer: Value = self.json(resp).await?;
        ensure_success(&answer)?;
        find_task_id(&answer).ok_or_else(|| {
            UpstreamError::Transient("the video request was answered without a task id".into())
        })
    }

    /// `GET /api/v1/tasks/status/{id}`.
    pub async fn task_status(
        &self,
        creds: &Credentials,
        task_id: &str,
    ) -> Result<TaskState, UpstreamError> {
        let path = format!("/api/v1/tasks/status/{task_id}");
        let req = self.request(Method::GET, &path, Some(creds), CallKind::Json)?;
        let resp = self.send(req).await?;
        let answer: Value = self.json(resp).await?;
        ensure_success(&answer)?;
        let wire: TaskStatusWire =
            serde_json::from_value(answer.get("data").cloned().unwrap_or(answer))
                .map_err(|_| UpstreamError::Transient("unreadable task status".into()))?;
        let url = wire.content.filter(|c| !c.is_empty());
        Ok(match wire.task_status.as_deref().unwrap_or_default() {
            "success" | "succeeded" | "completed" => match url {
                Some(url) => TaskState::Succeeded { url },
                None => TaskState::Failed {
                    reason: "the task finished without a video".into(),
                },
            },
            "failed" | "error" | "cancelled" => TaskState::Failed {
                reason: wire.message.unwrap_or_else(|| "the task failed".into()),
            },
            "running" | "processing" => TaskState::Running,
            _ => TaskState::Pending,
        })
    }

    /// Downloads media the upstream generated (the URL is the upstream's, fetched as given, via
    /// `proxy` or the global egress), up to `limit` bytes.
    pub async fn fetch_generated(
        &self,
        proxy: Option<&str>,
        url: &str,
        limit: usize,
    ) -> Result<(Bytes, String), UpstreamError> {
        let http = self.http(proxy)?;
        let resp = self.send(http.get(url)).await?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(UpstreamError::Transient(format!(
                "fetching the generated media answered HTTP {status}"
            )));
        }
        let mime = content_type(resp.headers());
        let body = tokio::time::timeout(self.cfg.idle_timeout, read_limited(resp, limit))
            .await
            .map_err(|_| UpstreamError::Transient("timed out fetching generated media".into()))?
            .map_err(|e| UpstreamError::Transient(format!("fetching the generated media: {e}")))?;
        Ok((body, mime))
    }
}

/// When the pre-signed URL of an upload stops working.
pub fn upload_expiry(sts_file_url: &str) -> Option<std::time::SystemTime> {
    oss::signed_url_expiry(sts_file_url)
}

/// A `{"success": false, …}` envelope as an error.
fn ensure_success(answer: &Value) -> Result<(), UpstreamError> {
    if answer.get("success").and_then(Value::as_bool) == Some(false) {
        return Err(error::classify_body(
            200,
            "application/json",
            &answer.to_string(),
        ));
    }
    Ok(())
}

/// The t2v task id: `data.messages[].extra.wanx.task_id`, or a `task_id` anywhere.
fn find_task_id(v: &Value) -> Option<String> {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("task_id")
                && !id.is_empty()
            {
                return Some(id.clone());
            }
            map.values().find_map(find_task_id)
        }
        Value::Array(items) => items.iter().find_map(find_task_id),
        _ => None,
    }
}

/// `<Code>…</Code>` of an object-store error body.
fn xml_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(&body[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_found_where_the_site_puts_them() {
        let v = serde_json::json!({"success":true,"data":{"messages":[{"role":"assistant","extra":{"wanx":{"task_id":"t-1"}}}]}});
        assert_eq!(find_task_id(&v).as_deref(), Some("t-1"));
        assert_eq!(
            find_task_id(&serde_json::json!({"data":{"task_id":""}})),
            None
        );
    }

    #[test]
    fn object_store_error_codes_are_read() {
        assert_eq!(
            xml_code("<?xml?><Error><Code>SignatureDoesNotMatch</Code></Error>"),
            Some("SignatureDoesNotMatch")
        );
        assert_eq!(xml_code("nope"), None);
    }
}
