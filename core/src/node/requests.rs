//! A client's request: which part of the node answers it — the coordinator (reads and
//! writes), the scans, the watches, the node itself (stats, the ring, removing a
//! member) — and what the node answers about itself.

use super::{ClientId, Node, Output};
use crate::{
    membership::Status,
    proto::{
        client::{ErrorCode, NodeStats, Op, Progress, Reply, RingMember, SyncStats},
        ClientRequest, ClientResponse,
    },
    store::Store,
    Millis,
};
use std::collections::BTreeMap;

fn error(id: u64, code: ErrorCode, message: impl Into<String>) -> ClientResponse {
    ClientResponse::error(id, code, message)
}

/// Hands `req` from `client` to the part of the node that answers it.
pub(super) fn dispatch<S: Store>(
    node: &mut Node<S>,
    now: Millis,
    client: ClientId,
    req: ClientRequest,
) {
    let id = req.id;
    if !matches!(req.op, Op::Stats | Op::Ring | Op::Auth { .. }) {
        node.coordinator.count_request();
    }
    let reply = |node: &mut Node<S>, resp: ClientResponse| {
        node.outputs.push_back(Output::Reply { client, resp });
    };
    // Whatever the client saw is adopted before anything is stamped: its next write is
    // stamped above it, through any node.
    if let Some(seen) = req.seen {
        if let Err(e) = node.clock.update(seen, now) {
            let msg = format!("the client's last seen timestamp is not acceptable: {e}");
            return reply(node, error(id, ErrorCode::InvalidInput, msg));
        }
    }
    // Scans count too: each page being assembled may hold up to its byte budget.
    let scans = node.scans.in_flight();
    if let Err(msg) = node.coordinator.admit(&req.op, scans, node.config.pending) {
        return reply(node, error(id, ErrorCode::Unavailable, msg));
    }
    match req.op {
        Op::Get { collection, key, consistency } => {
            let (c, mut env) = node.coordinator_parts();
            c.start_read(&mut env, now, client, id, collection, vec![key], consistency, false)
        }
        Op::GetMany { collection, keys, consistency } => {
            let (c, mut env) = node.coordinator_parts();
            c.start_read(&mut env, now, client, id, collection, keys, consistency, true)
        }
        Op::Set { collection, key, value, consistency, ttl_ms } => {
            let items = vec![(key, Some(value))];
            let (c, mut env) = node.coordinator_parts();
            c.start_write(&mut env, now, client, id, collection, items, consistency, ttl_ms)
        }
        Op::SetMany { collection, items, consistency, ttl_ms } => {
            let items = items.into_iter().map(|(k, v)| (k, Some(v))).collect();
            let (c, mut env) = node.coordinator_parts();
            c.start_write(&mut env, now, client, id, collection, items, consistency, ttl_ms)
        }
        Op::Del { collection, key, consistency } => {
            let items = vec![(key, None)];
            let (c, mut env) = node.coordinator_parts();
            c.start_write(&mut env, now, client, id, collection, items, consistency, None)
        }
        Op::Stats => {
            let stats = local_stats(node);
            reply(node, ClientResponse { id, result: Reply::Stats(Box::new(stats)), ts: None });
        }
        Op::Ring => {
            let members = node.ring();
            reply(node, ClientResponse { id, result: Reply::Ring { members }, ts: None });
        }
        Op::RemoveMember { id: member, force } => {
            use super::remove::RemoveError;
            let answer = match node.remove_member(now, member, force) {
                Ok(()) => ClientResponse { id, result: Reply::Ok, ts: None },
                Err(e) => {
                    let code = match e {
                        RemoveError::NotFound(_) => ErrorCode::NotFound,
                        RemoveError::Myself(_) | RemoveError::NotDead(..) => {
                            ErrorCode::InvalidInput
                        }
                        RemoveError::ChangeUnderWay | RemoveError::Busy(_) => {
                            ErrorCode::Unavailable
                        }
                    };
                    error(id, code, e.to_string())
                }
            };
            reply(node, answer);
        }
        scan @ Op::Scan { .. } => node.start_scan(now, client, id, scan),
        op @ (Op::Watch { .. } | Op::Unwatch { .. } | Op::Sync { .. }) => {
            node.start_watch(now, client, id, op)
        }
        // Authentication and token management belong to the host, which answers them
        // before anything reaches the node (see `crate::auth`).
        Op::Auth { .. }
        | Op::TokenCreate { .. }
        | Op::TokenList
        | Op::TokenRevoke { .. }
        | Op::CollectionCreate { .. }
        | Op::CollectionAlter { .. }
        | Op::CollectionShow { .. }
        | Op::CollectionList
        | Op::CollectionDrop { .. } => {
            let msg = "tokens are handled by the server hosting the node, not by the node: \
                       this host does not support them";
            reply(node, error(id, ErrorCode::Unsupported, msg));
        }
    }
}

