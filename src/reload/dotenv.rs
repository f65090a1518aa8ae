//! Reading the `.env` file: its parse errors name the line and the variable, never the value
//! (a line of `ACCOUNTS` holds passwords), and an unreadable file says who could not read it.

use std::collections::HashMap;
use std::path::Path;

/// The file's variables, or why a line does not parse (without its content).
pub(super) fn parse(raw: &str) -> Result<HashMap<String, String>, String> {
    dotenvy::from_read_iter(raw.as_bytes())
        .map(|item| item.map_err(|e| describe(raw, &e)))
        .collect()
}

fn describe(raw: &str, err: &dotenvy::Error) -> String {
    let dotenvy::Error::LineParse(line, _) = err else {
        // I/O and variable errors carry no value of the file.
        return err.to_string();
    };
    // The parser hands back the offending line, or only its value: only the position of that
    // text and the name of the variable on its line are kept.
    let found = raw.find(line.as_str()).map(|at| {
        let start = raw[..at].rfind('\n').map_or(0, |i| i + 1);
        let number = raw[..at].matches('\n').count() + 1;
        (number, raw[start..].lines().next().unwrap_or_default())
    });
    let at = found.map_or_else(|| "a line".to_owned(), |(n, _)| format!("line {n}"));
    let name = found.and_then(|(_, full)| variable_name(full));
    match name {
        Some(name) => format!(
            "{at} ({name}) does not parse: a value holding spaces, quotes, `#` or `$` must be \
             wrapped in single quotes, e.g. {name}='…' (the value is not shown here)"
        ),
        None => format!(
            "{at} is not of the form NAME=value (the line is not shown here, as it may hold a \
             secret)"
        ),
    }
}

/// `NAME` of a `NAME=…` (or `export NAME=…`) line, when it has one.
fn variable_name(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    (!name.is_empty() && rest.trim_start().starts_with('=')).then_some(name)
}

/// Why the file could not be read, naming the user that tried when it is a matter of
/// permissions (a `.env` of mode 600 bind-mounted into a container that runs as another user).
pub(super) fn unreadable(path: &Path, err: &std::io::Error) -> String {
    if err.kind() != std::io::ErrorKind::PermissionDenied {
        return err.to_string();
    }
    let who = process_user().map_or_else(
        || "this process's user".to_owned(),
        |(uid, gid)| format!("uid {uid} (gid {gid})"),
    );
    let owner = owner_and_mode(path).map_or_else(String::new, |(uid, gid, mode)| {
        format!(", which belongs to uid {uid} (gid {gid}) with mode {mode:03o}")
    });
    format!(
        "permission denied: the server runs as {who} and may not read the file{owner}. Make it \
         readable by that user (chown, or chmod 640 with a shared group), or run the server as \
         the file's owner (Docker: `user: \"UID:GID\"` in docker-compose.yml, `--user` with \
         docker run)"
    )
}

/// The real user and group ids of this process (Linux: from `/proc`; elsewhere unknown).
fn process_user() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u32> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("Uid:")?, field("Gid:")?))
}

#[cfg(unix)]
fn owner_and_mode(path: &Path) -> Option<(u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.uid(), m.gid(), m.mode() & 0o777))
}

#[cfg(not(unix))]
fn owner_and_mode(_: &Path) -> Option<(u32, u32, u32)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_does_not_parse_is_named_by_number_and_variable_without_its_value() {
        let raw = "# accounts\nAPI_KEY=sk-1\nACCOUNTS=alice@example.com:alice-pw-1 bob\nX=1\n";
        let err = parse(raw).unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("ACCOUNTS"), "{err}");
        assert!(!err.contains("alice"), "{err}");
        let err = parse("A=1\nnot a variable\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("NAME=value"),
            "{err}"
        );
        assert!(
            !err.contains("variable\n") && !err.contains("not a"),
            "{err}"
        );
    }

    #[test]
    fn names_are_found_with_or_without_export() {
        assert_eq!(variable_name("export ACCOUNTS = x y"), Some("ACCOUNTS"));
        assert_eq!(variable_name("  API_KEY=x y"), Some("API_KEY"));
        assert_eq!(variable_name("just words"), None);
    }

    #[test]
    fn the_process_user_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_user().is_some());
        }
    }

    #[test]
    fn an_unreadable_file_names_the_user_the_owner_and_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "A=1\n").unwrap();
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let why = unreadable(&path, &denied);
        assert!(why.starts_with("permission denied"), "{why}");
        assert!(why.contains("user:"), "{why}");
        if cfg!(target_os = "linux") {
            assert!(why.contains("runs as uid "), "{why}");
            assert!(
                why.contains("belongs to uid ") && why.contains("with mode "),
                "{why}"
            );
        }
        let other = std::io::Error::other("disk on fire");
        assert_eq!(unreadable(&path, &other), "disk on fire");
    }
}
