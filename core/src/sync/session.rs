//! One side of a sync session: the queue of work, the walk, and the digests.

use super::{Role, SyncConfig, SyncError, SyncStats};
use crate::{
    entry::{Entry, Version},
    hash::{Interval, Position, Segment},
    merkle::{entry_digest, salted_digest, NodeRef, Summary, FANOUT, MAX_LEVEL},
    proto::{SyncBody, SyncItem, SyncMessage},
    replica::Replica,
    store::Store,
};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// Records read per store call while scanning.
const SCAN_PAGE: usize = 512;

/// Work waiting for this side's next turn.
#[derive(Debug, Clone)]
enum Task {
    /// The node differs: send its children's digests or list its versions.
    Describe(NodeRef),
    /// The peer holds nothing under the node: list nothing, so it streams to us.
    ListEmpty(NodeRef),
    /// Ship my entries under the node, skipping those the peer holds at least as new.
    Stream {
        node: NodeRef,
        cursor: Option<(usize, Position, Bytes)>,
        theirs: BTreeMap<Bytes, Version>,
    },
    /// Ask for these keys.
    Want(Vec<Bytes>),
    /// Ship the entries for these keys (answering a want).
    Send(VecDeque<Bytes>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Done,
    Failed,
}

/// One side of a sync session. Feed it every message from the peer with
/// [`SyncSession::handle`] and send what it returns.
#[derive(Debug)]
pub struct SyncSession {
    id: u64,
    role: Role,
    collection: String,
    range: Interval,
    depth: u8,
    salt: u64,
    config: SyncConfig,
    queue: VecDeque<Task>,
    state: State,
    stats: SyncStats,
}

impl SyncSession {
    /// Opens session `id` over `range` of `collection`, returning the session and the
    /// [`SyncBody::Begin`] to send. `salt` keys the virtual digests; draw it from the
    /// node's seeded RNG.
    pub fn initiate<S: Store>(
        id: u64,
        replica: &Replica<S>,
        collection: &str,
        range: Interval,
        salt: u64,
        config: SyncConfig,
    ) -> Result<(SyncSession, SyncMessage), SyncError> {
        let mut session = SyncSession {
            id,
            role: Role::Initiator,
            collection: collection.to_string(),
            range,
            depth: replica.depth(),
            salt,
            config,
            queue: VecDeque::new(),
            state: State::Open,
            stats: SyncStats::default(),
        };
        let root = session.summary(replica, NodeRef::ROOT)?;
        let begin = SyncBody::Begin {
            collection: collection.to_string(),
            placement: replica.placement(collection),
            range,
            depth: replica.depth(),
            salt,
            root,
        };
        session.stats.messages_sent += 1;
        Ok((session, SyncMessage { session: id, body: begin }))
    }

