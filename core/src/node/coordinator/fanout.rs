//! Which replicas a read asks, and for what: digest reads.
//!
//! A read that asked every replica for its entry made every replica read, encode and
//! send the value, and the coordinator decode all of them — three times the work of one
//! read at N = 3, whatever the level. When no change of the ring is under way, a read
//! now asks only as many replicas as its level needs (`one`: 1, `quorum` of 3: 2), this
//! node first when it is one of them: the first for the data, the others only for the
//! version they hold ([`ReplicaMessage::ReadVersions`] — Cassandra's digest reads,
//! with the version itself as the digest, so a disagreement says at once who is newer).
//!
//! - **The data is the newest answered, or the read waits for it.** When a version
//!   answered is newer than every data answer, that replica is asked for its data
//!   ([`upgrade`]) and the read is answered when it comes. So the value a read returns
//!   is the newest among `required` replicas, as when every replica was asked.
//! - **Replicas not asked are asked when one fails or is slow.** A replica that fails
//!   its read makes the coordinator ask the others at once; a read still unanswered
//!   after [`SPECULATE_MS`] asks them too (Cassandra's speculative retry), so a replica
//!   that died before the failure detector noticed costs a read that much, not its
//!   timeout. Then too a replica that has not answered a version read is asked for the
//!   data instead: a node of an earlier version drops the version read it does not
//!   know, and answers this.
//! - **Read repair covers the replicas asked.** A replica whose version (or entry) is
//!   older than the answer is sent the newest entry, as before; the replicas not asked
//!   are brought up to date by anti-entropy (the Merkle exchange), not by reads.
//!
//! During a change of the ring (a joint read with future owners, pending replicas, this
//! node's own change under way) every replica is asked for its data, as before: the
//! rules for counting future owners need every answer.

use super::{Coordinator, Env, KeyState, Kind};
use crate::{
    entry::NodeId,
    proto::{Message, ReplicaMessage},
    store::Store,
    Millis,
};
use bytes::Bytes;
use std::collections::BTreeMap;

/// How long a read that asked fewer replicas than it could waits for them before it
/// asks the others too.
pub const SPECULATE_MS: Millis = 50;

/// Decides whom each key of a new read asks: `asked`, `data_from` and `waiting`.
pub(super) fn narrow<S: Store>(env: &Env<'_, S>, states: &mut [KeyState]) {
    let me = env.me();
    let changing = env.membership.me().changing();
    for k in states.iter_mut() {
        let plain = k.joints.is_empty()
            && !changing
            && k.replicas.iter().all(|r| k.counted.contains(r))
            && k.required <= k.replicas.len();
        if plain && k.required > 0 {
            // This node first when it holds the key: its read costs no message.
            let mut order: Vec<NodeId> = k.replicas.iter().copied().filter(|r| *r == me).collect();
            order.extend(k.replicas.iter().copied().filter(|r| *r != me));
            order.truncate(k.required);
            k.data_from = vec![order[0]];
            k.asked = order;
        } else {
            k.asked = k.replicas.clone();
            k.data_from = k.replicas.clone();
        }
        k.waiting = k.asked.clone();
    }
}

/// What each replica asked is asked: the indices of its keys, and whether for the data
/// (`true`) or for versions. A replica asked for the data of any key is asked for the
/// data of all its keys — one question per replica — and `data_from` says so.
pub(super) fn asks(states: &mut [KeyState]) -> BTreeMap<NodeId, (Vec<usize>, bool)> {
    let mut out: BTreeMap<NodeId, (Vec<usize>, bool)> = BTreeMap::new();
    for (i, k) in states.iter().enumerate() {
        for r in &k.asked {
            let ask = out.entry(*r).or_default();
            ask.0.push(i);
            ask.1 |= k.data_from.contains(r);
        }
    }
    for (r, (indices, data)) in &out {
        for &i in indices {
            if *data && !states[i].data_from.contains(r) {
                states[i].data_from.push(*r);
            }
        }
    }
    out
}

