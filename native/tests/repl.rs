//! `dhrt repl` driven as a script: lines piped into stdin against a real `dhrt serve`
//! process on an ephemeral port; results on stdout, errors on stderr, and the exit
//! status tells whether every line succeeded.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// A `dhrt serve --memory --port 0` process, killed when dropped.
struct Node {
    child: Child,
    addr: String,
}

impl Node {
    fn start() -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dhrt"))
            .args(["serve", "--memory", "--port", "0"])
            .env("DHRT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dhrt serve");
        let lines = read_lines(child.stdout.take().expect("stdout"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut node = Node { child, addr: String::new() };
        while node.addr.is_empty() {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("dhrt serve did not say it is listening");
            if let Some(rest) = line.split("listening on ").nth(1) {
                node.addr = rest.split_whitespace().next().unwrap_or_default().to_string();
            }
        }
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of `from`, read on a thread.
fn read_lines(from: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A child process killed when dropped, so a failing test leaves nothing behind.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits up to `timeout` for the process to exit and collects its output (reading it
/// meanwhile, so a full pipe cannot stall it).
fn finish(mut guard: Guard, timeout: Duration) -> Output {
    let child = guard.0.take().expect("a running process");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("output"),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which the waiting thread has not reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("dhrt repl did not finish within {timeout:?}");
        }
    }
}

/// Runs `dhrt repl ARGS` with `script` on stdin.
fn repl(args: &[&str], script: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dhrt"))
        .arg("repl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dhrt repl");
    let mut stdin = child.stdin.take().expect("stdin");
    let guard = Guard(Some(child));
    stdin.write_all(script.as_bytes()).expect("write the script");
    drop(stdin);
    let out = finish(guard, Duration::from_secs(60));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_script_runs_every_command_and_reports_failures() {
    let node = Node::start();
    let script = r#"# a comment, then a blank line

set greeting "hello world"
get greeting
get default greeting
use users
set alice admin
set "bob smith" 'user "b"'
get alice
get "bob smith"
scan users bob
get greeting
consistency
consistency all
get alice
del alice
get alice
use
frobnicate
get a b c
set k "unterminated
help
scan users bob
quit
get never-run
"#;
    let (ok, stdout, stderr) = repl(&["--node", &node.addr], script);
    let head = "OK\n\
                hello world\n\
                hello world\n\
                OK\n\
                OK\n\
                admin\n\
                user \"b\"\n\
                bob smith\tuser \"b\"\n\
                (not found)\n\
                default\n\
                admin\n\
                OK\n\
                (not found)\n\
                users\n\
                Commands (put words with spaces in \"double quotes\"):\n";
    assert!(stdout.starts_with(head), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for usage in
        ["set [COLLECTION] KEY VALUE", "watch [COLLECTION] [PREFIX]", "consistency [LEVEL]"]
    {
        assert!(stdout.contains(usage), "help lists {usage}:\n{stdout}");
    }
    assert!(
        stdout.contains("now \"users\"; the consistency level is now all"),
        "help tells the session's settings:\n{stdout}"
    );
    assert!(stdout.ends_with("bob smith\tuser \"b\"\n"), "nothing runs after quit:\n{stdout}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 4, "three bad lines and the summary:\n{stderr}");
    assert!(errors[0].contains("unknown command \"frobnicate\""), "{stderr}");
    assert_eq!(errors[1], "error: usage: get [COLLECTION] KEY");
    assert!(errors[2].contains("unterminated"), "{stderr}");
    assert_eq!(errors[3], "error: 3 commands failed");
    assert!(!ok, "a script with failed commands exits non-zero");
}

#[test]
fn a_clean_script_exits_zero_and_prints_results_only() {
    let node = Node::start();
    let (ok, stdout, stderr) = repl(
        &["--node", &node.addr, "--consistency", "one"],
        "consistency\nset k v\nstats\nring\n",
    );
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout.starts_with("one\nOK\n"), "--consistency sets the session's level:\n{stdout}");
    assert!(stdout.contains("members:         1 alive"), "{stdout}");
    assert!(stdout.contains(&node.addr), "ring names the node:\n{stdout}");
}

#[test]
fn an_unreachable_node_fails_each_command_but_the_repl_goes_on() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let (ok, stdout, stderr) =
        repl(&["--node", &addr, "--timeout", "5"], "get k\nuse users\nuse\nget k\n");
    assert!(!ok);
    assert_eq!(stdout, "users\n", "commands without the node still run");
    assert_eq!(stderr.matches("connection failed").count(), 2, "{stderr}");
    assert!(stderr.contains("error: 2 commands failed"), "{stderr}");
}

#[test]
fn watch_prints_changes_until_the_next_line() {
    let node = Node::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dhrt"))
        .args(["repl", "--node", &node.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dhrt repl");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = read_lines(child.stdout.take().expect("stdout"));
    let guard = Guard(Some(child));
    stdin.write_all(b"watch events\n").unwrap();
    // The watch starts in the background: write until a change shows up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    for i in 0.. {
        assert!(Instant::now() < deadline, "no event within 30 s");
        let value = format!("value {i}");
        let set = Command::new(env!("CARGO_BIN_EXE_dhrt"))
            .args(["set", "events", &format!("k{i}"), &value, "--node", &node.addr])
            .output()
            .expect("dhrt set");
        assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
        if let Ok(line) = stdout.recv_timeout(Duration::from_millis(300)) {
            seen = Some(line);
            break;
        }
    }
    let line = seen.unwrap();
    assert!(line.starts_with("set events k") && line.contains("\"value "), "{line}");
    let del = Command::new(env!("CARGO_BIN_EXE_dhrt"))
        .args(["del", "events", "k0", "--node", &node.addr])
        .output()
        .expect("dhrt del");
    assert!(del.status.success());
    let deleted = loop {
        let line = stdout.recv_timeout(Duration::from_secs(10)).expect("the delete's event");
        if line.starts_with("del ") {
            break line;
        }
    };
    assert_eq!(deleted, "del events k0");
    // An empty line ends the watch; the next lines run as usual.
    stdin.write_all(b"\nget events k0\n").unwrap();
    drop(stdin);
    let out = finish(guard, Duration::from_secs(30));
    let rest: Vec<String> = stdout.try_iter().collect();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rest.last().map(String::as_str), Some("(not found)"), "{rest:?}");
}
