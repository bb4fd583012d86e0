//! The frame format: one version byte, then a MessagePack-encoded [`Message`].
//!
//! ```text
//! +---------+------------------------------+
//! | 0x01    | rmp-serde (structs as arrays) |
//! +---------+------------------------------+
//! ```
//!
//! The transport (a WebSocket binary message, a length-prefixed stream) delimits frames;
//! this module only checks and converts one. A frame longer than the limit, of another
//! version, or not a valid message is refused with a [`WireError`] — decoding never
//! panics, whatever the bytes (`core/tests/wire_fuzz.rs` feeds it random, truncated and
//! mutated frames).
//!
//! ## Hostile frames
//!
//! MessagePack declares every length up front, so six bytes can claim a 4 GiB string or
//! an array of four billion elements, and nothing bounds how deep arrays nest. Two
//! guards make such frames cheap, harmless errors:
//!
//! - Before decoding, `check_lengths` walks the frame's structure once, without
//!   recursion or allocation, and refuses it when a declared length cannot fit in the
//!   bytes that follow (every array or map element takes at least one byte). rmp-serde
//!   on its own reads byte strings safely but lets serde preallocate up to 1 MiB for a
//!   sequence whose length it was only told, per nesting level; after the check a
//!   preallocation is bounded by the bytes actually present.
//! - Nesting is limited to `MAX_NESTING` (32) arrays and maps. rmp-serde's default (1024)
//!   is deep enough to overflow a 2 MiB thread stack while skipping an unknown struct
//!   field of nested arrays — a crash, not an error. Real messages nest fewer than ten
//!   levels.
//!
//! ## Client requests
//!
//! A server decodes a client's frames with [`decode_request`]: the same answer as
//! `decode_with_limit::<ClientMessage>`, but `Get`, `Set` and `Del` requests in the
//! layout rmp-serde writes are read by hand, in one pass (`fast`, which says exactly what
//! it takes); every other frame goes to [`decode_with_limit`]. A client decodes a node's
//! frames with [`decode_response`] likewise: `Written` and `Value` answers by hand.

mod fast;

pub use fast::{decode_request, decode_response};

use crate::proto::Message;
use serde::{de::DeserializeOwned, Serialize};

/// The protocol version this build speaks, the first byte of every frame.
pub const VERSION: u8 = 1;
/// Default largest frame: a 16 MiB value plus generous room for keys and metadata.
pub const DEFAULT_MAX_FRAME: usize = 20 * 1024 * 1024;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame had no bytes at all.
    #[error("empty frame: a frame starts with the protocol version byte")]
    Empty,
    /// The frame is longer than the limit.
    #[error("frame of {len} bytes is larger than the limit of {max} bytes; split the request")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame speaks another protocol version.
    #[error("protocol version {got} is not supported (this node speaks version {supported}); upgrade the older side")]
    UnsupportedVersion {
        /// The version byte received.
        got: u8,
        /// The version this build speaks.
        supported: u8,
    },
    /// The bytes after the version byte are not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The bytes decoded, but trailing bytes followed the message.
    #[error("malformed frame: {0} trailing bytes after the message")]
    Trailing(usize),
    /// A message could not be encoded.
    #[error("could not encode message: {0}")]
    Encode(String),
}

/// Encodes `msg` as a frame, refusing frames over `max` bytes.
pub fn encode_with_limit<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    encode_into(msg, max, &mut out)?;
    Ok(out)
}

