//! Thread-per-core serving: client connections are accepted in one place and handed, in turn,
//! to N single-threaded event loops, so a connection, its request tasks and the upstream
//! connections they use all stay on one thread.
//!
//! An upstream socket is registered with the loop that opened it, and a task that reads it
//! from another thread is woken across threads (a system call and a context switch) for
//! every chunk; with reqwest (used when an outbound proxy is set) each chunk is also handed
//! from the connection's task to the response task. Both upstream clients therefore keep
//! one connection pool per loop ([`current`]), so a request and its upstream connection stay
//! on one thread. Connections are dealt out in turn rather than accepted by whichever loop
//! wakes first, which would put a burst of new connections on one loop and leave the others
//! idle.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

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

/// Serves `app` from `listener` on `loops` threads (at least one). When `shutdown` resolves
/// (it is called once for the acceptor and once per loop), the listener is closed and each
/// loop lets its connections finish; this returns when all loops have ended.
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
    let local = listener.local_addr()?;
    let mut inboxes = Vec::new();
    let mut ended = Vec::new();
    for index in 0..loops.max(1) {
        let (to_loop, inbox) = mpsc::unbounded_channel();
        let handed = Handed { inbox, local };
        let app = app.clone();
        let stop = shutdown();
        let (done, result) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("qwen2api-loop-{index}"))
            .spawn(move || {
                LOOP.set(Some(index));
                let _ = done.send(run_loop(handed, app, stop));
            })?;
        inboxes.push(to_loop);
        ended.push(result);
    }
    let stop = shutdown();
    tokio::select! {
        () = deal(listener, inboxes) => {}
        () = stop => {}
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

/// Accepts connections and hands each to the next loop in turn (skipping loops that ended).
async fn deal(mut listener: TcpListener, inboxes: Vec<mpsc::UnboundedSender<std::net::TcpStream>>) {
    let mut turn = 0usize;
    loop {
        // axum's accept logs and retries on errors (and pauses when out of descriptors).
        let (tcp, _) = Listener::accept(&mut listener).await;
        // Off this runtime's reactor; the loop that takes it registers it with its own.
        let Ok(mut tcp) = tcp.into_std() else {
            continue;
        };
        for _ in 0..inboxes.len() {
            let inbox = &inboxes[turn % inboxes.len()];
            turn = turn.wrapping_add(1);
            match inbox.send(tcp) {
                Ok(()) => break,
                Err(back) => tcp = back.0,
            }
        }
    }
}

/// The connections dealt to one loop, registered with the loop's reactor when taken.
struct Handed {
    inbox: mpsc::UnboundedReceiver<std::net::TcpStream>,
    local: SocketAddr,
}

impl Listener for Handed {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            // The acceptor has stopped: this loop is shutting down and takes no more.
            let Some(tcp) = self.inbox.recv().await else {
                return std::future::pending().await;
            };
            let moved = TcpStream::from_std(tcp).and_then(|t| Ok((t.peer_addr()?, t)));
            match moved {
                Ok((peer, tcp)) => return (tcp, peer),
                Err(e) => {
                    tracing::debug!(error = %e, "a connection closed before its loop took it");
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

fn run_loop(
    handed: Handed,
    app: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::server::serve_app(handed, app, stop))
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
    async fn connections_are_dealt_to_the_loops_in_turn_and_all_end_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|| async { format!("{:?}", current()) }),
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(listener, app, 3, move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }));
        // A new client each time, so a new connection each time.
        let mut answered = Vec::new();
        for _ in 0..6 {
            let body = reqwest::Client::new()
                .get(format!("http://{addr}/"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            answered.push(body);
        }
        assert_eq!(
            answered,
            [
                "Some(0)", "Some(1)", "Some(2)", "Some(0)", "Some(1)", "Some(2)"
            ]
        );
        stop.send(true).unwrap();
        server.await.unwrap().unwrap();
        // The listening socket is closed: nobody accepts any more.
        assert!(reqwest::get(format!("http://{addr}/")).await.is_err());
    }
}
