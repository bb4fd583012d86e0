//! The layouts collections use, as a light peer learns them from a node's `Stats`
//! answer ([`LayoutsInUse`]): a local copy of a collection with a layout of its own
//! syncs each piece of the ring with a node that replicates it under that layout — the
//! only nodes that serve it (see `node::watch::client_sync`).
//!
//! A node's answer is checked before it is kept: an entry out of the bounds a node's
//! catalogue holds (a bad name, a replication factor of 0 or above
//! [`MAX_REPLICAS`], labels a member could not carry, more members than a snapshot
//! holds, a snapshot that is not there) is ignored, and its collection planned as one
//! using the cluster's layout.

use crate::{
    catalogue::{layout::MAX_SNAPSHOT, LabelSnapshot, Layout, MAX_ENTRIES, MAX_REPLICAS},
    membership::{labels_admitted, validate_label},
    proto::client::LayoutsInUse,
    store::validate_collection,
};
use std::collections::BTreeMap;

/// The layouts of the collections that have one, with the labels they place by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownLayouts {
    by_name: BTreeMap<String, (Layout, Option<usize>)>,
    labels: Vec<LabelSnapshot>,
}

/// No labels: what a layout that places by none reads.
static NO_LABELS: LabelSnapshot = LabelSnapshot::new();

impl KnownLayouts {
    /// What a node answered, every entry out of bounds left out.
    pub fn admitted(answer: LayoutsInUse) -> Self {
        let LayoutsInUse { collections, labels } = answer;
        let snapshot_ok =
            |s: &LabelSnapshot| s.len() <= MAX_SNAPSHOT && s.values().all(labels_admitted);
        let labels: Vec<Option<LabelSnapshot>> =
            (labels.into_iter().take(MAX_ENTRIES)).map(|s| snapshot_ok(&s).then_some(s)).collect();
        let layout_ok = |l: &Layout| {
            labels_admitted(&l.select)
                && l.replicas.is_none_or(|r| (1..=MAX_REPLICAS).contains(&r))
                && l.zone_label.as_deref().is_none_or(validate_label)
        };
        let mut by_name = BTreeMap::new();
        for c in collections.into_iter().take(MAX_ENTRIES) {
            if validate_collection(&c.collection).is_err() || !layout_ok(&c.layout) {
                continue;
            }
            // A layout that selects or spreads needs the labels it places by, in bounds;
            // one that does neither reads none.
            let index = match c.labels.map(|i| i as usize) {
                _ if !c.layout.needs_labels() => None,
                Some(i) if matches!(labels.get(i), Some(Some(_))) => Some(i),
                _ => continue,
            };
            by_name.insert(c.collection, (c.layout, index));
        }
        // Keep only the snapshots some layout reads, renumbered.
        let mut kept: Vec<LabelSnapshot> = Vec::new();
        let mut renumber: BTreeMap<usize, usize> = BTreeMap::new();
        let mut labels = labels;
        for (_, index) in by_name.values_mut() {
            if let Some(i) = index.as_mut() {
                let new = *renumber.entry(*i).or_insert_with(|| {
                    kept.push(labels[*i].take().unwrap_or_default());
                    kept.len() - 1
                });
                *i = new;
            }
        }
        KnownLayouts { by_name, labels: kept }
    }

    /// The layout `collection` uses and the members' labels it places by; `None` when
    /// it uses the cluster's.
    pub fn get(&self, collection: &str) -> Option<(&Layout, &LabelSnapshot)> {
        let (layout, index) = self.by_name.get(collection)?;
        let labels = index.and_then(|i| self.labels.get(i)).unwrap_or(&NO_LABELS);
        Some((layout, labels))
    }

