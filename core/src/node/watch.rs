//! Watches: every change applied anywhere in the cluster to a collection (or a key
//! prefix of it), pushed to the client that asked, once, in timestamp order per key.
//!
//! ## Watchers and sources
//!
//! A client's [`Op::Watch`] lives on the node that received it, the *watcher*. A node's
//! replica holds only the keys it replicates, so the watcher subscribes at every other
//! member, each a *source* ([`WatchMessage::Subscribe`]); its own replica is a source
//! too, read directly. Every source turns its replica's change feed on
//! ([`crate::replica::Replica::set_change_feed`]) while it has subscriptions: that feed
//! sees every entry a merge applied — client writes, replica writes, read repair, hints,
//! sync — so nothing that changes a replica escapes it.
//!
//! ## Reliable batches
//!
//! A source keeps, per subscription, a *feed*: the matching changes in batches numbered
//! `1, 2, …` within an *epoch* (the source's clock when it opened the feed). Every batch
//! is sent at once and kept until the watcher acknowledges it; the watcher accepts only
//! the next batch in sequence and acknowledges cumulatively ([`WatchMessage::ChangesAck`]);
//! a source re-sends its oldest unacknowledged batches (go-back-N) when no acknowledgement
//! came for `retransmit_ms`, backing off to `max_retransmit_ms`. So lost, duplicated and
//! reordered messages still deliver every batch exactly once, in order. A new feed opens
//! with a batch that may be empty: it confirms the subscription to the watcher, which
//! otherwise repeats its `Subscribe` every `retry_ms` (and, once confirmed, every
//! `refresh_ms`, so a source that restarted and forgot the feed opens a new epoch).
//!
//! ## Once per subscriber, in timestamp order per key
//!
//! Each replica of a key reports the same change. The watcher remembers, per watch, the
//! version ([`crate::entry::Version`]) it last emitted for each key and emits an
//! [`Reply::Event`] only for a strictly newer one. Events of a key are therefore in
//! timestamp order and never repeat; a change that reaches the watcher only after a newer
//! change of the same key was emitted is not emitted (it would go back in time — the
//! subscriber already holds what it would have led to). The memory is bounded by
//! `max_keys` per watch: past it the keys emitted longest ago are forgotten, and a late
//! report of an already-emitted change of a forgotten key (a replica catching up after a
//! long partition) is emitted again — harmless to a subscriber that applies events by
//! last-writer-wins, as a local replica does. Tombstones, and entries already expired
//! when emitted, are events with no value.
//!
//! ## When a watch cannot keep its promise
//!
//! A source buffers at most `buffer_max_bytes` of unacknowledged changes per
//! subscription. When a watcher falls further behind, the source drops the buffer and
//! sends a *lagged* batch instead; so does a source that stopped a subscription (it
//! declared the watcher dead) while still running when the watcher asks to resume it.
//! The watcher then ends the watch with an [`ErrorCode::Unavailable`] error carrying the
//! watch's id. The client re-syncs its copy ([`Op::Sync`]) and watches again. A source
//! that *restarts* loses its feeds without such a notice: its changes in between reach
//! the watch through the other replicas of each key, which applied them too.
//!
//! ## Client sync
//!
//! [`Op::Sync`] runs the Merkle sync protocol between a client's local copy and this
//! node's replica, client initiating. The node's side is push-only
//! ([`SyncConfig::push_only`]): it never merges an entry a client sends. Only intervals
//! this node replicates are served, and only while it is serving (not re-syncing).
//!
//! Everything here is bounded: watches and client sessions per node, feeds per node,
//! bytes per batch and per buffer, keys remembered per watch.

use super::{ClientId, Node, Output};
use crate::{
    clock::Timestamp,
    entry::{Entry, NodeId, Version},
    hash::Interval,
    membership::Status,
    proto::{
        client::{ErrorCode, Op, Reply},
        watch::Subscription,
        ClientResponse, Message, SyncBody, SyncMessage, WatchMessage,
    },
    replica::Change,
    ring::RingTable,
    store::Store,
    sync::{SyncConfig, SyncError, SyncSession},
    Millis,
};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// Tunables of watches and client sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// A source re-sends unacknowledged batches after this long without an
    /// acknowledgement.
    pub retransmit_ms: Millis,
    /// The longest wait between re-sends (the back-off doubles up to it).
    pub max_retransmit_ms: Millis,
    /// A watcher repeats a `Subscribe` a source has not confirmed this often.
    pub retry_ms: Millis,
    /// A watcher repeats a confirmed `Subscribe` this often (a restarted source forgot).
    pub refresh_ms: Millis,
    /// Largest batch of changes, in approximate bytes (at least one change per batch).
    pub batch_max_bytes: usize,
    /// Most unacknowledged bytes a source keeps for one subscription before it tells
    /// the watcher it lagged.
    pub buffer_max_bytes: usize,
    /// Keys whose last emitted version a watch remembers.
    pub max_keys: usize,
    /// Most watches a node holds for its clients.
    pub max_watches: usize,
    /// Most subscriptions a node serves as a source.
    pub max_feeds: usize,
    /// Most client sync sessions open on a node.
    pub max_client_syncs: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            retransmit_ms: 500,
            max_retransmit_ms: 8_000,
            retry_ms: 1_000,
            refresh_ms: 10_000,
            batch_max_bytes: 64 * 1024,
            buffer_max_bytes: 8 * 1024 * 1024,
            max_keys: 100_000,
            max_watches: 10_000,
            max_feeds: 100_000,
            max_client_syncs: 64,
        }
    }
}

