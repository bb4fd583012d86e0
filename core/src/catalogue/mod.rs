//! The catalogue: every collection's settings, agreed cluster-wide.
//!
//! A collection is created implicitly by its first write, with the cluster's defaults,
//! or explicitly with settings ([`CollectionSettings`]): a default consistency, a
//! default time to live, and a quota of keys and bytes. The settings live in the
//! reserved collection [`CATALOGUE_COLLECTION`] — key = the collection's name, value =
//! its settings as MessagePack with named fields ([`CollectionSettings::encode`]) — and
//! are merged last-writer-wins like any entry, so two concurrent changes of one
//! collection's settings settle on the later one everywhere.
//!
//! Unlike other collections, the catalogue is kept by **every** owning member (its
//! replication factor is the number of members, [`Node::replicas_for`]): each node reads
//! the settings of a request's collection from its own copy, with no round trip, and
//! anti-entropy brings every copy to the same state (one full-ring Merkle session per
//! round with a random member; see `node::antientropy`). A change written at quorum
//! is on a majority at once and on every member within a round or two; a node that was
//! away re-syncs it before it serves.
//!
//! What each setting does:
//! - `consistency`: the level a request that names none runs at (it replaces the
//!   node-local `NodeConfig::collection_consistency` for that collection);
//! - `ttl_ms`: the time to live of a write that gives none (a write may still give its
//!   own, and a value without expiry is kept only where no default is set);
//! - `max_keys`, `max_bytes`: a quota. A write is refused with
//!   [`ErrorCode::QuotaExceeded`](crate::proto::client::ErrorCode::QuotaExceeded) once
//!   the collection's estimated size across the cluster reached it; deletes are always
//!   accepted. The estimate is the coordinator's own copy scaled by the share of the
//!   ring it replicates ([`Catalogue`] users: `node::coordinator`), exact on a single
//!   node or where every node keeps every key, within the ring's balance (a few
//!   percent) otherwise.
//!
//! [`Node::replicas_for`]: crate::node::Node::replicas_for

pub mod layout;

pub use layout::{
    layout_key, Knowledge, LabelSnapshot, Layout, LayoutState, Move, MovePhase, MAX_REPLICAS,
};

use crate::{
    auth::RESERVED_PREFIX,
    membership::{labels_admitted, validate_label, MAX_LABELS},
    proto::client::Consistency,
    ring::Labels,
    store::{validate_collection, StoreError},
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The reserved collection holding the catalogue: key = a collection's name, value =
/// its [`CollectionSettings`].
pub const CATALOGUE_COLLECTION: &str = "_dhrt.collections";

/// Most collections the catalogue holds settings for: creating more is refused.
pub const MAX_ENTRIES: usize = 10_000;

/// Longest time to live a collection may give its writes: 100 years.
pub const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3_600 * 1_000;

/// The settings of one collection. Every field is optional: `None` is the cluster's
/// default (see the module docs for what each does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionSettings {
    /// The level of requests that name none.
    #[serde(default)]
    pub consistency: Option<Consistency>,
    /// The time to live of writes that give none, in milliseconds.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// Most keys (tombstones not counted) the collection may hold across the cluster.
    #[serde(default)]
    pub max_keys: Option<u64>,
    /// Most bytes of keys and values the collection may hold across the cluster.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// How many replicas each key should have (`None`: the cluster's `--replicas`). A
    /// change moves the collection's data ([`layout`]).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// The labels a node must carry to hold the collection's replicas (empty: any
    /// node). A change moves the collection's data ([`layout`]).
    #[serde(default)]
    pub select: Labels,
    /// The label whose values are zones: each key's replicas go to distinct zones while
    /// there are enough ([`crate::ring::spread`]). A change moves the collection's data.
    #[serde(default)]
    pub zone_label: Option<String>,
}

/// A change of some settings: each field `Some` replaces that setting, `Some(None)`
/// returns it to the cluster's default, `None` leaves it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "WireChange", into = "WireChange")]
pub struct SettingsChange {
    /// The new default consistency, if it changes.
    pub consistency: Option<Option<Consistency>>,
    /// The new default time to live, if it changes.
    pub ttl_ms: Option<Option<u64>>,
    /// The new key quota, if it changes.
    pub max_keys: Option<Option<u64>>,
    /// The new byte quota, if it changes.
    pub max_bytes: Option<Option<u64>>,
    /// The new replication factor, if it changes.
    pub replicas: Option<Option<u32>>,
    /// The new node selector, if it changes (`Some(None)`: any node).
    pub select: Option<Option<Labels>>,
    /// The new zone label, if it changes (`Some(None)`: no zones).
    pub zone_label: Option<Option<String>>,
}

