//! `Peer`: the light peer of `dhrt-core` ([`LightPeer`]) as a JavaScript class.
//!
//! Sans-IO, like the core it wraps: JavaScript owns the WebSockets (one per node) and
//! the timer, hands every frame a node sends to [`Peer::handle_frame`], tells the peer
//! when a connection opens or closes, calls [`Peer::tick`] at [`Peer::next_deadline`],
//! and after every call drains [`Peer::poll_outputs`]: frames to send, answers,
//! changes and states. Every time is `Date.now()` (milliseconds).

use crate::convert::{members_to_js, opt_number, opt_string, output_to_js, request, Obj};
use bytes::Bytes;
use dhrt_core::{
    auth::BearerToken,
    light::{LightConfig, LightPeer},
    node::scan::Cursor,
};
use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;

/// The configuration from the options object `{replicas, attemptTimeoutMs,
/// ringRefreshMs, downMs, syncParallel, retryMs, seed, token}`; every field may be left
/// out. An empty `token` is none.
fn config(options: &JsValue) -> Result<LightConfig, String> {
    let d = LightConfig::default();
    if options.is_undefined() || options.is_null() {
        return Ok(d);
    }
    let ms = |name: &str, default: u64| -> Result<u64, String> {
        Ok(opt_number(options, name)?.filter(|v| *v >= 1.0).map_or(default, |v| v as u64))
    };
    let count = |name: &str, default: usize| -> Result<usize, String> {
        Ok(opt_number(options, name)?.map_or(default, |v| v.clamp(1.0, 1024.0) as usize))
    };
    Ok(LightConfig {
        replicas: count("replicas", d.replicas)?,
        attempt_timeout_ms: ms("attemptTimeoutMs", d.attempt_timeout_ms)?,
        ring_refresh_ms: ms("ringRefreshMs", d.ring_refresh_ms)?,
        down_ms: ms("downMs", d.down_ms)?,
        sync_parallel: count("syncParallel", d.sync_parallel)?,
        retry_ms: ms("retryMs", d.retry_ms)?,
        seed: opt_number(options, "seed")?.map_or(d.seed, |s| s as u64),
        token: opt_string(options, "token")?.filter(|t| !t.is_empty()).map(BearerToken),
    })
}

/// The light peer. See the module docs for how a host drives it.
#[wasm_bindgen]
pub struct Peer {
    inner: LightPeer,
}

fn now_ms(now: f64) -> u64 {
    if now.is_finite() && now > 0.0 {
        now as u64
    } else {
        0
    }
}

#[wasm_bindgen]
impl Peer {
    /// A peer that reads the ring through `seeds` (`"host:port"` each). `options`:
    /// `{replicas, attemptTimeoutMs, ringRefreshMs, downMs, syncParallel, retryMs, seed,
    /// token}`; with a `token`, the first frame sent on every connection presents it
    /// (`Auth`).
    #[wasm_bindgen(constructor)]
    pub fn new(seeds: Vec<String>, options: JsValue) -> Result<Peer, JsError> {
        let config =
            config(&options).map_err(|e| JsError::new(&format!("invalid options: {e}")))?;
        Ok(Peer { inner: LightPeer::new(seeds, config) })
    }

    /// Reads the ring through the seeds: a `ringChanged` or `unreachable` output follows.
    pub fn start(&mut self, now: f64) {
        self.inner.start(now_ms(now));
    }

    /// Sends a request (`{op: "get", collection, key, consistency}`, see the package
    /// types), routed to a replica of its key; returns the handle its `reply` output
    /// will carry. Throws on a malformed request.
    pub fn call(&mut self, now: f64, op: JsValue) -> Result<f64, JsError> {
        Ok(self.inner.call(now_ms(now), request(&op)?) as f64)
    }

    /// As [`Peer::call`], to the node at `addr` only.
    #[wasm_bindgen(js_name = callAt)]
    pub fn call_at(&mut self, now: f64, addr: &str, op: JsValue) -> Result<f64, JsError> {
        Ok(self.inner.call_at(now_ms(now), addr, request(&op)?) as f64)
    }

    /// Watches `collection` (keys starting with `prefix`, if given); returns the handle
    /// of its `change` and `status` outputs.
    pub fn watch(&mut self, now: f64, collection: &str, prefix: Option<Vec<u8>>) -> f64 {
        self.inner.watch(now_ms(now), collection, prefix.map(Bytes::from)) as f64
    }

    /// Opens a local copy of `collection`; with `notify`, each change applied to it is
    /// a `change` output. Returns its handle.
    #[wasm_bindgen(js_name = openCopy)]
    pub fn open_copy(&mut self, now: f64, collection: &str, notify: bool) -> f64 {
        self.inner.open_copy(now_ms(now), collection, notify) as f64
    }

