//! The node: everything a dhrt node decides about data, as one sans-IO state machine.
//!
//! `Node<S: Store>` owns a [`Replica`] (the store and its Merkle trees), the node's
//! hybrid logical clock, its [`Membership`] (gossip and failure detection) and the token
//! table built from it, and the [`coordinator`] state of the client requests it is
//! coordinating. Drivers — the tokio server, the browser peer, the simulator — call
//!
//! ```text
//! node.handle_client(now, client, request)   // a client's request
//! node.handle_peer(now, from, message)       // a frame from another node
//! node.tick(now)                             // timers: gossip, probes, request timeouts
//! node.flush_begin(now)                      // after each batch: begin a commit
//! node.committed(now, epoch, result)         // the commit's wait for the disk ended
//! node.poll_output()                         // Send | SendAddr | Reply | Event
//! node.next_deadline()                       // when to call tick next
//! ```
//!
//! and move bytes. Routing is one hop: the key's position, looked up in the token table
//! of the serving members, gives its preference list — the N distinct nodes after it —
//! and the coordinator talks to them directly.
//!
//! What is here: coordination of reads and writes at any consistency with timeouts
//! that report how many replicas answered ([`coordinator`]), read repair, hinted handoff
//! ([`hints`]), scheduled anti-entropy, hand-off before serving and cleaning
//! ([`antientropy`]), expiry, tombstone collection and the rejoin-empty rule ([`gc`]),
//! paged range scans in ring order ([`scan`]), watches and client sync ([`watch`]),
//! token moves that keep ordered collections balanced ([`migrate`]), membership, and
//! which outputs wait for which commit ([`durability`]: nothing is acknowledged before
//! it is durable).
//! See `docs/node.md`. Drivers tell the node when a client connection closes
//! ([`Node::client_gone`]) so its watches end.
//!
//! `Node` composes machines that own their state — [`membership`](crate::membership),
//! [`hints`], [`gc`], the [`coordinator`], the [`scan`]s, the [`watch`]es, the sync
//! [`sessions`], the [`antientropy`] rounds, [`migrate`], the [`moves`] between
//! layouts, a graceful [`leave`], the [`remove`]als — each handed its input with what it
//! reads of the rest of the node, its outputs routed in `compose/`; the [`view`] is the
//! ring and the catalogue they all route by; `requests.rs` says which part answers a
//! client's request.

pub mod antientropy;
mod compose;
pub mod coordinator;
pub mod durability;
pub mod gc;
pub mod guard;
pub mod hints;
pub mod ids;
mod joint;
mod layouts;
pub mod leave;
pub mod migrate;
pub mod moves;
mod quota;
pub mod remove;
mod requests;
pub mod scan;
pub mod sessions;
pub mod skew;
pub mod timers;
pub mod view;
pub mod watch;

use crate::{
    catalogue::{Catalogue, CATALOGUE_COLLECTION},
    clock::Hlc,
    entry::{Entry, NodeId},
    hash::{Interval, Position},
    membership::{Member, Membership, MembershipConfig, MembershipEvent, MembershipOutput, Status},
    proto::{client::Consistency, ClientRequest, ClientResponse, Message, ReplicaMessage},
    replica::Replica,
    ring::{tokens_for, CollectionPlacement, Placement, RingTable, DEFAULT_VNODES},
    rng::Rng,
    store::{Store, StoreError},
    Millis,
};
use antientropy::{AntiEntropy, HandoffProgress};
use bytes::Bytes;
use coordinator::Coordinator;
use durability::{Commit, Durability, Epoch, Failed, Held, Released};
use gc::Gc;
use hints::Hints;
use migrate::{Migration, MigrationConfig};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use watch::{WatchConfig, Watches};

/// Identifies a client connection to the driver; replies go back to it.
pub type ClientId = u64;

/// Configuration of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// Where other nodes reach it (`host:port`).
    pub addr: String,
    /// Replicas per key (N).
    pub replicas: usize,
    /// Tokens (virtual nodes) this node holds; capped to the membership's `max_tokens`
    /// (256), the most a member record may carry.
    pub vnodes: usize,
    /// How long a coordinator waits for replicas before answering with an error.
    pub request_timeout_ms: Millis,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// Membership protocol settings.
    pub membership: MembershipConfig,
    /// Period of anti-entropy rounds (jittered ±50%).
    pub sync_interval_ms: Millis,
    /// A sync session silent this long is abandoned.
    pub sync_timeout_ms: Millis,
    /// Most sync sessions a node initiates at once (the rate limit).
    pub max_sync_sessions: usize,
    /// How long tombstones (and expired entries) are kept before they are purged; a
    /// node whose last full sync is older than this rejoins empty.
    pub tombstone_grace_ms: Millis,
    /// Period of the tombstone collector's passes over the store.
    pub gc_interval_ms: Millis,
    /// The consistency level of requests that name none ([`Consistency::Default`]), per
    /// collection, where the catalogue gives none ([`crate::catalogue`]); collections
    /// not listed use `quorum`.
    pub collection_consistency: BTreeMap<String, Consistency>,
    /// The node's labels (`--label zone=eu-1`), announced in its membership record
    /// ([`crate::ring::spread`]); checked by [`crate::membership::parse_labels`].
    pub labels: BTreeMap<String, String>,
    /// Token moves that balance the entries per node (see [`migrate`]).
    pub migration: MigrationConfig,
    /// Seed of every random choice the node makes.
    pub seed: u64,
    /// Watches and client sync.
    pub watch: WatchConfig,
    /// How much the node may hold in hints for other nodes.
    pub hints: hints::HintLimits,
    /// How much the client requests it coordinates may hold at once (see
    /// [`coordinator`]).
    pub pending: coordinator::PendingLimits,
    /// How long a joining node waits, after it first hears of the cluster, before it
    /// copies the ranges it takes over: time for its record to reach every coordinator
    /// by gossip, so that every write from then on reaches it as a pending replica
    /// (see [`crate::ring::placement`]; Cassandra's `RING_DELAY`). The same wait comes
    /// before a leaver or a token move hands off, and a leaver stays up that long after
    /// `Left`.
    pub ring_delay_ms: Millis,
}

