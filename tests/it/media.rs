//! Media end to end against the fake upstream: uploads (STS, signed PUT, files[]), the upload
//! cache, URL passthrough and SSRF refusal, generation endpoints, video jobs, quota rests,
//! files and the FastAPI-compatible routes.

use crate::common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::fake_media::{self, PNG_1X1, TaskStep};
use common::fake_qwen::{FakeQwen, Reply};
use common::{TestApp, error_of, sse_json, streamed_content};
use serde_json::{Value, json};

fn png_data_uri() -> String {
    format!("data:image/png;base64,{}", B64.encode(PNG_1X1))
}

fn with_image(model: &str, url: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url}}
    ]}]})
}

/// Polls `GET /v1/videos/{id}` until the job reaches `status` (or about two seconds pass).
async fn wait_for_job(app: &TestApp, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = app.get_json(&format!("/v1/videos/{id}")).await;
        if last["status"] == status {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last
}

fn last_completion(app: &TestApp) -> Value {
    app.fake.completions().pop().unwrap().json.unwrap()
}

#[tokio::test]
async fn a_data_uri_image_is_uploaded_and_referenced_in_files() {
    let app = TestApp::with_accounts(1, &[]).await;
    let resp = app.chat(with_image("qwen3.7-plus", &png_data_uri())).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let objects = app.fake.objects();
    assert_eq!(objects.len(), 1, "one signed PUT accepted by the fake");
    assert_eq!(&objects[0].bytes[..], PNG_1X1, "bytes arrive intact");
    assert_eq!(objects[0].content_type, "image/png");
    let grant = app.fake.sts_grants().pop().unwrap();
    assert_eq!(grant.label, "acct1");
    assert_eq!(grant.filetype.as_deref(), Some("image"));
    let body = last_completion(&app);
    let m = &body["messages"][0];
    assert_eq!(m["content"], "what is this?");
    let f = &m["files"][0];
    assert_eq!(m["files"].as_array().unwrap().len(), 1);
    assert_eq!(f["type"], "image");
    assert_eq!(f["id"], grant.file_id.as_str());
    assert_eq!(f["url"], grant.file_url.as_str());
    assert_eq!(f["file"]["id"], grant.file_id.as_str());
    assert_eq!(f["file"]["user_id"], grant.user_id.as_str());
    assert_eq!(f["file"]["meta"]["content_type"], "image/png");
    assert_eq!(f["file"]["meta"]["size"], PNG_1X1.len());
    assert_eq!(f["size"], PNG_1X1.len());
    assert_eq!(f["showType"], "image");
    assert_eq!(f["file_class"], "vision");
    assert_eq!(f["file_type"], "image/png");
    assert_eq!(f["status"], "uploaded");
    let mut keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "collection_name",
            "error",
            "file",
            "file_class",
            "file_type",
            "greenNet",
            "id",
            "itemId",
            "name",
            "progress",
            "showType",
            "size",
            "status",
            "type",
            "uploadTaskId",
            "url"
        ]
    );
}

#[tokio::test]
async fn the_same_bytes_on_the_same_account_are_uploaded_once() {
    let app = TestApp::with_accounts(1, &[]).await;
    for _ in 0..2 {
        let resp = app.chat(with_image("qwen3.7-plus", &png_data_uri())).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(app.fake.count("POST", "/api/v2/files/getstsToken"), 1);
    assert_eq!(app.fake.objects().len(), 1);
    let sent = app.fake.completions();
    assert_eq!(sent.len(), 2);
    let id = |r: &common::fake_qwen::Recorded| {
        r.json.as_ref().unwrap()["messages"][0]["files"][0]["id"].clone()
    };
    assert_eq!(id(&sent[0]), id(&sent[1]));
}

#[tokio::test]
async fn the_flat_sts_answer_works_too() {
    let app = TestApp::with_accounts(1, &[]).await;
    app.fake.set_sts_flat(true);
    let resp = app.chat(with_image("qwen3.7-plus", &png_data_uri())).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.fake.objects().len(), 1);
}