/// Counters of what watches did on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchStats {
    /// Events sent to clients.
    pub events: u64,
    /// Changes reported for a key whose newer or equal version was already emitted.
    pub suppressed: u64,
    /// Batches sent by this node as a source (first sends).
    pub batches_sent: u64,
    /// Batches sent again after no acknowledgement came.
    pub batches_resent: u64,
    /// Batches received out of sequence or twice (discarded, acknowledged).
    pub batches_discarded: u64,
    /// Watches ended because a source dropped changes.
    pub lagged: u64,
}

/// The watch state of a node: its clients' watches, the feeds it serves other nodes'
/// watches from, and its clients' sync sessions.
#[derive(Debug, Default)]
pub struct Watches {
    watches: BTreeMap<u64, LocalWatch>,
    by_client: BTreeMap<(ClientId, u64), u64>,
    feeds: BTreeMap<(NodeId, u64), Feed>,
    /// The clock when this node opened its first feed: epochs from before are from an
    /// earlier run of the node.
    booted: Option<Timestamp>,
    syncs: BTreeMap<(ClientId, u64), (SyncSession, Millis)>,
    seen_view: Option<u64>,
    deadline: Option<Millis>,
    stats: WatchStats,
}

impl Watches {
    /// Watches this node holds for its clients.
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }

    /// Subscriptions this node serves as a source.
    pub fn feed_count(&self) -> usize {
        self.feeds.len()
    }

    /// Client sync sessions open.
    pub fn client_syncs(&self) -> usize {
        self.syncs.len()
    }

    /// Counters.
    pub fn stats(&self) -> WatchStats {
        self.stats
    }

    /// When [`Node::tick`] next has watch work.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.deadline
    }

    fn active(&self) -> bool {
        !self.watches.is_empty() || !self.feeds.is_empty()
    }
}

/// A client's watch, on its watcher.
#[derive(Debug)]
struct LocalWatch {
    client: ClientId,
    id: u64,
    collection: String,
    prefix: Option<Bytes>,
    sources: BTreeMap<NodeId, Source>,
    /// Until the `Ok` is sent: when it is due at the latest, and the events held back.
    opening: Option<(Millis, Vec<Reply>)>,
    emitted: BTreeMap<Bytes, (Version, u64)>,
    order: BTreeMap<u64, Bytes>,
    next_order: u64,
}

impl LocalWatch {
    fn matches(&self, collection: &str, key: &[u8]) -> bool {
        collection == self.collection && self.prefix.as_ref().is_none_or(|p| key.starts_with(p))
    }

    fn subscription(&self, sub: u64, source: Option<&Source>) -> Subscription {
        Subscription {
            sub,
            collection: self.collection.clone(),
            prefix: self.prefix.clone(),
            resume: source.and_then(|s| s.feed).map(|(epoch, _)| epoch),
        }
    }

    /// Remembers `version` as the last emitted for `key`; false when it is not newer.
    fn admit(&mut self, key: &Bytes, version: Version, max_keys: usize) -> bool {
        if let Some((last, order)) = self.emitted.get(key) {
            if *last >= version {
                return false;
            }
            let order = *order;
            self.order.remove(&order);
        }
        self.next_order += 1;
        self.emitted.insert(key.clone(), (version, self.next_order));
        self.order.insert(self.next_order, key.clone());
        while self.emitted.len() > max_keys.max(1) {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            self.emitted.remove(&oldest);
        }
        true
    }
}

/// What a watcher knows of one source.
#[derive(Debug, Clone, Copy)]
struct Source {
    /// The feed followed: its epoch and the next batch expected. `None` until the
    /// source confirmed the subscription.
    feed: Option<(Timestamp, u64)>,
    /// When to send `Subscribe` next.
    next_subscribe: Millis,
}

/// A subscription served by this node as a source.
#[derive(Debug)]
struct Feed {
    collection: String,
    prefix: Option<Bytes>,
    epoch: Timestamp,
    next_seq: u64,
    unacked: VecDeque<Batch>,
    unacked_bytes: usize,
    retransmit_at: Millis,
    backoff: Millis,
    /// A lagged batch was queued: nothing more is added; removed once it is acknowledged.
    ended: bool,
}

