//! Scans: reading a collection page by page in ring order, across every node.
//!
//! A scan walks the ring linearly from position `0` up to `u64::MAX` (it never wraps),
//! so pages come in key order for ordered collections (`ordered.*`, where a key's
//! position is its first 8 bytes) and in hash order for the others. The walk goes piece
//! by piece along the token table: a *piece* is the run of positions owned by one token,
//! `(previous token, token]`, cut at `0` so that the piece holding `0` splits in two.
//! Every position of a piece has the same preference list, so a piece is read like a
//! key: its replicas are all asked ([`ReplicaMessage::RangeRead`]) for their records
//! after the cursor, and the piece counts as read once `required` of them answered
//! (`one`, `quorum`, `all` or a number, as for reads).
//!
//! Replicas answer with at most `limit` records (and at most [`BYTE_BUDGET`] bytes),
//! tombstones included, and say `more` when they stopped early. The coordinator merges
//! the answers key by key with [`Entry::merge`] (newest wins), but only up to the
//! smallest last record among the answers that said `more`: past it, that replica's
//! records are unknown, so the merge would not be sound there. Tombstones and expired
//! entries are dropped from the page, yet the cursor moves past them. The next read
//! starts after the cursor, in the same piece or, once a piece is exhausted, in the
//! next one, until the page holds `limit` live items or the walk reaches its end.
//!
//! The cursor handed to the client is opaque to it: the position (u64, big-endian)
//! followed by the key of the last record examined. An empty key means "just before
//! this position" (keys are never empty), which is how a page that ends between pieces
//! says where to go on. The cursor is `None` once the walk is complete.
//!
//! A prefix narrows an ordered scan to the positions its keys can occupy (see
//! [`prefix_bounds`]); on a hashed collection it only filters, so a prefix scan of a
//! hashed collection walks the whole ring.
//!
//! Every page must finish within the request timeout. A page stops early, with a
//! cursor, once half the timeout has passed or it started [`MAX_READS_PER_PAGE`] reads,
//! so that a scan of a sparse collection over a huge ring returns (possibly empty)
//! pages instead of timing out; a piece that does not reach its consistency by the
//! deadline answers [`ErrorCode::QuorumNotReached`] with how many replicas answered.
//! Scans do not read-repair: a scan touches many keys at once, and anti-entropy
//! reconciles replicas anyway.
//!
//! [`Scans`] is a machine of its own: it owns the pages in flight and their deadlines,
//! takes each input with what it reads of the rest of the node (`Env`: the view of the
//! ring, the membership, the local replica, the request numbers), and emits what it
//! wants sent ([`ScanOutput`]), which the node drains after each input. Serving a range
//! read for another node's scan needs no state (`serve`).

use super::joint::Joint;
use super::{
    ids::{Concern, RequestIds},
    timers::Timers,
    view::View,
    ClientId,
};
use crate::{
    entry::{Entry, NodeId},
    hash::{Interval, Placement, Position},
    membership::Membership,
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientResponse, ReplicaMessage,
    },
    replica::Replica,
    store::{validate_collection, validate_key, Store, StoreError, MAX_KEY_LEN},
    Millis,
};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, VecDeque};

/// Entries per page when a scan asks for `0`.
pub const DEFAULT_PAGE: usize = 100;
/// Most entries in one page.
pub const MAX_PAGE: usize = 1000;
/// Most records in one [`ReplicaMessage::RangeReply`].
pub const MAX_RANGE_RECORDS: usize = 1000;
/// Key and value bytes after which a range reply, or a page, stops early. One record is
/// always sent, so a reply carries at most this or one largest record (16 MiB value,
/// 64 KiB key): well within the 20 MiB frame limit.
pub const BYTE_BUDGET: usize = 4 * 1024 * 1024;
/// Most range reads one page starts before it returns with a cursor.
pub const MAX_READS_PER_PAGE: usize = 512;
/// Most records a replica reads from its store at once while it assembles a reply.
const STORE_CHUNK: usize = 64;
/// Records of the first store read of a reply, before their sizes are known.
const FIRST_CHUNK: usize = 4;

/// A place in ring order: every record at or before `(pos, key)` has been examined.
///
/// Ordered like the store orders records, by position and then key bytes. An empty key
/// stands just before every key at `pos`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The ring position.
    pub pos: Position,
    /// The key at that position; empty for "before every key there".
    pub key: Bytes,
}

impl Cursor {
    /// The place just before position `pos`.
    pub fn before(pos: Position) -> Self {
        Cursor { pos, key: Bytes::new() }
    }