#[tokio::test]
async fn a_failed_upload_fails_over_to_the_next_account() {
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake
        .push_sts(Some("acct1"), Reply::json(500, json!({"detail": "boom"})));
    app.fake
        .push_sts(Some("acct2"), Reply::json(500, json!({"detail": "boom"})));
    app.fake
        .push_sts(None, Reply::json(500, json!({"detail": "boom"})));
    let resp = app.chat(with_image("qwen3.7-plus", &png_data_uri())).await;
    // Two accounts failed at STS; the third try (RETRY_COUNT=3) has no account left.
    assert_eq!(resp.status(), 502, "{}", resp.text().await.unwrap());
    assert_eq!(app.fake.completions().len(), 0, "no chat without its media");
    let app = TestApp::with_accounts(2, &[]).await;
    app.fake
        .push_sts(None, Reply::json(500, json!({"detail": "boom"})));
    let resp = app.chat(with_image("qwen3.7-plus", &png_data_uri())).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.fake.objects().len(), 1);
}

#[tokio::test]
async fn http_urls_are_passed_through_unfetched() {
    let app = TestApp::with_accounts(1, &[]).await;
    let url = "https://example.com/cat.png";
    let resp = app.chat(with_image("qwen3.7-plus", url)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.fake.count("POST", "/api/v2/files/getstsToken"), 0);
    let body = last_completion(&app);
    assert_eq!(
        body["messages"][0]["content"],
        json!([{"type": "text", "text": "what is this?"}, {"type": "image", "image": url}])
    );
    assert_eq!(body["messages"][0]["files"], json!([]));
}

#[tokio::test]
async fn remote_fetching_refuses_internal_addresses() {
    let app = TestApp::with_accounts(1, &[("FETCH_REMOTE_MEDIA", "true")]).await;
    let own = app.fake.url("/output/x/t2i/r/1.png");
    for url in [
        own.as_str(),
        "http://10.1.2.3/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9/a.png",
        "http://[::1]/a.png",
    ] {
        let (status, err) = error_of(app.chat(with_image("qwen3.7-plus", url)).await).await;
        assert_eq!(status, 400, "{url}: {err}");
        assert_eq!(err["code"], "url_not_allowed", "{url}");
        assert_eq!(err["param"], "messages[0].content[1]");
    }
    assert_eq!(
        app.fake.count("GET", "/output/x/t2i/r/1.png"),
        0,
        "never fetched"
    );
    assert_eq!(app.fake.completions().len(), 0);
}

#[tokio::test]
async fn bad_media_is_refused_with_the_part_named() {
    let app = TestApp::with_accounts(1, &[("MAX_UPLOAD_MB", "1")]).await;
    let big = format!(
        "data:image/png;base64,{}",
        B64.encode(vec![0u8; 1024 * 1024 + 10])
    );
    let pdf = format!("data:application/pdf;base64,{}", B64.encode(b"%PDF-1.4 x"));
    let cases = [
        (
            with_image("qwen3.7-plus", "data:image/png;base64,@@@"),
            "invalid_value",
        ),
        (with_image("qwen3.7-plus", &big), "media_too_large"),
        (with_image("qwen3.7-plus", &pdf), "unsupported_media_type"),
        (with_image("qwen3.7-plus", "ftp://x/y.png"), "invalid_value"),
    ];
    for (body, code) in cases {
        let (status, err) = error_of(app.chat(body).await).await;
        assert_eq!(
            (status, err["code"].as_str().unwrap()),
            (400, code),
            "{err}"
        );
        assert_eq!(err["param"], "messages[0].content[1]");
    }
    let body = json!({"model": "qwen3.7-plus", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-nope"}}]}]});
    let (status, err) = error_of(app.chat(body).await).await;
    assert_eq!(
        (status, err["code"].as_str().unwrap()),
        (400, "file_not_found")
    );
    assert_eq!(err["param"], "messages[2].content[0]");
    assert_eq!(app.fake.completions().len(), 0);
    assert_eq!(app.fake.count("POST", "/api/v2/files/getstsToken"), 0);
}

#[tokio::test]
async fn documents_and_audio_go_up_with_the_parse_step_for_documents() {
    let app = TestApp::with_accounts(1, &[]).await;
    let pdf = format!(
        "data:application/pdf;base64,{}",
        B64.encode(b"%PDF-1.4 hello")
    );
    let body = json!({"model": "qwen3.7-plus", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "summarise"},
        {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}},
        {"type": "input_audio", "input_audio": {"data": B64.encode(b"RIFF....WAVEfmt "), "format": "wav"}}
    ]}]});
    let resp = app.chat(body).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(
        app.fake.count("POST", "/api/v2/files/parse"),
        1,
        "only the document is parsed"
    );
    let files = last_completion(&app)["messages"][0]["files"].clone();
    assert_eq!(files[0]["name"], "a.pdf");
    assert_eq!(files[0]["file_class"], "document");
    assert_eq!(files[1]["type"], "audio");
    assert_eq!(files[1]["file_type"], "audio/wav");
}