    /// Ends a watch or a copy; false when `handle` names neither.
    pub fn unsubscribe(&mut self, now: f64, handle: f64) -> bool {
        self.inner.unsubscribe(now_ms(now), handle as u64)
    }

    /// A frame the node at `addr` sent.
    #[wasm_bindgen(js_name = handleFrame)]
    pub fn handle_frame(&mut self, now: f64, addr: &str, frame: &[u8]) {
        self.inner.handle_frame(now_ms(now), addr, frame);
    }

    /// The connection to `addr` opened.
    pub fn connected(&mut self, addr: &str) {
        self.inner.connected(addr);
    }

    /// The connection to `addr` failed or closed.
    pub fn disconnected(&mut self, now: f64, addr: &str) {
        self.inner.disconnected(now_ms(now), addr);
    }

    /// Runs the timers.
    pub fn tick(&mut self, now: f64) {
        self.inner.tick(now_ms(now));
    }

    /// When to call `tick` next (`Date.now()` milliseconds), if ever.
    #[wasm_bindgen(js_name = nextDeadline)]
    pub fn next_deadline(&self) -> Option<f64> {
        self.inner.next_deadline().map(|d| d as f64)
    }

    /// Every output waiting, in order: `{type: "send" | "reply" | "change" | "status" |
    /// "ringChanged" | "unreachable" | "refused", ...}`.
    #[wasm_bindgen(js_name = pollOutputs)]
    pub fn poll_outputs(&mut self) -> Array {
        std::iter::from_fn(|| self.inner.poll_output()).map(output_to_js).collect()
    }

    /// The ring as last read: `{members: [{id, addr, status, tokens, share, joining,
    /// leaving}], replicas}`.
    pub fn ring(&self) -> JsValue {
        Obj::new()
            .set("members", members_to_js(self.inner.ring()))
            .set("replicas", self.inner.config().replicas as f64)
            .into()
    }

    /// The nodes a request for `key` of `collection` goes to, in order.
    pub fn route(&self, collection: &str, key: &[u8]) -> Vec<String> {
        self.inner.ring().route(collection, key)
    }

    /// The live value of `key` in copy `handle`, if any.
    #[wasm_bindgen(js_name = copyGet)]
    pub fn copy_get(&self, handle: f64, now: f64, key: &[u8]) -> Option<Vec<u8>> {
        let copy = self.inner.copy(handle as u64)?;
        copy.get(now_ms(now), key).map(|v| v.to_vec())
    }

    /// A page of copy `handle`: `{items: [[key, value]], cursor}`; pass `cursor` back for
    /// the next page (absent at the end). Throws when the copy is not open.
    #[wasm_bindgen(js_name = copyScan)]
    pub fn copy_scan(
        &self,
        handle: f64,
        now: f64,
        cursor: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<JsValue, JsError> {
        let copy = self
            .inner
            .copy(handle as u64)
            .ok_or_else(|| JsError::new("this local copy is closed"))?;
        // A copy's cursors are a scan's: the position (8 bytes, big-endian), then the key.
        let after = match cursor.as_deref() {
            None => None,
            Some(c) => Some(Cursor::decode(c).map_err(|e| JsError::new(&e))?),
        };
        let after_ref = after.as_ref().map(|c| (c.pos, &c.key[..]));
        let page = copy.scan(now_ms(now), after_ref, limit.clamp(1, 10_000) as usize);
        let items: Array = page
            .items
            .iter()
            .map(|(k, v)| -> JsValue {
                [JsValue::from(Uint8Array::from(&k[..])), Uint8Array::from(&v[..]).into()]
                    .into_iter()
                    .collect::<Array>()
                    .into()
            })
            .collect();
        let cursor = page.cursor.map(|(pos, key)| Cursor { pos, key }.encode());
        Ok(Obj::new().set("items", items).opt_bytes("cursor", cursor.as_deref()).into())
    }

    /// What copy `handle` holds and has done (`rootDigest` is a `BigInt`); `undefined`
    /// when it is not open.
    #[wasm_bindgen(js_name = copyInfo)]
    pub fn copy_info(&self, handle: f64) -> JsValue {
        let Some(copy) = self.inner.copy(handle as u64) else { return JsValue::UNDEFINED };
        let s = copy.stats();
        let root = copy.root();
        let syncing = copy.progress().map(|(d, t)| -> JsValue {
            [JsValue::from_f64(d as f64), JsValue::from_f64(t as f64)]
                .into_iter()
                .collect::<Array>()
                .into()
        });
        Obj::new()
            .set("collection", copy.collection())
            .set("entries", copy.len() as f64)
            .opt("syncing", syncing)
            .set("rounds", s.rounds as f64)
            .set("sessions", s.sessions as f64)
            .set("sessionsFailed", s.sessions_failed as f64)
            .set("entriesSynced", s.entries_synced as f64)
            .set("events", s.events as f64)
            .set("rootCount", root.count as f64)
            .set("rootDigest", root.digest)
            .into()
    }
}