    /// The cursor bytes a client holds: the position big-endian, then the key.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(8 + self.key.len());
        out.put_u64(self.pos);
        out.put_slice(&self.key);
        out.freeze()
    }

    /// Reads a client's cursor; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Cursor, String> {
        if bytes.len() < 8 || bytes.len() > 8 + MAX_KEY_LEN {
            return Err(format!(
                "the scan cursor of {} bytes is not one this node handed out; pass back the \
                 cursor of the previous page unchanged, or none to start over",
                bytes.len()
            ));
        }
        let (pos, key) = bytes.split_at(8);
        let mut be = [0u8; 8];
        be.copy_from_slice(pos);
        Ok(Cursor { pos: u64::from_be_bytes(be), key: Bytes::copy_from_slice(key) })
    }
}

/// The inclusive positions `[lo, hi]` that keys starting with `prefix` occupy in an
/// ordered collection: the prefix's first 8 bytes padded with `0x00` and with `0xFF`.
/// A prefix of 8 bytes or more pins one position; the empty prefix spans the ring.
pub fn prefix_bounds(prefix: &[u8]) -> (Position, Position) {
    let n = prefix.len().min(8);
    let (mut lo, mut hi) = ([0u8; 8], [0xFFu8; 8]);
    lo[..n].copy_from_slice(&prefix[..n]);
    hi[..n].copy_from_slice(&prefix[..n]);
    (u64::from_be_bytes(lo), u64::from_be_bytes(hi))
}

/// The scans a node is coordinating, by the request number of their outstanding read.
#[derive(Debug)]
pub struct Scans {
    /// How long a page may take (the node's request timeout).
    timeout_ms: Millis,
    waiting: BTreeMap<u64, Scan>,
    /// Each waiting scan's page deadline.
    deadlines: Timers<u64>,
    outputs: VecDeque<ScanOutput>,
}

/// What the scan machine wants the node to do.
#[derive(Debug)]
pub enum ScanOutput {
    /// A range read to a replica.
    Send {
        /// The replica.
        to: NodeId,
        /// The read.
        msg: ReplicaMessage,
    },
    /// A page, or an error, to a client.
    Reply {
        /// The client connection.
        client: ClientId,
        /// The answer.
        resp: ClientResponse,
    },
    /// The local store failed to read a range.
    StoreFailed(StoreError),
}

/// What the scan machine reads of the rest of the node, for one input.
pub(super) struct Env<'a, S: Store> {
    /// The ring and the catalogue: each piece's owners, the consistency levels.
    pub view: &'a View,
    /// The membership: whether this node's own change of the ring is under way.
    pub membership: &'a Membership,
    /// The local replica, read as one of a piece's replicas.
    pub replica: &'a Replica<S>,
    /// The node's request numbers.
    pub ids: &'a mut RequestIds,
    /// Whether the node waits for the cluster's view (it coordinates nothing then).
    pub awaiting_cluster: bool,
}

impl Scans {
    /// No scans yet; a page must be done within `timeout_ms`.
    pub fn new(timeout_ms: Millis) -> Self {
        Scans {
            timeout_ms,
            waiting: BTreeMap::new(),
            deadlines: Timers::default(),
            outputs: VecDeque::new(),
        }
    }

    /// The earliest page deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.next()
    }

    /// The next thing to do, in the order the inputs produced them.
    pub fn poll_output(&mut self) -> Option<ScanOutput> {
        self.outputs.pop_front()
    }

    /// Files `scan`, waiting for the answers to read `req`.
    fn wait(&mut self, req: u64, scan: Scan) {
        self.deadlines.set(req, Some(scan.deadline));
        self.waiting.insert(req, scan);
    }

    /// Takes back the scan waiting for `req`.
    fn take(&mut self, req: u64) -> Option<Scan> {
        self.deadlines.cancel(req);
        self.waiting.remove(&req)
    }

    /// Number of scan pages in flight.
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }
}

/// One page of a scan being assembled.
#[derive(Debug)]
struct Scan {
    client: ClientId,
    id: u64,
    collection: String,
    /// Keys must start with this (never empty).
    prefix: Option<Bytes>,
    limit: usize,
    consistency: Consistency,
    /// The last position of the walk, inclusive.
    end: Position,
    /// Everything up to here has been examined.
    cursor: Cursor,
    started: Millis,
    deadline: Millis,
    reads: usize,
    items: Vec<(Bytes, Bytes)>,
    item_bytes: usize,
    piece: Piece,
}

/// The read in progress: the piece `[cursor.pos, hi]` and its replicas' answers.
#[derive(Debug, Default)]
struct Piece {
    hi: Position,
    /// The owners (and, while the ring changes, future owners) asked: those not known
    /// to be down.
    replicas: Vec<NodeId>,
    /// The owners whose answers count toward `required`: the readable ones.
    counted: Vec<NodeId>,
    required: usize,
    /// While a change of the ring touches the piece: its future owners, read jointly as
    /// a key is (see `crate::ring::placement`, "Joint reads"); in the joint phase of a
    /// move of the collection, its owners under the next layout.
    joints: Vec<Joint>,
    answers: BTreeMap<NodeId, Answer>,
    /// Replicas whose store failed to read, and why: failed answers, never empty ones.
    failed: BTreeMap<NodeId, String>,
}

