//! The dhrt-db routes (docs/http.md, "The dhrt-db routes"): short paths for people with
//! curl.
//!
//! ```text
//! GET    /                          stats
//! GET    /:name                     a key of the default collection, else a collection
//! POST   /:key/:value               set in the default collection
//! GET    /:collection/:key          {key, value}
//! POST   /:collection/:key/:value   set; a non-empty request body is the value
//! DELETE /:name                     a key of the default collection, else a collection
//! DELETE /:collection/:key
//! ```
//!
//! `/:name` could be a key of the default collection or a collection. It is resolved
//! **key first**: when the default collection holds a live value under `name` the route
//! addresses that key; otherwise, when a collection named `name` holds a live key, it
//! addresses the collection; otherwise it is 404. `DELETE /:name` deletes exactly what
//! `GET /:name` would have shown. The canonical API under `/v1/` has no such guesswork.
//!
//! Values travel as JSON text (`{"key": "k", "value": "v"}`); bytes that are not UTF-8
//! come back base64 with `"encoding": "base64"` (see [`super::encode`]).

use super::{
    encode,
    error::ApiError,
    input::{collection_name, Encoding, Param, Query, Segments, KEY_READ, WRITE},
    ops, stopped,
};
use crate::server::AppState;
use axum::{
    extract::{rejection::BytesRejection, RawQuery, State},
    http::{HeaderName, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use dhrt_core::proto::client::{ErrorCode, DEFAULT_COLLECTION};
use serde_json::{json, Value};

/// Items `GET /:collection` lists when no `limit` is given.
pub const LIST_DEFAULT: u32 = 1000;
/// Most items `GET /:collection` lists at once.
pub const LIST_MAX: u32 = 10_000;
/// The header carrying the cursor of a listing that did not reach the end.
pub const CURSOR_HEADER: &str = "x-dhrt-cursor";

/// `GET /`: the node's stats.
pub async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let snapshot = state.snapshot().await.ok_or_else(stopped)?;
    Ok(Json(encode::stats(&snapshot)))
}

/// `GET /:name`: `{key, value}` of the default collection's key `name`, or else the
/// items `[{key, value}]` of the collection `name` (a `cursor` parameter always means
/// the collection).
pub async fn get_name(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw.as_deref(), &[Param::Consistency, Param::Limit, Param::Cursor])?;
    let name = path.key(0)?;
    if q.cursor.is_some() {
        let collection = collection_name(&name)?;
        return Ok(list(&state, &collection, &q).await?.0);
    }
    if let Some((value, _)) =
        ops::get(&state, DEFAULT_COLLECTION, name.clone(), q.consistency).await?
    {
        return Ok(Json(encode::item(&name, Some(&value), Encoding::Text)).into_response());
    }
    let Ok(collection) = collection_name(&name) else { return Err(neither(&name)) };
    match list(&state, &collection, &q).await? {
        (_, true) => Err(neither(&name)),
        (page, false) => Ok(page),
    }
}

/// The JSON array of a collection's items, with the cursor header when it goes on, and
/// whether the listing found nothing at all (no items, no cursor).
async fn list(state: &AppState, collection: &str, q: &Query) -> Result<(Response, bool), ApiError> {
    let limit = q.limit_or(LIST_DEFAULT, LIST_MAX);
    let (items, cursor) =
        ops::list(state, collection, q.cursor.clone(), limit, q.consistency).await?;
    let nothing = items.is_empty() && cursor.is_none();
    let mut response = Json(encode::items(&items, Encoding::Text)).into_response();
    if let Some(c) = cursor {
        if let Ok(v) = HeaderValue::from_str(&encode::cursor_out(&c)) {
            response.headers_mut().insert(HeaderName::from_static(CURSOR_HEADER), v);
        }
    }
    Ok((response, nothing))
}

/// `DELETE /:name`: deletes the default collection's key `name` if it holds a value,
/// else every key of the collection `name` if it holds any, else 404.
pub async fn delete_name(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref(), KEY_READ)?;
    let name = path.key(0)?;
    if ops::get(&state, DEFAULT_COLLECTION, name.clone(), q.consistency).await?.is_some() {
        ops::del(&state, DEFAULT_COLLECTION, name.clone(), q.consistency).await?;
        return Ok(Json(encode::key(&name, Encoding::Text).into()));
    }
    let Ok(collection) = collection_name(&name) else { return Err(neither(&name)) };
    match ops::has_keys(&state, &collection, q.consistency, state.request_timeout).await? {
        Some(true) => {
            let deleted = ops::drop_collection(&state, &collection, q.consistency).await?;
            Ok(Json(json!({ "collection": collection, "deleted": deleted })))
        }
        Some(false) => Err(neither(&name)),
        None => Err(ApiError::new(
            ErrorCode::Timeout,
            format!(
                "could not tell in time whether the collection {collection:?} holds keys; \
                 drop it with DELETE /v1/collections/{collection}"
            ),
        )),
    }
}

/// `POST /:key/:value`: sets a key of the default collection.
pub async fn set_default(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = path.key(0)?;
    write(&state, DEFAULT_COLLECTION, key, path.raw(1), raw, body).await
}

/// `POST /:collection/:key/:value`: sets a key; a non-empty body is the value.
pub async fn set_key(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let (collection, key) = (path.collection(0)?, path.key(1)?);
    write(&state, &collection, key, path.raw(2), raw, body).await
}

async fn write(
    state: &AppState,
    collection: &str,
    key: Bytes,
    path_value: Bytes,
    raw: Option<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref(), WRITE)?;
    let body = body.map_err(|e| ApiError::from_body(&e, state.max_value))?;
    let value = if body.is_empty() { path_value } else { body };
    ops::set(state, collection, key.clone(), value.clone(), q.consistency, q.ttl_ms).await?;
    Ok(Json(encode::item(&key, Some(&value), Encoding::Text)))
}

/// `GET /:collection/:key`: `{key, value}`.
pub async fn get_key(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref(), KEY_READ)?;
    let (collection, key) = (path.collection(0)?, path.key(1)?);
    match ops::get(&state, &collection, key.clone(), q.consistency).await? {
        Some((value, _)) => Ok(Json(encode::item(&key, Some(&value), Encoding::Text))),
        None => Err(super::no_key(&collection, &key)),
    }
}

/// `DELETE /:collection/:key`: deletes a key (200 also when it was not there).
pub async fn delete_key(
    State(state): State<AppState>,
    path: Segments,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref(), KEY_READ)?;
    let (collection, key) = (path.collection(0)?, path.key(1)?);
    ops::del(&state, &collection, key.clone(), q.consistency).await?;
    Ok(Json(encode::key(&key, Encoding::Text).into()))
}

fn neither(name: &[u8]) -> ApiError {
    ApiError::not_found(format!(
        "no key {} in the default collection and no collection of that name",
        encode::show(name)
    ))
}
