//! Logging: the subscriber set-up (text or JSON lines, on standard output and optionally in
//! files rotated by size), and, in `request`, the request id and the one middleware that logs
//! each request (and its error, once) inside a request span; in `recent`, the last requests
//! for the admin page; with the `otlp` feature, in `otlp`, the export of spans as traces.

#[cfg(feature = "otlp")]
mod otlp;
pub mod recent;
mod request;

pub use request::{LoggedError, RequestId, X_REQUEST_ID, log_requests, record_route, route_of};

use std::io::IsTerminal;
use std::path::PathBuf;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LOG_FILE_NAME, LogConfig, LogFiles, LogFormat};

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("cannot write log files in {dir} (LOG_DIR): {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[cfg(feature = "otlp")]
    #[error(transparent)]
    Traces(#[from] otlp::TraceInitError),
}

/// Keeps the file writer's thread running; dropping it writes out the lines still queued.
/// Hold it until the process ends.
#[must_use = "dropping the guard stops the log file writer"]
pub struct LogGuard {
    // Declared first so it is dropped first: spans are flushed while the log file still
    // takes lines.
    #[cfg(feature = "otlp")]
    _traces: Option<otlp::Exporting>,
    _worker: Option<WorkerGuard>,
}

type BoxedLayer = Box<dyn Layer<Layered<EnvFilter, Registry>> + Send + Sync>;

/// Installs the global subscriber: `LOG_LEVEL` as the filter, `LOG_FORMAT` for every line, on
/// standard output and, with `LOG_DIR`, in rotated files too; with an OTLP endpoint (and the
/// `otlp` feature), spans exported as traces.
pub fn init(config: &LogConfig) -> Result<LogGuard, LogInitError> {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or `docker logs` gets plain text (NO_COLOR too).
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut layers: Vec<BoxedLayer> = vec![layer(config.format, std::io::stdout, ansi)];
    let mut guard = None;
    if let Some(files) = &config.files {
        let rotating = open_files(files)?;
        // Lines are handed to a thread of their own, so a slow disk never holds a request up.
        // When that thread falls 128,000 lines behind, new lines are dropped rather than
        // making requests wait.
        let (writer, worker) = NonBlockingBuilder::default()
            .lossy(true)
            .thread_name("qwen2api-log-file")
            .finish(rotating);
        layers.push(layer(config.format, writer, false));
        guard = Some(worker);
    }
    #[cfg(feature = "otlp")]
    let traces = match &config.traces {
        Some(export) => {
            let (layer, exporting) = otlp::layer(export)?;
            layers.push(layer);
            Some(exporting)
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init();
    #[cfg(not(feature = "otlp"))]
    if let Some(export) = &config.traces {
        tracing::warn!(
            endpoint = %export.endpoint,
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, but this binary was built without the `otlp` feature: no traces are exported"
        );
    }
    #[cfg(feature = "otlp")]
    if let Some(export) = &config.traces {
        tracing::info!(endpoint = %export.endpoint, "exporting traces over OTLP");
    }
    Ok(LogGuard {
        #[cfg(feature = "otlp")]
        _traces: traces,
        _worker: guard,
    })
}

fn layer<W>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => fmt.with_target(false).with_ansi(ansi).boxed(),
        // One object per line: the event's fields at the top level beside `timestamp`,
        // `level` and `target`, and the request span's fields under `span`.
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    }
}

/// `qwen2api.log` in the folder, rotated once past the size limit, keeping `files` files.
fn open_files(files: &LogFiles) -> Result<FileRotate<AppendCount>, LogInitError> {
    let err = |source| LogInitError::Dir {
        dir: files.dir.clone(),
        source,
    };
    // FileRotate panics when it cannot create the folder or the file: find out here first.
    std::fs::create_dir_all(&files.dir).map_err(err)?;
    let path = files.dir.join(LOG_FILE_NAME);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(err)?;
    let max_bytes = usize::try_from(files.max_bytes).unwrap_or(usize::MAX);
    Ok(FileRotate::new(
        path,
        AppendCount::new(files.files.saturating_sub(1)),
        // Rotated before the write that follows the one passing the limit: each write is one
        // whole line, so lines are never split between two files.
        ContentLimit::BytesSurpassed(max_bytes),
        Compression::None,
        None,
    ))
}
