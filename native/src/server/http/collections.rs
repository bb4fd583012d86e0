//! Collection settings over HTTP ([`crate::server::collections`]).
//!
//! ```text
//! GET    /v1/collections          {"collections": [view, ...]}
//! GET    /v1/collections/{c}      view (404 when it has neither settings nor keys)
//! PUT    /v1/collections/{c}      {"consistency": "all", "ttl_ms": 60000,
//!                                  "max_keys": 1000000, "max_bytes": 1073741824}
//!                                 gives it settings (201; 409 when it has some)
//! PATCH  /v1/collections/{c}      the same fields: a value sets one, null returns it
//!                                 to the default, an absent one stays (200)
//! ```
//!
//! A view is `{"name", "defined", "settings": {...}, "placement", "replicas", "keys",
//! "bytes"}`. Creating and altering need an admin token, showing and listing a token
//! covering the collection, when the node requires tokens. `DELETE
//! /v1/collections/{c}` (the drop, in [`super::v1`]) removes the settings too.

use super::{error::ApiError, input::Segments};
use crate::server::{auth::CALLER, collections, AppState};
use axum::{
    extract::{rejection::BytesRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use dhrt_core::{
    catalogue::{CollectionSettings, SettingsChange},
    proto::client::{CollectionView, Consistency, Op, Reply},
};
use serde_json::{json, Map, Value};

/// The path segment holding the collection's name.
const COLLECTION: usize = 2;
/// The fields of a settings body.
const FIELDS: &str = "consistency, ttl_ms, max_keys, max_bytes, replicas, select, zone_label";

/// A layout state as JSON: the layout in use and the move under way.
fn layout_json(state: &dhrt_core::catalogue::LayoutState) -> Value {
    let layout = |l: &dhrt_core::catalogue::Layout| json!({ "replicas": l.replicas, "select": l.select, "zone_label": l.zone_label });
    json!({
        "current": layout(&state.current),
        "moving": state.moving.as_ref().map(|m| json!({
            "to": layout(&m.to),
            "phase": m.phase.as_str(),
            "started_ms": m.at,
        })),
    })
}

/// A view as JSON.
pub fn view_json(v: &CollectionView) -> Value {
    let s = &v.settings;
    json!({
        "name": v.name,
        "defined": v.defined,
        "settings": {
            "consistency": s.consistency.map(|c| c.to_string()),
            "ttl_ms": s.ttl_ms,
            "max_keys": s.max_keys,
            "max_bytes": s.max_bytes,
            "replicas": s.replicas,
            "select": s.select,
            "zone_label": s.zone_label,
        },
        "placement": v.placement,
        "replicas": v.replicas,
        "layout": layout_json(&v.layout),
        "keys": v.keys,
        "bytes": v.bytes,
    })
}

fn one(reply: Reply) -> Result<Value, ApiError> {
    match reply {
        Reply::Collection(v) => Ok(view_json(&v)),
        other => Err(ApiError::from_reply(other)),
    }
}

/// The body as a JSON object of settings fields.
fn fields(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(|e| ApiError::from_body(&e, limit))?;
    let value: Value = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?
    };
    let Value::Object(map) = value else {
        return Err(ApiError::invalid(format!("the body must be a JSON object of {FIELDS}")));
    };
    if let Some(unknown) = map.keys().find(|k| !FIELDS.split(", ").any(|f| f == k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown setting {unknown:?}: the settings are {FIELDS}"
        )));
    }
    Ok(map)
}

/// One field: absent → `None`, null → `Some(None)`, a value → `Some(Some(v))`.
fn field<T>(
    map: &Map<String, Value>,
    name: &str,
    parse: impl Fn(&Value) -> Option<T>,
    what: &str,
) -> Result<Option<Option<T>>, ApiError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => parse(v)
            .map(|t| Some(Some(t)))
            .ok_or_else(|| ApiError::invalid(format!("{name} must be {what}, not {v}"))),
    }
}

