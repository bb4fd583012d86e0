//! What the server counts, and the Prometheus text of `/metrics`.
//!
//! The node itself reports its state ([`NodeStats`], [`RingMember`]); the server adds
//! what only the host sees — requests by kind, errors, connections, peer frames,
//! commits — as lock-free counters shared by every task. [`Snapshot`] is both, taken
//! on the node thread; [`Snapshot::prometheus`] renders it for scraping.

use dhrt_core::{
    node::NodeEvent,
    proto::client::{NodeStats, Op, Reply, RingMember},
    store::CollectionStats,
};
use serde::Serialize;
use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering},
};

/// Request kinds counted separately.
pub const OPS: [&str; 12] = [
    "get", "set", "del", "get_many", "set_many", "scan", "watch", "unwatch", "sync", "stats",
    "ring", "token",
];

/// Counters the server keeps beside the node.
#[derive(Debug, Default)]
pub struct Counters {
    ops: [AtomicU64; OPS.len()],
    /// Replies that were errors.
    pub errors: AtomicU64,
    /// Client connections open now.
    pub clients: AtomicU64,
    /// Frames received from peers.
    pub peer_frames_in: AtomicU64,
    /// Frames sent to peers.
    pub peer_frames_out: AtomicU64,
    /// Frames to peers dropped (queue or byte budget full, or peer unreachable).
    pub peer_frames_dropped: AtomicU64,
    /// Bytes of frames queued for peers, not yet handed to their sockets (kept live by
    /// [`super::peer_budget`]).
    pub peer_queued_bytes: AtomicU64,
    /// Frames from clients or peers refused as malformed, oversized or of another version.
    pub bad_frames: AtomicU64,
    /// Peer handshakes that failed on a proof, a refusal or a protocol error, either
    /// side (a peer without the cluster secret, or with another one).
    pub peer_handshakes_refused: AtomicU64,
    /// Group commits that failed.
    pub commit_failures: AtomicU64,
    /// Read repairs done.
    pub read_repairs: AtomicU64,
    /// Writes the store refused.
    pub store_failures: AtomicU64,
    /// Connections open on the port now (clients, peers, HTTP).
    pub connections: AtomicU64,
    /// Connections closed at once because the node was at its connection cap.
    pub connections_refused: AtomicU64,
    /// Clients disconnected because they left too many answers unread.
    pub slow_clients_disconnected: AtomicU64,
    /// Watches ended because their connection lagged.
    pub watches_lagged: AtomicU64,
    /// Bytes of answers queued for connections, unsent (set when a snapshot is taken).
    pub output_queued_bytes: AtomicU64,
    /// Bytes of the inbox budget in use (set when a snapshot is taken).
    pub inbox_bytes: AtomicU64,
    /// Bytes of the budget of messages being read in use (set when a snapshot is
    /// taken).
    pub read_bytes: AtomicU64,
}