#[derive(Debug, Clone)]
struct Batch {
    seq: u64,
    items: Vec<(Bytes, Entry)>,
    bytes: usize,
    lagged: bool,
}

/// Batches re-sent at once when a feed's timer fires.
const RESEND_WINDOW: usize = 32;
/// Subscriptions per `Subscribe` message.
const SUBSCRIBE_CHUNK: usize = 128;
/// Events held back before a watch's `Ok` at most; past it the `Ok` goes out early.
const MAX_HELD_EVENTS: usize = 10_000;

fn change_size(key: &[u8], e: &Entry) -> usize {
    key.len() + e.size() + 8
}

/// Whether a member in `status` is one a watcher subscribes at.
fn reachable(status: Status) -> bool {
    matches!(status, Status::Alive | Status::Suspect | Status::Syncing)
}

/// The maximal runs of the ring `me` replicates in `table` with `n` replicas.
fn replicated_runs(table: &RingTable, me: NodeId, n: usize) -> Vec<Interval> {
    let v = table.vnodes();
    let len = v.len();
    let flags: Vec<bool> =
        (0..len).map(|i| table.preference_list(v[i].pos, n).contains(&me)).collect();
    if len == 0 || flags.iter().all(|f| *f) {
        return if len == 0 { Vec::new() } else { vec![Interval::full()] };
    }
    let mut runs = Vec::new();
    for j in 0..len {
        let prev = (j + len - 1) % len;
        if !flags[j] || flags[prev] {
            continue;
        }
        let mut k = j;
        while flags[(k + 1) % len] {
            k = (k + 1) % len;
        }
        if v[prev].pos != v[k].pos {
            runs.push(Interval::new(v[prev].pos, v[k].pos));
        }
    }
    runs
}

fn reply_to(client: ClientId, id: u64, result: Reply) -> Output {
    Output::Reply { client, resp: ClientResponse { id, result } }
}

fn error(client: ClientId, id: u64, code: ErrorCode, message: impl Into<String>) -> Output {
    Output::Reply { client, resp: ClientResponse::error(id, code, message) }
}

/// Handles [`Op::Watch`], [`Op::Unwatch`] and [`Op::Sync`] (called by the coordinator).
pub(super) fn start<S: Store>(node: &mut Node<S>, now: Millis, client: ClientId, id: u64, op: Op) {
    match op {
        Op::Watch { collection, prefix } => node.open_watch(now, client, id, collection, prefix),
        Op::Unwatch { watch } => {
            let out = match node.watch.by_client.get(&(client, watch)).copied() {
                Some(sub) => {
                    node.close_watch(sub);
                    reply_to(client, id, Reply::Ok)
                }
                None => error(
                    client,
                    id,
                    ErrorCode::NotFound,
                    format!("no watch with id {watch} is open on this connection"),
                ),
            };
            node.outputs.push_back(out);
        }
        Op::Sync { msg } => node.client_sync(now, client, id, msg),
        _ => {
            let msg = "the request is not a watch or sync request";
            node.outputs.push_back(error(client, id, ErrorCode::Internal, msg));
        }
    }
}

/// Handles a watch message from node `from`.
pub(super) fn handle_peer<S: Store>(
    node: &mut Node<S>,
    now: Millis,
    from: NodeId,
    msg: WatchMessage,
) {
    match msg {
        WatchMessage::Subscribe { subs } => {
            for s in subs {
                node.subscribe(now, from, s);
            }
        }
        WatchMessage::Unsubscribe { subs } => {
            for sub in subs {
                node.watch.feeds.remove(&(from, sub));
            }
        }
        WatchMessage::Changes { sub, epoch, seq, items, lagged } => {
            node.on_changes(now, from, sub, epoch, seq, items, lagged)
        }
        WatchMessage::ChangesAck { sub, epoch, seq } => node.on_ack(now, from, sub, epoch, seq),
    }
}

impl<S: Store> Node<S> {
    /// The watch state: counts and counters.
    pub fn watches(&self) -> &Watches {
        &self.watch
    }

    /// A client connection closed: drops its watches (unsubscribing at every source)
    /// and its sync sessions. Drivers call it for every connection that ends.
    pub fn client_gone(&mut self, now: Millis, client: ClientId) {
        let subs: Vec<u64> =
            self.watch.by_client.range((client, 0)..=(client, u64::MAX)).map(|(_, s)| *s).collect();
        for sub in subs {
            // Nobody is listening for the `Ok` of a watch still opening.
            if let Some(w) = self.watch.watches.get_mut(&sub) {
                w.opening = None;
            }
            self.close_watch(sub);
        }
        let keys: Vec<(ClientId, u64)> =
            self.watch.syncs.range((client, 0)..=(client, u64::MAX)).map(|(k, _)| *k).collect();
        for k in keys {
            self.watch.syncs.remove(&k);
        }
        self.pump_watches(now);
    }