/// Sends `replica` the read of `keys`: for the data, or for the versions.
pub(super) fn send<S: Store>(
    env: &mut Env<'_, S>,
    replica: NodeId,
    req: u64,
    collection: &str,
    keys: Vec<Bytes>,
    data: bool,
) {
    let collection = collection.to_string();
    let msg = if data {
        ReplicaMessage::Read { req, collection, keys }
    } else {
        ReplicaMessage::ReadVersions { req, collection, keys }
    };
    env.send(replica, Message::Replica(msg));
}

impl Coordinator {
    /// Asks the replicas of read `req` not asked yet, for the data, about the keys not
    /// answered enough — after a replica failed, or [`SPECULATE_MS`] passed.
    pub(super) fn widen<S: Store>(&mut self, env: &mut Env<'_, S>, req: u64) {
        let Some(p) = self.pending.get_mut(&req) else { return };
        p.widen_at = None;
        self.settle(req);
        let Some(p) = self.pending.get_mut(&req) else { return };
        if p.replied || !matches!(p.kind, Kind::Read { .. }) {
            return;
        }
        // Replicas still silent about versions: asked for the data instead (below), and no
        // longer awaited about versions for any key.
        let silent: Vec<NodeId> = p
            .keys
            .iter()
            .flat_map(|k| k.waiting.iter().filter(|r| !k.data_from.contains(r)))
            .copied()
            .collect();
        let mut out: BTreeMap<NodeId, Vec<Bytes>> = BTreeMap::new();
        for k in p.keys.iter_mut() {
            if k.satisfied() {
                k.waiting.retain(|r| k.data_from.contains(r) || !silent.contains(r));
                continue;
            }
            let more: Vec<NodeId> =
                k.replicas.iter().copied().filter(|r| !k.asked.contains(r)).collect();
            for r in more {
                k.asked.push(r);
                k.data_from.push(r);
                k.waiting.push(r);
                out.entry(r).or_default().push(k.key.clone());
            }
            // A replica still silent about its version is asked for the data instead (a
            // node of an earlier version does not know version reads); a late answer about
            // versions then matches no question and is ignored.
            for r in k.waiting.clone() {
                if silent.contains(&r) && !k.data_from.contains(&r) {
                    k.data_from.push(r);
                    out.entry(r).or_default().push(k.key.clone());
                }
            }
        }
        let collection = p.collection.clone();
        for (replica, keys) in out {
            send(env, replica, req, &collection, keys, true);
        }
    }

    /// Widens every read whose [`SPECULATE_MS`] passed by `now` ([`widen`]).
    pub(in crate::node) fn widen_due<S: Store>(&mut self, env: &mut Env<'_, S>, now: Millis) {
        for req in self.due_to_widen(now) {
            self.widen(env, req);
        }
    }

    /// Asks for the data of the replicas whose version is newer than every data answer of
    /// a key, once every replica asked for that key's data has answered.
    pub(super) fn upgrade<S: Store>(&mut self, env: &mut Env<'_, S>, req: u64) {
        let Some(p) = self.pending.get_mut(&req) else { return };
        if p.replied || !matches!(p.kind, Kind::Read { .. }) {
            return;
        }
        let mut out: BTreeMap<NodeId, Vec<Bytes>> = BTreeMap::new();
        for k in p.keys.iter_mut() {
            if k.waiting.iter().any(|r| k.data_from.contains(r)) {
                continue;
            }
            let best = k.best_version();
            let newer: Vec<NodeId> = k
                .versions
                .iter()
                .filter(|(r, v)| {
                    !k.data_from.contains(r) && v.is_some_and(|v| best.is_none_or(|b| v > b))
                })
                .map(|(r, _)| *r)
                .collect();
            for r in newer {
                k.data_from.push(r);
                k.waiting.push(r);
                out.entry(r).or_default().push(k.key.clone());
            }
        }
        let collection = p.collection.clone();
        for (replica, keys) in out {
            send(env, replica, req, &collection, keys, true);
        }
    }
}
