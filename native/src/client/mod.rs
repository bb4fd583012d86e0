//! `dhrt::Client`: the async Rust client — pipelined, ring-aware, failing over.
//!
//! The client is a tokio host ([`driver`]) of the core's light peer
//! ([`dhrt_core::light::LightPeer`]), the same state machine the browser's and Node's
//! package runs, so every client routes, fails over and keeps watches the same way. A
//! client starts from any node's address and reads the ring; from then on it sends each
//! single-key request straight to a replica of the key (owner first), tries the next
//! replica when a node's connection fails or it does not answer within
//! [`ATTEMPT_TIMEOUT`], and sends requests that name no key to any serving node. The
//! ring is re-read every 10 s and after a node fails. Watches move to another node when
//! theirs dies, and [`Client::replica`] keeps a local copy of a collection in sync.
//! Each node gets one WebSocket connection, and any number of requests share it.
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
pub mod driver;

use bytes::Bytes;
use dhrt_core::{
    auth::{BearerToken, Role, TokenInfo},
    catalogue::{CollectionSettings, SettingsChange},
    clock::Timestamp,
    light::{LightConfig, StreamStatus},
    node::scan::Cursor,
    proto::client::{CollectionView, Consistency, ErrorCode, NodeStats, Op, Reply, RingMember},
    NodeId,
};
use driver::{Driver, StreamItem, STREAM_QUEUE};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::mpsc;

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

/// A subscription: events arrive with [`Watch::next`]. It lasts across node failures:
/// when its node dies the client places it on another serving node (changes in between
/// may be missed; [`Watch::interruptions`] counts such gaps). Dropping it unsubscribes.
pub struct Watch {
    client: Client,
    handle: u64,
    rx: mpsc::Receiver<StreamItem>,
    ended: bool,
    interruptions: u64,
}

impl Watch {
    /// The next change; `Ok(None)` once the client is closed. A node that ends the
    /// watch (a collection the token may not read, say) or a reader that fell
    /// [`STREAM_QUEUE`] changes behind ends it with an error.
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        if self.ended {
            return Ok(None);
        }
        loop {
            let item = self.rx.recv().await;
            match item {
                Some(StreamItem::Change(c)) => {
                    return Ok(Some(Event {
                        collection: c.collection,
                        key: c.key,
                        value: c.entry.value,
                        ts: c.entry.ts,
                    }))
                }
                Some(StreamItem::Status(StreamStatus::Interrupted { .. })) => {
                    self.interruptions += 1;
                }
                Some(StreamItem::Status(StreamStatus::Ended { code, message })) => {
                    self.ended = true;
                    return Err(ClientError::Server { code, message, acked: None });
                }
                Some(StreamItem::Status(_)) => {}
                Some(StreamItem::Overflowed) => {
                    self.ended = true;
                    return Err(overflowed());
                }
                None => {
                    self.ended = true;
                    return Ok(None);
                }
            }
        }
    }

    /// How many times the watch lost its node and was placed on another: changes made
    /// during such a gap may not have been delivered.
    pub fn interruptions(&self) -> u64 {
        self.interruptions
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.client.inner.driver.unsubscribe(self.handle);
    }
}

/// A local copy of a collection ([`Client::replica`]): every key and value, caught up
/// by Merkle sync from the collection's replicas and kept current by a watch, read
/// without asking any node. It lasts across node failures like a [`Watch`] (a copy
/// that lost changes catches up by sync). Dropping it closes it.
pub struct Replica {
    client: Client,
    handle: u64,
    collection: String,
    rx: tokio::sync::Mutex<mpsc::Receiver<StreamItem>>,
    status: Mutex<StreamStatus>,
}

