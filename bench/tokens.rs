//! What token counting costs, in process: the time and memory of the first count (which builds
//! Qwen's tokenizer), the memory of a count on a further thread, and the time to count a
//! prompt the size of Claude Code's smallest request (78 KB). `cargo bench --bench tokens`
//! (`-- --quick` for few rounds).

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use qwen2api::tokens;

/// Claude Code's "say hi" request is about 78 KB: a long system prompt and two dozen tool
/// schemas. This stands in for it with the project's own prose and a tool list of that shape.
fn claude_code_sized_prompt() -> String {
    let mut prompt = String::new();
    prompt.push_str(include_str!("../docs/upstream.md"));
    prompt.push_str(include_str!("../docs/tools.md"));
    prompt.push_str(include_str!("../docs/configuration.md"));
    prompt.push_str(include_str!("../docs/accounts.md"));
    for i in 0..24 {
        let _ = write!(
            prompt,
            r#"{{"name":"Tool{i}","description":"Runs step {i} in the workspace and returns its output as text.","input_schema":{{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{{"file_path":{{"type":"string","description":"The absolute path to the file to modify"}},"old_string":{{"type":"string","description":"The text to replace"}},"new_string":{{"type":"string","description":"The text to replace it with (must be different from old_string)"}},"replace_all":{{"type":"boolean","default":false,"description":"Replace all occurences of old_string (default false)"}}}},"required":["file_path","old_string","new_string"],"additionalProperties":false}}}}"#
        );
    }
    let mut end = 78_000.min(prompt.len());
    while !prompt.is_char_boundary(end) {
        end -= 1;
    }
    prompt.truncate(end);
    prompt
}

/// The process's resident and peak resident memory in KiB (Linux), or zeros elsewhere.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench targets without it,
    // and a benchmark is never a timed test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("tokens: benchmark not run in test mode; use cargo bench --bench tokens");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds: u32 = if quick { 10 } else { 200 };
    let prompt = claude_code_sized_prompt();

    let (rss_before, _) = rss_kib();
    assert!(!tokens::is_loaded(), "nothing counts before the first use");
    let started = Instant::now();
    let first = tokens::count("Hi!");
    let first_use = started.elapsed();
    let (rss_after, peak) = rss_kib();
    println!(
        "tokens: first use (builds the tokenizer, counts {first} tokens): {:.1} ms, \
         RSS +{} KiB ({rss_before} -> {rss_after} KiB, peak {peak} KiB)",
        first_use.as_secs_f64() * 1e3,
        rss_after.saturating_sub(rss_before)
    );

    // Each thread that counts keeps its own cache of merged pieces.
    let (before_thread, _) = rss_kib();
    let after_thread = std::thread::spawn(|| {
        tokens::count("Hello from another thread, with some more words to merge.");
        rss_kib().0
    })
    .join()
    .unwrap_or(0);
    println!(
        "tokens: a count on a further thread: RSS +{} KiB while that thread lives",
        after_thread.saturating_sub(before_thread)
    );

    // The first count of a text on a thread misses the thread's cache of merged pieces.
    let (total, cold) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let started = Instant::now();
                (tokens::count(&prompt), started.elapsed())
            })
            .join()
            .unwrap_or_default()
    });
    println!(
        "tokens: the {} byte prompt counted once on a fresh thread: {:.2} ms",
        prompt.len(),
        cold.as_secs_f64() * 1e3
    );
    let started = Instant::now();
    for _ in 0..rounds {
        black_box(tokens::count(black_box(&prompt)));
    }
    let per = started.elapsed().as_secs_f64() * 1e3 / f64::from(rounds);
    println!(
        "tokens: the {} byte prompt ({total} tokens, {:.2} bytes a token) counted again: \
         {per:.2} ms a count ({rounds} rounds)",
        prompt.len(),
        f64::from(u32::try_from(prompt.len()).unwrap_or(u32::MAX))
            / f64::from(u32::try_from(total).unwrap_or(u32::MAX))
    );
    let (rss_end, peak_end) = rss_kib();
    println!("tokens: RSS at the end {rss_end} KiB, peak {peak_end} KiB");
}