impl NodeConfig {
    /// Defaults for node `id` at `addr`: 3 replicas, 32 tokens, 2 s request timeout,
    /// 16 MiB values, sync every 10 s, tombstones kept 24 h.
    pub fn new(id: NodeId, addr: impl Into<String>) -> Self {
        NodeConfig {
            id,
            addr: addr.into(),
            replicas: 3,
            vnodes: DEFAULT_VNODES,
            request_timeout_ms: 2_000,
            max_value_bytes: 16 * 1024 * 1024,
            membership: MembershipConfig::default(),
            sync_interval_ms: 10_000,
            sync_timeout_ms: 30_000,
            max_sync_sessions: 2,
            tombstone_grace_ms: 24 * 60 * 60 * 1000,
            gc_interval_ms: 60_000,
            collection_consistency: BTreeMap::new(),
            labels: BTreeMap::new(),
            migration: MigrationConfig::default(),
            seed: id.0,
            watch: WatchConfig::default(),
            hints: hints::HintLimits::default(),
            pending: coordinator::PendingLimits::default(),
            ring_delay_ms: 2_000,
        }
    }
}

/// The little a node must remember across restarts besides its store. The node emits
/// [`Output::Persist`] when it changes; the driver saves it (next to the store) and
/// passes it back to [`Node::with_state`] on restart.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeState {
    /// When the last anti-entropy round in which every session succeeded started (wall
    /// milliseconds). Tombstone collection and the rejoin-empty rule depend on it.
    pub last_full_sync_ms: Option<Millis>,
    /// The node's tokens after it moved one (see [`migrate`]); `None` until then, when
    /// the node derives `vnodes` tokens from its id. Once set, they override `vnodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<Position>>,
    /// The node's membership incarnation when it last changed. A node restarted on its
    /// data starts from it, so its refutation beats any claim about it that other
    /// members accepted (they accept none more than a bounded step above what they saw,
    /// see [`crate::membership`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
}

/// Something a node wants its driver to do or know.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send `msg` to node `to` at `addr`.
    Send {
        /// The destination node.
        to: NodeId,
        /// Its address.
        addr: String,
        /// The message.
        msg: Message,
    },
    /// Send `msg` to whoever listens at `addr` (joining through a seed).
    SendAddr {
        /// The address.
        addr: String,
        /// The message.
        msg: Message,
    },
    /// Answer client `client`.
    Reply {
        /// The client connection.
        client: ClientId,
        /// The answer.
        resp: ClientResponse,
    },
    /// Save this state durably (see [`NodeState`]).
    Persist(NodeState),
    /// Something happened that operators or tests may want to know.
    Event(NodeEvent),
}

/// Notable things a node reports.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// A membership change.
    Membership(MembershipEvent),
    /// A stale replica was repaired after a read.
    ReadRepaired {
        /// The repaired node.
        node: NodeId,
        /// The collection.
        collection: String,
        /// The key.
        key: Bytes,
    },
    /// The local store refused a write from a peer or a client, or failed a read.
    StoreFailed(StoreError),
    /// A commit failed: the acknowledgements waiting for it were withheld, and the node
    /// rebuilds itself from what the store holds and re-syncs (see [`durability`]).
    CommitFailed {
        /// Why.
        reason: String,
    },
    /// A sync session with `peer` failed.
    SyncFailed {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: String,
    },
    /// Progress of the hand-off this node runs before it serves (after starting,
    /// joining, or being declared dead): reported when it starts and as sessions end.
    Handoff(HandoffProgress),
    /// Progress of a graceful leave's hand-off (see [`leave`]): reported when it starts
    /// and as sessions end; `done == total` when the node announced it left.
    Leaving(HandoffProgress),
    /// Progress of the removal of a dead member this node runs (see [`remove`]):
    /// reported when it starts, when it asks the owners, and as they answer.
    Removing(remove::RemovalProgress),
    /// The removal of `member` ended: it is `Left` (this node announced it, or heard it).
    Removed {
        /// The member removed.
        member: NodeId,
    },
    /// The removal of `member` this node ran stopped before it ended.
    RemovalStopped {
        /// The member.
        member: NodeId,
        /// Why.
        reason: String,
    },
    /// Data this node no longer replicates was handed to its owners, then dropped.
    Cleaned {
        /// The collection.
        collection: String,
        /// The ring interval dropped.
        interval: Interval,
        /// Entries dropped.
        entries: u64,
    },
    /// The node's last full sync was older than the tombstone grace period: it dropped
    /// what other replicas hold, to re-sync it from them.
    Wiped {
        /// Entries dropped.
        entries: u64,
    },
    /// A full anti-entropy round took more than a quarter of the tombstone grace period:
    /// a replica that misses a delete may get its tombstone only after the others have
    /// collected it. Rounds that slow mean silent peers, a slow disk or an overloaded
    /// node, for the operator to look into.
    SlowSync {
        /// How long the round took.
        took_ms: Millis,
        /// The tombstone grace period.
        grace_ms: Millis,
    },
    /// This node's clock is off from its peers' by more than the max offset (see
    /// [`skew`]): it stops coordinating writes until it is back.
    ClockSkewed(skew::Skew),
    /// This node's clock agrees with its peers' again: it coordinates writes again.
    ClockRecovered {
        /// The estimated offset from its peers now, if any peer has an estimate.
        offset_ms: Option<i64>,
    },
    /// The node moved a token after handing its range `(to, from]` off (migration).
    TokenMoved {
        /// The token's old position.
        from: Position,
        /// Its new position.
        to: Position,
        /// Entries in the range handed off when the move was decided.
        entries: u64,
        /// This node's primary load when it decided.
        load: u64,
        /// The least load among the nodes it asked.
        floor: u64,
    },
    /// This node, driving moves of collections between layouts (see [`moves`]), wrote
    /// the next state of `collection`'s move: the phase it entered, `None` when the
    /// move is done.
    LayoutMoved {
        /// The collection.
        collection: String,
        /// The phase entered.
        phase: Option<crate::catalogue::MovePhase>,
    },
}

