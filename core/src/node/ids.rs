//! The one place a node numbers the requests it sends, and the concern each serves.
//!
//! A node asks other nodes for many things — a client request's writes and reads, hint
//! deliveries, scan pages, the hand-off round's collection lists, migration's load
//! queries, a collection move's state queries, a removal's hand-offs — and a peer
//! answers each by echoing its request number. The number's top four bits say which
//! part of the node asked ([`Concern`]), so an answer goes straight to its owner
//! ([`Concern::of`]) instead of being offered to one part and then another.
//!
//! The other 60 bits count from a random start drawn at every start of the node:
//! answers still on their way to a previous life of the node, numbered from that life's
//! counter, must never match a request of this one — a stale `WriteAck` counted toward
//! a new write's quorum would acknowledge a write that replica never stored.

/// Which part of the node a request number belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Concern {
    /// A request the node coordinates for a client (or for itself): its replica writes
    /// and reads, and their re-stamped retries.
    Coordinator = 1,
    /// A delivery of hints to a replica that was down.
    Hints = 2,
    /// A page of a scan.
    Scans = 3,
    /// The hand-off round's question "which collections do you hold?".
    AntiEntropy = 4,
    /// Migration's load queries.
    Migration = 5,
    /// A collection move's state queries and the layout writes it makes of itself.
    Moves = 6,
    /// The removal of a dead member.
    Removal = 7,
}

/// Bits of a request number below its concern.
const COUNTER_BITS: u32 = 60;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

impl Concern {
    /// The concern a request number this node handed out belongs to; `None` for a
    /// number it never handed out (a peer's invention).
    pub fn of(req: u64) -> Option<Concern> {
        Some(match req >> COUNTER_BITS {
            1 => Concern::Coordinator,
            2 => Concern::Hints,
            3 => Concern::Scans,
            4 => Concern::AntiEntropy,
            5 => Concern::Migration,
            6 => Concern::Moves,
            7 => Concern::Removal,
            _ => return None,
        })
    }
}

/// Hands out request numbers: unique among every concern, tagged with their concern.
#[derive(Debug, Clone, Default)]
pub struct RequestIds {
    next: u64,
}

impl RequestIds {
    /// Numbers that follow `first` (a random draw at every start of the node).
    pub fn numbered_from(first: u64) -> Self {
        RequestIds { next: first & COUNTER_MASK }
    }

    /// A fresh request number for `concern`.
    pub fn next(&mut self, concern: Concern) -> u64 {
        self.next = self.next.wrapping_add(1) & COUNTER_MASK;
        (concern as u64) << COUNTER_BITS | self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_say_their_concern() {
        let mut ids = RequestIds::numbered_from(u64::MAX - 1);
        let a = ids.next(Concern::Coordinator);
        let b = ids.next(Concern::Hints);
        let c = ids.next(Concern::Coordinator);
        assert_eq!(Concern::of(a), Some(Concern::Coordinator));
        assert_eq!(Concern::of(b), Some(Concern::Hints));
        assert_ne!(a, c, "the counter wraps within its 60 bits");
        assert_ne!(a & COUNTER_MASK, b & COUNTER_MASK, "one counter for every concern");
        assert_eq!(Concern::of(0), None);
        assert_eq!(Concern::of(15 << COUNTER_BITS), None);
        for concern in [
            Concern::Coordinator,
            Concern::Hints,
            Concern::Scans,
            Concern::AntiEntropy,
            Concern::Migration,
            Concern::Moves,
            Concern::Removal,
        ] {
            assert_eq!(Concern::of(ids.next(concern)), Some(concern));
        }
    }
}