    fn open_watch(
        &mut self,
        now: Millis,
        client: ClientId,
        id: u64,
        collection: String,
        prefix: Option<Bytes>,
    ) {
        if let Err(e) = crate::store::validate_collection(&collection) {
            return self.outputs.push_back(error(
                client,
                id,
                ErrorCode::InvalidInput,
                e.to_string(),
            ));
        }
        if prefix.as_ref().is_some_and(|p| p.len() > crate::store::MAX_KEY_LEN) {
            let msg = format!(
                "a watch prefix can be at most {} bytes (a key's limit)",
                crate::store::MAX_KEY_LEN
            );
            return self.outputs.push_back(error(client, id, ErrorCode::InvalidInput, msg));
        }
        if self.watch.by_client.contains_key(&(client, id)) {
            let msg = format!("a watch with id {id} is already open: use another request id");
            return self.outputs.push_back(error(client, id, ErrorCode::InvalidInput, msg));
        }
        if self.watch.watches.len() >= self.config.watch.max_watches {
            let msg = format!(
                "this node holds the most watches it allows ({}); close some or watch through \
                 another node",
                self.config.watch.max_watches
            );
            return self.outputs.push_back(error(client, id, ErrorCode::Unavailable, msg));
        }
        let mut sub = self.rng.next_u64() ^ self.clock.now(now).0.rotate_left(29);
        while self.watch.watches.contains_key(&sub) {
            sub = self.rng.next_u64();
        }
        let me = self.id();
        let sources: BTreeMap<NodeId, Source> = self
            .membership
            .members()
            .filter(|m| m.id != me && m.status != Status::Left)
            .map(|m| (m.id, Source { feed: None, next_subscribe: now }))
            .collect();
        let prefix = prefix.filter(|p| !p.is_empty());
        let watch = LocalWatch {
            client,
            id,
            collection,
            prefix,
            sources,
            opening: Some((now + self.config.request_timeout_ms, Vec::new())),
            emitted: BTreeMap::new(),
            order: BTreeMap::new(),
            next_order: 0,
        };
        self.watch.watches.insert(sub, watch);
        self.watch.by_client.insert((client, id), sub);
        self.replica.set_change_feed(true);
        self.send_subscribes(now, Some(sub));
        self.check_opened(now, sub);
    }

    /// Sends the `Subscribe`s that are due (of one watch only, when `only` is given).
    fn send_subscribes(&mut self, now: Millis, only: Option<u64>) {
        let retry = self.config.watch.retry_ms.max(1);
        let refresh = self.config.watch.refresh_ms.max(1);
        let mut out: BTreeMap<NodeId, Vec<Subscription>> = BTreeMap::new();
        let membership = &self.membership;
        for (sub, w) in self.watch.watches.iter_mut() {
            if only.is_some_and(|o| o != *sub) {
                continue;
            }
            let targets: Vec<NodeId> = w
                .sources
                .iter()
                .filter(|(id, s)| {
                    s.next_subscribe <= now
                        && membership.member(**id).is_some_and(|m| reachable(m.status))
                })
                .map(|(id, _)| *id)
                .collect();
            for id in targets {
                let s = w.sources.get(&id).copied();
                out.entry(id).or_default().push(w.subscription(*sub, s.as_ref()));
                if let Some(s) = w.sources.get_mut(&id) {
                    s.next_subscribe = now + if s.feed.is_some() { refresh } else { retry };
                }
            }
        }
        for (to, subs) in out {
            for chunk in subs.chunks(SUBSCRIBE_CHUNK) {
                let msg = WatchMessage::Subscribe { subs: chunk.to_vec() };
                self.send(to, Message::Watch(msg));
            }
        }
    }

    /// Sends a watch's `Ok` (and the events held back) once every serving member
    /// confirmed it, or its deadline passed.
    fn check_opened(&mut self, now: Millis, sub: u64) {
        let Some(w) = self.watch.watches.get(&sub) else { return };
        let Some((deadline, held)) = &w.opening else { return };
        let me = self.id();
        let confirmed = self
            .membership
            .members()
            .filter(|m| m.id != me && m.status == Status::Alive)
            .all(|m| w.sources.get(&m.id).is_some_and(|s| s.feed.is_some()));
        if !(confirmed || *deadline <= now || held.len() >= MAX_HELD_EVENTS) {
            return;
        }
        let Some(w) = self.watch.watches.get_mut(&sub) else { return };
        let Some((_, held)) = w.opening.take() else { return };
        let (client, id) = (w.client, w.id);
        self.outputs.push_back(reply_to(client, id, Reply::Ok));
        for r in held {
            self.outputs.push_back(reply_to(client, id, r));
        }
    }

