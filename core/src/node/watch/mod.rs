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
//! ([`crate::sync::SyncConfig::push_only`]): it never merges an entry a client sends. Only intervals
//! this node replicates are served, and only while it is serving (not re-syncing).
//!
//! Everything here is bounded: watches and client sessions per node, feeds per node,
//! bytes per batch and per buffer, keys remembered per watch.
//!
//! ## A machine of its own
//!
//! [`Watches`] owns every piece of this state and nothing else: the node hands it each
//! input with an `Env` — the membership view, the replica (its change feed, the data
//! client sync reads), the clock and the random numbers — and drains what it wants sent
//! with [`Watches::poll_output`] ([`WatchOutput`]: a message to a peer, an answer or event
//! to a client), right after each input, so its outputs keep their place among the
//! node's. Its deadline is its own ([`Watches::next_deadline`]): the earliest of a timer
//! structure ([`crate::node::timers::Timers`]) that holds one deadline per watch (its
//! next `Subscribe` to a reachable source, or its `Ok`), per feed (its re-send) and per
//! client sync session (its timeout). Whatever an input changes is marked, and only
//! that is timed again after the input — never a walk over every watch — with every
//! watch timed again when the membership view changes (which sources are reachable).
//!
//! The watcher's side is in `watcher.rs`, the source's in `source.rs`, client sync in
//! `client_sync.rs`; this file holds the state they share, the inputs and the timers.

mod client_sync;
mod source;
mod watcher;

pub(in crate::node) use client_sync::replicated_runs;

use super::timers::Timers;
use super::ClientId;
use crate::{
    clock::{Hlc, Timestamp},
    entry::{Entry, NodeId, Version},
    hash::Interval,
    membership::{Membership, Status},
    proto::{
        client::{ErrorCode, Op, Reply},
        watch::Subscription,
        ClientResponse, WatchMessage,
    },
    replica::Replica,
    rng::Rng,
    store::Store,
    sync::SyncSession,
    Millis,
};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
/// watches from, and its clients' sync sessions; a machine of its own (see the module).
#[derive(Debug)]
pub struct Watches {
    config: WatchConfig,
    /// How long a watch waits for its sources to confirm before it answers `Ok` anyway
    /// (the node's request timeout).
    open_timeout_ms: Millis,
    /// A client sync session silent this long is dropped.
    sync_timeout_ms: Millis,
    watches: BTreeMap<u64, LocalWatch>,
    by_client: BTreeMap<(ClientId, u64), u64>,
    feeds: BTreeMap<(NodeId, u64), Feed>,
    /// The clock when this node opened its first feed: epochs from before are from an
    /// earlier run of the node.
    booted: Option<Timestamp>,
    syncs: BTreeMap<(ClientId, u64), (SyncSession, Millis)>,
    seen_view: Option<u64>,
    /// Each watch's, feed's and client sync session's next deadline.
    timers: Timers<Timer>,
    /// What an input changed, to be timed again after it.
    changed: BTreeSet<Timer>,
    /// The membership view the watches were last timed under.
    timed_view: Option<u64>,
    stats: WatchStats,
    outputs: VecDeque<WatchOutput>,
}

/// What a deadline of the watch machine is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A watch's next `Subscribe` to a reachable source, or its `Ok`.
    Watch(u64),
    /// A feed's re-send of unacknowledged batches.
    Feed(NodeId, u64),
    /// A client sync session's timeout.
    Sync(ClientId, u64),
}

/// What the watch machine wants the node to send.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchOutput {
    /// A watch message to another node.
    Send {
        /// The node.
        to: NodeId,
        /// The message.
        msg: WatchMessage,
    },
    /// An answer, or a watch's event, to a client.
    Reply {
        /// The client connection.
        client: ClientId,
        /// The answer.
        resp: ClientResponse,
    },
}

/// What the watch machine reads and uses of the rest of the node, for one input.
pub(in crate::node) struct Env<'a, S: Store> {
    /// The membership view: whom a watch subscribes at, who is reachable, whether this
    /// node serves.
    pub membership: &'a Membership,
    /// The local replica: its change feed, and what client sync reads.
    pub replica: &'a mut Replica<S>,
    /// The node's clock: feed epochs, subscription ids.
    pub clock: &'a mut Hlc,
    /// The node's random numbers: subscription ids.
    pub rng: &'a mut Rng,
    /// The digest of the membership view the node routes by: when it changes, which
    /// sources are reachable may have.
    pub view_digest: u64,
}

