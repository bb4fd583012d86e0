//! The token table: every vnode of every member, sorted by position, for one-hop routing.
//!
//! With full membership a node knows every member's tokens, so it can answer "who owns
//! this position?" and "which N nodes replicate it?" locally, without a Chord lookup.
//! A key at position `k` is owned by the first token at or after `k` (Chord's successor
//! rule: the token at `t` whose predecessor token is at `p` owns `(p, t]`); its
//! *preference list* is the first N distinct physical nodes met walking clockwise from
//! there.

use crate::{
    entry::NodeId,
    hash::{Interval, Position},
};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// One token: a position on the ring held by a physical node (a virtual node).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Vnode {
    /// The token's ring position.
    pub pos: Position,
    /// The physical node holding it.
    pub node: NodeId,
}

/// The default number of tokens (virtual nodes) per physical node. See
/// `docs/simulation.md` ("Load balance") for the measurements behind the choice: with 32
/// tokens the busiest of 10 nodes owns about 1.28× its fair share of the ring (1.42× with
/// 16, 1.20× with 64), and in a ring of 10,000 nodes the 99th-percentile node holds 1.55×
/// the mean number of keys. More tokens balance better but multiply the ranges each node
/// reconciles by anti-entropy and the size of the token table; 32 is the knee.
pub const DEFAULT_VNODES: usize = 32;

/// The deterministic tokens of `node`: `xxh3_64(i, seed = node id)` for `i in 0..count`.
/// Every member computes the same tokens for the same node, so tokens need not be
/// configured, only their count.
pub fn tokens_for(node: NodeId, count: usize) -> Vec<Position> {
    let mut tokens: Vec<Position> =
        (0..count as u64).map(|i| xxh3_64_with_seed(&i.to_le_bytes(), node.0)).collect();
    tokens.sort_unstable();
    tokens.dedup();
    tokens
}

/// All tokens of a set of members, sorted by position (ties broken by node id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingTable {
    vnodes: Vec<Vnode>,
    nodes: usize,
}

