//! Members, their status, and the precedence rules that merge what a node hears about
//! them.
//!
//! Every update about a member is a whole [`Member`] record. Records about the same
//! member are ordered by one total order, [`Member::precedence`]: incarnation first, then
//! status rank (`Alive < Syncing < Suspect < Dead < Left`), then address and tokens (so
//! that two different records never tie). A [`MemberState`] keeps the largest record it
//! was given, which is the classic SWIM rule set:
//!
//! - `Left(i)` beats everything at incarnation `≤ i`: leaving is final for its
//!   incarnation;
//! - `Dead(i)` beats `Alive(j)`, `Syncing(j)` and `Suspect(j)` for `j ≤ i`;
//! - `Suspect(i)` beats `Alive(j)` and `Syncing(j)` for `j ≤ i`;
//! - `Alive(j)` beats `Suspect(i)` only when `j > i`: only a fresh incarnation refutes.
//!
//! On top of the maximum sits one derived rule, readmission: a member that was ever
//! declared `Dead` or `Left` at incarnation `d` and is now claimed `Alive(j)` (`j > d`)
//! reads as `Syncing(j)` — readmitted, not yet serving — until a `Syncing(k)` with
//! `k > d` has been seen, which is the member's own announcement that it went through a
//! re-sync. So `Dead(i)` followed by `Alive(j)` gives `Syncing(j)`, and from
//! `Syncing(k)` the member's `Alive(j > k)` makes it `Alive`.
//!
//! The state is the maximum record plus two maxima (`down_at`, the highest incarnation
//! seen `Dead`/`Left`, and `synced_at`, the highest seen `Syncing`), and the effective
//! status is a function of the three. Maxima do not care about order or repetition, so
//! applying any set of updates, in any order, any number of times, yields the same
//! record: the merge is commutative, associative and idempotent (property-tested below).
//! A consequence of order-independence is that a stale `Dead(d)` that arrives *after*
//! `Alive(j)` also demotes the member to `Syncing(j)` if no `Syncing` after `d` was seen;
//! the member then re-syncs once more, which costs one cheap, empty Merkle exchange.

use crate::{hash::Position, NodeId};
use serde::{Deserialize, Serialize};
use std::{cmp::Ordering, collections::BTreeMap};

/// The largest incarnation accepted from the network. Anything above it is refused, so a
/// forged claim can never push a member's incarnation where it could not refute it.
pub const MAX_INCARNATION: u64 = u64::MAX / 2;

/// The health of a member, as gossiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Answering probes and serving requests.
    Alive,
    /// Failed a probe (directly and through helpers); refutable by the member.
    Suspect,
    /// Suspected for longer than the suspicion timeout; must re-sync to come back.
    Dead,
    /// Left gracefully; final for its incarnation.
    Left,
    /// Back after being declared dead (or freshly joined with a hand-off pending):
    /// answering probes but not serving until its data has been re-synced.
    Syncing,
}

impl Status {
    /// The rank that breaks ties between records of the same incarnation:
    /// `Alive < Syncing < Suspect < Dead < Left`.
    pub fn rank(self) -> u8 {
        match self {
            Status::Alive => 0,
            Status::Syncing => 1,
            Status::Suspect => 2,
            Status::Dead => 3,
            Status::Left => 4,
        }
    }

    /// `Dead` or `Left`: out of the cluster.
    pub fn is_down(self) -> bool {
        matches!(self, Status::Dead | Status::Left)
    }

    /// `Alive` or `Syncing`: running and reachable, as far as we know.
    pub fn is_up(self) -> bool {
        matches!(self, Status::Alive | Status::Syncing)
    }

    /// Whether failure detection probes a member with this status (everything not down).
    pub fn is_probed(self) -> bool {
        !self.is_down()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Alive => "alive",
            Status::Suspect => "suspect",
            Status::Dead => "dead",
            Status::Left => "left",
            Status::Syncing => "syncing",
        })
    }
}

