//! Each collection's placement on this node: the layout it uses (its replication factor
//! and selector, [`crate::catalogue::layout`]), and while it moves, the layout it moves
//! to. The placements are built over the node's view whenever the view or the catalogue
//! changes; collections that use the same layouts share them, and what walks every range
//! of every collection (anti-entropy, hand-offs, cleaning) walks them a placement at a
//! time ([`View::by_placement`]).

use super::view::{replicated_share, View};
use crate::{
    catalogue::{is_catalogue, LabelSnapshot, Layout, MovePhase},
    entry::NodeId,
    hash::Interval,
    membership::Membership,
    ring::{CollectionPlacement, Placement, Spread},
};
use std::collections::BTreeMap;

/// A layout with the cluster's replication factor filled in, and the labels it places
/// by (none when it places by none): what a placement is built for.
pub(super) type Resolved = (usize, Spread, LabelSnapshot);

/// The layouts a collection's placement is made of: the one it uses, and the one it
/// moves to.
pub(super) type Signature = (Resolved, Option<Resolved>);

/// Where a layout's placement is: its index among the built ones, `None` for the
/// cluster's layout (the node's own placement).
type Slot = Option<usize>;

/// Every layout a collection uses or moves to other than the cluster's, with its
/// placement over the node's view and the node's share of the ring under it, and which
/// of them each collection uses (rebuilt when the view or the catalogue changes).
#[derive(Debug, Default)]
pub(super) struct Layouts {
    built: Vec<(Resolved, Placement, f64)>,
    /// Each collection with a layout state: the layout it uses, the one it moves to, and
    /// whether its reads are joint.
    by_name: BTreeMap<String, (Slot, Option<Slot>, bool)>,
}

/// The collections that use one placement, with its ranges.
#[derive(Debug)]
pub(super) struct Ranges {
    /// Every token interval of the owners' table, its replicas under either layout, and
    /// whether this node is a pending replica of any part of it.
    pub(super) intervals: Vec<(Interval, Vec<NodeId>, bool)>,
    /// The collections.
    pub(super) collections: Vec<String>,
}

impl View {
    /// The cluster's layout, resolved.
    fn default_resolved(&self) -> Resolved {
        (self.replicas.max(1), Spread::default(), LabelSnapshot::new())
    }

    /// `layout` with the cluster's replication factor filled in, placing by `labels`.
    fn resolve(&self, layout: &Layout, labels: &LabelSnapshot) -> Resolved {
        let spread = layout.spread();
        let labels =
            if spread == Spread::default() { LabelSnapshot::new() } else { labels.clone() };
        (layout.replicas_or(self.replicas.max(1)), spread, labels)
    }

    /// The placement of layout `index` (`None`: the cluster's) and this node's share of
    /// the ring under it.
    fn built(&self, index: Option<usize>) -> (&Placement, f64) {
        match index.and_then(|i| self.layouts.built.get(i)) {
            Some((_, p, share)) => (p, *share),
            None => (&self.placement, self.ring_share),
        }
    }

