//! Messages of the two-party Merkle sync (anti-entropy) protocol.
//!
//! A session runs between an *initiator* and a *responder* over one collection and one
//! ring interval, strictly alternating: each side answers every [`SyncMessage`] with
//! exactly one, until a side that has nothing left to say receives a step with nothing
//! in it and closes with [`SyncBody::Done`]. The state machines are in [`crate::sync`];
//! the walk-through of a session is in its module docs.

use crate::{
    entry::{Entry, Version},
    hash::{Interval, Placement},
    merkle::{NodeRef, Summary},
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One message of a sync session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMessage {
    /// The session this message belongs to, chosen by the initiator.
    pub session: u64,
    /// What the message says.
    pub body: SyncBody,
}

/// The body of a [`SyncMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncBody {
    /// The initiator opens a session.
    Begin {
        /// The collection to reconcile.
        collection: String,
        /// How the collection places keys (both sides must agree).
        placement: Placement,
        /// The ring interval both sides replicate.
        range: Interval,
        /// The deepest stored Merkle level the initiator has; the session uses the
        /// smaller of the two sides' depths.
        depth: u8,
        /// Salt for the virtual digests below the stored depth.
        salt: u64,
        /// The initiator's count and digest of the interval.
        root: Summary,
    },
    /// A page of work items.
    Step {
        /// The items, each independent of the others.
        items: Vec<SyncItem>,
    },
    /// The sender has nothing left and neither has its peer: the session is over.
    Done,
    /// The sender gives up on the session.
    Abort {
        /// Why, for the logs.
        reason: String,
    },
}

/// One unit of work in a [`SyncBody::Step`]. Variants travel under one-letter names
/// (`C`, `V`, `E`, `W`): a step carries thousands of items, and the tag is per item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncItem {
    /// "`node` differs; these are my digests of its children within the interval."
    #[serde(rename = "C")]
    Children {
        /// The differing node.
        node: NodeRef,
        /// Bit `i` set when child `i` holds at least one of the sender's entries.
        mask: u8,
        /// The digests of the non-empty children, in child order.
        digests: Vec<u64>,
    },
    /// "`node` differs; these are the versions of all my entries in it."
    #[serde(rename = "V")]
    Versions {
        /// The differing node.
        node: NodeRef,
        /// Every key the sender holds in the node (within the interval), with its version.
        versions: Vec<(Bytes, Version)>,
    },
    /// "Here are entries newer than yours, or that you lack: merge them."
    #[serde(rename = "E")]
    Entries {
        /// The keys and their entries.
        entries: Vec<(Bytes, Entry)>,
    },
    /// "Send me your entries for these keys."
    #[serde(rename = "W")]
    Want {
        /// The keys wanted.
        keys: Vec<Bytes>,
    },
}