    /// How many collections have a layout of their own.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether every collection uses the cluster's layout.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{entry::NodeId, proto::client::CollectionLayout, ring::Labels};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn entry(
        name: &str,
        replicas: Option<u32>,
        select: Labels,
        at: Option<u32>,
    ) -> CollectionLayout {
        let layout = Layout { replicas, select, zone_label: None };
        CollectionLayout { collection: name.into(), layout, labels: at }
    }

    #[test]
    fn entries_out_of_bounds_are_left_out_and_the_rest_kept() {
        let ssd = labels(&[("disk", "ssd")]);
        let good: LabelSnapshot = [(NodeId(1), ssd.clone()), (NodeId(2), labels(&[]))].into();
        let bad: LabelSnapshot = [(NodeId(3), labels(&[("a b", "c")]))].into();
        let answer = LayoutsInUse {
            collections: vec![
                entry("fast", Some(2), ssd.clone(), Some(1)),
                entry("wide", Some(5), Labels::new(), None),
                entry("zero", Some(0), Labels::new(), None),
                entry("huge", Some(MAX_REPLICAS + 1), Labels::new(), None),
                entry("badlabels", Some(2), ssd.clone(), Some(0)),
                entry("missing", Some(2), ssd.clone(), Some(7)),
                entry("unlabelled", Some(2), ssd.clone(), None),
                entry("bad/name", Some(2), Labels::new(), None),
                entry("badselect", Some(2), labels(&[("a b", "c")]), Some(1)),
            ],
            labels: vec![bad, good.clone()],
        };
        let known = KnownLayouts::admitted(answer);
        assert_eq!(known.len(), 2, "{known:?}");
        let (layout, l) = known.get("fast").expect("fast is kept");
        assert_eq!(layout.replicas, Some(2));
        assert_eq!(*l, good);
        let (layout, l) = known.get("wide").expect("wide is kept");
        assert_eq!((layout.replicas, l.is_empty()), (Some(5), true));
        assert!(known.get("users").is_none() && known.get("zero").is_none());
        assert_eq!(known.labels.len(), 1, "only the snapshots read are kept");
        assert!(KnownLayouts::admitted(LayoutsInUse::default()).is_empty());
    }

    /// The frames `peer` wants sent, decoded.
    fn requests(peer: &mut crate::light::LightPeer) -> Vec<crate::proto::ClientRequest> {
        use crate::{light::LightOutput, proto::client::ClientMessage, wire};
        let mut out = Vec::new();
        while let Some(o) = peer.poll_output() {
            if let LightOutput::Send { frame, .. } = o {
                if let Ok(ClientMessage::Request(req)) = wire::decode_with_limit(&frame, 1 << 20) {
                    out.push(req);
                }
            }
        }
        out
    }

    #[test]
    fn a_light_peer_plans_a_copy_by_the_layout_a_node_reported() {
        use crate::{
            light::{LightConfig, LightPeer},
            proto::{
                client::{ClientMessage, NodeStats, Op, Reply, RingMember},
                ClientResponse,
            },
            ring::{tokens_for, Spread},
            wire,
        };
        let members: Vec<RingMember> = (1..=5)
            .map(|i| RingMember {
                id: NodeId(i),
                addr: format!("n{i}:1"),
                tokens: tokens_for(NodeId(i), 8),
                status: "alive".into(),
                joining: false,
                leaving: false,
                labels: Labels::new(),
            })
            .collect();
        let ssd = labels(&[("disk", "ssd")]);
        let snapshot: LabelSnapshot = [1, 2, 4].map(|i| (NodeId(i), ssd.clone())).into();
        let stats = NodeStats {
            replicas: 3,
            layouts: LayoutsInUse {
                collections: vec![
                    entry("fast", Some(2), ssd.clone(), Some(0)),
                    entry("broken", Some(2), ssd.clone(), Some(1)),
                ],
                labels: vec![snapshot.clone()],
            },
            ..NodeStats::default()
        };
        let mut peer = LightPeer::new(vec!["n1:1".into()], LightConfig::default());
        peer.start(0);
        for req in requests(&mut peer) {
            let result = match req.op {
                Op::Ring => Reply::Ring { members: members.clone() },
                Op::Stats => Reply::Stats(Box::new(stats.clone())),
                other => panic!("{other:?}"),
            };
            let resp = ClientMessage::Response(ClientResponse { id: req.id, result, ts: None });
            peer.handle_frame(1, "n1:1", &wire::encode_with_limit(&resp, 1 << 20).unwrap());
        }
        assert_eq!(peer.layouts().len(), 1, "the entry out of bounds is ignored");
        let spread = Spread { select: vec![("disk".into(), "ssd".into())], zone_label: None };
        let planned = peer.ring().sync_plan_spread(2, &spread, &snapshot);
        assert_eq!(peer.sync_plan("fast"), planned);
        assert_ne!(peer.sync_plan("fast"), peer.ring().sync_plan(3));
        assert_eq!(peer.sync_plan("broken"), peer.ring().sync_plan(3), "the cluster's plan");
        assert_eq!(peer.sync_plan("users"), peer.ring().sync_plan(3));
        // Opening a copy asks for the layouts again (they may have moved).
        peer.open_copy(2, "fast", false);
        let asked: Vec<Op> = requests(&mut peer).into_iter().map(|r| r.op).collect();
        assert!(asked.contains(&Op::Stats), "{asked:?}");
    }

    #[test]
    fn stats_without_layouts_are_the_array_older_clients_read() {
        let plain = rmp_serde::to_vec(&crate::proto::client::NodeStats::default()).unwrap();
        assert_eq!(plain[..3], [0xdc, 0, 16], "sixteen fields, as before layouts");
        let layouts = LayoutsInUse {
            collections: vec![entry("fast", Some(2), Labels::new(), None)],
            labels: Vec::new(),
        };
        let stats = crate::proto::client::NodeStats { layouts, ..Default::default() };
        let with = rmp_serde::to_vec(&stats).unwrap();
        assert_eq!(with[..3], [0xdc, 0, 17]);
        let back: crate::proto::client::NodeStats = rmp_serde::from_slice(&with).unwrap();
        assert_eq!(back, stats);
    }
}
