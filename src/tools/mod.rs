//! Tool calling over a web chat that has no tools contract: the call syntax the model is asked
//! to write, and reading calls back out of its streamed answer (docs/tools.md); and structured
//! answers, checked the same way as a call's arguments.

pub mod answer;
pub mod format;
mod lenient;
pub mod parse;
pub mod plan;
pub mod syntax;
pub mod validate;

pub use parse::{Call, Offered, Parser, Piece};
pub use plan::{Choice, Plan};