/// One setting of a [`SettingsChange`] on the wire, where a bare `Option<Option<_>>`
/// would read `Some(None)` back as `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Change<T> {
    #[default]
    Keep,
    Reset,
    To(T),
}

impl<T> Change<T> {
    fn of(v: Option<Option<T>>) -> Self {
        match v {
            None => Change::Keep,
            Some(None) => Change::Reset,
            Some(Some(t)) => Change::To(t),
        }
    }

    fn into_option(self) -> Option<Option<T>> {
        match self {
            Change::Keep => None,
            Change::Reset => Some(None),
            Change::To(t) => Some(Some(t)),
        }
    }
}

/// [`SettingsChange`] as it travels.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct WireChange {
    #[serde(default)]
    consistency: Change<Consistency>,
    #[serde(default)]
    ttl_ms: Change<u64>,
    #[serde(default)]
    max_keys: Change<u64>,
    #[serde(default)]
    max_bytes: Change<u64>,
    #[serde(default)]
    replicas: Change<u32>,
    #[serde(default)]
    select: Change<Labels>,
    #[serde(default)]
    zone_label: Change<String>,
}

impl From<WireChange> for SettingsChange {
    fn from(w: WireChange) -> Self {
        SettingsChange {
            consistency: w.consistency.into_option(),
            ttl_ms: w.ttl_ms.into_option(),
            max_keys: w.max_keys.into_option(),
            max_bytes: w.max_bytes.into_option(),
            replicas: w.replicas.into_option(),
            select: w.select.into_option(),
            zone_label: w.zone_label.into_option(),
        }
    }
}

impl From<SettingsChange> for WireChange {
    fn from(c: SettingsChange) -> Self {
        WireChange {
            consistency: Change::of(c.consistency),
            ttl_ms: Change::of(c.ttl_ms),
            max_keys: Change::of(c.max_keys),
            max_bytes: Change::of(c.max_bytes),
            replicas: Change::of(c.replicas),
            select: Change::of(c.select),
            zone_label: Change::of(c.zone_label),
        }
    }
}

impl SettingsChange {
    /// Whether the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &SettingsChange::default()
    }

    /// `settings` with this change applied.
    pub fn apply(&self, settings: &CollectionSettings) -> CollectionSettings {
        CollectionSettings {
            consistency: self.consistency.unwrap_or(settings.consistency),
            ttl_ms: self.ttl_ms.unwrap_or(settings.ttl_ms),
            max_keys: self.max_keys.unwrap_or(settings.max_keys),
            max_bytes: self.max_bytes.unwrap_or(settings.max_bytes),
            replicas: self.replicas.unwrap_or(settings.replicas),
            select: match &self.select {
                Some(select) => select.clone().unwrap_or_default(),
                None => settings.select.clone(),
            },
            zone_label: match &self.zone_label {
                Some(zone) => zone.clone(),
                None => settings.zone_label.clone(),
            },
        }
    }
}

/// Why settings or a collection name were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The collection's name is not a valid collection name.
    #[error("{0}")]
    Name(String),
    /// The collection is one the cluster keeps for itself.
    #[error(
        "collection {0:?} is reserved for the cluster (names starting with {RESERVED_PREFIX} \
         are): it has no settings to change"
    )]
    Reserved(String),
    /// `consistency` was `default`, which means "the collection's default" itself.
    #[error(
        "a collection's default consistency must be a level: one, quorum, all or a number \
         of replicas (not `default`)"
    )]
    DefaultConsistency,
    /// A time to live of zero or beyond [`MAX_TTL_MS`].
    #[error("a default time to live must be between 1 ms and 100 years, not {0} ms")]
    Ttl(u64),
    /// A quota of zero.
    #[error("a quota of 0 {0} would refuse every write; leave it unset for no quota")]
    ZeroQuota(&'static str),
    /// A replication factor of zero or above [`MAX_REPLICAS`].
    #[error("a collection keeps 1 to {MAX_REPLICAS} replicas of each key, not {0}")]
    Replicas(u32),
    /// A selector label out of bounds.
    #[error(
        "a selector is at most {MAX_LABELS} labels key=value, keys and values 1 to 64 \
         characters of A-Z a-z 0-9 . _ - (as disk=ssd)"
    )]
    Select,
    /// A zone label out of bounds.
    #[error("a zone label is 1 to 64 characters of A-Z a-z 0-9 . _ - (as zone)")]
    ZoneLabel,
    /// The stored bytes are not settings.
    #[error("stored settings do not decode: {0}")]
    Decode(String),
}