impl Piece {
    /// Whether the replicas that did not fail can still make up `required` (and the
    /// future owners theirs, or every maker of the change can still answer).
    fn reachable(&self) -> bool {
        let live = |group: &[NodeId]| {
            self.replicas
                .iter()
                .filter(|r| group.contains(r) && !self.failed.contains_key(r))
                .count()
        };
        live(&self.counted) >= self.required
            && self.joints.iter().all(|f| {
                live(&f.readable) >= f.required
                    || (!f.makers.is_empty() && live(&f.makers) == f.makers.len())
            })
    }

    /// Answers from owners that count.
    fn counted_answers(&self) -> usize {
        self.answers.keys().filter(|r| self.counted.contains(r)).count()
    }

    /// Whether enough owners answered, and enough future owners (unless waived).
    fn satisfied(&self) -> bool {
        let answered = |group: &[NodeId]| self.answers.keys().filter(|r| group.contains(r)).count();
        answered(&self.counted) >= self.required
            && self.joints.iter().all(|f| f.waived() || answered(&f.readable) >= f.required)
    }

    /// Notes that `from` answered that its change of the ring is still under way.
    fn still_changing(&mut self, from: NodeId) {
        for f in &mut self.joints {
            f.still_changing(from);
        }
    }

    /// The answer when they cannot.
    fn storage_failure(&self, id: u64) -> ClientResponse {
        let why: Vec<String> = self.failed.iter().map(|(n, e)| format!("{n}: {e}")).collect();
        let answered = u32::try_from(self.counted_answers()).unwrap_or(u32::MAX);
        let required = u32::try_from(self.required).unwrap_or(u32::MAX);
        ClientResponse {
            id,
            result: Reply::Error {
                code: ErrorCode::Internal,
                message: format!(
                    "storage failure: too many replicas could not read a range of the scan: {}",
                    why.join("; ")
                ),
                acked: Some((answered, required)),
            },
            ts: None,
        }
    }
}

/// One replica's answer, checked: records after the cursor inside the piece, sorted.
#[derive(Debug)]
struct Answer {
    records: Vec<(Cursor, Entry)>,
    more: bool,
}

/// What to do after a piece's answers were merged.
enum Step {
    /// Read on from the cursor.
    Continue,
    /// Answer the page; `complete` when the walk reached its end.
    Done { complete: bool },
}

impl Scans {
    fn reply(&mut self, client: ClientId, resp: ClientResponse) {
        self.outputs.push_back(ScanOutput::Reply { client, resp });
    }