/// The commit bookkeeping of a node (see [`Node::commits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// The last epoch begun.
    pub begun: Epoch,
    /// Every epoch up to this one is resolved (durable, or failed).
    pub resolved: Epoch,
    /// Commits that failed.
    pub failed: u64,
    /// Outputs and acknowledgements waiting for a commit now.
    pub held: usize,
}

/// A dhrt node.
#[derive(Debug)]
pub struct Node<S: Store> {
    config: NodeConfig,
    clock: Hlc,
    rng: Rng,
    replica: Replica<S>,
    membership: Membership,
    /// The ring and the catalogue as this node sees them (see [`view`]).
    view: view::View,
    /// Numbers every request this node sends another, by concern ([`ids`]).
    ids: ids::RequestIds,
    coordinator: Coordinator,
    scans: scan::Scans,
    hints: Hints,
    anti_entropy: AntiEntropy,
    /// The sync sessions every part of the node queues (see [`sessions`]).
    sessions: sessions::Sessions,
    /// Whether the node was told to join a cluster (see [`Node::awaiting_cluster`]).
    join_requested: bool,
    gc: Gc,
    migration: Migration,
    /// A graceful leave, once asked for (see [`leave`]).
    leave: leave::Leave,
    /// Moves of collections between layouts (see [`moves`]).
    moves: moves::Moves,
    /// The removal of a dead member this node runs, and the hand-offs it runs for
    /// removals (see [`remove`]).
    removals: remove::Removals,
    state: NodeState,
    watch: Watches,
    peer_stats: guard::PeerStats,
    /// Hybrid-clock stamps of membership messages and peers' clock offsets.
    clocks: skew::ClockWatch,
    /// The wall time of the latest input, for stamping what membership sends.
    wall_ms: Millis,
    durability: Durability,
    /// Outputs as produced; [`Node::poll_output`] passes each through [`Durability`].
    outputs: VecDeque<Output>,
    /// Outputs a commit released, ahead of `outputs`.
    ready: VecDeque<Output>,
}

impl<S: Store> Node<S> {
    /// A fresh node over `store`, alone in its own cluster until it joins one.
    pub fn new(config: NodeConfig, store: S) -> Result<Self, StoreError> {
        Self::with_state(config, store, NodeState::default())
    }