/// One node of the cluster as the membership protocol knows it; also the unit of gossip.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The node's permanent id.
    pub id: NodeId,
    /// Where peers reach it (`host:port`), at most 255 bytes by default.
    pub addr: String,
    /// Its ring positions (virtual nodes), at most 256 by default.
    pub tokens: Vec<Position>,
    /// Its health, as claimed by whoever made this record.
    pub status: Status,
    /// Its incarnation: raised only by the member itself, to refute a claim about it.
    pub incarnation: u64,
    /// Whether the member is *joining*: a node new to the ring (never handed off) whose
    /// tokens are not yet its own. Its positions make it a pending replica — it receives
    /// the writes of the ranges it takes over, and its acknowledgements count on top of
    /// the owners' — not an owner (see [`crate::ring::placement`]). Set by the member
    /// itself and cleared with the `Alive` that ends its hand-off; records others derive
    /// from its own (a suspicion, a death) keep it, so every node classifies the member
    /// alike.
    #[serde(default)]
    pub joining: bool,
    /// The tokens an owner is about to hold, announced before it hands ranges off: its
    /// new positions during a token move, none at all during a graceful leave. While
    /// set, the member still owns its current tokens' ranges, and the nodes that will
    /// replicate a range once the change is done are *pending replicas* of it (see
    /// [`crate::ring::placement`]). Set and cleared by the member itself (cleared by the
    /// record that completes the move, by `Left`, or by giving the change up).
    #[serde(default)]
    pub next_tokens: Option<Vec<Position>>,
    /// The labels the node was started with (`--label zone=eu-1`): what collection
    /// selectors and zones place replicas by ([`crate::ring::spread`]). At most
    /// [`MAX_LABELS`], each checked by [`validate_label`]. Left out of the frame when
    /// empty, so a node without labels sends the record older nodes read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Most labels a node carries.
pub const MAX_LABELS: usize = 16;
/// Longest label key or value, in bytes.
pub const MAX_LABEL_LEN: usize = 64;

/// Why a label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Not of the form `key=value`.
    #[error("a label is key=value (as zone=eu-1), not {0:?}")]
    Form(String),
    /// An empty, overlong or oddly spelled key or value.
    #[error(
        "label {0:?}: keys and values are 1 to 64 characters of A-Z a-z 0-9 . _ - (as \
         zone=eu-1)"
    )]
    Spelling(String),
    /// More than [`MAX_LABELS`].
    #[error("a node carries at most {MAX_LABELS} labels, not {0}")]
    TooMany(usize),
    /// The same key twice.
    #[error("label key {0:?} is given twice")]
    Repeated(String),
}

