//! Client sync: a client's local copy pulls from this node's replica through the
//! Merkle sync protocol, the node's side push-only, over intervals it replicates.

use super::{error, reply_to, Env, Timer, WatchOutput, Watches};
use crate::{
    entry::NodeId,
    hash::{Interval, Position},
    membership::Status,
    node::ClientId,
    proto::{
        client::{ErrorCode, Reply},
        SyncBody, SyncMessage,
    },
    ring::RingTable,
    store::Store,
    sync::{SyncConfig, SyncError, SyncSession},
    Millis,
};

/// The maximal runs of the ring `me` replicates in `table`, each token's replicas given
/// by `list`.
pub(in crate::node) fn replicated_runs(
    table: &RingTable,
    me: NodeId,
    list: impl Fn(Position) -> Vec<NodeId>,
) -> Vec<Interval> {
    let v = table.vnodes();
    let len = v.len();
    let flags: Vec<bool> = (0..len).map(|i| list(v[i].pos).contains(&me)).collect();
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

impl Watches {
    /// A client's step of a sync session against this node (push-only on this side).
    /// `runs` are the intervals of the collection this node replicates.
    pub(super) fn client_sync<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        client: ClientId,
        id: u64,
        msg: SyncMessage,
        runs: Vec<Interval>,
    ) {
        let key = (client, msg.session);
        self.changed.insert(Timer::Sync(client, msg.session));
        let out = match msg.body {
            SyncBody::Begin { range, .. } => {
                self.begin_client_sync(env, now, key, id, range, msg, runs)
            }
            _ => match self.syncs.remove(&key) {
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
                Some((mut session, _)) => match session.handle(env.replica, msg) {
                    Ok(Some(reply)) => {
                        if session.is_open() {
                            self.syncs.insert(key, (session, now));
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

    #[allow(clippy::too_many_arguments)]
    fn begin_client_sync<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        key: (ClientId, u64),
        id: u64,
        range: Interval,
        msg: SyncMessage,
        runs: Vec<Interval>,
    ) -> WatchOutput {
        let client = key.0;
        if self.syncs.contains_key(&key) {
            let msg = format!("sync session {} is already open: pick another session id", key.1);
            return error(client, id, ErrorCode::InvalidInput, msg);
        }
        if self.syncs.len() >= self.config.max_client_syncs {
            let msg = "this node runs the most client sync sessions it allows; retry shortly";
            return error(client, id, ErrorCode::Unavailable, msg);
        }
        if env.membership.me().status != Status::Alive {
            let msg = "this node is not serving (it is joining or re-syncing); sync with another \
                       replica or retry shortly";
            return error(client, id, ErrorCode::Unavailable, msg);
        }
        if !runs.iter().any(|r| r.contains_interval(&range)) {
            let msg = format!(
                "this node does not replicate all of {range}: sync each interval between ring \
                 tokens (see ring) with one of its replicas"
            );
            return error(client, id, ErrorCode::InvalidInput, msg);
        }
        match SyncSession::accept(env.replica, msg, SyncConfig::push_only()) {
            Ok((session, reply)) => {
                if session.is_open() {
                    self.syncs.insert(key, (session, now));
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

    #[test]
    fn replicated_runs_cover_exactly_the_intervals_whose_replicas_include_the_node() {
        let members: Vec<(NodeId, Vec<u64>)> =
            (1..=5).map(|i| (NodeId(i), tokens_for(NodeId(i), 8))).collect();
        let table = RingTable::new(members.iter().map(|(id, t)| (*id, t.as_slice())));
        assert_eq!(
            replicated_runs(&table, NodeId(1), |p| table.preference_list(p, 5)),
            vec![Interval::full()]
        );
        for n in 1..=3 {
            let runs = replicated_runs(&table, NodeId(2), |p| table.preference_list(p, n));
            let v = table.vnodes();
            for (i, vn) in v.iter().enumerate() {
                let prev = v[(i + v.len() - 1) % v.len()].pos;
                let piece = Interval::new(prev, vn.pos);
                let mine = table.preference_list(vn.pos, n).contains(&NodeId(2));
                let covered = runs.iter().any(|r| r.contains_interval(&piece));
                assert_eq!(mine, covered, "n={n} piece {piece}");
            }
        }
        assert!(replicated_runs(&RingTable::default(), NodeId(1), |_| Vec::new()).is_empty());
    }
}
