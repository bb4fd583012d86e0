//! `dhrt cluster` as a user runs it: three real nodes on free ports answer, SIGTERM
//! stops them all and the command exits 0; a busy port is reported.

use std::{
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

/// The `dhrt cluster` process, killed when dropped (its nodes then get SIGTERM from
/// the kernel: they are started with a parent-death signal).
struct Cluster {
    child: Option<Child>,
    stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Cluster {
    fn start(args: &[&str]) -> Cluster {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dhrt"))
            .arg("cluster")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dhrt cluster");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, log) = (child.stderr.take().expect("stderr"), stderr.clone());
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Cluster { child: Some(child), stdout, stderr, stderr_reader: Some(stderr_reader) }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The nodes' addresses from the table, once it is complete.
    fn wait_for_table(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut addrs = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stdout
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no table from dhrt cluster:\n{}", self.log()));
            if let Some(rest) = line.split("ws://").nth(1) {
                addrs.push(rest.split('/').next().unwrap().to_string());
            }
            if line.starts_with("Ctrl-C stops the cluster") {
                return addrs;
            }
        }
    }

    /// Waits up to `timeout` for the exit; its code, or `None` if it did not exit.
    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                // Its stderr closed with it: take the last lines.
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port P such that P, P+1, ... P+n-1 are all free now.
fn free_ports(n: u16) -> u16 {
    held_ports(n).0
}

/// `n` consecutive free ports, still held: the caller releases the ones it hands on.
/// (Releasing and binding again races the other tests, which open ephemeral ports.)
fn held_ports(n: u16) -> (u16, Vec<TcpListener>) {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = first.local_addr().unwrap().port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let rest: Vec<_> = (1..n).map(|i| TcpListener::bind(("127.0.0.1", base + i))).collect();
        if rest.iter().all(Result::is_ok) {
            let mut held = vec![first];
            held.extend(rest.into_iter().map(Result::unwrap));
            return (base, held);
        }
    }
    panic!("no {n} consecutive free ports");
}

fn dhrt(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dhrt")).args(args).output().expect("run dhrt");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn three_nodes_answer_and_sigterm_stops_them_all() {
    let base = free_ports(3);
    let mut cluster =
        Cluster::start(&["--nodes", "3", "--memory", "--base-port", &base.to_string()]);
    let addrs = cluster.wait_for_table();
    let want: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    assert_eq!(addrs, want);

    for addr in &addrs {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out) = dhrt(&["stats", "--node", addr]);
            if ok && out.contains("members:         3 alive") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} never saw 3 nodes:\n{out}\n{}",
                cluster.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let (ok, out) = dhrt(&["set", "hello", "world", "--node", &addrs[0], "-c", "all"]);
    assert!(ok, "{out}");
    let (ok, out) = dhrt(&["get", "hello", "--node", &addrs[2], "-c", "all"]);
    assert!(ok && out == "world\n", "{out}");

    cluster.signal(libc::SIGTERM);
    let code = cluster.wait(Duration::from_secs(30));
    let log = cluster.log();
    assert_eq!(code, Some(0), "dhrt cluster exits 0 after SIGTERM:\n{log}");
    assert!(log.contains("SIGTERM: stopping the cluster"), "{log}");
    assert_eq!(log.matches("leaving the cluster").count(), 3, "every node left:\n{log}");
    assert!(!log.contains("unexpectedly"), "{log}");
    for addr in &addrs {
        assert!(TcpStream::connect(addr).is_err(), "{addr} still accepts connections");
    }
}

#[test]
fn a_busy_port_stops_the_cluster_with_a_clear_error() {
    let (base, mut held) = held_ports(2);
    let _busy = held.pop().expect("the second port, kept busy");
    drop(held);
    let mut cluster =
        Cluster::start(&["--nodes", "2", "--memory", "--base-port", &base.to_string()]);
    let code = cluster.wait(Duration::from_secs(60));
    let log = cluster.log();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains(&format!("Is port {} free?", base + 1)), "{log}");
    assert!(
        log.contains("[node-2] error: cannot listen"),
        "the node's own error comes through:\n{log}"
    );
    assert!(TcpStream::connect(("127.0.0.1", base)).is_err(), "the first node was stopped");
}
