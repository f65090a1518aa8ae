//! Self-test of the fake's media endpoints: STS, the signed OSS upload, parsing, generated
//! media and video tasks, driven directly with reqwest.
use crate::common;

use std::collections::BTreeMap;

use common::fake_media::{
    BUCKET, MP4_STUB, PNG_1X1, TaskStep, image_edit_reply, oss_v4_signature, rate_limited_reply,
    string_to_sign, t2i_reply, t2v_reply,
};
use common::fake_qwen::{FakeQwen, Reply, jwt_claims};
use serde_json::{Value, json};

const STS_V1: &str = "/api/v1/files/getstsToken";
const STS_V2: &str = "/api/v2/files/getstsToken";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post(fake: &FakeQwen, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = client().post(fake.url(path)).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn post_json(fake: &FakeQwen, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let response = post(fake, path, Some(token), body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The STS payload of a v2 answer (enveloped) for `filename`.
async fn sts(fake: &FakeQwen, token: &str, filename: &str) -> Value {
    let body = json!({"filename": filename, "filesize": 4, "filetype": "image"});
    let (status, answer) = post_json(fake, STS_V2, token, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], true, "{answer}");
    answer["data"].clone()
}

/// The test's own RFC 3986 encoder (unreserved and `/` kept), so the fake's is not trusted.
fn encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The test's own canonical request for a path-style PUT with an unsigned payload.
fn canonical(
    bucket: &str,
    key: &str,
    signed: &BTreeMap<String, String>,
    additional: &str,
) -> String {
    let mut headers = String::new();
    for (name, value) in signed {
        headers.push_str(name);
        headers.push(':');
        headers.push_str(value.trim());
        headers.push('\n');
    }
    format!(
        "PUT\n/{bucket}/{}\n\n{headers}\n{additional}\nUNSIGNED-PAYLOAD",
        encode(key)
    )
}

/// A PUT signed like an OSS V4 client, with knobs to break it.
struct Put {
    url: String,
    bucket: String,
    key: String,
    ak: String,
    sk: String,
    token: String,
    region: String,
    date: String,
    content_type: String,
    body: Vec<u8>,
    /// Extra headers, signed through `AdditionalHeaders` when `additional` is true.
    extra: Vec<(String, String)>,
    additional: bool,
    /// `", "` instead of `","` between the Authorization fields.
    spaced: bool,
    /// Content type sent, when it differs from the signed one.
    sent_content_type: Option<String>,
    payload_hash: String,
}

impl Put {
    /// An upload of `body` to the key the STS `payload` names, with its credentials.
    fn new(payload: &Value, body: &[u8]) -> Put {
        let s = |name: &str| payload[name].as_str().unwrap().to_owned();
        let key = s("file_path");
        let bucket = s("bucketname");
        Put {
            url: format!("{}/{bucket}/{}", s("endpoint"), encode(&key)),
            bucket,
            key,
            ak: s("access_key_id"),
            sk: s("access_key_secret"),
            token: s("security_token"),
            region: s("region").strip_prefix("oss-").unwrap().to_owned(),
            date: common::fake_media::oss_date_now(),
            content_type: "image/png".to_owned(),
            body: body.to_vec(),
            extra: Vec::new(),
            additional: false,
            spaced: false,
            sent_content_type: None,
            payload_hash: "UNSIGNED-PAYLOAD".to_owned(),
        }
    }

    fn authorization(&self) -> String {
        let mut signed = BTreeMap::from([
            ("content-type".to_owned(), self.content_type.clone()),
            ("x-oss-content-sha256".to_owned(), self.payload_hash.clone()),
            ("x-oss-date".to_owned(), self.date.clone()),
            ("x-oss-security-token".to_owned(), self.token.clone()),
        ]);
        let mut names = Vec::new();
        for (name, value) in &self.extra {
            let name = name.to_ascii_lowercase();
            if self.additional || name.starts_with("x-oss-") {
                signed.insert(name.clone(), value.clone());
            }
            if self.additional {
                names.push(name);
            }
        }
        names.sort();
        let additional = names.join(";");
        let canonical = canonical(&self.bucket, &self.key, &signed, &additional);
        let date8 = &self.date[..8];
        let to_sign = string_to_sign(&self.date, date8, &self.region, &canonical);
        let signature = oss_v4_signature(&self.sk, date8, &self.region, &to_sign);
        let sep = if self.spaced { ", " } else { "," };
        let credential = format!(
            "Credential={}/{date8}/{}/oss/aliyun_v4_request",
            self.ak, self.region
        );
        if additional.is_empty() {
            format!("OSS4-HMAC-SHA256 {credential}{sep}Signature={signature}")
        } else {
            format!(
                "OSS4-HMAC-SHA256 {credential}{sep}AdditionalHeaders={additional}{sep}Signature={signature}"
            )
        }
    }

    async fn send(&self) -> reqwest::Response {
        let content_type = self
            .sent_content_type
            .as_ref()
            .unwrap_or(&self.content_type);
        let mut request = client()
            .put(&self.url)
            .header("Content-Type", content_type)
            .header("x-oss-date", &self.date)
            .header("x-oss-content-sha256", &self.payload_hash)
            .header("x-oss-security-token", &self.token)
            .header("Authorization", self.authorization())
            .body(self.body.clone());
        for (name, value) in &self.extra {
            request = request.header(name, value);
        }
        request.send().await.unwrap()
    }
}

/// The `<Code>` of an OSS XML error answer, after checking status and content type.
async fn oss_code(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/xml");
    let text = response.text().await.unwrap();
    let start = text.find("<Code>").expect("a Code element") + "<Code>".len();
    let end = text.find("</Code>").expect("a closed Code element");
    text[start..end].to_owned()
}

#[tokio::test]
async fn sts_v2_is_enveloped_v1_is_flat_and_v2_can_be_made_flat() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let user_id = jwt_claims(&token).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"filename": "a photo (1).png", "filesize": "12", "filetype": "image"});

    let (status, v2) = post_json(&fake, STS_V2, &token, &body).await;
    assert_eq!(status, 200);
    assert_eq!(v2["success"], true);
    assert!(uuid::Uuid::parse_str(v2["request_id"].as_str().unwrap()).is_ok());
    let data = &v2["data"];
    for field in [
        "access_key_id",
        "access_key_secret",
        "security_token",
        "file_id",
        "file_path",
        "file_url",
        "bucketname",
        "region",
        "endpoint",
    ] {
        assert!(data[field].is_string(), "{field} in {data}");
    }
    assert!(
        data["access_key_id"]
            .as_str()
            .unwrap()
            .starts_with("STS.fake")
    );
    assert!(data["security_token"].as_str().unwrap().len() > 200);
    assert_eq!(
        uuid::Uuid::parse_str(data["file_id"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        4
    );
    assert_eq!(data["bucketname"], BUCKET);
    assert_eq!(data["region"], "oss-ap-southeast-1");
    assert_eq!(data["endpoint"], fake.base_url());

    let path = data["file_path"].as_str().unwrap();
    let (owner, name) = path.split_once('/').unwrap();
    assert_eq!(owner, user_id);
    let (uuid_part, filename) = name.split_once('_').unwrap();
    assert!(uuid::Uuid::parse_str(uuid_part).is_ok());
    assert_eq!(filename, "a photo (1).png");

    let url = data["file_url"].as_str().unwrap();
    let (location, query) = url.split_once('?').unwrap();
    assert_eq!(
        location,
        format!("{}/{BUCKET}/{}", fake.base_url(), encode(path))
    );
    assert!(location.ends_with("_a%20photo%20%281%29.png"), "{location}");
    let params: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    assert_eq!(params[0].0, "x-oss-date");
    let signed_at = params[0].1;
    assert!(
        signed_at.len() == 16 && signed_at.as_bytes()[8] == b'T' && signed_at.ends_with('Z'),
        "{signed_at}"
    );
    assert_eq!(params[1], ("x-oss-expires", "3600"));
    assert_eq!(params[2].0, "x-oss-signature");
    assert!(params[2].1.bytes().all(|b| b.is_ascii_hexdigit()));

    let grants = fake.sts_grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].label, "acct1");
    assert_eq!(grants[0].key, path);
    assert_eq!(grants[0].filesize.as_deref(), Some("12"));
    assert_eq!(grants[0].filename, "a photo (1).png");
    assert_eq!(grants[0].filetype.as_deref(), Some("image"));
    assert_eq!(grants[0].content_type, None);

    let (status, v1) = post_json(
        &fake,
        STS_V1,
        &token,
        &json!({"filename": "b.pdf", "filesize": 7}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(v1.get("success").is_none(), "v1 is flat: {v1}");
    assert!(v1["file_path"].as_str().unwrap().ends_with("_b.pdf"));
    assert_eq!(fake.sts_grants()[1].filesize.as_deref(), Some("7"));

    fake.set_sts_flat(true);
    fake.set_sts_expires(60);
    let (status, flat) = post_json(&fake, STS_V2, &token, &body).await;
    assert_eq!(status, 200);
    assert!(flat.get("data").is_none(), "flat v2: {flat}");
    assert!(
        flat["file_url"]
            .as_str()
            .unwrap()
            .contains("&x-oss-expires=60&")
    );
    assert_eq!(fake.count("POST", STS_V2), 2);
    assert_eq!(fake.count("POST", STS_V1), 1);
}

#[tokio::test]
async fn sts_needs_a_session_and_a_filename() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let body = json!({"filename": "a.png", "filesize": 1, "filetype": "image"});

    for path in [STS_V1, STS_V2] {
        let anonymous = post(&fake, path, None, &body).await;
        assert_eq!(anonymous.status(), 401);
        assert_eq!(
            anonymous.json::<Value>().await.unwrap(),
            json!({"detail": "Unauthorized"})
        );
        let bad = post(&fake, path, Some("not-a-token"), &body).await;
        assert_eq!(bad.status(), 401);
    }

    let (status, answer) = post_json(
        &fake,
        STS_V2,
        &token,
        &json!({"filesize": 1, "filetype": "file"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer["success"], false);
    assert!(answer["request_id"].is_string());
    assert_eq!(
        answer["data"],
        json!({"code": "Bad_Request", "details": "filename required"})
    );
    assert!(fake.sts_grants().is_empty());
}

#[tokio::test]
async fn queued_sts_replies_override_per_label_then_normal_service_resumes() {
    let fake = FakeQwen::start().await;
    let one = fake.add_token("acct1");
    let two = fake.add_token("acct2");
    fake.push_sts(
        Some("acct1"),
        Reply::json(403, json!({"detail": "forbidden"})),
    );
    fake.push_sts(None, rate_limited_reply(3));
    let body = json!({"filename": "a.png", "filesize": 1, "filetype": "image"});

    let (status, answer) = post_json(&fake, STS_V2, &two, &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["data"]["code"], "RateLimited");
    assert_eq!(answer["data"]["num"], 3);
    let (status, answer) = post_json(&fake, STS_V1, &one, &body).await;
    assert_eq!((status, answer), (403, json!({"detail": "forbidden"})));

    let (status, answer) = post_json(&fake, STS_V2, &one, &body).await;
    assert_eq!(status, 200);
    assert_eq!(answer["success"], true);
    assert_eq!(fake.sts_grants().len(), 1);
}

/// Vectors computed with Python's `hmac`/`hashlib`/`urllib.parse.quote`, not with Rust.
#[test]
fn signing_matches_an_independent_implementation() {
    let key = "7ad5c1a0/0b6e_a photo (1)+é.png";
    assert_eq!(
        encode(key),
        "7ad5c1a0/0b6e_a%20photo%20%281%29%2B%C3%A9.png"
    );
    let mut signed = BTreeMap::from([
        ("content-type".to_owned(), "image/png".to_owned()),
        (
            "x-oss-content-sha256".to_owned(),
            "UNSIGNED-PAYLOAD".to_owned(),
        ),
        ("x-oss-date".to_owned(), "20261122T031540Z".to_owned()),
        ("x-oss-security-token".to_owned(), "CAIStoken==".to_owned()),
    ]);
    let request = canonical(BUCKET, key, &signed, "");
    let to_sign = string_to_sign("20261122T031540Z", "20261122", "ap-southeast-1", &request);
    assert_eq!(
        to_sign,
        "OSS4-HMAC-SHA256\n20261122T031540Z\n20261122/ap-southeast-1/oss/aliyun_v4_request\n\
         a073d37656f6b208a2b6102aac43313eaff16de819810dba7f032a06346524a7"
    );
    let sk = "fakeSecretKey/Example+123";
    assert_eq!(
        oss_v4_signature(sk, "20261122", "ap-southeast-1", &to_sign),
        "ea32982105a5ddc8fde93bb2237bb1912dca7cae2c7223ff5802df5b73a138a0"
    );

    signed.insert("host".to_owned(), "127.0.0.1:8080".to_owned());
    let request = canonical(BUCKET, key, &signed, "host");
    let to_sign = string_to_sign("20261122T031540Z", "20261122", "ap-southeast-1", &request);
    assert_eq!(
        oss_v4_signature(sk, "20261122", "ap-southeast-1", &to_sign),
        "0ec8c62bedde1545e4f4b300900f5edd90410ec21a2e4d2a1887c312864be820"
    );
}

#[tokio::test]
async fn a_correctly_signed_put_is_stored_and_served() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let payload = sts(&fake, &token, "pic é+(1).png").await;
    // Not UTF-8: the recorded raw bytes must keep it exactly.
    let bytes = vec![0x89, 0xff, 0x00, 0xfe, b'P'];
    let put = Put::new(&payload, &bytes);

    let response = put.send().await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert!(response.headers().contains_key("etag"));
    let recorded = fake.requests().pop().unwrap();
    assert_eq!(recorded.method, "PUT");
    assert_eq!(recorded.bytes.as_ref(), bytes.as_slice());

    let key = payload["file_path"].as_str().unwrap();
    let stored = fake.object(key).expect("stored under the decoded key");
    assert_eq!(stored.bucket, BUCKET);
    assert_eq!(stored.content_type, "image/png");
    assert_eq!(stored.bytes.as_ref(), bytes.as_slice());
    assert_eq!(fake.objects(), vec![stored]);
    assert_eq!(
        fake.sts_grants()[0].content_type.as_deref(),
        Some("image/png")
    );

    let fetched = client()
        .get(payload["file_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["content-type"], "image/png");
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let missing = client()
        .get(fake.url(&format!("/{BUCKET}/nobody/none.png")))
        .send()
        .await
        .unwrap();
    assert_eq!(oss_code(missing, 404).await, "NoSuchKey");
}

#[tokio::test]
async fn additional_headers_and_spaces_after_commas_are_accepted() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let payload = sts(&fake, &token, "notes.txt").await;
    let mut put = Put::new(&payload, b"hello");
    put.content_type = "text/plain".to_owned();
    put.extra = vec![
        ("x-oss-meta-origin".to_owned(), "  test  ".to_owned()),
        ("x-sdk-client".to_owned(), "selftest/1".to_owned()),
    ];
    put.additional = true;
    put.spaced = true;

    let response = put.send().await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let stored = fake.object(payload["file_path"].as_str().unwrap()).unwrap();
    assert_eq!(stored.content_type, "text/plain");
    assert_eq!(stored.bytes.as_ref(), b"hello");
}

#[tokio::test]
async fn bad_signatures_and_credentials_are_refused() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let payload = sts(&fake, &token, "a.png").await;
    let other = sts(&fake, &token, "b.png").await;

    let mut wrong_secret = Put::new(&payload, b"x");
    wrong_secret.sk.push('x');
    let response = wrong_secret.send().await;
    assert_eq!(response.status(), 403);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{text}"
    );
    assert!(
        text.contains("<CanonicalRequest>PUT\n/qwen-webui-prod/"),
        "{text}"
    );

    let mut changed_after_signing = Put::new(&payload, b"x");
    changed_after_signing.sent_content_type = Some("image/jpeg".to_owned());
    assert_eq!(
        oss_code(changed_after_signing.send().await, 403).await,
        "SignatureDoesNotMatch"
    );

    let mut unsigned_extra = Put::new(&payload, b"x");
    unsigned_extra.extra = vec![("x-oss-meta-a".to_owned(), "1".to_owned())];
    unsigned_extra.additional = false;
    let mut dropped = Put::new(&payload, b"x");
    dropped.extra = vec![("x-oss-meta-a".to_owned(), "1".to_owned())];
    // Signs the x-oss-meta header but does not send it.
    let authorization = dropped.authorization();
    let response = client()
        .put(&dropped.url)
        .header("Content-Type", "image/png")
        .header("x-oss-date", &dropped.date)
        .header("x-oss-content-sha256", "UNSIGNED-PAYLOAD")
        .header("x-oss-security-token", &dropped.token)
        .header("Authorization", authorization)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(oss_code(response, 403).await, "SignatureDoesNotMatch");
    assert_eq!(
        unsigned_extra.send().await.status(),
        200,
        "x-oss-* headers are always signed"
    );

    let mut wrong_token = Put::new(&payload, b"x");
    wrong_token.token = other["security_token"].as_str().unwrap().to_owned();
    assert_eq!(
        oss_code(wrong_token.send().await, 403).await,
        "InvalidAccessKeyId"
    );

    let mut unknown_key_id = Put::new(&payload, b"x");
    unknown_key_id.ak = "STS.nobody".to_owned();
    assert_eq!(
        oss_code(unknown_key_id.send().await, 403).await,
        "InvalidAccessKeyId"
    );

    let mut other_object = Put::new(&other, b"x");
    other_object.url = Put::new(&payload, b"x").url;
    other_object.key = payload["file_path"].as_str().unwrap().to_owned();
    assert_eq!(
        oss_code(other_object.send().await, 403).await,
        "AccessDenied"
    );

    let mut wrong_region = Put::new(&payload, b"x");
    wrong_region.region = "oss-ap-southeast-1".to_owned();
    assert_eq!(
        oss_code(wrong_region.send().await, 403).await,
        "AccessDenied"
    );

    let mut hashed = Put::new(&payload, b"x");
    hashed.payload_hash =
        "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881".to_owned();
    assert_eq!(oss_code(hashed.send().await, 400).await, "InvalidArgument");

    let anonymous = client()
        .put(Put::new(&payload, b"x").url)
        .header("Content-Type", "image/png")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(oss_code(anonymous, 403).await, "AccessDenied");

    // Only the one correctly signed upload above was stored.
    assert_eq!(fake.objects().len(), 1);
    assert_eq!(fake.objects()[0].bytes.as_ref(), b"x");
}

