//! The integration tests: one binary, a module per behaviour. `common/` holds `TestApp`, the
//! fake chat.qwen.ai (`fake_qwen`), its media side (`fake_media`), the byte-exact event builders
//! (`qwen_sse`), the spawned binary (`binary`) and a throwaway redis-server.

mod common;

mod admin;
mod admin_page;
mod api_surface;
mod chat_json;
mod chat_stream;
mod claude_code;
mod codex;
mod conformance;
mod continuation;
mod disconnect;
mod disconnect_precommit;
mod event_loops;
mod failover;
mod fake_media_selftest;
mod fake_qwen_selftest;
mod fuzz_corpus;
mod key_limits;
mod lifecycle;
mod limits;
mod media;
mod memory_release;
mod messages;
mod metrics;
mod model_names;
mod newcomer;
mod openai_client;
mod openapi;
mod ops_logs;
#[cfg(feature = "otlp")]
mod otlp;
mod persistence;
mod prewarm;
mod redis_replicas;
mod reload;
mod responses;
mod scale_out;
mod secrets;
mod shutdown;
mod soak;
mod structured;
mod tongyi;
mod tools;
