//! Thread-per-core serving: the client-facing listener is served by N single-threaded event
//! loops that accept from one shared socket, so a connection, its request tasks and the
//! upstream connections they use all stay on one thread.
//!
//! A streamed completion hands every upstream HTTP chunk from the upstream connection's task
//! to the response task. On a work-stealing runtime those two tasks often sit on different
//! threads, and every hand-over is then a cross-thread wake-up (a system call and a context
//! switch); on one loop it is a function call. The upstream client keeps one connection pool
//! per loop ([`current`]) for the same reason.

use std::cell::Cell;
use std::future::Future;
use std::io;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

thread_local! {
    static LOOP: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The serving loop this thread runs, or `None` on any other thread.
pub fn current() -> Option<usize> {
    LOOP.with(Cell::get)
}

/// Loops to run for `WORKER_THREADS` (`None`: one per CPU core).
pub fn count(configured: Option<usize>) -> usize {
    configured.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Serves `app` from `listener` on `loops` threads (at least one) until `shutdown` resolves on
/// each of them and their connections have finished. `shutdown` is called once per loop.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    app: Router,
    loops: usize,
    shutdown: F,
) -> io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Each loop registers its own handle to the same socket with its own reactor.
    let shared = listener.into_std()?;
    let mut ended = Vec::new();
    for index in 0..loops.max(1) {
        let socket = shared.try_clone()?;
        let app = app.clone();
        let stop = shutdown();
        let (done, result) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("qwen2api-loop-{index}"))
            .spawn(move || {
                LOOP.set(Some(index));
                let _ = done.send(run_loop(socket, app, stop));
            })?;
        ended.push(result);
    }
    let mut outcome = Ok(());
    for result in ended {
        let r = result
            .await
            .unwrap_or_else(|_| Err(io::Error::other("a serving loop stopped unexpectedly")));
        if outcome.is_ok() {
            outcome = r;
        }
    }
    outcome
}

fn run_loop(
    socket: std::net::TcpListener,
    app: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(socket)?;
        crate::app::serve_app(listener, app, stop).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_threads_are_no_loop() {
        assert_eq!(current(), None);
        assert_eq!(count(Some(3)), 3);
        assert!(count(None) >= 1);
    }

    #[tokio::test]
    async fn requests_are_served_on_a_loop_and_every_loop_ends_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|| async { format!("{:?}", current()) }),
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(listener, app, 2, move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }));
        let mut seen = std::collections::BTreeSet::new();
        // A new connection goes to whichever loop accepts it first.
        for _ in 0..200 {
            let body = reqwest::Client::new()
                .get(format!("http://{addr}/"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            seen.insert(body);
            if seen.len() == 2 {
                break;
            }
        }
        assert!(
            seen.contains("Some(0)") || seen.contains("Some(1)"),
            "{seen:?}"
        );
        assert!(
            seen.iter().all(|s| s == "Some(0)" || s == "Some(1)"),
            "{seen:?}"
        );
        stop.send(true).unwrap();
        server.await.unwrap().unwrap();
        assert!(reqwest::get(format!("http://{addr}/")).await.is_err());
    }
}