    /// Starts coordinating one page of `op`, an [`Op::Scan`], for `client`.
    pub(super) fn start<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        client: ClientId,
        id: u64,
        op: Op,
    ) {
        let Op::Scan { collection, cursor, prefix, limit, consistency } = op else {
            let resp = ClientResponse::error(id, ErrorCode::Internal, "not a scan request");
            return self.reply(client, resp);
        };
        let invalid = |message: String| ClientResponse::error(id, ErrorCode::InvalidInput, message);
        if let Err(e) = validate_collection(&collection) {
            return self.reply(client, invalid(e.to_string()));
        }
        let prefix = prefix.filter(|p| !p.is_empty());
        if let Some(p) = prefix.as_ref().filter(|p| p.len() > MAX_KEY_LEN) {
            let message = format!(
                "a prefix of {} bytes matches no key: keys are at most {MAX_KEY_LEN} bytes",
                p.len()
            );
            return self.reply(client, invalid(message));
        }
        let (lo, end) = match (&prefix, env.replica.placement(&collection)) {
            (Some(p), Placement::Ordered) => prefix_bounds(p),
            _ => (0, u64::MAX),
        };
        let first = Cursor::before(lo);
        let cursor = match cursor.as_deref().map(Cursor::decode) {
            None => first,
            Some(Ok(c)) => c.max(first),
            Some(Err(message)) => return self.reply(client, invalid(message)),
        };
        let limit = match limit {
            0 => DEFAULT_PAGE,
            n => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
        };
        let scan = Scan {
            client,
            id,
            collection,
            prefix,
            limit,
            consistency,
            end,
            cursor,
            started: now,
            deadline: now.saturating_add(self.timeout_ms),
            reads: 0,
            items: Vec::new(),
            item_bytes: 0,
            piece: Piece::default(),
        };
        if scan.cursor.pos > scan.end {
            return self.finish(scan, true);
        }
        self.advance(env, now, scan);
    }

    /// Starts reads from the cursor, merging those answered at once (the local replica),
    /// until one has to wait for other nodes or the page is done.
    fn advance<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis, mut scan: Scan) {
        loop {
            let half_timeout = self.timeout_ms / 2;
            let spent = scan.reads > 0 && now.saturating_sub(scan.started) >= half_timeout;
            if spent || scan.reads >= MAX_READS_PER_PAGE {
                return self.finish(scan, false);
            }
            let pos = scan.cursor.pos;
            let placement = env.view.placement_for(&scan.collection).key(pos);
            let owners = placement.owners.clone();
            if env.awaiting_cluster {
                let message = super::coordinator::AWAITING_CLUSTER;
                let resp = ClientResponse::error(scan.id, ErrorCode::Unavailable, message);
                return self.reply(scan.client, resp);
            }
            if owners.is_empty() {
                let message =
                    "no node owns any part of the ring yet (this node is joining); retry shortly";
                let resp = ClientResponse::error(scan.id, ErrorCode::Unavailable, message);
                return self.reply(scan.client, resp);
            }
            let level = env.view.consistency_for(&scan.collection, scan.consistency);
            let required = match level.required(owners.len()) {
                Ok(r) => r,
                Err(e) => {
                    let resp =
                        ClientResponse::error(scan.id, ErrorCode::InvalidInput, e.to_string());
                    return self.reply(scan.client, resp);
                }
            };
            // Like a read, a range asks every owner not known to be down and counts only
            // the caught-up ones (see `crate::ring::placement`).
            let counted: Vec<NodeId> =
                owners.iter().copied().filter(|o| env.view.placement.readable(*o)).collect();
            let mut replicas: Vec<NodeId> =
                owners.iter().copied().filter(|o| !env.view.placement.down(*o)).collect();
            // While a change of the ring touches the piece, its future owners too (a joint
            // read, as for a key); in a move's joint phase, the next layout's owners.
            let mut groups: Vec<(&[NodeId], &[NodeId], bool)> = Vec::new();
            if !placement.future.is_empty() {
                groups.push((&placement.future, &placement.makers, false));
            }
            for g in placement.next.iter().filter(|_| placement.next_joint) {
                groups.push((&g.nodes, &g.makers, true));
            }
            let mut joints = Vec::new();
            for (nodes, makers, layout) in groups {
                let required = match level.required(nodes.len()) {
                    Ok(r) => r,
                    Err(_) if layout => nodes.len(),
                    Err(e) => {
                        let resp =
                            ClientResponse::error(scan.id, ErrorCode::InvalidInput, e.to_string());
                        return self.reply(scan.client, resp);
                    }
                };
                for f in nodes {
                    if !replicas.contains(f) && !env.view.placement.down(*f) {
                        replicas.push(*f);
                    }
                }
                let readable =
                    nodes.iter().copied().filter(|f| env.view.placement.readable(*f)).collect();
                let makers = makers.to_vec();
                joints.push((
                    nodes.len(),
                    Joint { readable, required, makers, still: vec![], layout },
                ));
            }
            for (len, f) in joints.iter().filter(|(_, f)| f.readable.len() < f.required) {
                if f.makers.is_empty() {
                    let whose = if f.layout {
                        "under the layout its collection moves to"
                    } else {
                        "once the ring's change is done"
                    };
                    let message = format!(
                        "only {} of the {len} owners a range of the scan will have {whose} can \
                         answer; {level} needs {}: retry shortly",
                        f.readable.len(),
                        f.required
                    );
                    let result = Reply::Error {
                        code: ErrorCode::Unavailable,
                        message,
                        acked: Some((f.readable.len() as u32, f.required as u32)),
                    };
                    return self
                        .reply(scan.client, ClientResponse { id: scan.id, result, ts: None });
                }
            }
            let joints: Vec<Joint> = joints.into_iter().map(|(_, f)| f).collect();
            if counted.len() < required {
                let message = format!(
                    "only {} of the {} owners of a range of the scan can answer (the others are \
                     down or re-syncing); {level} needs {required}: retry, or ask for a lower \
                     consistency",
                    counted.len(),
                    owners.len()
                );
                let result = crate::proto::client::Reply::Error {
                    code: ErrorCode::Unavailable,
                    message,
                    acked: Some((counted.len() as u32, required as u32)),
                };
                return self.reply(scan.client, ClientResponse { id: scan.id, result, ts: None });
            }
            // The piece ends at the token owning `pos`, or at the ring's end when `pos` lies
            // past the last token (its owner is then the first token, across the wrap); while
            // the ring changes, at the future table's token too, so that both sets of owners
            // hold for the whole piece.
            let end_in = |table: &crate::ring::RingTable| match table.successor(pos) {
                Some(v) if v.pos >= pos => v.pos,
                _ => u64::MAX,
            };
            let mut hi = end_in(&env.view.table).min(scan.end);
            if !placement.future.is_empty() {
                hi = hi.min(end_in(env.view.placement.future_table()));
            }
            scan.reads += 1;
            scan.piece = Piece {
                hi,
                replicas: replicas.clone(),
                counted,
                required,
                joints,
                ..Piece::default()
            };
            let interval = Interval::new(pos.wrapping_sub(1), hi);
            let after = (!scan.cursor.key.is_empty()).then(|| (pos, scan.cursor.key.clone()));
            let want = scan.limit.saturating_sub(scan.items.len()).max(1);
            let req = env.ids.next(Concern::Scans);
            let me = env.view.me;
            for r in replicas {
                if r == me {
                    match read_range(env.replica, &scan.collection, interval, after.clone(), want) {
                        Ok((records, more)) => {
                            if let Some(a) = accept(env.replica, &scan, records, more) {
                                scan.piece.answers.insert(me, a);
                                if env.membership.me().changing() {
                                    scan.piece.still_changing(me);
                                }
                            }
                        }
                        Err(e) => {
                            scan.piece.failed.insert(me, e.to_string());
                            self.outputs.push_back(ScanOutput::StoreFailed(e));
                        }
                    }
                } else {
                    let limit = u32::try_from(want).unwrap_or(u32::MAX);
                    let collection = scan.collection.clone();
                    let msg = ReplicaMessage::RangeRead {
                        req,
                        collection,
                        interval,
                        after: after.clone(),
                        limit,
                    };
                    self.outputs.push_back(ScanOutput::Send { to: r, msg });
                }
            }
            if !scan.piece.reachable() {
                let resp = scan.piece.storage_failure(scan.id);
                return self.reply(scan.client, resp);
            }
            if !scan.piece.satisfied() {
                self.wait(req, scan);
                return;
            }
            if let Step::Done { complete } = absorb(now, &mut scan) {
                return self.finish(scan, complete);
            }
        }
    }

    /// Answers the page; with a cursor unless the walk is `complete`.
    fn finish(&mut self, scan: Scan, complete: bool) {
        let cursor = (!complete).then(|| scan.cursor.encode());
        let resp = ClientResponse {
            id: scan.id,
            result: Reply::Page { items: scan.items, cursor },
            ts: None,
        };
        self.reply(scan.client, resp);
    }

    /// A replica answered a range read.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_reply<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        req: u64,
        records: Vec<(Bytes, Entry)>,
        more: bool,
        changing: bool,
    ) {
        let Some(scan) = self.waiting.get_mut(&req) else { return };
        if !scan.piece.replicas.contains(&from) || scan.piece.answers.contains_key(&from) {
            return;
        }
        let Some(answer) = accept(env.replica, scan, records, more) else { return };
        scan.piece.answers.insert(from, answer);
        if changing {
            scan.piece.still_changing(from);
        }
        if !scan.piece.satisfied() {
            return;
        }
        let Some(mut scan) = self.take(req) else { return };
        match absorb(now, &mut scan) {
            Step::Continue => self.advance(env, now, scan),
            Step::Done { complete } => self.finish(scan, complete),
        }
    }

    /// A replica could not read its store for a range read: a failed answer.
    pub(super) fn on_failed(&mut self, from: NodeId, req: u64, error: String) {
        let Some(scan) = self.waiting.get_mut(&req) else { return };
        if !scan.piece.replicas.contains(&from) || scan.piece.answers.contains_key(&from) {
            return;
        }
        scan.piece.failed.insert(from, error);
        if scan.piece.reachable() {
            return;
        }
        if let Some(scan) = self.take(req) {
            let resp = scan.piece.storage_failure(scan.id);
            self.reply(scan.client, resp);
        }
    }

    /// Answers the pages whose deadline passed with how many replicas of the piece being
    /// read answered.
    pub(super) fn expire(&mut self, now: Millis) {
        for req in self.deadlines.due(now) {
            let Some(scan) = self.take(req) else { continue };
            let answered = u32::try_from(scan.piece.counted_answers()).unwrap_or(u32::MAX);
            let required = u32::try_from(scan.piece.required).unwrap_or(u32::MAX);
            let message = format!(
                "only {answered} of the {required} replicas required for a range of the scan \
                 answered within the timeout; retry the page with the same cursor, or ask for a \
                 lower consistency"
            );
            let result = Reply::Error {
                code: ErrorCode::QuorumNotReached,
                message,
                acked: Some((answered, required)),
            };
            self.reply(scan.client, ClientResponse { id: scan.id, result, ts: None });
        }
    }
}

