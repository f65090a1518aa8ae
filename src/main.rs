//! The `qwen2api` binary: read configuration, start logging, sign in, bind, serve.

use std::process::ExitCode;
use std::time::Duration;

use qwen2api::reload::{self, Reloader};
use qwen2api::{AppState, Config, app, config, event_loop, memory, telemetry};

fn main() -> ExitCode {
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
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(reloader, config)),
        Err(e) => {
            eprintln!("qwen2api: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(reloader: Reloader, config: Config) -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck(&config).await;
    }
    telemetry::init(&config.log_level);
    if config.keys.admin_from_first_api_key && config.keys.admin_key.is_some() {
        tracing::warn!(
            "ADMIN_KEY is not set: the first API_KEY is also the admin key (compatibility only; set ADMIN_KEY)"
        );
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
    tokio::spawn(memory::release_when_quiet());
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
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let main_server = event_loop::serve(listener, app::router(state.clone()), loops, || {
        stopped(stop_rx.clone())
    });
    let admin_server = async {
        match admin_listener {
            Some(l) => {
                tracing::info!(addr = ?l.local_addr().ok(), "admin API listening");
                app::serve_app(
                    l,
                    app::admin_router(state.clone()),
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

/// `qwen2api healthcheck`: exit 0 when this machine's server answers `/health` (for Docker).
async fn healthcheck(config: &config::Config) -> ExitCode {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .build();
    let ok = match client {
        Ok(c) => c
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
        Err(_) => false,
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
