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
//! panics, whatever the bytes (a property test feeds it random and truncated frames).

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
    let mut out = vec![VERSION];
    rmp_serde::encode::write(&mut out, msg).map_err(|e| WireError::Encode(e.to_string()))?;
    if out.len() > max {
        return Err(WireError::TooLarge { len: out.len(), max });
    }
    Ok(out)
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
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(body));
    let msg = T::deserialize(&mut de).map_err(|e| WireError::Malformed(e.to_string()))?;
    let rest = body.len().saturating_sub(usize::try_from(de.position()).unwrap_or(usize::MAX));
    if rest != 0 {
        return Err(WireError::Trailing(rest));
    }
    Ok(msg)
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
