//! Preference lists that respect labels and zones: the replicas of a position among the
//! members a collection may use, spread over as many zones as there are.
//!
//! [`RingTable::preference_list`] takes the first N distinct nodes clockwise from a
//! position. A collection placed on chosen nodes (a selector such as `disk=ssd`) and a
//! cluster spread over zones need two refinements, both made here as pure functions of
//! the table and the members' labels, so every node computes the same list:
//!
//! - **Eligibility.** Only members the selector accepts are walked; the others are
//!   skipped as if they held no tokens. The walk starts at the position's owning token
//!   of the whole table, so a list is the same for every position of one token interval
//!   (what anti-entropy and hand-offs work by).
//! - **Zones.** With a zone label, the walk takes a node only if its zone is not in the
//!   list yet, and sets aside the nodes it skipped for that; once every zone is in (or
//!   the ring is walked), it fills the list from those set aside, in walk order
//!   (Cassandra's NetworkTopologyStrategy, Riak's `target_n_val`). So the replicas of a
//!   key are in distinct zones while there are at least N zones, in every zone there is
//!   otherwise, and always on distinct nodes. A member without the label is a zone of
//!   its own.
//!
//! Labels are `key=value` pairs a node is started with (`--label zone=eu-1`), carried in
//! its membership record ([`crate::membership::Member::labels`]).

use super::RingTable;
use crate::entry::NodeId;
use crate::hash::Position;
use std::collections::BTreeMap;

/// A node's labels: `key → value`.
pub type Labels = BTreeMap<String, String>;

/// Which members a collection's replicas may go to, and whether they spread over zones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Spread {
    /// Every `(key, value)` a member's labels must hold; empty accepts every member.
    pub select: Vec<(String, String)>,
    /// The label whose values are zones, if replicas spread over zones.
    pub zone_label: Option<String>,
}

impl Spread {
    /// Whether a member with `labels` may hold replicas.
    pub fn accepts(&self, labels: &Labels) -> bool {
        self.select.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The zone of a member with `labels`: its value of the zone label (`None` when it
    /// has none, or when there is no zone label).
    pub fn zone_of<'a>(&self, labels: &'a Labels) -> Option<&'a str> {
        self.zone_label.as_ref().and_then(|k| labels.get(k)).map(String::as_str)
    }
}