impl RingTable {
    /// Builds the table from `(node, tokens)` pairs.
    pub fn new<'a>(members: impl IntoIterator<Item = (NodeId, &'a [Position])>) -> Self {
        let mut vnodes = Vec::new();
        let mut ids = Vec::new();
        for (node, tokens) in members {
            ids.push(node);
            vnodes.extend(tokens.iter().map(|&pos| Vnode { pos, node }));
        }
        vnodes.sort_unstable();
        vnodes.dedup_by_key(|v| v.pos);
        ids.sort_unstable();
        ids.dedup();
        RingTable { nodes: ids.len(), vnodes }
    }

    /// Whether no member holds a token.
    pub fn is_empty(&self) -> bool {
        self.vnodes.is_empty()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.vnodes.len()
    }

    /// Number of distinct physical nodes.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// The one physical node holding every token, when there is exactly one.
    pub fn sole_node(&self) -> Option<NodeId> {
        (self.nodes == 1).then(|| self.vnodes.first().map(|v| v.node)).flatten()
    }

    /// Every token in ring order.
    pub fn vnodes(&self) -> &[Vnode] {
        &self.vnodes
    }

    /// Index of the token owning `pos`: the first at or after it, wrapping.
    fn owner_index(&self, pos: Position) -> Option<usize> {
        if self.vnodes.is_empty() {
            return None;
        }
        let i = self.vnodes.partition_point(|v| v.pos < pos);
        Some(if i == self.vnodes.len() { 0 } else { i })
    }

    /// The token owning `pos` (its successor on the ring).
    pub fn successor(&self, pos: Position) -> Option<Vnode> {
        self.owner_index(pos).map(|i| self.vnodes[i])
    }

    /// The physical node owning `pos`.
    pub fn owner(&self, pos: Position) -> Option<NodeId> {
        self.successor(pos).map(|v| v.node)
    }

    /// The first `n` distinct physical nodes clockwise from `pos`'s owner: the replicas
    /// of a key at `pos`, the owner first. Fewer when the ring has fewer nodes.
    pub fn preference_list(&self, pos: Position, n: usize) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::with_capacity(n.min(self.nodes));
        let Some(start) = self.owner_index(pos) else { return out };
        let len = self.vnodes.len();
        // With fewer members than `n` (a single node keeping 3 replicas), stop once every
        // member is in: walking the rest of the ring finds no one new.
        let want = n.min(self.nodes);
        for k in 0..len {
            if out.len() >= want {
                break;
            }
            let node = self.vnodes[(start + k) % len].node;
            if !out.contains(&node) {
                out.push(node);
            }
        }
        out
    }

    /// The intervals `(previous token, token]` owned by `node`'s tokens, in ring order.
    /// A lone token owns the whole ring.
    pub fn owned_intervals(&self, node: NodeId) -> Vec<Interval> {
        let len = self.vnodes.len();
        (0..len)
            .filter(|&i| self.vnodes[i].node == node)
            .map(|i| Interval::new(self.vnodes[(i + len - 1) % len].pos, self.vnodes[i].pos))
            .collect()
    }

    /// The fraction of the ring `node` owns as primary, in `[0, 1]`.
    pub fn ownership_share(&self, node: NodeId) -> f64 {
        let total: u128 = self.owned_intervals(node).iter().map(Interval::len).sum();
        total as f64 / 2f64.powi(64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(members: &[(u64, &[u64])]) -> RingTable {
        RingTable::new(members.iter().map(|(n, t)| (NodeId(*n), *t)))
    }

    #[test]
    fn fewer_members_than_replicas_gives_every_member_once() {
        // Node 3 is a member without tokens: it never appears, and the walk still ends.
        let t = table(&[(1, &[100, 300, 500]), (2, &[200, 400]), (3, &[])]);
        assert_eq!(t.preference_list(150, 3), vec![NodeId(2), NodeId(1)]);
        assert_eq!(t.preference_list(450, 5), vec![NodeId(1), NodeId(2)]);
        let alone = table(&[(7, &[10, 20, 30])]);
        assert_eq!(alone.preference_list(25, 3), vec![NodeId(7)]);
    }

    #[test]
    fn successor_rule_and_wrap() {
        let t = table(&[(1, &[100, 300]), (2, &[200])]);
        assert_eq!(t.owner(100), Some(NodeId(1)), "a token owns its own position");
        assert_eq!(t.owner(101), Some(NodeId(2)));
        assert_eq!(t.owner(250), Some(NodeId(1)));
        assert_eq!(t.owner(301), Some(NodeId(1)), "past the last token wraps to the first");
        assert_eq!(t.owner(0), Some(NodeId(1)));
        assert_eq!(t.node_count(), 2);
        assert_eq!(RingTable::default().owner(5), None);
    }

    #[test]
    fn preference_lists_skip_repeated_nodes() {
        let t = table(&[(1, &[10, 20]), (2, &[30]), (3, &[40])]);
        assert_eq!(t.preference_list(5, 3), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(t.preference_list(35, 3), vec![NodeId(3), NodeId(1), NodeId(2)]);
        assert_eq!(t.preference_list(35, 9).len(), 3, "never more than the nodes there are");
        assert!(RingTable::default().preference_list(1, 3).is_empty());
    }

    #[test]
    fn owned_intervals_partition_the_ring() {
        let members: Vec<(NodeId, Vec<u64>)> =
            (0..7).map(|n| (NodeId(n), tokens_for(NodeId(n), 16))).collect();
        let t = RingTable::new(members.iter().map(|(n, v)| (*n, v.as_slice())));
        let total: u128 =
            members.iter().flat_map(|(n, _)| t.owned_intervals(*n)).map(|i| i.len()).sum();
        assert_eq!(total, 1u128 << 64);
        let shares: f64 = members.iter().map(|(n, _)| t.ownership_share(*n)).sum();
        assert!((shares - 1.0).abs() < 1e-9);
        for probe in [0u64, 1, u64::MAX, 12345678901234567] {
            let owner = t.owner(probe).unwrap();
            assert!(t.owned_intervals(owner).iter().any(|i| i.contains(probe)));
        }
        let lone = table(&[(9, &[5])]);
        assert_eq!(lone.owned_intervals(NodeId(9)), vec![Interval::new(5, 5)]);
    }

    #[test]
    fn tokens_are_deterministic_and_distinct_per_node() {
        assert_eq!(tokens_for(NodeId(1), 8), tokens_for(NodeId(1), 8));
        assert_ne!(tokens_for(NodeId(1), 8), tokens_for(NodeId(2), 8));
        assert_eq!(tokens_for(NodeId(1), 8).len(), 8);
        assert!(tokens_for(NodeId(1), 8).windows(2).all(|w| w[0] < w[1]));
    }
}
