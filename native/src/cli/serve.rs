//! `dhrt serve` and `dhrt join`: run a node until a signal, then leave gracefully.

use clap::Args;
use dhrt::server::handoff::SocketIo;
use dhrt::server::{
    self,
    launch::{launch, Launched, Storage},
    limits::Limits,
    security::{Secret, SecurityOptions, TlsFiles},
    ServeOptions,
};
use dhrt::store::{Reads, RedbOptions};
use std::{path::PathBuf, time::Duration};

/// Options of `dhrt serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Port for everything: WebSocket clients and peers, HTTP, /metrics (0 picks a free one).
    #[arg(long, short, default_value_t = 7453)]
    pub port: u16,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The HOST:PORT other nodes and clients use to reach this node (default: the
    /// listening address; required when listening on 0.0.0.0).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Where the data lives (one file per collection, plus node.redb).
    #[arg(long, default_value = "./dhrt-data")]
    pub data_dir: PathBuf,
    /// Keep everything in memory: nothing is written to disk, all is lost on exit
    /// (`--memory=false` overrides `memory = true` in a config file).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub memory: bool,
    /// Join the cluster of the node at HOST:PORT (repeat to give several).
    #[arg(long, value_name = "ADDR")]
    pub join: Vec<String>,
    /// Replicas per key.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// A label of this node, KEY=VALUE (repeat to give several, at most 16): shown by
    /// `dhrt ring`, announced to the cluster, what collection selectors (`dhrt
    /// collection create NAME --select disk=ssd`) and zones (`--zone-label zone`) place
    /// replicas by.
    /// Example: --label zone=eu-1 --label disk=ssd
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Virtual nodes (ring tokens) of this node.
    #[arg(long, default_value_t = dhrt_core::ring::DEFAULT_VNODES)]
    pub vnodes: usize,
    /// Largest value accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_value: usize,
    /// Seconds a graceful leave may take before the node exits anyway.
    #[arg(long, default_value_t = 30)]
    pub leave_timeout: u64,
    /// Seconds between the collector's passes over the data: expired entries become
    /// tombstones (and `expired` keyspace notifications), tombstones past their grace
    /// period are removed. At least 1.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub gc_interval: u64,
    /// Refuse writes (with a clear `storage is full` error) when less than this many
    /// MiB would stay free on the data dir's disk.
    #[arg(long, default_value_t = 64)]
    pub min_free_mb: u64,
    /// Collection files kept open at once; the least recently used are closed beyond
    /// it, so a node never runs out of file descriptors.
    #[arg(long, default_value_t = 256)]
    pub max_open_files: usize,
    /// Collections this node holds at most; creating one more is refused with an error.
    #[arg(long, default_value_t = 10_000)]
    pub max_collections: usize,
    /// MiB of page cache shared by the open collection files: each file opened gets its
    /// share of what is left, up to 128 MiB and at least 1 MiB.
    #[arg(long, default_value_t = 1024)]
    pub cache_mb: u64,
    /// Where a persisted node answers from: `memory` holds every record in RAM too and
    /// writes the files behind on a thread of their own (as fast as --memory, still
    /// durable before each answer; needs RAM for the data), `disk` reads the files
    /// through the page cache (for data larger than memory).
    #[arg(long, default_value = "memory", value_name = "memory|disk")]
    pub reads: Reads,
    /// Writes between two checkpoints of the collection files (default 16,384 with
    /// --reads disk; with --reads memory, 262,144 distinct keys written, the log also
    /// bounded at 128 MiB). Fewer: a shorter log to replay after a crash, and more
    /// writes to the files.
    #[arg(long, value_name = "N")]
    pub checkpoint_writes: Option<u64>,
    /// The cluster secret (at least 16 bytes; surrounding whitespace is trimmed) every
    /// peer proves it holds when a link opens. Required, with --admin-token-file, to
    /// listen on a non-loopback address.
    #[arg(long, env = "DHRT_CLUSTER_SECRET_FILE", value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// This node's TLS certificate chain (PEM): the port then speaks https:// and wss://.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA (PEM) that other nodes' certificates are checked against (default:
    /// the public roots).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: peer links must present a certificate signed by --tls-ca.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_client_auth: bool,
    /// A file holding the bootstrap admin token. With it, every client request needs a
    /// token (`dhrt token create` makes more).
    #[arg(long, env = "DHRT_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// A web origin (scheme://host[:port], matched exactly, no wildcards) whose pages may
    /// call this node from a browser: WebSockets, CORS and writes. The node's own origin
    /// and its cluster's members' are always allowed (repeat for several).
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Serve /metrics without a token even when tokens are required.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub metrics_public: bool,
    /// Most connections open at once (clients, peers and HTTP together); more are closed
    /// at once, logged and counted (docs/operations.md, "Limits and overload").
    #[arg(long, default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's headers (a WebSocket upgrade's
    /// too), and may stay idle between HTTP requests, before it is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = Limits::default().header_timeout.as_secs())]
    pub header_timeout: u64,
    /// Seconds a connection may take to complete its TLS handshake.
    #[arg(long, value_name = "SECONDS", default_value_t = Limits::default().tls_handshake_timeout.as_secs())]
    pub tls_handshake_timeout: u64,
    /// MiB of requests and peer frames read but not yet taken by the node; when full,
    /// sockets are not read until it drains (backpressure).
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().inbox_bytes >> 20)]
    pub inbox_mb: usize,
    /// MiB of large messages being read (not yet whole), all connections together,
    /// beyond each connection's 256 KiB allowance; when spent, such connections are not
    /// read until others finish (backpressure).
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().read_bytes >> 20)]
    pub read_mb: usize,
    /// Seconds a connection may take to finish a large message once it is being read
    /// in a lane of `--read-mb`; then it is closed, so that it cannot keep the lane.
    #[arg(long, value_name = "SECONDS", default_value_t = Limits::default().read_timeout.as_secs())]
    pub read_timeout: u64,
    /// MiB of answers a connection may leave unread before it is disconnected.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().output_bytes >> 20)]
    pub output_limit_mb: usize,
    /// MiB of unread answers past which a connection's watches end with an error.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().watch_lag_bytes >> 20)]
    pub watch_lag_mb: usize,
    /// MiB of unread answers all connections together may hold.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().output_total_bytes >> 20)]
    pub output_total_mb: usize,
    /// MiB of frames queued for one peer and not yet sent; past it, frames for that
    /// peer are dropped (and counted) until it catches up.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().peer_queue_bytes >> 20)]
    pub peer_queue_mb: usize,
    /// MiB of frames queued for all peers together.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().peer_queue_total_bytes >> 20)]
    pub peer_queue_total_mb: usize,
    /// MiB of hints kept for one down replica (the oldest are dropped past it).
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().hints.max_bytes_per_node >> 20)]
    pub hints_mb_per_node: usize,
    /// MiB of hints kept for all replicas together.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().hints.max_bytes >> 20)]
    pub hints_mb: usize,
    /// MiB of keys and values held by the client requests this node coordinates (waiting
    /// for their replicas); past it new requests are refused with `unavailable`.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().pending.max_bytes >> 20)]
    pub pending_mb: usize,
    /// Client requests this node coordinates at once, at most.
    #[arg(long, value_name = "N", default_value_t = Limits::default().pending.max_requests)]
    pub pending_requests: usize,
    /// Start on a non-loopback address without peer authentication or client tokens
    /// (warned about at every start).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub insecure: bool,
    /// Serve the Redis protocol (RESP2/RESP3) on this port too, so redis-cli and Redis
    /// client libraries work against the node (docs/redis.md). Off unless given.
    #[arg(long, value_name = "PORT")]
    pub resp_port: Option<u16>,
    /// Map a Redis database to a collection (`N=COLLECTION`; repeat for several). By
    /// default database 0 is `default` and 1 to 15 are `db1` to `db15`.
    #[arg(long, value_name = "N=COLLECTION")]
    pub resp_db: Vec<String>,
    /// How the node thread writes its clients' answers: `uring` (io_uring: a turn's
    /// answers in one system call; reads stay on epoll), `epoll` (one `sendto` each), or
    /// `auto` (io_uring when the kernel allows it).
    #[arg(long, default_value = "auto", value_name = "auto|uring|epoll")]
    pub client_io: SocketIo,
    /// Read settings from this TOML file: any of these flags, spelled like the flag
    /// (`data-dir = "/var/lib/dhrt"`, `join = ["10.0.0.1:7453"]`). A flag given on the
    /// command line wins over the file, the file over the defaults.
    #[arg(long, env = "DHRT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ServeArgs {
    fn options(&self) -> Result<ServeOptions, String> {
        let cluster_secret =
            self.cluster_secret_file.as_deref().map(Secret::from_file).transpose()?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: self.tls_ca.clone(),
                client_auth: self.tls_client_auth,
            }),
            (None, None) if self.tls_client_auth => {
                return Err("--tls-client-auth needs --tls-cert, --tls-key and --tls-ca".into())
            }
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        for origin in &self.allow_origin {
            dhrt::server::http::origin::normalize(origin)
                .map_err(|e| format!("--allow-origin {origin:?}: {e}"))?;
        }
        if self.tls_client_auth && self.tls_ca.is_none() {
            return Err(
                "--tls-client-auth needs --tls-ca, the CA peers' certificates are checked against"
                    .into(),
            );
        }
        let labels = dhrt_core::membership::parse_labels(self.label.iter().map(String::as_str))
            .map_err(|e| format!("--label: {e}"))?;
        Ok(ServeOptions {
            labels,
            host: self.host.clone(),
            port: self.port,
            advertise: self.advertise.clone(),
            join: self.join.clone(),
            replicas: self.replicas,
            vnodes: self.vnodes,
            max_value_bytes: self.max_value,
            leave_timeout: Duration::from_secs(self.leave_timeout),
            gc_interval: Duration::from_secs(self.gc_interval),
            security: SecurityOptions {
                cluster_secret,
                tls,
                admin_token_file: self.admin_token_file.clone(),
                allow_origins: self.allow_origin.clone(),
                metrics_public: self.metrics_public,
                insecure: self.insecure,
            },
            limits: self.limits(),
            resp_port: self.resp_port,
            resp_databases: self.resp_db.clone(),
            client_io: self.client_io,
        })
    }

    /// The limits the flags set.
    fn limits(&self) -> Limits {
        let defaults = Limits::default();
        let mib = |n: usize| n.saturating_mul(1 << 20);
        Limits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout),
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout),
            inbox_bytes: mib(self.inbox_mb),
            read_bytes: mib(self.read_mb),
            read_timeout: Duration::from_secs(self.read_timeout.max(1)),
            output_bytes: mib(self.output_limit_mb),
            watch_lag_bytes: mib(self.watch_lag_mb),
            output_total_bytes: mib(self.output_total_mb),
            peer_queue_bytes: mib(self.peer_queue_mb),
            peer_queue_total_bytes: mib(self.peer_queue_total_mb),
            hints: dhrt_core::node::hints::HintLimits {
                max_bytes_per_node: mib(self.hints_mb_per_node),
                max_bytes: mib(self.hints_mb),
                ..defaults.hints
            },
            pending: dhrt_core::node::coordinator::PendingLimits {
                max_bytes: mib(self.pending_mb),
                max_requests: self.pending_requests.max(1),
            },
        }
    }
}