/// Encodes a frame of at most `max` bytes at the end of `out` (a writer framing many
/// messages into one buffer); on an error `out` is left as it was.
pub fn encode_into<T: Serialize>(msg: &T, max: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    out.push(VERSION);
    let written = rmp_serde::encode::write(out, msg).map_err(|e| WireError::Encode(e.to_string()));
    let len = out.len() - start;
    let result = match written {
        Ok(()) if len > max => Err(WireError::TooLarge { len, max }),
        other => other,
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Decodes a frame of at most `max` bytes.
pub fn decode_with_limit<T: DeserializeOwned>(frame: &[u8], max: usize) -> Result<T, WireError> {
    if frame.len() > max {
        return Err(WireError::TooLarge { len: frame.len(), max });
    }
    let (&version, body) = frame.split_first().ok_or(WireError::Empty)?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion { got: version, supported: VERSION });
    }
    let end = check_lengths(body)?;
    if end < body.len() {
        return Err(WireError::Trailing(body.len() - end));
    }
    // Read in place: strings and byte strings are handed to their types as slices of the
    // frame (a reader over a `Cursor` copied each into a buffer first, then again).
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    de.set_max_depth(MAX_NESTING);
    T::deserialize(&mut de).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Deepest nesting of MessagePack arrays and maps a frame may use (see the module docs).
const MAX_NESTING: usize = 32;

/// Walks the first MessagePack value of `body` and refuses it when it is cut short or
/// declares a length that cannot fit in the bytes that follow it; returns where the
/// value ends.
///
/// `pending` counts the values still to be read; each takes at least one byte, so it may
/// never exceed the bytes left. Iterative, allocation-free and linear in the number of
/// values, so it costs little next to the decoding it protects. Bytes after the first
/// value are left to the decoder, which reports them as [`WireError::Trailing`].
fn check_lengths(body: &[u8]) -> Result<usize, WireError> {
    let mut pos = 0usize;
    let mut pending: u64 = 1;
    while pending > 0 {
        let left = (body.len() - pos) as u64;
        if pending > left {
            return Err(WireError::Malformed(format!(
                "{pending} more values are declared but only {left} bytes are left in the frame"
            )));
        }
        let marker = body[pos];
        pos += 1;
        pending -= 1;
        // (bytes of the length field, payload bytes besides the declared length, child
        // values per unit of length — 0 when the length counts payload bytes)
        let (len_bytes, fixed, children_per_len): (usize, u64, u64) = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0, 0),
            0x80..=0x8f => {
                pending += 2 * u64::from(marker & 0x0f);
                continue;
            }
            0x90..=0x9f => {
                pending += u64::from(marker & 0x0f);
                continue;
            }
            0xa0..=0xbf => (0, u64::from(marker & 0x1f), 0),
            0xc1 => {
                return Err(WireError::Malformed("reserved MessagePack marker 0xc1".into()));
            }
            0xc4 | 0xd9 => (1, 0, 0), // bin 8, str 8
            0xc5 | 0xda => (2, 0, 0), // bin 16, str 16
            0xc6 | 0xdb => (4, 0, 0), // bin 32, str 32
            0xc7 => (1, 1, 0),        // ext 8: length, type byte, data
            0xc8 => (2, 1, 0),        // ext 16
            0xc9 => (4, 1, 0),        // ext 32
            0xcc | 0xd0 => (0, 1, 0), // (u)int 8
            0xcd | 0xd1 => (0, 2, 0), // (u)int 16
            0xca | 0xce | 0xd2 => (0, 4, 0),
            0xcb | 0xcf | 0xd3 => (0, 8, 0),
            0xd4 => (0, 2, 0), // fixext 1: type byte and data
            0xd5 => (0, 3, 0),
            0xd6 => (0, 5, 0),
            0xd7 => (0, 9, 0),
            0xd8 => (0, 17, 0),
            0xdc => (2, 0, 1), // array 16
            0xdd => (4, 0, 1), // array 32
            0xde => (2, 0, 2), // map 16
            0xdf => (4, 0, 2), // map 32
        };
        let Some(len_field) = body.get(pos..pos + len_bytes) else {
            return Err(WireError::Malformed(format!(
                "frame ends inside the length of a value (marker {marker:#04x})"
            )));
        };
        pos += len_bytes;
        let declared = len_field.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if children_per_len > 0 {
            pending += declared * children_per_len;
            continue;
        }
        let payload = declared + fixed;
        let left = (body.len() - pos) as u64;
        if payload > left {
            return Err(WireError::Malformed(format!(
                "a value declares {payload} bytes but only {left} are left in the frame"
            )));
        }
        pos += payload as usize;
    }
    Ok(pos)
}

/// Encodes a [`Message`] with the default frame limit.
pub fn encode(msg: &Message) -> Result<Vec<u8>, WireError> {
    encode_with_limit(msg, DEFAULT_MAX_FRAME)
}

/// Decodes a [`Message`] with the default frame limit.
pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
    decode_with_limit(frame, DEFAULT_MAX_FRAME)
}