/// Checks an answer against the piece: keeps valid keys placed (by this node's own
/// placement) after the cursor and inside the piece, sorted. `None` when the answer
/// says `more` but holds no such record: it would stall the scan, so it does not count.
fn accept<S: Store>(
    replica: &Replica<S>,
    scan: &Scan,
    records: Vec<(Bytes, Entry)>,
    more: bool,
) -> Option<Answer> {
    let mut kept: Vec<(Cursor, Entry)> = records
        .into_iter()
        .filter(|(key, _)| validate_key(key).is_ok())
        .map(|(key, entry)| (Cursor { pos: replica.position(&scan.collection, &key), key }, entry))
        .filter(|(place, _)| *place > scan.cursor && place.pos <= scan.piece.hi)
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    if more && kept.is_empty() {
        return None;
    }
    Some(Answer { records: kept, more })
}

/// Merges the answers of the piece into the page and moves the cursor.
fn absorb(now: Millis, scan: &mut Scan) -> Step {
    let piece = std::mem::take(&mut scan.piece);
    // Past the smallest last record of a replica that stopped early, that replica's
    // records are unknown: merge only up to there.
    let truncated: Option<Cursor> = piece
        .answers
        .values()
        .filter(|a| a.more)
        .filter_map(|a| a.records.last().map(|(place, _)| place.clone()))
        .min();
    let mut merged: BTreeMap<Cursor, Entry> = BTreeMap::new();
    for answer in piece.answers.into_values() {
        for (place, entry) in answer.records {
            if truncated.as_ref().is_some_and(|t| place > *t) {
                break;
            }
            let entry = match merged.remove(&place) {
                Some(held) => held.merge(entry),
                None => entry,
            };
            merged.insert(place, entry);
        }
    }
    let total = merged.len();
    for (i, (place, entry)) in merged.into_iter().enumerate() {
        let wanted = scan.prefix.as_ref().is_none_or(|p| place.key.starts_with(p));
        if let Some(value) = entry.materialize(now).value.filter(|_| wanted) {
            scan.item_bytes += place.key.len() + value.len();
            scan.items.push((place.key.clone(), value));
        }
        scan.cursor = place;
        if scan.items.len() >= scan.limit || scan.item_bytes >= BYTE_BUDGET {
            let complete = i + 1 == total && truncated.is_none() && piece.hi >= scan.end;
            return Step::Done { complete };
        }
    }
    if truncated.is_some() {
        return Step::Continue;
    }
    if piece.hi >= scan.end {
        return Step::Done { complete: true };
    }
    // hi < end <= u64::MAX, so the next position exists.
    scan.cursor = Cursor::before(piece.hi + 1);
    Step::Continue
}

