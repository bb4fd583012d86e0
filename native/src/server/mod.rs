//! `dhrt serve`: the tokio host around a `dhrt-core` [`Node`].
//!
//! One TCP port serves everything (docs/operations.md): the client WebSocket protocol at
//! `/v1/ws`, peer links at `/v1/peer`, the HTTP API ([`http`]), `/metrics`,
//! `/openapi.json` and the dashboard ([`dashboard`]). The node itself runs on its own
//! thread ([`driver`]), which also serves the client WebSocket connections handed to it
//! ([`handoff`]); every task talks to the node through one channel of [`Input`]s, so the
//! node stays a single-threaded sans-IO state machine exactly as the simulator runs it. What the outside may make
//! the node hold — connections, input, output, hints — is bounded ([`limits`]).

pub mod accept;
pub mod auth;
pub mod collections;
pub mod dashboard;
pub mod desk;
pub mod driver;
pub mod handoff;
pub mod http;
pub mod inbox;
pub mod launch;
pub mod limits;
pub mod outbox;
pub mod peer_auth;
pub mod peer_budget;
pub mod peer_frames;
pub mod peers;
pub mod read_budget;
pub mod resp;
// The one module with unsafe code: buffers lent to the kernel (see its docs).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod ring;
pub mod security;
pub mod stats;
pub mod syncer;
pub mod ws;

use axum::Router;
use dhrt_core::{
    node::{ClientId, Node, NodeConfig},
    proto::{
        client::{ErrorCode, Op, Reply},
        ClientRequest,
    },
    store::{Store, StoreError},
    wire, NodeId,
};
use driver::{Driver, Durable, Inbox, Input, LeaveOutcome, Sink};
use stats::{CollectionInfo, Counters, Snapshot};
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}; is another dhrt (or something else) using the port? pick one with --port")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The advertised address is unusable.
    #[error("{0}")]
    Advertise(String),
    /// The data directory could not be opened.
    #[error("cannot open the data directory: {0}")]
    Store(#[from] StoreError),
    /// Exposed to the network without peer authentication or client tokens.
    #[error("{0}")]
    Insecure(String),
    /// A TLS file (certificate, key, CA) is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// Anything else at start-up.
    #[error("{0}")]
    Other(String),
}

