//! Placement: which nodes a key's reads and writes go to, and whose answers count.
//!
//! Strict quorums (R + W > N) only hold if every coordinator counts against the same N
//! nodes for a key, whatever it believes about their health. So the replicas of a key
//! are fixed by the ring alone, not by who is serving right now:
//!
//! - **Owners.** The first N distinct nodes clockwise from the key's position on the
//!   table of *owning* members: every member that has not left and is not joining —
//!   alive, suspected, dead or re-syncing alike ([`Member::owns`]; a record at
//!   incarnation 0 that is not joining was never a serving node and owns nothing). N is the replication
//!   factor, capped by the number of owning members (a lone node owns everything with
//!   N = 1, two nodes with N = 2). A down owner does not lower the requirement: a write
//!   it misses leaves a hint, and a hint is not an acknowledgement.
//! - **Pending replicas.** While the ring changes — a member joining
//!   ([`Member::joining`]), leaving gracefully or moving a token ([`Member::next_tokens`])
//!   — the *future* table places every member on the positions it will hold once the
//!   change is done. For a key whose owners differ there, the nodes the future adds are
//!   *pending*: they receive every write from the moment the change is announced, and a
//!   write needs `W + pending` acknowledgements from owners and pending replicas together
//!   (Cassandra's rule). One node enters, one leaves the set, so at least W of the old
//!   owners and W of the new ones hold every acknowledged write, and the hand-off can end
//!   with no moment where the final owners hold fewer.
//! - **Joint reads.** While a change is announced, a read needs R readable answers from
//!   the current owners *and* R from the future ones (the owners once the change is
//!   done; a joining node is not readable until its join completed). Coordinators learn
//!   that a change completed at different moments — a partition can hold one back for
//!   long — and one that already counts against the new owners acknowledges a write
//!   with W of them alone: a coordinator still in the change meets it through the
//!   future owners. Joint writes (W + pending) and joint reads are what let the change
//!   complete without waiting for everyone to hear of it (Raft's joint consensus, here
//!   for replica sets). Until a change completes nobody counts against its future
//!   owners, so while every member making it ([`KeyPlacement::makers`]) answers that
//!   its change is still under way, the read needs no quorum of the future owners.
//! - **Readable owners.** A read counts only the answers of owners that are `Alive`:
//!   caught up. A re-syncing owner (back from a restart, a death or a partition) still
//!   takes writes and its acknowledgements count — it stored them durably — but it
//!   answers reads for nobody's quorum until its hand-off round has merged what it
//!   missed; a suspected owner is not counted either.
//!
//! - **Spread.** A placement may choose each position's replicas among the members a
//!   selector accepts and spread them over zones ([`Placement::with_spread`], see
//!   [`super::spread`]); owners, pending replicas and future owners all follow it.
//!
//! A write acknowledged by W owners and a read answered by R readable owners with
//! R + W > N meet in at least one node, which holds the write: that is the quorum
//! guarantee, at every moment, including while nodes fail, restart, join, leave or move
//! tokens — provided every coordinator heard a change was announced before it completes
//! (the node making it waits `ring_delay` first, time for gossip to spread).

use super::{Labels, RingTable, Spread};
use crate::{
    entry::NodeId,
    hash::{Interval, Position},
    membership::Member,
    membership::Status,
};
use std::collections::{BTreeMap, BTreeSet};

/// Where one key's requests go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPlacement {
    /// The key's owners, in preference order (the first is its primary).
    pub owners: Vec<NodeId>,
    /// Nodes that will own the key once the ring's announced changes are done: they take
    /// its writes too.
    pub pending: Vec<NodeId>,
    /// The key's owners once the announced changes are done, when they differ from
    /// `owners` (empty otherwise): reads need a quorum of them too.
    pub future: Vec<NodeId>,
    /// The members whose announced changes make `future` differ: joining pending
    /// replicas, and owners that leave the key's set (a leaver, a token's mover). While
    /// each of them says its change is still under way, nobody counts against `future`
    /// yet.
    pub makers: Vec<NodeId>,
    /// While the key's collection moves to another layout
    /// ([`crate::catalogue::layout`]): its owners under that layout — now, and once the
    /// ring's announced changes are done, where they differ — each of which must
    /// acknowledge a write at the request's level too.
    pub next: Vec<Group>,
    /// Nodes the new layout adds as pending replicas of the key: they take its writes.
    pub next_pending: Vec<NodeId>,
    /// Whether reads need the level of each `next` group too (the move's joint phase).
    pub next_joint: bool,
}

