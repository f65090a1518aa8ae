//! The media side of the fake chat.qwen.ai: STS credentials, a path-style OSS bucket that
//! checks V4 signatures, document parsing, generated images and videos, and video tasks.
//!
//! The signature check is written here from the OSS V4 rules, independently of the crate
//! under test, so an upload the fake accepts is one real OSS would accept too.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::fake_qwen::{FakeQwen, Inner, Queues, Recorded, Reply, Session, now_unix, pop, push};

const STS_V1: &str = "/api/v1/files/getstsToken";
const STS_V2: &str = "/api/v2/files/getstsToken";
const PARSE: &str = "/api/v2/files/parse";
const PARSE_STATUS: &str = "/api/v2/files/parse/status";
const TASK_PREFIX: &str = "/api/v1/tasks/status/";
const OUTPUT_PREFIX: &str = "/output/";

/// The bucket every STS answer names.
pub const BUCKET: &str = "qwen-webui-prod";
/// The region every STS answer names; V4 signing uses it without the `oss-` prefix.
pub const REGION: &str = "oss-ap-southeast-1";
/// Signing algorithm of OSS V4 (`Authorization` scheme and first line of the string to sign).
pub const OSS4_ALGORITHM: &str = "OSS4-HMAC-SHA256";
/// The only payload hash the fake accepts in `x-oss-content-sha256`.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const DEFAULT_STS_EXPIRES: u64 = 3600;

/// A valid 1×1 transparent PNG, served for every generated image.
pub const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00,
    0x00, 0x05, 0x00, 0x01, 0x7a, 0x5e, 0xab, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44,
    0xae, 0x42, 0x60, 0x82,
];

/// An MP4 `ftyp` box and nothing else: enough to look like a video, not to play.
pub const MP4_STUB: &[u8] = &[
    0x00, 0x00, 0x00, 0x18, 0x66, 0x74, 0x79, 0x70, 0x69, 0x73, 0x6f, 0x6d, 0x00, 0x00, 0x02, 0x00,
    0x69, 0x73, 0x6f, 0x6d, 0x6d, 0x70, 0x34, 0x31,
];

/// One set of STS credentials the fake issued, and what it was issued for.
#[derive(Clone, Debug)]
pub struct StsGrant {
    /// Account label of the session that asked.
    pub label: String,
    pub user_id: String,
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    pub bucket: String,
    /// Object key (`file_path`): `<user_id>/<uuid>_<filename>`.
    pub key: String,
    /// As answered, with the `oss-` prefix.
    pub region: String,
    pub file_id: String,
    pub file_url: String,
    pub filename: String,
    /// `filetype` of the request, if it was a string.
    pub filetype: Option<String>,
    /// `filesize` of the request as text, whether it came as a number or a string.
    pub filesize: Option<String>,
    /// Content type of the upload, once one succeeded.
    pub content_type: Option<String>,
}

/// An object uploaded with a valid signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub bucket: String,
    pub key: String,
    pub content_type: String,
    pub bytes: Bytes,
}

/// One answer of `GET /api/v1/tasks/status/<task_id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskStep {
    Pending,
    Running,
    /// Finished; the URL of the video.
    Success(String),
    /// Failed with this message.
    Failed(String),
}

struct MediaState {
    sts: Queues,
    sts_flat: bool,
    sts_expires: u64,
    grants: Vec<StsGrant>,
    objects: Vec<StoredObject>,
    parse_polls: usize,
    parse_result: String,
    /// Status polls so far per file id.
    parse_counts: HashMap<String, usize>,
    tasks: HashMap<String, VecDeque<TaskStep>>,
}

/// Media state of one fake, held in its `Inner`.
pub(super) struct Media {
    /// `http://127.0.0.1:PORT`, the OSS endpoint named in STS answers.
    base_url: String,
    state: Mutex<MediaState>,
}

