//! Fuzz target: one upstream `data:` payload → the fast frame scanner agrees with serde.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qwen2api::fuzzing::frame(data));