    /// Removes a watch and unsubscribes it everywhere. A watch still opening is
    /// answered first, so that every request gets its answer.
    fn close_watch(&mut self, sub: u64) {
        let Some(w) = self.watch.watches.remove(&sub) else { return };
        self.watch.by_client.remove(&(w.client, w.id));
        if w.opening.is_some() {
            self.outputs.push_back(reply_to(w.client, w.id, Reply::Ok));
        }
        let targets: Vec<NodeId> = w
            .sources
            .keys()
            .copied()
            .filter(|id| self.membership.member(*id).is_some_and(|m| reachable(m.status)))
            .collect();
        for to in targets {
            self.send(to, Message::Watch(WatchMessage::Unsubscribe { subs: vec![sub] }));
        }
    }

    /// Ends a watch that can no longer promise every change.
    fn end_lagged(&mut self, sub: u64) {
        let Some(w) = self.watch.watches.get_mut(&sub) else { return };
        w.opening = None;
        let (client, id) = (w.client, w.id);
        self.close_watch(sub);
        self.watch.stats.lagged += 1;
        let msg = "the watch fell behind: a node dropped changes for it, so it ended; sync your \
                   copy again (sync) and watch again";
        self.outputs.push_back(error(client, id, ErrorCode::Unavailable, msg));
    }

    /// A watcher asks this node for a subscription's changes.
    fn subscribe(&mut self, now: Millis, from: NodeId, s: Subscription) {
        if crate::store::validate_collection(&s.collection).is_err()
            || s.prefix.as_ref().is_some_and(|p| p.len() > crate::store::MAX_KEY_LEN)
        {
            return;
        }
        let key = (from, s.sub);
        if let Some(feed) = self.watch.feeds.get_mut(&key) {
            if feed.collection == s.collection && feed.prefix == s.prefix {
                if s.resume != Some(feed.epoch) {
                    // The watcher has not seen the first batch yet: re-send now.
                    feed.retransmit_at = now;
                }
                return;
            }
            self.watch.feeds.remove(&key);
        }
        if self.watch.feeds.len() >= self.config.watch.max_feeds {
            return; // the watcher retries; its watch answers Ok at its deadline
        }
        let booted = *self.watch.booted.get_or_insert_with(|| self.clock.now(now));
        let epoch = self.clock.now(now);
        // A feed of this run of the node is gone although the watcher follows it: the
        // node stopped it (it declared the watcher dead), so changes were dropped.
        let lagged = s.resume.is_some_and(|e| e >= booted);
        let base = self.config.watch.retransmit_ms.max(1);
        let mut feed = Feed {
            collection: s.collection,
            prefix: s.prefix.filter(|p| !p.is_empty()),
            epoch,
            next_seq: 1,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            retransmit_at: now + base,
            backoff: base,
            ended: lagged,
        };
        let first = Batch { seq: 1, items: Vec::new(), bytes: 0, lagged };
        feed.next_seq = 2;
        feed.unacked.push_back(first.clone());
        self.watch.feeds.insert(key, feed);
        self.replica.set_change_feed(true);
        self.send_batch(from, s.sub, epoch, first);
        self.watch.stats.batches_sent += 1;
    }

    fn send_batch(&mut self, to: NodeId, sub: u64, epoch: Timestamp, b: Batch) {
        let msg =
            WatchMessage::Changes { sub, epoch, seq: b.seq, items: b.items, lagged: b.lagged };
        self.send(to, Message::Watch(msg));
    }

    /// The watcher acknowledged a feed's batches up to `seq`.
    fn on_ack(&mut self, now: Millis, from: NodeId, sub: u64, epoch: Timestamp, seq: u64) {
        let key = (from, sub);
        let Some(feed) = self.watch.feeds.get_mut(&key) else { return };
        if feed.epoch != epoch {
            return;
        }
        let mut progress = false;
        while feed.unacked.front().is_some_and(|b| b.seq <= seq) {
            if let Some(b) = feed.unacked.pop_front() {
                feed.unacked_bytes -= b.bytes;
                progress = true;
            }
        }
        if progress {
            feed.backoff = self.config.watch.retransmit_ms.max(1);
            feed.retransmit_at = now + feed.backoff;
        }
        if feed.ended && feed.unacked.is_empty() {
            self.watch.feeds.remove(&key);
        }
    }