    /// A node over `store` with the state it saved before a restart.
    ///
    /// Every node starts `Syncing`: it serves only once a hand-off round has caught its
    /// ranges up from their current owners (at once when it is alone). A node told to
    /// [`Node::join`] waits for the cluster's view first.
    pub fn with_state(config: NodeConfig, store: S, state: NodeState) -> Result<Self, StoreError> {
        let max = config.membership.max_tokens;
        let tokens = state
            .tokens
            .clone()
            .filter(|t| !t.is_empty() && t.len() <= max && t.windows(2).all(|w| w[0] < w[1]))
            .unwrap_or_else(|| tokens_for(config.id, config.vnodes.clamp(1, max.max(1))));
        let incarnation = state.incarnation.unwrap_or(0);
        // A node that never announced itself (no saved incarnation) is new to the ring, or
        // lost its data: it joins as a pending replica until it hears of an earlier life
        // (see `Member::joining`).
        let joining = state.incarnation.is_none();
        let me = Member {
            joining,
            labels: config.labels.clone(),
            ..Member::new(config.id, config.addr.clone(), tokens).with(Status::Syncing, incarnation)
        };
        let mut rng = Rng::new(config.seed);
        let membership = Membership::new(me, config.membership.clone(), rng.next_u64());
        let replica = Replica::new(store)?;
        // A node whose store holds nothing (fresh, or its data lost), or that never
        // finished a hand-off on it (it crashed during one), cannot count itself among a
        // range's copies in its hand-off.
        let started_empty = joining
            || state.last_full_sync_ms.is_none()
            || replica.store().collections().map_or(true, |c| c.is_empty());
        let mut node = Node {
            clock: Hlc::default(),
            rng,
            replica,
            membership,
            view: view::View::new(
                config.id,
                config.replicas,
                config.collection_consistency.clone(),
            ),
            // Request numbers start at a random point of this life (see [`ids`]),
            // drawn apart from `rng` so that adding it changed no other choice.
            ids: ids::RequestIds::numbered_from(
                Rng::new(config.seed ^ 0x7265_7175_6573_7473).next_u64() >> 12,
            ),
            coordinator: Coordinator::default(),
            scans: scan::Scans::new(config.request_timeout_ms),
            hints: Hints::new(config.hints),
            anti_entropy: AntiEntropy::new(started_empty),
            sessions: sessions::Sessions::new(config.max_sync_sessions, config.sync_timeout_ms),
            join_requested: false,
            gc: Gc::default(),
            migration: Migration::default(),
            leave: leave::Leave::default(),
            moves: moves::Moves::default(),
            removals: remove::Removals::default(),
            state,
            watch: Watches::new(
                config.watch.clone(),
                config.request_timeout_ms,
                config.sync_timeout_ms,
            ),
            peer_stats: guard::PeerStats::default(),
            clocks: skew::ClockWatch::default(),
            wall_ms: 0,
            durability: Durability::default(),
            outputs: VecDeque::new(),
            ready: VecDeque::new(),
            config,
        };
        node.refresh_table();
        node.load_catalogue();
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The local replica (store and Merkle trees).
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// The membership view.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The token table of the owning members (alive, suspected, dead or re-syncing;
    /// not joining, not left: see [`crate::ring::placement`]).
    pub fn table(&self) -> &RingTable {
        &self.view.table
    }

    /// Owners, pending replicas and readable members of this node's view.
    pub fn placement(&self) -> &Placement {
        &self.view.placement
    }

    /// The ring and the catalogue as this node sees them.
    pub fn view(&self) -> &view::View {
        &self.view
    }

    /// See [`view::View::consistency_for`].
    pub fn consistency_for(&self, collection: &str, requested: Consistency) -> Consistency {
        self.view.consistency_for(collection, requested)
    }

    /// See [`view::View::replicas_for`].
    pub fn replicas_for(&self, collection: &str) -> usize {
        self.view.replicas_for(collection)
    }

    /// See [`view::View::placement_for`].
    pub fn placement_for(&self, collection: &str) -> CollectionPlacement<'_> {
        self.view.placement_for(collection)
    }

    /// Every collection's settings as this node knows them ([`crate::catalogue`]).
    pub fn catalogue(&self) -> &Catalogue {
        &self.view.catalogue
    }

    /// See [`view::View::ring_share`].
    pub fn ring_share(&self) -> f64 {
        self.view.ring_share
    }

    /// See [`view::View::ring_share_for`].
    pub fn ring_share_for(&self, collection: &str) -> f64 {
        self.view.ring_share_for(collection)
    }

    /// Reads the catalogue again from this node's copy when a merge or removal changed
    /// it since it was last read.
    fn refresh_catalogue(&mut self) {
        if self.replica.take_catalogue_changed() {
            self.load_catalogue();
        }
    }

