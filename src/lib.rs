//! qwen2api: an OpenAI-compatible gateway to the Qwen web chat through the user's own accounts.
//!
//! A request goes `server` → `api` → `openai` → `conversation` → `proxy` → `upstream`; the
//! other modules are rooms beside that path. docs/development.md has the map.

// The request path: server → api → openai → conversation → proxy → upstream.
pub mod anthropic; // the Anthropic Messages surface: wire types and their translation
pub mod api; // routes, auth, extractors, thin handlers
pub mod conversation; // the neutral model every surface translates into and out of
pub mod openai; // the OpenAI chat surface: wire types and their translation
pub mod proxy; // the one door: model catalog, lease, attempt, failover, first-byte policy
pub mod responses; // the OpenAI Responses surface: wire types, translation, stored form
pub mod server; // the app's assembly: router, serving, event loops, AppState, AppError
pub mod upstream; // the Upstream trait; chat.qwen.ai behind it in upstream/qwen/

// Rooms beside it.
pub mod accounts; // upstream accounts: pool, sign-in, health, pacing
pub mod admin; // the admin web page's files, compiled in
pub mod allocator; // giving freed memory back to the system after bursts
pub mod config; // the typed configuration tree, read from the environment
pub mod keys; // API keys and the usage counted for each
pub mod media; // attachments, /v1/files storage, remote fetches, video jobs
pub mod metrics; // Prometheus metrics: the registry, request timing, the scrape
pub mod reload; // re-reading the configuration at runtime (.env watch, /api/reloadConfig)
pub mod store; // persistence: sqlite (default), redis, or memory
pub mod telemetry; // logging: subscriber and the request log line
pub mod tokens; // token counts with Qwen's BPE, for count_tokens and the max_tokens cut
pub mod tools; // tool calling over a web chat: the call syntax, reading calls, their checks

/// Entry points for `fuzz/` and the test that replays its corpus.
pub mod fuzzing;

pub use config::Config;
pub use server::AppState;