/// Checks one label key or value: 1 to [`MAX_LABEL_LEN`] bytes of `A-Z a-z 0-9 . _ -`.
pub fn validate_label(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= MAX_LABEL_LEN
        && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses `key=value` labels (the command line's `--label`), checked.
pub fn parse_labels<'a>(
    given: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, LabelError> {
    let mut out = BTreeMap::new();
    for label in given {
        let (k, v) = label.split_once('=').ok_or_else(|| LabelError::Form(label.to_string()))?;
        if !validate_label(k) || !validate_label(v) {
            return Err(LabelError::Spelling(label.to_string()));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(LabelError::Repeated(k.to_string()));
        }
    }
    if out.len() > MAX_LABELS {
        return Err(LabelError::TooMany(out.len()));
    }
    Ok(out)
}

/// Whether a record's labels are within bounds (one from the network).
pub fn labels_admitted(labels: &BTreeMap<String, String>) -> bool {
    labels.len() <= MAX_LABELS && labels.iter().all(|(k, v)| validate_label(k) && validate_label(v))
}

impl Member {
    /// A new, `Alive` member at incarnation 0.
    pub fn new(id: NodeId, addr: impl Into<String>, tokens: Vec<Position>) -> Self {
        Member {
            id,
            addr: addr.into(),
            tokens,
            status: Status::Alive,
            incarnation: 0,
            joining: false,
            next_tokens: None,
            labels: BTreeMap::new(),
        }
    }

    /// Whether a change of the ring the member announced is under way: its join, its
    /// leave, or a token move.
    pub fn changing(&self) -> bool {
        self.status != Status::Left && (self.joining || self.next_tokens.is_some())
    }

    /// Whether the member announced a graceful leave (no tokens next) and has not left.
    pub fn leaving(&self) -> bool {
        self.status != Status::Left && self.next_tokens.as_ref().is_some_and(Vec::is_empty)
    }

    /// The positions the member will own once the changes it announced are done: its
    /// tokens if it is joining, its next tokens if it is moving or leaving, else its
    /// tokens; none if it owns nothing and is not joining.
    pub fn future_tokens(&self) -> &[Position] {
        if self.joining {
            &self.tokens
        } else if self.owns() {
            self.next_tokens.as_deref().unwrap_or(&self.tokens)
        } else {
            &[]
        }
    }

    /// Whether the member is a ring owner: not `Left`, not joining, and past
    /// incarnation 0. Owners stay owners while suspected, dead or re-syncing (strict
    /// quorums count them all). Every node that ever served announced `Alive` at an
    /// incarnation above 0 (the `Alive` that ends a hand-off raises it), so a record at
    /// incarnation 0 that is not joining was never a serving node: a made-up member
    /// (a peer's bug or attack) that must not take ranges from real ones.
    pub fn owns(&self) -> bool {
        self.status != Status::Left && !self.joining && self.incarnation > 0
    }

    /// The same member with another status and incarnation.
    pub fn with(&self, status: Status, incarnation: u64) -> Self {
        Member { status, incarnation, ..self.clone() }
    }

    /// The total order of records about one member: incarnation, then status rank, then
    /// address, then tokens, then the joining flag, then the next tokens. The larger
    /// record wins a merge.
    pub fn precedence(&self, other: &Member) -> Ordering {
        let mine = (self.incarnation, self.status.rank(), &self.addr, &self.tokens);
        let theirs = (other.incarnation, other.status.rank(), &other.addr, &other.tokens);
        mine.cmp(&theirs).then_with(|| {
            (self.joining, &self.next_tokens, &self.labels).cmp(&(
                other.joining,
                &other.next_tokens,
                &other.labels,
            ))
        })
    }

    /// Whether this record wins over `other` (strictly) in a merge.
    pub fn supersedes(&self, other: &Member) -> bool {
        self.precedence(other) == Ordering::Greater
    }
}

/// What one node knows about one member: the merge of every record heard about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// The maximum record, with its status replaced by the effective status.
    record: Member,
    /// The status of the maximum record, before the readmission rule.
    merged: Status,
    /// The highest incarnation at which the member was seen `Dead` or `Left`.
    down_at: Option<u64>,
    /// The highest incarnation at which the member was seen `Syncing`.
    synced_at: Option<u64>,
}

impl MemberState {
    /// The state after hearing one record.
    pub fn new(first: Member) -> Self {
        let merged = first.status;
        let mut state = MemberState { record: first, merged, down_at: None, synced_at: None };
        state.note(merged, state.record.incarnation);
        state.derive();
        state
    }

    /// The effective record: the winning record, with the readmission rule applied.
    pub fn record(&self) -> &Member {
        &self.record
    }

    /// Merges one record; returns whether the effective record changed. Records about
    /// another member are ignored.
    pub fn apply(&mut self, update: &Member) -> bool {
        if update.id != self.record.id {
            return false;
        }
        let before = (self.record.status, self.record.incarnation);
        self.note(update.status, update.incarnation);
        let mut body_changed = false;
        if self.merged_record_cmp(update) == Ordering::Less {
            body_changed = update.addr != self.record.addr
                || update.tokens != self.record.tokens
                || update.joining != self.record.joining
                || update.next_tokens != self.record.next_tokens
                || update.labels != self.record.labels;
            self.record = update.clone();
            self.merged = update.status;
        }
        self.derive();
        body_changed || before != (self.record.status, self.record.incarnation)
    }

    /// Forgets everything but the record itself and makes it `Alive` at its incarnation:
    /// used by a node that learns it was cut off, to drop its own stale suspicions.
    pub fn reset_alive(&mut self) {
        self.record.status = Status::Alive;
        self.merged = Status::Alive;
        self.down_at = None;
        self.synced_at = None;
    }

    fn merged_record_cmp(&self, update: &Member) -> Ordering {
        let r = &self.record;
        let mine = (r.incarnation, self.merged.rank(), &r.addr, &r.tokens);
        let theirs = (update.incarnation, update.status.rank(), &update.addr, &update.tokens);
        mine.cmp(&theirs).then_with(|| {
            (r.joining, &r.next_tokens, &r.labels).cmp(&(
                update.joining,
                &update.next_tokens,
                &update.labels,
            ))
        })
    }

    fn note(&mut self, status: Status, incarnation: u64) {
        match status {
            Status::Dead | Status::Left => {
                self.down_at = Some(self.down_at.map_or(incarnation, |d| d.max(incarnation)));
            }
            Status::Syncing => {
                self.synced_at = Some(self.synced_at.map_or(incarnation, |s| s.max(incarnation)));
            }
            Status::Alive | Status::Suspect => {}
        }
    }

    fn derive(&mut self) {
        let unsynced_death = self
            .down_at
            .is_some_and(|d| d < self.record.incarnation && self.synced_at.is_none_or(|s| s <= d));
        self.record.status = match self.merged {
            Status::Alive if unsynced_death => Status::Syncing,
            other => other,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(status: Status, incarnation: u64) -> Member {
        Member {
            id: NodeId(7),
            addr: "a:1".into(),
            tokens: vec![1, 2],
            status,
            incarnation,
            joining: false,
            next_tokens: None,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn labels_parse_checked_and_bad_ones_are_refused_from_the_network() {
        let l = parse_labels(["zone=eu-1", "disk=ssd"]).unwrap();
        assert_eq!(l.get("zone").map(String::as_str), Some("eu-1"));
        assert!(matches!(parse_labels(["zone"]), Err(LabelError::Form(_))));
        assert!(matches!(parse_labels(["zone="]), Err(LabelError::Spelling(_))));
        assert!(matches!(parse_labels(["z one=a"]), Err(LabelError::Spelling(_))));
        assert!(matches!(parse_labels(["a=1", "a=2"]), Err(LabelError::Repeated(_))));
        let many: Vec<String> = (0..=MAX_LABELS).map(|i| format!("k{i}=v")).collect();
        let many = parse_labels(many.iter().map(String::as_str));
        assert!(matches!(many, Err(LabelError::TooMany(_))));
        let config = crate::membership::MembershipConfig::default();
        let mut record = Member { labels: l, ..m(Status::Alive, 1) };
        assert!(config.admits(&record));
        record.labels.insert("x".repeat(MAX_LABEL_LEN + 1), "v".into());
        assert!(!config.admits(&record), "an overlong label from a peer is refused");
        record.labels.clear();
        record.labels.insert("k".into(), "bad value".into());
        assert!(!config.admits(&record));
    }

    #[test]
    fn a_record_differing_only_in_labels_is_ordered_and_its_labels_travel() {
        let plain = m(Status::Alive, 3);
        let labelled = Member { labels: parse_labels(["zone=a"]).unwrap(), ..plain.clone() };
        assert_ne!(plain.precedence(&labelled), Ordering::Equal);
        let mut state = MemberState::new(plain.clone());
        let newer = Member { incarnation: 4, ..labelled };
        assert!(state.apply(&newer), "new labels at a new incarnation change the record");
        assert_eq!(state.record().labels, newer.labels);
        // Without labels the record's frame is the one older nodes read.
        let bytes = rmp_serde::to_vec(&plain).unwrap();
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Older {
            id: NodeId,
            addr: String,
            tokens: Vec<Position>,
            status: Status,
            incarnation: u64,
            joining: bool,
            next_tokens: Option<Vec<Position>>,
        }
        assert!(rmp_serde::from_slice::<Older>(&bytes).is_ok());
        let back: Member = rmp_serde::from_slice(&rmp_serde::to_vec(&newer).unwrap()).unwrap();
        assert_eq!(back, newer);
    }

    /// The status after hearing `first`, then `second`.
    fn after(first: (Status, u64), second: (Status, u64)) -> (Status, u64) {
        let mut s = MemberState::new(m(first.0, first.1));
        s.apply(&m(second.0, second.1));
        (s.record().status, s.record().incarnation)
    }

    use Status::*;

    #[test]
    fn left_is_final_for_its_incarnation() {
        for other in [Alive, Suspect, Dead, Syncing] {
            for j in 0..=3 {
                assert_eq!(after((Left, 3), (other, j)), (Left, 3), "{other:?}({j})");
            }
        }
    }

    #[test]
    fn dead_overrides_alive_suspect_and_syncing_at_or_below_its_incarnation() {
        for other in [Alive, Suspect, Syncing] {
            for j in 0..=2 {
                assert_eq!(after((other, j), (Dead, 2)), (Dead, 2), "{other:?}({j})");
                assert_eq!(after((Dead, 2), (other, j)), (Dead, 2), "{other:?}({j})");
            }
        }
    }

    #[test]
    fn suspect_overrides_alive_at_or_below_its_incarnation() {
        for j in 0..=2 {
            assert_eq!(after((Alive, j), (Suspect, 2)), (Suspect, 2));
            assert_eq!(after((Suspect, 2), (Alive, j)), (Suspect, 2));
        }
    }

    #[test]
    fn only_a_higher_incarnation_alive_refutes_a_suspicion() {
        assert_eq!(after((Suspect, 2), (Alive, 3)), (Alive, 3));
        assert_eq!(after((Suspect, 2), (Alive, 2)), (Suspect, 2));
        assert_eq!(after((Alive, 3), (Suspect, 2)), (Alive, 3));
    }

    #[test]
    fn dead_or_left_comes_back_only_through_syncing() {
        for down in [Dead, Left] {
            assert_eq!(after((down, 2), (Alive, 3)), (Syncing, 3), "{down:?}");
            assert_eq!(after((down, 2), (Syncing, 3)), (Syncing, 3), "{down:?}");
            assert_eq!(after((down, 2), (Alive, 9)), (Syncing, 9), "{down:?}");
        }
    }

    #[test]
    fn from_syncing_only_the_members_own_higher_alive_makes_it_alive() {
        let mut s = MemberState::new(m(Dead, 2));
        s.apply(&m(Syncing, 3));
        assert_eq!(s.record().status, Syncing);
        assert!(!s.apply(&m(Alive, 3)), "same incarnation: still syncing");
        assert_eq!(s.record().status, Syncing);
        assert!(s.apply(&m(Alive, 4)));
        assert_eq!((s.record().status, s.record().incarnation), (Alive, 4));
        // A later death demotes it again; a fresh Alive without re-sync is Syncing.
        s.apply(&m(Dead, 4));
        s.apply(&m(Alive, 5));
        assert_eq!(s.record().status, Syncing);
    }

    #[test]
    fn a_stale_death_arriving_late_still_demotes_an_unsynced_return() {
        assert_eq!(after((Alive, 3), (Dead, 2)), (Syncing, 3));
        let mut s = MemberState::new(m(Alive, 4));
        s.apply(&m(Syncing, 3));
        s.apply(&m(Dead, 2));
        assert_eq!(s.record().status, Alive, "a re-sync after the death was seen");
    }

    #[test]
    fn plain_incarnation_order_and_ties() {
        assert_eq!(after((Alive, 1), (Alive, 2)), (Alive, 2));
        assert_eq!(after((Alive, 2), (Alive, 1)), (Alive, 2));
        assert_eq!(after((Syncing, 2), (Alive, 2)), (Syncing, 2));
        let mut s = MemberState::new(m(Alive, 1));
        let moved = Member { addr: "b:2".into(), ..m(Alive, 1) };
        assert!(s.apply(&moved), "equal status and incarnation: the address breaks the tie");
        assert!(!s.apply(&m(Alive, 1)));
        assert_eq!(s.record().addr, "b:2");
        assert!(!s.apply(&Member { id: NodeId(8), ..m(Dead, 9) }), "another member");
    }

    #[test]
    fn reset_forgets_deaths_and_suspicions() {
        let mut s = MemberState::new(m(Dead, 2));
        s.reset_alive();
        assert_eq!(s.record().status, Alive);
        s.apply(&m(Alive, 3));
        assert_eq!(s.record().status, Alive);
    }

    fn update() -> impl Strategy<Value = Member> {
        let status = prop_oneof![Just(Alive), Just(Suspect), Just(Dead), Just(Left), Just(Syncing)];
        (status, 0u64..5, 0usize..2, 0usize..2, 0usize..3, 0usize..3).prop_map(
            |(status, incarnation, a, t, next, l)| Member {
                id: NodeId(7),
                addr: ["a:1", "b:2"][a].into(),
                tokens: [vec![1, 2], vec![3]][t].clone(),
                status,
                incarnation,
                joining: a == t,
                next_tokens: [None, Some(vec![]), Some(vec![4])][next].clone(),
                labels: [&[][..], &["zone=a"][..], &["zone=b"][..]]
                    .map(|l| parse_labels(l.iter().copied()).unwrap())[l]
                    .clone(),
            },
        )
    }

    proptest! {
        /// Any set of updates, applied in any order and any number of times, gives the
        /// same state: the merge is commutative, associative and idempotent.
        #[test]
        fn merge_is_order_independent(
            updates in prop::collection::vec(update(), 1..12),
            seed: u64,
        ) {
            let fold = |order: &[Member]| {
                let mut s = MemberState::new(order[0].clone());
                for u in &order[1..] {
                    s.apply(u);
                }
                s
            };
            let reference = fold(&updates);
            let mut shuffled = updates.clone();
            crate::rng::Rng::new(seed).shuffle(&mut shuffled);
            prop_assert_eq!(&fold(&shuffled), &reference);
            let mut doubled = shuffled.clone();
            doubled.extend(updates.iter().rev().cloned());
            prop_assert_eq!(&fold(&doubled), &reference);
            // The winner is always one of the updates, up to the readmission status.
            let r = reference.record();
            prop_assert!(updates.iter().any(|u| u.incarnation == r.incarnation
                && u.addr == r.addr && u.tokens == r.tokens));
        }
    }
}
