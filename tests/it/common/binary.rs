//! Runs the real `qwen2api` binary as a child process, for what only a process can show
//! (signals, logs, restarts). Killed on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts the binary in `dir` with only `vars` (plus PATH) in its environment, output
    /// captured to `dir/out.log`; returns once the port accepts connections.
    pub fn start(dir: &Path, vars: &[(&str, &str)]) -> Server {
        let port = free_port();
        Server::launch(dir, port, vars, true)
    }

    /// Like [`Server::start`], but the port is `port` and comes from the configuration in
    /// `dir` (a `.env` that sets it): no `SERVICE_PORT` is passed.
    pub fn start_on(dir: &Path, port: u16, vars: &[(&str, &str)]) -> Server {
        Server::launch(dir, port, vars, false)
    }

    fn launch(dir: &Path, port: u16, vars: &[(&str, &str)], pass_port: bool) -> Server {
        let log = std::fs::File::create(dir.join("out.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qwen2api"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LISTEN_ADDRESS", "127.0.0.1")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if pass_port {
            cmd.env("SERVICE_PORT", port.to_string());
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the binary starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the binary never listened: {}",
                read_log(dir)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Server { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM (via `kill`, to stay free of libc bindings).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `timeout`; its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Server {
    /// Waits, off the async runtime, for the process to exit (up to `timeout`); its exit code.
    pub async fn exit_code(mut self, timeout: Duration) -> Option<i32> {
        tokio::task::spawn_blocking(move || self.wait(timeout))
            .await
            .expect("the wait does not panic")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("out.log")).unwrap_or_default()
}
