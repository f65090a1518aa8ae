//! Replays the committed fuzz corpus (fuzz/corpus/<target>/*) through the fuzz targets'
//! functions, so CI checks every input the fuzzer has kept without needing the fuzzer.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panics", path.display());
        n += 1;
    }
    n
}

#[test]
fn request_corpus() {
    assert!(replay("request", qwen2api::fuzzing::request) >= 2);
}

#[test]
fn upstream_sse_corpus() {
    assert!(replay("upstream_sse", qwen2api::fuzzing::upstream_sse) >= 3);
}