    /// A source sent a batch of a watch's changes.
    #[allow(clippy::too_many_arguments)]
    fn on_changes(
        &mut self,
        now: Millis,
        from: NodeId,
        sub: u64,
        epoch: Timestamp,
        seq: u64,
        items: Vec<(Bytes, Entry)>,
        lagged: bool,
    ) {
        let refresh = self.config.watch.refresh_ms.max(1);
        let Some(w) = self.watch.watches.get_mut(&sub) else {
            // A watch that ended (its Unsubscribe was lost): say so again.
            let msg = WatchMessage::Unsubscribe { subs: vec![sub] };
            return self.send(from, Message::Watch(msg));
        };
        let source =
            w.sources.entry(from).or_insert(Source { feed: None, next_subscribe: now + refresh });
        match source.feed {
            Some((e, _)) if epoch < e => return, // a feed that was replaced
            Some((e, _)) if epoch == e => {}
            _ if seq == 1 || lagged => {
                // The first batch of a new feed (the first, or one a restarted source
                // opened): follow it from here.
                source.feed = Some((epoch, 1));
                source.next_subscribe = now + refresh;
            }
            _ => return, // a newer feed whose first batch has not arrived yet
        }
        let next = source.feed.map_or(1, |(_, n)| n);
        let accepted = !lagged && seq == next;
        if accepted {
            source.feed = Some((epoch, next + 1));
        }
        let acked = if lagged && seq >= next { seq } else { next + u64::from(accepted) - 1 };
        if acked > 0 {
            let msg = WatchMessage::ChangesAck { sub, epoch, seq: acked };
            self.send(from, Message::Watch(msg));
        }
        if lagged && seq >= next {
            return self.end_lagged(sub);
        }
        if !accepted {
            self.watch.stats.batches_discarded += 1;
            return;
        }
        for (key, entry) in items {
            self.emit(now, sub, key, entry);
        }
        self.check_opened(now, sub);
    }

    /// Emits a change to a watch's client when it is newer than the last emitted for
    /// its key.
    fn emit(&mut self, now: Millis, sub: u64, key: Bytes, entry: Entry) {
        let max_keys = self.config.watch.max_keys;
        let Some(w) = self.watch.watches.get_mut(&sub) else { return };
        if !w.prefix.as_ref().is_none_or(|p| key.starts_with(p)) {
            return;
        }
        if !w.admit(&key, entry.version(), max_keys) {
            self.watch.stats.suppressed += 1;
            return;
        }
        self.watch.stats.events += 1;
        let Entry { value, ts, origin, expires } = entry.materialize(now);
        let event =
            Reply::Event { collection: w.collection.clone(), key, value, ts, origin, expires };
        match w.opening.as_mut() {
            Some((_, held)) => held.push(event),
            None => {
                let (client, id) = (w.client, w.id);
                self.outputs.push_back(reply_to(client, id, event));
            }
        }
    }

    /// Routes the changes the replica applied to local watches and to the feeds of
    /// remote ones, and refreshes the watch deadline. Called after every input.
    pub(super) fn pump_watches(&mut self, now: Millis) {
        let changes = self.replica.take_changes();
        if !changes.is_empty() {
            self.route(now, changes);
        }
        self.replica.set_change_feed(self.watch.active());
        self.watch.deadline = self.watch_deadline();
    }

    fn route(&mut self, now: Millis, changes: Vec<Change>) {
        let subs: Vec<u64> = self
            .watch
            .watches
            .iter()
            .filter(|(_, w)| changes.iter().any(|c| w.matches(&c.collection, &c.key)))
            .map(|(s, _)| *s)
            .collect();
        for sub in subs {
            for c in &changes {
                let matches =
                    self.watch.watches.get(&sub).is_some_and(|w| w.matches(&c.collection, &c.key));
                if matches {
                    self.emit(now, sub, c.key.clone(), c.entry.clone());
                }
            }
            self.check_opened(now, sub);
        }
        let max_batch = self.config.watch.batch_max_bytes.max(1);
        let max_buffer = self.config.watch.buffer_max_bytes;
        let mut sends: Vec<(NodeId, u64, Timestamp, Batch)> = Vec::new();
        for ((to, sub), feed) in self.watch.feeds.iter_mut() {
            if feed.ended {
                continue;
            }
            let mut batch = Batch { seq: 0, items: Vec::new(), bytes: 0, lagged: false };
            let mut batches = Vec::new();
            for c in &changes {
                if c.collection != feed.collection
                    || !feed.prefix.as_ref().is_none_or(|p| c.key.starts_with(p))
                {
                    continue;
                }
                let size = change_size(&c.key, &c.entry);
                if batch.bytes + size > max_batch && !batch.items.is_empty() {
                    batches.push(std::mem::replace(
                        &mut batch,
                        Batch { seq: 0, items: Vec::new(), bytes: 0, lagged: false },
                    ));
                }
                batch.bytes += size;
                batch.items.push((c.key.clone(), c.entry.clone()));
            }
            if !batch.items.is_empty() {
                batches.push(batch);
            }
            for mut b in batches {
                // At least one batch is always buffered, so a single large value
                // never counts as falling behind.
                if feed.unacked_bytes > 0 && feed.unacked_bytes + b.bytes > max_buffer {
                    // The watcher is too far behind: drop the buffer, tell it so.
                    feed.unacked.clear();
                    feed.unacked_bytes = 0;
                    feed.ended = true;
                    let lag =
                        Batch { seq: feed.next_seq, items: Vec::new(), bytes: 0, lagged: true };
                    feed.next_seq += 1;
                    feed.unacked.push_back(lag.clone());
                    sends.push((*to, *sub, feed.epoch, lag));
                    break;
                }
                b.seq = feed.next_seq;
                feed.next_seq += 1;
                feed.unacked_bytes += b.bytes;
                if feed.unacked.is_empty() {
                    feed.retransmit_at = now + feed.backoff;
                }
                feed.unacked.push_back(b.clone());
                sends.push((*to, *sub, feed.epoch, b));
            }
        }
        self.watch.stats.batches_sent += sends.len() as u64;
        for (to, sub, epoch, b) in sends {
            self.send_batch(to, sub, epoch, b);
        }
    }

