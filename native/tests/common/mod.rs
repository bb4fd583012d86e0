//! Real `dhrt` node processes on 127.0.0.1 for end-to-end tests: spawn, read the
//! listening address from stdout, signal, kill -9, restart over the same data dir.
//! Every process is killed when its handle drops, so a failing test leaves nothing.

#![allow(dead_code)]

pub mod http;
pub mod peer;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// A running node process.
pub struct NodeProc {
    /// Its `host:port`.
    pub addr: String,
    /// Its data dir, when persisted.
    pub data_dir: Option<PathBuf>,
    child: Option<Child>,
    stderr: PathBuf,
}

/// The `dhrt` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dhrt")
}

impl NodeProc {
    /// Starts `dhrt serve --port 0 ARGS...` (in memory when `data_dir` is None) and
    /// waits for its "listening on" line.
    pub fn start(data_dir: Option<&Path>, args: &[&str]) -> NodeProc {
        Self::start_on(data_dir, 0, args)
    }

    /// As [`NodeProc::start`], on a given port.
    pub fn start_on(data_dir: Option<&Path>, port: u16, args: &[&str]) -> NodeProc {
        let mut cmd = Command::new(bin());
        cmd.arg("serve").arg("--port").arg(port.to_string());
        match data_dir {
            Some(d) => cmd.arg("--data-dir").arg(d),
            None => cmd.arg("--memory"),
        };
        cmd.args(args).env_remove("DHRT_CONFIG");
        let mut node = Self::launch(cmd);
        node.data_dir = data_dir.map(Path::to_path_buf);
        node
    }

    /// Runs `cmd` (a `dhrt serve` or `dhrt join` command line, with whatever arguments,
    /// environment and working directory the test gives it) and waits for its
    /// "listening on" line.
    pub fn launch(mut cmd: Command) -> NodeProc {
        let log_dir = std::env::temp_dir().join("dhrt-e2e-logs");
        let _ = std::fs::create_dir_all(&log_dir);
        let stderr = log_dir.join(format!("node-{}-{}.log", std::process::id(), unique()));
        cmd.env("DHRT_LOG", std::env::var("DHRT_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("log file"));
        let mut child = cmd.spawn().expect("spawn dhrt serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        break rest.split_whitespace().next().unwrap_or_default().to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                    panic!("dhrt serve did not start:\n{log}");
                }
            }
        };
        NodeProc { addr, data_dir: None, child: Some(child), stderr }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its resident memory (VmRSS) in KiB, from /proc; 0 when it cannot be read.
    pub fn rss_kib(&self) -> u64 {
        let Some(pid) = self.pid() else { return 0 };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
    }

    /// `kill -9`: no hand-off, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (e.g. "TERM") and waits up to `timeout` for the exit; returns the
    /// exit code.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        wait_or_kill(&mut child, timeout)
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How a short-lived `dhrt` command ended.
pub struct Ran {
    /// Its exit code; `None` when it was killed for running past the time limit.
    pub code: Option<i32>,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs `cmd` with `stdin` as its input; kills it after `timeout`.
pub fn run_bounded(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Ran {
    use std::io::{Read, Write};
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dhrt");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    std::thread::spawn(move || input.write_all(&stdin));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let stdout = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let stderr = std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = err.read_to_string(&mut buf);
        buf
    });
    let code = wait_or_kill(&mut child, timeout);
    Ran {
        code,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Waits up to `timeout` for `child` to exit and returns its exit code; kills it (and
/// returns `None`) when it is still running then.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Serializes the tests of one binary that start clusters: two cores cannot run two
/// clusters and a build at once without starving failure detection.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// The value of metric `name` on the node at `addr`'s /metrics (30 s at most).
pub async fn metric(addr: &str, name: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut body = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), tcp.read_to_string(&mut body))
        .await
        .expect("metrics in time")
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
}

/// An admin token file in a temporary directory (for nodes that require tokens).
pub struct AdminToken {
    _dir: tempfile::TempDir,
    /// The file.
    pub path: PathBuf,
    /// The token it holds.
    pub token: String,
}

/// A fresh admin token file.
pub fn admin_token() -> AdminToken {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("admin.token");
    let token = "admin-token-of-the-test-cluster-0123456789".to_string();
    std::fs::write(&path, format!("{token}\n")).expect("write the token file");
    AdminToken { _dir: dir, path, token }
}
