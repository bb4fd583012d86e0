//! Writing answers as JSON: keys and values as text or base64, timestamps, cursors,
//! stats and the ring.
//!
//! Keys and values are bytes. In JSON an item is `{"key": …, "value": …}`; with
//! [`Encoding::Text`] a key or value that is UTF-8 is a plain string and one that is
//! not is standard base64, marked by `"key_encoding": "base64"` or `"encoding":
//! "base64"` beside it. With [`Encoding::Base64`] both are always base64 and both
//! marks are present. 64-bit numbers that JavaScript cannot hold exactly (timestamps,
//! node ids, ring tokens) are decimal strings, as in the test vectors. Scan cursors
//! are URL-safe base64 without padding, so they go in a query string as they are.

use super::{error::ApiError, input::Encoding};
use crate::server::stats::Snapshot;
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use bytes::Bytes;
use dhrt_core::{clock::Timestamp, proto::client::RingMember};
use serde_json::{json, Map, Value};

/// `bytes` as standard base64.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64 (`what` names the field in the error).
pub fn unb64(text: &str, what: &str) -> Result<Bytes, ApiError> {
    STANDARD.decode(text).map(Bytes::from).map_err(|e| {
        ApiError::invalid(format!("{what} is not valid base64 ({e}); use the standard alphabet"))
    })
}

/// A scan cursor as a client holds it.
pub fn cursor_out(cursor: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(cursor)
}

/// A scan cursor a client sent back.
pub fn cursor_in(text: &str) -> Result<Bytes, ApiError> {
    URL_SAFE_NO_PAD.decode(text).map(Bytes::from).map_err(|_| {
        ApiError::invalid(
            "the cursor is not one this API handed out: pass back the previous page's cursor \
             unchanged, or none to start over",
        )
    })
}

/// A timestamp as JSON (a decimal string) and in the `x-dhrt-ts` header.
pub fn ts(ts: Timestamp) -> String {
    ts.0.to_string()
}

/// A key or name for an error message: quoted, non-UTF-8 bytes replaced, at most 64
/// bytes shown.
pub fn show(bytes: &[u8]) -> String {
    let cut = bytes.len().min(64);
    let more = if cut < bytes.len() { "…" } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(&bytes[..cut]))
}

/// Puts `bytes` under `field`, with `mark` set to `"base64"` when it is not text.
fn put(obj: &mut Map<String, Value>, field: &str, mark: &str, bytes: &[u8], enc: Encoding) {
    match (enc, std::str::from_utf8(bytes)) {
        (Encoding::Text, Ok(text)) => {
            obj.insert(field.into(), text.into());
        }
        _ => {
            obj.insert(field.into(), b64(bytes).into());
            obj.insert(mark.into(), "base64".into());
        }
    }
}

/// `{"key": …}`.
pub fn key(key: &[u8], enc: Encoding) -> Map<String, Value> {
    let mut obj = Map::new();
    put(&mut obj, "key", "key_encoding", key, enc);
    obj
}

/// `{"key": …, "value": …}`; a missing value is `null`.
pub fn item(k: &[u8], value: Option<&[u8]>, enc: Encoding) -> Value {
    let mut obj = key(k, enc);
    match value {
        Some(v) => put(&mut obj, "value", "encoding", v, enc),
        None => {
            obj.insert("value".into(), Value::Null);
        }
    }
    Value::Object(obj)
}

/// A list of `(key, value)` items.
pub fn items(items: &[(Bytes, Bytes)], enc: Encoding) -> Value {
    Value::Array(items.iter().map(|(k, v)| item(k, Some(v), enc)).collect())
}

/// What `GET /` and `GET /v1/stats` answer: the node's own report, its collections, and
/// the server's counters.
pub fn stats(s: &Snapshot) -> Value {
    let mut out = serde_json::to_value(&s.stats).unwrap_or_else(|_| json!({}));
    if let Value::Object(obj) = &mut out {
        obj.insert("node".into(), s.stats.node.0.to_string().into());
        obj.insert("addr".into(), s.addr.clone().into());
        obj.insert("collections".into(), json!(s.collections));
        let requests: Map<String, Value> =
            s.ops.iter().map(|(op, n)| ((*op).to_string(), json!(n))).collect();
        obj.insert("requests".into(), Value::Object(requests));
        let server: Map<String, Value> =
            s.server.iter().map(|(name, n, _)| ((*name).to_string(), json!(n))).collect();
        obj.insert("server".into(), Value::Object(server));
    }
    out
}

/// What `GET /v1/ring` answers.
pub fn ring(members: &[RingMember]) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({
                "id": m.id.0.to_string(),
                "addr": m.addr,
                "status": m.status,
                "joining": m.joining,
                "leaving": m.leaving,
                "labels": m.labels,
                "tokens": m.tokens.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "members": members })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_text_and_bytes_become_marked_base64() {
        assert_eq!(item(b"k", Some(b"v"), Encoding::Text), json!({"key": "k", "value": "v"}));
        assert_eq!(
            item(b"k", Some(b"\xff\x00"), Encoding::Text),
            json!({"key": "k", "value": "/wA=", "encoding": "base64"})
        );
        assert_eq!(
            item(b"\xfe", None, Encoding::Text),
            json!({"key": "/g==", "key_encoding": "base64", "value": null})
        );
        assert_eq!(
            item(b"k", Some(b"v"), Encoding::Base64),
            json!({"key": "aw==", "key_encoding": "base64", "value": "dg==", "encoding": "base64"})
        );
    }

    #[test]
    fn cursors_and_base64_round_trip() {
        let c = b"\x00\x01\xfe\xffkey";
        assert_eq!(cursor_in(&cursor_out(c)).unwrap(), Bytes::from_static(c));
        assert!(cursor_in("not a cursor!").is_err());
        assert_eq!(unb64(&b64(b"\xff"), "value").unwrap(), Bytes::from_static(b"\xff"));
        assert!(unb64("***", "value").unwrap_err().message.contains("value"));
    }
}
