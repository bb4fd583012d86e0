//! Collection management: create, alter, show and list the settings of the catalogue
//! ([`dhrt_core::catalogue`]).
//!
//! The server runs these for a client (over the WebSocket as [`Op::CollectionCreate`],
//! [`Op::CollectionAlter`], [`Op::CollectionShow`] and [`Op::CollectionList`], over
//! HTTP as `/v1/collections`), as quorum reads and writes of the reserved collection
//! through its own node, as token management does: a change is on a majority of the
//! members when it is answered and on every member within a sync round, and a show or
//! list after it on any node reads it. Sizes come from the node's own copy of each
//! collection, scaled by the share of the ring it replicates.

use crate::server::{stats::Snapshot, AppState};
use bytes::Bytes;
use dhrt_core::{
    catalogue::{
        validate_name, CollectionSettings, SettingsChange, CATALOGUE_COLLECTION, MAX_ENTRIES,
    },
    hash::Placement,
    proto::client::{CollectionView, Consistency, ErrorCode, Op, Reply},
    Timestamp,
};
use std::collections::BTreeMap;

/// Records read per page while listing.
const PAGE: u32 = 1000;

/// A refused or failed operation, as a node's error reply.
fn refused(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Error { code, message: message.into(), acked: None }
}

fn unexpected(other: Reply) -> Reply {
    match other {
        e @ Reply::Error { .. } => e,
        other => {
            refused(ErrorCode::Internal, format!("unexpected answer from the node: {other:?}"))
        }
    }
}

/// The settings stored for `collection`, read at quorum; `None` when it has none.
async fn stored(state: &AppState, collection: &str) -> Result<Option<CollectionSettings>, Reply> {
    let op = Op::Get {
        collection: CATALOGUE_COLLECTION.into(),
        key: Bytes::copy_from_slice(collection.as_bytes()),
        consistency: Consistency::Quorum,
    };
    match state.call_unchecked(op).await {
        Reply::Value { value: None, .. } => Ok(None),
        Reply::Value { value: Some(bytes), .. } => CollectionSettings::decode(&bytes)
            .map(Some)
            .map_err(|e| refused(ErrorCode::Internal, format!("{collection}: {e}"))),
        other => Err(unexpected(other)),
    }
}

/// Writes `settings` for `collection` at quorum.
async fn store(
    state: &AppState,
    collection: &str,
    settings: &CollectionSettings,
) -> Result<Timestamp, Reply> {
    let op = Op::Set {
        collection: CATALOGUE_COLLECTION.into(),
        key: Bytes::copy_from_slice(collection.as_bytes()),
        value: Bytes::from(settings.encode()),
        consistency: Consistency::Quorum,
        ttl_ms: None,
    };
    match state.call_unchecked(op).await {
        Reply::Written { ts } => Ok(ts),
        other => Err(unexpected(other)),
    }
}

/// Every live `(key, value)` of the reserved `collection`, read at quorum page by page,
/// `keep` deciding what is kept, until the end or `max` kept: how the server lists the
/// catalogue and the tokens.
pub(crate) async fn scan_reserved<T>(
    state: &AppState,
    collection: &str,
    max: usize,
    mut keep: impl FnMut(Bytes, Bytes) -> Option<T>,
) -> Result<Vec<T>, Reply> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let op = Op::Scan {
            collection: collection.into(),
            cursor,
            prefix: None,
            limit: PAGE,
            consistency: Consistency::Quorum,
        };
        let (items, next) = match state.call_unchecked(op).await {
            Reply::Page { items, cursor } => (items, cursor),
            other => return Err(unexpected(other)),
        };
        out.extend(items.into_iter().filter_map(|(k, v)| keep(k, v)));
        if next.is_none() || out.len() >= max {
            return Ok(out);
        }
        cursor = next;
    }
}

/// Every `(name, settings)` of the catalogue, read at quorum.
async fn all_stored(state: &AppState) -> Result<BTreeMap<String, CollectionSettings>, Reply> {
    // Settings only: the catalogue keeps the layouts collections use beside them.
    let keep = |key: Bytes, value: Bytes| {
        let name = String::from_utf8(key.to_vec()).ok().filter(|n| validate_name(n).is_ok())?;
        Some((name, CollectionSettings::decode(&value).ok()?))
    };
    let all = scan_reserved(state, CATALOGUE_COLLECTION, MAX_ENTRIES, keep).await?;
    Ok(all.into_iter().collect())
}

/// The view of `name` from its settings (if any) and the node's snapshot.
fn view(name: &str, settings: Option<CollectionSettings>, snapshot: &Snapshot) -> CollectionView {
    let layout = snapshot.layouts.get(name);
    // A layout no node can hold (its selector matches none) gives no share: the copy
    // here is all there is.
    let share = layout.map_or(snapshot.ring_share, |l| l.share);
    let share = if share > 0.0 { share } else { 1.0 };
    let scale = |n: u64| (n as f64 / share).round() as u64;
    let local = snapshot.collections.iter().find(|c| c.name == name);
    let replicas = layout.map_or(snapshot.replicas, |l| l.replicas);
    CollectionView {
        name: name.to_string(),
        defined: settings.is_some(),
        settings: settings.unwrap_or_default(),
        placement: Placement::of(name).as_str().to_string(),
        replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
        keys: local.map_or(0, |c| scale(c.entries.saturating_sub(c.tombstones))),
        bytes: local.map_or(0, |c| scale(c.bytes)),
        layout: layout.map(|l| l.state.clone()).unwrap_or_default(),
    }
}

