//! The error answers each group of routes can give, for the OpenAPI document: the statuses of
//! `AppError` (docs/errors.md), each with the surface's envelope, and `Retry-After` where the
//! server sends it.

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, Header, Ref, RefOr, ResponseBuilder, response::Response};

/// The OpenAI envelope's schema name (`crate::openai::ErrorEnvelope`).
const OPENAI: &str = "ErrorEnvelope";
/// Anthropic's (`crate::anthropic::ErrorEnvelope`).
const ANTHROPIC: &str = "AnthropicErrorEnvelope";

/// One error answer: the envelope, and `Retry-After` when `retry`.
fn answer(envelope: &str, description: &str, retry: bool) -> RefOr<Response> {
    let mut b = ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name(envelope))),
    );
    if retry {
        let seconds = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1));
        let mut header = Header::new(seconds);
        header.description = Some("Seconds to wait before retrying.".to_owned());
        b = b.header("Retry-After", header);
    }
    b.build().into()
}

fn map(envelope: &str, rows: &[(&str, &str, bool)]) -> BTreeMap<String, RefOr<Response>> {
    rows.iter()
        .map(|(status, description, retry)| {
            ((*status).to_owned(), answer(envelope, description, *retry))
        })
        .collect()
}

/// The `/v1` routes of the OpenAI surfaces (chat, Responses, models, media, files).
pub struct OpenAiErrors;

impl IntoResponses for OpenAiErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(
            OPENAI,
            &[
                (
                    "400",
                    "Invalid request: bad JSON, a bad field value, a refused content.",
                    false,
                ),
                ("401", "Missing or unknown key (`invalid_api_key`).", false),
                (
                    "404",
                    "Unknown model (`model_not_found`) or id (`not_found`).",
                    false,
                ),
                (
                    "413",
                    "The body is larger than `MAX_BODY_MB` (`body_too_large`).",
                    false,
                ),
                ("415", "A `Content-Type` the route does not read.", false),
                (
                    "429",
                    "Every account is cooling down or busy (`rate_limit_exceeded`).",
                    true,
                ),
                (
                    "502",
                    "The upstream failed (`upstream_error` and related codes).",
                    false,
                ),
                (
                    "503",
                    "Overloaded, challenged by the site's firewall, or no usable account.",
                    true,
                ),
            ],
        )
    }
}

/// `/v1/messages` and `/v1/messages/count_tokens`, in Anthropic's envelope and statuses.
pub struct AnthropicErrors;

impl IntoResponses for AnthropicErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(
            ANTHROPIC,
            &[
                ("400", "`invalid_request_error`.", false),
                (
                    "401",
                    "`authentication_error`: missing or unknown key.",
                    false,
                ),
                ("404", "`not_found_error`: unknown model.", false),
                ("413", "`request_too_large`.", false),
                (
                    "429",
                    "`rate_limit_error`: every account is cooling down or busy.",
                    true,
                ),
                ("500", "`api_error`: the upstream failed.", false),
                (
                    "529",
                    "`overloaded_error`: no account can take the request now.",
                    true,
                ),
            ],
        )
    }
}

/// The admin API.
pub struct AdminErrors;

impl IntoResponses for AdminErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(
            OPENAI,
            &[
                (
                    "400",
                    "Invalid request (`invalid_value`, `sign_in_failed`, …).",
                    false,
                ),
                ("401", "Missing or unknown key (`invalid_api_key`).", false),
                (
                    "403",
                    "A valid key that is not the admin key (`admin_key_required`).",
                    false,
                ),
                ("404", "Unknown account or key id (`not_found`).", false),
                (
                    "409",
                    "The account id or key label already exists (`conflict`).",
                    false,
                ),
                ("500", "The store failed (`storage_error`).", false),
            ],
        )
    }
}