    /// The placement `collection` uses and, while it moves, the one it moves to (never
    /// the catalogue's: see [`View::placement_for`]).
    pub(super) fn layout_placement(&self, collection: &str) -> CollectionPlacement<'_> {
        match self.layouts.by_name.get(collection) {
            None => CollectionPlacement::settled(&self.placement),
            Some((now, next, joint)) => CollectionPlacement {
                now: self.built(*now).0,
                next: next.map(|slot| self.built(slot).0),
                joint: *joint,
            },
        }
    }

    /// The replication factor and this node's share of the ring under the layout
    /// `collection` uses.
    pub(super) fn layout_size(&self, collection: &str) -> (usize, f64) {
        let now = self.layouts.by_name.get(collection).and_then(|(now, _, _)| *now);
        let share = self.built(now).1;
        let n = now.and_then(|i| self.layouts.built.get(i)).map(|(r, _, _)| r.0);
        (n.unwrap_or(self.replicas.max(1)), share)
    }

    /// The layouts `collection`'s placement is made of (never the catalogue's).
    pub(super) fn signature(&self, collection: &str) -> Signature {
        let resolved = |i: Option<usize>| match i.and_then(|i| self.layouts.built.get(i)) {
            Some((r, _, _)) => r.clone(),
            None => self.default_resolved(),
        };
        match self.layouts.by_name.get(collection) {
            None => (self.default_resolved(), None),
            Some((now, next, _)) => (resolved(*now), next.map(resolved)),
        }
    }

    /// The placement of a signature (its reads never joint: for walking ranges).
    pub(super) fn placement_by(&self, signature: &Signature) -> CollectionPlacement<'_> {
        let find = |r: &Resolved| self.layouts.built.iter().position(|(k, _, _)| k == r);
        CollectionPlacement {
            now: self.built(find(&signature.0)).0,
            next: signature.1.as_ref().map(|k| self.built(find(k)).0),
            joint: false,
        }
    }

    /// Every signature in use: the cluster's layout, and every collection's in the
    /// catalogue, with `collections` sorted under theirs.
    pub(super) fn signatures(&self, collections: &[String]) -> BTreeMap<Signature, Vec<String>> {
        let mut out: BTreeMap<Signature, Vec<String>> = BTreeMap::new();
        out.entry((self.default_resolved(), None)).or_default();
        for name in self.layouts.by_name.keys() {
            out.entry(self.signature(name)).or_default();
        }
        for c in collections.iter().filter(|c| !is_catalogue(c)) {
            out.entry(self.signature(c)).or_default().push(c.clone());
        }
        out
    }

    /// Every collection's layouts the catalogue names, by name.
    pub(super) fn layouts_now(&self) -> Vec<(String, Signature)> {
        (self.layouts.by_name.keys()).map(|name| (name.clone(), self.signature(name))).collect()
    }

    /// `collections` (the catalogue left out) grouped by the placement they use, with
    /// its ranges.
    pub(super) fn by_placement(&self, collections: &[String]) -> Vec<Ranges> {
        let me = self.me;
        let mut out = Vec::new();
        for (signature, collections) in self.signatures(collections) {
            if collections.is_empty() {
                continue;
            }
            let placement = self.placement_by(&signature);
            let intervals = (placement.intervals().into_iter())
                .map(|(interval, list)| {
                    let pending = placement.pending_in(me, &interval);
                    (interval, list, pending)
                })
                .collect();
            out.push(Ranges { intervals, collections });
        }
        out
    }

    /// Builds the placement of every layout the catalogue names that is not the
    /// cluster's, and notes which each collection uses; `view_changed` rebuilds them
    /// all (the members changed).
    pub(super) fn rebuild_layouts(&mut self, membership: &Membership, view_changed: bool) {
        let default = self.default_resolved();
        let mut built =
            if view_changed { Vec::new() } else { std::mem::take(&mut self.layouts.built) };
        let mut by_name = BTreeMap::new();
        let mut wanted: Vec<Resolved> = Vec::new();
        let named: Vec<(String, Resolved, Option<Resolved>, bool)> = (self.catalogue.layouts())
            .map(|(name, s)| {
                let next = s.moving.as_ref().map(|m| self.resolve(&m.to, &m.labels));
                let joint = s.moving.as_ref().is_some_and(|m| m.phase == MovePhase::Joint);
                (name.to_string(), self.resolve(&s.current, &s.labels), next, joint)
            })
            .collect();
        for (_, now, next, _) in &named {
            for r in std::iter::once(now).chain(next.as_ref()) {
                if *r != default && !wanted.contains(r) {
                    wanted.push(r.clone());
                }
            }
        }
        built.retain(|(k, _, _)| wanted.contains(k));
        for key in wanted {
            if built.iter().any(|(k, _, _)| *k == key) {
                continue;
            }
            let (n, spread, labels) = key.clone();
            let p = Placement::with_labels(membership.members(), n, spread, labels);
            let share = replicated_share(&p, self.me);
            built.push((key, p, share));
        }
        let slot = |r: &Resolved| built.iter().position(|(k, _, _)| k == r);
        for (name, now, next, joint) in named {
            by_name.insert(name, (slot(&now), next.as_ref().map(slot), joint));
        }
        self.layouts = Layouts { built, by_name };
    }
}
