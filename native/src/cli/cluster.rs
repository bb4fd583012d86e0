//! `dhrt cluster --nodes N`: a local cluster of real node processes, for trying dhrt
//! out and for development.
//!
//! It runs `dhrt serve` (this same executable) N times on consecutive ports: the first
//! node on `--base-port`, every other one joining it. Each is started once the one
//! before says "listening on", then a table tells how to reach them. Their logs come
//! through on stderr, each line prefixed `[node-i]` (warnings and errors only, unless
//! `--verbose`). On Ctrl-C, SIGTERM, SIGHUP or SIGQUIT every node gets SIGTERM and
//! leaves gracefully; one that has not exited in time is killed.
//!
//! The nodes run in their own process group, so a Ctrl-C in the terminal reaches this
//! process only and the shutdown goes in order; on Linux each node also gets SIGTERM
//! should this process die without the chance to stop them.

use clap::Args;
use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

/// Options of `dhrt cluster`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// How many nodes to run.
    #[arg(long, short, default_value_t = 3)]
    pub nodes: u16,
    /// The first node's port; the others take the next ones (P+1, P+2, ...).
    #[arg(long, default_value_t = 7453)]
    pub base_port: u16,
    /// Keep every node's data in memory: all is lost when the cluster stops.
    #[arg(long, conflicts_with = "data_dir")]
    pub memory: bool,
    /// Where the nodes keep their data: DIR/node-1, DIR/node-2, ...
    #[arg(long, value_name = "DIR", default_value = "./dhrt-cluster")]
    pub data_dir: PathBuf,
    /// Replicas per key (default: 3, or fewer when there are fewer nodes).
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Seconds each node may take to leave gracefully before it is killed.
    #[arg(long, default_value_t = 10)]
    pub leave_timeout: u64,
    /// Forward every log line of the nodes, not only warnings and errors.
    #[arg(long, short)]
    pub verbose: bool,
}

/// How long a node may take to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What the tasks watching the nodes report.
#[derive(Debug)]
enum Report {
    /// Node `i` printed its "listening on" line.
    Listening { node: usize, id: String, addr: String },
    /// Node `i` exited.
    Exited { node: usize, status: std::io::Result<ExitStatus> },
}

/// What the cluster asks of a node's task.
#[derive(Debug, Clone, Copy)]
enum Signal {
    /// Leave gracefully.
    Term,
    /// Stop now.
    Kill,
}

/// One running node, as the cluster sees it.
struct NodeProc {
    /// Asks its task to signal it.
    control: mpsc::UnboundedSender<Signal>,
    running: bool,
    id: String,
    addr: String,
}

/// Runs the cluster until a signal, then stops every node.
pub fn run(args: &ClusterArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    if args.base_port == 0 {
        return Err(
            "--base-port must be a real port (the nodes need to know the first one's)".into()
        );
    }
    if u32::from(args.base_port) + u32::from(args.nodes) - 1 > u32::from(u16::MAX) {
        return Err(format!("{} nodes do not fit above port {}", args.nodes, args.base_port).into());
    }
    if args.replicas == Some(0) {
        return Err("--replicas must be at least 1".into());
    }
    // One thread: every node is spawned from it, which Linux's parent-death signal needs.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(cluster(args))
}