impl Counters {
    /// Counts a client request.
    pub fn count_op(&self, op: &Op) {
        let i = match op {
            Op::Get { .. } => 0,
            Op::Set { .. } => 1,
            Op::Del { .. } => 2,
            Op::GetMany { .. } => 3,
            Op::SetMany { .. } => 4,
            Op::Scan { .. } => 5,
            Op::Watch { .. } => 6,
            Op::Unwatch { .. } => 7,
            Op::Sync { .. } => 8,
            Op::Stats => 9,
            Op::Ring => 10,
            Op::Auth { .. }
            | Op::TokenCreate { .. }
            | Op::TokenList
            | Op::TokenRevoke { .. }
            | Op::RemoveMember { .. }
            | Op::CollectionCreate { .. }
            | Op::CollectionAlter { .. }
            | Op::CollectionShow { .. }
            | Op::CollectionList
            | Op::CollectionDrop { .. } => 11,
        };
        self.ops[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reply.
    pub fn count_reply(&self, reply: &Reply) {
        if matches!(reply, Reply::Error { .. }) {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a node event.
    pub fn count_event(&self, event: &NodeEvent) {
        match event {
            NodeEvent::ReadRepaired { .. } => {
                self.read_repairs.fetch_add(1, Ordering::Relaxed);
            }
            NodeEvent::StoreFailed(_) => {
                self.store_failures.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Requests of each kind so far.
    pub fn ops(&self) -> Vec<(&'static str, u64)> {
        OPS.iter().zip(&self.ops).map(|(n, c)| (*n, c.load(Ordering::Relaxed))).collect()
    }
}

/// One collection's counts.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionInfo {
    /// The collection.
    pub name: String,
    /// Entries, tombstones included.
    pub entries: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// Approximate bytes.
    pub bytes: u64,
}

impl CollectionInfo {
    /// From a store's stats.
    pub fn new(name: String, s: CollectionStats) -> Self {
        CollectionInfo { name, entries: s.entries, tombstones: s.tombstones, bytes: s.bytes }
    }
}

/// The node's state and the server's counters at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Where this node is reached.
    pub addr: String,
    /// The node's own report.
    pub stats: NodeStats,
    /// Every member it knows.
    pub ring: Vec<RingMember>,
    /// Its collections.
    pub collections: Vec<CollectionInfo>,
    /// Requests by kind.
    pub ops: Vec<(&'static str, u64)>,
    /// Server counters: (name, value, help).
    pub server: Vec<(&'static str, u64, &'static str)>,
    /// What the node refused from its peers (docs/security.md).
    pub peer: dhrt_core::node::guard::PeerStats,
    /// The share of the ring (0 to 1) the node replicates: what its copy of a
    /// collection is scaled by to estimate the whole.
    pub ring_share: f64,
    /// How many replicas keep each key.
    pub replicas: usize,
    /// The collections with a layout of their own, by name.
    pub layouts: std::collections::BTreeMap<String, CollectionLayout>,
}

/// A collection's layout as the node uses it.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionLayout {
    /// The layout in use and the move under way.
    pub state: dhrt_core::catalogue::LayoutState,
    /// Replicas of each key under the layout in use.
    pub replicas: usize,
    /// The share of the ring (0 to 1) the node replicates of the collection.
    pub share: f64,
}

impl Snapshot {
    /// Adds the server's counters.
    pub fn with_counters(mut self, c: &Counters) -> Self {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.ops = c.ops();
        let peer = self.peer;
        let mut node_side = std::mem::take(&mut self.server);
        self.server = vec![
            (
                "dhrt_peer_entries_refused_total",
                peer.refused_entries,
                "Entries from peers refused: clock too far ahead, bad name, key, size or expiry.",
            ),
            (
                "dhrt_peer_requests_refused_total",
                peer.refused_requests,
                "Peer requests ignored: the sender is not a current member that is up.",
            ),
            (
                "dhrt_peer_sessions_refused_total",
                peer.refused_sessions,
                "Sync sessions refused: the sender may not push the interval.",
            ),
            ("dhrt_request_errors_total", load(&c.errors), "Replies that were errors."),
            ("dhrt_clients", load(&c.clients), "Client connections open."),
            ("dhrt_peer_frames_in_total", load(&c.peer_frames_in), "Frames received from peers."),
            ("dhrt_peer_frames_out_total", load(&c.peer_frames_out), "Frames sent to peers."),
            (
                "dhrt_peer_frames_dropped_total",
                load(&c.peer_frames_dropped),
                "Frames to peers dropped: queue or byte budget full, or peer unreachable.",
            ),
            (
                "dhrt_peer_queued_bytes",
                load(&c.peer_queued_bytes),
                "Bytes of frames queued for peers, not yet sent (estimated).",
            ),
            ("dhrt_bad_frames_total", load(&c.bad_frames), "Frames refused as malformed."),
            (
                "dhrt_cpu_microseconds_total",
                crate::cpu::process_cpu_time().as_micros() as u64,
                "CPU time the node's process used, all threads, in microseconds.",
            ),
            (
                "dhrt_peer_handshakes_refused_total",
                load(&c.peer_handshakes_refused),
                "Peer links refused: no or another cluster secret, or a broken handshake.",
            ),
            ("dhrt_commit_failures_total", load(&c.commit_failures), "Group commits that failed."),
            ("dhrt_read_repairs_total", load(&c.read_repairs), "Stale replicas repaired."),
            ("dhrt_store_failures_total", load(&c.store_failures), "Writes the store refused."),
            ("dhrt_connections", load(&c.connections), "Connections open on the port."),
            (
                "dhrt_connections_refused_total",
                load(&c.connections_refused),
                "Connections closed at once: the node was at its connection cap.",
            ),
            (
                "dhrt_slow_clients_disconnected_total",
                load(&c.slow_clients_disconnected),
                "Clients disconnected for leaving more answers unread than the output limit.",
            ),
            (
                "dhrt_watches_lagged_total",
                load(&c.watches_lagged),
                "Watches ended because their connection read too slowly.",
            ),
            (
                "dhrt_output_queued_bytes",
                load(&c.output_queued_bytes),
                "Bytes of answers queued for connections, not yet sent.",
            ),
            (
                "dhrt_inbox_bytes",
                load(&c.inbox_bytes),
                "Bytes of requests and peer frames read but not yet taken by the node thread.",
            ),
            (
                "dhrt_read_bytes",
                load(&c.read_bytes),
                "Bytes of the shared budget held by connections in the middle of a large \
                 message (read-mb).",
            ),
        ];
        self.server.append(&mut node_side);
        self
    }

    /// The Prometheus text exposition of the snapshot.
    pub fn prometheus(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        gauge("dhrt_keys", "Stored entries, tombstones included.", "gauge", s.keys);
        gauge("dhrt_tombstones", "Stored tombstones.", "gauge", s.tombstones);
        gauge("dhrt_bytes", "Approximate bytes stored.", "gauge", s.bytes);
        gauge("dhrt_collections", "Collections held.", "gauge", s.collections);
        let storage = &s.storage;
        gauge(
            "dhrt_storage_full",
            "1 while new data is refused for lack of disk space (deletes and drops still work).",
            "gauge",
            u64::from(storage.full),
        );
        gauge(
            "dhrt_storage_failing",
            "1 while the store is recovering from a storage failure it retries by itself.",
            "gauge",
            u64::from(storage.error.is_some()),
        );
        if let Some(free) = storage.free_bytes {
            gauge("dhrt_storage_free_bytes", "Bytes free on the data dir's disk.", "gauge", free);
        }
        gauge("dhrt_hints_pending", "Hints held for down replicas.", "gauge", s.hints_pending);
        gauge("dhrt_hints_delivered_total", "Hints delivered.", "counter", s.hints_delivered);
        gauge("dhrt_tombstones_purged_total", "Tombstones purged.", "counter", s.tombstones_purged);
        gauge("dhrt_expired_total", "Expired values turned tombstones.", "counter", s.expired);
        gauge("dhrt_sync_running", "Anti-entropy sessions running.", "gauge", s.sync.running);
        gauge("dhrt_sync_completed_total", "Sync sessions completed.", "counter", s.sync.completed);
        gauge("dhrt_sync_failed_total", "Sync sessions failed.", "counter", s.sync.failed);
        gauge(
            "dhrt_sync_entries_received_total",
            "Entries received by anti-entropy.",
            "counter",
            s.sync.entries_received,
        );
        gauge("dhrt_cleaned_total", "Entries dropped after hand-off.", "counter", s.sync.cleaned);
        gauge(
            "dhrt_last_full_sync_ms",
            "Start of the last fully successful sync round (unix ms, 0 if none).",
            "gauge",
            s.sync.last_full_sync_ms.unwrap_or(0),
        );
        gauge(
            "dhrt_clock_skewed",
            "1 while this node's clock is off from its peers' by more than the max offset \
             (it does not coordinate writes; check NTP).",
            "gauge",
            u64::from(s.clock.skewed.is_some()),
        );
        gauge(
            "dhrt_clock_ahead_ignored_total",
            "Peer timestamps the hybrid clock ignored for being too far ahead.",
            "counter",
            s.clock.ahead_ignored,
        );
        let handoff = s.sync.handoff.map_or((0, 0), |p| (p.done, p.total));
        gauge("dhrt_handoff_done", "Hand-off sessions done (while syncing).", "gauge", handoff.0);
        gauge("dhrt_handoff_total", "Hand-off sessions planned.", "gauge", handoff.1);
        for (name, value, help) in &self.server {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            gauge(name, help, kind, *value);
        }
        if let Some(offset) = s.clock.offset_ms {
            // Signed: written directly rather than through the unsigned helper.
            let _ = writeln!(
                out,
                "# HELP dhrt_clock_offset_ms This node's estimated clock offset from its \
                 peers' (median of probe round trips; negative: behind).\n# TYPE \
                 dhrt_clock_offset_ms gauge\ndhrt_clock_offset_ms {offset}"
            );
        }
        let _ = writeln!(out, "# HELP dhrt_members Members known, by status.");
        let _ = writeln!(out, "# TYPE dhrt_members gauge");
        let m = &s.members;
        for (status, n) in [
            ("alive", m.alive),
            ("syncing", m.syncing),
            ("suspect", m.suspect),
            ("dead", m.dead),
            ("left", m.left),
        ] {
            let _ = writeln!(out, "dhrt_members{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP dhrt_requests_total Client requests, by kind.");
        let _ = writeln!(out, "# TYPE dhrt_requests_total counter");
        for (op, n) in &self.ops {
            let _ = writeln!(out, "dhrt_requests_total{{op=\"{op}\"}} {n}");
        }
        type Gauge = (&'static str, &'static str, fn(&CollectionInfo) -> u64);
        let per_collection: [Gauge; 3] = [
            ("dhrt_collection_keys", "Entries per collection (tombstones included).", |c| {
                c.entries
            }),
            ("dhrt_collection_tombstones", "Tombstones per collection.", |c| c.tombstones),
            ("dhrt_collection_bytes", "Approximate bytes per collection.", |c| c.bytes),
        ];
        for (name, help, value) in per_collection {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for c in &self.collections {
                let _ = writeln!(out, "{name}{{collection=\"{}\"}} {}", c.name, value(c));
            }
        }
        // The layout each collection uses, and the phase of a move under way (0: none,
        // 1: announced, 2: copying, 3: joint).
        let _ = writeln!(
            out,
            "# HELP dhrt_collection_replicas Replicas of each key under the layout in use.\n\
             # TYPE dhrt_collection_replicas gauge"
        );
        // (The cluster's own collections are kept by every member.)
        for c in self.collections.iter().filter(|c| !dhrt_core::auth::is_reserved(&c.name)) {
            let n = self.layouts.get(&c.name).map_or(self.replicas, |l| l.replicas);
            let _ = writeln!(out, "dhrt_collection_replicas{{collection=\"{}\"}} {n}", c.name);
        }
        let _ = writeln!(
            out,
            "# HELP dhrt_collection_moving The phase of a move to another layout (0 none, 1 \
             announced, 2 copying, 3 joint).\n# TYPE dhrt_collection_moving gauge"
        );
        for (name, l) in &self.layouts {
            let phase = l.state.moving.as_ref().map_or(0, |m| m.phase.number());
            let _ = writeln!(out, "dhrt_collection_moving{{collection=\"{name}\"}} {phase}");
        }
        let _ = writeln!(
            out,
            "# HELP dhrt_node_info This node.\n# TYPE dhrt_node_info gauge\ndhrt_node_info{{node=\"{}\",addr=\"{}\",status=\"{}\"}} 1",
            s.node.0, self.addr, s.status
        );
        out
    }
}
