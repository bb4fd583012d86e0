//! Where a collection's replicas live — how many, on which nodes — and how a change of
//! that moves its data without losing a write or a quorum's guarantee.
//!
//! A collection's *layout* is its replication factor and its node selector
//! ([`Layout`]). Users ask for one in the collection's settings
//! ([`super::CollectionSettings::replicas`], [`super::CollectionSettings::select`]); the
//! layout the cluster *uses* is a separate catalogue entry, the [`LayoutState`] under
//! [`layout_key`], written only by the member that drives moves (`node::moves`). Until
//! such an entry exists a collection uses the cluster's layout (`--replicas`, every
//! node).
//!
//! A change of layout changes the owners of the collection's keys, as a join or a token
//! move does, and is made safe the same way (see `ring::placement`): a [`Move`] from
//! the current layout to the wanted one goes through phases, each entered only once
//! every member that serves confirmed it knows the previous one:
//!
//! 1. [`MovePhase::Announced`]: coordinators write to the owners under both layouts —
//!    the level's quorum of each — and read from the old owners.
//! 2. [`MovePhase::Copying`]: every member told of the move, each node that gains ranges
//!    pulls them from enough old owners to hold every acknowledged write (the hand-off),
//!    and says so when asked.
//! 3. [`MovePhase::Joint`]: every gaining node has its ranges; reads need the quorum of
//!    the old owners *and* of the new ones.
//! 4. Done: every member reads jointly, so the state drops the old layout: requests count
//!    the new owners alone, and cleaning removes what nodes no longer own.
//!
//! At every moment a coordinator is at most one phase ahead of or behind another, and
//! each pair of neighbouring phases meets: what one acknowledges, the other reads.

use crate::{
    entry::NodeId,
    ring::{Labels, Spread},
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The members' labels a layout places replicas by, as they were when its move started
/// (members without labels left out): placement reads these, not the labels members
/// announce now, so a node restarted with other labels changes a collection's owners
/// only through a move (the driver starts one when they differ). Empty for a layout
/// that neither selects nor spreads over zones.
pub type LabelSnapshot = BTreeMap<NodeId, Labels>;

/// Most members a [`LabelSnapshot`] holds.
pub const MAX_SNAPSHOT: usize = 4_096;

/// The catalogue key under which `collection`'s [`LayoutState`] is kept: `layout/NAME`,
/// which no collection can be named (`/` is not allowed in names).
pub fn layout_key(collection: &str) -> String {
    format!("{LAYOUT_PREFIX}{collection}")
}

/// What every layout key starts with.
pub const LAYOUT_PREFIX: &str = "layout/";

/// Most replicas a collection may ask for.
pub const MAX_REPLICAS: u32 = 64;

/// How many replicas a collection's keys have and which nodes may hold them.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Layout {
    /// Replicas of each key; `None` is the cluster's (`--replicas`).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// The labels a node must carry to hold replicas; empty accepts every node.
    #[serde(default)]
    pub select: Labels,
    /// The label whose values are zones the replicas spread over, if any.
    #[serde(default)]
    pub zone_label: Option<String>,
}

impl Layout {
    /// The replication factor, `default` standing in for the cluster's.
    pub fn replicas_or(&self, default: usize) -> usize {
        self.replicas.map_or(default, |r| r as usize).max(1)
    }

    /// `key=value,...`, or `any` when every node may hold replicas.
    pub fn select_text(&self) -> String {
        if self.select.is_empty() {
            return "any".into();
        }
        let parts: Vec<String> = self.select.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.join(",")
    }

    /// Whether the layout places replicas by labels (it selects or spreads over zones).
    pub fn needs_labels(&self) -> bool {
        !self.select.is_empty() || self.zone_label.is_some()
    }

    /// Whether some member with `labels` (each member's) may hold replicas under this
    /// layout: a layout no member satisfies would leave its collection nowhere to live
    /// (moves never go there, and the server refuses such settings).
    pub fn placeable<'a>(&self, labels: impl IntoIterator<Item = &'a Labels>) -> bool {
        let spread = self.spread();
        self.select.is_empty() || labels.into_iter().any(|l| spread.accepts(l))
    }

    /// The spread this layout places replicas by ([`crate::ring::spread`]).
    pub fn spread(&self) -> Spread {
        Spread {
            select: self.select.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            zone_label: self.zone_label.clone(),
        }
    }
}

/// How far a [`Move`] got (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MovePhase {
    /// Writes go to both layouts' owners; reads to the old ones.
    Announced,
    /// As announced, and the gaining nodes pull their ranges.
    Copying,
    /// Reads need a quorum of both layouts' owners.
    Joint,
}

impl MovePhase {
    /// The phase's place in a move, 1 to 3.
    pub fn number(self) -> u8 {
        match self {
            MovePhase::Announced => 1,
            MovePhase::Copying => 2,
            MovePhase::Joint => 3,
        }
    }

    /// The phase's name, as `dhrt collection show` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            MovePhase::Announced => "announced",
            MovePhase::Copying => "copying",
            MovePhase::Joint => "joint",
        }
    }
}

/// A change of layout under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The layout it moves to.
    pub to: Layout,
    /// When it started (the driver's clock, ms): it names the move.
    pub at: u64,
    /// How far it got.
    pub phase: MovePhase,
    /// The members' labels `to` places replicas by.
    #[serde(default)]
    pub labels: LabelSnapshot,
}

/// The layout a collection uses, and the move under way, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutState {
    /// The layout whose owners hold the collection.
    #[serde(default)]
    pub current: Layout,
    /// The `at` of the move that made `current` (0: none did).
    #[serde(default)]
    pub since: u64,
    /// The move under way.
    #[serde(default)]
    pub moving: Option<Move>,
    /// The members' labels `current` places replicas by.
    #[serde(default)]
    pub labels: LabelSnapshot,
}