/// Serves a coordinator's [`ReplicaMessage::RangeRead`] from the local store: the answer
/// to send, and the store's error when it failed to read (the answer then says so).
/// `changing`: this node's own change of the ring is under way. `None`: no answer (a
/// coordinator checks names before it asks; a peer that did not gets none).
pub(super) fn serve<S: Store>(
    replica: &Replica<S>,
    changing: bool,
    req: u64,
    collection: &str,
    interval: Interval,
    after: Option<(Position, Bytes)>,
    limit: u32,
) -> Option<(ReplicaMessage, Option<StoreError>)> {
    validate_collection(collection).ok()?;
    let limit = usize::try_from(limit).unwrap_or(MAX_RANGE_RECORDS);
    Some(match read_range(replica, collection, interval, after, limit) {
        Ok((records, more)) => (ReplicaMessage::RangeReply { req, records, more, changing }, None),
        Err(e) => (ReplicaMessage::RangeFailed { req, error: e.to_string() }, Some(e)),
    })
}

/// Up to `limit` (at most [`MAX_RANGE_RECORDS`]) records of `interval` after `after`,
/// tombstones included, stopping early once [`BYTE_BUDGET`] bytes are gathered (but
/// never before the first record). The flag says whether records remain.
fn read_range<S: Store>(
    replica: &Replica<S>,
    collection: &str,
    interval: Interval,
    after: Option<(Position, Bytes)>,
    limit: usize,
) -> Result<(Vec<(Bytes, Entry)>, bool), StoreError> {
    let limit = limit.clamp(1, MAX_RANGE_RECORDS);
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut last = after;
    let mut chunk = FIRST_CHUNK;
    loop {
        // One record more than the limit, to learn whether any remain.
        let want = (limit + 1 - out.len()).min(chunk);
        let page =
            replica.range(collection, interval, last.as_ref().map(|(p, k)| (*p, &k[..])), want)?;
        let exhausted = page.len() < want;
        for r in page {
            let size = r.key.len() + r.entry.size();
            if out.len() >= limit || (!out.is_empty() && bytes + size > BYTE_BUDGET) {
                return Ok((out, true));
            }
            bytes += size;
            last = Some((r.pos, r.key.clone()));
            out.push((r.key, r.entry));
        }
        if exhausted {
            return Ok((out, false));
        }
        // Read fewer records at once as they grow, so that a read never holds much more
        // than the budget in memory.
        let average = (bytes / out.len().max(1)).max(1);
        chunk = (BYTE_BUDGET.saturating_sub(bytes) / average).clamp(1, STORE_CHUNK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::Timestamp, proto::Message, store::MemStore};

    #[test]
    fn cursors_round_trip_and_order_like_the_store() {
        for c in [
            Cursor::before(0),
            Cursor::before(u64::MAX),
            Cursor { pos: 0x0102_0304_0506_0708, key: Bytes::from_static(b"key") },
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Ok(c.clone()));
        }
        let c = Cursor { pos: 1, key: Bytes::from_static(b"k") }.encode();
        assert_eq!(&c[..], b"\0\0\0\0\0\0\0\x01k", "position big-endian, then the key");
        assert!(Cursor::before(5) < Cursor { pos: 5, key: Bytes::from_static(b"\0") });
        assert!(Cursor { pos: 5, key: Bytes::from_static(b"zz") } < Cursor::before(6));
    }

    #[test]
    fn garbage_cursors_are_refused() {
        assert!(Cursor::decode(b"").is_err());
        assert!(Cursor::decode(b"1234567").is_err());
        assert!(Cursor::decode(&vec![0u8; 8 + MAX_KEY_LEN + 1]).is_err());
        assert!(Cursor::decode(b"12345678").is_ok());
        assert!(Cursor::decode(b"1234567").unwrap_err().contains("previous page"));
    }

    #[test]
    fn prefix_bounds_cover_exactly_the_prefix() {
        assert_eq!(prefix_bounds(b""), (0, u64::MAX));
        assert_eq!(prefix_bounds(b"a"), (0x6100_0000_0000_0000, 0x61FF_FFFF_FFFF_FFFF));
        assert_eq!(prefix_bounds(b"\xff"), (0xFF00_0000_0000_0000, u64::MAX));
        assert_eq!(prefix_bounds(&[0xFF; 8]), (u64::MAX, u64::MAX));
        assert_eq!(prefix_bounds(&[0xFF; 12]), (u64::MAX, u64::MAX));
        assert_eq!(prefix_bounds(b"\0"), (0, 0x00FF_FFFF_FFFF_FFFF));
        let long = b"abcdefghijk";
        let at = u64::from_be_bytes(*b"abcdefgh");
        assert_eq!(prefix_bounds(long), (at, at), "8 bytes or more pin one position");
        for key in [&b"ab"[..], b"ab\0", b"ab\xff\xff\xff\xff\xff\xff\xff", b"abc"] {
            let pos = crate::hash::ordered_position(key);
            let (lo, hi) = prefix_bounds(b"ab");
            assert!(lo <= pos && pos <= hi, "{key:?}");
        }
        for key in [&b"a"[..], b"aa\xff", b"ac"] {
            let pos = crate::hash::ordered_position(key);
            let (lo, hi) = prefix_bounds(b"ab");
            assert!(pos < lo || pos > hi, "{key:?}");
        }
    }

    fn entry(value: Option<&'static str>, ts: u64) -> Entry {
        let value = value.map(|v| Bytes::from_static(v.as_bytes()));
        Entry { value, ts: Timestamp(ts), origin: NodeId(1), expires: None }
    }

    fn page_state(limit: usize, hi: Position) -> Scan {
        Scan {
            client: 1,
            id: 1,
            collection: "ordered.t".into(),
            prefix: None,
            limit,
            consistency: Consistency::Quorum,
            end: u64::MAX,
            cursor: Cursor::before(0),
            started: 0,
            deadline: 1,
            reads: 1,
            items: Vec::new(),
            item_bytes: 0,
            piece: Piece {
                hi,
                replicas: vec![NodeId(1), NodeId(2)],
                required: 2,
                ..Piece::default()
            },
        }
    }

    fn place(key: &'static str) -> Cursor {
        Cursor {
            pos: crate::hash::ordered_position(key.as_bytes()),
            key: Bytes::from_static(key.as_bytes()),
        }
    }

    #[test]
    fn merging_stops_at_the_first_truncated_replica_and_newest_wins() {
        let mut scan = page_state(10, u64::MAX - 1);
        // Node 1 stopped early after "b"; node 2 sent everything, with a newer "a" and
        // a deleted "c".
        let one = vec![(place("a"), entry(Some("old"), 1)), (place("b"), entry(Some("b"), 1))];
        let two = vec![
            (place("a"), entry(Some("new"), 2)),
            (place("c"), entry(None, 2)),
            (place("d"), entry(Some("d"), 1)),
        ];
        scan.piece.answers.insert(NodeId(1), Answer { records: one, more: true });
        scan.piece.answers.insert(NodeId(2), Answer { records: two, more: false });
        assert!(matches!(absorb(0, &mut scan), Step::Continue));
        let keys: Vec<_> = scan.items.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(
            keys,
            vec![(Bytes::from("a"), Bytes::from("new")), (Bytes::from("b"), Bytes::from("b"))],
            "nothing past node 1's last record; the newer write of a wins"
        );
        assert_eq!(scan.cursor, place("b"));
    }

    #[test]
    fn tombstones_and_expired_entries_move_the_cursor_but_not_into_the_page() {
        let mut scan = page_state(10, u64::MAX);
        let mut expired = entry(Some("gone"), 1);
        expired.expires = Some(50);
        let records = vec![(place("\0a"), entry(None, 1)), (place("\0b"), expired)];
        scan.piece.answers.insert(NodeId(1), Answer { records, more: false });
        assert!(matches!(absorb(100, &mut scan), Step::Done { complete: true }));
        assert!(scan.items.is_empty());
        assert_eq!(scan.cursor, place("\0b"));
    }

    #[test]
    fn a_full_page_keeps_a_cursor_unless_nothing_can_follow() {
        let mut scan = page_state(1, 1 << 60);
        scan.piece.answers.insert(
            NodeId(1),
            Answer { records: vec![(place("\0x"), entry(Some("x"), 1))], more: false },
        );
        assert!(matches!(absorb(0, &mut scan), Step::Done { complete: false }), "pieces follow");
        let mut scan = page_state(1, u64::MAX);
        scan.piece.answers.insert(
            NodeId(1),
            Answer { records: vec![(place("\0x"), entry(Some("x"), 1))], more: false },
        );
        assert!(matches!(absorb(0, &mut scan), Step::Done { complete: true }), "last piece");
        let mut scan = page_state(5, 100);
        scan.piece.answers.insert(NodeId(1), Answer { records: vec![], more: false });
        assert!(matches!(absorb(0, &mut scan), Step::Continue));
        assert_eq!(scan.cursor, Cursor::before(101), "an exhausted piece moves to the next");
    }

    #[test]
    fn range_messages_round_trip_through_frames() {
        let messages = [
            ReplicaMessage::RangeRead {
                req: 9,
                collection: "ordered.t".into(),
                interval: Interval::new(u64::MAX, 17),
                after: Some((3, Bytes::from_static(b"k"))),
                limit: 37,
            },
            ReplicaMessage::RangeReply {
                req: 9,
                records: vec![(Bytes::from_static(b"k"), entry(None, 4))],
                more: true,
                changing: true,
            },
        ];
        for m in messages {
            let m = Message::Replica(m);
            let frame = crate::wire::encode(&m).unwrap();
            assert_eq!(crate::wire::decode(&frame).unwrap(), m);
        }
    }

    #[test]
    fn range_replies_respect_the_limit_and_the_byte_budget() {
        let mut replica = Replica::new(MemStore::new()).unwrap();
        for i in 0..10u8 {
            replica.merge("ordered.t", Bytes::from(vec![b'k', i]), entry(Some("v"), 1)).unwrap();
        }
        let all = Interval::full();
        let (records, more) = read_range(&replica, "ordered.t", all, None, 4).unwrap();
        assert_eq!((records.len(), more), (4, true));
        let after = Some((crate::hash::ordered_position(b"k\x03"), Bytes::from_static(b"k\x03")));
        let (records, more) = read_range(&replica, "ordered.t", all, after, 100).unwrap();
        assert_eq!((records.len(), more), (6, false));
        assert_eq!(records[0].0, Bytes::from_static(b"k\x04"));
        let (records, more) = read_range(&replica, "ordered.t", all, None, 10).unwrap();
        assert_eq!((records.len(), more), (10, false), "exactly the limit, nothing after");

        let big = Bytes::from(vec![7u8; 3 * 1024 * 1024]);
        for key in ["x1", "x2", "x3"] {
            let e = Entry {
                value: Some(big.clone()),
                ts: Timestamp(1),
                origin: NodeId(1),
                expires: None,
            };
            replica.merge("big", Bytes::from(key), e).unwrap();
        }
        let (records, more) = read_range(&replica, "big", all, None, 1000).unwrap();
        assert_eq!((records.len(), more), (1, true), "one 3 MiB record; two would pass 4 MiB");
    }
}