impl Media {
    pub(super) fn new(base_url: String) -> Media {
        Media {
            base_url,
            state: Mutex::new(MediaState {
                sts: HashMap::new(),
                sts_flat: false,
                sts_expires: DEFAULT_STS_EXPIRES,
                grants: Vec::new(),
                objects: Vec::new(),
                parse_polls: 1,
                parse_result: "success".to_owned(),
                parse_counts: HashMap::new(),
                tasks: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MediaState> {
        // A panicking test thread must not hide the state from the others.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What `fake_media::route` made of a request.
pub(super) enum Routed {
    /// A media endpoint answering with a scripted or JSON reply.
    Reply(Reply),
    /// A media endpoint answering with bytes and headers a [`Reply`] cannot carry.
    Raw(Response),
    /// Not a media endpoint; the session goes back to the chat routes.
    NotMedia(Option<Session>),
}

/// Routes the media endpoints; everything else is handed back untouched.
pub(super) fn route(inner: &Inner, request: &Recorded, session: Option<Session>) -> Routed {
    let media = &inner.media;
    let path = request.path.as_str();
    let bearer = |session: Option<Session>, answer: &dyn Fn(&Session) -> Reply| match session {
        Some(session) => Routed::Reply(answer(&session)),
        None => Routed::Reply(Reply::json(401, json!({"detail": "Unauthorized"}))),
    };
    match (request.method.as_str(), path) {
        ("POST", STS_V1 | STS_V2) => bearer(session, &|s| sts(media, request, s, path == STS_V1)),
        ("POST", PARSE) => bearer(session, &|_| parse(media, request)),
        ("POST", PARSE_STATUS) => bearer(session, &|_| parse_status(media, request)),
        ("GET", _) if path.starts_with(TASK_PREFIX) => {
            let task_id = &path[TASK_PREFIX.len()..];
            bearer(session, &|_| task_status(media, task_id))
        }
        ("GET", _) if path.starts_with(OUTPUT_PREFIX) => Routed::Raw(output(path)),
        ("PUT", _) if object_path(path).is_some() => Routed::Raw(put_object(media, request)),
        ("GET", _) if object_path(path).is_some() => Routed::Raw(get_object(media, path)),
        _ => Routed::NotMedia(session),
    }
}

/// `(bucket, encoded key)` of a path-style object path in the fake's bucket.
fn object_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (bucket, key) = rest.split_once('/')?;
    (bucket == BUCKET).then_some((bucket, key))
}

/// `{"success":false,"request_id":…,"data":{"code":…,"details":…}}` with this HTTP status.
pub fn business_error(status: u16, code: &str, details: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "success": false,
            "request_id": uuid::Uuid::new_v4().to_string(),
            "data": {"code": code, "details": details},
        }),
    )
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "callers build the data inline with json!(..)"
)]
fn success(data: Value) -> Reply {
    Reply::json(
        200,
        json!({"success": true, "request_id": uuid::Uuid::new_v4().to_string(), "data": data}),
    )
}

fn sts(media: &Media, request: &Recorded, session: &Session, flat_path: bool) -> Reply {
    let mut state = media.lock();
    if let Some(reply) = pop(&mut state.sts, &session.label) {
        return reply;
    }
    let body = request.json.as_ref();
    let field = |name: &str| body.and_then(|b| b.get(name));
    let Some(filename) = field("filename")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
    else {
        return business_error(400, "Bad_Request", "filename required");
    };
    let filesize = match field("filesize") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let key = format!("{}/{}_{filename}", session.user_id, uuid::Uuid::new_v4());
    let file_url = format!(
        "{}/{BUCKET}/{}?x-oss-date={}&x-oss-expires={}&x-oss-signature={}",
        media.base_url,
        uri_encode(&key),
        oss_date_now(),
        state.sts_expires,
        random_hex(64),
    );
    let grant = StsGrant {
        label: session.label.clone(),
        user_id: session.user_id.clone(),
        access_key_id: format!("STS.fake{}", random_hex(24)),
        access_key_secret: STANDARD.encode(random_bytes(30)),
        security_token: format!("CAIS{}", STANDARD.encode(random_bytes(240))),
        bucket: BUCKET.to_owned(),
        key,
        region: REGION.to_owned(),
        file_id: uuid::Uuid::new_v4().to_string(),
        file_url,
        filename: filename.to_owned(),
        filetype: field("filetype").and_then(Value::as_str).map(str::to_owned),
        filesize,
        content_type: None,
    };
    let payload = json!({
        "access_key_id": grant.access_key_id,
        "access_key_secret": grant.access_key_secret,
        "security_token": grant.security_token,
        "file_id": grant.file_id,
        "file_path": grant.key,
        "file_url": grant.file_url,
        "bucketname": grant.bucket,
        "region": grant.region,
        "endpoint": media.base_url,
    });
    state.grants.push(grant);
    if flat_path || state.sts_flat {
        Reply::json(200, payload)
    } else {
        success(payload)
    }
}

fn parse(media: &Media, request: &Recorded) -> Reply {
    let file_id = request
        .json
        .as_ref()
        .and_then(|b| b.get("file_id"))
        .and_then(Value::as_str);
    let Some(file_id) = file_id else {
        return business_error(400, "Bad_Request", "file_id required");
    };
    let mut state = media.lock();
    if !state.grants.iter().any(|g| g.file_id == file_id) {
        return business_error(200, "Not_Found", &format!("file {file_id} does not exist"));
    }
    state.parse_counts.insert(file_id.to_owned(), 0);
    success(json!({}))
}

fn parse_status(media: &Media, request: &Recorded) -> Reply {
    let ids: Option<Vec<&str>> = request
        .json
        .as_ref()
        .and_then(|b| b.get("file_id_list"))
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect());
    let Some(ids) = ids.filter(|ids| !ids.is_empty()) else {
        return business_error(400, "Bad_Request", "file_id_list required");
    };
    let mut state = media.lock();
    if let Some(unknown) = ids
        .iter()
        .find(|id| !state.grants.iter().any(|g| g.file_id == **id))
    {
        return business_error(200, "Not_Found", &format!("file {unknown} does not exist"));
    }
    let mut data = Vec::new();
    for id in ids {
        let polls = state.parse_counts.entry(id.to_owned()).or_insert(0);
        *polls += 1;
        let polls = *polls;
        let status = if polls <= state.parse_polls {
            "parsing"
        } else {
            state.parse_result.as_str()
        };
        data.push(json!({"file_id": id, "status": status}));
    }
    success(Value::Array(data))
}

