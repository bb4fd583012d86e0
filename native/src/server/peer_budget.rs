//! The byte budgets of the outbound peer queues: one per link, one over all links.
//!
//! A peer link ([`super::peers`]) queues messages on the node thread and sends them
//! from its own task. Counting frames alone does not bound that queue's memory: a
//! replica write or a sync page may carry values up to the frame limit, so a peer that
//! stops reading could make a node hold thousands of such frames. So every queued
//! message also holds a [`Charge`] of its estimated frame length
//! ([`dhrt_core::proto::PeerMessage::estimated_frame_bytes`]) against its link's budget
//! and the node's; a message that does not fit either is refused (the caller drops
//! and counts it — the protocols are built for loss). The charge is given back when it
//! is dropped: once the link task has handed the frame to its socket, or when the link
//! discards it (the peer is unreachable, the node stops).
//!
//! Taking a charge never waits, so the node thread never blocks on a slow peer. Only
//! the node thread takes charges; link tasks only give them back, which only makes
//! room, yet the accounting stays exact under any interleaving (add, then check, then
//! undo on refusal). A frame larger than a whole link budget is charged as the whole
//! budget, so it still passes when its link's queue is empty ([`super::limits::Limits`]
//! keeps a link budget at least one frame and the total at least one link budget).

use super::stats::Counters;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

/// The node's budget over all its links (cloning shares it).
#[derive(Debug, Clone)]
pub struct PeerBudget {
    per_link: u64,
    total: u64,
    /// The bytes queued on all links: the live value of `dhrt_peer_queued_bytes`.
    counters: Arc<Counters>,
}

/// One link's budget, under the node's.
#[derive(Debug)]
pub struct LinkBudget {
    queued: AtomicU64,
    node: PeerBudget,
}

/// Bytes held by one queued message, given back when dropped.
#[derive(Debug)]
#[must_use = "the bytes are given back as soon as the charge is dropped"]
pub struct Charge {
    link: Arc<LinkBudget>,
    bytes: u64,
}

impl PeerBudget {
    /// At most `per_link` bytes queued on one link and `total` on all of them together;
    /// the bytes queued are kept in `counters.peer_queued_bytes`.
    pub fn new(per_link: usize, total: usize, counters: Arc<Counters>) -> Self {
        let per_link = (per_link as u64).max(1);
        PeerBudget { per_link, total: (total as u64).max(per_link), counters }
    }

    /// A budget for a new link.
    pub fn link(&self) -> Arc<LinkBudget> {
        Arc::new(LinkBudget { queued: AtomicU64::new(0), node: self.clone() })
    }

    /// Bytes queued on all links now.
    pub fn queued(&self) -> u64 {
        self.counters.peer_queued_bytes.load(Ordering::Relaxed)
    }
}

impl LinkBudget {
    /// Takes `bytes` (at most the whole link budget) for one message, or `None` when
    /// the link's budget or the node's has no room for them. Never waits.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Option<Charge> {
        let node = &self.node;
        let bytes = (bytes as u64).clamp(1, node.per_link);
        if self.queued.fetch_add(bytes, Ordering::AcqRel) + bytes > node.per_link {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            return None;
        }
        let all = &node.counters.peer_queued_bytes;
        if all.fetch_add(bytes, Ordering::AcqRel) + bytes > node.total {
            all.fetch_sub(bytes, Ordering::AcqRel);
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            return None;
        }
        Some(Charge { link: self.clone(), bytes })
    }

    /// Bytes queued on this link now.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }
}

impl Charge {
    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.link.queued.fetch_sub(self.bytes, Ordering::AcqRel);
        self.link.node.counters.peer_queued_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_link_refuses_until_its_frames_are_taken() {
        let node = PeerBudget::new(100, 1000, Arc::new(Counters::default()));
        let link = node.link();
        let first = link.charge(60).unwrap();
        let second = link.charge(40).unwrap();
        assert!(link.charge(1).is_none(), "the link's 100 bytes are all queued");
        assert_eq!((link.queued(), node.queued()), (100, 100));
        drop(first);
        assert_eq!((link.queued(), node.queued()), (40, 40));
        let third = link.charge(60).expect("the bytes given back are free again");
        assert!(link.charge(1).is_none());
        drop((second, third));
        assert_eq!((link.queued(), node.queued()), (0, 0));
    }

    #[test]
    fn the_node_budget_bounds_all_links_together() {
        let node = PeerBudget::new(100, 150, Arc::new(Counters::default()));
        let (a, b) = (node.link(), node.link());
        let held = (a.charge(100).unwrap(), b.charge(50).unwrap());
        assert!(b.charge(10).is_none(), "room on link b, none on the node");
        assert_eq!((a.queued(), b.queued(), node.queued()), (100, 50, 150));
        drop(held.0);
        assert!(b.charge(50).is_some());
        assert_eq!(node.queued(), 50, "the refused and the dropped charges are all back");
    }

    #[test]
    fn a_frame_larger_than_a_link_budget_passes_alone() {
        let node = PeerBudget::new(100, 100, Arc::new(Counters::default()));
        let link = node.link();
        let huge = link.charge(1 << 30).expect("an empty link takes one frame of any size");
        assert_eq!(huge.bytes(), 100);
        assert!(link.charge(1).is_none());
        drop(huge);
        assert_eq!(node.queued(), 0);
    }
}
