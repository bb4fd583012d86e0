//! The ring as a light peer sees it: the members of a node's [`Reply::Ring`] answer,
//! the token table of those that serve, and the two questions a light peer asks of it —
//! which nodes to send a key's request to, and how to cover the ring with as few sync
//! sessions as possible, each with a node that replicates its whole interval.
//!
//! The table is built exactly as a node builds its owners' table (every member that
//! has not left and is not joining, whatever its health: see `crate::ring::placement`),
//! so a light peer and the nodes agree on every preference list while their views of
//! the membership agree; only members that serve (`alive`) are given addresses, so
//! requests and sync sessions go to nodes that answer.
//!
//! [`Reply::Ring`]: crate::proto::client::Reply::Ring

use crate::{
    catalogue::LabelSnapshot,
    entry::NodeId,
    hash::{Interval, Placement, Position},
    proto::client::RingMember,
    ring::{RingTable, Spread},
};
use std::collections::BTreeMap;

/// The status of a member that serves requests.
const SERVING: &str = "alive";

/// The status of a member that left: it owns nothing.
const LEFT: &str = "left";

/// One piece of a [`RingView::sync_plan`]: an interval and the nodes that replicate all
/// of it, in preference order (the owner of its first token first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTarget {
    /// The interval to reconcile.
    pub range: Interval,
    /// Addresses of the nodes to run the session with, best first.
    pub nodes: Vec<String>,
}

/// The membership a light peer knows and the routing derived from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RingView {
    members: Vec<RingMember>,
    table: RingTable,
    addrs: BTreeMap<NodeId, String>,
}

impl RingView {
    /// The view of `members`, as a node's `Ring` answer lists them.
    pub fn new(members: Vec<RingMember>) -> Self {
        let serving = || members.iter().filter(|m| m.status == SERVING);
        let owning = members.iter().filter(|m| m.status != LEFT && !m.joining);
        let table = RingTable::new(owning.map(|m| (m.id, m.tokens.as_slice())));
        let addrs = serving().map(|m| (m.id, m.addr.clone())).collect();
        RingView { members, table, addrs }
    }

    /// Every member, whatever its status, in the order the node listed them.
    pub fn members(&self) -> &[RingMember] {
        &self.members
    }

    /// The token table of the owning members.
    pub fn table(&self) -> &RingTable {
        &self.table
    }