/// Runs a node until SIGINT, SIGTERM, SIGHUP or SIGQUIT, then leaves gracefully.
pub fn run(args: &ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let opts = args.options()?;
    let bound = server::bind(&opts).await?;
    let listening = bound.local_addr;
    let advertise = bound.advertise.clone();
    let resp_addr = bound.resp_addr;
    let storage = if args.memory {
        Storage::Memory
    } else {
        Storage::Tuned {
            path: args.data_dir.clone(),
            options: {
                let defaults = RedbOptions::for_reads(args.reads);
                RedbOptions {
                    min_free_bytes: args.min_free_mb.saturating_mul(1 << 20),
                    max_open_files: args.max_open_files.max(1),
                    max_collections: args.max_collections,
                    cache_total_bytes: usize::try_from(args.cache_mb.saturating_mul(1 << 20))
                        .unwrap_or(usize::MAX),
                    checkpoint_writes: args
                        .checkpoint_writes
                        .map_or(defaults.checkpoint_writes, |n| n.max(1)),
                    ..defaults
                }
            },
        }
    };
    let Launched { id, server, storage } = launch(bound, &opts, &storage, None)?;
    println!(
        "dhrt node {:016x} listening on {listening} (reach it at {advertise}; data {storage})",
        id.0
    );
    println!("{}", first_steps(&opts, &advertise));
    if let Some(addr) = resp_addr {
        // Over TLS when the node speaks it: redis-cli needs --tls and the CA then.
        let tls = if opts.security.tls.is_some() { "--tls --cacert CA.pem " } else { "" };
        println!(
            "Redis clients: redis-cli {tls}-h {} -p {} (docs/redis.md)",
            addr.ip(),
            addr.port()
        );
    }
    let signal = wait_for_signal().await?;
    tracing::info!(%signal, "leaving the cluster");
    eprintln!("{signal}: leaving the cluster (hand-off, then exit)");
    let outcome = server.leave().await;
    if let Some(e) = outcome.flush_error {
        return Err(format!("the final flush failed: {e}").into());
    }
    eprintln!(
        "left{}",
        if outcome.handed_off {
            " after handing off every range"
        } else {
            " (hand-off incomplete)"
        }
    );
    Ok(())
}

/// The line `dhrt serve` prints to show how to reach the node: over TLS with the CA
/// when it has TLS, with the admin token when it requires tokens.
fn first_steps(opts: &ServeOptions, advertise: &str) -> String {
    let token = opts.security.admin_token_file.as_ref().map(|f| f.display().to_string());
    let (cli_token, curl_token) = match &token {
        Some(file) => (
            format!(" --token \"$(cat {file})\""),
            format!(" -H \"Authorization: Bearer $(cat {file})\""),
        ),
        None => (String::new(), String::new()),
    };
    match &opts.security.tls {
        Some(tls) => {
            let ca = tls.ca.as_ref().map_or("CA.pem".to_string(), |ca| ca.display().to_string());
            format!(
                "try: dhrt set hello world --node wss://{advertise} --tls-ca {ca}{cli_token}    or    curl --cacert {ca}{curl_token} https://{advertise}/hello"
            )
        }
        None => format!(
            "try: dhrt set hello world --node {advertise}{cli_token}    or    curl{curl_token} http://{advertise}/hello"
        ),
    }
}

async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    Ok(tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
        _ = quit.recv() => "SIGQUIT",
    })
}