impl RingTable {
    /// The first `n` distinct nodes clockwise from `pos`'s owning token among those
    /// `labels_of` gives labels that `spread` accepts, in distinct zones first (see the
    /// module docs). A node `labels_of` knows nothing about has no labels.
    pub fn preference_list_spread<'a>(
        &self,
        pos: Position,
        n: usize,
        spread: &Spread,
        labels_of: impl Fn(NodeId) -> Option<&'a Labels>,
    ) -> Vec<NodeId> {
        let vnodes = self.vnodes();
        let want = n.min(self.node_count());
        let mut out: Vec<NodeId> = Vec::with_capacity(want);
        if vnodes.is_empty() || want == 0 {
            return out;
        }
        let empty = Labels::new();
        let start = match vnodes.partition_point(|v| v.pos < pos) {
            i if i == vnodes.len() => 0,
            i => i,
        };
        let mut seen: Vec<NodeId> = Vec::new();
        let mut zones: Vec<Option<&str>> = Vec::new();
        let mut set_aside: Vec<NodeId> = Vec::new();
        for k in 0..vnodes.len() {
            if out.len() >= want {
                break;
            }
            let node = vnodes[(start + k) % vnodes.len()].node;
            if seen.contains(&node) {
                continue;
            }
            seen.push(node);
            let labels = labels_of(node).unwrap_or(&empty);
            if !spread.accepts(labels) {
                continue;
            }
            let zone = spread.zone_of(labels);
            // A node without the zone label is a zone of its own.
            let new_zone = spread.zone_label.is_none() || zone.is_none() || !zones.contains(&zone);
            if new_zone {
                zones.push(zone);
                out.push(node);
            } else {
                set_aside.push(node);
            }
        }
        out.extend(set_aside.into_iter().take(want.saturating_sub(out.len())));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::tokens_for;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn zoned(label: &str) -> Spread {
        Spread { select: Vec::new(), zone_label: Some(label.to_string()) }
    }

    #[test]
    fn without_a_selector_or_zones_it_is_the_plain_preference_list() {
        let members: Vec<(NodeId, Vec<u64>)> =
            (1..=6).map(|n| (NodeId(n), tokens_for(NodeId(n), 8))).collect();
        let t = RingTable::new(members.iter().map(|(n, v)| (*n, v.as_slice())));
        for pos in [0u64, 7, u64::MAX / 3, u64::MAX] {
            let plain = t.preference_list(pos, 3);
            assert_eq!(t.preference_list_spread(pos, 3, &Spread::default(), |_| None), plain);
        }
    }

    #[test]
    fn a_selector_keeps_replicas_on_matching_nodes() {
        let t = RingTable::new([
            (NodeId(1), &[10u64][..]),
            (NodeId(2), &[20][..]),
            (NodeId(3), &[30][..]),
            (NodeId(4), &[40][..]),
        ]);
        let ssd = labels(&[("disk", "ssd")]);
        let hdd = labels(&[("disk", "hdd")]);
        let of = |id: NodeId| Some(if id.0.is_multiple_of(2) { &ssd } else { &hdd });
        let spread = Spread { select: vec![("disk".into(), "ssd".into())], zone_label: None };
        assert_eq!(t.preference_list_spread(5, 3, &spread, of), vec![NodeId(2), NodeId(4)]);
        let none = Spread { select: vec![("disk".into(), "nvme".into())], zone_label: None };
        assert!(t.preference_list_spread(5, 3, &none, of).is_empty());
    }

    #[test]
    fn zones_come_first_then_the_nodes_set_aside() {
        // Ring order 1, 2, 3, 4, 5; zones a, a, b, b, c.
        let tokens: Vec<[u64; 1]> = (1..=5u64).map(|i| [i * 10]).collect();
        let t = RingTable::new((1..=5u64).map(|i| (NodeId(i), &tokens[i as usize - 1][..])));
        let zone = |id: NodeId| match id.0 {
            1 | 2 => "a",
            3 | 4 => "b",
            _ => "c",
        };
        let all: Vec<Labels> = (1..=5u64).map(|i| labels(&[("zone", zone(NodeId(i)))])).collect();
        let of = |id: NodeId| all.get(id.0 as usize - 1);
        let spread = zoned("zone");
        assert_eq!(
            t.preference_list_spread(5, 3, &spread, of),
            vec![NodeId(1), NodeId(3), NodeId(5)]
        );
        // Four replicas over three zones: every zone, then the first node set aside.
        assert_eq!(
            t.preference_list_spread(5, 4, &spread, of),
            vec![NodeId(1), NodeId(3), NodeId(5), NodeId(2)]
        );
    }

    /// A member: id, tokens, zone number, whether its disk is an SSD.
    type TestMember = (u64, Vec<u64>, u8, bool);

    fn arbitrary_ring() -> impl Strategy<Value = (Vec<TestMember>, u64, usize)> {
        let member = (proptest::collection::vec(any::<u64>(), 1..6), 0u8..4, any::<bool>());
        (proptest::collection::vec(member, 1..9), any::<u64>(), 1usize..6).prop_map(
            |(members, pos, n)| {
                let members = members
                    .into_iter()
                    .enumerate()
                    .map(|(i, (t, z, ssd))| (i as u64 + 1, t, z, ssd))
                    .collect();
                (members, pos, n)
            },
        )
    }

    proptest! {
        #[test]
        fn lists_are_distinct_selected_spread_over_zones_and_the_same_across_an_interval(
            (members, pos, n) in arbitrary_ring(),
            select in any::<bool>(),
        ) {
            let t = RingTable::new(members.iter().map(|(id, t, _, _)| (NodeId(*id), t.as_slice())));
            let all: BTreeMap<NodeId, Labels> = members.iter().map(|(id, _, z, ssd)| {
                let disk = if *ssd { "ssd" } else { "hdd" };
                (NodeId(*id), labels(&[("zone", &format!("z{z}")), ("disk", disk)]))
            }).collect();
            let spread = Spread {
                select: if select { vec![("disk".into(), "ssd".into())] } else { Vec::new() },
                zone_label: Some("zone".into()),
            };
            let list = t.preference_list_spread(pos, n, &spread, |id| all.get(&id));
            let distinct: BTreeSet<NodeId> = list.iter().copied().collect();
            prop_assert_eq!(distinct.len(), list.len(), "distinct nodes");
            let eligible: Vec<NodeId> = t.vnodes().iter().map(|v| v.node)
                .filter(|id| spread.accepts(&all[id])).collect::<BTreeSet<_>>().into_iter().collect();
            prop_assert!(list.iter().all(|id| eligible.contains(id)), "only selected nodes");
            prop_assert_eq!(list.len(), n.min(eligible.len()));
            let zones_of = |ids: &[NodeId]| ids.iter().map(|id| all[id]["zone"].clone()).collect::<BTreeSet<_>>();
            let zones = zones_of(&eligible).len();
            prop_assert_eq!(zones_of(&list).len(), list.len().min(zones), "as many zones as can be");
            // Every position of the owning token's interval has the same list.
            if let Some(owner) = t.successor(pos) {
                let same = t.preference_list_spread(owner.pos, n, &spread, |id| all.get(&id));
                prop_assert_eq!(same, list);
            }
        }
    }
}
