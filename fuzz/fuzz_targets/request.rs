//! Fuzz target: a chat completion request body → parse, check, translate.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qwen2api::fuzzing::request(data));
