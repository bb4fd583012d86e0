//! Typed calls to the node for the HTTP routes: one [`Op`] each, its expected
//! [`Reply`](dhrt_core::proto::client::Reply) unpacked, anything else an [`ApiError`].
//!
//! Two operations the node has no op for are built here from scans: listing a whole
//! collection page after page ([`list`]), and dropping a collection ([`drop_collection`]),
//! which deletes every live key it finds, each at the request's consistency. Deletes
//! leave tombstones like any other, so a dropped collection's keys never come back from
//! a replica that missed the drop. Files are not touched here: once garbage collection
//! has purged the tombstones the collection holds no records, and removing its file is
//! the storage layer's job.

use super::error::ApiError;
use crate::server::AppState;
use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    proto::client::{Consistency, ErrorCode, Op},
};
use futures_util::{stream, StreamExt};
use std::time::{Duration, Instant};

/// Deletes in flight at once while a collection is dropped.
const DROP_CONCURRENCY: usize = 32;
/// Keys read per scan page while a collection is dropped or listed.
const PAGE: u32 = 1000;
/// Key and value bytes after which [`list`] stops and hands back a cursor.
pub const LIST_BYTES: usize = 16 * 1024 * 1024;

/// A key's value and the timestamp of the write that set it; `None` when the key is
/// missing, deleted or expired.
pub async fn get(
    state: &AppState,
    collection: &str,
    key: Bytes,
    consistency: Consistency,
) -> Result<Option<(Bytes, Option<Timestamp>)>, ApiError> {
    let op = Op::Get { collection: collection.into(), key, consistency };
    let (value, ts) = state.call(op).await.into_value().map_err(ApiError::from_reply)?;
    Ok(value.map(|v| (v, ts)))
}

/// Writes a key; answers the write's timestamp.
pub async fn set(
    state: &AppState,
    collection: &str,
    key: Bytes,
    value: Bytes,
    consistency: Consistency,
    ttl_ms: Option<u64>,
) -> Result<Timestamp, ApiError> {
    check_value(state, &value)?;
    let op = Op::Set { collection: collection.into(), key, value, consistency, ttl_ms };
    state.call(op).await.into_written().map_err(ApiError::from_reply)
}

/// Deletes a key (a tombstone, also when it did not exist); answers the timestamp.
pub async fn del(
    state: &AppState,
    collection: &str,
    key: Bytes,
    consistency: Consistency,
) -> Result<Timestamp, ApiError> {
    let op = Op::Del { collection: collection.into(), key, consistency };
    state.call(op).await.into_written().map_err(ApiError::from_reply)
}

/// Several values of one collection, in the order of `keys`.
pub async fn get_many(
    state: &AppState,
    collection: &str,
    keys: Vec<Bytes>,
    consistency: Consistency,
) -> Result<Vec<Option<Bytes>>, ApiError> {
    let op = Op::GetMany { collection: collection.into(), keys, consistency };
    state.call(op).await.into_values().map_err(ApiError::from_reply)
}

/// Writes several keys of one collection with one timestamp.
pub async fn set_many(
    state: &AppState,
    collection: &str,
    items: Vec<(Bytes, Bytes)>,
    consistency: Consistency,
    ttl_ms: Option<u64>,
) -> Result<Timestamp, ApiError> {
    for (_, value) in &items {
        check_value(state, value)?;
    }
    let op = Op::SetMany { collection: collection.into(), items, consistency, ttl_ms };
    state.call(op).await.into_written().map_err(ApiError::from_reply)
}

/// One page of a scan: live items in ring order and the cursor to go on from.
pub type Page = (Vec<(Bytes, Bytes)>, Option<Bytes>);

/// One page of a collection from `cursor` (the start when `None`).
pub async fn scan(
    state: &AppState,
    collection: &str,
    prefix: Option<Bytes>,
    cursor: Option<Bytes>,
    limit: u32,
    consistency: Consistency,
) -> Result<Page, ApiError> {
    let op = Op::Scan { collection: collection.into(), cursor, prefix, limit, consistency };
    state.call(op).await.into_page().map_err(ApiError::from_reply)
}