impl LayoutState {
    /// The state's bytes (MessagePack with named fields).
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("layout states always encode")
    }

    /// A state from its bytes: `None` when they do not decode or carry labels out of
    /// bounds.
    pub fn decode(bytes: &[u8]) -> Option<LayoutState> {
        let s: LayoutState = rmp_serde::from_slice(bytes).ok()?;
        let ok = |l: &Layout, labels: &LabelSnapshot| {
            crate::membership::labels_admitted(&l.select)
                && l.replicas.is_none_or(|r| (1..=MAX_REPLICAS).contains(&r))
                && l.zone_label.as_ref().is_none_or(|z| crate::membership::validate_label(z))
                && labels.len() <= MAX_SNAPSHOT
                && labels.values().all(crate::membership::labels_admitted)
        };
        let moving_ok = s.moving.as_ref().is_none_or(|m| ok(&m.to, &m.labels));
        (ok(&s.current, &s.labels) && moving_ok).then_some(s)
    }

    /// What a member reports about the move `at` when asked: how far it knows it got,
    /// `None` when it has not heard of it. A state that ended the move (or a later one)
    /// knows it whole.
    pub fn knows(&self, at: u64) -> Option<Knowledge> {
        if self.since >= at && at > 0 {
            return Some(Knowledge::Done);
        }
        match &self.moving {
            Some(m) if m.at == at => Some(Knowledge::Phase(m.phase)),
            Some(m) if m.at > at => Some(Knowledge::Done),
            _ => None,
        }
    }

    /// The state once `self`'s move advanced a phase: the next phase, or the move done.
    pub fn advanced(&self) -> LayoutState {
        let Some(m) = &self.moving else { return self.clone() };
        match m.phase {
            MovePhase::Announced => LayoutState {
                moving: Some(Move { phase: MovePhase::Copying, ..m.clone() }),
                ..self.clone()
            },
            MovePhase::Copying => LayoutState {
                moving: Some(Move { phase: MovePhase::Joint, ..m.clone() }),
                ..self.clone()
            },
            MovePhase::Joint => LayoutState {
                current: m.to.clone(),
                since: m.at,
                moving: None,
                labels: m.labels.clone(),
            },
        }
    }
}

/// How far a member knows a move got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Knowledge {
    /// It knows the move in this phase.
    Phase(MovePhase),
    /// It knows the move (or a later one) is done.
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(n: u32, select: &[(&str, &str)]) -> Layout {
        let select = select.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Layout { replicas: Some(n), select, zone_label: None }
    }

    #[test]
    fn a_move_advances_through_its_phases_and_ends_in_its_layout() {
        let start = LayoutState {
            current: Layout::default(),
            since: 0,
            moving: Some(Move {
                to: layout(5, &[]),
                at: 7,
                phase: MovePhase::Announced,
                labels: [(NodeId(1), layout(1, &[("disk", "ssd")]).select)].into(),
            }),
            labels: LabelSnapshot::new(),
        };
        assert_eq!(start.knows(7), Some(Knowledge::Phase(MovePhase::Announced)));
        let copying = start.advanced();
        assert_eq!(copying.knows(7), Some(Knowledge::Phase(MovePhase::Copying)));
        let joint = copying.advanced();
        assert_eq!(joint.knows(7), Some(Knowledge::Phase(MovePhase::Joint)));
        let done = joint.advanced();
        let snapshot = start.moving.as_ref().map(|m| m.labels.clone()).unwrap_or_default();
        assert_eq!(
            done,
            LayoutState { current: layout(5, &[]), since: 7, moving: None, labels: snapshot },
            "the move's labels become the layout's"
        );
        assert_eq!(done.knows(7), Some(Knowledge::Done));
        assert_eq!(done.advanced(), done);
        // A member that never heard of the move, and one that knows a later one.
        assert_eq!(LayoutState::default().knows(7), None);
        let later = LayoutState {
            moving: Some(Move {
                to: layout(2, &[]),
                at: 9,
                phase: MovePhase::Announced,
                labels: LabelSnapshot::new(),
            }),
            ..done.clone()
        };
        assert_eq!(later.knows(7), Some(Knowledge::Done));
        assert!(Knowledge::Phase(MovePhase::Joint) < Knowledge::Done);
    }

    #[test]
    fn states_survive_their_encoding_and_bad_ones_are_refused() {
        let s = LayoutState {
            current: layout(2, &[("disk", "ssd")]),
            since: 3,
            moving: Some(Move {
                to: layout(3, &[]),
                at: 9,
                phase: MovePhase::Copying,
                labels: LabelSnapshot::new(),
            }),
            labels: [(NodeId(4), layout(1, &[("disk", "ssd")]).select)].into(),
        };
        assert_eq!(LayoutState::decode(&s.encode()), Some(s.clone()));
        let mut bad = s;
        bad.labels.insert(NodeId(5), layout(1, &[("a b", "c")]).select);
        assert_eq!(LayoutState::decode(&bad.encode()), None, "a label out of bounds");
        let zero = LayoutState { current: layout(0, &[]), ..Default::default() };
        assert_eq!(LayoutState::decode(&zero.encode()), None);
        let bad = LayoutState { current: layout(2, &[("a b", "c")]), ..Default::default() };
        assert_eq!(LayoutState::decode(&bad.encode()), None);
        assert_eq!(LayoutState::decode(b"\xc1"), None);
        assert_eq!(layout_key("users"), "layout/users");
        assert_eq!(layout(3, &[("disk", "ssd"), ("zone", "a")]).select_text(), "disk=ssd,zone=a");
        assert_eq!(Layout::default().select_text(), "any");
        assert_eq!(Layout::default().replicas_or(3), 3);
    }
}