async fn cluster(args: &ClusterArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut signals = Signals::new()?;
    let exe = std::env::current_exe()?;
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let mut nodes: Vec<NodeProc> = Vec::new();
    for i in 0..usize::from(args.nodes) {
        let mut command = node_command(&exe, args, i)?;
        let child = command.spawn().map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        nodes.push(NodeProc {
            control: watch_node(i, child, args.verbose, reports_tx.clone()),
            running: true,
            id: String::new(),
            addr: String::new(),
        });
        let started = tokio::time::timeout(START_TIMEOUT, async {
            loop {
                tokio::select! {
                    signal = signals.recv() => return Err(Start::Signal(signal)),
                    report = reports.recv() => match report {
                        Some(Report::Listening { node, id, addr }) if node == i => {
                            return Ok((id, addr));
                        }
                        Some(Report::Exited { node, status }) => {
                            nodes[node].running = false;
                            return Err(Start::Exited(node, describe(&status)));
                        }
                        Some(_) => {}
                        None => return Err(Start::Exited(i, "gone".into())),
                    },
                }
            }
        })
        .await;
        match started {
            Ok(Ok((id, addr))) => {
                nodes[i].id = id;
                nodes[i].addr = addr;
            }
            Ok(Err(Start::Signal(signal))) => {
                eprintln!("{signal}: stopping the nodes started so far");
                shutdown(&mut nodes, &mut reports, args).await;
                return Ok(());
            }
            Ok(Err(Start::Exited(node, how))) => {
                shutdown(&mut nodes, &mut reports, args).await;
                return Err(format!(
                    "node-{} stopped before listening ({how}); its log is above. Is port {} \
                     free? (pick others with --base-port)",
                    node + 1,
                    usize::from(args.base_port) + node
                )
                .into());
            }
            Err(_) => {
                shutdown(&mut nodes, &mut reports, args).await;
                return Err(format!("node-{} did not start within {START_TIMEOUT:?}", i + 1).into());
            }
        }
    }
    print!("{}", table(&nodes, args));
    loop {
        tokio::select! {
            signal = signals.recv() => {
                eprintln!("{signal}: stopping the cluster (every node leaves gracefully)");
                break;
            }
            Some(report) = reports.recv() => {
                if let Report::Exited { node, status } = report {
                    nodes[node].running = false;
                    eprintln!("[node-{}] exited unexpectedly ({})", node + 1, describe(&status));
                    if nodes.iter().all(|n| !n.running) {
                        return Err("every node has stopped".into());
                    }
                    eprintln!("the other nodes keep running; Ctrl-C stops them");
                }
            }
        }
    }
    shutdown(&mut nodes, &mut reports, args).await;
    Ok(())
}

/// Why a node did not start.
enum Start {
    Signal(&'static str),
    Exited(usize, String),
}

/// `dhrt serve ...` for node `i` (counted from 0).
fn node_command(exe: &Path, args: &ClusterArgs, i: usize) -> std::io::Result<Command> {
    let port = usize::from(args.base_port) + i;
    let replicas = args.replicas.unwrap_or_else(|| usize::from(args.nodes).min(3));
    let mut command = Command::new(exe);
    command
        .arg("serve")
        .args(["--port", &port.to_string()])
        .args(["--replicas", &replicas.to_string()])
        .args(["--leave-timeout", &args.leave_timeout.to_string()]);
    if args.memory {
        command.arg("--memory");
    } else {
        let dir = args.data_dir.join(format!("node-{}", i + 1));
        std::fs::create_dir_all(&dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
        })?;
        command.arg("--data-dir").arg(dir);
    }
    if i > 0 {
        command.args(["--join", &format!("127.0.0.1:{}", args.base_port)]);
    }
    if std::env::var_os("DHRT_LOG").is_none() {
        command.env("DHRT_LOG", if args.verbose { "info" } else { "warn" });
    }
    // A node's config file (its data dir, its port) is not every node's.
    command.env_remove("DHRT_CONFIG");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command)
}

/// Spawns the tasks that forward node `i`'s output, report when it listens and when it
/// exits, and signal it on request.
fn watch_node(
    i: usize,
    mut child: Child,
    verbose: bool,
    reports: mpsc::UnboundedSender<Report>,
) -> mpsc::UnboundedSender<Signal> {
    let name = format!("node-{}", i + 1);
    if let Some(stdout) = child.stdout.take() {
        let (reports, name) = (reports.clone(), name.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((id, addr)) = parse_listening(&line) {
                    let _ = reports.send(Report::Listening { node: i, id, addr });
                } else if verbose {
                    eprintln!("[{name}] {line}");
                }
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        let name = name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{name}] {line}");
            }
        });
    }
    let (control, mut requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                Some(signal) = requests.recv() => match signal {
                    Signal::Term => {
                        if let Some(pid) = child.id() {
                            // SAFETY: kill(2) with the pid of our own child, not yet reaped.
                            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                        }
                    }
                    Signal::Kill => {
                        let _ = child.start_kill();
                    }
                },
            }
        };
        let _ = reports.send(Report::Exited { node: i, status });
    });
    control
}