/// A set of owners that must answer at the request's level, unless every member making
/// the change that forms it says the change is still under way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    /// The owners.
    pub nodes: Vec<NodeId>,
    /// The members whose announced ring changes form the group (see
    /// [`KeyPlacement::makers`]); empty when it must answer in any case.
    pub makers: Vec<NodeId>,
}

impl KeyPlacement {
    /// Every node a write goes to: the owners, then the pending replicas, then the
    /// owners and pending replicas of a layout the collection moves to.
    pub fn write_targets(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self.owners.iter().chain(&self.pending).copied().collect();
        let next = self.next.iter().flat_map(|g| &g.nodes).chain(&self.next_pending);
        for id in next {
            if !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }
}

/// The ring as placement sees it: owners, pending replicas and readable members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    owners: RingTable,
    future: RingTable,
    /// Whether the future table differs from the owners' (a change is announced).
    changing: bool,
    /// Members whose own change is under way ([`Member::changing`]).
    changers: BTreeSet<NodeId>,
    readable: BTreeSet<NodeId>,
    dead: BTreeSet<NodeId>,
    down: BTreeSet<NodeId>,
    n: usize,
    /// Which members may hold replicas and whether they spread over zones
    /// ([`super::spread`]); the default takes the plain preference lists.
    spread: Spread,
    /// Every member's labels, kept when `spread` needs them.
    labels: BTreeMap<NodeId, Labels>,
}

