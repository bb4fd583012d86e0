//! The format of `dhrt export` and `dhrt import`: JSON Lines, one entry per line.
//!
//! ```text
//! {"collection":"users","key":"alice","value":"admin"}
//! {"collection":"files","key":"logo.png","value":"AP/+Ymlu","encoding":"base64"}
//! ```
//!
//! Keys and values are bytes. One that is valid UTF-8 is written as a JSON string; one
//! that is not is written as standard base64 (with padding) and marked beside it,
//! `"key_encoding": "base64"` for the key and `"encoding": "base64"` for the value —
//! the convention of the HTTP API's items (`docs/http.md`), so a line is a scan item
//! of `/v1/` plus its collection. Either way the bytes read back are the bytes written.
//!
//! Reading is strict: an object with `key` and `value` (strings), optionally
//! `collection`, `key_encoding` and `encoding` (`"text"`, the default, or `"base64"`);
//! any other field is an error, so a line from some other tool is not half-understood.
//! Keys and collection names are checked as a node checks them.

use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::Bytes;
use dhrt_core::store::{validate_collection, validate_key};
use serde::{Deserialize, Serialize};
use std::{borrow::Cow, io::Write};

/// One entry read from a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The collection the line names, if it names one.
    pub collection: Option<String>,
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
}

/// How a key or value is written in a line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    /// A JSON string holding the bytes as they are (UTF-8).
    #[default]
    Text,
    /// Standard base64 of the bytes.
    Base64,
}

#[derive(Serialize)]
struct LineOut<'a> {
    collection: &'a str,
    key: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_encoding: Option<&'static str>,
    value: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object {\"collection\", \"key\", \"value\"}")]
struct LineIn {
    #[serde(default)]
    collection: Option<String>,
    key: String,
    #[serde(default)]
    key_encoding: Encoding,
    value: String,
    #[serde(default)]
    encoding: Encoding,
}

/// `bytes` as text when they are UTF-8, else as base64 with the mark to put beside it.
fn text_or_base64(bytes: &[u8]) -> (Cow<'_, str>, Option<&'static str>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Cow::Borrowed(text), None),
        Err(_) => (Cow::Owned(STANDARD.encode(bytes)), Some("base64")),
    }
}

/// Writes one entry as a line, newline included.
pub fn write_line(
    out: &mut dyn Write,
    collection: &str,
    key: &[u8],
    value: &[u8],
) -> std::io::Result<()> {
    let (key, key_encoding) = text_or_base64(key);
    let (value, encoding) = text_or_base64(value);
    serde_json::to_writer(&mut *out, &LineOut { collection, key, key_encoding, value, encoding })?;
    out.write_all(b"\n")
}