/// The encoded size of `msg` in bytes, without the version byte (for paging budgets).
pub fn encoded_len<T: Serialize>(msg: &T) -> usize {
    rmp_serde::to_vec(msg).map_or(0, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Values of every MessagePack family rmp-serde writes (our messages use only some).
    type Sample = (
        Vec<(i64, f64, f32, Option<bool>)>,
        BTreeMap<String, Vec<u64>>,
        serde_bytes::ByteBuf,
        String,
        (u8, u16, u32, u64, i8, i16, i32),
    );

    fn sample() -> impl Strategy<Value = Sample> {
        (
            prop::collection::vec(any::<(i64, f64, f32, Option<bool>)>(), 0..40),
            prop::collection::btree_map(
                ".{0,40}",
                prop::collection::vec(any::<u64>(), 0..20),
                0..20,
            ),
            prop::collection::vec(any::<u8>(), 0..400).prop_map(serde_bytes::ByteBuf::from),
            ".{0,300}",
            any::<(u8, u16, u32, u64, i8, i16, i32)>(),
        )
    }

    proptest! {
        /// The walker finds the end of every value exactly where rmp-serde does, and
        /// refuses every proper prefix: it never rejects a valid frame.
        #[test]
        fn walker_agrees_with_rmp_serde(value in sample()) {
            let bytes = rmp_serde::to_vec(&value).unwrap();
            prop_assert_eq!(check_lengths(&bytes), Ok(bytes.len()));
            for cut in 0..bytes.len() {
                prop_assert!(check_lengths(&bytes[..cut]).is_err(), "prefix {}", cut);
            }
            let mut framed = vec![VERSION];
            framed.extend_from_slice(&bytes);
            prop_assert_eq!(decode_with_limit::<Sample>(&framed, usize::MAX), Ok(value));
        }
    }

    #[test]
    fn walker_knows_the_wide_and_rare_markers() {
        let big_str = rmp_serde::to_vec(&"s".repeat(70_000)).unwrap();
        let big_bin = rmp_serde::to_vec(&serde_bytes::ByteBuf::from(vec![7u8; 70_000])).unwrap();
        let big_array = rmp_serde::to_vec(&vec![0u8; 70_000]).unwrap();
        let big_map: BTreeMap<u32, ()> = (0..70_000).map(|i| (i, ())).collect();
        let big_map = rmp_serde::to_vec(&big_map).unwrap();
        assert_eq!(big_str[0], 0xdb);
        assert_eq!(big_bin[0], 0xc6);
        assert_eq!(big_array[0], 0xdd);
        assert_eq!(big_map[0], 0xdf);
        let ext: [&[u8]; 8] = [
            &[0xd4, 1, 0xaa],
            &[0xd5, 1, 0xaa, 0xbb],
            &[0xd6, 1, 0, 0, 0, 0],
            &[0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xc7, 2, 1, 0xaa, 0xbb],
            &[0xc8, 0, 2, 1, 0xaa, 0xbb],
            &[0xc9, 0, 0, 0, 2, 1, 0xaa, 0xbb],
        ];
        let all = [&big_str[..], &big_bin, &big_array, &big_map].into_iter().chain(ext);
        for value in all {
            assert_eq!(check_lengths(value), Ok(value.len()), "{:02x?}", &value[..4]);
            assert!(check_lengths(&value[..value.len() - 1]).is_err());
            let mut trailing = value.to_vec();
            trailing.push(0xc0);
            assert_eq!(check_lengths(&trailing), Ok(value.len()), "stops after one value");
        }
    }

    #[test]
    fn walker_refuses_impossible_lengths() {
        for frame in [
            &[0xc6, 0xff, 0xff, 0xff, 0xff][..],
            &[0xdb, 0xff, 0xff, 0xff, 0xff],
            &[0xc9, 0xff, 0xff, 0xff, 0xff, 1],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0xdc, 0x00, 0x03, 0xc0, 0xc0], // 3 elements, 2 present
            &[0x82, 0xc0, 0xc0, 0xc0],       // 2 pairs, 3 values present
            &[0xc5, 0x01],                   // length field cut short
            &[0xc1],
            &[],
        ] {
            assert!(matches!(check_lengths(frame), Err(WireError::Malformed(_))), "{frame:02x?}");
        }
    }

    #[test]
    fn nesting_is_limited_not_a_stack_overflow() {
        // Arrays nested MAX_NESTING deep are refused; real messages are far shallower.
        let mut deep = vec![VERSION];
        deep.extend(std::iter::repeat_n(0x91, MAX_NESTING));
        deep.push(0xc0);
        let err = decode_with_limit::<serde::de::IgnoredAny>(&deep, usize::MAX).unwrap_err();
        assert!(matches!(err, WireError::Malformed(ref m) if m.contains("depth")), "{err}");
        let mut shallow = vec![VERSION];
        shallow.extend(std::iter::repeat_n(0x91, MAX_NESTING - 2));
        shallow.push(0xc0);
        assert!(decode_with_limit::<serde::de::IgnoredAny>(&shallow, usize::MAX).is_ok());
    }
}
