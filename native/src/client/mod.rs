//! `dhrt::Client`: the async Rust client — pipelined and ring-aware.
//!
//! A client starts from any node's address. It asks that node for the ring
//! ([`Op::Ring`]) and from then on sends each single-key request straight to a replica
//! of the key (the first serving node of its preference list, worked out with the same
//! placement rule and token table the nodes use), which saves the coordinator's extra
//! hop. Requests that name no key, or whose replica cannot be reached, go to any
//! connected node, which coordinates them as usual; the ring is re-read every
//! [`RING_REFRESH`] and after a connection fails. Each node gets one WebSocket
//! connection, and any number of requests share it ([`conn`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), dhrt::client::ClientError> {
//! use dhrt::client::Client;
//! use dhrt_core::proto::client::Consistency;
//! let db = Client::connect("127.0.0.1:7453").await?;
//! db.set("users", "alice", "admin", Consistency::Quorum, None).await?;
//! assert_eq!(db.get("users", "alice", Consistency::Quorum).await?.as_deref(), Some(&b"admin"[..]));
//! # Ok(()) }
//! ```

pub mod conn;

use bytes::Bytes;
use conn::Conn;
use dhrt_core::{
    auth::{Role, TokenInfo},
    catalogue::{CollectionSettings, SettingsChange},
    clock::Timestamp,
    hash::Placement,
    proto::client::{CollectionView, Consistency, ErrorCode, NodeStats, Op, Reply, RingMember},
    ring::RingTable,
    NodeId,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::mpsc;

/// How often a client re-reads the ring.
pub const RING_REFRESH: Duration = Duration::from_secs(10);

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No node could be reached, or the connection closed.
    #[error("connection failed: {0}; is the node running? (start one with `dhrt serve`)")]
    Connection(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The node answered with an error.
    #[error("{message}")]
    Server {
        /// The kind of failure.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
        /// `(answered, required)` replicas, when a consistency level was not reached.
        acked: Option<(u32, u32)>,
    },
    /// The node answered with something this request does not expect.
    #[error("unexpected answer from the node: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The server's error code, if the node answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A page of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Live `(key, value)` pairs in ring order.
    pub items: Vec<(Bytes, Bytes)>,
    /// Where to continue; `None` at the end.
    pub cursor: Option<Bytes>,
}

/// A change delivered by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The collection.
    pub collection: String,
    /// The key.
    pub key: Bytes,
    /// The new value; `None` for a delete or expiry.
    pub value: Option<Bytes>,
    /// The change's timestamp.
    pub ts: Timestamp,
}

/// A subscription: events arrive with [`Watch::next`]. Dropping it unsubscribes.
pub struct Watch {
    conn: Conn,
    id: u64,
    rx: mpsc::UnboundedReceiver<Reply>,
    ended: bool,
}

impl Watch {
    /// The next change; `Ok(None)` once the watch ended (the node closed it, or the
    /// connection dropped: re-sync and watch again).
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        if self.ended {
            return Ok(None);
        }
        loop {
            match self.rx.recv().await {
                Some(Reply::Event { collection, key, value, ts, .. }) => {
                    return Ok(Some(Event { collection, key, value, ts }))
                }
                Some(Reply::Ok) => continue,
                Some(reply @ Reply::Error { .. }) => {
                    self.ended = true;
                    return Err(server_error(reply));
                }
                Some(_) => continue,
                None => {
                    self.ended = true;
                    return Ok(None);
                }
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.conn.forget(self.id);
        if !self.ended {
            let _ = self
                .conn
                .stream(Op::Unwatch { watch: self.id })
                .map(|(id, _)| self.conn.forget(id));
        }
    }
}

struct RingView {
    table: RingTable,
    addrs: HashMap<NodeId, String>,
    read_at: Instant,
}

struct Inner {
    seeds: Vec<String>,
    conns: Mutex<HashMap<String, Conn>>,
    ring: Mutex<Option<RingView>>,
    timeout: Duration,
    options: ConnectOptions,
    /// The newest timestamp any node's answer carried to this client (0: none), passed
    /// with every request (see `ClientRequest::seen`).
    seen: Arc<std::sync::atomic::AtomicU64>,
}

/// How a client reaches nodes: the token it presents and the TLS it speaks. The same
/// options serve every connection the client opens (it opens one per node it talks to).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The token presented on every connection (the CLI's `--token`, `DHRT_TOKEN`).
    pub token: Option<String>,
    /// Speak TLS (`wss://`); implied by a `wss://` or `https://` address, and by a CA.
    pub tls: bool,
    /// The CA (PEM file) nodes' certificates are verified against; the public roots
    /// when unset. Giving one turns TLS on for addresses without a scheme.
    pub tls_ca: Option<std::path::PathBuf>,
}

