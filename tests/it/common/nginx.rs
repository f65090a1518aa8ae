//! A throwaway nginx in front of test replicas, running the shipped `deploy/nginx/scale.conf`
//! with loopback addresses in place of the compose service names, and reading its access log.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::binary::free_port;

/// The file the scale profile mounts into nginx.
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/scale.conf");
/// The replica addresses in the shipped file, in order.
const REPLICAS: [&str; 3] = ["qwen2api-1:3000", "qwen2api-2:3000", "qwen2api-3:3000"];
const LISTEN: &str = "listen 80;";
const ACCESS_LOG: &str = "/var/log/nginx/access.log";

/// An nginx master process in the foreground (`daemon off`), one worker, everything it writes
/// (pid, temp files, logs) in its own temp dir. Killed on drop.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line of the access log.
#[derive(Clone, Debug)]
pub struct Logged {
    /// The request line (`GET /v1/models HTTP/1.1`).
    pub request: String,
    pub status: u16,
    /// The replicas tried, in order: more than one when nginx retried.
    pub upstreams: Vec<SocketAddr>,
    pub request_id: String,
}

impl Logged {
    /// The replica that answered.
    pub fn served_by(&self) -> Option<SocketAddr> {
        self.upstreams.last().copied()
    }
}

/// The shipped config for `replicas` on loopback, nginx listening on `port` and logging to
/// `log`. Panics when the shipped file no longer has what it replaces, so the config tested
/// is always the one shipped.
pub fn render(replicas: &[SocketAddr; 3], port: u16, log: &Path) -> String {
    let mut conf = std::fs::read_to_string(SHIPPED).expect("deploy/nginx/scale.conf");
    let mut swaps: Vec<(&str, String)> = REPLICAS
        .iter()
        .zip(replicas)
        .map(|(name, addr)| (*name, addr.to_string()))
        .collect();
    swaps.push((LISTEN, format!("listen 127.0.0.1:{port};")));
    swaps.push((ACCESS_LOG, log.to_string_lossy().into_owned()));
    for (from, to) in swaps {
        assert!(conf.contains(from), "scale.conf no longer has `{from}`");
        conf = conf.replace(from, &to);
    }
    conf
}

/// nginx in front of `replicas`; `None` (with a note) when nginx is not installed, unless
/// `CI=true`, where that is a failure.
pub fn start(replicas: &[SocketAddr; 3]) -> Option<Nginx> {
    if Command::new("nginx")
        .arg("-v")
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nginx is not installed, and CI=true requires the scale-out tests"
        );
        eprintln!("note: nginx not found; skipping the scale-out tests");
        return None;
    }
    // The port can be taken between choosing and binding it; try a few.
    for _ in 0..5 {
        if let Some(nginx) = try_start(replicas, free_port()) {
            return Some(nginx);
        }
    }
    panic!("nginx did not come up on any of 5 ports");
}

fn try_start(replicas: &[SocketAddr; 3], port: u16) -> Option<Nginx> {
    let dir = tempfile::tempdir().unwrap();
    // Run as root (CI), nginx's workers are `nobody`: they must reach the temp paths.
    set_mode(dir.path(), 0o755);
    let path = |name: &str| dir.path().join(name);
    std::fs::write(
        path("scale.conf"),
        render(replicas, port, &path("access.log")),
    )
    .unwrap();
    let main = format!(
        "worker_processes 1;\n\
         pid {pid};\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
         client_body_temp_path {tmp}/body;\n\
         proxy_temp_path {tmp}/proxy;\n\
         fastcgi_temp_path {tmp}/fastcgi;\n\
         uwsgi_temp_path {tmp}/uwsgi;\n\
         scgi_temp_path {tmp}/scgi;\n\
         include {conf};\n\
         }}\n",
        pid = path("nginx.pid").display(),
        tmp = dir.path().display(),
        conf = path("scale.conf").display(),
    );
    std::fs::write(path("nginx.conf"), main).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(path("nginx.conf"))
        .arg("-e")
        .arg(path("error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let mut nginx = Nginx {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = nginx.child.try_wait().unwrap() {
            eprintln!("nginx exited ({status}): {}", nginx.error_log());
            return None;
        }
        if TcpStream::connect(nginx.addr).is_ok() {
            return Some(nginx);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nginx never listened: {}", nginx.error_log());
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Nginx {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.file("error.log")).unwrap_or_default()
    }

    /// The logged requests that `keep` picks, once there are at least `n` of them. nginx
    /// writes a line after the last byte of the answer, so the client may have its answer
    /// a moment before the line is there.
    pub async fn logged(&self, n: usize, keep: impl Fn(&Logged) -> bool) -> Vec<Logged> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<Logged> = self.access_log().into_iter().filter(&keep).collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests logged: {lines:?}",
                lines.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every request logged so far (a line is written when its answer has ended).
    pub fn access_log(&self) -> Vec<Logged> {
        let text = std::fs::read_to_string(self.file("access.log")).unwrap_or_default();
        text.lines()
            .map(|line| parse(line).unwrap_or_else(|| panic!("unexpected log line: {line}")))
            .collect()
    }
}

/// A line of the `qwen2api` log format: `… "request" status bytes upstream=a, b
/// upstream_status=… request_time=… id=…`.
fn parse(line: &str) -> Option<Logged> {
    let request = between(line, "] \"", "\" ")?.to_owned();
    let after_request = &line[line.rfind("\" ")? + 2..];
    let status = after_request.split(' ').next()?.parse().ok()?;
    let upstream = between(line, " upstream=", " upstream_status=")?;
    let upstreams = upstream
        .split(", ")
        .filter(|a| *a != "-")
        .map(|a| a.parse().ok())
        .collect::<Option<Vec<SocketAddr>>>()?;
    let request_id = line[line.rfind(" id=")? + 4..].to_owned();
    Some(Logged {
        request,
        status,
        upstreams,
        request_id,
    })
}

fn between<'a>(line: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = line.find(start)? + start.len();
    let to = from + line[from..].find(end)?;
    Some(&line[from..to])
}
