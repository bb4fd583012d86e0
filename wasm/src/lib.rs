//! `dhrt-wasm` — dhrt in WebAssembly, for browsers and Node.
//!
//! A thin [`wasm_bindgen`](mod@wasm_bindgen) wrapper over `dhrt-core`: every function
//! here converts its arguments, calls the core and converts the answer back, with
//! camelCase names for JavaScript. No logic lives here that another host would need
//! too; the core has no wasm-bindgen dependency and stays the one place where dhrt
//! decides things.
//!
//! - [`Peer`] ([`peer`]) is the light peer of `dhrt_core::light`: ring-aware routing
//!   with failover, watches that survive a node's death, and local copies of
//!   collections caught up by Merkle sync. It is sans-IO: the npm package `dhrt` (in
//!   `js/`) owns the WebSockets and the timer and feeds it frames.
//! - [`convert`] is the one place core values become JavaScript values and back.
//! - Free functions: ring placement, and encoding and decoding single frames (the
//!   shared test vectors in `tests/vectors/` check them from JavaScript).
//!
//! Ring positions and timestamps are `u64`, so they reach JavaScript as `BigInt`.
//!
//! Build it with `scripts/check-wasm.sh` (the module, and a check that it imports
//! nothing from `"env"`) and `scripts/build-js.sh` (the bindings in `js/pkg/`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod convert;
pub mod peer;

pub use peer::Peer;

use convert::{reply_to_js, Obj};
use dhrt_core::{
    hash,
    proto::{client::ClientMessage, ClientRequest, ClientResponse},
    wire,
};
use wasm_bindgen::prelude::*;

/// The dhrt version this module was built from, such as `"0.1.0"`.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// The ring position of `key` in a hashed collection (the default placement):
/// xxh3-64 of the key, seeded with xxh3-64 of the collection name. Returns a `BigInt`.
#[wasm_bindgen(js_name = hashedPosition)]
pub fn hashed_position(collection: &str, key: &[u8]) -> u64 {
    hash::hashed_position(collection, key)
}

/// The ring position of `key` in an ordered collection: its first 8 bytes read
/// big-endian, zero-padded on the right, so ring order is key order. Returns a `BigInt`.
#[wasm_bindgen(js_name = orderedPosition)]
pub fn ordered_position(key: &[u8]) -> u64 {
    hash::ordered_position(key)
}

/// Encodes a request (`{op: "get", ...}`, as `Peer.call` takes it) with id `id` as a
/// wire frame. Throws when the request is malformed.
#[wasm_bindgen(js_name = encodeRequest)]
pub fn encode_request(id: f64, op: JsValue) -> Result<Vec<u8>, JsError> {
    let op = convert::request(&op)?;
    let msg = ClientMessage::Request(ClientRequest { id: id as u64, op, seen: None });
    wire::encode_with_limit(&msg, wire::DEFAULT_MAX_FRAME).map_err(to_js_error)
}

/// Decodes a response frame into `{id, reply}` (the `reply` shape of `Peer` outputs).
/// Throws an `Error` saying what is wrong when the bytes are not a response frame.
#[wasm_bindgen(js_name = decodeResponse)]
pub fn decode_response(frame: &[u8]) -> Result<JsValue, JsError> {
    let ClientResponse { id, result, .. } = read_response(frame).map_err(to_js_error)?;
    Ok(Obj::new().set("id", id as f64).set("reply", reply_to_js(result)).into())
}

/// A response frame, decoded as only that (no request decoder is linked in).
#[derive(serde::Deserialize)]
enum Incoming {
    Response(ClientResponse),
}

/// The response a frame holds, kept free of JS types so native tests run it.
fn read_response(frame: &[u8]) -> Result<ClientResponse, wire::WireError> {
    let Incoming::Response(resp) = wire::decode_with_limit(frame, wire::DEFAULT_MAX_FRAME)?;
    Ok(resp)
}

/// The one place core errors become JavaScript errors.
fn to_js_error(err: impl std::fmt::Display) -> JsError {
    JsError::new(&err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhrt_core::proto::{
        client::{Op, Reply},
        ClientRequest, Message,
    };

    #[test]
    fn positions_are_the_cores() {
        assert_eq!(ordered_position(b"a"), 0x6100_0000_0000_0000);
        // Checked against an independent xxh3 (Python's xxhash); python/tests pins it too.
        assert_eq!(hashed_position("users", b"alice"), 0x842b_5888_779e_2fb0);
    }

    #[test]
    fn reads_responses_and_refuses_everything_else_with_a_reason() {
        let resp = ClientResponse { id: 7, result: Reply::Ok, ts: None };
        let frame = wire::encode(&Message::Response(resp.clone())).unwrap();
        assert_eq!(read_response(&frame), Ok(resp));
        let req =
            wire::encode(&Message::Request(ClientRequest { id: 7, op: Op::Stats, seen: None }))
                .unwrap();
        assert!(read_response(&req).is_err(), "a request is not a response");
        assert_eq!(read_response(&[]), Err(wire::WireError::Empty));
        let err = read_response(&[0xff, 0x00]).unwrap_err();
        assert!(err.to_string().contains("version 255"), "{err}");
    }

    #[test]
    fn version_is_the_workspace_version() {
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
    }
}
