//! Each collection's placement on this node: the layout it uses (its replication factor
//! and selector, [`crate::catalogue::layout`]), and while it moves, the layout it moves
//! to. The placements are built over the node's view whenever the view or the catalogue
//! changes; collections that use the same layouts share them, and what walks every range
//! of every collection (anti-entropy, hand-offs, cleaning) walks them a placement at a
//! time ([`Node::by_placement`]).

use super::{replicated_share, Node};
use crate::{
    catalogue::{is_catalogue, Layout},
    entry::NodeId,
    hash::Interval,
    ring::{CollectionPlacement, Placement, Spread},
    store::Store,
};
use std::collections::{BTreeMap, BTreeSet};

/// A layout with the cluster's replication factor filled in: what a placement is built
/// for.
pub(super) type Resolved = (usize, Spread);

/// The layouts a collection's placement is made of: the one it uses, and the one it
/// moves to.
pub(super) type Signature = (Resolved, Option<Resolved>);

/// The collections that use one placement, with its ranges.
#[derive(Debug)]
pub(super) struct Ranges {
    /// Every token interval of the owners' table, its replicas under either layout, and
    /// whether this node is a pending replica of any part of it.
    pub(super) intervals: Vec<(Interval, Vec<NodeId>, bool)>,
    /// The collections.
    pub(super) collections: Vec<String>,
}

impl<S: Store> Node<S> {
    /// `layout` with the cluster's replication factor filled in.
    pub(super) fn resolve(&self, layout: &Layout) -> Resolved {
        (layout.replicas_or(self.config.replicas.max(1)), layout.spread())
    }

    /// The placement of `layout` over this node's view, and this node's share of the
    /// ring under it.
    pub(super) fn placement_of(&self, layout: &Layout) -> (&Placement, f64) {
        self.placement_resolved(&self.resolve(layout))
    }

    fn placement_resolved(&self, key: &Resolved) -> (&Placement, f64) {
        match self.layouts.get(key) {
            Some((p, share)) => (p, *share),
            None => (&self.placement, self.ring_share),
        }
    }

    /// The layouts `collection`'s placement is made of (never the catalogue's).
    pub(super) fn signature(&self, collection: &str) -> Signature {
        let default = (self.config.replicas.max(1), Spread::default());
        match self.catalogue.layout(collection) {
            None => (default, None),
            Some(state) => {
                (self.resolve(&state.current), state.moving.as_ref().map(|m| self.resolve(&m.to)))
            }
        }
    }

    /// The placement of a signature (its reads never joint: for walking ranges).
    pub(super) fn placement_by(&self, signature: &Signature) -> CollectionPlacement<'_> {
        CollectionPlacement {
            now: self.placement_resolved(&signature.0).0,
            next: signature.1.as_ref().map(|k| self.placement_resolved(k).0),
            joint: false,
        }
    }

    /// Every signature in use: the cluster's layout, and every collection's in the
    /// catalogue, with `collections` sorted under theirs.
    pub(super) fn signatures(&self, collections: &[String]) -> BTreeMap<Signature, Vec<String>> {
        let default = (self.config.replicas.max(1), Spread::default());
        let mut out: BTreeMap<Signature, Vec<String>> = BTreeMap::new();
        out.entry((default, None)).or_default();
        for (name, _) in self.catalogue.layouts() {
            out.entry(self.signature(name)).or_default();
        }
        for c in collections.iter().filter(|c| !is_catalogue(c)) {
            out.entry(self.signature(c)).or_default().push(c.clone());
        }
        out
    }

    /// Every collection's layouts the catalogue names, by name.
    pub(super) fn layouts_now(&self) -> Vec<(String, Signature)> {
        (self.catalogue.layouts())
            .map(|(name, _)| (name.to_string(), self.signature(name)))
            .collect()
    }

    /// `collections` (the catalogue left out) grouped by the placement they use, with
    /// its ranges.
    pub(super) fn by_placement(&self, collections: &[String]) -> Vec<Ranges> {
        let me = self.id();
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
    /// cluster's.
    pub(super) fn rebuild_layouts(&mut self) {
        let default = (self.config.replicas.max(1), Spread::default());
        let wanted: BTreeSet<Resolved> = self
            .catalogue
            .layouts()
            .flat_map(|(_, s)| std::iter::once(&s.current).chain(s.moving.as_ref().map(|m| &m.to)))
            .map(|l| self.resolve(l))
            .filter(|k| *k != default)
            .collect();
        self.layouts.retain(|k, _| wanted.contains(k));
        for key in wanted {
            if self.layouts.contains_key(&key) {
                continue;
            }
            let p = Placement::with_spread(self.membership.members(), key.0, key.1.clone());
            let share = replicated_share(&p, self.id());
            self.layouts.insert(key, (p, share));
        }
    }
}