#[tokio::test]
async fn a_long_prompt_goes_up_as_a_text_file() {
    let app = TestApp::with_accounts(1, &[("PROMPT_FILE_THRESHOLD_KB", "1")]).await;
    let long = "x".repeat(1500);
    let resp = app
        .chat(json!({"model": "qwen3.7-plus", "messages": [{"role": "user", "content": long}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let obj = app.fake.objects().pop().unwrap();
    assert_eq!(obj.bytes.len(), 1500);
    assert_eq!(obj.content_type, "text/plain");
    let m = last_completion(&app)["messages"][0].clone();
    assert!(m["content"].as_str().unwrap().contains("prompt.txt"));
    assert_eq!(m["files"][0]["name"], "prompt.txt");
}

#[tokio::test]
async fn images_generations_in_both_response_formats() {
    let app = TestApp::with_accounts(1, &[]).await;
    let base = app.fake.base_url();
    app.fake
        .push_completion(None, fake_media::t2i_reply(&base, "16:9"));
    let resp = app
        .post("/v1/images/generations")
        .json(&json!({"prompt": "a lighthouse", "size": "1792x1024"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let url = v["data"][0]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{base}/output/")) && url.contains("/t2i/"),
        "{url}"
    );
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let sent = last_completion(&app);
    assert_eq!(sent["size"], "16:9");
    assert_eq!(sent["messages"][0]["chat_type"], "t2i");
    assert_eq!(sent["messages"][0]["content"], "a lighthouse");
    assert_eq!(
        sent["messages"][0]["feature_config"]["thinking_enabled"],
        false
    );
    let new_chat = app
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v2/chats/new")
        .unwrap();
    assert_eq!(new_chat.json.unwrap()["chat_type"], "t2i");

    app.fake
        .push_completion(None, fake_media::t2i_reply(&base, "4:3"));
    let resp = app
        .post("/v1/images/generations")
        .json(&json!({"prompt": "a cat @4:3", "response_format": "b64_json", "model": "qwen3.7-plus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let bytes = B64
        .decode(v["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, PNG_1X1);
    assert!(v["data"][0].get("url").is_none());
    assert_eq!(
        last_completion(&app)["size"],
        "4:3",
        "ratio taken from the prompt"
    );
}

#[tokio::test]
async fn image_requests_are_checked() {
    let app = TestApp::with_accounts(1, &[]).await;
    let cases = [
        (json!({"prompt": "x", "size": "big"}), "size"),
        (json!({"prompt": "x", "n": 9}), "n"),
        (
            json!({"prompt": "x", "response_format": "png"}),
            "response_format",
        ),
        (json!({"prompt": " "}), "prompt"),
        (json!({"prompt": "x", "model": "qwen3-coder-plus"}), "model"),
    ];
    for (body, param) in cases {
        let resp = app
            .post("/v1/images/generations")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(resp).await;
        assert_eq!((status, err["param"].as_str()), (400, Some(param)), "{err}");
    }
    assert_eq!(app.fake.completions().len(), 0);
}

#[tokio::test]
async fn image_suffix_in_chat_answers_with_markdown() {
    let app = TestApp::with_accounts(1, &[]).await;
    let base = app.fake.base_url();
    app.fake
        .push_completion(None, fake_media::t2i_reply(&base, "1:1"));
    let resp = app
        .chat(json!({"model": "qwen3.7-plus-image", "stream": true, "messages": [{"role": "user", "content": "a red square"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let content = streamed_content(&sse_json(&resp.text().await.unwrap()));
    assert!(
        content.starts_with(&format!("![image]({base}/output/")),
        "{content}"
    );
    assert_eq!(last_completion(&app)["messages"][0]["chat_type"], "t2i");
}

#[tokio::test]
async fn image_edit_takes_the_last_image_and_refuses_without_one() {
    let app = TestApp::with_accounts(1, &[]).await;
    let base = app.fake.base_url();
    app.fake
        .push_completion(None, fake_media::image_edit_reply(&base));
    let body = json!({"model": "qwen3.7-plus-image-edit", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "draw"}, {"type": "image_url", "image_url": {"url": "https://example.com/old.png"}}]},
        {"role": "assistant", "content": "![image](https://cdn.example.com/first.png)"},
        {"role": "user", "content": "make it blue"}]});
    let resp = app.chat(body).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let m = last_completion(&app)["messages"][0].clone();
    assert_eq!(m["chat_type"], "image_edit");
    assert_eq!(m["content"], "make it blue");
    assert_eq!(
        m["files"],
        json!([{"type": "image", "url": "https://cdn.example.com/first.png"}])
    );

    let (status, err) = error_of(
        app.chat(json!({"model": "qwen3.7-plus", "chat_type": "image_edit", "messages": [{"role": "user", "content": "make it blue"}]}))
            .await,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str().unwrap()),
        (400, "image_required")
    );
    assert_eq!(app.fake.completions().len(), 1);
}

#[tokio::test]
async fn images_edits_takes_a_multipart_image() {
    let app = TestApp::with_accounts(1, &[]).await;
    let base = app.fake.base_url();
    app.fake
        .push_completion(None, fake_media::image_edit_reply(&base));
    let form = reqwest::multipart::Form::new()
        .text("prompt", "add a hat")
        .part(
            "image",
            reqwest::multipart::Part::bytes(PNG_1X1.to_vec())
                .file_name("in.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let resp = app
        .post("/v1/images/edits")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(&app.fake.objects()[0].bytes[..], PNG_1X1);
    let m = last_completion(&app)["messages"][0].clone();
    assert_eq!(m["chat_type"], "image_edit");
    assert_eq!(m["files"][0]["name"], "in.png");

    let form = reqwest::multipart::Form::new().text("prompt", "add a hat");
    let (status, err) = error_of(
        app.post("/v1/images/edits")
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, err["param"].as_str()), (400, Some("image")));
}

#[tokio::test]
async fn a_video_in_a_stream_keeps_the_client_alive_until_the_task_ends() {
    let app = TestApp::with_accounts(
        1,
        &[
            ("VIDEO_POLL_INTERVAL_SECONDS", "0.1"),
            ("SSE_KEEPALIVE_SECONDS", "0.05"),
        ],
    )
    .await;
    let url = fake_media::output_url(&app.fake.base_url(), "t2v", "mp4");
    app.fake
        .push_completion(None, fake_media::t2v_reply("task-1"));
    app.fake.set_task(
        "task-1",
        vec![
            TaskStep::Pending,
            TaskStep::Running,
            TaskStep::Running,
            TaskStep::Success(url.clone()),
        ],
    );
    let resp = app
        .chat(json!({"model": "qwen3.7-plus-video", "stream": true, "size": "16:9", "messages": [{"role": "user", "content": "waves"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains(": keep-alive\n\n"), "{text}");
    assert_eq!(
        streamed_content(&sse_json(&text)),
        format!("[video]({url})")
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    let sent = last_completion(&app);
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["size"], "16:9");
    assert_eq!(sent["messages"][0]["chat_type"], "t2v");
    assert_eq!(app.fake.count("GET", "/api/v1/tasks/status/task-1"), 4);
}

#[tokio::test]
async fn video_jobs_report_their_state() {
    let app = TestApp::with_accounts(1, &[("VIDEO_POLL_INTERVAL_SECONDS", "0.05")]).await;
    let url = fake_media::output_url(&app.fake.base_url(), "t2v", "mp4");
    app.fake
        .push_completion(None, fake_media::t2v_reply("task-2"));
    app.fake.set_task(
        "task-2",
        vec![TaskStep::Running, TaskStep::Success(url.clone())],
    );
    let resp = app
        .post("/v1/videos")
        .json(&json!({"prompt": "waves"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["object"], "video");
    assert!(matches!(
        job["status"].as_str(),
        Some("queued" | "in_progress")
    ));
    let id = job["id"].as_str().unwrap().to_owned();
    let last = wait_for_job(&app, &id, "completed").await;
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["url"], url.as_str());

    app.fake
        .push_completion(None, fake_media::t2v_reply("task-3"));
    app.fake
        .set_task("task-3", vec![TaskStep::Failed("no permission".into())]);
    let job: Value = app
        .post("/v1/videos")
        .json(&json!({"prompt": "waves"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let last = wait_for_job(&app, &id, "failed").await;
    assert_eq!(last["status"], "failed");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no permission"),
        "{last}"
    );
    let resp = app.get("/v1/videos/video_nope").send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn a_used_up_image_quota_rests_the_feature_not_the_account() {
    let app = TestApp::with_accounts(2, &[]).await;
    let base = app.fake.base_url();
    app.fake
        .push_completion(Some("acct1"), fake_media::rate_limited_reply(2));
    app.fake
        .push_completion(Some("acct2"), fake_media::t2i_reply(&base, "1:1"));
    let generate = || {
        app.post("/v1/images/generations")
            .json(&json!({"prompt": "a cat"}))
            .send()
    };
    assert_eq!(
        generate().await.unwrap().status(),
        200,
        "failed over to acct2"
    );
    let acct1 = app.state.proxy().pool().get("account_1").unwrap();
    assert!(acct1.is_usable(), "chat health untouched");
    assert!(
        acct1
            .feature_cooling(qwen2api::conversation::Feature::Image)
            .unwrap()
            > Duration::from_secs(7000)
    );
    // Text still goes to both accounts; images only to acct2.
    for _ in 0..2 {
        assert_eq!(
            app.chat(common::body("qwen3.7-plus", false)).await.status(),
            200
        );
    }
    assert_eq!(
        app.fake
            .count_for("acct1", "POST", "/api/v2/chat/completions"),
        2
    );
    app.fake
        .push_completion(Some("acct2"), fake_media::rate_limited_reply(1));
    let resp = generate().await.unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (3000..=3600).contains(&retry),
        "the sooner of the two rests: {retry}"
    );
    let resp = generate().await.unwrap();
    assert_eq!(resp.status(), 429, "no account left for images");
    assert_eq!(
        app.fake
            .count_for("acct1", "POST", "/api/v2/chat/completions"),
        2
    );
}

#[tokio::test]
async fn files_are_kept_and_used_on_any_account() {
    let app = TestApp::with_accounts(2, &[]).await;
    let form = reqwest::multipart::Form::new()
        .text("purpose", "vision")
        .part(
            "file",
            reqwest::multipart::Part::bytes(PNG_1X1.to_vec())
                .file_name("pic.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let resp = app.post("/v1/files").multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let file: Value = resp.json().await.unwrap();
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], PNG_1X1.len());
    assert_eq!(file["filename"], "pic.png");
    assert_eq!(file["purpose"], "vision");
    let id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(app.fake.objects().len(), 1, "uploaded at once");
    let uploaded_by = app.fake.sts_grants()[0].label.clone();
    let use_file = json!({"model": "qwen3.7-plus", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe"}, {"type": "file", "file": {"file_id": id}}]}]});
    for _ in 0..2 {
        assert_eq!(app.chat(use_file.clone()).await.status(), 200);
    }
    let labels: Vec<String> = app.fake.sts_grants().into_iter().map(|g| g.label).collect();
    assert_eq!(labels.len(), 2, "one upload per account: {labels:?}");
    assert!(labels.contains(&uploaded_by) && labels.iter().any(|l| *l != uploaded_by));
    let got: Value = app.get_json(&format!("/v1/files/{id}")).await;
    assert_eq!(got["id"], id.as_str());
    let list: Value = app.get_json("/v1/files").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let del = app.delete(&format!("/v1/files/{id}")).send().await.unwrap();
    assert_eq!(del.status(), 200);
    assert_eq!(
        del.json::<Value>().await.unwrap(),
        json!({"id": id, "object": "file", "deleted": true})
    );
    let again = app.delete(&format!("/v1/files/{id}")).send().await.unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn fastapi_upload_routes() {
    let app = TestApp::with_accounts(1, &[("ADMIN_KEY", "sk-admin")]).await;
    let form = reqwest::multipart::Form::new()
        .text("prompt", "what is it?")
        .text("model", "qwen3.7-plus")
        .text("enable_thinking", "false")
        .part(
            "image",
            reqwest::multipart::Part::bytes(PNG_1X1.to_vec())
                .file_name("x.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let resp = app
        .post("/v1/image/upload_and_chat")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    let m = last_completion(&app)["messages"][0].clone();
    assert_eq!(m["content"], "what is it?");
    assert_eq!(m["files"][0]["name"], "x.png");

    let form = reqwest::multipart::Form::new().text("prompt", "x").part(
        "video",
        reqwest::multipart::Part::bytes(PNG_1X1.to_vec())
            .file_name("x.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let (status, err) = error_of(
        app.post("/v1/video/upload_and_chat")
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str().unwrap()),
        (400, "unsupported_media_type")
    );

    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"hello".to_vec())
            .file_name("a.txt")
            .mime_str("text/plain")
            .unwrap(),
    );
    let v: Value = app
        .post("/v1/files/upload")
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["file_url"]
            .as_str()
            .unwrap()
            .starts_with(&app.fake.base_url())
    );
    assert!(v["id"].as_str().unwrap().starts_with("file-"));

    let sts = json!({"filename": "a.png", "filesize": 10, "filetype": "image"});
    let user = app
        .post("/v2/files/getstsToken")
        .json(&sts)
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), 403);
    let admin = app
        .http
        .post(app.url("/v2/files/getstsToken"))
        .bearer_auth("sk-admin")
        .json(&sts)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    let v: Value = admin.json().await.unwrap();
    let grant = app.fake.sts_grants().pop().unwrap();
    assert_eq!(v["data"]["access_key_id"], grant.access_key_id.as_str());
    assert_eq!(v["data"]["security_token"], grant.security_token.as_str());
}

#[tokio::test]
async fn media_variants_are_listed_for_models_that_offer_them() {
    let fake = FakeQwen::start().await;
    let token = format!("token={}", fake.add_token("acct1"));
    let app = TestApp::spawn_with(fake, &[("QWEN_COOKIES", token.as_str())]).await;
    let v: Value = app.get_json("/v1/models").await;
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in [
        "qwen3.7-plus-image",
        "qwen3.7-plus-image-edit",
        "qwen3.7-plus-video",
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    assert!(!ids.contains(&"qwen3-coder-plus-image"));
    assert!(!ids.iter().any(|i| i.ends_with("-draw")));
}
