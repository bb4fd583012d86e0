//! The node's view of the ring and of the catalogue: the owners' token table, where each
//! key's replicas are under the layout its collection uses (and, while the collection
//! moves, the one it moves to), this node's share of the ring, and every collection's
//! settings. Rebuilt when the membership view or the catalogue changes, read by every
//! part of the node that routes: the coordinator, scans, anti-entropy rounds, hand-offs,
//! migration, moves, removal. One value every such part is handed, rather than seven
//! fields of the node each reads on its own.

use super::layouts::Layouts;
use crate::{
    catalogue::{is_catalogue, Catalogue},
    entry::NodeId,
    membership::Membership,
    proto::client::Consistency,
    ring::{CollectionPlacement, Placement, RingTable},
};
use std::collections::BTreeMap;

/// The ring and the catalogue as one node sees them.
#[derive(Debug)]
pub struct View {
    /// The node whose view this is.
    pub(super) me: NodeId,
    /// The configured replication factor (N).
    pub(super) replicas: usize,
    /// The node's configured default consistency per collection.
    collection_consistency: BTreeMap<String, Consistency>,
    /// The owners' token table (`placement.owners_table()`, kept at hand).
    pub(super) table: RingTable,
    /// Owners, pending replicas and readable members (see [`crate::ring::placement`]).
    pub(super) placement: Placement,
    /// The same for the collections every owning member keeps (the catalogue).
    pub(super) everywhere: Placement,
    /// The same for every other layout a collection uses or moves to (replicas and
    /// selector, see [`crate::catalogue::layout`]), with this node's share of the ring
    /// under it; rebuilt when the view or the catalogue changes.
    pub(super) layouts: Layouts,
    /// The share of the ring (0 to 1) this node replicates at the configured replication
    /// factor: what its copy of a collection is scaled by to estimate the whole.
    pub(super) ring_share: f64,
    /// Every collection's settings, from this node's copy of the catalogue.
    pub(super) catalogue: Catalogue,
    /// The membership view digest the placements were built from.
    pub(super) digest: u64,
}

impl View {
    /// An empty view for node `me`, keeping `replicas` copies of each key, with the
    /// node's configured default consistency per collection.
    pub fn new(
        me: NodeId,
        replicas: usize,
        collection_consistency: BTreeMap<String, Consistency>,
    ) -> Self {
        View {
            me,
            replicas,
            collection_consistency,
            table: RingTable::default(),
            placement: Placement::default(),
            everywhere: Placement::default(),
            layouts: Layouts::default(),
            ring_share: 1.0,
            catalogue: Catalogue::default(),
            digest: 0,
        }
    }

    /// The token table of the owning members.
    pub fn table(&self) -> &RingTable {
        &self.table
    }

    /// Owners, pending replicas and readable members under the cluster's layout.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Every collection's settings as this node knows them ([`crate::catalogue`]).
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The share of the ring (0 to 1) this node replicates at the configured replication
    /// factor.
    pub fn ring_share(&self) -> f64 {
        self.ring_share
    }

    /// The level a request on `collection` asking for `requested` runs at, when it asked
    /// for [`Consistency::Default`]: the collection's default in the catalogue, else the
    /// one this node's configuration gives it, else quorum.
    pub fn consistency_for(&self, collection: &str, requested: Consistency) -> Consistency {
        if requested != Consistency::Default {
            return requested;
        }
        let agreed = self.catalogue.get(collection).and_then(|s| s.consistency);
        let configured = agreed.or_else(|| self.collection_consistency.get(collection).copied());
        requested.resolve(configured.unwrap_or(Consistency::Quorum))
    }

    /// How many replicas `collection` keeps: every owning member for the catalogue, the
    /// replication factor of its layout for every other collection (while it moves, the
    /// layout it moves from).
    pub fn replicas_for(&self, collection: &str) -> usize {
        if is_catalogue(collection) {
            return usize::MAX;
        }
        self.layout_size(collection).0
    }

    /// Owners, pending replicas and readable members for `collection`'s keys, under the
    /// layout it uses and, while it moves, the one it moves to.
    pub fn placement_for(&self, collection: &str) -> CollectionPlacement<'_> {
        if is_catalogue(collection) {
            return CollectionPlacement::settled(&self.everywhere);
        }
        self.layout_placement(collection)
    }

    /// The share of the ring (0 to 1) this node replicates of `collection`, under the
    /// layout it uses.
    pub fn ring_share_for(&self, collection: &str) -> f64 {
        if is_catalogue(collection) {
            return 1.0;
        }
        self.layout_size(collection).1
    }

    /// Rebuilds the placements when `membership`'s view changed since they were built.
    pub(super) fn refresh(&mut self, membership: &Membership) {
        let digest = membership.view_digest();
        if digest != self.digest || self.table.is_empty() {
            self.digest = digest;
            self.placement = Placement::new(membership.members(), self.replicas);
            self.everywhere = Placement::new(membership.members(), usize::MAX);
            self.table = self.placement.owners_table().clone();
            self.ring_share = replicated_share(&self.placement, self.me);
            self.rebuild_layouts(membership, true);
        }
    }

    /// Takes the catalogue as this node's copy now has it, and rebuilds the placements
    /// of the layouts it names.
    pub(super) fn set_catalogue(&mut self, catalogue: Catalogue, membership: &Membership) {
        self.catalogue = catalogue;
        self.rebuild_layouts(membership, false);
    }
}

/// The share of the ring (0 to 1) whose replicas under `placement` include `me`; 1 when
/// the ring is empty (a node alone keeps everything).
pub(super) fn replicated_share(placement: &Placement, me: NodeId) -> f64 {
    if placement.owners_table().is_empty() {
        return 1.0;
    }
    let total: u128 = placement
        .intervals()
        .into_iter()
        .filter(|(_, replicas)| replicas.contains(&me))
        .map(|(interval, _)| interval.len())
        .sum();
    (total as f64 / 2f64.powi(64)).min(1.0)
}
