//! A throwaway `redis-server` for the Redis tests, shared by the store's unit tests (included
//! with `#[path]`) and the replica integration tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A throwaway `redis-server` on a free loopback port, killed when the last test using it
/// drops its handle. Tests share it and keep apart by key prefix.
pub struct RedisServer {
    child: Child,
    pub url: String,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static SERVER: Mutex<Weak<RedisServer>> = Mutex::new(Weak::new());

/// The shared server, started if none is running; `None` (with a note) when `redis-server`
/// is not installed, unless `CI=true`, where that is a failure.
pub fn shared() -> Option<Arc<RedisServer>> {
    let mut shared = SERVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(server) = shared.upgrade() {
        return Some(server);
    }
    let server = Arc::new(start()?);
    *shared = Arc::downgrade(&server);
    Some(server)
}

fn start() -> Option<RedisServer> {
    // The port can be taken between choosing and binding it; try a few.
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "redis-server is not installed, and CI=true requires the Redis tests"
                );
                eprintln!("note: redis-server not found; skipping the Redis tests");
                return None;
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let mut server = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        if wait_ready(&mut server, port) {
            return Some(server);
        }
    }
    panic!("redis-server did not come up on any of 5 ports");
}

/// Polls PING until the server answers; false if it exited (port taken) or never did.
fn wait_ready(server: &mut RedisServer, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if server.child.try_wait().expect("child status").is_some() {
            return false;
        }
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let mut reply = [0; 7];
            let answered = stream
                .set_read_timeout(Some(Duration::from_secs(1)))
                .is_ok()
                && stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut reply).is_ok();
            if answered && &reply == b"+PONG\r\n" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