/// What the tasks of a server share.
#[derive(Clone)]
pub struct AppState {
    inbox: Arc<Inbox>,
    /// The node thread's runtime: client connections are served there ([`handoff`]).
    pub node_runtime: tokio::runtime::Handle,
    /// Where connections served on the node thread hand their input ([`desk`]); set
    /// once the node thread is started.
    pub desk: Arc<std::sync::OnceLock<Arc<dyn desk::Desk>>>,
    stopped: tokio::sync::watch::Receiver<bool>,
    next_client: Arc<AtomicU64>,
    /// The server's counters.
    pub counters: Arc<Counters>,
    /// Largest frame accepted or sent.
    pub max_frame: usize,
    /// Largest value accepted.
    pub max_value: usize,
    /// Where peers and clients reach this node.
    pub addr: String,
    /// This node's id.
    pub node: NodeId,
    /// How long a request may wait for the node's answer.
    pub request_timeout: Duration,
    /// Who may be a peer or a client, TLS, web origins.
    pub security: Arc<security::SecurityOptions>,
    /// This node's side of peer handshakes ([`peer_auth`]).
    pub peer_credentials: peer_auth::Credentials,
    /// The cluster's members as web origins, kept by the node thread ([`http::origin`]).
    pub member_origins: http::origin::MemberOrigins,
    /// The bootstrap admin token and the cache of the ring's tokens.
    pub tokens: Arc<auth::Tokens>,
    /// The bounds on what the outside may make the node hold ([`limits`]).
    pub limits: Arc<limits::Limits>,
    /// The byte budget of input in flight to the node thread ([`inbox`]).
    pub inbox_budget: inbox::InboxBudget,
    /// The byte budget of messages being read, not yet whole ([`read_budget`]).
    pub read_budget: read_budget::ReadBudget,
    /// The bounds on connections' unsent answers ([`outbox`]).
    pub output: Arc<outbox::OutputBudget>,
    /// The connection cap's slots, shared by every listener ([`accept`]).
    pub connection_slots: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// A fresh client id.
    pub fn next_client(&self) -> ClientId {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolves once the server stops (or is dropped): its open connections end then,
    /// as they would if the process exited.
    pub async fn stopped(&self) {
        let _ = self.stopped.clone().wait_for(|stopped| *stopped).await;
    }

    /// Hands an input to the node thread; false once it has stopped. Input from
    /// outside goes through [`AppState::submit_charged`] instead.
    pub fn submit(&self, input: Input) -> bool {
        self.inbox.send(input).is_ok()
    }

    /// Hands input read from outside (`bytes` of it) to the node thread, once that
    /// much of the inbox budget is free ([`inbox`]): waits while the node is behind.
    pub async fn submit_charged(&self, input: Input, bytes: usize) -> bool {
        let charge = self.inbox_budget.charge(bytes).await;
        self.submit(Input::Charged { input: Box::new(input), charge })
    }

    /// Runs one request and waits for its answer (the HTTP API's path to the node),
    /// if the HTTP request being served may ([`auth::Tokens::authorize_current`]).
    pub async fn call(&self, op: Op) -> Reply {
        if let Err(refusal) = self.tokens.authorize_current(&op) {
            return refusal.reply();
        }
        self.call_unchecked(op).await
    }

    /// Runs one request for the server itself, unchecked: reading and writing the
    /// reserved collections ([`auth`]).
    pub(crate) async fn call_unchecked(&self, op: Op) -> Reply {
        let client = self.next_client();
        let (tx, rx) = oneshot::channel();
        let bytes = inbox::op_bytes(&op);
        let sent = self.submit(Input::Open { client, sink: Sink::Once(tx) })
            && self
                .submit_charged(
                    Input::Requests {
                        client,
                        reqs: vec![ClientRequest { id: 1, op, seen: http::clock::seen() }],
                    },
                    bytes,
                )
                .await;
        if !sent {
            return unavailable("the node is shutting down");
        }
        match tokio::time::timeout(self.request_timeout + Duration::from_secs(5), rx).await {
            Ok(Ok(resp)) => {
                http::clock::answered(resp.ts);
                resp.result
            }
            Ok(Err(_)) => unavailable("the node is shutting down"),
            Err(_) => {
                self.submit(Input::Gone(client));
                Reply::Error {
                    code: ErrorCode::Timeout,
                    message: "the node did not answer in time".into(),
                    acked: None,
                }
            }
        }
    }

    /// The node's state and the server's counters, taken on the node thread.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        if !self.submit(Input::Inspect(tx)) {
            return None;
        }
        let c = &self.counters;
        c.output_queued_bytes.store(self.output.total() as u64, Ordering::Relaxed);
        let inbox = self.inbox_budget.bytes() - self.inbox_budget.available();
        c.inbox_bytes.store(inbox as u64, Ordering::Relaxed);
        c.read_bytes.store(self.read_budget.in_use() as u64, Ordering::Relaxed);
        rx.await.ok().map(|s: Snapshot| s.with_counters(c))
    }
}

