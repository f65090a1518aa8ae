//! Fuzz target: upstream SSE bytes split at arbitrary points → answer events.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qwen2api::fuzzing::upstream_sse(data));
