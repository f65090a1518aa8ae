//! Logging settings: the level filter (`LOG_LEVEL`), the line format (`LOG_FORMAT`) and the
//! optional log files rotated by size (`LOG_DIR`, `LOG_FILE_MAX_MB`, `LOG_FILES`, with
//! Qwen2API's `ENABLE_FILE_LOG`, `MAX_LOG_FILE_SIZE` and `MAX_LOG_FILES` as aliases), and
//! where traces are exported (the standard `OTEL_EXPORTER_OTLP_*` names, feature `otlp`).

use std::path::PathBuf;

use super::parse::{bool_or, choice_or, uint_or};
use super::{ConfigError, Vars};

/// How each log line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Log files beside standard output, rotated by size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFiles {
    /// The folder of `qwen2api.log` and its rotated copies (`qwen2api.log.1`, …).
    pub dir: PathBuf,
    /// A file is rotated once it holds this many bytes. Lines are never split, so a file may
    /// pass the limit by its last line.
    pub max_bytes: u64,
    /// Files kept, the one being written included (≥ 1); the oldest copy is deleted.
    pub files: usize,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A level or a tracing filter directive, lower-cased.
    pub level: String,
    pub format: LogFormat,
    /// `None`: standard output only.
    pub files: Option<LogFiles>,
    /// `None`: no trace export (no OTLP endpoint set).
    pub traces: Option<TraceExport>,
}

/// Where and how spans are exported over OTLP/HTTP (telemetry/otlp.rs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceExport {
    /// The full URL spans are POSTed to (`…/v1/traces`).
    pub endpoint: String,
    pub protocol: TraceProtocol,
}

/// The OTLP/HTTP body encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceProtocol {
    /// `http/protobuf`, the OTLP default.
    Protobuf,
    /// `http/json`.
    Json,
}

/// The name of the file being written, in [`LogFiles::dir`].
pub const LOG_FILE_NAME: &str = "qwen2api.log";
/// Qwen2API's default folder, used when `ENABLE_FILE_LOG=true` names none.
const DEFAULT_DIR: &str = "./logs";
const DEFAULT_MAX_MB: f64 = 10.0;
const DEFAULT_FILES: usize = 5;
/// The smallest file size accepted: below this, rotation would happen at nearly every line.
const MIN_BYTES: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

pub fn logging(src: &dyn Vars) -> Result<LogConfig, ConfigError> {
    let level = src.get("LOG_LEVEL").unwrap_or_else(|| "info".to_owned());
    if tracing_subscriber::EnvFilter::try_new(level.to_ascii_lowercase()).is_err() {
        return Err(ConfigError::invalid(
            "LOG_LEVEL",
            "trace, debug, info, warn, error or a tracing filter directive",
            &level,
        ));
    }
    let format = choice_or(
        src,
        "LOG_FORMAT",
        &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        LogFormat::Text,
    )?;
    // Every file setting is checked even when files are off, so that a typo is found at once
    // rather than on the day files are switched on.
    let max_bytes = max_bytes(src)?;
    let files = match src.get("LOG_FILES") {
        Some(_) => uint_or(src, "LOG_FILES", DEFAULT_FILES, 1)?,
        // Qwen2API keeps MAX_LOG_FILES rotated files besides the one being written.
        None => match src.get("MAX_LOG_FILES") {
            Some(_) => uint_or(src, "MAX_LOG_FILES", 0usize, 0)?.saturating_add(1),
            None => DEFAULT_FILES,
        },
    };
    let dir = src.get("LOG_DIR");
    // ENABLE_FILE_LOG decides when it is set (Qwen2API's .env has `ENABLE_FILE_LOG=false`
    // beside `LOG_DIR=./logs`); otherwise setting LOG_DIR is what turns files on.
    let enabled = match src.get("ENABLE_FILE_LOG") {
        Some(_) => bool_or(src, "ENABLE_FILE_LOG", false)?,
        None => dir.is_some(),
    };
    let files = enabled.then(|| LogFiles {
        dir: PathBuf::from(dir.unwrap_or_else(|| DEFAULT_DIR.to_owned())),
        max_bytes,
        files,
    });
    Ok(LogConfig {
        level: level.to_ascii_lowercase(),
        format,
        files,
        traces: traces(src)?,
    })
}

/// The OpenTelemetry names, read as the OTLP exporter specification says: the traces endpoint
/// verbatim, or the base endpoint with `/v1/traces` appended; the traces protocol before the
/// general one. Only the two HTTP encodings are built in (no gRPC).
fn traces(src: &dyn Vars) -> Result<Option<TraceExport>, ConfigError> {
    let endpoint = match src.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        Some(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => match src.get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(base) if !base.trim().is_empty() => {
                format!("{}/v1/traces", base.trim().trim_end_matches('/'))
            }
            _ => return Ok(None),
        },
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(ConfigError::invalid(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "an http:// or https:// URL",
            &endpoint,
        ));
    }
    let choices = [
        ("http/protobuf", TraceProtocol::Protobuf),
        ("http/json", TraceProtocol::Json),
    ];
    let protocol = match src.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
        Some(_) => choice_or(
            src,
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            &choices,
            TraceProtocol::Protobuf,
        )?,
        None => choice_or(
            src,
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            &choices,
            TraceProtocol::Protobuf,
        )?,
    };
    Ok(Some(TraceExport { endpoint, protocol }))
}