fn task_status(media: &Media, task_id: &str) -> Reply {
    let mut state = media.lock();
    let Some(steps) = state.tasks.get_mut(task_id) else {
        return Reply::json(
            404,
            json!({"detail": format!("task {task_id} does not exist")}),
        );
    };
    let step = if steps.len() > 1 {
        steps.pop_front()
    } else {
        steps.front().cloned()
    };
    let (status, content, message) = match step.unwrap_or(TaskStep::Pending) {
        TaskStep::Pending => ("pending", String::new(), String::new()),
        TaskStep::Running => ("running", String::new(), String::new()),
        TaskStep::Success(url) => ("success", url, String::new()),
        TaskStep::Failed(message) => ("failed", String::new(), message),
    };
    Reply::json(
        200,
        json!({"task_id": task_id, "task_status": status, "content": content, "message": message}),
    )
}

fn output(path: &str) -> Response {
    let extension = std::path::Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let (content_type, bytes) = match extension.as_deref() {
        Some("png") => ("image/png", PNG_1X1),
        Some("mp4") => ("video/mp4", MP4_STUB),
        _ => {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Body::empty())
                .expect("valid response");
        }
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(bytes))
        .expect("valid response")
}

fn get_object(media: &Media, path: &str) -> Response {
    let Some((bucket, encoded)) = object_path(path) else {
        return oss_error(&OssError::new(404, "NoSuchBucket", "no such bucket"));
    };
    let key = percent_decode(encoded);
    let state = media.lock();
    let found = key.and_then(|key| {
        state
            .objects
            .iter()
            .find(|o| o.bucket == bucket && o.key == key)
    });
    let Some(object) = found else {
        return oss_error(&OssError::new(
            404,
            "NoSuchKey",
            "The specified key does not exist.",
        ));
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &object.content_type)
        .header(header::ETAG, etag(&object.bytes))
        .body(Body::from(object.bytes.clone()))
        .expect("valid response")
}

