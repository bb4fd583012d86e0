//! One collection's placement: the [`Placement`] of the layout it uses, and — while it
//! moves to another layout ([`crate::catalogue::layout`]) — the one it moves to.
//!
//! While a collection moves, a key has two sets of owners: those of the current layout
//! (`owners`, whose level every request needs, as always) and those of the next one
//! ([`KeyPlacement::next`]). Every write goes to both and needs the level of each; reads
//! need the next layout's level too once the move is in its joint phase. What a node
//! holds for the collection is what either layout gives it: anti-entropy syncs with the
//! replicas of both, and cleaning keeps both.

use super::{placement::Group, KeyPlacement, Placement, RingTable};
use crate::{
    entry::NodeId,
    hash::{Interval, Position},
};

/// Where one collection's keys go (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct CollectionPlacement<'a> {
    /// The layout the collection's owners hold it under.
    pub now: &'a Placement,
    /// The layout it moves to, while it moves.
    pub next: Option<&'a Placement>,
    /// Whether reads count the next layout's owners too (the move's joint phase).
    pub joint: bool,
}

impl<'a> CollectionPlacement<'a> {
    /// A collection that does not move.
    pub fn settled(now: &'a Placement) -> Self {
        CollectionPlacement { now, next: None, joint: false }
    }

    /// The owners, pending replicas and future owners of position `pos`, and while the
    /// collection moves, its owners under the next layout.
    pub fn key(&self, pos: Position) -> KeyPlacement {
        let mut k = self.now.key(pos);
        let Some(next) = self.next else { return k };
        let nk = next.key(pos);
        if nk.owners != k.owners {
            k.next.push(Group { nodes: nk.owners.clone(), makers: Vec::new() });
        }
        let later = [&k.owners, &k.future, &nk.owners];
        if !nk.future.is_empty() && !later.contains(&&nk.future) {
            k.next.push(Group { nodes: nk.future.clone(), makers: nk.makers.clone() });
        }
        let mut extra: Vec<NodeId> = Vec::new();
        for id in nk.pending.iter().chain(k.next.iter().flat_map(|g| &g.nodes)) {
            let known = k.owners.contains(id) || k.pending.contains(id) || extra.contains(id);
            if !known && !self.now.dead(*id) {
                extra.push(*id);
            }
        }
        k.next_pending = extra;
        k.next_joint = self.joint && !k.next.is_empty();
        k
    }

    /// The one member owning every key, with nothing changing: see
    /// [`Placement::sole_owner`].
    pub fn sole_owner(&self) -> Option<NodeId> {
        if self.next.is_some() {
            return None;
        }
        self.now.sole_owner()
    }

    /// The replicas of `pos` on `table` under either layout: the current one's, then
    /// those the next one adds.
    pub fn list_on(&self, table: &RingTable, pos: Position) -> Vec<NodeId> {
        let mut list = self.now.list_on(table, pos);
        if let Some(next) = self.next {
            for id in next.list_on(table, pos) {
                if !list.contains(&id) {
                    list.push(id);
                }
            }
        }
        list
    }

    /// Every token interval of `table` with its replicas under either layout (see
    /// [`CollectionPlacement::list_on`]).
    pub fn intervals_on(&self, table: &RingTable) -> Vec<(Interval, Vec<NodeId>)> {
        let mut out = self.now.intervals_on(table);
        if let Some(next) = self.next {
            for ((_, list), (_, more)) in out.iter_mut().zip(next.intervals_on(table)) {
                for id in more {
                    if !list.contains(&id) {
                        list.push(id);
                    }
                }
            }
        }
        out
    }

    /// Every token interval of the owners' table with its replicas under either layout.
    pub fn intervals(&self) -> Vec<(Interval, Vec<NodeId>)> {
        self.intervals_on(self.now.owners_table())
    }

    /// Whether `id` will replicate any part of `interval` once the ring's announced
    /// changes are done, under either layout.
    pub fn pending_in(&self, id: NodeId, interval: &Interval) -> bool {
        self.now.pending_in(id, interval) || self.next.is_some_and(|n| n.pending_in(id, interval))
    }

    /// Whether a change of the ring is announced, or the collection moves.
    pub fn in_transition(&self) -> bool {
        self.now.in_transition() || self.next.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Member, Status};

    fn members(n: u64) -> Vec<Member> {
        (1..=n)
            .map(|i| Member::new(NodeId(i), "a:1", vec![i * 10]).with(Status::Alive, 1))
            .collect()
    }

    #[test]
    fn a_moving_key_is_written_to_both_layouts_and_read_jointly_only_when_told() {
        let m = members(5);
        let three = Placement::new(&m, 3);
        let one = Placement::new(&m, 1);
        let copying = CollectionPlacement { now: &three, next: Some(&one), joint: false };
        let k = copying.key(15);
        assert_eq!(k.owners, vec![NodeId(2), NodeId(3), NodeId(4)]);
        // The one owner under N = 1 is among the three: a group of its own, no new target.
        assert_eq!(k.next, vec![Group { nodes: vec![NodeId(2)], makers: vec![] }]);
        assert!(k.next_pending.is_empty() && !k.next_joint);
        assert_eq!(k.write_targets(), vec![NodeId(2), NodeId(3), NodeId(4)]);
        // Growing: the two nodes N = 5 adds take every write.
        let five = Placement::new(&m, 5);
        let growing = CollectionPlacement { now: &three, next: Some(&five), joint: true };
        let k = growing.key(15);
        assert_eq!(k.next_pending, vec![NodeId(5), NodeId(1)]);
        assert_eq!(k.write_targets().len(), 5);
        assert!(k.next_joint);
        // Lists and intervals hold both layouts' replicas.
        assert_eq!(growing.list_on(three.owners_table(), 15).len(), 5);
        for (interval, list) in growing.intervals() {
            assert_eq!(list, growing.list_on(three.owners_table(), interval.end));
        }
        // A settled collection is its placement.
        let settled = CollectionPlacement::settled(&three);
        assert_eq!(settled.key(15), three.key(15));
        assert!(!settled.in_transition() && growing.in_transition());
        // The same layout on both sides adds nothing.
        let same = CollectionPlacement { now: &three, next: Some(&three), joint: true };
        assert_eq!(same.key(15).next, vec![]);
        assert!(!same.key(15).next_joint);
    }
}
