//! The second half of a joint read (see [`crate::ring::placement`], "Joint reads"): the
//! future owners of a key or a scan's range, while a change of the ring touches it, or
//! its owners under the layout its collection moves to ([`crate::ring::collection`]).
//! The coordinator's reads and writes and the scans count them the same way.

use crate::entry::NodeId;

/// The future owners that must answer too, unless the change's makers say it is still
/// under way.
#[derive(Debug, Default)]
pub(super) struct Joint {
    /// The future owners that are readable, and how many of them must answer.
    pub(super) readable: Vec<NodeId>,
    pub(super) required: usize,
    /// The members making the change, and those that answered it is still under way:
    /// when all of them say so, no write counted against the future owners yet.
    pub(super) makers: Vec<NodeId>,
    pub(super) still: Vec<NodeId>,
    /// Whether the group is the owners under the layout the collection moves to (else
    /// the ring's future owners): for the messages that say who is missing.
    pub(super) layout: bool,
}

impl Joint {
    /// Whether every maker said its change is still under way.
    pub(super) fn waived(&self) -> bool {
        !self.makers.is_empty() && self.makers.iter().all(|m| self.still.contains(m))
    }

    /// Notes that `from` answered that its change of the ring is still under way.
    pub(super) fn still_changing(&mut self, from: NodeId) {
        if self.makers.contains(&from) && !self.still.contains(&from) {
            self.still.push(from);
        }
    }
}