    /// Watch timers: subscriptions to (re)send, watches whose `Ok` is due, batches to
    /// re-send, client sync sessions gone silent; and membership changes: subscribe at
    /// members that appeared, forget those that left, stop feeds of dead watchers.
    pub(super) fn tick_watches(&mut self, now: Millis) {
        if self.watch.active() {
            let view = self.membership.view_digest();
            if self.watch.seen_view != Some(view) {
                self.watch.seen_view = Some(view);
                self.follow_membership(now);
            }
        } else {
            self.watch.seen_view = None;
        }
        self.send_subscribes(now, None);
        let opening: Vec<u64> = self
            .watch
            .watches
            .iter()
            .filter(|(_, w)| w.opening.as_ref().is_some_and(|(d, _)| *d <= now))
            .map(|(s, _)| *s)
            .collect();
        for sub in opening {
            self.check_opened(now, sub);
        }
        self.resend_due(now);
        let timeout = self.config.sync_timeout_ms;
        self.watch.syncs.retain(|_, (_, at)| now.saturating_sub(*at) < timeout);
        self.pump_watches(now);
    }

    fn follow_membership(&mut self, now: Millis) {
        let me = self.id();
        let membership = &self.membership;
        for w in self.watch.watches.values_mut() {
            w.sources
                .retain(|id, _| membership.member(*id).is_some_and(|m| m.status != Status::Left));
            for m in membership.members() {
                if m.id != me && m.status != Status::Left {
                    w.sources.entry(m.id).or_insert(Source { feed: None, next_subscribe: now });
                }
            }
        }
        self.watch.feeds.retain(|(watcher, _), _| {
            !membership
                .member(*watcher)
                .is_some_and(|m| matches!(m.status, Status::Dead | Status::Left))
        });
        let subs: Vec<u64> = self.watch.watches.keys().copied().collect();
        for sub in subs {
            self.check_opened(now, sub);
        }
    }

    fn resend_due(&mut self, now: Millis) {
        let max = self.config.watch.max_retransmit_ms.max(1);
        let mut sends = Vec::new();
        for ((to, sub), feed) in self.watch.feeds.iter_mut() {
            if feed.unacked.is_empty() || feed.retransmit_at > now {
                continue;
            }
            for b in feed.unacked.iter().take(RESEND_WINDOW) {
                sends.push((*to, *sub, feed.epoch, b.clone()));
            }
            feed.backoff = (feed.backoff * 2).min(max);
            feed.retransmit_at = now + feed.backoff;
        }
        self.watch.stats.batches_resent += sends.len() as u64;
        for (to, sub, epoch, b) in sends {
            self.send_batch(to, sub, epoch, b);
        }
    }

    fn watch_deadline(&self) -> Option<Millis> {
        let w = &self.watch;
        let membership = &self.membership;
        let subscribes = w
            .watches
            .values()
            .flat_map(|w| {
                w.sources
                    .iter()
                    .filter(|(id, _)| membership.member(**id).is_some_and(|m| reachable(m.status)))
                    .map(|(_, s)| s.next_subscribe)
            })
            .min();
        let opening = w.watches.values().filter_map(|w| w.opening.as_ref().map(|(d, _)| *d)).min();
        let resend =
            w.feeds.values().filter(|f| !f.unacked.is_empty()).map(|f| f.retransmit_at).min();
        let syncs = w.syncs.values().map(|(_, at)| at + self.config.sync_timeout_ms).min();
        [subscribes, opening, resend, syncs].into_iter().flatten().min()
    }

    /// A client's step of a sync session against this node (push-only on this side).
    fn client_sync(&mut self, now: Millis, client: ClientId, id: u64, msg: SyncMessage) {
        let key = (client, msg.session);
        let out = match msg.body {
            SyncBody::Begin { range, .. } => self.begin_client_sync(now, key, id, range, msg),
            _ => match self.watch.syncs.remove(&key) {
                None => error(
                    client,
                    id,
                    ErrorCode::NotFound,
                    format!(
                        "no sync session {} is open on this connection (it ended or timed out); \
                         start again with Begin",
                        key.1
                    ),
                ),
                Some((mut session, _)) => match session.handle(&mut self.replica, msg) {
                    Ok(Some(reply)) => {
                        if session.is_open() {
                            self.watch.syncs.insert(key, (session, now));
                        }
                        reply_to(client, id, Reply::Sync { msg: reply })
                    }
                    Ok(None) | Err(SyncError::Aborted(_)) => reply_to(client, id, Reply::Ok),
                    Err(e) => error(client, id, ErrorCode::InvalidInput, e.to_string()),
                },
            },
        };
        self.outputs.push_back(out);
    }