    /// Reads the catalogue from this node's copy.
    fn load_catalogue(&mut self) {
        let limit = crate::catalogue::MAX_ENTRIES * 2;
        let records = match self.replica.range(CATALOGUE_COLLECTION, Interval::full(), None, limit)
        {
            Ok(records) => records,
            Err(e) => {
                self.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e)));
                return;
            }
        };
        let now = self.wall_ms;
        let live = records.iter().filter_map(|r| {
            let value = r.entry.value.as_ref().filter(|_| !r.entry.is_expired(now))?;
            Some((&r.key[..], &value[..]))
        });
        self.view.set_catalogue(Catalogue::from_entries(live), &self.membership);
        self.note_layouts_seen();
    }

    /// The state to persist (also emitted as [`Output::Persist`] when it changes).
    pub fn state(&self) -> &NodeState {
        &self.state
    }

    /// The tombstone collector's counters.
    pub fn gc(&self) -> &Gc {
        &self.gc
    }

    /// Consumes the node, returning its store (a driver restarting it keeps the disk).
    pub fn into_store(self) -> S {
        self.replica.into_store()
    }

    /// Begins committing the writes handled since the last commit began (group commit,
    /// see [`durability`]). Drivers call it after feeding a batch of inputs. The returned
    /// [`Commit`] names its epoch and carries the store's wait for the disk: run it (on
    /// any thread) and report the outcome with [`Node::committed`]. Without a job there
    /// is nothing to wait for: nothing was written since the last commit began, or the
    /// store needs no wait and the commit already completed. On an error the node has
    /// already treated the commit as failed (and recovers by itself); the error is
    /// returned to be logged.
    pub fn flush_begin(&mut self, now: Millis) -> Result<Commit, StoreError> {
        self.admit_pending();
        let Some(epoch) = self.durability.begin(self.replica.writes()) else {
            return Ok(Commit { epoch: self.durability.begun(), job: None });
        };
        match self.replica.flush_begin() {
            Ok(None) => {
                self.committed(now, epoch, Ok(()));
                Ok(Commit { epoch, job: None })
            }
            Ok(Some(job)) => Ok(Commit { epoch, job: Some(job) }),
            Err(e) => {
                self.committed(now, epoch, Err(e.clone()));
                Err(e)
            }
        }
    }

    /// Flushes the store of an idle node — every write committed, no commit under way —
    /// when it wants to ([`Store::wants_flush`]): a failed checkpoint is tried again
    /// with no write to prompt it. Nothing acknowledged or held depends on the outcome,
    /// which is the store's to report in its health.
    pub fn tend_store(&mut self) -> Result<(), StoreError> {
        let d = &self.durability;
        let idle = d.resolved() == d.begun() && self.replica.writes() == d.writes_at_begin();
        if !idle || !self.replica.store().wants_flush() {
            return Ok(());
        }
        self.replica.flush()
    }

    /// The host is stopping cleanly, its last commit done: the store may tidy its
    /// files ([`Store::close`]).
    pub fn close_store(&mut self) {
        self.replica.close_store();
    }

    /// The commit `epoch` (from [`Node::flush_begin`]) ended with `result`. Success
    /// releases everything held for it and earlier epochs, in order; failure fails
    /// everything held and makes the node recover (see [`durability`]). Reports of
    /// epochs already resolved are ignored.
    pub fn committed(&mut self, now: Millis, epoch: Epoch, result: Result<(), StoreError>) {
        self.admit_pending();
        let released = self.durability.resolve(epoch, result.map_err(|e| e.to_string()));
        self.release(now, released);
    }

    /// [`Node::flush_begin`], the wait for the disk in place, and [`Node::committed`]:
    /// for drivers that stop, and tests.
    pub fn flush(&mut self, now: Millis) -> Result<(), StoreError> {
        let Commit { epoch, job } = self.flush_begin(now)?;
        let Some(job) = job else { return Ok(()) };
        let result = job.wait();
        self.committed(now, epoch, result.clone());
        result
    }

    /// The epochs begun and resolved, the commits failed, and the outputs held now.
    pub fn commits(&self) -> CommitStats {
        let d = &self.durability;
        CommitStats {
            begun: d.begun(),
            resolved: d.resolved(),
            failed: d.failures(),
            held: d.holding(),
        }
    }

    /// Passes outputs produced so far through the durability rule, so that those made
    /// before a commit began are covered by it.
    fn admit_pending(&mut self) {
        if self.replica.store().durable_on_write() {
            return;
        }
        let writes = self.replica.writes();
        while let Some(out) = self.outputs.pop_front() {
            if let Some(out) = self.durability.admit(writes, out) {
                self.ready.push_back(out);
            }
        }
    }

    fn release(&mut self, now: Millis, released: Released) {
        let Released { items, failed } = released;
        if let Some(reason) = &failed {
            self.outputs
                .push_back(Output::Event(NodeEvent::CommitFailed { reason: reason.clone() }));
        }
        let me = self.id();
        for item in items {
            match (item, &failed) {
                (Held::Output(out), None) => self.ready.push_back(*out),
                (Held::Output(out), Some(reason)) => match durability::on_failure(*out, reason) {
                    Failed::Send(out) => self.ready.push_back(out),
                    Failed::Dropped => {}
                    Failed::WatchEvent { client, id } => {
                        let ended =
                            self.watch.end_uncommitted_watch(&self.membership, client, id, reason);
                        if let Some(out) = ended {
                            let out = self.watch_output(out);
                            self.ready.push_back(out);
                        }
                        self.collect_watches();
                    }
                    Failed::ClientSync { client, id, error } => {
                        self.watch.end_uncommitted_sync(client, id);
                        self.ready.push_back(error);
                    }
                },
                (Held::LocalAck(req), None) => {
                    let (c, mut env) = self.coordinator_parts();
                    c.on_write_ack(&mut env, now, me, req, None, None);
                    // Its `Written`, if any, leaves in order with what was released.
                    self.admit_pending();
                }
                (Held::LocalAck(req), Some(reason)) => {
                    let (c, mut env) = self.coordinator_parts();
                    c.on_local_commit_failed(&mut env, now, req, reason)
                }
            }
        }
        if failed.is_some() {
            self.recover(now);
        }
    }

    /// After a failed commit: the store drops what it could not commit, the Merkle trees
    /// are rebuilt from what it really holds and the node re-syncs with its replicas
    /// (announcing `Syncing`, out of the preference lists) before serving again.
    fn recover(&mut self, now: Millis) {
        if let Err(e) = self.replica.discard_uncommitted() {
            self.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e)));
        }
        self.durability.forget_writes(self.replica.writes());
        if self.membership.begin_resync(now) {
            self.collect_membership();
        }
        self.anti_entropy.resync_soon();
    }

    /// Whether the node was told to join a cluster and has not merged a member's full
    /// view of it yet: it coordinates nothing until it has (alone, every key would have
    /// this node as its only owner; knowing part of the cluster, a key could have owners
    /// the cluster does not count).
    pub fn awaiting_cluster(&self) -> bool {
        self.join_requested && (self.membership.size() <= 1 || !self.membership.heard_full_state())
    }

    /// Joins a cluster through any member's address.
    ///
    /// A node already serving alone (it ticked before being told to join) goes back to
    /// `Syncing`: it must hand its ranges off from the cluster's owners before it serves
    /// them, exactly like a node that joined from the start.
    pub fn join(&mut self, now: Millis, seed_addr: impl Into<String>) {
        self.wall_ms = now;
        self.join_requested = true;
        if self.membership.me().status == crate::membership::Status::Alive
            && self.membership.size() <= 1
        {
            self.membership.begin_join(now);
            self.anti_entropy.resync_soon();
        }
        self.membership.join(now, seed_addr.into());
        self.collect_membership();
    }

    /// The next output that may leave now, if any: outputs that wait for a commit are
    /// held back until it ends (see [`durability`]).
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = loop {
            if let Some(out) = self.ready.pop_front() {
                break out;
            }
            let out = self.outputs.pop_front()?;
            if self.replica.store().durable_on_write() {
                break out;
            }
            if let Some(out) = self.durability.admit(self.replica.writes(), out) {
                break out;
            }
        };
        if let Output::Reply { client: moves::INTERNAL_CLIENT, resp } = out {
            // The answer to a request this node made of itself.
            self.moves.on_internal_reply(resp);
            return self.poll_output();
        }
        Some(self.stamp_reply(out))
    }

    /// Every answer carries the clock as it leaves ([`ClientResponse::ts`]): at or above
    /// every write it acknowledges and every entry it shows, since both went through
    /// the clock.
    fn stamp_reply(&self, mut out: Output) -> Output {
        if let Output::Reply { resp, .. } = &mut out {
            let last = self.clock.last();
            if resp.ts.is_none() && last > crate::clock::Timestamp::ZERO {
                resp.ts = Some(last);
            }
        }
        out
    }

    /// For the simulator only: lets sync session ends (`Done`, empty steps) leave at once
    /// instead of waiting for the commit of what the session merged — the rule before
    /// they were held — so that a schedule can show it loses hand-offs.
    #[cfg(feature = "sim")]
    pub fn release_session_ends_at_once(&mut self, at_once: bool) {
        self.durability.session_ends_at_once = at_once;
    }

    /// When [`Node::tick`] next has work.
    pub fn next_deadline(&self) -> Option<Millis> {
        [
            self.membership.next_deadline(),
            self.coordinator.next_deadline(),
            self.scans.next_deadline(),
            self.hints.next_deadline(),
            self.anti_entropy.next_deadline(),
            self.sessions.next_deadline(),
            self.gc.next_deadline(),
            self.watch.next_deadline(),
            self.migration.next_deadline(),
            self.leave.next_deadline(),
            self.removals.next_deadline(),
            self.moves.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fires due timers: membership probes and gossip, request timeouts, hints,
    /// anti-entropy and hand-off rounds, the tombstone collector, migration decisions.
    pub fn tick(&mut self, now: Millis) {
        self.wall_ms = now;
        self.membership.tick(now);
        self.assess_clock(now);
        self.collect_membership();
        self.tick_leave(now);
        self.tick_removal(now);
        self.expire_requests(now);
        self.scans.expire(now);
        self.collect_scans();
        self.deliver_hints(now);
        self.check_staleness(now);
        self.tick_sync(now);
        self.tick_gc(now);
        self.tick_watches(now);
        self.tick_migration(now);
        self.tick_moves(now);
        self.refresh_catalogue();
    }

    /// Anti-entropy state and counters.
    pub fn anti_entropy(&self) -> &AntiEntropy {
        &self.anti_entropy
    }

    /// The client requests this node coordinates: how many, their bytes, refusals.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Hints waiting for other nodes.
    pub fn hints(&self) -> &Hints {
        &self.hints
    }

    /// Takes back the hints a previous run of this node saved (see [`hints`]); hints
    /// for this node itself are dropped.
    pub fn restore_hints(&mut self, now: Millis, saved: Vec<(NodeId, hints::Hint)>) {
        let me = self.id();
        self.hints.restore(now, saved.into_iter().filter(|(t, _)| *t != me).collect());
    }

    fn deliver_hints(&mut self, now: Millis) {
        let membership = &self.membership;
        let ids = &mut self.ids;
        let due = self.hints.due(
            now,
            self.config.tombstone_grace_ms / 2,
            |id| membership.is_alive(id),
            || ids.next(ids::Concern::Hints),
        );
        for (target, req, collection, records) in due {
            self.send(target, Message::Replica(ReplicaMessage::Write { req, collection, records }));
        }
    }

    /// Reads what handling `reqs` will read first of the local replica — each key's
    /// index slot, record and Merkle node ([`Replica::warm_index`], [`Replica::warm_record`]) — before they are handled
    /// one by one: independent reads whose cache misses overlap, where the requests
    /// alone would wait for each in turn. Returns something of what it read, for
    /// [`std::hint::black_box`]; handling is the same without it.
    pub fn warm<'a>(&self, reqs: &'a [ClientRequest]) -> u64 {
        use crate::proto::client::Op;
        let mut sum = 0u64;
        // Every key's index slot and Merkle node, then every record: each pass's reads
        // are independent of one another.
        let mut found: Vec<(&str, crate::hash::Position)> = Vec::with_capacity(reqs.len());
        let mut one = |collection: &'a str, key: &[u8], write: bool| {
            let (pos, read) = self.replica.warm_index(collection, key, write);
            sum = sum.wrapping_add(read);
            found.push((collection, pos));
        };
        for req in reqs {
            match &req.op {
                Op::Get { collection, key, .. } => one(collection, key, false),
                Op::Set { collection, key, .. } | Op::Del { collection, key, .. } => {
                    one(collection, key, true)
                }
                Op::GetMany { collection, keys, .. } => {
                    keys.iter().for_each(|k| one(collection, k, false));
                }
                Op::SetMany { collection, items, .. } => {
                    items.iter().for_each(|(k, _)| one(collection, k, true));
                }
                _ => {}
            }
        }
        for (collection, pos) in found {
            sum = sum.wrapping_add(self.replica.warm_record(collection, pos));
        }
        sum
    }

    /// Handles a client's request.
    pub fn handle_client(&mut self, now: Millis, client: ClientId, req: ClientRequest) {
        self.wall_ms = now;
        requests::dispatch(self, now, client, req);
        self.refresh_catalogue();
        self.pump_watches(now);
    }

    /// Handles a message from node `from`. Requests from nodes that are not current
    /// members of this node's view are ignored (see [`guard`]).
    pub fn handle_peer(&mut self, now: Millis, from: NodeId, msg: Message) {
        self.wall_ms = now;
        if !self.admits(from, &msg) {
            return;
        }
        match msg {
            Message::Gossip(m) => {
                if self.clocks.receive(&mut self.clock, now, from, &m) {
                    self.assess_clock(now);
                }
                self.membership.handle(now, from, m);
                self.collect_membership();
            }
            Message::Replica(m) => self.handle_replica(now, from, m),
            Message::Sync(m) => self.handle_sync(now, from, m),
            Message::Watch(m) => self.handle_watch(now, from, m),
            // Client frames over a peer link are not part of the node protocol; a peer
            // sending them is ignored.
            Message::Request(_) | Message::Response(_) => {}
        }
        self.refresh_catalogue();
        self.pump_watches(now);
    }

    fn handle_replica(&mut self, now: Millis, from: NodeId, msg: ReplicaMessage) {
        match msg {
            ReplicaMessage::Write { req, collection, records } => {
                let written: Vec<_> =
                    records.iter().map(|(k, e)| (k.clone(), e.version())).collect();
                let (error, newer) = match self.apply_remote(now, &collection, records) {
                    Ok(outcomes) => coordinator::restamp::answer(
                        &self.replica,
                        &mut self.outputs,
                        &collection,
                        &written,
                        &outcomes,
                    ),
                    Err(e) => (Some(e), None),
                };
                let ack = ReplicaMessage::WriteAck { req, error, newer };
                self.send(from, Message::Replica(ack));
            }
            ReplicaMessage::Repair { collection, records } => {
                // Best effort: a refused repair is retried by the next read or sync.
                let _ = self.apply_remote(now, &collection, records);
            }
            ReplicaMessage::Read { req, collection, keys } => {
                let entries: Result<Vec<_>, _> =
                    keys.iter().map(|k| self.replica.get(&collection, k)).collect();
                let msg = match entries {
                    Ok(entries) => {
                        let changing = self.membership.me().changing();
                        ReplicaMessage::ReadReply { req, entries, changing }
                    }
                    Err(e) => {
                        self.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e.clone())));
                        ReplicaMessage::ReadFailed { req, error: e.to_string() }
                    }
                };
                self.send(from, Message::Replica(msg));
            }
            ReplicaMessage::ReadVersions { req, collection, keys } => {
                let versions: Result<Vec<_>, _> =
                    keys.iter().map(|k| self.replica.version(&collection, k)).collect();
                let msg = match versions {
                    Ok(versions) => {
                        let changing = self.membership.me().changing();
                        ReplicaMessage::VersionsReply { req, versions, changing }
                    }
                    Err(e) => {
                        self.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e.clone())));
                        ReplicaMessage::ReadFailed { req, error: e.to_string() }
                    }
                };
                self.send(from, Message::Replica(msg));
            }
            ReplicaMessage::WriteAck { req, error, newer } => match ids::Concern::of(req) {
                // A hint delivery (one the replica already holds something newer than
                // counts as delivered too).
                Some(ids::Concern::Hints) => {
                    self.hints.acknowledge(req, error.is_none());
                }
                _ => {
                    let (c, mut env) = self.coordinator_parts();
                    c.on_write_ack(&mut env, now, from, req, error, newer)
                }
            },
            ReplicaMessage::ReadReply { req, entries, changing } => {
                let (c, mut env) = self.coordinator_parts();
                c.on_read_reply(&mut env, now, from, req, entries, changing)
            }
            ReplicaMessage::VersionsReply { req, versions, changing } => {
                let (c, mut env) = self.coordinator_parts();
                c.on_versions_reply(&mut env, now, from, req, versions, changing)
            }
            ReplicaMessage::ReadFailed { req, error } => {
                let (c, mut env) = self.coordinator_parts();
                c.on_read_failed(&mut env, now, from, req, error)
            }
            ReplicaMessage::RangeFailed { req, error } => {
                self.scans.on_failed(from, req, error);
                self.collect_scans();
            }
            ReplicaMessage::ListCollections { req } => match self.replica.store().collections() {
                Ok(names) => {
                    self.send(from, Message::Replica(ReplicaMessage::CollectionList { req, names }))
                }
                // Never "no collections": the asker's hand-off round resends, then fails
                // and is retried, rather than concluding there is nothing to copy.
                Err(e) => self.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e))),
            },
            ReplicaMessage::CollectionList { req, names } => {
                self.on_collection_list(now, from, req, names)
            }
            ReplicaMessage::RangeRead { req, collection, interval, after, limit } => {
                let changing = self.membership.me().changing();
                let served =
                    scan::serve(&self.replica, changing, req, &collection, interval, after, limit);
                if let Some((answer, failed)) = served {
                    if let Some(e) = failed {
                        self.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e)));
                    }
                    self.send(from, Message::Replica(answer));
                }
            }
            ReplicaMessage::RangeReply { req, records, more, changing } => {
                let (scans, mut env) = self.scan_parts();
                scans.on_reply(&mut env, now, from, req, records, more, changing);
                self.collect_scans();
            }
            ReplicaMessage::LoadQuery { req } => self.on_load_query(now, from, req),
            ReplicaMessage::LoadReply { req, entries } => {
                self.on_load_reply(now, from, req, entries)
            }
            ReplicaMessage::MoveQuery { req, collection, at } => {
                self.on_move_query(now, from, req, collection, at)
            }
            ReplicaMessage::MoveState { req, knows, view, pulled } => {
                self.moves.on_state(from, req, knows, view, pulled)
            }
            ReplicaMessage::RemovalHandOff { req, member } => {
                let (r, env) = self.removal_parts();
                r.on_hand_off(&env, from, req, member);
                self.collect_removals(now);
            }
            ReplicaMessage::RemovalHandedOff { req, member, ok } => {
                let (r, env) = self.removal_parts();
                r.on_handed_off(&env, from, req, member, ok);
                self.collect_removals(now);
            }
        }
    }

    /// Merges entries stamped elsewhere, after [`Node::entry_limits`] checked every one
    /// of them; their timestamps are then adopted into the clock. Nothing is applied
    /// when any record is refused.
    fn apply_remote(
        &mut self,
        now: Millis,
        collection: &str,
        records: Vec<(Bytes, Entry)>,
    ) -> Result<Vec<crate::store::Merged>, String> {
        let limits = self.entry_limits(now);
        if let Err(e) = limits.check_all(collection, records.iter().map(|(k, e)| (&k[..], e))) {
            self.peer_stats.refused_entries += records.len() as u64;
            return Err(e.to_string());
        }
        if let Some(newest) = records.iter().map(|(_, e)| e.ts).max() {
            // Checked above, so adopting cannot fail.
            let _ = self.clock.update(newest, now);
        }
        self.replica.merge_batch(collection, records).map_err(|e| {
            self.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e.clone())));
            e.to_string()
        })
    }

    /// Recomputes whether this node's clock is off from its peers' and reports a change.
    fn assess_clock(&mut self, now: Millis) {
        let max = self.clock.max_offset_ms();
        let membership = &self.membership;
        let live = |id: NodeId| {
            id != membership.me().id
                && membership
                    .member(id)
                    .is_some_and(|m| matches!(m.status, Status::Alive | Status::Syncing))
        };
        match self.clocks.assess(now, max, live) {
            Some(Some(skew)) => self.outputs.push_back(Output::Event(NodeEvent::ClockSkewed(skew))),
            Some(None) => {
                let offset_ms = self.clocks.offset_ms();
                self.outputs.push_back(Output::Event(NodeEvent::ClockRecovered { offset_ms }))
            }
            None => {}
        }
    }

    /// The largest timestamp this node's hybrid clock issued or adopted.
    pub fn clock_last(&self) -> crate::clock::Timestamp {
        self.clock.last()
    }

    /// This node's clock bookkeeping: offsets of its peers, whether its own is off.
    pub fn clocks(&self) -> &skew::ClockWatch {
        &self.clocks
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        let addr = self.addr_of(to);
        self.outputs.push_back(Output::Send { to, addr, msg });
    }

    /// Where member `to` listens, as this node's view has it (empty when unknown).
    fn addr_of(&self, to: NodeId) -> String {
        self.membership.member(to).map(|m| m.addr.clone()).unwrap_or_default()
    }

    /// Moves membership outputs to the node's, and rebuilds the token table when the
    /// view changed.
    fn collect_membership(&mut self) {
        while let Some(o) = self.membership.poll_output() {
            let out = match o {
                MembershipOutput::Send { to, addr, mut msg } => {
                    self.clocks.stamp(&mut self.clock, self.wall_ms, Some(to), &mut msg);
                    Output::Send { to, addr, msg: Message::Gossip(msg) }
                }
                MembershipOutput::SendAddr { addr, mut msg } => {
                    self.clocks.stamp(&mut self.clock, self.wall_ms, None, &mut msg);
                    Output::SendAddr { addr, msg: Message::Gossip(msg) }
                }
                MembershipOutput::Event(e) => {
                    if e == MembershipEvent::MustResync {
                        // Re-sync before serving again: a round starts at the next tick.
                        self.anti_entropy.resync_soon();
                    }
                    if let MembershipEvent::StatusChanged { id, from, to } = e {
                        // A member that sat suspected may have missed writes (and this
                        // node some of its): compare soon, not a period from now.
                        if from == Status::Suspect && to == Status::Alive && id != self.id() {
                            let period = self.config.sync_interval_ms;
                            self.anti_entropy.soon(&mut self.rng, period, self.wall_ms);
                        }
                    }
                    Output::Event(NodeEvent::Membership(e))
                }
            };
            self.outputs.push_back(out);
        }
        let incarnation = self.membership.incarnation();
        if self.state.incarnation.unwrap_or(0) < incarnation {
            self.state.incarnation = Some(incarnation);
            self.outputs.push_back(Output::Persist(self.state.clone()));
        }
        self.refresh_table();
    }

    fn refresh_table(&mut self) {
        self.view.refresh(&self.membership);
    }
}