/// The change a body asks for.
fn change_of(map: &Map<String, Value>) -> Result<SettingsChange, ApiError> {
    let level = |v: &Value| v.as_str().and_then(|s| s.parse::<Consistency>().ok());
    let count = |v: &Value| v.as_u64();
    let replicas = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let label = |v: &Value| v.as_str().map(str::to_string);
    let select = |v: &Value| {
        let object = v.as_object()?;
        let pairs: Option<Vec<String>> =
            object.iter().map(|(k, v)| Some(format!("{k}={}", v.as_str()?))).collect();
        dhrt_core::membership::parse_labels(pairs?.iter().map(String::as_str)).ok()
    };
    Ok(SettingsChange {
        consistency: field(map, "consistency", level, "one, quorum, all or a number")?,
        ttl_ms: field(map, "ttl_ms", count, "a number of milliseconds")?,
        max_keys: field(map, "max_keys", count, "a number of keys")?,
        max_bytes: field(map, "max_bytes", count, "a number of bytes")?,
        replicas: field(map, "replicas", replicas, "a number of replicas")?,
        select: field(map, "select", select, "an object of labels, as {\"disk\": \"ssd\"}")?,
        zone_label: field(map, "zone_label", label, "a label key, as \"zone\"")?,
    })
}

/// `GET /v1/collections`: every collection with settings or keys.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.tokens.authorize_current(&Op::CollectionList)?;
    let covers = |c: &str| CALLER.try_with(|g| g.covers(c)).unwrap_or(true);
    match collections::run(&state, Op::CollectionList, covers).await {
        Reply::Collections { collections } => Ok(Json(
            json!({ "collections": collections.iter().map(view_json).collect::<Vec<_>>() }),
        )),
        other => Err(ApiError::from_reply(other)),
    }
}

/// `GET /v1/collections/{collection}`: its settings and size.
pub async fn show(State(state): State<AppState>, path: Segments) -> Result<Json<Value>, ApiError> {
    let collection = path.collection(COLLECTION)?;
    let op = Op::CollectionShow { collection };
    state.tokens.authorize_current(&op)?;
    Ok(Json(one(collections::run(&state, op, |_| true).await)?))
}

/// `PUT /v1/collections/{collection}`: gives it settings.
pub async fn create(
    State(state): State<AppState>,
    path: Segments,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let collection = path.collection(COLLECTION)?;
    let change = change_of(&fields(body, state.max_value)?)?;
    let settings = change.apply(&CollectionSettings::default());
    let op = Op::CollectionCreate { collection, settings };
    state.tokens.authorize_current(&op)?;
    let view = one(collections::run(&state, op, |_| true).await)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `PATCH /v1/collections/{collection}`: changes some settings.
pub async fn alter(
    State(state): State<AppState>,
    path: Segments,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let collection = path.collection(COLLECTION)?;
    let change = change_of(&fields(body, state.max_value)?)?;
    let op = Op::CollectionAlter { collection, change };
    state.tokens.authorize_current(&op)?;
    Ok(Json(one(collections::run(&state, op, |_| true).await)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(body: &str) -> Map<String, Value> {
        fields(Ok(Bytes::from(body.to_string())), 1 << 20).unwrap()
    }

    #[test]
    fn a_body_sets_resets_or_leaves_each_setting() {
        let c = change_of(&map(r#"{"consistency": "all", "ttl_ms": null}"#)).unwrap();
        assert_eq!(c.consistency, Some(Some(Consistency::All)));
        assert_eq!(c.ttl_ms, Some(None));
        assert_eq!((c.max_keys, c.max_bytes), (None, None));
        assert!(change_of(&map("")).unwrap().is_empty());
        let body = r#"{"replicas": 2, "select": {"disk": "ssd"}, "zone_label": null}"#;
        let c = change_of(&map(body)).unwrap();
        assert_eq!(c.replicas, Some(Some(2)));
        assert_eq!(c.select.unwrap().unwrap().get("disk").map(String::as_str), Some("ssd"));
        assert_eq!(c.zone_label, Some(None));
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let bad = |body: &str| match fields(Ok(Bytes::from(body.to_string())), 1 << 20) {
            Err(e) => e.message,
            Ok(m) => change_of(&m).unwrap_err().message,
        };
        assert!(bad(r#"{"compression": 3}"#).contains("unknown setting"));
        assert!(bad(r#"{"replicas": "three"}"#).contains("a number of replicas"));
        assert!(bad(r#"{"select": "disk=ssd"}"#).contains("an object of labels"));
        assert!(bad(r#"{"select": {"disk": 1}}"#).contains("an object of labels"));
        assert!(bad(r#"{"zone_label": 7}"#).contains("a label key"));
        assert!(bad("[1]").contains("JSON object"));
        assert!(bad("{").contains("not JSON"));
        assert!(bad(r#"{"ttl_ms": -1}"#).contains("milliseconds"));
        assert!(bad(r#"{"consistency": "most"}"#).contains("one, quorum"));
    }
}
