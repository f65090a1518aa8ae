//! qwen2api: an OpenAI-compatible gateway to the Qwen web chat through the user's own accounts.

pub mod accounts;
pub mod api;
pub mod app;
pub mod catalog;
pub mod chat;
pub mod config;
pub mod error;
pub mod openai;
pub mod proxy;
pub mod state;
pub mod stream;
pub mod telemetry;
pub mod translate;
pub mod upstream;

pub use config::Config;
pub use state::AppState;