impl CollectionSettings {
    /// Whether every setting is the cluster's default.
    pub fn is_default(&self) -> bool {
        self == &CollectionSettings::default()
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.consistency == Some(Consistency::Default) {
            return Err(SettingsError::DefaultConsistency);
        }
        if let Some(ttl) = self.ttl_ms.filter(|t| *t == 0 || *t > MAX_TTL_MS) {
            return Err(SettingsError::Ttl(ttl));
        }
        if self.max_keys == Some(0) {
            return Err(SettingsError::ZeroQuota("keys"));
        }
        if self.max_bytes == Some(0) {
            return Err(SettingsError::ZeroQuota("bytes"));
        }
        if let Some(r) = self.replicas.filter(|r| !(1..=MAX_REPLICAS).contains(r)) {
            return Err(SettingsError::Replicas(r));
        }
        if !labels_admitted(&self.select) {
            return Err(SettingsError::Select);
        }
        if self.zone_label.as_ref().is_some_and(|z| !validate_label(z)) {
            return Err(SettingsError::ZoneLabel);
        }
        Ok(())
    }

    /// The layout the settings ask for.
    pub fn layout(&self) -> Layout {
        Layout {
            replicas: self.replicas,
            select: self.select.clone(),
            zone_label: self.zone_label.clone(),
        }
    }

    /// The settings' bytes: MessagePack with named fields, so later fields can be
    /// added and older nodes skip them.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("settings always encode")
    }

    /// Settings from their bytes, checked.
    pub fn decode(bytes: &[u8]) -> Result<CollectionSettings, SettingsError> {
        let s: CollectionSettings =
            rmp_serde::from_slice(bytes).map_err(|e| SettingsError::Decode(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }
}

/// Whether `collection` is the catalogue's own ([`CATALOGUE_COLLECTION`]): a length
/// compare first, as it is asked on every write.
pub fn is_catalogue(collection: &str) -> bool {
    collection.len() == CATALOGUE_COLLECTION.len() && collection == CATALOGUE_COLLECTION
}

/// Checks that `collection` may have settings: a valid name, not reserved.
pub fn validate_name(collection: &str) -> Result<(), SettingsError> {
    validate_collection(collection).map_err(|e: StoreError| SettingsError::Name(e.to_string()))?;
    if crate::auth::is_reserved(collection) {
        return Err(SettingsError::Reserved(collection.to_string()));
    }
    Ok(())
}

/// The settings a node knows, read from its own copy of [`CATALOGUE_COLLECTION`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    settings: BTreeMap<String, CollectionSettings>,
    /// The layouts collections use, where a move ever set one ([`layout`]).
    layouts: BTreeMap<String, LayoutState>,
    /// Entries that were skipped because they did not decode (a newer node's format, or
    /// a damaged copy): counted for stats.
    skipped: u64,
}

