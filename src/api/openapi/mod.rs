//! The OpenAPI 3.1 document served at `GET /openapi.json` (no key): paths from the handlers'
//! `#[utoipa::path]` attributes, schemas from the wire types' `ToSchema` derives, the security
//! schemes (set per route group, as the router sets its auth layers), the error envelopes
//! (`errors.rs`) and the multipart forms (`forms.rs`).

mod errors;
mod forms;

use axum::Json;
use axum::extract::State;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, PathItem, SecurityRequirement, Server};
use utoipa::{Modify, OpenApi};

pub use errors::{AdminErrors, AnthropicErrors, OpenAiErrors};
pub use forms::{FileUpload, ImageChat, ImageEdit, MultimodalChat, VideoChat};

use super::{
    admin, admin_page, chat, docs, files, health, images, messages, metrics, models, responses,
    videos,
};
use crate::server::AppState;

/// The schemes of the client API: any key of `API_KEY`, a key made with the admin API, or the
/// admin key (or, with `AUTH_MODE=passthrough`, a Qwen token).
const BEARER: &str = "bearer";
const X_API_KEY: &str = "x_api_key";
/// The admin API's: the same headers, with the admin key only.
const ADMIN_BEARER: &str = "admin_bearer";
const ADMIN_X_API_KEY: &str = "admin_x_api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "qwen2api",
        description = "An OpenAI- and Anthropic-compatible gateway to the Qwen web chat through \
            your own accounts. Client routes (`/v1/…`) take a key as `Authorization: Bearer` or \
            `x-api-key`; the admin API (`/api/…`, `/v2/…`) takes the admin key, and is served on \
            `ADMIN_LISTEN_ADDRESS` instead when that is set; the probes, `/openapi.json` and \
            `/docs` take none. With `API_PREFIX`, every path is under the prefix (the `servers` \
            entry). Errors come in OpenAI's envelope, or in Anthropic's on `/v1/messages`.",
        license(name = "MIT"),
    ),
    paths(
        chat::completions,
        messages::create,
        messages::count_tokens,
        responses::create,
        responses::retrieve,
        responses::delete,
        responses::input_items,
        models::list,
        models::one,
        images::generations,
        images::edits,
        videos::create,
        videos::get,
        files::create,
        files::list,
        files::upload_compat,
        files::get,
        files::delete,
        files::multimodal,
        files::image_and_chat,
        files::video_and_chat,
        health::about,
        models_without_key,
        health::health,
        health::ready,
        ready_older_path,
        serve,
        docs::page,
        admin::add_account,
        admin::delete_account,
        admin::accounts_health,
        admin::reload_config,
        admin::config_status,
        admin::create_key,
        admin::list_keys,
        admin::delete_key,
        admin::set_key_limits,
        admin::set_proxy,
        admin::usage,
        admin_page::requests,
        admin_page::requests_live,
        admin_page::retest,
        admin_page::page,
        admin_page::style,
        admin_page::script,
        files::sts_token,
        admin::verify,
        metrics::scrape,
    ),
    components(schemas(
        crate::openai::ErrorEnvelope,
        crate::openai::ChatCompletionChunk,
        crate::anthropic::ErrorEnvelope,
        crate::anthropic::StreamEvent,
        crate::anthropic::ModelList,
        crate::anthropic::ModelInfo,
    )),
    tags(
        (name = "OpenAI", description = "Chat completions."),
        (name = "Anthropic", description = "The Messages API, for Claude Code and the `anthropic` SDKs."),
        (name = "Responses", description = "OpenAI's Responses API, for Codex and agents."),
        (name = "Models", description = "The model list, in OpenAI's or Anthropic's shape."),
        (name = "Media", description = "Image and video generation."),
        (name = "Files", description = "Files for chat content parts, and a FastAPI proxy's upload routes."),
        (name = "Service", description = "What the server is, its probes and this document; no key."),
        (name = "Admin", description = "Accounts, keys, usage and reload; the admin key (docs/admin-api.md)."),
    ),
    modifiers(&Security),
)]
struct ApiDoc;

/// The document, with `prefix` (`API_PREFIX`, may be empty) as its server.
pub fn document(prefix: &str) -> Document {
    let mut doc = ApiDoc::openapi();
    if !prefix.is_empty() {
        doc.servers = Some(vec![Server::new(prefix)]);
    }
    doc
}

/// The document as JSON.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "Service",
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Object)),
)]
pub async fn serve(State(state): State<AppState>) -> Json<Document> {
    Json(document(&state.config().server.api_prefix))
}

/// The model list without a key.
///
/// The same list as `GET /v1/models`.
#[utoipa::path(
    get,
    path = "/models",
    tag = "Models",
    responses(
        (status = 200, description = "The model list.", body = crate::openai::ModelList),
    ),
)]
#[expect(dead_code, reason = "documents a second path of models::list")]
fn models_without_key() {}

/// Readiness, the older path.
///
/// The same check as `GET /ready`.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "Service",
    responses(
        (status = 200, description = "Ready.", body = Object),
        (status = 503, description = "Not ready; `reason` says why.", body = Object),
    ),
)]
#[expect(dead_code, reason = "documents a second path of health::ready")]
fn ready_older_path() {}

/// Adds the security schemes, and sets each operation's security by its path's group, as
/// `api::public` and `api::admin` set the auth layers: `/v1/…` a client key, `/api/…`,
/// `/v2/…` and `/metrics` the admin key (`/metrics` none with `METRICS_PUBLIC`), any other path
/// none (`/verify` reads its key from the body).
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(format!("`Authorization: Bearer <{what}>`")))
                    .build(),
            )
        };
        let header = |what: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                format!("`x-api-key: <{what}>` (as Anthropic clients send it)").as_str(),
            )))
        };
        components.add_security_scheme(BEARER, bearer("key"));
        components.add_security_scheme(X_API_KEY, header("key"));
        components.add_security_scheme(ADMIN_BEARER, bearer("admin key"));
        components.add_security_scheme(ADMIN_X_API_KEY, header("admin key"));
        for (path, item) in &mut doc.paths.paths {
            let schemes = security_of(path);
            let wanted: Vec<SecurityRequirement> = schemes
                .iter()
                .map(|s| SecurityRequirement::new(*s, Vec::<String>::new()))
                .collect();
            for op in operations(item) {
                op.security = Some(wanted.clone());
            }
        }
    }
}

/// The schemes that admit a request to `path`, any one of them.
fn security_of(path: &str) -> &'static [&'static str] {
    if path.starts_with("/v1/") {
        &[BEARER, X_API_KEY]
    } else if path.starts_with("/api/") || path.starts_with("/v2/") || path == "/metrics" {
        &[ADMIN_BEARER, ADMIN_X_API_KEY]
    } else {
        &[]
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}