impl Watches {
    /// No watches yet. A watch answers `Ok` at the latest `open_timeout_ms` after it was
    /// asked for; a client sync session silent for `sync_timeout_ms` is dropped.
    pub fn new(config: WatchConfig, open_timeout_ms: Millis, sync_timeout_ms: Millis) -> Self {
        Watches {
            config,
            open_timeout_ms,
            sync_timeout_ms,
            watches: BTreeMap::new(),
            by_client: BTreeMap::new(),
            feeds: BTreeMap::new(),
            booted: None,
            syncs: BTreeMap::new(),
            seen_view: None,
            timers: Timers::default(),
            changed: BTreeSet::new(),
            timed_view: None,
            stats: WatchStats::default(),
            outputs: VecDeque::new(),
        }
    }

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

    /// When the watch timers next have work.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.timers.next()
    }

    /// The next thing to send, in the order the inputs produced them.
    pub fn poll_output(&mut self) -> Option<WatchOutput> {
        self.outputs.pop_front()
    }

    fn active(&self) -> bool {
        !self.watches.is_empty() || !self.feeds.is_empty()
    }

    fn send(&mut self, to: NodeId, msg: WatchMessage) {
        self.outputs.push_back(WatchOutput::Send { to, msg });
    }

    /// Handles [`Op::Watch`], [`Op::Unwatch`] and [`Op::Sync`]; `runs` are the
    /// intervals this node replicates of the collection a `Sync` begins on (see
    /// [`replicated_runs`]; empty for any other request).
    pub(in crate::node) fn start<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        client: ClientId,
        id: u64,
        op: Op,
        runs: Vec<Interval>,
    ) {
        match op {
            Op::Watch { collection, prefix } => {
                self.open_watch(env, now, client, id, collection, prefix)
            }
            Op::Unwatch { watch } => {
                let out = match self.by_client.get(&(client, watch)).copied() {
                    Some(sub) => {
                        self.close_watch(env.membership, sub);
                        reply_to(client, id, Reply::Ok)
                    }
                    None => error(
                        client,
                        id,
                        ErrorCode::NotFound,
                        format!("no watch with id {watch} is open on this connection"),
                    ),
                };
                self.outputs.push_back(out);
            }
            Op::Sync { msg } => self.client_sync(env, now, client, id, msg, runs),
            _ => {
                let msg = "the request is not a watch or sync request";
                self.outputs.push_back(error(client, id, ErrorCode::Internal, msg));
            }
        }
    }

    /// Handles a watch message from node `from`.
    pub(in crate::node) fn handle_peer<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        msg: WatchMessage,
    ) {
        match msg {
            WatchMessage::Subscribe { subs } => {
                for s in subs {
                    self.subscribe(env, now, from, s);
                }
            }
            WatchMessage::Unsubscribe { subs } => {
                for sub in subs {
                    self.feeds.remove(&(from, sub));
                    self.changed.insert(Timer::Feed(from, sub));
                }
            }
            WatchMessage::Changes { sub, epoch, seq, items, lagged } => {
                self.on_changes(env.membership, now, from, sub, epoch, seq, items, lagged)
            }
            WatchMessage::ChangesAck { sub, epoch, seq } => self.on_ack(now, from, sub, epoch, seq),
        }
    }

    /// A client connection closed: drops its watches (unsubscribing at every source)
    /// and its sync sessions.
    pub(in crate::node) fn client_gone<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        client: ClientId,
    ) {
        let subs: Vec<u64> =
            self.by_client.range((client, 0)..=(client, u64::MAX)).map(|(_, s)| *s).collect();
        for sub in subs {
            // Nobody is listening for the `Ok` of a watch still opening.
            if let Some(w) = self.watches.get_mut(&sub) {
                w.opening = None;
            }
            self.close_watch(env.membership, sub);
        }
        let keys: Vec<(ClientId, u64)> =
            self.syncs.range((client, 0)..=(client, u64::MAX)).map(|(k, _)| *k).collect();
        for k in keys {
            self.syncs.remove(&k);
            self.changed.insert(Timer::Sync(k.0, k.1));
        }
        self.pump(env, now);
    }

    /// Ends every watch of `client`, each with an [`ErrorCode::Unavailable`] error
    /// carrying the watch's id and `reason` (see [`crate::node::Node::end_client_watches`]).
    /// Returns how many watches ended.
    pub(in crate::node) fn end_client_watches(
        &mut self,
        membership: &Membership,
        client: ClientId,
        reason: &str,
    ) -> usize {
        let subs: Vec<u64> =
            self.by_client.range((client, 0)..=(client, u64::MAX)).map(|(_, s)| *s).collect();
        for sub in &subs {
            let Some(w) = self.watches.get_mut(sub) else { continue };
            w.opening = None;
            let id = w.id;
            self.close_watch(membership, *sub);
            self.stats.lagged += 1;
            self.outputs.push_back(error(client, id, ErrorCode::Unavailable, reason));
        }
        subs.len()
    }

    /// Routes the changes the replica applied to local watches and to the feeds of
    /// remote ones, and refreshes the watch deadline. The node calls it after every
    /// input.
    pub(in crate::node) fn pump<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        let changes = env.replica.take_changes();
        if !changes.is_empty() {
            self.route_to_watches(env.membership, now, &changes);
            self.route_to_feeds(now, &changes);
        }
        env.replica.set_change_feed(self.active());
        self.retime(env.membership, env.view_digest);
    }

    /// Watch timers: subscriptions to (re)send, watches whose `Ok` is due, batches to
    /// re-send, client sync sessions gone silent; and membership changes: subscribe at
    /// members that appeared, forget those that left, stop feeds of dead watchers.
    pub(in crate::node) fn tick<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        if self.active() {
            let view = env.membership.view_digest();
            if self.seen_view != Some(view) {
                self.seen_view = Some(view);
                self.follow_membership(env.membership, now);
            }
        } else {
            self.seen_view = None;
        }
        self.send_subscribes(env.membership, now, None);
        let opening: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| w.opening.as_ref().is_some_and(|(d, _)| *d <= now))
            .map(|(s, _)| *s)
            .collect();
        for sub in opening {
            self.check_opened(env.membership, now, sub);
        }
        self.resend_due(now);
        let timeout = self.sync_timeout_ms;
        self.syncs.retain(|_, (_, at)| now.saturating_sub(*at) < timeout);
        // Whatever was due is timed again: what the tick did moved it, or it is gone.
        self.changed.extend(self.timers.due(now));
        self.pump(env, now);
    }

    fn follow_membership(&mut self, membership: &Membership, now: Millis) {
        let me = membership.me().id;
        for w in self.watches.values_mut() {
            w.sources
                .retain(|id, _| membership.member(*id).is_some_and(|m| m.status != Status::Left));
            for m in membership.members() {
                if m.id != me && m.status != Status::Left {
                    w.sources.entry(m.id).or_insert(Source { feed: None, next_subscribe: now });
                }
            }
        }
        let changed = &mut self.changed;
        self.feeds.retain(|(watcher, sub), _| {
            let keep = !membership
                .member(*watcher)
                .is_some_and(|m| matches!(m.status, Status::Dead | Status::Left));
            if !keep {
                changed.insert(Timer::Feed(*watcher, *sub));
            }
            keep
        });
        let subs: Vec<u64> = self.watches.keys().copied().collect();
        for sub in subs {
            self.changed.insert(Timer::Watch(sub));
            self.check_opened(membership, now, sub);
        }
    }

    /// Times again what the last input changed (every watch, when the view changed).
    fn retime(&mut self, membership: &Membership, view: u64) {
        if self.timed_view != Some(view) {
            self.timed_view = Some(view);
            self.changed.extend(self.watches.keys().map(|s| Timer::Watch(*s)));
        }
        if self.changed.is_empty() {
            return;
        }
        for t in std::mem::take(&mut self.changed) {
            let at = self.deadline_of(membership, t);
            self.timers.set(t, at);
        }
    }

    /// When `t` next needs the node: `None` when it is gone or waits for nothing.
    fn deadline_of(&self, membership: &Membership, t: Timer) -> Option<Millis> {
        match t {
            Timer::Watch(sub) => {
                let w = self.watches.get(&sub)?;
                let subscribe = (w.sources.iter())
                    .filter(|(id, _)| membership.member(**id).is_some_and(|m| reachable(m.status)))
                    .map(|(_, s)| s.next_subscribe)
                    .min();
                let opening = w.opening.as_ref().map(|(d, _)| *d);
                subscribe.into_iter().chain(opening).min()
            }
            Timer::Feed(watcher, sub) => {
                let f = self.feeds.get(&(watcher, sub))?;
                (!f.unacked.is_empty()).then_some(f.retransmit_at)
            }
            Timer::Sync(client, session) => {
                let (_, at) = self.syncs.get(&(client, session))?;
                Some(at + self.sync_timeout_ms)
            }
        }
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

/// Subscriptions per `Subscribe` message.
const SUBSCRIBE_CHUNK: usize = 128;
/// Events held back before a watch's `Ok` at most; past it the `Ok` goes out early.
const MAX_HELD_EVENTS: usize = 10_000;

/// Whether a member in `status` is one a watcher subscribes at.
fn reachable(status: Status) -> bool {
    matches!(status, Status::Alive | Status::Suspect | Status::Syncing)
}

fn reply_to(client: ClientId, id: u64, result: Reply) -> WatchOutput {
    WatchOutput::Reply { client, resp: ClientResponse { id, result, ts: None } }
}

fn error(client: ClientId, id: u64, code: ErrorCode, message: impl Into<String>) -> WatchOutput {
    WatchOutput::Reply { client, resp: ClientResponse::error(id, code, message) }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
