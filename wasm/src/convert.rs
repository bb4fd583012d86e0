//! The shapes JavaScript sees, and the one place core values become them (and back).
//!
//! Requests come from JavaScript as plain objects tagged by `op` (`{op: "get",
//! collection, key, consistency}`); outputs go back as plain objects tagged by `type`,
//! answers inside them tagged by `kind`, states by `state` — the package's
//! `index.d.ts` spells every shape out. Keys and values are `Uint8Array`s. Timestamps
//! are hybrid logical clock values above 2^53, so they travel as `BigInt`; node ids and
//! ring tokens as decimal strings (as in the HTTP API's JSON); counts as numbers.
//!
//! Objects are built field by field with `Reflect` rather than through a serde
//! serializer: the module ships to browsers, and this is a fraction of the code.

use bytes::Bytes;
use dhrt_core::{
    catalogue::{CollectionSettings, Layout, SettingsChange},
    entry::NodeId,
    light::{LightOutput, RingView, StreamStatus},
    proto::client::{CollectionView, Consistency, NodeStats, Op, Progress, Reply},
    replica::Change,
};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{prelude::*, JsCast};

/// A JavaScript object under construction.
pub struct Obj(Object);

impl Obj {
    /// An empty object.
    pub fn new() -> Self {
        Obj(Object::new())
    }

    /// Sets `key` to `value`.
    pub fn set(self, key: &str, value: impl Into<JsValue>) -> Self {
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), &value.into());
        self
    }

    /// Sets `key` to a copy of `bytes`.
    pub fn bytes(self, key: &str, bytes: &[u8]) -> Self {
        self.set(key, Uint8Array::from(bytes))
    }

    /// Sets `key` to a copy of `bytes`, or leaves it out.
    pub fn opt_bytes(self, key: &str, bytes: Option<&[u8]>) -> Self {
        match bytes {
            Some(b) => self.bytes(key, b),
            None => self,
        }
    }

    /// Sets `key` to `value`, or leaves it out.
    pub fn opt(self, key: &str, value: Option<impl Into<JsValue>>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }
}

impl Default for Obj {
    fn default() -> Self {
        Obj::new()
    }
}

impl From<Obj> for JsValue {
    fn from(o: Obj) -> JsValue {
        o.0.into()
    }
}

/// An array of `items`.
fn array(items: impl IntoIterator<Item = JsValue>) -> JsValue {
    items.into_iter().collect::<Array>().into()
}

/// A `u64` count as a JavaScript number.
fn num(v: u64) -> JsValue {
    JsValue::from_f64(v as f64)
}