fn put_object(media: &Media, request: &Recorded) -> Response {
    match verify_put(media, request) {
        Ok(object) => {
            let etag = etag(&object.bytes);
            let mut state = media.lock();
            if let Some(grant) = state
                .grants
                .iter_mut()
                .find(|g| g.bucket == object.bucket && g.key == object.key)
            {
                grant.content_type = Some(object.content_type.clone());
            }
            state
                .objects
                .retain(|o| o.bucket != object.bucket || o.key != object.key);
            state.objects.push(object);
            Response::builder()
                .status(StatusCode::OK)
                .header(header::ETAG, etag)
                .header("x-oss-request-id", request_id())
                .body(Body::empty())
                .expect("valid response")
        }
        Err(error) => oss_error(&error),
    }
}

/// An OSS error answer: status, `Code`, `Message`, and for signature mismatches what the
/// fake signed, so a failing test shows where the client's canonical request differs.
struct OssError {
    status: u16,
    code: &'static str,
    message: String,
    canonical_request: Option<String>,
    string_to_sign: Option<String>,
}

impl OssError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> OssError {
        OssError {
            status,
            code,
            message: message.into(),
            canonical_request: None,
            string_to_sign: None,
        }
    }

    fn denied(message: impl Into<String>) -> OssError {
        OssError::new(403, "AccessDenied", message)
    }

    fn invalid(message: impl Into<String>) -> OssError {
        OssError::new(400, "InvalidArgument", message)
    }
}

fn oss_error(error: &OssError) -> Response {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>{}</Code>\n  \
         <Message>{}</Message>\n  <RequestId>{}</RequestId>\n",
        error.code,
        xml_escape(&error.message),
        request_id(),
    );
    if let Some(canonical) = &error.canonical_request {
        writeln!(
            xml,
            "  <CanonicalRequest>{}</CanonicalRequest>",
            xml_escape(canonical)
        )
        .expect("writing to a String cannot fail");
    }
    if let Some(string_to_sign) = &error.string_to_sign {
        writeln!(
            xml,
            "  <StringToSign>{}</StringToSign>",
            xml_escape(string_to_sign)
        )
        .expect("writing to a String cannot fail");
    }
    xml.push_str("</Error>\n");
    Response::builder()
        .status(StatusCode::from_u16(error.status).unwrap_or(StatusCode::FORBIDDEN))
        .header(header::CONTENT_TYPE, "application/xml")
        .header("x-oss-request-id", request_id())
        .body(Body::from(xml))
        .expect("valid response")
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The parts of an `OSS4-HMAC-SHA256` `Authorization` header.
struct Authorization {
    access_key_id: String,
    date: String,
    region: String,
    additional_headers: String,
    signature: String,
}

/// `OSS4-HMAC-SHA256 Credential=<ak>/<date>/<region>/oss/aliyun_v4_request[,AdditionalHeaders=<names>],Signature=<hex>`,
/// a space allowed after each comma.
fn parse_authorization(value: &str) -> Result<Authorization, OssError> {
    let Some(fields) = value
        .strip_prefix(OSS4_ALGORITHM)
        .and_then(|rest| rest.strip_prefix(' '))
    else {
        return Err(OssError::invalid(format!(
            "Authorization must start with \"{OSS4_ALGORITHM} \""
        )));
    };
    let mut credential = None;
    let mut additional = None;
    let mut signature = None;
    for field in fields.split(',') {
        let field = field.trim_start_matches(' ');
        let Some((name, value)) = field.split_once('=') else {
            return Err(OssError::invalid(format!(
                "Authorization field without '=': {field:?}"
            )));
        };
        let slot = match name {
            "Credential" => &mut credential,
            "AdditionalHeaders" => &mut additional,
            "Signature" => &mut signature,
            _ => {
                return Err(OssError::invalid(format!(
                    "unknown Authorization field {name:?}"
                )));
            }
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(OssError::invalid(format!(
                "Authorization field {name} given twice"
            )));
        }
    }
    let (Some(credential), Some(signature)) = (credential, signature) else {
        return Err(OssError::invalid(
            "Authorization needs Credential and Signature",
        ));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, "oss", "aliyun_v4_request"] = parts.as_slice() else {
        return Err(OssError::invalid(format!(
            "Credential must be <ak>/<date>/<region>/oss/aliyun_v4_request, got {credential:?}"
        )));
    };
    let is_lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if signature.len() != 64 || !is_lower_hex(&signature) {
        return Err(OssError::invalid(format!(
            "Signature must be 64 lower-case hex digits, got {signature:?}"
        )));
    }
    Ok(Authorization {
        access_key_id: (*access_key_id).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        additional_headers: additional.unwrap_or_default(),
        signature,
    })
}