    /// Whether no member serves.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Addresses of the serving members, sorted.
    pub fn serving_addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = self.addrs.values().cloned().collect();
        out.sort();
        out.dedup();
        out
    }

    /// Where to send a request for `key` of `collection`: every serving node, its
    /// replicas first in preference order (the owner first), then the others clockwise.
    /// A light peer tries them in turn when one fails. Empty while nobody serves.
    pub fn route(&self, collection: &str, key: &[u8]) -> Vec<String> {
        let pos = Placement::of(collection).position(collection, key);
        self.addrs_of(&self.table.preference_list(pos, self.table.node_count()))
    }

    /// The fraction of the ring each owning member owns as primary, by id (a down
    /// member keeps its share: its ranges are not given to others).
    pub fn ownership(&self) -> Vec<(NodeId, f64)> {
        let mut ids: Vec<NodeId> = self.table.vnodes().iter().map(|v| v.node).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(|id| (id, self.table.ownership_share(id))).collect()
    }

    /// Intervals covering the whole ring, each with the serving nodes that replicate all
    /// of it when keys have `replicas` replicas on any member — the sessions a local copy
    /// of a collection using the cluster's layout runs to catch up with the cluster.
    pub fn sync_plan(&self, replicas: usize) -> Vec<SyncTarget> {
        let n = replicas.max(1);
        self.sync_plan_by(|pos| self.table.preference_list(pos, n))
    }

    /// As [`RingView::sync_plan`], for a collection whose layout puts `replicas`
    /// replicas on the members `spread` accepts, by the members' `labels` the layout
    /// places by (its [`LabelSnapshot`]): the lists every node computes for it
    /// ([`RingTable::preference_list_spread`]), so each piece goes to nodes that serve
    /// it. With the default spread it is [`RingView::sync_plan`].
    pub fn sync_plan_spread(
        &self,
        replicas: usize,
        spread: &Spread,
        labels: &LabelSnapshot,
    ) -> Vec<SyncTarget> {
        if *spread == Spread::default() {
            return self.sync_plan(replicas);
        }
        let n = replicas.max(1);
        self.sync_plan_by(|pos| {
            self.table.preference_list_spread(pos, n, spread, |id| labels.get(&id))
        })
    }

    /// Intervals covering the whole ring, each with the serving nodes that replicate all
    /// of it, the replicas of a position (in preference order) being `replicas_of(pos)`.
    ///
    /// Walking the tokens in ring order, consecutive token intervals join one piece as
    /// long as some node replicates all of them (their preference lists intersect); a
    /// ring where one node replicates everything is one session over the whole ring.
    /// The nodes of a piece keep the preference order of its first token; a piece no
    /// serving node replicates has none (its sessions fail, and the copy retries).
    pub fn sync_plan_by(&self, replicas_of: impl Fn(Position) -> Vec<NodeId>) -> Vec<SyncTarget> {
        let v = self.table.vnodes();
        let len = v.len();
        if len == 0 {
            return Vec::new();
        }
        let mut runs: Vec<(usize, usize, Vec<NodeId>)> = Vec::new();
        let mut start = 0;
        // The replicas of a position that serve: only they can run a session.
        let serving = |pos: Position| -> Vec<NodeId> {
            let replicas = replicas_of(pos).into_iter();
            replicas.filter(|id| self.addrs.contains_key(id)).collect()
        };
        let mut common = serving(v[0].pos);
        for (i, vnode) in v.iter().enumerate().skip(1) {
            let here = serving(vnode.pos);
            let both: Vec<NodeId> = common.iter().copied().filter(|c| here.contains(c)).collect();
            if both.is_empty() {
                runs.push((start, i - 1, std::mem::replace(&mut common, here)));
                start = i;
            } else {
                common = both;
            }
        }
        runs.push((start, len - 1, common));
        if runs.len() == 1 {
            let (_, _, nodes) = runs.remove(0);
            return vec![SyncTarget { range: Interval::full(), nodes: self.addrs_of(&nodes) }];
        }
        runs.into_iter()
            .map(|(first, last, nodes)| SyncTarget {
                range: Interval::new(v[(first + len - 1) % len].pos, v[last].pos),
                nodes: self.addrs_of(&nodes),
            })
            .collect()
    }

    fn addrs_of(&self, ids: &[NodeId]) -> Vec<String> {
        ids.iter().filter_map(|id| self.addrs.get(id).cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::tokens_for;

    fn member(id: u64, status: &str) -> RingMember {
        RingMember {
            id: NodeId(id),
            addr: format!("10.0.0.{id}:7453"),
            tokens: tokens_for(NodeId(id), 8),
            status: status.into(),
            joining: false,
            leaving: false,
            labels: Default::default(),
        }
    }

    #[test]
    fn only_serving_members_route_and_the_owner_comes_first() {
        let view = RingView::new(vec![
            member(1, "alive"),
            member(2, "alive"),
            member(3, "suspect"),
            member(4, "alive"),
        ]);
        assert_eq!(view.members().len(), 4);
        assert_eq!(view.serving_addrs().len(), 3);
        for key in [&b"alice"[..], b"bob", b"carol"] {
            let route = view.route("users", key);
            assert_eq!(route.len(), 3, "every serving node, none twice");
            assert!(!route.iter().any(|a| a.ends_with(".3:7453")), "suspects are skipped");
            let pos = Placement::Hashed.position("users", key);
            // The suspect still owns its ranges; the first serving replica comes first.
            let first = view.table().preference_list(pos, 4).into_iter().find(|id| id.0 != 3);
            assert_eq!(route[0], format!("10.0.0.{}:7453", first.unwrap().0));
        }
        assert!(RingView::default().route("users", b"x").is_empty());
        let shares: f64 = view.ownership().iter().map(|(_, s)| s).sum();
        assert!((shares - 1.0).abs() < 1e-9);
    }

    /// The plan covers every position exactly once, and each piece's nodes replicate
    /// every key in it.
    fn check_plan(view: &RingView, replicas: usize) -> Vec<SyncTarget> {
        let list = |pos| view.table().preference_list(pos, replicas);
        check_pieces(view, view.sync_plan(replicas), list)
    }

    /// `plan` covers every position exactly once, and each piece's nodes are among the
    /// replicas (`list`) of every token interval in it.
    fn check_pieces(
        view: &RingView,
        plan: Vec<SyncTarget>,
        list: impl Fn(Position) -> Vec<NodeId>,
    ) -> Vec<SyncTarget> {
        let total: u128 = plan.iter().map(|t| t.range.len()).sum();
        assert_eq!(total, 1u128 << 64, "the pieces cover the ring once");
        let table = view.table();
        for t in &plan {
            assert!(!t.nodes.is_empty(), "{} has a node", t.range);
            for (i, vn) in table.vnodes().iter().enumerate() {
                let prev: Position = table.vnodes()[(i + table.len() - 1) % table.len()].pos;
                if !t.range.contains_interval(&Interval::new(prev, vn.pos)) && !t.range.is_full() {
                    continue;
                }
                let reps = view.addrs_of(&list(vn.pos));
                assert!(t.nodes.iter().all(|n| reps.contains(n)), "{} replicated", t.range);
            }
        }
        plan
    }

    #[test]
    fn a_sync_plan_covers_the_ring_with_nodes_that_replicate_each_piece() {
        let members: Vec<RingMember> = (1..=5).map(|i| member(i, "alive")).collect();
        let view = RingView::new(members);
        assert_eq!(check_plan(&view, 5).len(), 1, "everyone replicates everything");
        assert_eq!(check_plan(&view, 5)[0].range, Interval::full());
        let three = check_plan(&view, 3);
        let one = check_plan(&view, 1);
        assert!(three.len() < one.len(), "{} pieces with N=3, {} with N=1", three.len(), one.len());
        assert!(one.len() <= view.table().len() && one.iter().all(|t| t.nodes.len() == 1));
        assert!(RingView::default().sync_plan(3).is_empty());
        let lone = RingView::new(vec![member(7, "alive")]);
        assert_eq!(check_plan(&lone, 3).len(), 1);
    }

    #[test]
    fn a_sync_plan_under_a_selector_asks_only_selected_members_that_replicate_each_piece() {
        // Nodes 1, 3 and 5 have an ssd in the layout's snapshot; node 6 announces one
        // now but was not in the snapshot, so the layout does not place on it.
        let mut members: Vec<RingMember> = (1..=6).map(|i| member(i, "alive")).collect();
        let ssd: crate::ring::Labels = [("disk".to_string(), "ssd".to_string())].into();
        members[5].labels = ssd.clone();
        let view = RingView::new(members);
        let snapshot: LabelSnapshot = [1, 3, 5].map(|i| (NodeId(i), ssd.clone())).into();
        let spread = Spread { select: vec![("disk".into(), "ssd".into())], zone_label: None };
        let list =
            |pos| view.table().preference_list_spread(pos, 2, &spread, |id| snapshot.get(&id));
        let plan = check_pieces(&view, view.sync_plan_spread(2, &spread, &snapshot), list);
        let selected = ["10.0.0.1:7453", "10.0.0.3:7453", "10.0.0.5:7453"];
        for t in &plan {
            assert!(t.nodes.iter().all(|a| selected.contains(&a.as_str())), "{t:?}");
        }
        // The plain plan with the same N asks nodes the layout does not place on.
        let plain = view.sync_plan(2);
        assert!(plain.iter().any(|t| t.nodes.iter().any(|a| !selected.contains(&a.as_str()))));
        // As many replicas as selected members: one of them replicates everything.
        let all = view.sync_plan_spread(3, &spread, &snapshot);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].range, Interval::full());
        assert_eq!(all[0].nodes.len(), 3);
        // The default spread is the plain plan, whatever the labels.
        assert_eq!(view.sync_plan_spread(2, &Spread::default(), &snapshot), plain);
        // Nothing selected: pieces without nodes, which the copy cannot sync.
        let none = Spread { select: vec![("disk".into(), "nvme".into())], zone_label: None };
        let unserved = view.sync_plan_spread(2, &none, &snapshot);
        assert!(!unserved.is_empty() && unserved.iter().all(|t| t.nodes.is_empty()));
    }
}
