//! An acknowledged write is never undone by an older clock: replicas say when they
//! already hold a newer version, and the coordinator re-stamps above it.
//!
//! Last-writer-wins orders writes by their timestamps, and a coordinator stamps with its
//! own hybrid clock. A coordinator whose clock is behind (by seconds, or by a few hundred
//! milliseconds within the max offset) would stamp write B below a write A that was
//! acknowledged before B began; B's replicas would keep A and still acknowledge B, and
//! the client would hold a 200 for a write that silently lost. So:
//!
//! - **The replica answers what it kept.** A replica merging a write whose record loses
//!   to a *different* entry it already holds (store outcome `Kept`, the stored entry's
//!   `(timestamp, origin)` differs from the record's — an identical retransmit is a plain
//!   acknowledgement) answers `WriteAck { newer: Some(ts) }`, `ts` the newest such stored
//!   timestamp, instead of a plain acknowledgement (`newer_stored`). The coordinator's
//!   own replica is asked the same way.
//! - **The coordinator re-stamps.** Before it answered the client, a coordinator told
//!   `newer` adopts that timestamp into its clock, stamps the request's entries again
//!   (above it: the clock now issues only larger timestamps), and sends them to every
//!   replica again under a fresh request number, so acknowledgements of the old stamp
//!   never count for the new one (`Coordinator::on_newer`). Deletes are entries (tombstones) and
//!   re-stamp the same way; a hint kept at the timeout carries the final entry. After
//!   [`MAX_RESTAMPS`] attempts the client gets [`ErrorCode::Conflict`] — never a 200
//!   for a write that lost.
//! - **A version from a broken clock** — further ahead of this node's wall clock than
//!   the max offset, so the clock cannot adopt it (and every other replica refuses it) —
//!   does not block the key: that replica counts as refusing the write (no
//!   acknowledgement, no hint), and the write succeeds if the other replicas make its
//!   consistency, else fails as refused by too many replicas.
//! - **After the answer** a `newer` means a concurrent write reached that replica later
//!   than ours; the client's answer stands and that replica is simply not hinted (it
//!   holds something newer).
//!
//! **Why an acknowledged B wins.** Suppose write A of a key was acknowledged by W
//! replicas before write B of it began, and B is acknowledged by W replicas, with
//! W + W > N. The two sets of replicas intersect, so one of B's acknowledging replicas
//! held A (or something newer) when B's final stamp reached it. That replica acknowledges
//! plainly only when B's record is stored, i.e. B's stamp beats what it held — A
//! included. So an acknowledged B is above A on every replica, whatever the
//! coordinators' clocks: B wins.

use super::{error, Coordinator, Env, KeyState, Kind};
use crate::{
    clock::Timestamp,
    entry::{Entry, NodeId, Version},
    node::{NodeEvent, Output},
    proto::{client::ErrorCode, ClientResponse, Message, ReplicaMessage},
    replica::Replica,
    store::{Merged, Store, StoreError},
    Millis,
};
use bytes::Bytes;
use std::collections::VecDeque;

/// How many times a coordinator re-stamps one write before it answers
/// [`ErrorCode::Conflict`]. Each attempt stamps above every version a replica reported,
/// so only writes racing in between can make it lose again.
pub const MAX_RESTAMPS: u32 = 3;

/// The newest timestamp of the entries that beat records of a merge: for each record
/// the store `Kept`, the stored entry when it is a different write (its `(timestamp,
/// origin)` differs from the record's) that supersedes the record. `None` when every
/// record was stored or was already there as is.
pub(in crate::node) fn newer_stored<S: Store>(
    replica: &Replica<S>,
    collection: &str,
    written: &[(Bytes, Version)],
    outcomes: &[Merged],
) -> Result<Option<Timestamp>, StoreError> {
    let mut newest: Option<Timestamp> = None;
    for ((key, version), outcome) in written.iter().zip(outcomes) {
        if outcome.changed() {
            continue;
        }
        let Some(stored) = replica.get(collection, key)? else { continue };
        let same_write = stored.ts == version.ts && stored.origin == version.origin;
        if !same_write && stored.version() > *version {
            newest = newest.max(Some(stored.ts));
        }
    }
    Ok(newest)
}

/// What a replica answers to a write it merged with `outcomes`: a plain acknowledgement,
/// or the newest timestamp that beat it (see [`newer_stored`]); a store that cannot say
/// refuses the write (and the store's failure goes to `outputs`).
pub(in crate::node) fn answer<S: Store>(
    replica: &Replica<S>,
    outputs: &mut VecDeque<Output>,
    collection: &str,
    written: &[(Bytes, Version)],
    outcomes: &[Merged],
) -> (Option<String>, Option<Timestamp>) {
    match newer_stored(replica, collection, written, outcomes) {
        Ok(newer) => (None, newer),
        Err(e) => {
            outputs.push_back(Output::Event(NodeEvent::StoreFailed(e.clone())));
            (Some(e.to_string()), None)
        }
    }
}