/// Up to `limit` items of a collection from `cursor`, reading page after page until
/// the limit, [`LIST_BYTES`], the end, or the request timeout; the cursor says where to
/// go on (`None` at the end).
pub async fn list(
    state: &AppState,
    collection: &str,
    mut cursor: Option<Bytes>,
    limit: u32,
    consistency: Consistency,
) -> Result<Page, ApiError> {
    let deadline = Instant::now() + state.request_timeout;
    let mut out = Vec::new();
    let mut bytes = 0;
    loop {
        let want = (limit as usize).saturating_sub(out.len()).min(PAGE as usize) as u32;
        let (items, next) = scan(state, collection, None, cursor, want, consistency).await?;
        bytes += items.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        out.extend(items);
        cursor = next;
        if cursor.is_none()
            || out.len() >= limit as usize
            || bytes >= LIST_BYTES
            || Instant::now() >= deadline
        {
            return Ok((out, cursor));
        }
    }
}

/// Whether a collection holds at least one live key. `None` when that could not be
/// decided within `budget` (a sparse scan over a very large ring).
pub async fn has_keys(
    state: &AppState,
    collection: &str,
    consistency: Consistency,
    budget: Duration,
) -> Result<Option<bool>, ApiError> {
    let deadline = Instant::now() + budget;
    let mut cursor = None;
    loop {
        let (items, next) = scan(state, collection, None, cursor, 1, consistency).await?;
        if !items.is_empty() {
            return Ok(Some(true));
        }
        match next {
            None => return Ok(Some(false)),
            Some(_) if Instant::now() >= deadline => return Ok(None),
            next => cursor = next,
        }
    }
}

/// Deletes every live key of a collection, each at `consistency`; answers how many.
/// Only an admin may, when the node requires tokens.
///
/// Not atomic: keys written while the drop runs may survive it. On a failure the
/// error says how many keys were deleted before it; running the drop again finishes
/// the job.
pub async fn drop_collection(
    state: &AppState,
    collection: &str,
    consistency: Consistency,
) -> Result<u64, ApiError> {
    state.tokens.authorize_drop(collection)?;
    drop_authorized(state, collection, consistency).await
}

/// [`drop_collection`] for a caller already allowed to.
pub async fn drop_authorized(
    state: &AppState,
    collection: &str,
    consistency: Consistency,
) -> Result<u64, ApiError> {
    let mut deleted = 0u64;
    let mut cursor = None;
    loop {
        let (items, next) = scan(state, collection, None, cursor, PAGE, consistency)
            .await
            .map_err(|e| partial(e, deleted))?;
        let results: Vec<Result<Timestamp, ApiError>> = stream::iter(items)
            .map(|(key, _)| del(state, collection, key, consistency))
            .buffer_unordered(DROP_CONCURRENCY)
            .collect()
            .await;
        for result in results {
            match result {
                Ok(_) => deleted += 1,
                Err(e) => return Err(partial(e, deleted)),
            }
        }
        match next {
            None => {
                // Its settings go with it: a collection made again starts from the
                // cluster's defaults.
                crate::server::collections::forget(state, collection)
                    .await
                    .map_err(|e| partial(ApiError::from_reply(e), deleted))?;
                return Ok(deleted);
            }
            next => cursor = next,
        }
    }
}

/// An error part-way through a drop, saying how far it got.
fn partial(e: ApiError, deleted: u64) -> ApiError {
    ApiError {
        message: format!(
            "{} ({deleted} keys of the collection were deleted before this; repeat the \
             request to delete the rest)",
            e.message
        ),
        ..e
    }
}

/// Refuses a value over the node's limit before it travels any further.
pub fn check_value(state: &AppState, value: &[u8]) -> Result<(), ApiError> {
    if value.len() > state.max_value {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "a value of {} bytes is over the {} byte limit (`dhrt serve --max-value`)",
                value.len(),
                state.max_value
            ),
        ));
    }
    Ok(())
}