#[tokio::test]
async fn parse_polls_parsing_then_the_configured_result() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let id = sts(&fake, &token, "doc.pdf").await["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = |id: &str| json!({"file_id_list": [id]});

    let (code, unknown) = post_json(
        &fake,
        "/api/v2/files/parse",
        &token,
        &json!({"file_id": "nope"}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(unknown["success"], false);
    assert_eq!(unknown["data"]["code"], "Not_Found");
    assert_eq!(
        post(&fake, "/api/v2/files/parse", None, &json!({"file_id": id}))
            .await
            .status(),
        401
    );

    let (code, started) = post_json(
        &fake,
        "/api/v2/files/parse",
        &token,
        &json!({"file_id": id}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(started["success"], true);
    assert_eq!(started["data"], json!({}));
    let (_, first) = post_json(&fake, "/api/v2/files/parse/status", &token, &status(&id)).await;
    assert_eq!(first["success"], true);
    assert_eq!(first["data"], json!([{"file_id": id, "status": "parsing"}]));
    let (_, second) = post_json(&fake, "/api/v2/files/parse/status", &token, &status(&id)).await;
    assert_eq!(second["data"][0]["status"], "success");

    fake.set_parse_polls(2);
    fake.set_parse_result("failed");
    post_json(
        &fake,
        "/api/v2/files/parse",
        &token,
        &json!({"file_id": id}),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (_, answer) =
            post_json(&fake, "/api/v2/files/parse/status", &token, &status(&id)).await;
        seen.push(answer["data"][0]["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["parsing", "parsing", "failed", "failed"]);
    assert_eq!(fake.count("POST", "/api/v2/files/parse/status"), 6);
}

#[tokio::test]
async fn generated_png_and_mp4_are_served() {
    let fake = FakeQwen::start().await;
    let png = client()
        .get(fake.url("/output/u/t2i/r/1.png?key=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    let bytes = png.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), PNG_1X1);
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(&bytes[12..24], b"IHDR\0\0\0\x01\0\0\0\x01", "1x1");

    let mp4 = client()
        .get(fake.url("/output/u/t2v/r/video.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(mp4.status(), 200);
    assert_eq!(mp4.headers()["content-type"], "video/mp4");
    assert_eq!(mp4.bytes().await.unwrap().as_ref(), MP4_STUB);

    let other = client()
        .get(fake.url("/output/u/x.gif"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

/// `data:` events of an SSE body, in order.
fn events(text: &str) -> Vec<Value> {
    assert!(!text.contains("[DONE]"));
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

async fn complete(fake: &FakeQwen, token: &str, chat_type: &str) -> reqwest::Response {
    client()
        .post(fake.url("/api/v2/chat/completions?chat_id=c1"))
        .bearer_auth(token)
        .json(&json!({"stream": true, "chat_id": "c1", "messages": [{"chat_type": chat_type}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn image_replies_stream_a_fetchable_url() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    fake.push_completion(None, t2i_reply(&fake.base_url(), "16:9"));
    fake.push_completion(None, image_edit_reply(&fake.base_url()));

    for (kind, hw) in [
        ("t2i", json!([[720, 1280]])),
        ("image_edit", json!([[1024, 1024]])),
    ] {
        let response = complete(&fake, &token, kind).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let events = events(&response.text().await.unwrap());
        assert_eq!(events.len(), 3);
        let response_id = &events[0]["response.created"]["response_id"];
        assert!(response_id.is_string());

        let delta = &events[1]["choices"][0]["delta"];
        assert_eq!(delta["phase"], "image_gen");
        assert_eq!(delta["status"], "typing");
        assert_eq!(delta["extra"]["output_image_hw"], hw);
        assert_eq!(&events[1]["response_id"], response_id);
        assert!(events[1]["usage"]["total_tokens"].is_number());
        let url = delta["content"].as_str().unwrap();
        let prefix = format!("{}/output/", fake.base_url());
        let rest = url.strip_prefix(&prefix).expect("a full URL on the fake");
        let (path, query) = rest.split_once('?').unwrap();
        let segments: Vec<&str> = path.split('/').collect();
        assert_eq!(segments.len(), 4, "{url}");
        assert_eq!(segments[1], kind);
        assert_eq!(
            std::path::Path::new(segments[3]).extension(),
            Some("png".as_ref())
        );
        assert!(query.starts_with("key="));

        let last = &events[2]["choices"][0]["delta"];
        assert_eq!(last["status"], "finished");
        assert_eq!(last["phase"], "image_gen");
        assert_eq!(last["content"], "");

        let image = client().get(url).send().await.unwrap();
        assert_eq!(image.headers()["content-type"], "image/png");
        assert_eq!(image.bytes().await.unwrap().as_ref(), PNG_1X1);
    }
}

#[tokio::test]
async fn rate_limited_and_t2v_replies_are_json() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    fake.push_completion(None, rate_limited_reply(5));
    fake.push_completion(None, t2v_reply("task-1"));

    let limited = complete(&fake, &token, "t2i").await;
    assert_eq!(limited.status(), 200);
    assert_eq!(limited.headers()["content-type"], "application/json");
    let limited: Value = limited.json().await.unwrap();
    assert_eq!(limited["success"], false);
    assert_eq!(limited["data"]["code"], "RateLimited");
    assert_eq!(limited["data"]["num"], 5);
    assert!(
        limited["data"]["details"]
            .as_str()
            .unwrap()
            .contains("upper limit")
    );

    let video: Value = complete(&fake, &token, "t2v").await.json().await.unwrap();
    assert_eq!(video["success"], true);
    let message = &video["data"]["messages"][0];
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["chat_type"], "t2v");
    assert_eq!(message["extra"]["wanx"]["task_id"], "task-1");

    // The queue is used up: the default text answer comes back.
    let text = complete(&fake, &token, "t2t").await;
    assert_eq!(text.headers()["content-type"], "text/event-stream");
}

#[tokio::test]
async fn task_status_follows_its_script_and_repeats_the_last_step() {
    let fake = FakeQwen::start().await;
    let token = fake.add_token("acct1");
    let url = fake.url("/output/u/t2v/r/video.mp4?key=k");
    fake.set_task(
        "t1",
        vec![
            TaskStep::Pending,
            TaskStep::Running,
            TaskStep::Success(url.clone()),
        ],
    );
    fake.set_task("t2", vec![TaskStep::Failed("content policy".to_owned())]);
    let poll = |task: &str| {
        client()
            .get(fake.url(&format!("/api/v1/tasks/status/{task}")))
            .bearer_auth(&token)
            .send()
    };

    let mut seen = Vec::new();
    for _ in 0..4 {
        let answer: Value = poll("t1").await.unwrap().json().await.unwrap();
        seen.push((
            answer["task_status"].as_str().unwrap().to_owned(),
            answer["content"].as_str().unwrap().to_owned(),
        ));
    }
    let expected: Vec<(String, String)> = [
        ("pending", ""),
        ("running", ""),
        ("success", url.as_str()),
        ("success", url.as_str()),
    ]
    .iter()
    .map(|(s, c)| ((*s).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(fake.count("GET", "/api/v1/tasks/status/t1"), 4);

    let failed: Value = poll("t2").await.unwrap().json().await.unwrap();
    assert_eq!(failed["task_status"], "failed");
    assert_eq!(failed["content"], "");
    assert_eq!(failed["message"], "content policy");

    let unknown = poll("t3").await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.json::<Value>().await.is_ok());

    let anonymous = client()
        .get(fake.url("/api/v1/tasks/status/t1"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