async fn snapshot(state: &AppState) -> Result<Snapshot, Reply> {
    state.snapshot().await.ok_or_else(|| refused(ErrorCode::Unavailable, "the node is stopping"))
}

/// Refuses settings whose selector no member of the ring satisfies: the collection
/// would have nowhere to live.
fn placeable(settings: &CollectionSettings, snapshot: &Snapshot) -> Result<(), Reply> {
    let members = snapshot.ring.iter().filter(|m| m.status != "left");
    if settings.layout().placeable(members.map(|m| &m.labels)) {
        return Ok(());
    }
    Err(refused(
        ErrorCode::InvalidInput,
        format!(
            "no node carries {}: start nodes with --label (as --label disk=ssd) before \
             selecting them, or select others",
            settings.layout().select_text()
        ),
    ))
}

fn check(collection: &str) -> Result<(), Reply> {
    validate_name(collection).map_err(|e| refused(ErrorCode::InvalidInput, e.to_string()))
}

/// Gives `collection` its settings; a conflict when it has some already.
pub async fn create(
    state: &AppState,
    collection: &str,
    settings: CollectionSettings,
) -> Result<CollectionView, Reply> {
    check(collection)?;
    settings.validate().map_err(|e| refused(ErrorCode::InvalidInput, e.to_string()))?;
    placeable(&settings, &snapshot(state).await?)?;
    if stored(state, collection).await?.is_some() {
        return Err(refused(
            ErrorCode::Conflict,
            format!(
                "collection {collection:?} has settings already: change them with `dhrt \
                 collection alter {collection} ...` (PATCH /v1/collections/{collection})"
            ),
        ));
    }
    let known = all_stored(state).await?.len();
    if known >= MAX_ENTRIES {
        return Err(refused(
            ErrorCode::InvalidInput,
            format!("the catalogue holds settings for {known} collections, the most it allows"),
        ));
    }
    store(state, collection, &settings).await?;
    Ok(view(collection, Some(settings), &snapshot(state).await?))
}

/// Changes some of `collection`'s settings (from the defaults when it has none).
pub async fn alter(
    state: &AppState,
    collection: &str,
    change: SettingsChange,
) -> Result<CollectionView, Reply> {
    check(collection)?;
    let before = stored(state, collection).await?;
    let after = change.apply(&before.clone().unwrap_or_default());
    after.validate().map_err(|e| refused(ErrorCode::InvalidInput, e.to_string()))?;
    if change.select.is_some() {
        placeable(&after, &snapshot(state).await?)?;
    }
    if before.as_ref() != Some(&after) {
        store(state, collection, &after).await?;
    }
    Ok(view(collection, Some(after), &snapshot(state).await?))
}

/// `collection`'s settings and size; not found when it has neither settings nor keys
/// on this node.
pub async fn show(state: &AppState, collection: &str) -> Result<CollectionView, Reply> {
    check(collection)?;
    let settings = stored(state, collection).await?;
    let snapshot = snapshot(state).await?;
    if settings.is_none() && !snapshot.collections.iter().any(|c| c.name == collection) {
        return Err(refused(
            ErrorCode::NotFound,
            format!("there is no collection {collection:?}: it has no settings and no keys here"),
        ));
    }
    Ok(view(collection, settings, &snapshot))
}

/// Every collection with settings or keys on this node, by name; `covers` says which
/// the caller may see.
pub async fn list(
    state: &AppState,
    covers: impl Fn(&str) -> bool,
) -> Result<Vec<CollectionView>, Reply> {
    let mut stored = all_stored(state).await?;
    let snapshot = snapshot(state).await?;
    let mut names: Vec<String> = stored.keys().cloned().collect();
    names.extend(snapshot.collections.iter().map(|c| c.name.clone()));
    names.sort_unstable();
    names.dedup();
    Ok(names
        .into_iter()
        .filter(|n| !dhrt_core::auth::is_reserved(n) && covers(n))
        .map(|n| {
            let settings = stored.remove(&n);
            view(&n, settings, &snapshot)
        })
        .collect())
}

/// Removes `collection`'s settings (after its keys were deleted by a drop).
pub async fn forget(state: &AppState, collection: &str) -> Result<(), Reply> {
    let op = Op::Del {
        collection: CATALOGUE_COLLECTION.into(),
        key: Bytes::copy_from_slice(collection.as_bytes()),
        consistency: Consistency::Quorum,
    };
    match state.call_unchecked(op).await {
        Reply::Written { .. } => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// Runs a collection operation for a caller already allowed to; `covers` filters what
/// a list shows. Any other op is refused.
pub async fn run(state: &AppState, op: Op, covers: impl Fn(&str) -> bool) -> Reply {
    let one = |r: Result<CollectionView, Reply>| match r {
        Ok(view) => Reply::Collection(Box::new(view)),
        Err(e) => e,
    };
    match op {
        Op::CollectionCreate { collection, settings } => {
            one(create(state, &collection, settings).await)
        }
        Op::CollectionAlter { collection, change } => one(alter(state, &collection, change).await),
        Op::CollectionShow { collection } => one(show(state, &collection).await),
        Op::CollectionList => match list(state, covers).await {
            Ok(collections) => Reply::Collections { collections },
            Err(e) => e,
        },
        Op::CollectionDrop { collection, consistency } => {
            match crate::server::http::ops::drop_authorized(state, &collection, consistency).await {
                Ok(deleted) => Reply::Dropped { deleted },
                Err(e) => refused(e.code, e.message),
            }
        }
        _ => refused(ErrorCode::Unsupported, "not a collection operation"),
    }
}