impl<S: Store> Node<S> {
    /// Counts and sizes of this node and the state of its background work (what
    /// [`Op::Stats`] answers).
    pub fn stats(&self) -> NodeStats {
        local_stats(self)
    }

    /// Every member this node knows, with its tokens and status (what [`Op::Ring`]
    /// answers).
    pub fn ring(&self) -> Vec<RingMember> {
        self.membership
            .members()
            .map(|m| RingMember {
                id: m.id,
                addr: m.addr.clone(),
                tokens: m.tokens.clone(),
                status: m.status.to_string(),
                // Not an owner although not gone: joining, or never served.
                joining: m.status != Status::Left && !m.owns(),
                leaving: m.leaving(),
                labels: m.labels.clone(),
            })
            .collect()
    }
}

fn local_stats<S: Store>(node: &Node<S>) -> NodeStats {
    let mut stats = NodeStats { node: node.id(), ..NodeStats::default() };
    let store = node.replica.store();
    for c in store.collections().unwrap_or_default() {
        if let Ok(s) = store.stats(&c) {
            stats.keys += s.entries;
            stats.tombstones += s.tombstones;
            stats.bytes += s.bytes;
            stats.collections += 1;
        }
    }
    stats.storage = store.health();
    stats.status = node.membership.me().status.to_string();
    for m in node.membership.members() {
        let c = &mut stats.members;
        match m.status {
            Status::Alive => c.alive += 1,
            Status::Syncing => c.syncing += 1,
            Status::Suspect => c.suspect += 1,
            Status::Dead => c.dead += 1,
            Status::Left => c.left += 1,
        }
    }
    let ae = &node.anti_entropy;
    let (completed, failed) = node.sessions.counts();
    let progress = |p: super::antientropy::HandoffProgress| Progress {
        done: p.done as u64,
        total: p.total as u64,
        entries: p.entries,
    };
    stats.sync = SyncStats {
        running: node.sessions.running() as u64,
        completed,
        failed,
        entries_received: node.sessions.entries_received(),
        cleaned: ae.cleaned(),
        last_full_sync_ms: node.state.last_full_sync_ms,
        handoff: ae.handoff().map(progress),
        leaving: node.leave_progress().map(progress),
    };
    stats.hints_pending = node.hints.pending() as u64;
    stats.hints_delivered = node.hints.delivered();
    stats.tombstones_purged = node.gc.purged();
    stats.expired = node.gc.expired();
    stats.requests = node.coordinator.requests();
    stats.replicas = u32::try_from(node.config.replicas).unwrap_or(u32::MAX);
    stats.clock = Box::new(super::skew::clock_stats(&node.clocks));
    // The layouts collections use other than the cluster's, each with the labels it
    // places by when it places by any (what a light peer plans local copies by).
    let layouts = &mut stats.layouts;
    let mut seen: BTreeMap<&crate::catalogue::LabelSnapshot, u32> = BTreeMap::new();
    let own = node.view.catalogue.layouts().filter(|(_, s)| s.current != Default::default());
    for (name, state) in own.take(crate::catalogue::MAX_ENTRIES) {
        let labels = (state.current.spread() != Default::default()).then(|| {
            *seen.entry(&state.labels).or_insert_with(|| {
                layouts.labels.push(state.labels.clone());
                u32::try_from(layouts.labels.len() - 1).unwrap_or(u32::MAX)
            })
        });
        layouts.collections.push(crate::proto::client::CollectionLayout {
            collection: name.to_string(),
            layout: state.current.clone(),
            labels,
        });
    }
    stats
}