fn is_oss_date(date: &str) -> bool {
    let b = date.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..15].iter().all(u8::is_ascii_digit)
}

/// Checks a PUT against the credentials issued for its key; the object to store if it passes.
fn verify_put(media: &Media, request: &Recorded) -> Result<StoredObject, OssError> {
    let Some((bucket, encoded)) = object_path(&request.path) else {
        return Err(OssError::new(404, "NoSuchBucket", "no such bucket"));
    };
    let Some(key) = percent_decode(encoded).filter(|k| !k.is_empty()) else {
        return Err(OssError::new(
            400,
            "InvalidObjectName",
            "the object key is empty or badly percent-encoded",
        ));
    };
    let Some(authorization) = request.header("authorization") else {
        return Err(OssError::denied("anonymous access is forbidden"));
    };
    let auth = parse_authorization(authorization)?;
    let grant = {
        let state = media.lock();
        state
            .grants
            .iter()
            .find(|g| g.access_key_id == auth.access_key_id)
            .cloned()
    };
    let Some(grant) = grant else {
        return Err(OssError::new(
            403,
            "InvalidAccessKeyId",
            "The OSS Access Key Id you provided does not exist in our records.",
        ));
    };
    if grant.bucket != bucket || grant.key != key {
        return Err(OssError::denied(format!(
            "these credentials were issued for {}/{}, not {bucket}/{key}",
            grant.bucket, grant.key
        )));
    }
    if request.header("x-oss-security-token") != Some(grant.security_token.as_str()) {
        return Err(OssError::new(
            403,
            "InvalidAccessKeyId",
            "The security token you provided is invalid.",
        ));
    }
    if request.header("x-oss-content-sha256") != Some(UNSIGNED_PAYLOAD) {
        return Err(OssError::invalid(format!(
            "x-oss-content-sha256 must be {UNSIGNED_PAYLOAD}"
        )));
    }
    let Some(date) = request.header("x-oss-date").filter(|d| is_oss_date(d)) else {
        return Err(OssError::invalid(
            "x-oss-date (YYYYMMDDTHHMMSSZ) is required",
        ));
    };
    let Some(content_type) = request.header("content-type") else {
        return Err(OssError::invalid("Content-Type is required"));
    };
    if auth.date != date[..8] {
        return Err(OssError::denied(format!(
            "Credential date {} is not the date of x-oss-date {date}",
            auth.date
        )));
    }
    let region = grant.region.strip_prefix("oss-").unwrap_or(&grant.region);
    if auth.region != region {
        return Err(OssError::denied(format!(
            "Credential region {} should be {region}",
            auth.region
        )));
    }
    let canonical = canonical_request(request, bucket, &key, &auth.additional_headers)?;
    let string_to_sign = string_to_sign(date, &auth.date, region, &canonical);
    let expected = oss_v4_signature(
        &grant.access_key_secret,
        &auth.date,
        region,
        &string_to_sign,
    );
    if expected != auth.signature {
        return Err(OssError {
            canonical_request: Some(canonical),
            string_to_sign: Some(string_to_sign),
            ..OssError::new(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        });
    }
    Ok(StoredObject {
        bucket: bucket.to_owned(),
        key,
        content_type: content_type.to_owned(),
        bytes: request.bytes.clone(),
    })
}

/// `PUT`, URI, empty query, the signed headers, the additional header names, the payload hash.
fn canonical_request(
    request: &Recorded,
    bucket: &str,
    key: &str,
    additional_headers: &str,
) -> Result<String, OssError> {
    let additional: Vec<String> = additional_headers
        .split(';')
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let signed = |name: &str| {
        matches!(name, "content-type" | "content-md5")
            || name.starts_with("x-oss-")
            || additional.iter().any(|a| a == name)
    };
    let mut headers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in &request.headers {
        if signed(name) {
            headers.entry(name).or_default().push(value.trim());
        }
    }
    if let Some(missing) = additional
        .iter()
        .find(|a| !headers.contains_key(a.as_str()))
    {
        return Err(OssError::invalid(format!(
            "AdditionalHeaders names {missing}, which the request does not carry"
        )));
    }
    let mut canonical_headers = String::new();
    for (name, values) in headers {
        writeln!(canonical_headers, "{name}:{}", values.join(","))
            .expect("writing to a String cannot fail");
    }
    Ok(format!(
        "PUT\n/{bucket}/{}\n\n{canonical_headers}\n{additional_headers}\n{UNSIGNED_PAYLOAD}",
        uri_encode(key)
    ))
}

/// `OSS4-HMAC-SHA256`, the request time, the scope, the hex SHA-256 of the canonical request.
pub fn string_to_sign(oss_date: &str, date8: &str, region: &str, canonical: &str) -> String {
    format!(
        "{OSS4_ALGORITHM}\n{oss_date}\n{date8}/{region}/oss/aliyun_v4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

fn hmac_sha256(key: &[u8], message: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Hex HMAC of `string_to_sign` under the V4 key derived from `sk` for that day and region
/// (`region` without the `oss-` prefix).
pub fn oss_v4_signature(sk: &str, date8: &str, region: &str, string_to_sign: &str) -> String {
    let k1 = hmac_sha256(format!("aliyun_v4{sk}").as_bytes(), date8);
    let k2 = hmac_sha256(&k1, region);
    let k3 = hmac_sha256(&k2, "oss");
    let k4 = hmac_sha256(&k3, "aliyun_v4_request");
    hex::encode(hmac_sha256(&k4, string_to_sign))
}

/// RFC 3986 encoding keeping unreserved characters and `/`.
pub fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").expect("writing to a String cannot fail");
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode_upper(&Sha256::digest(bytes)[..16]))
}

fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string().to_uppercase()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out.truncate(n);
    out
}

fn random_hex(digits: usize) -> String {
    let mut hex = hex::encode(random_bytes(digits.div_ceil(2)));
    hex.truncate(digits);
    hex
}

/// `YYYYMMDDTHHMMSSZ` now, UTC.
pub fn oss_date_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("formattable date")
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
}

