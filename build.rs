//! Build script: the git commit the binary is built from, for `qwen2api_build_info`. Taken
//! from `QWEN2API_GIT_COMMIT` when set (a build without `.git`, e.g. in Docker), else asked of
//! a local `git`; without either the metric says `unknown`. Never touches the network.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=QWEN2API_GIT_COMMIT");
    let commit = std::env::var("QWEN2API_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]));
    // Rebuilt when HEAD moves (a commit, a checkout); a worktree has its own git dir.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for file in ["HEAD", "logs/HEAD"] {
            let path = std::path::Path::new(&dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    if let Some(c) = commit.filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric())) {
        println!("cargo:rustc-env=QWEN2API_GIT_COMMIT={c}");
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}
