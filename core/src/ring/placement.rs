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
//! - **Pending replicas.** A joining member ([`Member::joining`]) takes over ranges it
//!   has not received yet. For a key whose owners would change once it joined, the
//!   nodes it would add are *pending*: they receive every write from the moment they
//!   announce themselves, and a write needs `W + pending` acknowledgements from owners
//!   and pending replicas together (Cassandra's rule). One node enters, one leaves the
//!   set, so at least W of the old owners and W of the new ones hold every acknowledged
//!   write, and the hand-off can end with no moment where the final owners hold fewer.
//! - **Readable owners.** A read counts only the answers of owners that are `Alive`:
//!   caught up. A re-syncing owner (back from a restart, a death or a partition) still
//!   takes writes and its acknowledgements count — it stored them durably — but it
//!   answers reads for nobody's quorum until its hand-off round has merged what it
//!   missed; a suspected owner is not counted either.
//!
//! A write acknowledged by W owners and a read answered by R readable owners with
//! R + W > N meet in at least one node, which holds the write: that is the quorum
//! guarantee, at every moment, including while nodes fail, restart or join.

use super::RingTable;
use crate::{entry::NodeId, hash::Position, membership::Member, membership::Status};
use std::collections::BTreeSet;

/// Where one key's requests go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPlacement {
    /// The key's owners, in preference order (the first is its primary).
    pub owners: Vec<NodeId>,
    /// Joining nodes that will own the key: they take its writes too.
    pub pending: Vec<NodeId>,
}

impl KeyPlacement {
    /// Every node a write goes to: the owners, then the pending replicas.
    pub fn write_targets(&self) -> Vec<NodeId> {
        self.owners.iter().chain(&self.pending).copied().collect()
    }
}

/// The ring as placement sees it: owners, pending replicas and readable members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    owners: RingTable,
    future: RingTable,
    readable: BTreeSet<NodeId>,
    down: BTreeSet<NodeId>,
    joining: BTreeSet<NodeId>,
    n: usize,
}

impl Placement {
    /// Placement over `members` (this node's view, itself included) with replication
    /// factor `n`.
    pub fn new<'a>(members: impl IntoIterator<Item = &'a Member>, n: usize) -> Self {
        let members: Vec<&Member> = members.into_iter().collect();
        let owning = || members.iter().filter(|m| m.owns());
        let owners = RingTable::new(owning().map(|m| (m.id, m.tokens.as_slice())));
        // A joining member that died or left is not expected any more.
        let joining: Vec<&&Member> = members
            .iter()
            .filter(|m| m.joining && !matches!(m.status, Status::Left | Status::Dead))
            .collect();
        let future = RingTable::new(
            owning().chain(joining.iter().copied()).map(|m| (m.id, m.tokens.as_slice())),
        );
        Placement {
            owners,
            future,
            readable: members.iter().filter(|m| readable(m)).map(|m| m.id).collect(),
            down: members.iter().filter(|m| m.status.is_down()).map(|m| m.id).collect(),
            joining: joining.iter().map(|m| m.id).collect(),
            n: n.max(1),
        }
    }

    /// The table of owning members (what anti-entropy, scans and cleaning walk).
    pub fn owners_table(&self) -> &RingTable {
        &self.owners
    }

    /// The table of owning and joining members: the ring once every join completed.
    pub fn future_table(&self) -> &RingTable {
        &self.future
    }

    /// The replication factor as configured.
    pub fn replicas(&self) -> usize {
        self.n
    }

    /// The owners of position `pos`.
    pub fn owners(&self, pos: Position) -> Vec<NodeId> {
        self.owners.preference_list(pos, self.n)
    }

    /// The owners and pending replicas of position `pos`.
    pub fn key(&self, pos: Position) -> KeyPlacement {
        let owners = self.owners(pos);
        let pending = if self.joining.is_empty() {
            Vec::new()
        } else {
            self.future
                .preference_list(pos, self.n)
                .into_iter()
                .filter(|id| self.joining.contains(id) && !owners.contains(id))
                .collect()
        };
        KeyPlacement { owners, pending }
    }

    /// Whether `id` answers count toward read quorums: `Alive` and owning.
    pub fn readable(&self, id: NodeId) -> bool {
        self.readable.contains(&id)
    }

    /// Whether `id` is known dead or gone (no point in waiting for it).
    pub fn down(&self, id: NodeId) -> bool {
        self.down.contains(&id)
    }

    /// Whether any member is joining.
    pub fn has_joining(&self) -> bool {
        !self.joining.is_empty()
    }
}

fn readable(m: &Member) -> bool {
    m.status == Status::Alive && !m.joining
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
}
