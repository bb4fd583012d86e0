//! The canonical API under `/v1/`: unambiguous paths, binary-safe bodies.
//!
//! ```text
//! GET    /v1/collections/{collection}/keys/{key}   the raw value (x-dhrt-ts: its timestamp)
//! PUT    /v1/collections/{collection}/keys/{key}   body = the raw value
//! DELETE /v1/collections/{collection}/keys/{key}
//! GET    /v1/collections/{collection}/keys         one scan page (JSON)
//! POST   /v1/collections/{collection}/batch        get or set many keys (JSON)
//! DELETE /v1/collections/{collection}              delete every key
//! GET    /v1/stats   /v1/ring   /v1/health
//! DELETE /v1/ring/{id}                              remove a dead member (admin)
//! ```
//!
//! `consistency=one|quorum|all|default|N` works on every data route, `ttl=SECONDS` or
//! `ttl_ms=MS` on writes. The whole contract, bodies and statuses included, is
//! `openapi.json`.

use super::{
    encode,
    error::ApiError,
    input::{check_key, Encoding, Param, Query, Segments, KEY_READ, WRITE},
    no_key, ops, stopped,
};
use crate::server::AppState;
use axum::{
    extract::{rejection::BytesRejection, RawQuery, State},
    http::{header, HeaderMap, HeaderName, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    entry::NodeId,
    node::scan::{DEFAULT_PAGE, MAX_PAGE},
    proto::client::{ErrorCode, Op, Reply},
};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most keys in one batch.
pub const MAX_BATCH: usize = 1000;
/// The header carrying a write's timestamp, or the timestamp of the value read.
pub const TS_HEADER: &str = "x-dhrt-ts";

/// Where the collection and the key sit in `/v1/collections/{collection}/keys/{key}`.
const COLLECTION: usize = 2;
const KEY: usize = 4;

fn ts_headers(ts: Option<Timestamp>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(v) = ts.and_then(|ts| HeaderValue::from_str(&encode::ts(ts)).ok()) {
        headers.insert(HeaderName::from_static(TS_HEADER), v);
    }
    headers
}

fn written(ts: Timestamp) -> Response {
    (ts_headers(Some(ts)), Json(json!({ "ts": encode::ts(ts) }))).into_response()
}

/// `GET /v1/collections/{collection}/keys/{key}`: the value's bytes.
pub async fn get_value(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw.as_deref(), KEY_READ)?;
    let (collection, key) = (path.collection(COLLECTION)?, path.key(KEY)?);
    match ops::get(&state, &collection, key.clone(), q.consistency).await? {
        Some((value, ts)) => {
            let mut headers = ts_headers(ts);
            headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            Ok((headers, value).into_response())
        }
        None => Err(no_key(&collection, &key)),
    }
}

/// `PUT /v1/collections/{collection}/keys/{key}`: the body is the value.
pub async fn put_value(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw.as_deref(), WRITE)?;
    let (collection, key) = (path.collection(COLLECTION)?, path.key(KEY)?);
    let value = body.map_err(|e| ApiError::from_body(&e, state.max_value))?;
    let ts = ops::set(&state, &collection, key, value, q.consistency, q.ttl_ms).await?;
    Ok(written(ts))
}

/// `DELETE /v1/collections/{collection}/keys/{key}`: deletes a key (200 also when it
/// was not there: the tombstone is written all the same).
pub async fn delete_value(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw.as_deref(), KEY_READ)?;
    let (collection, key) = (path.collection(COLLECTION)?, path.key(KEY)?);
    Ok(written(ops::del(&state, &collection, key, q.consistency).await?))
}

/// `GET /v1/collections/{collection}/keys`: one page, `{"items": [...], "cursor": …}`.
pub async fn scan(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let allowed = [Param::Consistency, Param::Limit, Param::Cursor, Param::Prefix, Param::Encoding];
    let q = Query::parse(raw.as_deref(), &allowed)?;
    let collection = path.collection(COLLECTION)?;
    let limit = q.limit_or(DEFAULT_PAGE as u32, MAX_PAGE as u32);
    let (items, cursor) =
        ops::scan(&state, &collection, q.prefix.clone(), q.cursor.clone(), limit, q.consistency)
            .await?;
    Ok(Json(json!({
        "items": encode::items(&items, q.encoding),
        "cursor": cursor.map(|c| encode::cursor_out(&c)),
    })))
}

/// The body of `POST /v1/collections/{collection}/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    /// Keys to read.
    get: Option<Vec<String>>,
    /// Items to write.
    set: Option<Vec<BatchItem>>,
    /// `text` (default) or `base64`: how keys and values are written, both ways.
    encoding: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItem {
    key: String,
    value: String,
}