/// `LOG_FILE_MAX_MB` (or `MAX_LOG_FILE_SIZE`) in bytes: MiB, possibly with a fraction.
fn max_bytes(src: &dyn Vars) -> Result<u64, ConfigError> {
    let Some((var, raw)) = src.first(&["LOG_FILE_MAX_MB", "MAX_LOG_FILE_SIZE"]) else {
        return Ok(mib_to_bytes(DEFAULT_MAX_MB));
    };
    match raw.parse::<f64>() {
        Ok(mb) if mb * MIB >= MIN_BYTES && mb <= 1e6 => Ok(mib_to_bytes(mb)),
        _ => Err(ConfigError::invalid(
            var,
            "a size in MiB such as 10 or 0.5 (at least 0.001, about 1 KiB)",
            &raw,
        )),
    }
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "checked to lie between 1 KiB and 1e6 MiB"
)]
fn mib_to_bytes(mb: f64) -> u64 {
    (mb * MIB).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(pairs: &'static [(&'static str, &'static str)]) -> impl Vars {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn traces_follow_the_otlp_names() {
        assert_eq!(logging(&src(&[])).unwrap().traces, None);
        let base = logging(&src(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])).unwrap();
        assert_eq!(
            base.traces,
            Some(TraceExport {
                endpoint: "http://c:4318/v1/traces".into(),
                protocol: TraceProtocol::Protobuf,
            })
        );
        let own = logging(&src(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://t/x"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]))
        .unwrap();
        assert_eq!(own.traces.unwrap().endpoint, "https://t/x");
        let err = logging(&src(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
        let err = logging(&src(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://"), "{err}");
    }

    #[test]
    fn defaults_are_text_on_standard_output_only() {
        let c = logging(&src(&[])).unwrap();
        assert_eq!(c.level, "info");
        assert_eq!(c.format, LogFormat::Text);
        assert_eq!(c.files, None);
    }

    #[test]
    fn log_dir_turns_files_on_with_the_documented_defaults() {
        let c = logging(&src(&[("LOG_DIR", "/var/log/q"), ("LOG_FORMAT", "JSON")])).unwrap();
        assert_eq!(c.format, LogFormat::Json);
        assert_eq!(
            c.files,
            Some(LogFiles {
                dir: PathBuf::from("/var/log/q"),
                max_bytes: 10 * 1024 * 1024,
                files: 5,
            })
        );
    }

    #[test]
    fn qwen2api_names_are_aliases() {
        let c = logging(&src(&[
            ("ENABLE_FILE_LOG", "true"),
            ("MAX_LOG_FILE_SIZE", "2"),
            ("MAX_LOG_FILES", "3"),
        ]))
        .unwrap();
        assert_eq!(
            c.files,
            Some(LogFiles {
                dir: PathBuf::from("./logs"),
                max_bytes: 2 * 1024 * 1024,
                // Three rotated files plus the one being written.
                files: 4,
            })
        );
        // Qwen2API's own .env: LOG_DIR is set, but ENABLE_FILE_LOG=false keeps files off.
        let c = logging(&src(&[("ENABLE_FILE_LOG", "false"), ("LOG_DIR", "./logs")])).unwrap();
        assert_eq!(c.files, None);
        // Our names win over the aliases.
        let c = logging(&src(&[
            ("LOG_DIR", "d"),
            ("LOG_FILE_MAX_MB", "0.5"),
            ("MAX_LOG_FILE_SIZE", "7"),
            ("LOG_FILES", "2"),
            ("MAX_LOG_FILES", "9"),
        ]))
        .unwrap()
        .files
        .unwrap();
        assert_eq!((c.max_bytes, c.files), (512 * 1024, 2));
    }

    #[test]
    fn bad_values_name_the_variable_even_with_files_off() {
        for (pairs, var) in [
            (&[("LOG_FORMAT", "xml")][..], "LOG_FORMAT"),
            (&[("LOG_FILES", "0")][..], "LOG_FILES"),
            (&[("LOG_FILE_MAX_MB", "0")][..], "LOG_FILE_MAX_MB"),
            (&[("LOG_FILE_MAX_MB", "0.0005")][..], "LOG_FILE_MAX_MB"),
            (&[("MAX_LOG_FILE_SIZE", "big")][..], "MAX_LOG_FILE_SIZE"),
            (&[("MAX_LOG_FILES", "-1")][..], "MAX_LOG_FILES"),
            (&[("ENABLE_FILE_LOG", "sure")][..], "ENABLE_FILE_LOG"),
            (&[("LOG_LEVEL", "loud=[[[")][..], "LOG_LEVEL"),
        ] {
            let owned: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let vars = move |name: &str| {
                owned
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let err = logging(&vars).unwrap_err();
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn a_small_fraction_of_a_mib_is_accepted_for_tests() {
        let c = logging(&src(&[("LOG_DIR", "d"), ("LOG_FILE_MAX_MB", "0.002")])).unwrap();
        assert_eq!(c.files.unwrap().max_bytes, 2097);
    }
}