    fn begin_client_sync(
        &mut self,
        now: Millis,
        key: (ClientId, u64),
        id: u64,
        range: Interval,
        msg: SyncMessage,
    ) -> Output {
        let client = key.0;
        if self.watch.syncs.contains_key(&key) {
            let msg = format!("sync session {} is already open: pick another session id", key.1);
            return error(client, id, ErrorCode::InvalidInput, msg);
        }
        if self.watch.syncs.len() >= self.config.watch.max_client_syncs {
            let msg = "this node runs the most client sync sessions it allows; retry shortly";
            return error(client, id, ErrorCode::Unavailable, msg);
        }
        if self.membership.me().status != Status::Alive {
            let msg = "this node is not serving (it is joining or re-syncing); sync with another \
                       replica or retry shortly";
            return error(client, id, ErrorCode::Unavailable, msg);
        }
        let runs = replicated_runs(&self.table, self.id(), self.config.replicas.max(1));
        if !runs.iter().any(|r| r.contains_interval(&range)) {
            let msg = format!(
                "this node does not replicate all of {range}: sync each interval between ring \
                 tokens (see ring) with one of its replicas"
            );
            return error(client, id, ErrorCode::InvalidInput, msg);
        }
        match SyncSession::accept(&mut self.replica, msg, SyncConfig::push_only()) {
            Ok((session, reply)) => {
                if session.is_open() {
                    self.watch.syncs.insert(key, (session, now));
                }
                reply_to(client, id, Reply::Sync { msg: reply })
            }
            Err(e) => error(client, id, ErrorCode::InvalidInput, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::tokens_for;

    fn watch() -> LocalWatch {
        LocalWatch {
            client: 1,
            id: 1,
            collection: "c".into(),
            prefix: None,
            sources: BTreeMap::new(),
            opening: None,
            emitted: BTreeMap::new(),
            order: BTreeMap::new(),
            next_order: 0,
        }
    }

    fn version(ts: u64) -> Version {
        Version { ts: Timestamp(ts), origin: NodeId(1), tombstone: false }
    }

    #[test]
    fn a_watch_admits_only_newer_versions_and_forgets_the_oldest_keys_past_its_bound() {
        let mut w = watch();
        let (a, b, c) = (Bytes::from("a"), Bytes::from("b"), Bytes::from("c"));
        assert!(w.admit(&a, version(2), 2));
        assert!(!w.admit(&a, version(2), 2), "the same change twice");
        assert!(!w.admit(&a, version(1), 2), "an older change");
        assert!(w.admit(&a, version(3), 2));
        let tomb = Version { tombstone: true, ..version(3) };
        assert!(w.admit(&a, tomb, 2), "the expired form of the same write wins");
        assert!(w.admit(&b, version(1), 2));
        // `a` was last emitted before `b`: a third key makes the watch forget `a`.
        assert!(w.admit(&c, version(1), 2));
        assert_eq!(w.emitted.len(), 2, "bounded");
        assert!(!w.emitted.contains_key(&a), "the key emitted longest ago is forgotten");
        assert!(w.admit(&a, version(1), 2), "a forgotten key admits again");
        assert_eq!(w.order.len(), w.emitted.len());
    }

    #[test]
    fn replicated_runs_cover_exactly_the_intervals_whose_replicas_include_the_node() {
        let members: Vec<(NodeId, Vec<u64>)> =
            (1..=5).map(|i| (NodeId(i), tokens_for(NodeId(i), 8))).collect();
        let table = RingTable::new(members.iter().map(|(id, t)| (*id, t.as_slice())));
        assert_eq!(replicated_runs(&table, NodeId(1), 5), vec![Interval::full()]);
        for n in 1..=3 {
            let runs = replicated_runs(&table, NodeId(2), n);
            let v = table.vnodes();
            for (i, vn) in v.iter().enumerate() {
                let prev = v[(i + v.len() - 1) % v.len()].pos;
                let piece = Interval::new(prev, vn.pos);
                let mine = table.preference_list(vn.pos, n).contains(&NodeId(2));
                let covered = runs.iter().any(|r| r.contains_interval(&piece));
                assert_eq!(mine, covered, "n={n} piece {piece}");
            }
        }
        assert!(replicated_runs(&RingTable::default(), NodeId(1), 3).is_empty());
    }
}