/// An async, pipelined, ring-aware dhrt client. Cheap to clone; clones share
/// connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// `ws://host:port/...`, `wss://host:port/...`, `host:port` or `:port` to `host:port`
/// (whether the address asks for TLS is [`scheme_tls`]).
pub fn normalize_addr(url: &str) -> String {
    let rest = ["ws://", "http://", "wss://", "https://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    if let Some(port) = hostport.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else {
        hostport.to_string()
    }
}

/// What an address's scheme says about TLS: `Some(true)` for `wss://` and `https://`,
/// `Some(false)` for `ws://` and `http://`, `None` for a bare `host:port`.
pub fn scheme_tls(url: &str) -> Option<bool> {
    if url.starts_with("wss://") || url.starts_with("https://") {
        Some(true)
    } else if url.starts_with("ws://") || url.starts_with("http://") {
        Some(false)
    } else {
        None
    }
}

impl ConnectOptions {
    /// Whether a connection to `addr` speaks TLS: as its scheme says (`wss://`,
    /// `https://`), else when [`ConnectOptions::tls`] is set or a CA is given.
    pub fn tls_for(&self, addr: &str) -> bool {
        scheme_tls(addr).unwrap_or(self.tls || self.tls_ca.is_some())
    }

    /// These options for a client whose seeds are `seeds`: a `wss://` or `https://`
    /// seed turns TLS on for every node (the ring's addresses carry no scheme), a
    /// `ws://` or `http://` one (and no `wss://`) turns it off.
    pub fn for_seeds(mut self, seeds: &[&str]) -> Self {
        let schemes: Vec<bool> = seeds.iter().filter_map(|s| scheme_tls(s)).collect();
        if schemes.contains(&true) {
            self.tls = true;
        } else if !schemes.is_empty() {
            self.tls = false;
            self.tls_ca = None;
        }
        self
    }
}