impl Placement {
    /// Placement over `members` (this node's view, itself included) with replication
    /// factor `n`.
    pub fn new<'a>(members: impl IntoIterator<Item = &'a Member>, n: usize) -> Self {
        Self::with_spread(members, n, Spread::default())
    }

    /// As [`Placement::new`], the replicas of every position chosen among the members
    /// `spread` accepts and spread over its zones ([`RingTable::preference_list_spread`]).
    pub fn with_spread<'a>(
        members: impl IntoIterator<Item = &'a Member>,
        n: usize,
        spread: Spread,
    ) -> Self {
        let members: Vec<&Member> = members.into_iter().collect();
        let labels = members.iter().map(|m| (m.id, m.labels.clone())).collect();
        Self::with_labels(members, n, spread, labels)
    }

    /// As [`Placement::with_spread`], each member's labels taken from `labels` (none for
    /// a member it does not name) rather than from its record: a collection's layout
    /// places by the labels it recorded ([`crate::catalogue::LabelSnapshot`]).
    pub fn with_labels<'a>(
        members: impl IntoIterator<Item = &'a Member>,
        n: usize,
        spread: Spread,
        labels: BTreeMap<NodeId, Labels>,
    ) -> Self {
        let members: Vec<&Member> = members.into_iter().collect();
        let labels = if spread == Spread::default() { BTreeMap::new() } else { labels };
        let owners = RingTable::new(
            members.iter().filter(|m| m.owns()).map(|m| (m.id, m.tokens.as_slice())),
        );
        // A joining member that died or left is not expected any more.
        let future = RingTable::new(
            members
                .iter()
                .filter(|m| !(m.joining && matches!(m.status, Status::Left | Status::Dead)))
                .filter(|m| !m.future_tokens().is_empty())
                .map(|m| (m.id, m.future_tokens())),
        );
        Placement {
            changing: future != owners,
            owners,
            future,
            changers: members.iter().filter(|m| m.changing()).map(|m| m.id).collect(),
            readable: members.iter().filter(|m| readable(m)).map(|m| m.id).collect(),
            dead: members.iter().filter(|m| m.status == Status::Dead).map(|m| m.id).collect(),
            down: members.iter().filter(|m| m.status.is_down()).map(|m| m.id).collect(),
            n: n.max(1),
            spread,
            labels,
        }
    }

    /// The replicas of `pos` on `table`: its preference list of `n`, by `spread`.
    fn list(&self, table: &RingTable, pos: Position) -> Vec<NodeId> {
        if self.spread == Spread::default() {
            table.preference_list(pos, self.n)
        } else {
            table.preference_list_spread(pos, self.n, &self.spread, |id| self.labels.get(&id))
        }
    }

    /// Every token interval of the owners' table with its owners: what anti-entropy,
    /// hand-offs and cleaning walk.
    pub fn intervals(&self) -> Vec<(Interval, Vec<NodeId>)> {
        self.intervals_on(&self.owners)
    }

    /// Every token interval of `table` (the owners' table with a change applied: this
    /// node serving, a member gone) with its replicas under this placement's
    /// replication factor and spread.
    pub fn intervals_on(&self, table: &RingTable) -> Vec<(Interval, Vec<NodeId>)> {
        let vnodes = table.vnodes();
        let len = vnodes.len();
        (0..len)
            .map(|i| {
                let interval = Interval::new(vnodes[(i + len - 1) % len].pos, vnodes[i].pos);
                (interval, self.list(table, vnodes[i].pos))
            })
            .collect()
    }

    /// The replicas of `pos` on `table` under this placement's replication factor and
    /// spread.
    pub fn list_on(&self, table: &RingTable, pos: Position) -> Vec<NodeId> {
        self.list(table, pos)
    }

    /// The table of owning members (what anti-entropy, scans and cleaning walk).
    pub fn owners_table(&self) -> &RingTable {
        &self.owners
    }

    /// The ring once every announced change is done: owning members at their next
    /// tokens (none for a leaver), joining members at theirs.
    pub fn future_table(&self) -> &RingTable {
        &self.future
    }

    /// The replication factor as configured.
    pub fn replicas(&self) -> usize {
        self.n
    }

    /// The owners of position `pos`.
    pub fn owners(&self, pos: Position) -> Vec<NodeId> {
        self.list(&self.owners, pos)
    }

    /// The one member owning every key, with no change of the ring announced: what
    /// [`Placement::key`] finds for every position then (its only owner, nothing
    /// pending or future), without building it.
    pub fn sole_owner(&self) -> Option<NodeId> {
        if self.changing {
            return None;
        }
        self.owners.sole_node()
    }

    /// The owners, pending replicas and future owners of position `pos`. A dead member
    /// is never pending (there is no point in waiting for it).
    pub fn key(&self, pos: Position) -> KeyPlacement {
        let owners = self.owners(pos);
        if !self.changing {
            return KeyPlacement { owners, ..KeyPlacement::default() };
        }
        let future = self.list(&self.future, pos);
        let pending: Vec<NodeId> = future
            .iter()
            .filter(|id| !owners.contains(id) && !self.dead.contains(id))
            .copied()
            .collect();
        if future == owners {
            return KeyPlacement { owners, pending, ..KeyPlacement::default() };
        }
        // Joining pending replicas, and leaving or moving owners; not the owners a join
        // displaces, which change nothing of their own.
        let makers = pending
            .iter()
            .chain(owners.iter().filter(|id| !future.contains(id)))
            .filter(|id| self.changers.contains(id))
            .copied()
            .collect();
        KeyPlacement { owners, pending, future, makers, ..KeyPlacement::default() }
    }

    /// Whether `id` will replicate any part of `interval` once the announced changes are
    /// done: what it holds there must not be cleaned away.
    pub fn pending_in(&self, id: NodeId, interval: &Interval) -> bool {
        if !self.changing {
            return false;
        }
        let vnodes = self.future.vnodes();
        let len = vnodes.len();
        (0..len).any(|i| {
            let range = Interval::new(vnodes[(i + len - 1) % len].pos, vnodes[i].pos);
            overlaps(&range, interval) && self.list(&self.future, vnodes[i].pos).contains(&id)
        })
    }

    /// Whether `id` answers count toward read quorums: `Alive` and owning.
    pub fn readable(&self, id: NodeId) -> bool {
        self.readable.contains(&id)
    }

    /// Whether `id` is known dead or gone (no point in waiting for it).
    pub fn down(&self, id: NodeId) -> bool {
        self.down.contains(&id)
    }

    /// Whether `id` is known dead (it is never a pending replica).
    pub fn dead(&self, id: NodeId) -> bool {
        self.dead.contains(&id)
    }

    /// Whether a change of the ring is announced (some key has pending replicas).
    pub fn in_transition(&self) -> bool {
        self.changing
    }
}