/// `POST /v1/collections/{collection}/batch`: `{"get": [keys]}` answers
/// `{"items": [{key, value}]}` (value `null` when missing), `{"set": [{key, value}]}`
/// answers `{"written": n, "ts": …}`.
pub async fn batch(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref(), WRITE)?;
    let collection = path.collection(COLLECTION)?;
    let body = body.map_err(|e| ApiError::from_body(&e, super::batch_limit(&state)))?;
    let batch: Batch = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "the batch is not valid JSON of the form {{\"get\": [keys]}} or \
             {{\"set\": [{{\"key\": …, \"value\": …}}]}}: {e}"
        ))
    })?;
    let enc = match batch.encoding.as_deref() {
        None => Encoding::Text,
        Some(e) => Encoding::parse(e)?,
    };
    let decode = |text: String, what: &str| match enc {
        Encoding::Text => Ok(Bytes::from(text)),
        Encoding::Base64 => encode::unb64(&text, what),
    };
    match (batch.get, batch.set) {
        (Some(keys), None) => {
            if q.ttl_ms.is_some() {
                return Err(ApiError::invalid("ttl applies to writes: a get batch takes none"));
            }
            check_count(keys.len())?;
            let keys = keys
                .into_iter()
                .enumerate()
                .map(|(i, k)| check_key(decode(k, &format!("key {i}"))?))
                .collect::<Result<Vec<_>, _>>()?;
            let values = ops::get_many(&state, &collection, keys.clone(), q.consistency).await?;
            let items: Vec<Value> =
                keys.iter().zip(&values).map(|(k, v)| encode::item(k, v.as_deref(), enc)).collect();
            Ok(Json(json!({ "items": items })))
        }
        (None, Some(set)) => {
            check_count(set.len())?;
            let mut items = Vec::with_capacity(set.len());
            for (i, item) in set.into_iter().enumerate() {
                let key = check_key(decode(item.key, &format!("key {i}"))?)?;
                items.push((key, decode(item.value, &format!("value {i}"))?));
            }
            let total: usize = items.iter().map(|(k, v)| k.len() + v.len()).sum();
            if total > state.max_frame {
                return Err(ApiError::too_large(format!(
                    "the batch holds {total} bytes of keys and values, over the {} byte \
                     limit of one request: split it",
                    state.max_frame
                )));
            }
            let n = items.len();
            let ts = ops::set_many(&state, &collection, items, q.consistency, q.ttl_ms).await?;
            Ok(Json(json!({ "written": n, "ts": encode::ts(ts) })))
        }
        _ => Err(ApiError::invalid(
            "a batch is either {\"get\": [keys]} or {\"set\": [{\"key\": …, \"value\": …}]}",
        )),
    }
}

fn check_count(n: usize) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::invalid("the batch is empty: give at least one key"));
    }
    if n > MAX_BATCH {
        return Err(ApiError::too_large(format!(
            "a batch of {n} keys is over the limit of {MAX_BATCH}: split it"
        )));
    }
    Ok(())
}

/// `DELETE /v1/collections/{collection}`: deletes every key; `{"collection", "deleted"}`.
pub async fn drop(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref(), KEY_READ)?;
    let collection = path.collection(COLLECTION)?;
    let deleted = ops::drop_collection(&state, &collection, q.consistency).await?;
    Ok(Json(json!({ "collection": collection, "deleted": deleted })))
}

/// `GET /v1/stats`: what `GET /` answers.
pub async fn stats(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &[])?;
    let snapshot = state.snapshot().await.ok_or_else(stopped)?;
    Ok(Json(encode::stats(&snapshot)))
}

/// `GET /v1/ring`: every member this node knows.
pub async fn ring(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &[])?;
    let snapshot = state.snapshot().await.ok_or_else(stopped)?;
    Ok(Json(encode::ring(&snapshot.ring)))
}

/// `DELETE /v1/ring/{id}`: starts removing a member that is dead for good (admin; see
/// `dhrt_core::node::remove`); `force=true` finishes even while other owners of its
/// ranges are down. Answers once the removal started: `GET /v1/ring` shows the member
/// `dead` and `leaving` until it is `left`.
pub async fn remove_member(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref(), &[Param::Force])?;
    // The id as `GET /v1/ring` writes it: decimal.
    let text = String::from_utf8_lossy(&path.raw(2)).into_owned();
    let id = text.parse::<u64>().map(NodeId).map_err(|_| {
        let shown = text.chars().take(32).collect::<String>();
        ApiError::invalid(format!("{shown:?} is not a node id (decimal, as GET /v1/ring gives it)"))
    })?;
    match state.call(Op::RemoveMember { id, force: q.force }).await {
        Reply::Ok => Ok(Json(json!({ "id": id.0.to_string(), "removing": true }))),
        other => Err(ApiError::from_reply(other)),
    }
}

/// `GET /v1/health`: 200 while the node serves, 503 while it synces, leaves or stops.
/// A full or failing disk does not make it 503 — the node still serves reads, deletes
/// and drops, and taking it out of a balancer would only move those elsewhere — but
/// the body says so: `"storage": "full"` (or `"failing"`, with `storage_error`), with
/// `free_bytes`. A node whose clock is off from its peers' by more than the max offset
/// is 503 with why (it refuses to coordinate writes; see `dhrt_core::node::skew`); the
/// body of a 200 has `clock_offset_ms`, its estimated offset from its peers.
pub async fn health(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &[])?;
    let snapshot = state.snapshot().await.ok_or_else(stopped)?;
    let s = &snapshot.stats;
    let why = if s.sync.leaving.is_some() || s.status == "left" {
        Some("this node is leaving the cluster: use another member".to_string())
    } else if s.status == "syncing" {
        let progress = s
            .sync
            .handoff
            .map(|p| format!(" ({} of {} hand-off sessions done)", p.done, p.total))
            .unwrap_or_default();
        Some(format!("this node is syncing{progress}: it serves once it has caught up"))
    } else if s.status != "alive" {
        Some(format!("this node is {}: it does not serve now", s.status))
    } else {
        // A skewed clock: it still reads and replicates, but refuses to coordinate
        // writes; out of the balancer until its clock is back.
        s.clock.skewed.clone()
    };
    match why {
        Some(message) => Err(ApiError::new(ErrorCode::Unavailable, message)),
        None => Ok(Json(json!({
            "status": s.status,
            "node": s.node.0.to_string(),
            "addr": snapshot.addr,
            "storage": s.storage.status(),
            "free_bytes": s.storage.free_bytes,
            "storage_error": s.storage.error,
            "clock_offset_ms": s.clock.offset_ms,
        }))),
    }
}