/// `<base_url>/output/<uid>/<kind>/<rid>/<ts>.<ext>?key=<jwt-ish>`, the shape of a generated
/// file's URL; the fake serves any such `.png` or `.mp4`.
pub fn output_url(base_url: &str, kind: &str, ext: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({"exp": now_unix() + 86_400}).to_string());
    let signature = URL_SAFE_NO_PAD.encode(random_bytes(32));
    format!(
        "{base_url}/output/{}/{kind}/{}/{}.{ext}?key={header}.{claims}.{signature}",
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        now_millis(),
    )
}

/// `[height, width]` the site reports for an aspect ratio.
fn image_hw(ratio: &str) -> [u32; 2] {
    match ratio {
        "4:3" => [768, 1024],
        "3:4" => [1024, 768],
        "16:9" => [720, 1280],
        "9:16" => [1280, 720],
        _ => [1024, 1024],
    }
}

/// `response.created`, one `image_gen` delta carrying the URL, an empty `finished` delta.
fn image_reply(base_url: &str, kind: &str, hw: [u32; 2]) -> Reply {
    let response_id = uuid::Uuid::new_v4().to_string();
    let timestamp = now_unix();
    let events = [
        json!({"response.created": {
            "chat_id": uuid::Uuid::new_v4().to_string(),
            "parent_id": uuid::Uuid::new_v4().to_string(),
            "response_id": response_id,
            "response_index": "0",
        }}),
        json!({
            "choices": [{"delta": {
                "role": "assistant",
                "content": output_url(base_url, kind, "png"),
                "phase": "image_gen",
                "status": "typing",
                "extra": {"output_image_hw": [hw]},
            }}],
            "response_id": response_id,
            "usage": {
                "input_tokens": 42, "output_tokens": 0, "characters": 0, "total_tokens": 42,
                "input_tokens_details": {"text_tokens": 42},
                "output_tokens_details": {"text_tokens": 0},
                "prompt_tokens_details": {"cached_tokens": 0},
            },
            "timestamp": timestamp,
        }),
        json!({
            "choices": [{"delta": {
                "content": "", "role": "assistant", "status": "finished", "phase": "image_gen",
            }}],
            "response_id": response_id,
        }),
    ];
    let mut body = String::new();
    for event in &events {
        write!(body, "data: {event}\n\n").expect("writing to a String cannot fail");
    }
    Reply::sse(body)
}