/// Reads one line (its newline already removed). The error says what is wrong with
/// it, for a message that adds the line number.
pub fn read_line(line: &[u8]) -> Result<Entry, String> {
    // serde would take `[key, value]` for the struct too: a line is an object.
    if line.trim_ascii_start().first() != Some(&b'{') {
        return Err(
            "not a dhrt export line: expected a JSON object {\"key\": …, \"value\": …}".into()
        );
    }
    let parsed: LineIn = serde_json::from_slice(line).map_err(|e| {
        // serde_json's position is within the line: keep the column only.
        let text = e.to_string();
        let at = format!(" at line {} column {}", e.line(), e.column());
        let what = text.strip_suffix(&at).unwrap_or(&text).to_string();
        format!("not a dhrt export line ({what}, column {})", e.column())
    })?;
    let bytes = |text: String, encoding: Encoding, field: &str| match encoding {
        Encoding::Text => Ok(Bytes::from(text)),
        Encoding::Base64 => STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(|e| format!("{field} is marked base64 but is not standard base64 ({e})")),
    };
    let key = bytes(parsed.key, parsed.key_encoding, "the key")?;
    let value = bytes(parsed.value, parsed.encoding, "the value")?;
    validate_key(&key).map_err(|e| e.to_string())?;
    if let Some(c) = &parsed.collection {
        validate_collection(c).map_err(|e| e.to_string())?;
    }
    Ok(Entry { collection: parsed.collection, key, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(collection: &str, key: &[u8], value: &[u8]) -> String {
        let mut out = Vec::new();
        write_line(&mut out, collection, key, value).unwrap();
        String::from_utf8(out).expect("a line is UTF-8")
    }

    fn entry(collection: &str, key: &[u8], value: &[u8]) -> Entry {
        Entry {
            collection: Some(collection.into()),
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        }
    }

    #[test]
    fn text_stays_readable_and_bytes_become_marked_base64() {
        assert_eq!(
            line("users", b"alice", b"admin"),
            "{\"collection\":\"users\",\"key\":\"alice\",\"value\":\"admin\"}\n"
        );
        assert_eq!(
            line("files", b"logo.png", b"\x00\xff\xfebin"),
            "{\"collection\":\"files\",\"key\":\"logo.png\",\"value\":\"AP/+Ymlu\",\
             \"encoding\":\"base64\"}\n"
        );
        assert_eq!(
            line("c", b"\xff", b""),
            "{\"collection\":\"c\",\"key\":\"/w==\",\"key_encoding\":\"base64\",\"value\":\"\"}\n"
        );
    }

    #[test]
    fn every_byte_string_round_trips_exactly() {
        let cases: Vec<(&[u8], &[u8])> = vec![
            (b"k", b""),
            (b"line\nbreak\ttab \"quote\" \\slash", b"\r\n\x00\x1f\x7f"),
            ("ключ 🔑".as_bytes(), "значение".as_bytes()),
            (b"\xff\xfe", b"\xc3\x28"),
            (b"\xed\xa0\x80", b"\xf4\x90\x80\x80"), // a surrogate, past U+10FFFF: not UTF-8
        ];
        let mut all: Vec<u8> = (0..=255).collect();
        all.extend((0..=255).rev());
        for (k, v) in cases.into_iter().chain([(&all[..], &all[..])]) {
            let text = line("c.1", k, v);
            assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
            let back = read_line(text.trim_end_matches('\n').as_bytes()).unwrap();
            assert_eq!(back, entry("c.1", k, v), "{text}");
        }
    }

    #[test]
    fn lines_may_omit_the_collection_and_mark_text_explicitly() {
        let e =
            read_line(br#"{"key":"k","key_encoding":"text","value":"/w==","encoding":"base64"}"#)
                .unwrap();
        assert_eq!((e.collection, &e.key[..], &e.value[..]), (None, &b"k"[..], &b"\xff"[..]));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let err = |l: &str| read_line(l.as_bytes()).unwrap_err();
        assert!(err("{\"key\":\"k\"").contains("column"), "{}", err("{\"key\":\"k\""));
        assert!(err(r#"{"key":"k"}"#).contains("missing field `value`"));
        assert!(err(r#"{"key":"k","value":"v","ttl":3}"#).contains("unknown field `ttl`"));
        assert!(err(r#"[1, 2]"#).starts_with("not a dhrt export line: expected a JSON object"));
        assert!(err(r#"{"a":1}"#).contains("unknown field `a`"));
        assert!(err(r#"{"key":1,"value":"v"}"#).contains("invalid type: integer"));
        assert!(err(r#"{"key":"k","value":"v","encoding":"hex"}"#).contains("unknown variant"));
        assert!(err(r#"{"key":"k","value":"%%","encoding":"base64"}"#)
            .starts_with("the value is marked base64 but is not standard base64"));
        assert!(err(r#"{"key":"","value":"v"}"#).contains("key"));
        assert!(err(r#"{"collection":"a/b","key":"k","value":"v"}"#)
            .contains("invalid collection name"));
        assert!(err("\u{1}").starts_with("not a dhrt export line"));
    }
}
