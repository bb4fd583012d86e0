//! Messages of the Chord protocol between simulated vnodes (see [`super::node`]); they
//! travel only on the simulator's network, never in a frame.
//!
//! Every message is addressed from one vnode to another; the envelope (who sent it, to
//! which vnode) is the driver's. Requests carry a `req` number the answer echoes, so a
//! node can match answers to its outstanding calls and time out the rest.

use crate::{hash::Position, ring::Vnode};
use serde::{Deserialize, Serialize};

/// A Chord message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChordMessage {
    /// One step of an iterative lookup: "where should a lookup for `target` go next?"
    FindNext {
        /// Request number, echoed in [`ChordMessage::Next`].
        req: u64,
        /// The ring position looked up.
        target: Position,
    },
    /// The answer to [`ChordMessage::FindNext`].
    Next {
        /// The request answered.
        req: u64,
        /// What the receiver knows about the target.
        hop: NextHop,
    },
    /// Stabilization: "tell me your predecessor and successor list".
    GetNeighbors {
        /// Request number, echoed in [`ChordMessage::Neighbors`].
        req: u64,
    },
    /// The answer to [`ChordMessage::GetNeighbors`].
    Neighbors {
        /// The request answered.
        req: u64,
        /// The sender's predecessor, if it knows one.
        predecessor: Option<Vnode>,
        /// The sender's successor list, nearest first.
        successors: Vec<Vnode>,
    },
    /// "I might be your predecessor" (Chord's `notify`); the sender is the candidate.
    Notify,
    /// Liveness check of a predecessor (Chord's `check_predecessor`).
    Ping {
        /// Request number, echoed in [`ChordMessage::Pong`].
        req: u64,
    },
    /// The answer to [`ChordMessage::Ping`].
    Pong {
        /// The request answered.
        req: u64,
    },
    /// The sender leaves the ring gracefully; the receiver patches around it.
    Leaving {
        /// The leaver's predecessor (for its successor to adopt).
        predecessor: Option<Vnode>,
        /// The leaver's successor list (for its predecessor to adopt).
        successors: Vec<Vnode>,
    },
}

/// What a node answering [`ChordMessage::FindNext`] knows about the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NextHop {
    /// The target lies in `(my predecessor, me]`: I own it.
    Owner,
    /// The target lies between me and my successor: the first live node of this list
    /// (my successor list, nearest first) owns it.
    Successors(Vec<Vnode>),
    /// Try these nodes: the fingers closest before the target (best first), then my
    /// successor list as a fallback.
    Closer {
        /// Fingers strictly between me and the target, closest to the target first.
        fingers: Vec<Vnode>,
        /// My successor list, nearest first.
        successors: Vec<Vnode>,
        /// My predecessor: when the asker expected me to own the target, the target may
        /// belong to this newer predecessor instead.
        predecessor: Option<Vnode>,
    },
}