/// Field `name` of a JavaScript object (`undefined` when missing).
pub fn field(obj: &JsValue, name: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn is_absent(v: &JsValue) -> bool {
    v.is_undefined() || v.is_null()
}

fn string(obj: &JsValue, name: &str) -> Result<String, String> {
    field(obj, name).as_string().ok_or_else(|| format!("{name} must be a string"))
}

/// The string at `name`, if present, or why it is not a string.
pub fn opt_string(obj: &JsValue, name: &str) -> Result<Option<String>, String> {
    let v = field(obj, name);
    if is_absent(&v) {
        return Ok(None);
    }
    v.as_string().map(Some).ok_or_else(|| format!("{name} must be a string"))
}

/// The bytes of a `Uint8Array`, or why `what` is not one.
pub fn to_bytes(v: &JsValue, what: &str) -> Result<Bytes, String> {
    v.dyn_ref::<Uint8Array>()
        .map(|a| Bytes::from(a.to_vec()))
        .ok_or_else(|| format!("{what} must be a Uint8Array"))
}

fn bytes(obj: &JsValue, name: &str) -> Result<Bytes, String> {
    to_bytes(&field(obj, name), name)
}

fn opt_bytes(obj: &JsValue, name: &str) -> Result<Option<Bytes>, String> {
    let v = field(obj, name);
    if is_absent(&v) {
        return Ok(None);
    }
    to_bytes(&v, name).map(Some)
}

/// A non-negative whole number field, if present.
pub fn opt_number(obj: &JsValue, name: &str) -> Result<Option<f64>, String> {
    let v = field(obj, name);
    if is_absent(&v) {
        return Ok(None);
    }
    v.as_f64().ok_or_else(|| format!("{name} must be a number")).map(Some)
}

fn list(obj: &JsValue, name: &str) -> Result<Array, String> {
    field(obj, name).dyn_into::<Array>().map_err(|_| format!("{name} must be an array"))
}

/// A consistency level from its text; `None` is the collection's default.
pub fn parse_consistency(c: Option<String>) -> Result<Consistency, String> {
    c.map_or(Ok(Consistency::Default), |s| s.parse().map_err(|e| format!("{e}")))
}

/// A time to live in milliseconds: a whole number from 1 up.
pub fn parse_ttl(ms: Option<f64>) -> Result<Option<u64>, String> {
    match ms {
        None => Ok(None),
        Some(ms) if (1.0..=9.0e15).contains(&ms) && ms.fract() == 0.0 => Ok(Some(ms as u64)),
        Some(ms) => Err(format!("ttlMs {ms} is not a whole number of milliseconds >= 1")),
    }
}

/// The settings a collection's settings object names, in the order they are listed.
const SETTINGS: [&str; 7] =
    ["consistency", "ttlMs", "maxKeys", "maxBytes", "replicas", "select", "zoneLabel"];

/// Largest count a setting may be: beyond it a JavaScript number is no longer exact.
const MAX_COUNT: f64 = 9_007_199_254_740_991.0;

/// One setting of a settings object: `undefined` (or absent) → `None`, `null` →
/// `Some(None)`, a value → `Some(Some(v))`.
fn setting<T>(
    obj: &JsValue,
    name: &str,
    parse: impl Fn(&JsValue) -> Result<T, String>,
) -> Result<Option<Option<T>>, String> {
    let v = field(obj, name);
    if v.is_undefined() {
        Ok(None)
    } else if v.is_null() {
        Ok(Some(None))
    } else {
        parse(&v).map(|t| Some(Some(t)))
    }
}

/// A setting's level: a consistency level's name or number, as a string.
fn level_setting(v: &JsValue) -> Result<Consistency, String> {
    let s = v.as_string().ok_or("consistency must be a string such as \"quorum\"")?;
    s.parse().map_err(|e| format!("{e}"))
}

/// A setting's count: a whole number from 0 up that JavaScript holds exactly (the node
/// says why 0 is refused).
fn count_setting(name: &'static str) -> impl Fn(&JsValue) -> Result<u64, String> {
    move |v| match v.as_f64() {
        Some(n) if (0.0..=MAX_COUNT).contains(&n) && n.fract() == 0.0 => Ok(n as u64),
        Some(n) => Err(format!("{name} {n} is not a whole number from 0 to 2^53 - 1")),
        None => Err(format!("{name} must be a number")),
    }
}

/// The settings of a settings object `{consistency, ttlMs, maxKeys, maxBytes, replicas,
/// select, zoneLabel}`, each optional; any other field is refused, so that a misspelt
/// setting does not pass unnoticed.
pub fn change_from_js(obj: &JsValue, what: &str) -> Result<SettingsChange, String> {
    if is_absent(obj) {
        return Ok(SettingsChange::default());
    }
    let Some(o) = obj.dyn_ref::<Object>().filter(|_| !obj.is_function() && !Array::is_array(obj))
    else {
        return Err(format!("{what} must be an object such as {{ttlMs: 60000}}"));
    };
    let unknown =
        Object::keys(o).iter().filter_map(|k| k.as_string()).find(|k| !SETTINGS.contains(&&**k));
    if let Some(unknown) = unknown {
        return Err(format!(
            "unknown setting {unknown:?}: the settings are {}",
            SETTINGS.join(", ")
        ));
    }
    Ok(SettingsChange {
        consistency: setting(obj, "consistency", level_setting)?,
        ttl_ms: setting(obj, "ttlMs", |v| match parse_ttl(v.as_f64()) {
            Ok(Some(ms)) => Ok(ms),
            Ok(None) => Err("ttlMs must be a number of milliseconds".to_string()),
            Err(e) => Err(e),
        })?,
        max_keys: setting(obj, "maxKeys", count_setting("maxKeys"))?,
        max_bytes: setting(obj, "maxBytes", count_setting("maxBytes"))?,
        replicas: setting(obj, "replicas", |v| {
            let n = count_setting("replicas")(v)?;
            u32::try_from(n).map_err(|_| format!("replicas {n} is too large"))
        })?,
        select: setting(obj, "select", select_setting)?,
        zone_label: setting(obj, "zoneLabel", |v| {
            v.as_string().ok_or_else(|| "zoneLabel must be a label key such as \"zone\"".into())
        })?,
    })
}

/// A setting's selector: an object of label values, as `{disk: "ssd"}`.
fn select_setting(v: &JsValue) -> Result<dhrt_core::ring::Labels, String> {
    let what = "select must be an object of labels such as {disk: \"ssd\"}";
    let o =
        v.dyn_ref::<Object>().filter(|_| !v.is_function() && !Array::is_array(v)).ok_or(what)?;
    let mut pairs = Vec::new();
    for entry in Object::entries(o).iter() {
        let pair = Array::from(&entry);
        let (k, val) = (pair.get(0).as_string(), pair.get(1).as_string());
        let (Some(k), Some(val)) = (k, val) else { return Err(what.to_string()) };
        pairs.push(format!("{k}={val}"));
    }
    dhrt_core::membership::parse_labels(pairs.iter().map(String::as_str)).map_err(|e| e.to_string())
}

/// The core operation a request object stands for, or why it is invalid.
pub fn op_from_js(obj: &JsValue) -> Result<Op, String> {
    if !obj.is_object() {
        return Err("a request must be an object such as {op: 'get', ...}".into());
    }
    let kind = string(obj, "op")?;
    let collection = || string(obj, "collection");
    let consistency = || parse_consistency(opt_string(obj, "consistency")?);
    let ttl = || parse_ttl(opt_number(obj, "ttlMs")?);
    Ok(match kind.as_str() {
        "get" => Op::Get {
            collection: collection()?,
            key: bytes(obj, "key")?,
            consistency: consistency()?,
        },
        "set" => Op::Set {
            collection: collection()?,
            key: bytes(obj, "key")?,
            value: bytes(obj, "value")?,
            consistency: consistency()?,
            ttl_ms: ttl()?,
        },
        "del" => Op::Del {
            collection: collection()?,
            key: bytes(obj, "key")?,
            consistency: consistency()?,
        },
        "getMany" => Op::GetMany {
            collection: collection()?,
            keys: list(obj, "keys")?
                .iter()
                .map(|k| to_bytes(&k, "every key"))
                .collect::<Result<_, _>>()?,
            consistency: consistency()?,
        },
        "setMany" => Op::SetMany {
            collection: collection()?,
            items: list(obj, "items")?
                .iter()
                .map(|pair| {
                    let pair: Array =
                        pair.dyn_into().map_err(|_| "items must be [key, value] pairs")?;
                    Ok((
                        to_bytes(&pair.get(0), "every key")?,
                        to_bytes(&pair.get(1), "every value")?,
                    ))
                })
                .collect::<Result<_, String>>()?,
            consistency: consistency()?,
            ttl_ms: ttl()?,
        },
        "scan" => Op::Scan {
            collection: collection()?,
            cursor: opt_bytes(obj, "cursor")?,
            prefix: opt_bytes(obj, "prefix")?,
            limit: opt_number(obj, "limit")?
                .map_or(0, |l| l.clamp(0.0, f64::from(u32::MAX)) as u32),
            consistency: consistency()?,
        },
        "stats" => Op::Stats,
        "ring" => Op::Ring,
        // A new collection's settings: `null` is the same as absent, the cluster's default.
        "collectionCreate" => Op::CollectionCreate {
            collection: collection()?,
            settings: change_from_js(&field(obj, "settings"), "settings")?
                .apply(&CollectionSettings::default()),
        },
        "collectionAlter" => {
            let changes = field(obj, "changes");
            if is_absent(&changes) {
                return Err("changes must be an object such as {ttlMs: 60000}".into());
            }
            Op::CollectionAlter {
                collection: collection()?,
                change: change_from_js(&changes, "changes")?,
            }
        }
        "collectionShow" => Op::CollectionShow { collection: collection()? },
        "collectionList" => Op::CollectionList,
        "collectionDrop" => {
            Op::CollectionDrop { collection: collection()?, consistency: consistency()? }
        }
        other => {
            return Err(format!(
                "unknown op {other:?}: use get, set, del, getMany, setMany, scan, stats, ring, \
                 collectionCreate, collectionAlter, collectionShow, collectionList or \
                 collectionDrop"
            ))
        }
    })
}

/// As [`op_from_js`], failing with a JavaScript `Error` that says the request is invalid.
pub fn request(value: &JsValue) -> Result<Op, JsError> {
    op_from_js(value).map_err(|e| JsError::new(&format!("invalid request: {e}")))
}

/// An answer: `{kind: "value" | "ok" | "written" | "values" | "page" | "stats" | "ring"
/// | "collection" | "collections" | "dropped" | "error", ...}`.
pub fn reply_to_js(reply: Reply) -> JsValue {
    let kind = |k: &str| Obj::new().set("kind", k);
    match reply {
        Reply::Value { value, ts, .. } => {
            kind("value").opt_bytes("value", value.as_deref()).opt("ts", ts.map(|t| t.0)).into()
        }
        Reply::Ok => kind("ok").into(),
        Reply::Written { ts } => kind("written").set("ts", ts.0).into(),
        Reply::Values { values } => {
            let values = values
                .iter()
                .map(|v| v.as_deref().map_or(JsValue::UNDEFINED, |b| Uint8Array::from(b).into()));
            kind("values").set("values", array(values)).into()
        }
        Reply::Page { items, cursor } => {
            let items = items.iter().map(|(k, v)| {
                array([Uint8Array::from(&k[..]).into(), Uint8Array::from(&v[..]).into()])
            });
            kind("page").set("items", array(items)).opt_bytes("cursor", cursor.as_deref()).into()
        }
        Reply::Stats(s) => kind("stats").set("stats", stats_to_js(&s)).into(),
        Reply::Ring { members } => {
            kind("ring").set("members", members_to_js(&RingView::new(members))).into()
        }
        Reply::Error { code, message, acked } => {
            let acked = acked.map(|(a, r)| array([num(a.into()), num(r.into())]));
            kind("error")
                .set("code", code.as_str())
                .set("message", message)
                .opt("acked", acked)
                .into()
        }
        Reply::Collection(view) => {
            kind("collection").set("collection", collection_to_js(&view)).into()
        }
        Reply::Collections { collections } => kind("collections")
            .set("collections", array(collections.iter().map(collection_to_js)))
            .into(),
        Reply::Dropped { deleted } => kind("dropped").set("deleted", num(deleted)).into(),
        Reply::Event { .. } | Reply::Sync { .. } | Reply::Token { .. } | Reply::Tokens { .. } => {
            kind("error")
                .set("code", "internal")
                .set(
                    "message",
                    "unexpected answer from the node (an event, a sync step or a token)",
                )
                .into()
        }
    }
}

/// A collection's settings, size and layout: `{name, defined, placement, replicas, keys,
/// bytes, settings: {consistency, ttlMs, maxKeys, maxBytes, replicas, select, zoneLabel},
/// layout: {current, moving}}`, a setting left at the cluster's default being `null`
/// (`{}` for `select`, so the settings object can be given back to an alter as is).
/// `replicas` is the factor in use; `settings` say the layout asked for, `layout.current`
/// the one in use (`{replicas, select, zoneLabel}`) and `layout.moving` the move to
/// another under way, `{to, phase: "announced" | "copying" | "joint", startedMs}`, or
/// `null`.
pub fn collection_to_js(v: &CollectionView) -> JsValue {
    let s = &v.settings;
    let count = |n: Option<u64>| n.map_or(JsValue::NULL, num);
    let settings = Obj::new()
        .set("consistency", s.consistency.map_or(JsValue::NULL, |c| c.to_string().into()))
        .set("ttlMs", count(s.ttl_ms))
        .set("maxKeys", count(s.max_keys))
        .set("maxBytes", count(s.max_bytes))
        .set("replicas", replicas_to_js(s.replicas))
        .set("select", labels_to_js(&s.select))
        .set("zoneLabel", zone_to_js(s.zone_label.as_deref()));
    let moving = v.layout.moving.as_ref().map_or(JsValue::NULL, |m| {
        Obj::new()
            .set("to", layout_to_js(&m.to))
            .set("phase", m.phase.as_str())
            .set("startedMs", num(m.at))
            .into()
    });
    let layout = Obj::new().set("current", layout_to_js(&v.layout.current)).set("moving", moving);
    Obj::new()
        .set("name", v.name.as_str())
        .set("defined", v.defined)
        .set("placement", v.placement.as_str())
        .set("replicas", v.replicas)
        .set("keys", num(v.keys))
        .set("bytes", num(v.bytes))
        .set("settings", settings)
        .set("layout", layout)
        .into()
}

/// A layout: `{replicas, select, zoneLabel}`, `replicas` and `zoneLabel` `null` when
/// the cluster's default (its replication factor, no zones).
fn layout_to_js(l: &Layout) -> JsValue {
    Obj::new()
        .set("replicas", replicas_to_js(l.replicas))
        .set("select", labels_to_js(&l.select))
        .set("zoneLabel", zone_to_js(l.zone_label.as_deref()))
        .into()
}

/// A replication factor, `null` for the cluster's.
fn replicas_to_js(r: Option<u32>) -> JsValue {
    r.map_or(JsValue::NULL, JsValue::from)
}

/// A zone label, `null` for none.
fn zone_to_js(z: Option<&str>) -> JsValue {
    z.map_or(JsValue::NULL, JsValue::from_str)
}

/// A change: `{collection, key, value?, ts, origin, expires?}`.
pub fn change_to_js(c: &Change) -> JsValue {
    Obj::new()
        .set("collection", c.collection.as_str())
        .bytes("key", &c.key)
        .opt_bytes("value", c.entry.value.as_deref())
        .set("ts", c.entry.ts.0)
        .set("origin", c.entry.origin.0.to_string())
        .opt("expires", c.entry.expires.map(|e| e as f64))
        .into()
}

/// A state: `{state: "live" | "interrupted" | "syncing" | "synced" | "ended", ...}`.
pub fn status_to_js(s: StreamStatus) -> JsValue {
    let state = |k: &str| Obj::new().set("state", k);
    match s {
        StreamStatus::Live => state("live"),
        StreamStatus::Interrupted { reason } => state("interrupted").set("reason", reason),
        StreamStatus::Syncing { done, total } => {
            state("syncing").set("done", done as f64).set("total", total as f64)
        }
        StreamStatus::Synced { entries } => state("synced").set("entries", entries as f64),
        StreamStatus::Ended { code, message } => {
            state("ended").set("code", code.as_str()).set("message", message)
        }
    }
    .into()
}

/// An output: `{type: "send" | "reply" | "change" | "status" | "ringChanged" |
/// "unreachable" | "refused", ...}`.
pub fn output_to_js(out: LightOutput) -> JsValue {
    let ty = |t: &str| Obj::new().set("type", t);
    match out {
        LightOutput::Send { addr, frame } => ty("send").set("addr", addr).bytes("frame", &frame),
        // JavaScript sees a peer's own "no node answered" as any other error answer.
        LightOutput::Reply { handle, reply } | LightOutput::NoAnswer { handle, reply } => {
            ty("reply").set("handle", handle as f64).set("reply", reply_to_js(reply))
        }
        LightOutput::Change { handle, change } => {
            ty("change").set("handle", handle as f64).set("change", change_to_js(&change))
        }
        LightOutput::Status { handle, status } => {
            ty("status").set("handle", handle as f64).set("status", status_to_js(status))
        }
        LightOutput::RingChanged => ty("ringChanged"),
        LightOutput::Unreachable { message } => ty("unreachable").set("message", message),
        LightOutput::Refused { code, message } => {
            ty("refused").set("code", code.as_str()).set("message", message)
        }
    }
    .into()
}

/// The ring's members: `[{id, addr, status, tokens, share}]`, `share` being the
/// fraction of the ring the member owns as primary (0 unless it serves).
pub fn members_to_js(view: &RingView) -> JsValue {
    let shares = view.ownership();
    let share_of = |id: NodeId| shares.iter().find(|(n, _)| *n == id).map_or(0.0, |(_, s)| *s);
    array(view.members().iter().map(|m| {
        Obj::new()
            .set("id", m.id.0.to_string())
            .set("addr", m.addr.as_str())
            .set("status", m.status.as_str())
            .set("tokens", array(m.tokens.iter().map(|t| JsValue::from_str(&t.to_string()))))
            .set("share", share_of(m.id))
            .set("joining", m.joining)
            .set("leaving", m.leaving)
            .set("labels", labels_to_js(&m.labels))
            .into()
    }))
}

/// Labels as a plain object of strings, `{zone: "eu-1", ...}` (`{}` for none): a
/// member's, or a collection's selector.
fn labels_to_js(labels: &std::collections::BTreeMap<String, String>) -> JsValue {
    labels.iter().fold(Obj::new(), |o, (k, v)| o.set(k, v.as_str())).into()
}

fn progress_to_js(p: Option<Progress>) -> Option<JsValue> {
    p.map(|p| {
        Obj::new()
            .set("done", num(p.done))
            .set("total", num(p.total))
            .set("entries", num(p.entries))
            .into()
    })
}

/// A node's stats with plain numbers (see `NodeStats` in the package types).
pub fn stats_to_js(s: &NodeStats) -> JsValue {
    let m = &s.members;
    let members = Obj::new()
        .set("alive", m.alive)
        .set("syncing", m.syncing)
        .set("suspect", m.suspect)
        .set("dead", m.dead)
        .set("left", m.left);
    let sync = Obj::new()
        .set("running", num(s.sync.running))
        .set("completed", num(s.sync.completed))
        .set("failed", num(s.sync.failed))
        .set("entriesReceived", num(s.sync.entries_received))
        .set("cleaned", num(s.sync.cleaned))
        .opt("lastFullSyncMs", s.sync.last_full_sync_ms.map(num))
        .opt("handoff", progress_to_js(s.sync.handoff))
        .opt("leaving", progress_to_js(s.sync.leaving));
    Obj::new()
        .set("node", s.node.0.to_string())
        .set("status", s.status.as_str())
        .set("keys", num(s.keys))
        .set("tombstones", num(s.tombstones))
        .set("bytes", num(s.bytes))
        .set("collections", num(s.collections))
        .set("requests", num(s.requests))
        .set("replicas", s.replicas)
        .set("members", members)
        .set("sync", sync)
        .set("hintsPending", num(s.hints_pending))
        .set("hintsDelivered", num(s.hints_delivered))
        .set("tombstonesPurged", num(s.tombstones_purged))
        .set("expired", num(s.expired))
        .set("storage", s.storage.status())
        .opt("storageFreeBytes", s.storage.free_bytes.map(num))
        .opt("storageError", s.storage.error.clone())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_and_ttl_are_checked_with_sentences() {
        assert_eq!(parse_consistency(None), Ok(Consistency::Default));
        assert_eq!(parse_consistency(Some("all".into())), Ok(Consistency::All));
        assert!(parse_consistency(Some("most".into())).unwrap_err().contains("quorum"));
        assert_eq!(parse_ttl(Some(1500.0)), Ok(Some(1500)));
        assert_eq!(parse_ttl(None), Ok(None));
        for bad in [0.0, -5.0, 1.5, f64::NAN, f64::INFINITY] {
            assert!(parse_ttl(Some(bad)).is_err(), "{bad}");
        }
    }
}
