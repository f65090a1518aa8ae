//! qwen2api: an OpenAI-compatible gateway to the Qwen web chat through the user's own accounts.

pub mod accounts;
pub mod allocator;
pub mod api;
pub mod app;
pub mod body;
pub mod catalog;
pub mod config;
pub mod conversation;
pub mod error;
pub mod event_loop;
pub mod fuzzing;
pub mod keys;
pub mod media;
pub mod openai;
pub mod proxy;
pub mod reload;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod usage;

pub use config::Config;
pub use state::AppState;
