//! Collection quotas: whether a write fits its collection's `max_keys` and `max_bytes`
//! (see [`crate::catalogue`]).
//!
//! The coordinator judges a write against its own copy of the collection scaled by the
//! share of the ring it replicates of it ([`View::ring_share_for`]): with N replicas on M nodes
//! each node keeps about N/M of the keys, so its count divided by that share estimates
//! the whole collection, exactly on a single node or wherever every node keeps every
//! key. Writes that only replace keys the coordinator's copy holds are never refused by
//! the key quota; deletes are never refused at all.

use super::view::View;
use crate::{catalogue::CollectionSettings, replica::Replica, store::Store, Millis};
use bytes::Bytes;

/// Checks a write of `items` (a `None` value is a delete) to `collection` against its
/// quota; the error is the message for the client.
pub(super) fn check<S: Store>(
    replica: &Replica<S>,
    view: &View,
    now: Millis,
    collection: &str,
    settings: &CollectionSettings,
    items: &[(Bytes, Option<Bytes>)],
) -> Result<(), String> {
    if settings.max_keys.is_none() && settings.max_bytes.is_none() {
        return Ok(());
    }
    let values: Vec<&(Bytes, Option<Bytes>)> = items.iter().filter(|(_, v)| v.is_some()).collect();
    if values.is_empty() {
        return Ok(());
    }
    let stats = replica.store().stats(collection).unwrap_or_default();
    let share = view.ring_share_for(collection).max(f64::MIN_POSITIVE);
    let scale = |n: u64| (n as f64 / share).round() as u64;
    if let Some(max) = settings.max_keys {
        let live = scale(stats.entries.saturating_sub(stats.tombstones));
        let added = values
            .iter()
            .filter(|(k, _)| {
                !replica.get(collection, k).ok().flatten().is_some_and(|e| e.is_live(now))
            })
            .count() as u64;
        if added > 0 && live.saturating_add(added) > max {
            return Err(format!(
                "collection {collection:?} holds about {live} keys and its quota is {max}: \
                 delete keys or raise the quota (dhrt collection alter {collection} \
                 --max-keys N)"
            ));
        }
    }
    if let Some(max) = settings.max_bytes {
        let held = scale(stats.bytes);
        let adding: u64 =
            values.iter().map(|(k, v)| (k.len() + v.as_ref().map_or(0, |v| v.len())) as u64).sum();
        if held.saturating_add(adding) > max {
            return Err(format!(
                "collection {collection:?} holds about {held} bytes and its quota is {max}: \
                 delete keys or raise the quota (dhrt collection alter {collection} \
                 --max-bytes B)"
            ));
        }
    }
    Ok(())
}