impl Replica {
    /// The collection copied.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The live value of `key` in the copy, if any.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        let now = driver::now_ms();
        self.client.inner.driver.read(|peer| peer.copy(self.handle)?.get(now, key))
    }

    /// Entries the copy holds (tombstones not yet collected included).
    pub fn len(&self) -> u64 {
        self.client.inner.driver.read(|peer| peer.copy(self.handle).map_or(0, |c| c.len()))
    }

    /// Whether the copy holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `limit` live `(key, value)` pairs in ring order after `cursor` (from the
    /// start when `None`), and the cursor of the next page (`None` at the end).
    pub fn scan(&self, cursor: Option<&[u8]>, limit: usize) -> Result<Page, ClientError> {
        let after = match cursor {
            None => None,
            Some(c) => Some(Cursor::decode(c).map_err(|e| ClientError::Server {
                code: ErrorCode::InvalidInput,
                message: e,
                acked: None,
            })?),
        };
        let now = driver::now_ms();
        let page = self.client.inner.driver.read(|peer| {
            let copy = peer.copy(self.handle)?;
            Some(copy.scan(now, after.as_ref().map(|c| (c.pos, &c.key[..])), limit.max(1)))
        });
        let page = page.ok_or_else(|| ClientError::Connection("the replica is closed".into()))?;
        let cursor = page.cursor.map(|(pos, key)| Cursor { pos, key }.encode());
        Ok(Page { items: page.items, cursor })
    }

    /// The copy's state as last reported: syncing, synced, interrupted.
    pub fn status(&self) -> StreamStatus {
        self.drain();
        self.status.lock().map(|s| s.clone()).unwrap_or(StreamStatus::Live)
    }

    /// Waits until the copy has caught up with the cluster ([`StreamStatus::Synced`]);
    /// a copy that caught up already answers at once.
    pub async fn synced(&self, timeout: Duration) -> Result<(), ClientError> {
        let wait = async {
            let mut rx = self.rx.lock().await;
            loop {
                if matches!(self.status(), StreamStatus::Synced { .. }) {
                    return Ok(());
                }
                match rx.recv().await {
                    Some(item) => self.note(item)?,
                    None => return Err(ClientError::Connection("the client is closed".into())),
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ClientError::Timeout(timeout))?
    }

    /// Takes in the states reported since the last look.
    fn drain(&self) {
        if let Ok(mut rx) = self.rx.try_lock() {
            while let Ok(item) = rx.try_recv() {
                let _ = self.note(item);
            }
        }
    }

    fn note(&self, item: StreamItem) -> Result<(), ClientError> {
        let status = match item {
            StreamItem::Status(status) => status,
            StreamItem::Change(_) => return Ok(()),
            StreamItem::Overflowed => return Err(overflowed()),
        };
        let ended = match &status {
            StreamStatus::Ended { code, message } => {
                Some(ClientError::Server { code: *code, message: message.clone(), acked: None })
            }
            _ => None,
        };
        if let Ok(mut s) = self.status.lock() {
            *s = status;
        }
        ended.map_or(Ok(()), Err)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.client.inner.driver.unsubscribe(self.handle);
    }
}

/// A stream's reader fell too far behind.
fn overflowed() -> ClientError {
    ClientError::Server {
        code: ErrorCode::TooLarge,
        message: format!(
            "the watch ended: {STREAM_QUEUE} changes were waiting to be read; read them \
             faster, or watch a narrower prefix"
        ),
        acked: None,
    }
}

/// Ends the driver when the last clone of a client goes.
struct Inner {
    driver: Arc<Driver>,
    timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.driver.close();
    }
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
    /// How long one node may take to answer (or to open a connection) before a request
    /// goes to the next candidate; [`ATTEMPT_TIMEOUT`] when unset, and never more than
    /// the client's timeout.
    pub attempt_timeout: Option<Duration>,
}

/// An async, pipelined, ring-aware dhrt client. Cheap to clone; clones share
/// connections. It closes when the last clone (and the last [`Watch`] and [`Replica`]
/// of it) is dropped.
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

