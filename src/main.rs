//! The `qwen2api` binary: read configuration, start logging, sign in, bind, serve.

use std::process::ExitCode;
use std::time::Duration;

use qwen2api::reload::{self, Reloader};
use qwen2api::server::{self, event_loop};
use qwen2api::{AppState, Config, allocator, config, telemetry};

const HELP: &str = "\
qwen2api: an OpenAI-compatible API over your own Qwen web-chat accounts (chat.qwen.ai)

Usage: qwen2api [COMMAND]

Commands:
  serve        start the server (the default)
  healthcheck  ask the server on this machine whether it is alive (exit 0) or not (exit 1,
               with the reason on stderr); with --ready, whether it can serve a request now

Options:
  -h, --help     print this help
  -V, --version  print the version

Configuration comes from the environment and from the file named by ENV_FILE (default: .env
in the working directory); the environment wins. Start from .env.example; every setting is
described in the README (docs/ in the repository).
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Serve,
    Healthcheck { ready: bool },
    Help,
    Version,
}

fn parse_args() -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut command = None;
    let mut ready = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("ready") if command == Some("healthcheck") => ready = true,
            Value(v) if command.is_none() => {
                command = Some(match v.to_str() {
                    Some("serve") => "serve",
                    Some("healthcheck") => "healthcheck",
                    _ => return Err(format!("unknown command {}", v.to_string_lossy()).into()),
                });
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(match command {
        Some("healthcheck") => Command::Healthcheck { ready },
        _ => Command::Serve,
    })
}

fn main() -> ExitCode {
    let command = match parse_args() {
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("qwen2api {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(c) => c,
        Err(e) => {
            eprintln!("qwen2api: {e}\nTry `qwen2api --help`.");
            return ExitCode::from(2);
        }
    };
    // The environment as started wins over `.env` (ENV_FILE), which is read (and re-read on
    // change) by the reloader.
    let reloader = Reloader::new(std::env::vars().collect());
    let config = match reloader.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qwen2api: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // This runtime starts up, signs in, runs background work and the admin listener; client
    // requests are served by the event loops (`event_loop::serve`), one thread each.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("qwen2api: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::Healthcheck { ready } => rt.block_on(healthcheck(&config, ready)),
        _ => rt.block_on(run(reloader, config)),
    }
}

async fn run(reloader: Reloader, config: Config) -> ExitCode {
    // Held to the end: dropping it writes out the file log lines still queued.
    let _logs = match telemetry::init(&config.logging) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("qwen2api: {e}");
            return ExitCode::FAILURE;
        }
    };
    if config.keys.admin_from_first_api_key && config.keys.admin_key.is_some() {
        tracing::warn!(
            "ADMIN_KEY is not set: the first API_KEY is also the admin key (compatibility only; set ADMIN_KEY)"
        );
    }
    if !reloader.env_file().exists() {
        tracing::info!(file = %reloader.env_file().display(), "no configuration file (ENV_FILE); configured from the environment alone");
    }
    for var in Config::unsupported_vars(&|n: &str| reloader.var(n)) {
        tracing::warn!(%var, "this variable is not supported by this version and has no effect");
    }
    let listen = config.listen;
    let admin_listen = config.server.admin_listen;
    let grace = config.server.shutdown_grace;
    let loops = event_loop::count(config.server.worker_threads);
    let state = match AppState::build(config, Some(reloader)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the store");
            return ExitCode::FAILURE;
        }
    };
    let _watcher = reload::watch(&state);
    tokio::spawn(allocator::release_when_quiet());
    let Some(listener) = bind(listen).await else {
        return ExitCode::FAILURE;
    };
    let admin_listener = match admin_listen {
        Some(addr) => match bind(addr).await {
            Some(l) => Some(l),
            None => return ExitCode::FAILURE,
        },
        None => None,
    };
    tracing::info!(addr = %listener.local_addr().map_or(listen, |a| a), loops, "qwen2api listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let recent = std::sync::Arc::clone(state.recent());
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        // The admin page's live feeds never end by themselves.
        recent.close();
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let main_server = event_loop::serve(listener, server::router(state.clone()), loops, || {
        stopped(stop_rx.clone())
    });
    let admin_server = async {
        match admin_listener {
            Some(l) => {
                tracing::info!(addr = ?l.local_addr().ok(), "admin API listening");
                server::serve_app(
                    l,
                    server::admin_router(state.clone()),
                    stopped(stop_rx.clone()),
                )
                .await
            }
            None => Ok(()),
        }
    };
    let served = tokio::select! {
        (main, admin) = async { tokio::join!(main_server, admin_server) } => main.and(admin),
        () = async { stopped(stop_rx.clone()).await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "shutdown grace period over; ending the requests still running");
            Ok(())
        }
    };
    state.flush().await;
    match served {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

async fn bind(addr: std::net::SocketAddr) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen");
            None
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// `qwen2api healthcheck [--ready]`: exit 0 when this machine's server answers `/health`
/// (`/health/ready` with `--ready`), under `API_PREFIX`; otherwise exit 1 and say why on
/// stderr.
async fn healthcheck(config: &config::Config, ready: bool) -> ExitCode {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    let path = if ready { "/health/ready" } else { "/health" };
    let url = format!("http://{addr}{}{path}", config.server.api_prefix);
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qwen2api healthcheck: cannot build an HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let resp = match client.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            let why = if e.is_connect() {
                "nothing answers there (is the server running, with this SERVICE_PORT and \
                 LISTEN_ADDRESS?)"
            } else if e.is_timeout() {
                "no answer within 3 s"
            } else {
                "the request failed"
            };
            eprintln!("qwen2api healthcheck: {url}: {why}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let reason = body["reason"].as_str();
    if status.is_success() {
        if let Some(reason) = reason {
            // Alive but unable to serve: worth a line in `docker inspect`.
            eprintln!("qwen2api healthcheck: alive, but not ready: {reason}");
        }
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "qwen2api healthcheck: {url} answered {status}{}",
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        );
        ExitCode::FAILURE
    }
}