    /// Accepts a [`SyncBody::Begin`] from a peer, returning the session and the reply.
    pub fn accept<S: Store>(
        replica: &mut Replica<S>,
        msg: SyncMessage,
        config: SyncConfig,
    ) -> Result<(SyncSession, SyncMessage), SyncError> {
        let SyncBody::Begin { collection, placement, range, depth, salt, root } = msg.body else {
            return Err(SyncError::Protocol("a session must open with Begin".into()));
        };
        crate::store::validate_collection(&collection)?;
        if placement != replica.placement(&collection) {
            return Err(SyncError::Protocol(format!(
                "collection {collection:?} is {placement:?} on the peer but {:?} here",
                replica.placement(&collection)
            )));
        }
        let mut session = SyncSession {
            id: msg.session,
            role: Role::Responder,
            collection,
            range,
            depth: depth.clamp(1, MAX_LEVEL),
            salt,
            config,
            queue: VecDeque::new(),
            state: State::Open,
            stats: SyncStats { messages_received: 1, ..SyncStats::default() },
        };
        let mine = session.summary(replica, NodeRef::ROOT)?;
        if mine == root {
            session.state = State::Done;
            session.stats.messages_sent += 1;
            return Ok((session, SyncMessage { session: msg.session, body: SyncBody::Done }));
        }
        session.compare(NodeRef::ROOT, root.count > 0, mine);
        let reply = session.next_step(replica)?;
        Ok((session, reply))
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The collection being reconciled.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The interval being reconciled.
    pub fn range(&self) -> Interval {
        self.range
    }

    /// Whether the session finished (both sides agreed there is nothing left).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the session is still running.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Sets the checks received entries must pass from now on (the node refreshes them
    /// with the current time before handing the session each message).
    pub fn set_limits(&mut self, limits: crate::entry::EntryLimits) {
        self.config.limits = Some(limits);
    }

    /// Counters of what the session did.
    pub fn stats(&self) -> SyncStats {
        self.stats
    }

    /// A message giving up on the session (for timeouts); closes it.
    pub fn abort(&mut self, reason: &str) -> SyncMessage {
        self.state = State::Failed;
        SyncMessage { session: self.id, body: SyncBody::Abort { reason: reason.to_string() } }
    }

    /// Handles the peer's next message; returns the reply to send, or `None` when the
    /// session ended with this message. Errors close the session.
    pub fn handle<S: Store>(
        &mut self,
        replica: &mut Replica<S>,
        msg: SyncMessage,
    ) -> Result<Option<SyncMessage>, SyncError> {
        if msg.session != self.id {
            return Err(SyncError::WrongSession { expected: self.id, got: msg.session });
        }
        if self.state != State::Open {
            return Err(SyncError::Closed(self.id));
        }
        self.stats.messages_received += 1;
        let result = self.handle_body(replica, msg.body);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn handle_body<S: Store>(
        &mut self,
        replica: &mut Replica<S>,
        body: SyncBody,
    ) -> Result<Option<SyncMessage>, SyncError> {
        match body {
            SyncBody::Done => {
                self.state = State::Done;
                Ok(None)
            }
            SyncBody::Abort { reason } => Err(SyncError::Aborted(reason)),
            SyncBody::Begin { .. } => Err(SyncError::Protocol("Begin inside a session".into())),
            SyncBody::Step { items } => {
                let was_empty = items.is_empty();
                for item in items {
                    self.handle_item(replica, item)?;
                }
                if was_empty && self.queue.is_empty() {
                    self.state = State::Done;
                    self.stats.messages_sent += 1;
                    return Ok(Some(SyncMessage { session: self.id, body: SyncBody::Done }));
                }
                self.next_step(replica).map(Some)
            }
        }
    }

    fn check_node(&self, node: NodeRef) -> Result<(), SyncError> {
        if !node.is_valid() {
            return Err(SyncError::Protocol(format!("invalid tree node {node:?}")));
        }
        if !self.range.overlaps_segment(node.segment()) {
            return Err(SyncError::Protocol(format!(
                "tree node {node:?} is outside {}",
                self.range
            )));
        }
        Ok(())
    }

    fn handle_item<S: Store>(
        &mut self,
        replica: &mut Replica<S>,
        item: SyncItem,
    ) -> Result<(), SyncError> {
        match item {
            SyncItem::Children { node, mask, digests } => {
                self.check_node(node)?;
                if node.level >= MAX_LEVEL {
                    return Err(SyncError::Protocol("children of a single position".into()));
                }
                if digests.len() != mask.count_ones() as usize || mask >> FANOUT != 0 {
                    return Err(SyncError::Protocol(format!(
                        "{} digests for child mask {mask:#06b}",
                        digests.len()
                    )));
                }
                let mut theirs = digests.into_iter();
                for i in 0..FANOUT {
                    let Some(child) = node.child(i) else { continue };
                    let their = if mask & (1 << i) != 0 { theirs.next() } else { None };
                    if !self.range.overlaps_segment(child.segment()) {
                        continue;
                    }
                    let mine = self.summary(replica, child)?;
                    if their == Some(mine.digest) && !mine.is_empty() {
                        continue;
                    }
                    self.compare(child, their.is_some(), mine);
                }
            }
            SyncItem::Versions { node, versions } => {
                self.check_node(node)?;
                let segs = self.segments_of(node);
                let mut want = Vec::new();
                let mut theirs = BTreeMap::new();
                for (key, their) in versions {
                    let pos = replica.position(&self.collection, &key);
                    if !segs.iter().any(|s| s.contains(pos)) {
                        return Err(SyncError::Protocol("listed key outside its node".into()));
                    }
                    let mine = replica.store().get(&self.collection, pos, &key)?;
                    if self.config.pull && mine.as_ref().is_none_or(|m| their > m.version()) {
                        want.push(key.clone());
                    }
                    theirs.insert(key, their);
                }
                if self.config.push {
                    self.queue.push_back(Task::Stream { node, cursor: None, theirs });
                }
                if !want.is_empty() {
                    self.queue.push_back(Task::Want(want));
                }
            }
            SyncItem::Want { keys } => {
                if self.config.push {
                    self.queue.push_back(Task::Send(keys.into()));
                }
            }
            SyncItem::Entries { entries } => {
                if !self.config.pull {
                    return Err(SyncError::Protocol(
                        "this side does not accept entries: open the session pull-only (push \
                         disabled)"
                            .into(),
                    ));
                }
                self.stats.entries_received += entries.len() as u64;
                for (key, _) in &entries {
                    let pos = replica.position(&self.collection, key);
                    if !self.range.contains(pos) {
                        return Err(SyncError::Protocol(
                            "entry outside the session's range".into(),
                        ));
                    }
                }
                if let Some(limits) = self.config.limits {
                    let refused =
                        entries.iter().filter(|(k, e)| limits.check(k, e).is_err()).count() as u64;
                    if let Some(err) = entries.iter().find_map(|(k, e)| limits.check(k, e).err()) {
                        self.stats.entries_refused += refused;
                        return Err(SyncError::Refused(err));
                    }
                }
                let mut entries = entries;
                if let Some(cutoff) = self.config.collected_before {
                    entries.retain(|(key, e)| {
                        let collected = !e.is_live(cutoff) && e.deleted_at_ms() <= cutoff;
                        !collected
                            || replica.get(&self.collection, key).is_ok_and(|held| held.is_some())
                    });
                }
                let newest = entries.iter().map(|(_, e)| e.ts).max().unwrap_or_default();
                let outcomes = replica.merge_batch(&self.collection, entries)?;
                self.stats.newest_merged = self.stats.newest_merged.max(newest);
                self.stats.entries_applied +=
                    outcomes.iter().filter(|m| m.changed()).count() as u64;
            }
        }
        Ok(())
    }

    /// Queues what to do about `node`, whose digests differ, given whether the peer holds
    /// anything there and our own summary.
    fn compare(&mut self, node: NodeRef, theirs_nonempty: bool, mine: Summary) {
        match (theirs_nonempty, mine.is_empty()) {
            (false, true) => {}
            (false, false) if self.config.push => {
                self.queue.push_back(Task::Stream { node, cursor: None, theirs: BTreeMap::new() })
            }
            (false, false) => {}
            // Listing nothing makes the peer stream to us: only when we take entries.
            (true, true) if self.config.pull => self.queue.push_back(Task::ListEmpty(node)),
            (true, true) => {}
            (true, false) => self.queue.push_back(Task::Describe(node)),
        }
    }

    /// Builds the next step from the queue, up to the message budget.
    fn next_step<S: Store>(&mut self, replica: &Replica<S>) -> Result<SyncMessage, SyncError> {
        let mut items = Vec::new();
        let mut budget = self.config.max_message_bytes;
        while let Some(task) = self.queue.pop_front() {
            if budget == 0 && !items.is_empty() {
                self.queue.push_front(task);
                break;
            }
            let (item, size, rest) = self.run_task(replica, task, budget.max(1))?;
            if let Some(rest) = rest {
                self.queue.push_front(rest);
            }
            if let Some(item) = item {
                items.push(item);
            }
            budget = budget.saturating_sub(size);
        }
        self.stats.messages_sent += 1;
        Ok(SyncMessage { session: self.id, body: SyncBody::Step { items } })
    }

    /// Runs one task within `budget` bytes: the item it produced (if any), its
    /// approximate size, and the remainder of the task when it did not finish.
    fn run_task<S: Store>(
        &mut self,
        replica: &Replica<S>,
        task: Task,
        budget: usize,
    ) -> Result<(Option<SyncItem>, usize, Option<Task>), SyncError> {
        match task {
            Task::ListEmpty(node) => {
                self.stats.nodes_listed += 1;
                Ok((Some(SyncItem::Versions { node, versions: Vec::new() }), 12, None))
            }
            Task::Describe(node) => {
                let mine = self.summary(replica, node)?;
                if mine.count <= self.config.list_max || node.level >= MAX_LEVEL {
                    self.stats.nodes_listed += 1;
                    let (records, _) = self.scan(replica, node, None, usize::MAX)?;
                    let size = records.iter().map(|r| r.2.len() + 24).sum::<usize>() + 12;
                    let versions =
                        records.into_iter().map(|(_, _, k, e)| (k, e.version())).collect();
                    return Ok((Some(SyncItem::Versions { node, versions }), size, None));
                }
                self.stats.nodes_described += 1;
                let mut mask = 0u8;
                let mut digests = Vec::with_capacity(FANOUT);
                for i in 0..FANOUT {
                    let Some(child) = node.child(i) else { continue };
                    let s = self.summary(replica, child)?;
                    if !s.is_empty() {
                        mask |= 1 << i;
                        digests.push(s.digest);
                    }
                }
                let size = 12 + digests.len() * 9;
                Ok((Some(SyncItem::Children { node, mask, digests }), size, None))
            }
            Task::Want(keys) => {
                let size = keys.iter().map(|k| k.len() + 3).sum::<usize>() + 4;
                Ok((Some(SyncItem::Want { keys }), size, None))
            }
            Task::Send(mut keys) => {
                let mut entries = Vec::new();
                let mut size = 4;
                while let Some(key) = keys.pop_front() {
                    if size >= budget && !entries.is_empty() {
                        keys.push_front(key);
                        break;
                    }
                    let pos = replica.position(&self.collection, &key);
                    if !self.range.contains(pos) {
                        continue;
                    }
                    if let Some(e) = replica.store().get(&self.collection, pos, &key)? {
                        size += entry_size(&key, &e);
                        entries.push((key, e));
                    }
                }
                self.stats.entries_sent += entries.len() as u64;
                let rest = (!keys.is_empty()).then_some(Task::Send(keys));
                let item = (!entries.is_empty()).then_some(SyncItem::Entries { entries });
                Ok((item, size, rest))
            }
            Task::Stream { node, cursor, theirs } => {
                let mut entries = Vec::new();
                let mut size = 4;
                let mut cursor = cursor;
                let finished = 'pages: loop {
                    let (page, next) = self.scan(replica, node, cursor.clone(), SCAN_PAGE)?;
                    for (seg, pos, key, e) in page {
                        if size >= budget && !entries.is_empty() {
                            break 'pages false;
                        }
                        cursor = Some((seg, pos, key.clone()));
                        if theirs.get(&key).is_some_and(|v| *v >= e.version()) {
                            continue;
                        }
                        size += entry_size(&key, &e);
                        entries.push((key, e));
                    }
                    if next.is_none() {
                        break true;
                    }
                };
                self.stats.entries_sent += entries.len() as u64;
                let rest = (!finished).then_some(Task::Stream { node, cursor, theirs });
                let item = (!entries.is_empty()).then_some(SyncItem::Entries { entries });
                Ok((item, size, rest))
            }
        }
    }

    /// The parts of `node` inside the session's interval, in position order.
    fn segments_of(&self, node: NodeRef) -> Vec<Segment> {
        let seg = node.segment();
        let mut out: Vec<Segment> = self
            .range
            .segments()
            .into_iter()
            .flatten()
            .filter(|s| s.lo <= seg.hi && seg.lo <= s.hi)
            .map(|s| Segment { lo: s.lo.max(seg.lo), hi: s.hi.min(seg.hi) })
            .collect();
        out.sort_by_key(|s| s.lo);
        out
    }

    /// Up to about `limit` records of `node` within the interval, after `cursor`
    /// (segment index, position, key); returns the records and the cursor to resume from,
    /// `None` when the node is exhausted.
    #[allow(clippy::type_complexity)]
    fn scan<S: Store>(
        &self,
        replica: &Replica<S>,
        node: NodeRef,
        cursor: Option<(usize, Position, Bytes)>,
        limit: usize,
    ) -> Result<(Vec<(usize, Position, Bytes, Entry)>, Option<(usize, Position, Bytes)>), SyncError>
    {
        let segs = self.segments_of(node);
        let mut out = Vec::new();
        let start = cursor.as_ref().map_or(0, |c| c.0);
        for (i, seg) in segs.iter().enumerate().skip(start) {
            let interval = Interval::new(seg.lo.wrapping_sub(1), seg.hi);
            let after = match &cursor {
                Some((ci, p, k)) if *ci == i => Some((*p, k.as_ref())),
                _ => None,
            };
            let want = limit.saturating_sub(out.len());
            let page = replica.range(&self.collection, interval, after, want)?;
            let full = page.len() == want;
            let last = page.last().map(|r| (i, r.pos, r.key.clone()));
            out.extend(page.into_iter().map(|r| (i, r.pos, r.key, r.entry)));
            if full {
                return Ok((out, last));
            }
        }
        Ok((out, None))
    }

    /// This side's count and digest of `node` within the interval. Levels up to the
    /// session depth use plain 64-bit XOR digests — read from the stored tree where it
    /// covers the node, computed from the entries otherwise; deeper levels use salted
    /// 32-bit digests computed from the entries. Both sides compute the same values for
    /// the same contents whatever their own trees' depths.
    fn summary<S: Store>(&self, replica: &Replica<S>, node: NodeRef) -> Result<Summary, SyncError> {
        let seg = node.segment();
        let Some(tree) = replica.tree(&self.collection) else {
            return Ok(Summary::default());
        };
        if !self.range.overlaps_segment(seg) {
            return Ok(Summary::default());
        }
        if node.level > self.depth {
            return self.scan_summary(replica, node, Some(self.salt));
        }
        let stored = node.level <= tree.depth();
        if self.range.contains_segment(seg) && stored {
            return Ok(tree.summary(node).unwrap_or_default());
        }
        if node.level < self.depth.min(tree.depth()) {
            let mut sum = Summary::default();
            for i in 0..FANOUT {
                if let Some(child) = node.child(i) {
                    sum = sum.combine(self.summary(replica, child)?);
                }
            }
            return Ok(sum);
        }
        self.scan_summary(replica, node, None)
    }

    /// Count and XOR of the entry digests under `node` within the interval, salted when
    /// a salt is given.
    fn scan_summary<S: Store>(
        &self,
        replica: &Replica<S>,
        node: NodeRef,
        salt: Option<u64>,
    ) -> Result<Summary, SyncError> {
        let mut sum = Summary::default();
        let mut cursor = None;
        loop {
            let (page, next) = self.scan(replica, node, cursor, SCAN_PAGE)?;
            for (_, _, key, e) in &page {
                let d = entry_digest(key, e);
                sum.add(salt.map_or(d, |salt| salted_digest(d, salt)));
            }
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(sum),
            }
        }
    }
}

fn entry_size(key: &[u8], e: &Entry) -> usize {
    key.len() + e.size() + 8
}