/// The id and reachable address in `dhrt serve`'s line
/// `dhrt node ID listening on ADDR (reach it at ADVERTISE; data ...)`.
fn parse_listening(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("dhrt node ")?;
    let (id, rest) = rest.split_once(" listening on ")?;
    let listening = rest.split_whitespace().next()?;
    let advertise = rest
        .split_once("reach it at ")
        .and_then(|(_, r)| r.split([';', ')', ' ']).next())
        .filter(|a| !a.is_empty())
        .unwrap_or(listening);
    Some((id.to_string(), advertise.to_string()))
}

/// How to reach each node.
fn table(nodes: &[NodeProc], args: &ClusterArgs) -> String {
    let storage = if args.memory {
        "data in memory".to_string()
    } else {
        format!("data in {}", args.data_dir.display())
    };
    let replicas = args.replicas.unwrap_or_else(|| usize::from(args.nodes).min(3));
    let mut out =
        format!("dhrt cluster: {} nodes, {replicas} replicas per key, {storage}\n\n", nodes.len());
    out.push_str(&format!(
        "  {:<7} {:<16}  {:<30} {:<26} {}\n",
        "node", "id", "WebSocket", "HTTP", "try"
    ));
    for (i, n) in nodes.iter().enumerate() {
        out.push_str(&format!(
            "  {:<7} {:<16}  {:<30} {:<26} dhrt get --node {} hello\n",
            format!("node-{}", i + 1),
            n.id,
            format!("ws://{}/v1/ws", n.addr),
            format!("http://{}/", n.addr),
            n.addr
        ));
    }
    let first = nodes.first().map_or("", |n| n.addr.as_str());
    out.push_str(&format!(
        "\nWrite through any node: dhrt set hello world --node {first}; or dhrt repl --node {first}\n\
         Ctrl-C stops the cluster (every node leaves gracefully).\n"
    ));
    out
}

/// SIGTERM to every running node, then waits for them; kills those still running after
/// the leave timeout (plus a margin).
async fn shutdown(
    nodes: &mut [NodeProc],
    reports: &mut mpsc::UnboundedReceiver<Report>,
    args: &ClusterArgs,
) {
    for node in nodes.iter().filter(|n| n.running) {
        let _ = node.control.send(Signal::Term);
    }
    let grace = Duration::from_secs(args.leave_timeout) + Duration::from_secs(5);
    if !wait_for_exits(nodes, reports, grace).await {
        for (i, node) in nodes.iter().enumerate().filter(|(_, n)| n.running) {
            eprintln!("[node-{}] did not leave within {grace:?}: killing it", i + 1);
            let _ = node.control.send(Signal::Kill);
        }
        wait_for_exits(nodes, reports, Duration::from_secs(5)).await;
    }
    eprintln!("the cluster has stopped");
}

/// Waits up to `timeout` for every running node to exit; true when they all did.
async fn wait_for_exits(
    nodes: &mut [NodeProc],
    reports: &mut mpsc::UnboundedReceiver<Report>,
    timeout: Duration,
) -> bool {
    let all_exited = async {
        while nodes.iter().any(|n| n.running) {
            match reports.recv().await {
                Some(Report::Exited { node, status }) => {
                    nodes[node].running = false;
                    if !matches!(&status, Ok(s) if s.success()) {
                        eprintln!("[node-{}] exited: {}", node + 1, describe(&status));
                    }
                }
                Some(Report::Listening { .. }) => {}
                None => return,
            }
        }
    };
    tokio::time::timeout(timeout, all_exited).await.is_ok() && nodes.iter().all(|n| !n.running)
}

fn describe(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot tell how: {e}"),
    }
}

/// The signals that stop the cluster.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// The next signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
            _ = self.quit.recv() => "SIGQUIT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_serve_banner() {
        let line = "dhrt node 00ab00cd00ef0011 listening on 127.0.0.1:7453 (reach it at \
                    10.0.0.5:7453; data in memory)";
        assert_eq!(
            parse_listening(line),
            Some(("00ab00cd00ef0011".into(), "10.0.0.5:7453".into()))
        );
        assert_eq!(parse_listening("try: dhrt set hello world --node 127.0.0.1:7453"), None);
    }
}