fn unavailable(message: &str) -> Reply {
    Reply::Error { code: ErrorCode::Unavailable, message: message.into(), acked: None }
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The interface to listen on.
    pub host: String,
    /// The port (0 picks a free one).
    pub port: u16,
    /// The `host:port` peers and clients use to reach this node; `host:port` when unset.
    pub advertise: Option<String>,
    /// Members to join through (any one suffices).
    pub join: Vec<String>,
    /// Replicas per key.
    pub replicas: usize,
    /// Tokens (virtual nodes).
    pub vnodes: usize,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// How long a graceful leave may take before the node exits anyway.
    pub leave_timeout: Duration,
    /// Time between the collector's passes (expiry, tombstone collection).
    pub gc_interval: Duration,
    /// The node's labels (`--label`), checked.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Who may be a peer or a client, TLS, web origins ([`security`]).
    pub security: security::SecurityOptions,
    /// Connections, timeouts, input and output budgets, hints ([`limits`]).
    pub limits: limits::Limits,
    /// The Redis endpoint's port ([`resp`]); `None` serves no Redis protocol (the
    /// default: see docs/redis.md).
    pub resp_port: Option<u16>,
    /// Redis databases mapped to collections (`N=COLLECTION`, over the default table).
    pub resp_databases: Vec<String>,
    /// How client sockets on the node thread are read and written (`--client-io`).
    pub client_io: handoff::SocketIo,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 7453,
            advertise: None,
            join: Vec::new(),
            replicas: 3,
            vnodes: dhrt_core::ring::DEFAULT_VNODES,
            max_value_bytes: 16 * 1024 * 1024,
            leave_timeout: Duration::from_secs(30),
            gc_interval: Duration::from_secs(60),
            labels: std::collections::BTreeMap::new(),
            security: security::SecurityOptions::default(),
            limits: limits::Limits::default(),
            resp_port: None,
            resp_databases: Vec::new(),
            client_io: handoff::SocketIo::Auto,
        }
    }
}

/// A running node server.
pub struct Server {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    /// Its shared state (to call the node in process).
    pub state: AppState,
    http: JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    driver: Option<std::thread::JoinHandle<()>>,
}

/// A bound listener and the address to advertise, before the node exists (the node's
/// config needs the address, and port 0 is only known after binding).
pub struct Bound {
    listener: TcpListener,
    /// The Redis endpoint's listener, and its table of databases.
    resp: Option<(TcpListener, Arc<resp::RespConfig>)>,
    /// Where the Redis endpoint listens.
    pub resp_addr: Option<SocketAddr>,
    /// The address peers will use.
    pub advertise: String,
    /// The local address.
    pub local_addr: SocketAddr,
}

/// Binds the listener, after the secure-by-default check
/// ([`security::SecurityOptions::check_exposure`]): a node others can reach refuses to
/// start without peer authentication and client tokens unless `--insecure`.
pub async fn bind(opts: &ServeOptions) -> Result<Bound, ServeError> {
    match opts.security.check_exposure(&opts.host) {
        Ok(None) => {}
        Ok(Some(warning)) => {
            tracing::warn!("{warning}");
            eprintln!("WARNING: {warning}");
        }
        Err(refusal) => return Err(ServeError::Insecure(refusal)),
    }
    let want = format!("{}:{}", opts.host, opts.port);
    let listener = TcpListener::bind(&want)
        .await
        .map_err(|source| ServeError::Bind { addr: want.clone(), source })?;
    let local_addr = listener.local_addr().map_err(|e| ServeError::Other(e.to_string()))?;
    let advertise = match &opts.advertise {
        Some(a) => a.clone(),
        None if local_addr.ip().is_unspecified() => {
            return Err(ServeError::Advertise(format!(
                "listening on {local_addr} (every interface): pass --advertise HOST:PORT, the address other nodes and clients should use"
            )))
        }
        None => local_addr.to_string(),
    };
    let (resp, resp_addr) = match opts.resp_port {
        None => (None, None),
        Some(port) => {
            let config =
                resp::RespConfig::with_mapping(&opts.resp_databases).map_err(ServeError::Other)?;
            let want = format!("{}:{port}", opts.host);
            let listener = TcpListener::bind(&want)
                .await
                .map_err(|source| ServeError::Bind { addr: want.clone(), source })?;
            let addr = listener.local_addr().map_err(|e| ServeError::Other(e.to_string()))?;
            (Some((listener, Arc::new(config))), Some(addr))
        }
    };
    Ok(Bound { listener, resp, resp_addr, advertise, local_addr })
}

/// The node configuration for `opts`, as node `id` reached at `addr`.
pub fn node_config(opts: &ServeOptions, id: NodeId, addr: &str) -> NodeConfig {
    let mut config = NodeConfig::new(id, addr);
    config.replicas = opts.replicas.max(1);
    config.vnodes = opts.vnodes.max(1);
    config.max_value_bytes = opts.max_value_bytes;
    config.hints = opts.limits.hints;
    config.pending = opts.limits.pending;
    config.seed = random_u64();
    config.gc_interval_ms = (opts.gc_interval.as_millis() as u64).max(1);
    config.labels = opts.labels.clone();
    config
}

