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
    entry::NodeId,
    light::{LightOutput, RingView, StreamStatus},
    proto::client::{Consistency, NodeStats, Op, Progress, Reply},
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
        other => {
            return Err(format!(
                "unknown op {other:?}: use get, set, del, getMany, setMany, scan, stats or ring"
            ))
        }
    })
}

/// As [`op_from_js`], failing with a JavaScript `Error` that says the request is invalid.
pub fn request(value: &JsValue) -> Result<Op, JsError> {
    op_from_js(value).map_err(|e| JsError::new(&format!("invalid request: {e}")))
}

/// An answer: `{kind: "value" | "ok" | "written" | "values" | "page" | "stats" | "ring"
/// | "error", ...}`.
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
        Reply::Event { .. }
        | Reply::Sync { .. }
        | Reply::Token { .. }
        | Reply::Tokens { .. }
        | Reply::Collection(_)
        | Reply::Collections { .. }
        | Reply::Dropped { .. } => kind("error")
            .set("code", "internal")
            .set("message", "unexpected answer from the node (an event, a sync step or a token)")
            .into(),
    }
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
        LightOutput::Reply { handle, reply } => {
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
            .into()
    }))
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
