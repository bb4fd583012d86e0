//! `dhrt-wasm` — dhrt in WebAssembly, for browsers and Node.
//!
//! A thin [`wasm_bindgen`](mod@wasm_bindgen) wrapper over `dhrt-core`: every function
//! here converts its arguments, calls the core and converts the answer back, with
//! camelCase names for JavaScript. No logic lives here that another host would need
//! too; the core has no wasm-bindgen dependency and stays the one place where dhrt
//! decides things.
//!
//! For now it exports ring placement and frame decoding; the light peer that joins the
//! ring from a browser grows on top of these. Ring positions are `u64`, so they reach
//! JavaScript as `BigInt`.
//!
//! Build it with `scripts/check-wasm.sh`, which also checks that the module imports
//! nothing from `"env"` (a sign that some dependency expected a C runtime).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use dhrt_core::{hash, wire};
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

/// Decodes one wire frame (version byte + MessagePack message) and describes the
/// message it holds, for debugging and the dashboard. Throws an `Error` whose message
/// says what is wrong when the bytes are not a valid frame.
#[wasm_bindgen(js_name = decodeFrame)]
pub fn decode_frame(bytes: &[u8]) -> Result<String, JsError> {
    describe_frame(bytes).map_err(to_js_error)
}

/// The description `decodeFrame` returns, kept free of JS types so native tests run it.
fn describe_frame(bytes: &[u8]) -> Result<String, wire::WireError> {
    wire::decode(bytes).map(|msg| format!("{msg:?}"))
}

/// The one place core errors become JavaScript errors.
fn to_js_error(err: impl std::fmt::Display) -> JsError {
    JsError::new(&err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhrt_core::proto::{client::Op, ClientRequest, Message};

    #[test]
    fn positions_are_the_cores() {
        assert_eq!(ordered_position(b"a"), 0x6100_0000_0000_0000);
        // Checked against an independent xxh3 (Python's xxhash); python/tests pins it too.
        assert_eq!(hashed_position("users", b"alice"), 0x842b_5888_779e_2fb0);
    }

    #[test]
    fn describes_a_valid_frame() {
        let frame =
            wire::encode(&Message::Request(ClientRequest { id: 7, op: Op::Stats })).unwrap();
        let text = describe_frame(&frame).unwrap();
        assert!(text.contains("Request") && text.contains("Stats"), "{text}");
    }

    #[test]
    fn refuses_bad_frames_with_a_reason() {
        assert_eq!(describe_frame(&[]), Err(wire::WireError::Empty));
        let err = describe_frame(&[0xff, 0x00]).unwrap_err();
        assert!(err.to_string().contains("version 255"), "{err}");
    }

    #[test]
    fn version_is_the_workspace_version() {
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
    }
}