/// The wall clock in milliseconds since the Unix epoch (0 before it).
pub fn wall_ms() -> dhrt_core::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as dhrt_core::Millis)
}

/// A random 64-bit number from the OS-seeded hasher (node ids, seeds).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Starts serving `node` on `bound`; `peers_to_join` are tried in order.
pub fn start<S, D>(
    bound: Bound,
    node: Node<S>,
    durable: D,
    opts: &ServeOptions,
    peers_to_join: Vec<String>,
) -> Result<Server, ServeError>
where
    S: Store + Send + 'static,
    D: Durable + 'static,
{
    // TLS files are read before anything starts, so a bad one stops the start.
    let tls = match &opts.security.tls {
        Some(files) => {
            Some((crate::tls::server_config(files)?, crate::tls::peer_client_config(files)?))
        }
        None => None,
    };
    let counters = Arc::new(Counters::default());
    let (inbox_tx, inbox_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stopped) = tokio::sync::watch::channel(false);
    let max_frame = wire::DEFAULT_MAX_FRAME.max(opts.max_value_bytes + 1024 * 1024);
    let (limits, fitted) = opts.limits.clone().fitted(max_frame);
    for change in fitted {
        tracing::warn!("limits: {change} (one frame of up to {max_frame} bytes must fit)");
    }
    let inbox_tx = Arc::new(inbox_tx);
    let sync_reports = Arc::downgrade(&inbox_tx);
    let runtime = driver::node_runtime()
        .map_err(|e| ServeError::Other(format!("cannot start the node's runtime: {e}")))?;
    let state = AppState {
        inbox: inbox_tx,
        node_runtime: runtime.handle().clone(),
        desk: Arc::default(),
        stopped,
        next_client: Arc::new(AtomicU64::new(1)),
        counters: counters.clone(),
        max_frame,
        max_value: opts.max_value_bytes,
        addr: bound.advertise.clone(),
        node: node.id(),
        request_timeout: Duration::from_millis(node.config().request_timeout_ms),
        security: Arc::new(opts.security.clone()),
        peer_credentials: peer_auth::Credentials::new(
            node.id(),
            opts.security.cluster_secret.as_ref(),
        ),
        member_origins: http::origin::MemberOrigins::default(),
        tokens: Arc::new(auth::Tokens::new(&opts.security).map_err(ServeError::Other)?),
        inbox_budget: inbox::InboxBudget::new(limits.inbox_bytes),
        read_budget: read_budget::ReadBudget::new(limits.read_bytes, max_frame)
            .lane_timeout(limits.read_timeout),
        output: Arc::new(outbox::OutputBudget::new(
            limits.output_bytes,
            limits.watch_lag_bytes,
            limits.output_total_bytes,
        )),
        connection_slots: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
        limits: Arc::new(limits),
    };
    // Links to peers run on the node thread: what the node sends them crosses no thread.
    let peers = peers::Peers::new(
        state.peer_credentials.clone(),
        runtime.handle().clone(),
        counters.clone(),
        max_frame,
    )
    .queue_bytes(state.limits.peer_queue_bytes, state.limits.peer_queue_total_bytes)
    .with_tls(tls.as_ref().map(|(_, peer)| peer.clone()));
    let driver = Driver::new(node, durable, peers, counters)
        .sync_off_thread(sync_reports)
        .leave_timeout(opts.leave_timeout.as_millis() as u64)
        .member_origins(state.member_origins.clone());
    let (thread, desk) = driver
        .spawn(runtime, inbox_rx, peers_to_join, opts.client_io)
        .map_err(|e| ServeError::Other(format!("cannot start the node thread: {e}")))?;
    // Before the listener serves: no connection reaches the node thread without it.
    let _ = state.desk.set(desk);
    // Every request can ask who is on the other end (`ConnectInfo<tls::Remote>`, set by
    // [`accept`]): the peer endpoint checks for a client certificate with it.
    let app = router(state.clone());
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    // With TLS the port speaks only TLS: a plain request fails its handshake.
    let (listener, local_addr) = (bound.listener, bound.local_addr);
    // The Redis port speaks TLS when the main port does, with the same certificate.
    let resp_tls = tls.as_ref().map(|(config, _)| config.clone());
    let accepting = {
        let state = state.clone();
        async move {
            match tls {
                Some((config, _)) => {
                    let timeout = state.limits.tls_handshake_timeout;
                    let listener =
                        crate::tls::TlsListener::new(listener, config).handshake_timeout(timeout);
                    accept::serve(listener, app, state).await
                }
                None => accept::serve(crate::tls::PlainListener(listener), app, state).await,
            }
        }
    };
    let redis =
        bound.resp.map(|(listener, config)| resp::serve(listener, state.clone(), config, resp_tls));
    let http = tokio::spawn(async move {
        let redis = async {
            match redis {
                Some(redis) => redis.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = accepting => {}
            () = redis => {}
            _ = shutdown_rx => {}
        }
    });
    Ok(Server {
        local_addr,
        state,
        http,
        shutdown: Some(shutdown_tx),
        stop: stop_tx,
        driver: Some(thread),
    })
}

/// Every route of the one port (the table is [`http::table`]).
fn router(state: AppState) -> Router {
    http::routes(&state).with_state(state)
}

impl Server {
    /// Leaves the cluster gracefully (hand-off, announce, flush) and stops serving.
    pub async fn leave(mut self) -> LeaveOutcome {
        let (tx, rx) = oneshot::channel();
        let outcome = if self.state.submit(Input::Leave(tx)) {
            rx.await.unwrap_or(LeaveOutcome { handed_off: false, flush_error: None })
        } else {
            LeaveOutcome { handed_off: false, flush_error: None }
        };
        // Let the announcement reach the peers before the links close.
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.stop().await;
        outcome
    }

    /// Stops serving at once (no hand-off): what a crash looks like to the cluster,
    /// except that committed data is flushed. When it returns the port is closed; open
    /// client and peer connections close.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
            self.stop.send_replace(true);
            self.http.abort();
            // Once the aborted task is gone, so is the listener: the port is closed.
            let _ = (&mut self.http).await;
        }
        self.state.submit(Input::Stop);
        if let Some(thread) = self.driver.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Builds the node's snapshot on the node thread.
pub(crate) fn snapshot_of<S: Store>(node: &Node<S>, addr: &str) -> Snapshot {
    let store = node.replica().store();
    let hints = node.hints();
    let server = vec![
        ("dhrt_hints_bytes", hints.bytes() as u64, "Bytes of hints held for other nodes."),
        (
            "dhrt_hints_dropped_total",
            hints.dropped(),
            "Hints dropped at a bound (anti-entropy repairs what they carried).",
        ),
        ("dhrt_hints_expired_total", hints.expired(), "Hints dropped as too old to deliver."),
        (
            "dhrt_pending_bytes",
            node.coordinator().bytes_in_flight() as u64,
            "Bytes of keys and values held by the client requests this node coordinates.",
        ),
        (
            "dhrt_overloaded_total",
            node.coordinator().overloaded(),
            "Client requests refused because the requests in flight were over --pending-mb \
             or --pending-requests.",
        ),
    ];
    let collections = store
        .collections()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| store.stats(&c).ok().map(|s| CollectionInfo::new(c, s)))
        .collect();
    Snapshot {
        addr: addr.to_string(),
        stats: node.stats(),
        ring: node.ring(),
        collections,
        ops: Vec::new(),
        server,
        peer: node.peer_stats(),
        ring_share: node.ring_share(),
        replicas: node.config().replicas.max(1),
        layouts: (node.catalogue().layouts())
            .map(|(name, state)| {
                let layout = stats::CollectionLayout {
                    state: state.clone(),
                    replicas: node.replicas_for(name),
                    share: node.ring_share_for(name),
                };
                (name.to_string(), layout)
            })
            .collect(),
    }
}