impl Client {
    /// Connects to the node at `addr` (`host:port`, `ws://host:port`, or
    /// `wss://host:port` for TLS verified against the public roots) and reads the
    /// ring. Fails when the node cannot be reached.
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        Self::connect_with(&[addr], Duration::from_secs(10)).await
    }

    /// Connects through the first reachable of `seeds`, with `timeout` per request.
    pub async fn connect_with(seeds: &[&str], timeout: Duration) -> Result<Client, ClientError> {
        Self::connect_with_options(seeds, timeout, ConnectOptions::default()).await
    }

    /// Connects through the first reachable of `seeds`, with `timeout` per request, a
    /// token and TLS as `options` say. A client that reaches its seeds over TLS
    /// (`wss://`, `https://`, [`ConnectOptions::tls`] or a CA) speaks TLS to every
    /// node.
    pub async fn connect_with_options(
        seeds: &[&str],
        timeout: Duration,
        options: ConnectOptions,
    ) -> Result<Client, ClientError> {
        let options = options.for_seeds(seeds);
        let client = Client {
            inner: Arc::new(Inner {
                seeds: seeds.iter().map(|s| normalize_addr(s)).collect(),
                conns: Mutex::new(HashMap::new()),
                ring: Mutex::new(None),
                timeout,
                options,
                seen: Arc::default(),
            }),
        };
        client.any_conn().await?;
        let _ = client.refresh_ring().await;
        Ok(client)
    }

    /// Runs any operation, routed to a replica of its key when it names one key.
    pub async fn request(&self, op: Op) -> Result<Reply, ClientError> {
        let target = self.route(&op);
        let reply = match &target {
            Some(addr) => match self.conn(addr).await {
                Ok(c) => c.call(op.clone(), self.inner.timeout).await,
                Err(e) => Err(e),
            },
            None => self.any_call(op.clone()).await,
        };
        match reply {
            Err(ClientError::Connection(_)) if target.is_some() => {
                self.forget_ring();
                self.any_call(op).await
            }
            other => other,
        }
    }

    /// Reads `key` from `collection`: `None` when missing or deleted.
    pub async fn get(
        &self,
        collection: &str,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Option<Bytes>, ClientError> {
        let key = Bytes::copy_from_slice(key.as_ref());
        match self.request(Op::Get { collection: collection.into(), key, consistency }).await? {
            Reply::Value { value, .. } => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// Writes `key` = `value`, expiring after `ttl` when given; returns the write's
    /// timestamp.
    pub async fn set(
        &self,
        collection: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        consistency: Consistency,
        ttl: Option<Duration>,
    ) -> Result<Timestamp, ClientError> {
        let op = Op::Set {
            collection: collection.into(),
            key: Bytes::copy_from_slice(key.as_ref()),
            value: Bytes::copy_from_slice(value.as_ref()),
            consistency,
            ttl_ms: ttl.map(|t| t.as_millis() as u64),
        };
        written(self.request(op).await?)
    }

    /// Deletes `key` (a tombstone); succeeds also when it did not exist.
    pub async fn del(
        &self,
        collection: &str,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Timestamp, ClientError> {
        let key = Bytes::copy_from_slice(key.as_ref());
        written(self.request(Op::Del { collection: collection.into(), key, consistency }).await?)
    }

    /// Reads several keys; one value per key, in order.
    pub async fn get_many(
        &self,
        collection: &str,
        keys: Vec<Bytes>,
        consistency: Consistency,
    ) -> Result<Vec<Option<Bytes>>, ClientError> {
        let op = Op::GetMany { collection: collection.into(), keys, consistency };
        match self.request(op).await? {
            Reply::Values { values } => Ok(values),
            other => Err(unexpected(other)),
        }
    }

    /// Writes several keys with one timestamp (not a transaction).
    pub async fn set_many(
        &self,
        collection: &str,
        items: Vec<(Bytes, Bytes)>,
        consistency: Consistency,
        ttl: Option<Duration>,
    ) -> Result<Timestamp, ClientError> {
        let ttl_ms = ttl.map(|t| t.as_millis() as u64);
        written(
            self.request(Op::SetMany { collection: collection.into(), items, consistency, ttl_ms })
                .await?,
        )
    }

    /// One page of a scan; pass the page's cursor back to continue.
    pub async fn scan(
        &self,
        collection: &str,
        cursor: Option<Bytes>,
        prefix: Option<Bytes>,
        limit: u32,
        consistency: Consistency,
    ) -> Result<Page, ClientError> {
        let op = Op::Scan { collection: collection.into(), cursor, prefix, limit, consistency };
        match self.request(op).await? {
            Reply::Page { items, cursor } => Ok(Page { items, cursor }),
            other => Err(unexpected(other)),
        }
    }

    /// Subscribes to changes of `collection` (keys starting with `prefix`, if given).
    /// Returns once every serving node has the subscription.
    pub async fn watch(
        &self,
        collection: &str,
        prefix: Option<Bytes>,
    ) -> Result<Watch, ClientError> {
        let conn = self.any_conn().await?;
        let (id, mut rx) = conn.stream(Op::Watch { collection: collection.into(), prefix })?;
        match tokio::time::timeout(self.inner.timeout, rx.recv()).await {
            Ok(Some(Reply::Ok)) => Ok(Watch { conn, id, rx, ended: false }),
            Ok(Some(reply @ Reply::Error { .. })) => Err(server_error(reply)),
            Ok(Some(other)) => Err(unexpected(other)),
            Ok(None) => Err(ClientError::Connection(format!("{}: closed", conn.addr))),
            Err(_) => {
                conn.forget(id);
                Err(ClientError::Timeout(self.inner.timeout))
            }
        }
    }

    /// Counts and state of the node at `node` (any connected node when `None`).
    pub async fn stats(&self, node: Option<&str>) -> Result<NodeStats, ClientError> {
        let reply = match node {
            Some(addr) => {
                self.conn(&normalize_addr(addr)).await?.call(Op::Stats, self.inner.timeout).await?
            }
            None => self.any_call(Op::Stats).await?,
        };
        match reply {
            Reply::Stats(s) => Ok(*s),
            other => Err(unexpected(other)),
        }
    }

    /// Every member of the ring, as a connected node sees it.
    pub async fn ring(&self) -> Result<Vec<RingMember>, ClientError> {
        match self.any_call(Op::Ring).await? {
            Reply::Ring { members } => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    /// Starts removing the member `id`, dead for good, through `node` (admin; see
    /// `dhrt_core::node::remove`). It runs in the background on that node: [`Client::ring`]
    /// shows the member `dead` and leaving until it is `left`.
    pub async fn remove_member(
        &self,
        node: &str,
        id: NodeId,
        force: bool,
    ) -> Result<(), ClientError> {
        let conn = self.conn(&normalize_addr(node)).await?;
        match conn.call(Op::RemoveMember { id, force }, self.inner.timeout).await? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a token (an admin token is needed when the node requires tokens);
    /// answers the token string, shown this once, and what was stored.
    pub async fn token_create(
        &self,
        role: Role,
        collections: Vec<String>,
        note: String,
    ) -> Result<(String, TokenInfo), ClientError> {
        match self.any_call(Op::TokenCreate { role, collections, note }).await? {
            Reply::Token { token, info } => Ok((token.0, info)),
            other => Err(unexpected(other)),
        }
    }

    /// Every token of the cluster, without secrets (admin).
    pub async fn token_list(&self) -> Result<Vec<TokenInfo>, ClientError> {
        match self.any_call(Op::TokenList).await? {
            Reply::Tokens { tokens } => Ok(tokens),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes token `id` (admin): every node refuses it within seconds.
    pub async fn token_revoke(&self, id: &str) -> Result<(), ClientError> {
        match self.any_call(Op::TokenRevoke { id: id.to_string() }).await? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Gives `collection` its settings (admin); a `conflict` error when it has some.
    pub async fn collection_create(
        &self,
        collection: &str,
        settings: CollectionSettings,
    ) -> Result<CollectionView, ClientError> {
        let op = Op::CollectionCreate { collection: collection.to_string(), settings };
        collection_view(self.any_call(op).await?)
    }

    /// Changes some of `collection`'s settings (admin).
    pub async fn collection_alter(
        &self,
        collection: &str,
        change: SettingsChange,
    ) -> Result<CollectionView, ClientError> {
        let op = Op::CollectionAlter { collection: collection.to_string(), change };
        collection_view(self.any_call(op).await?)
    }

    /// `collection`'s settings and estimated size.
    pub async fn collection_show(&self, collection: &str) -> Result<CollectionView, ClientError> {
        let op = Op::CollectionShow { collection: collection.to_string() };
        collection_view(self.any_call(op).await?)
    }

    /// Every collection with settings or keys, by name.
    pub async fn collection_list(&self) -> Result<Vec<CollectionView>, ClientError> {
        match self.any_call(Op::CollectionList).await? {
            Reply::Collections { collections } => Ok(collections),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes every key of `collection` and its settings (admin); how many keys.
    pub async fn collection_drop(
        &self,
        collection: &str,
        consistency: Consistency,
    ) -> Result<u64, ClientError> {
        let op = Op::CollectionDrop { collection: collection.to_string(), consistency };
        match self.any_call(op).await? {
            Reply::Dropped { deleted } => Ok(deleted),
            other => Err(unexpected(other)),
        }
    }

    /// Re-reads the ring from a connected node.
    pub async fn refresh_ring(&self) -> Result<(), ClientError> {
        let conn = self.any_conn().await?;
        let members = match conn.call(Op::Ring, self.inner.timeout).await? {
            Reply::Ring { members } => members,
            other => return Err(unexpected(other)),
        };
        let alive: Vec<&RingMember> = members.iter().filter(|m| m.status == "alive").collect();
        let table = RingTable::new(alive.iter().map(|m| (m.id, m.tokens.as_slice())));
        let addrs = alive.iter().map(|m| (m.id, m.addr.clone())).collect();
        if let Ok(mut ring) = self.inner.ring.lock() {
            *ring = Some(RingView { table, addrs, read_at: Instant::now() });
        }
        Ok(())
    }

    /// The address of a replica for a single-key operation.
    fn route(&self, op: &Op) -> Option<String> {
        let (collection, key) = match op {
            Op::Get { collection, key, .. }
            | Op::Set { collection, key, .. }
            | Op::Del { collection, key, .. } => (collection, key),
            _ => return None,
        };
        let ring = self.inner.ring.lock().ok()?;
        let view = ring.as_ref().filter(|v| v.read_at.elapsed() < RING_REFRESH)?;
        let pos = Placement::of(collection).position(collection, key);
        let owner = view.table.owner(pos)?;
        view.addrs.get(&owner).cloned()
    }

    fn forget_ring(&self) {
        if let Ok(mut ring) = self.inner.ring.lock() {
            *ring = None;
        }
    }

    async fn any_call(&self, op: Op) -> Result<Reply, ClientError> {
        let stale = self
            .inner
            .ring
            .lock()
            .map(|r| r.as_ref().is_none_or(|v| v.read_at.elapsed() >= RING_REFRESH))
            .unwrap_or(true);
        let conn = self.any_conn().await?;
        let reply = conn.call(op, self.inner.timeout).await;
        if stale && !matches!(reply, Err(ClientError::Connection(_))) {
            // Refresh in the background of this call's success.
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.refresh_ring().await;
            });
        }
        reply
    }

    /// The newest timestamp any node's answer carried to this client: every request
    /// passes it, so the client's next write is stamped above everything it saw,
    /// through any node.
    pub fn seen(&self) -> Option<dhrt_core::clock::Timestamp> {
        let seen = self.inner.seen.load(std::sync::atomic::Ordering::Relaxed);
        (seen > 0).then_some(dhrt_core::clock::Timestamp(seen))
    }

    /// A live connection to `addr`, opened on first use.
    async fn conn(&self, addr: &str) -> Result<Conn, ClientError> {
        if let Some(c) = self.inner.conns.lock().ok().and_then(|m| m.get(addr).cloned()) {
            if c.is_alive() {
                return Ok(c);
            }
        }
        let seen = self.inner.seen.clone();
        let c = Conn::open_with_clock(addr, self.inner.timeout, &self.inner.options, seen).await?;
        if let Ok(mut m) = self.inner.conns.lock() {
            m.insert(addr.to_string(), c.clone());
        }
        Ok(c)
    }

    /// A live connection to any node: a connected one, else the seeds and the ring's
    /// members in turn.
    async fn any_conn(&self) -> Result<Conn, ClientError> {
        let live = self.inner.conns.lock().ok().and_then(|m| {
            let mut v: Vec<&Conn> = m.values().filter(|c| c.is_alive()).collect();
            v.sort_by(|a, b| a.addr.cmp(&b.addr));
            v.first().map(|c| (*c).clone())
        });
        if let Some(c) = live {
            return Ok(c);
        }
        let mut candidates = self.inner.seeds.clone();
        if let Ok(ring) = self.inner.ring.lock() {
            if let Some(v) = ring.as_ref() {
                candidates.extend(v.addrs.values().cloned());
            }
        }
        let mut last = ClientError::Connection("no node address given".into());
        for addr in candidates {
            match self.conn(&addr).await {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn server_error(reply: Reply) -> ClientError {
    match reply {
        Reply::Error { code, message, acked } => ClientError::Server { code, message, acked },
        other => unexpected(other),
    }
}

fn unexpected(reply: Reply) -> ClientError {
    match reply {
        e @ Reply::Error { .. } => server_error(e),
        other => ClientError::Protocol(format!("{other:?}")),
    }
}

fn written(reply: Reply) -> Result<Timestamp, ClientError> {
    match reply {
        Reply::Written { ts } => Ok(ts),
        other => Err(unexpected(other)),
    }
}

/// The view a collection operation answers.
fn collection_view(reply: Reply) -> Result<CollectionView, ClientError> {
    match reply {
        Reply::Collection(view) => Ok(*view),
        other => Err(unexpected(other)),
    }
}