/// Sends the entries of write `req` to every replica of its keys, merging the local
/// replica's share at once. Returns the newer timestamp the local replica holds, if its
/// merge lost (then its acknowledgement is neither counted nor held).
pub(super) fn dispatch<S: Store>(
    env: &mut Env<'_, S>,
    req: u64,
    collection: &str,
    states: &mut [KeyState],
    entries: &[Entry],
    errors: &mut Vec<String>,
    refused: &mut Vec<NodeId>,
) -> Option<Timestamp> {
    let me = env.me();
    let mut newer = None;
    for (replica, indices) in &super::by_replica(states) {
        let records: Vec<(Bytes, Entry)> =
            indices.iter().map(|&i| (states[i].key.clone(), entries[i].clone())).collect();
        if *replica != me {
            let msg = ReplicaMessage::Write { req, collection: collection.to_string(), records };
            env.send(*replica, Message::Replica(msg));
            continue;
        }
        match merge_local(env.replica, collection, records) {
            Ok(Some(ts)) => newer = Some(ts),
            // Counted once the write is durable (see `super::super::durability`).
            Ok(None) if !env.replica.store().durable_on_write() => {
                env.durability.hold_local_ack(env.replica.writes(), req)
            }
            Ok(None) => indices.iter().for_each(|&i| {
                states[i].answers.insert(me, None);
            }),
            Err(e) => {
                env.outputs.push_back(Output::Event(NodeEvent::StoreFailed(e.clone())));
                errors.push(e.to_string());
                refused.push(me);
            }
        }
    }
    newer
}

/// Merges a write's `records` into this node's replica: the newer timestamp it holds
/// for one of them, if its merge lost (see [`newer_stored`]).
pub(super) fn merge_local<S: Store>(
    replica: &mut Replica<S>,
    collection: &str,
    records: Vec<(Bytes, Entry)>,
) -> Result<Option<Timestamp>, StoreError> {
    let written: Vec<(Bytes, Version)> =
        records.iter().map(|(k, e)| (k.clone(), e.version())).collect();
    let outcomes = replica.merge_batch(collection, records)?;
    newer_stored(replica, collection, &written, &outcomes)
}

/// [`merge_local`] of one record, without the vectors a batch needs: the commonest
/// write, one key this node settles alone.
pub(super) fn merge_local_one<S: Store>(
    replica: &mut Replica<S>,
    collection: &str,
    key: Bytes,
    entry: Entry,
) -> Result<Option<Timestamp>, StoreError> {
    let version = entry.version();
    let outcome = replica.merge(collection, key.clone(), entry)?;
    newer_stored(replica, collection, &[(key, version)], &[outcome])
}

impl Coordinator {
    /// Replica `from` (this node included) holds a write newer than write `req`'s stamp, up
    /// to `newer`: re-stamp above it and send again, or answer [`ErrorCode::Conflict`] (see
    /// the module docs).
    pub(super) fn on_newer<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        req: u64,
        newer: Timestamp,
    ) {
        let Some(p) = self.pending.get_mut(&req) else { return };
        let Kind::Write { restamps, .. } = &p.kind else { return };
        let restamps = *restamps;
        if p.replied {
            // A concurrent write reached `from` after ours was acknowledged: the answer
            // stands, and no hint is kept for a replica holding something newer.
            p.refused.push(from);
            return self.progress(env, now, req);
        }
        if restamps >= MAX_RESTAMPS {
            let msg = format!(
                "the write lost to a newer write of the same key (stamped {newer}) {} times \
                 after re-stamping; nothing was acknowledged; retry",
                restamps + 1
            );
            return self.conflict(env, now, from, req, msg);
        }
        if let Err(e) = env.clock.update(newer, now) {
            // Stamped by a broken clock (more than the max offset ahead of ours, refused
            // everywhere else): that replica does not acknowledge, and does not block the
            // write either — the others may still make its consistency.
            if let Some(p) = self.pending.get_mut(&req) {
                if let Kind::Write { errors, .. } = &mut p.kind {
                    errors.push(format!(
                        "{from}: holds a write of the key stamped {newer}, which this node \
                         cannot stamp above ({e}): not acknowledged"
                    ));
                }
                p.refused.push(from);
            }
            return self.progress(env, now, req);
        }
        let Some(mut p) = self.remove(req) else { return };
        let ts = env.clock.now(now);
        let entries: Vec<Entry> = p
            .keys
            .iter()
            .filter_map(|k| k.entry.clone())
            .map(|e| {
                let ttl = e.expires.map(|x| x.saturating_sub(e.ts.physical_ms()));
                let expires = ttl.map(|t| ts.physical_ms().saturating_add(t));
                Entry { ts, origin: env.me(), expires, ..e }
            })
            .collect();
        for (k, e) in p.keys.iter_mut().zip(&entries) {
            k.entry = Some(e.clone());
            k.answers.clear();
        }
        p.refused.clear();
        let mut errors = Vec::new();
        let new_req = env.ids.next(crate::node::ids::Concern::Coordinator);
        let local = dispatch(
            env,
            new_req,
            &p.collection,
            &mut p.keys,
            &entries,
            &mut errors,
            &mut p.refused,
        );
        p.kind = Kind::Write { ts, errors, restamps: restamps + 1 };
        let cost = p.cost;
        self.insert(new_req, p, cost);
        match local {
            Some(t) => self.on_newer(env, now, env.me(), new_req, t),
            None => self.progress(env, now, new_req),
        }
    }

    /// Answers write `req` with [`ErrorCode::Conflict`]; `from` gets no hint.
    fn conflict<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        req: u64,
        msg: String,
    ) {
        let Some(p) = self.pending.get_mut(&req) else { return };
        p.replied = true;
        p.refused.push(from);
        let acked = Some(p.acked());
        let mut resp: ClientResponse = error(p.id, ErrorCode::Conflict, msg);
        if let crate::proto::client::Reply::Error { acked: a, .. } = &mut resp.result {
            *a = acked;
        }
        let client = p.client;
        env.outputs.push_back(Output::Reply { client, resp });
        self.progress(env, now, req);
    }
}