/// How long one node may take to answer before a request goes to the next, unless
/// [`ConnectOptions::attempt_timeout`] says otherwise (or the client's timeout is
/// shorter): a little over a node's own request timeout, so a node that is alive
/// answers (if only with `timeout`) within it.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// node. Answers once a node told the ring; fails when no seed could be reached
    /// (every one's reason in the error), or a node refused the token.
    pub async fn connect_with_options(
        seeds: &[&str],
        timeout: Duration,
        options: ConnectOptions,
    ) -> Result<Client, ClientError> {
        let options = options.for_seeds(seeds);
        let attempt = options.attempt_timeout.unwrap_or(ATTEMPT_TIMEOUT).min(timeout);
        let config = LightConfig {
            attempt_timeout_ms: (attempt.as_millis() as u64).max(1),
            token: options.token.clone().map(BearerToken),
            seed: random_seed(),
            ..LightConfig::default()
        };
        let seeds = seeds.iter().map(|s| normalize_addr(s)).collect();
        let (driver, started) = Driver::start(seeds, config, options);
        let client = Client { inner: Arc::new(Inner { driver, timeout }) };
        match tokio::time::timeout(timeout, started).await {
            Ok(Ok(Ok(()))) => Ok(client),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(ClientError::Connection("the client is closed".into())),
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }

    /// Closes the client: calls waiting fail, watches and replicas end, connections
    /// close. Dropping every clone does the same.
    pub fn close(&self) {
        self.inner.driver.close();
    }

    /// Runs any operation, routed to a replica of its key when it names one key (the
    /// next replica when one fails), else to any serving node.
    pub async fn request(&self, op: Op) -> Result<Reply, ClientError> {
        self.call(op, None).await
    }

    /// Runs `op` on the node at `at` only, or routed as [`Client::request`] says.
    async fn call(&self, op: Op, at: Option<&str>) -> Result<Reply, ClientError> {
        let driver = &self.inner.driver;
        let (handle, rx) = driver.call(op, at);
        // A caller that stops waiting (a timeout, a dropped future) gives the request
        // up, so no other node is tried for it.
        let mut pending = Pending { driver, handle, answered: false };
        let answer = tokio::time::timeout(self.inner.timeout, rx).await;
        pending.answered = answer.is_ok();
        match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ClientError::Connection("the client is closed".into())),
            Err(_) => Err(ClientError::Timeout(self.inner.timeout)),
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
        let op = Op::Get { collection: collection.into(), key, consistency };
        Ok(self.request(op).await?.into_value().map_err(unexpected)?.0)
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
        self.request(op).await?.into_written().map_err(unexpected)
    }

    /// Deletes `key` (a tombstone); succeeds also when it did not exist.
    pub async fn del(
        &self,
        collection: &str,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Timestamp, ClientError> {
        let key = Bytes::copy_from_slice(key.as_ref());
        let op = Op::Del { collection: collection.into(), key, consistency };
        self.request(op).await?.into_written().map_err(unexpected)
    }

    /// Reads several keys; one value per key, in order.
    pub async fn get_many(
        &self,
        collection: &str,
        keys: Vec<Bytes>,
        consistency: Consistency,
    ) -> Result<Vec<Option<Bytes>>, ClientError> {
        let op = Op::GetMany { collection: collection.into(), keys, consistency };
        self.request(op).await?.into_values().map_err(unexpected)
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
        let op = Op::SetMany { collection: collection.into(), items, consistency, ttl_ms };
        self.request(op).await?.into_written().map_err(unexpected)
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
        let (items, cursor) = self.request(op).await?.into_page().map_err(unexpected)?;
        Ok(Page { items, cursor })
    }

    /// Subscribes to changes of `collection` (keys starting with `prefix`, if given).
    /// Returns once a node has the subscription: every change from then on is
    /// delivered, and the watch moves to another node when its node fails.
    pub async fn watch(
        &self,
        collection: &str,
        prefix: Option<Bytes>,
    ) -> Result<Watch, ClientError> {
        let (handle, rx) = self.inner.driver.subscribe(collection, prefix, false, false);
        let mut watch = Watch { client: self.clone(), handle, rx, ended: false, interruptions: 0 };
        let placed = async {
            loop {
                match watch.rx.recv().await {
                    Some(StreamItem::Status(StreamStatus::Live)) => return Ok(()),
                    Some(StreamItem::Status(StreamStatus::Ended { code, message })) => {
                        return Err(ClientError::Server { code, message, acked: None })
                    }
                    Some(StreamItem::Overflowed) => return Err(overflowed()),
                    Some(_) => {}
                    None => return Err(ClientError::Connection("the client is closed".into())),
                }
            }
        };
        match tokio::time::timeout(self.inner.timeout, placed).await {
            Ok(Ok(())) => Ok(watch),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Timeout(self.inner.timeout)),
        }
    }

    /// Opens a local copy of `collection`: it catches up from the collection's
    /// replicas by Merkle sync and stays current through a watch; read it with
    /// [`Replica::get`] and [`Replica::scan`], wait for it with [`Replica::synced`].
    pub fn replica(&self, collection: &str) -> Replica {
        let (handle, rx) = self.inner.driver.subscribe(collection, None, true, false);
        Replica {
            client: self.clone(),
            handle,
            collection: collection.to_string(),
            rx: tokio::sync::Mutex::new(rx),
            status: Mutex::new(StreamStatus::Syncing { done: 0, total: 0 }),
        }
    }

    /// Counts and state of the node at `node` (any node when `None`).
    pub async fn stats(&self, node: Option<&str>) -> Result<NodeStats, ClientError> {
        let at = node.map(normalize_addr);
        match self.call(Op::Stats, at.as_deref()).await? {
            Reply::Stats(s) => Ok(*s),
            other => Err(unexpected(other)),
        }
    }

    /// Every member of the ring, as a serving node sees it now.
    pub async fn ring(&self) -> Result<Vec<RingMember>, ClientError> {
        match self.request(Op::Ring).await? {
            Reply::Ring { members } => Ok(members),
            other => Err(unexpected(other)),
        }
    }

    /// The ring as this client last read it (re-read every few seconds and after a
    /// node fails): what it routes by.
    pub fn known_ring(&self) -> Vec<RingMember> {
        self.inner.driver.read(|peer| peer.members().to_vec())
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
        let op = Op::RemoveMember { id, force };
        self.call(op, Some(&normalize_addr(node))).await?.into_ok().map_err(unexpected)
    }

    /// Creates a token (an admin token is needed when the node requires tokens);
    /// answers the token string, shown this once, and what was stored.
    pub async fn token_create(
        &self,
        role: Role,
        collections: Vec<String>,
        note: String,
    ) -> Result<(String, TokenInfo), ClientError> {
        match self.request(Op::TokenCreate { role, collections, note }).await? {
            Reply::Token { token, info } => Ok((token.0, info)),
            other => Err(unexpected(other)),
        }
    }

    /// Every token of the cluster, without secrets (admin).
    pub async fn token_list(&self) -> Result<Vec<TokenInfo>, ClientError> {
        match self.request(Op::TokenList).await? {
            Reply::Tokens { tokens } => Ok(tokens),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes token `id` (admin): every node refuses it within seconds.
    pub async fn token_revoke(&self, id: &str) -> Result<(), ClientError> {
        let op = Op::TokenRevoke { id: id.to_string() };
        self.request(op).await?.into_ok().map_err(unexpected)
    }

    /// Gives `collection` its settings (admin); a `conflict` error when it has some.
    pub async fn collection_create(
        &self,
        collection: &str,
        settings: CollectionSettings,
    ) -> Result<CollectionView, ClientError> {
        let op = Op::CollectionCreate { collection: collection.to_string(), settings };
        collection_view(self.request(op).await?)
    }

    /// Changes some of `collection`'s settings (admin).
    pub async fn collection_alter(
        &self,
        collection: &str,
        change: SettingsChange,
    ) -> Result<CollectionView, ClientError> {
        let op = Op::CollectionAlter { collection: collection.to_string(), change };
        collection_view(self.request(op).await?)
    }

    /// `collection`'s settings and estimated size.
    pub async fn collection_show(&self, collection: &str) -> Result<CollectionView, ClientError> {
        let op = Op::CollectionShow { collection: collection.to_string() };
        collection_view(self.request(op).await?)
    }

    /// Every collection with settings or keys, by name.
    pub async fn collection_list(&self) -> Result<Vec<CollectionView>, ClientError> {
        match self.request(Op::CollectionList).await? {
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
        match self.request(op).await? {
            Reply::Dropped { deleted } => Ok(deleted),
            other => Err(unexpected(other)),
        }
    }

    /// The newest timestamp any node's answer carried to this client: every request
    /// passes it, so the client's next write is stamped above everything it saw,
    /// through any node.
    pub fn seen(&self) -> Option<Timestamp> {
        self.inner.driver.read(|peer| peer.seen())
    }
}

/// A request a caller waits for; given up when the caller stops waiting unanswered.
struct Pending<'a> {
    driver: &'a Arc<Driver>,
    handle: u64,
    answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.driver.cancel(self.handle);
        }
    }
}

/// A seed for the salts of a client's sync sessions, different in every client.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
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

/// The view a collection operation answers.
fn collection_view(reply: Reply) -> Result<CollectionView, ClientError> {
    match reply {
        Reply::Collection(view) => Ok(*view),
        other => Err(unexpected(other)),
    }
}