/// A t2i completion stream whose image (served by the fake) has the size of `ratio`.
pub fn t2i_reply(base_url: &str, ratio: &str) -> Reply {
    image_reply(base_url, "t2i", image_hw(ratio))
}

/// An image_edit completion stream, shaped like [`t2i_reply`].
pub fn image_edit_reply(base_url: &str) -> Reply {
    image_reply(base_url, "image_edit", [1024, 1024])
}

/// HTTP 200 JSON `RateLimited` business error: the feature's daily quota is used up for
/// `hours` more hours.
pub fn rate_limited_reply(hours: u32) -> Reply {
    Reply::json(
        200,
        json!({
            "success": false,
            "request_id": uuid::Uuid::new_v4().to_string(),
            "data": {
                "code": "RateLimited",
                "num": hours,
                "details": "You have reached the upper limit for today's usage.",
            },
        }),
    )
}

/// The non-stream t2v completion answer naming the task to poll.
pub fn t2v_reply(task_id: &str) -> Reply {
    success(json!({
        "model": "qwen3.7-plus",
        "messages": [{
            "role": "assistant",
            "chat_type": "t2v",
            "content": "",
            "extra": {"wanx": {"task_id": task_id}},
        }],
    }))
}

impl FakeQwen {
    /// Queues a reply overriding the next STS request (v1 or v2) for `label` (`None`: any
    /// label); each is used once, FIFO, after the bearer check.
    pub fn push_sts(&self, label: Option<&str>, reply: Reply) {
        push(&mut self.inner.media.lock().sts, label, reply);
    }

    /// Whether the v2 STS path answers the payload flat, like v1, instead of enveloped.
    pub fn set_sts_flat(&self, flat: bool) {
        self.inner.media.lock().sts_flat = flat;
    }

    /// `x-oss-expires` written into `file_url` from now on (default 3600).
    pub fn set_sts_expires(&self, secs: u64) {
        self.inner.media.lock().sts_expires = secs;
    }

    /// Every STS credential set issued, in order, with the upload's content type once known.
    pub fn sts_grants(&self) -> Vec<StsGrant> {
        self.inner.media.lock().grants.clone()
    }

    /// Objects uploaded with a valid signature, in upload order (a re-upload moves to the end).
    pub fn objects(&self) -> Vec<StoredObject> {
        self.inner.media.lock().objects.clone()
    }

    /// The object stored under `key` (the decoded `file_path`).
    pub fn object(&self, key: &str) -> Option<StoredObject> {
        self.inner
            .media
            .lock()
            .objects
            .iter()
            .find(|o| o.key == key)
            .cloned()
    }

    /// How many status polls answer `parsing` before the final status (default 1).
    pub fn set_parse_polls(&self, polls: usize) {
        self.inner.media.lock().parse_polls = polls;
    }

    /// The status parsing ends in (default `success`; `failed` for a failed parse).
    pub fn set_parse_result(&self, status: &str) {
        status.clone_into(&mut self.inner.media.lock().parse_result);
    }

    /// Scripts `GET /api/v1/tasks/status/<task_id>`: each poll takes the next step, the last
    /// one repeats; an empty script answers `pending`.
    pub fn set_task(&self, task_id: &str, steps: Vec<TaskStep>) {
        self.inner
            .media
            .lock()
            .tasks
            .insert(task_id.to_owned(), steps.into());
    }
}