impl Catalogue {
    /// A catalogue from `(name, stored bytes)` pairs of live entries; entries with an
    /// invalid name or undecodable settings are skipped and counted.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut out = Catalogue::default();
        for (key, value) in entries {
            let layout = key.strip_prefix(layout::LAYOUT_PREFIX.as_bytes());
            if let Some(name) = layout.and_then(|n| std::str::from_utf8(n).ok()) {
                match LayoutState::decode(value) {
                    Some(state)
                        if validate_name(name).is_ok() && out.layouts.len() < MAX_ENTRIES =>
                    {
                        out.layouts.insert(name.to_string(), state);
                    }
                    _ => out.skipped += 1,
                }
                continue;
            }
            let parsed = std::str::from_utf8(key)
                .ok()
                .filter(|name| validate_name(name).is_ok())
                .and_then(|name| Some((name, CollectionSettings::decode(value).ok()?)));
            match parsed {
                Some((name, settings)) if out.settings.len() < MAX_ENTRIES => {
                    out.settings.insert(name.to_string(), settings);
                }
                _ => out.skipped += 1,
            }
        }
        out
    }

    /// The settings of `collection`, if it has any.
    pub fn get(&self, collection: &str) -> Option<&CollectionSettings> {
        if self.settings.is_empty() {
            return None;
        }
        self.settings.get(collection)
    }

    /// The layout `collection` uses and the move under way, where one was ever set.
    pub fn layout(&self, collection: &str) -> Option<&LayoutState> {
        if self.layouts.is_empty() {
            return None;
        }
        self.layouts.get(collection)
    }

    /// Every collection's layout state, by name.
    pub fn layouts(&self) -> impl Iterator<Item = (&str, &LayoutState)> {
        self.layouts.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// Every collection with settings, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &CollectionSettings)> {
        self.settings.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// Whether a collection's wanted layout differs from the one it uses, or a move is
    /// under way: work for the member that drives moves.
    pub fn moves_wanted(&self) -> bool {
        self.layouts.values().any(|s| s.moving.is_some())
            || self.settings.iter().any(|(name, s)| {
                let current = self.layouts.get(name).map(|l| &l.current);
                s.layout() != current.cloned().unwrap_or_default()
            })
    }

    /// How many collections have settings.
    pub fn len(&self) -> usize {
        self.settings.len()
    }

    /// Whether no collection has settings.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    /// Entries skipped when the catalogue was read (see [`Catalogue::from_entries`]).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full() -> CollectionSettings {
        CollectionSettings {
            consistency: Some(Consistency::All),
            ttl_ms: Some(60_000),
            max_keys: Some(1_000),
            max_bytes: Some(1 << 20),
            replicas: Some(2),
            select: [("disk".to_string(), "ssd".to_string())].into(),
            zone_label: Some("zone".into()),
        }
    }

    #[test]
    fn settings_survive_their_encoding_and_unset_fields_take_no_room() {
        let s = full();
        assert_eq!(CollectionSettings::decode(&s.encode()).unwrap(), s);
        let empty = CollectionSettings::default();
        assert_eq!(CollectionSettings::decode(&empty.encode()).unwrap(), empty);
        // In the client protocol's compact (positional) encoding too, any field unset.
        for s in [full(), empty, CollectionSettings { max_keys: Some(3), ..Default::default() }] {
            let compact = rmp_serde::to_vec(&s).unwrap();
            assert_eq!(rmp_serde::from_slice::<CollectionSettings>(&compact).unwrap(), s);
        }
    }

    #[test]
    fn fields_a_later_version_adds_are_skipped() {
        #[derive(Serialize)]
        struct Later {
            ttl_ms: Option<u64>,
            compression: u8,
        }
        let bytes = rmp_serde::to_vec_named(&Later { ttl_ms: Some(5), compression: 5 }).unwrap();
        let s = CollectionSettings::decode(&bytes).unwrap();
        assert_eq!(s, CollectionSettings { ttl_ms: Some(5), ..Default::default() });
    }

    #[test]
    fn bad_settings_are_refused_with_what_is_wrong() {
        let bad = [
            (CollectionSettings { consistency: Some(Consistency::Default), ..full() }, "level"),
            (CollectionSettings { ttl_ms: Some(0), ..full() }, "time to live"),
            (CollectionSettings { ttl_ms: Some(MAX_TTL_MS + 1), ..full() }, "time to live"),
            (CollectionSettings { max_keys: Some(0), ..full() }, "quota of 0 keys"),
            (CollectionSettings { max_bytes: Some(0), ..full() }, "quota of 0 bytes"),
            (CollectionSettings { replicas: Some(0), ..full() }, "1 to 64 replicas"),
            (CollectionSettings { replicas: Some(65), ..full() }, "1 to 64 replicas"),
            (
                CollectionSettings { select: [("a b".into(), "c".into())].into(), ..full() },
                "selector",
            ),
            (CollectionSettings { zone_label: Some(String::new()), ..full() }, "zone label"),
        ];
        for (s, why) in bad {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
            assert!(CollectionSettings::decode(&s.encode()).is_err());
        }
        assert!(full().validate().is_ok());
        assert!(CollectionSettings::decode(b"\xc1").is_err());
    }

    #[test]
    fn names_must_be_valid_and_not_reserved() {
        assert!(validate_name("users").is_ok());
        assert!(matches!(validate_name(""), Err(SettingsError::Name(_))));
        assert!(matches!(validate_name("_dhrt.tokens"), Err(SettingsError::Reserved(_))));
        assert!(matches!(validate_name(CATALOGUE_COLLECTION), Err(SettingsError::Reserved(_))));
    }

    #[test]
    fn a_change_replaces_resets_or_keeps_each_setting() {
        let change = SettingsChange {
            consistency: Some(Some(Consistency::One)),
            ttl_ms: Some(None),
            ..Default::default()
        };
        let s = change.apply(&full());
        assert_eq!(s.consistency, Some(Consistency::One));
        assert_eq!(s.ttl_ms, None);
        assert_eq!((s.max_keys, s.max_bytes), (full().max_keys, full().max_bytes));
        assert!(SettingsChange::default().is_empty() && !change.is_empty());
        assert_eq!(SettingsChange::default().apply(&full()), full());
    }

    #[test]
    fn a_change_survives_the_wire_resets_included() {
        let change = SettingsChange {
            consistency: Some(Some(Consistency::N(2))),
            ttl_ms: Some(None),
            max_keys: None,
            max_bytes: Some(Some(7)),
            replicas: Some(Some(5)),
            select: Some(None),
            zone_label: Some(Some("rack".into())),
        };
        let bytes = rmp_serde::to_vec_named(&change).unwrap();
        assert_eq!(rmp_serde::from_slice::<SettingsChange>(&bytes).unwrap(), change);
        let bytes = rmp_serde::to_vec(&change).unwrap();
        assert_eq!(rmp_serde::from_slice::<SettingsChange>(&bytes).unwrap(), change);
    }

    #[test]
    fn collection_answers_survive_the_client_wire() {
        use crate::proto::client::{ClientMessage, ClientResponse, CollectionView, Reply};
        let view = CollectionView {
            name: "c".into(),
            defined: true,
            settings: CollectionSettings { max_bytes: Some(5), ..Default::default() },
            placement: "hashed".into(),
            replicas: 3,
            keys: 1,
            bytes: 2,
            layout: LayoutState {
                moving: Some(Move {
                    to: Layout::default(),
                    at: 3,
                    phase: MovePhase::Copying,
                    labels: LabelSnapshot::new(),
                }),
                ..LayoutState::default()
            },
        };
        for result in [
            Reply::Collection(Box::new(view.clone())),
            Reply::Collections { collections: vec![view] },
            Reply::Dropped { deleted: 4 },
        ] {
            let msg = ClientMessage::Response(ClientResponse { id: 1, result, ts: None });
            let frame = crate::wire::encode_with_limit(&msg, usize::MAX).unwrap();
            let back: ClientMessage = crate::wire::decode_with_limit(&frame, usize::MAX).unwrap();
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn the_catalogue_skips_what_it_cannot_read() {
        let good = full().encode();
        let state = LayoutState { since: 9, ..Default::default() }.encode();
        let entries: Vec<(&[u8], &[u8])> = vec![
            (b"users", &good),
            (b"_dhrt.tokens", &good),
            (b"bad name/", &good),
            (b"logs", b"\xc1"),
            (b"\xff", &good),
            (b"layout/users", &state),
            (b"layout/bad name", &state),
            (b"layout/logs", b"\xc1"),
        ];
        let c = Catalogue::from_entries(entries);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("users"), Some(&full()));
        assert_eq!(c.get("logs"), None);
        assert_eq!(c.layout("users").map(|s| s.since), Some(9));
        assert_eq!(c.layouts().count(), 1);
        assert_eq!(c.skipped(), 6, "and a bad name, a state that does not decode");
        // The settings of users ask for another layout than the default it uses.
        assert!(c.moves_wanted());
    }

    proptest! {
        #[test]
        fn valid_settings_round_trip(
            level in prop_oneof![
                Just(None),
                Just(Some(Consistency::One)),
                Just(Some(Consistency::Quorum)),
                Just(Some(Consistency::All)),
                (1u8..=255).prop_map(|n| Some(Consistency::N(n))),
            ],
            ttl in proptest::option::of(1..=MAX_TTL_MS),
            keys in proptest::option::of(1..u64::MAX),
            bytes in proptest::option::of(1..u64::MAX),
            replicas in proptest::option::of(1..=MAX_REPLICAS),
        ) {
            let s = CollectionSettings {
                consistency: level,
                ttl_ms: ttl,
                max_keys: keys,
                max_bytes: bytes,
                replicas,
                select: Default::default(),
                zone_label: None,
            };
            prop_assert_eq!(CollectionSettings::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = CollectionSettings::decode(&bytes);
        }
    }
}