fn readable(m: &Member) -> bool {
    m.status == Status::Alive && !m.joining
}

fn overlaps(a: &Interval, b: &Interval) -> bool {
    a.segments().into_iter().flatten().any(|s| b.overlaps_segment(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, tokens: &[u64], status: Status, joining: bool) -> Member {
        Member { joining, ..Member::new(NodeId(id), "a:1", tokens.to_vec()).with(status, 1) }
    }

    #[test]
    fn a_member_that_never_served_owns_nothing() {
        let real = member(1, &[10], Status::Alive, false);
        let made_up = Member::new(NodeId(2), "nowhere:1", vec![20]).with(Status::Dead, 0);
        let p = Placement::new(&[real, made_up], 3);
        assert_eq!(p.owners(15), vec![NodeId(1)]);
    }

    #[test]
    fn down_and_syncing_owners_stay_owners() {
        let members = [
            member(1, &[10], Status::Alive, false),
            member(2, &[20], Status::Dead, false),
            member(3, &[30], Status::Syncing, false),
            member(4, &[40], Status::Suspect, false),
        ];
        let p = Placement::new(&members, 3);
        assert_eq!(p.owners(5), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(p.owners(15), vec![NodeId(2), NodeId(3), NodeId(4)]);
        assert!(p.readable(NodeId(1)));
        for id in [2, 3, 4] {
            assert!(!p.readable(NodeId(id)), "{id} is not caught up or not answering");
        }
        assert!(p.down(NodeId(2)) && !p.down(NodeId(4)));
    }

    #[test]
    fn left_members_own_nothing_and_n_is_capped_by_owners() {
        let members =
            [member(1, &[10], Status::Alive, false), member(2, &[20], Status::Left, false)];
        let p = Placement::new(&members, 3);
        assert_eq!(p.owners(15), vec![NodeId(1)]);
        assert_eq!(p.key(15).pending, vec![]);
    }

    #[test]
    fn a_joining_member_is_pending_where_it_will_own() {
        let members = [
            member(1, &[10], Status::Alive, false),
            member(2, &[20], Status::Alive, false),
            member(3, &[30], Status::Alive, false),
            member(4, &[40], Status::Alive, false),
            member(9, &[15], Status::Syncing, true),
        ];
        let p = Placement::new(&members, 3);
        // (10, 15] moves to node 9: owners stay 2, 3, 4; 9 is pending.
        let k = p.key(12);
        assert_eq!(k.owners, vec![NodeId(2), NodeId(3), NodeId(4)]);
        assert_eq!(k.pending, vec![NodeId(9)]);
        assert_eq!(k.write_targets().len(), 4);
        // A key whose preference list 9 does not enter has no pending replica.
        assert_eq!(p.key(25).pending, vec![]);
        assert!(!p.readable(NodeId(9)));
        // Once it died, it is not waited for.
        let gone = [&members[..4], &[member(9, &[15], Status::Dead, true)]].concat();
        assert_eq!(Placement::new(&gone, 3).key(12).pending, vec![]);
    }

    fn four() -> Vec<Member> {
        (1..=4).map(|i| member(i, &[i * 10], Status::Alive, false)).collect()
    }

    #[test]
    fn the_heirs_of_a_leaver_are_pending_until_it_left() {
        let mut members = four();
        members[1].next_tokens = Some(Vec::new());
        let p = Placement::new(&members, 3);
        // Node 2 still owns (10, 20]; node 1 inherits it once 2 is gone.
        let k = p.key(15);
        assert_eq!(k.owners, vec![NodeId(2), NodeId(3), NodeId(4)]);
        assert_eq!(k.pending, vec![NodeId(1)]);
        assert_eq!(k.makers, vec![NodeId(2)], "the leaver makes the change");
        assert!(p.readable(NodeId(2)) && p.in_transition());
        assert!(p.pending_in(NodeId(1), &Interval::new(10, 20)));
        assert!(!p.pending_in(NodeId(2), &Interval::new(10, 20)));
        // A leaver that died is still leaving: its heirs stay pending.
        members[1].status = Status::Dead;
        assert_eq!(Placement::new(&members, 3).key(15).pending, vec![NodeId(1)]);
    }

    #[test]
    fn a_moving_token_makes_its_next_owner_pending() {
        let mut members = four();
        // Node 3 moves its token from 30 down to 25: (25, 30] passes to node 4's token.
        members[2].next_tokens = Some(vec![25]);
        let p = Placement::new(&members, 2);
        assert_eq!(p.key(27).owners, vec![NodeId(3), NodeId(4)]);
        assert_eq!(p.key(27).pending, vec![NodeId(1)]);
        assert_eq!(p.key(22).pending, vec![]);
    }

    #[test]
    fn during_a_change_reads_also_count_the_future_owners() {
        let mut members = four();
        members.push(member(9, &[15], Status::Syncing, true));
        let p = Placement::new(&members, 3);
        let k = p.key(12);
        assert_eq!(k.future, vec![NodeId(9), NodeId(2), NodeId(3)]);
        assert_eq!(p.key(25).future, vec![], "a key the change does not touch");
        // Once the join is done nothing is pending, and no joint read is needed.
        members[4] = member(9, &[15], Status::Alive, false);
        let done = Placement::new(&members, 3);
        assert_eq!(k.makers, vec![NodeId(9)], "the joining node makes the change");
        assert_eq!(done.key(12), KeyPlacement { owners: k.future.clone(), ..Default::default() });
        assert!(!done.in_transition());
    }

    #[test]
    fn a_spread_places_on_selected_members_in_distinct_zones() {
        let labelled = |id: u64, zone: &str, disk: &str| Member {
            labels: crate::membership::parse_labels([
                format!("zone={zone}").as_str(),
                format!("disk={disk}").as_str(),
            ])
            .unwrap(),
            ..member(id, &[id * 10], Status::Alive, false)
        };
        let members = [
            labelled(1, "a", "ssd"),
            labelled(2, "a", "ssd"),
            labelled(3, "b", "hdd"),
            labelled(4, "b", "ssd"),
            labelled(5, "c", "ssd"),
        ];
        let ssd = Spread { select: vec![("disk".into(), "ssd".into())], zone_label: None };
        let p = Placement::with_spread(&members, 3, ssd);
        assert_eq!(p.owners(25), vec![NodeId(4), NodeId(5), NodeId(1)], "node 3 is skipped");
        let zoned = Spread { select: Vec::new(), zone_label: Some("zone".into()) };
        let p = Placement::with_spread(&members, 3, zoned);
        assert_eq!(p.owners(5), vec![NodeId(1), NodeId(3), NodeId(5)], "one a zone");
        for (interval, owners) in p.intervals() {
            assert_eq!(owners, p.owners(interval.end));
        }
        // The default spread is the plain preference list.
        let plain = Placement::new(&members, 3);
        assert_eq!(plain.owners(5), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(plain, Placement::with_spread(&members, 3, Spread::default()));
    }
}
