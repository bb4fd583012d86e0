//! Hand-written decoders for the requests clients send most — `Get`, `Set` and `Del` —
//! and for the answers they get most ([`decode_response`]).
//!
//! Every frame a client sends is a [`ClientMessage`]. Decoded by rmp-serde's generic
//! deserializer (markers matched one value at a time, variant names looked up through
//! serde's visitors, and the frame walked twice, once by `check_lengths`), decoding took
//! about 14% of a node's CPU under SET at pipeline 16. [`decode_request`] first tries to
//! read the frame as the exact bytes rmp-serde writes for a `Get`, `Set` or `Del`
//! request, in one pass and with no serde machinery; anything it does not fully
//! recognise goes to [`decode_with_limit`] as before.
//!
//! ## The layout taken
//!
//! After the version byte, the whole rest of the frame must be:
//!
//! ```text
//! 81 a7 "Request"              ClientMessage::Request: a map of one, variant name → value
//! 92 | 93                      ClientRequest as an array: id, op (, seen)
//!   uint                       id
//!   81 a3 "Get" 93             Op::Get:  collection str, key bin, consistency str
//!   81 a3 "Set" 95             Op::Set:  collection str, key bin, value bin,
//!                                        consistency str, ttl_ms (c0 | uint)
//!   81 a3 "Del" 93             Op::Del:  collection str, key bin, consistency str
//!   c0 | uint                  seen (only when the request array has 3 elements)
//! ```
//!
//! where `uint` is a positive fixint or uint 8/16/32/64, `str` a fixstr or str 8/16/32
//! of valid UTF-8 (for the consistency, text [`Consistency`]'s `FromStr` accepts: its
//! serde impl parses with it), and `bin` a bin 8/16/32. rmp-serde writes the narrowest
//! width; another encoder may write a wider one, which rmp-serde reads to the same
//! value, so this reads every width too.
//!
//! ## Never a different answer
//!
//! The fast path accepts a subset of what rmp-serde accepts and builds the same value
//! from it; everything else — another op, a struct written as a map, a variant named by
//! its index, a key sent as `str` or a collection as `bin`, an integer with a signed
//! marker, a `str 8` variant name, invalid UTF-8, an unknown consistency, a cut frame,
//! trailing bytes — makes it give up, and [`decode_with_limit`] decodes the same frame
//! from the start: every frame it does not take gets exactly the result and error it got
//! before. The limit, empty-frame and version checks run before it, as in
//! [`decode_with_limit`] (which repeats them on the way to its error). The tests hold
//! both decoders to the same answers on random requests, mutated and cut frames and
//! random bytes.

use super::{decode_with_limit, WireError, VERSION};
use crate::{
    clock::Timestamp,
    proto::{
        client::{Consistency, Op, Reply},
        ClientMessage, ClientRequest, ClientResponse, Message,
    },
};
use bytes::Bytes;

/// Decodes a client's frame of at most `max` bytes as [`ClientMessage`]: exactly what
/// `decode_with_limit::<ClientMessage>(frame, max)` returns, faster for the `Get`, `Set`
/// and `Del` requests rmp-serde encodes (their layout is in `core/src/wire/fast.rs`).
pub fn decode_request(frame: &[u8], max: usize) -> Result<ClientMessage, WireError> {
    if frame.len() <= max {
        if let Some((&VERSION, body)) = frame.split_first() {
            if let Some(msg) = fast_path(body) {
                return Ok(msg);
            }
        }
    }
    decode_with_limit(frame, max)
}

/// The message in `body` (a frame after its version byte) when it has the layout of the
/// module docs, all of it and nothing after; `None` for anything else.
fn fast_path(body: &[u8]) -> Option<ClientMessage> {
    let mut r = Reader(body);
    r.literal(b"\x81\xa7Request")?;
    let with_seen = match r.byte()? {
        0x92 => false,
        0x93 => true,
        _ => return None,
    };
    let id = r.uint()?;
    let op = r.op()?;
    let seen = if with_seen { r.opt_uint()?.map(Timestamp) } else { None };
    if !r.0.is_empty() {
        return None;
    }
    Some(ClientMessage::Request(ClientRequest { id, op: op.build(), seen }))
}

/// Decodes a node's frame of at most `max` bytes as [`Message`]: exactly what
/// `decode_with_limit::<Message>(frame, max)` returns, faster for the answers clients
/// get most — `Written` and `Value` — whose layout, after the version byte, is
///
/// ```text
/// 81 a8 "Response"                Message::Response
/// 92 | 93                         ClientResponse as an array: id, result (, ts)
///   uint                          id
///   81 a7 "Written" 91 uint       Reply::Written { ts }
///   81 a5 "Value" 92 (c0 | bin)   Reply::Value { value, ts }
///                    (c0 | uint)
///   uint                          ts (only when the array has 3 elements)
/// ```
///
/// Anything else goes to [`decode_with_limit`], as requests do (module docs).
pub fn decode_response(frame: &[u8], max: usize) -> Result<Message, WireError> {
    if frame.len() <= max {
        if let Some((&VERSION, body)) = frame.split_first() {
            if let Some(msg) = fast_response(body) {
                return Ok(msg);
            }
        }
    }
    decode_with_limit(frame, max)
}

/// The answer in `body` when it has the layout of [`decode_response`], all of it and
/// nothing after; `None` for anything else.
fn fast_response(body: &[u8]) -> Option<Message> {
    let mut r = Reader(body);
    r.literal(b"\x81\xa8Response")?;
    let with_ts = match r.byte()? {
        0x92 => false,
        0x93 => true,
        _ => return None,
    };
    let id = r.uint()?;
    let result = if r.literal(b"\x81\xa7Written\x91").is_some() {
        Reply::Written { ts: Timestamp(r.uint()?) }
    } else if r.literal(b"\x81\xa5Value\x92").is_some() {
        let value = match r.0.first()? {
            0xc0 => r.byte().map(|_| None)?,
            _ => Some(r.bin()?),
        };
        let ts = r.opt_uint()?.map(Timestamp);
        Reply::Value { value: value.map(Bytes::copy_from_slice), ts, expires: None }
    } else {
        return None;
    };
    let ts = if with_ts { Some(Timestamp(r.uint()?)) } else { None };
    if !r.0.is_empty() {
        return None;
    }
    Some(Message::Response(ClientResponse { id, result, ts }))
}

/// An operation read from the frame, still borrowing its bytes: nothing is copied until
/// the whole frame is known to be taken.
enum RawOp<'a> {
    Get {
        collection: &'a str,
        key: &'a [u8],
        consistency: Consistency,
    },
    Set {
        collection: &'a str,
        key: &'a [u8],
        value: &'a [u8],
        consistency: Consistency,
        ttl_ms: Option<u64>,
    },
    Del {
        collection: &'a str,
        key: &'a [u8],
        consistency: Consistency,
    },
}

impl RawOp<'_> {
    /// The [`Op`], with the collection and each byte string copied once.
    fn build(self) -> Op {
        match self {
            RawOp::Get { collection, key, consistency } => Op::Get {
                collection: collection.to_owned(),
                key: Bytes::copy_from_slice(key),
                consistency,
            },
            RawOp::Set { collection, key, value, consistency, ttl_ms } => Op::Set {
                collection: collection.to_owned(),
                key: Bytes::copy_from_slice(key),
                value: Bytes::copy_from_slice(value),
                consistency,
                ttl_ms,
            },
            RawOp::Del { collection, key, consistency } => Op::Del {
                collection: collection.to_owned(),
                key: Bytes::copy_from_slice(key),
                consistency,
            },
        }
    }
}

/// The unread rest of a frame; every method consumes what it reads, or returns `None`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(head)
    }

    /// Exactly these bytes.
    fn literal(&mut self, expected: &[u8]) -> Option<()> {
        self.0 = self.0.strip_prefix(expected)?;
        Some(())
    }

    /// `Op::Get`, `Op::Set` or `Op::Del`: the variant map, its name and its array header
    /// are six fixed bytes, then the fields.
    fn op(&mut self) -> Option<RawOp<'a>> {
        Some(match &self.array::<6>()? {
            b"\x81\xa3Get\x93" => {
                RawOp::Get { collection: self.str()?, key: self.bin()?, consistency: self.level()? }
            }
            b"\x81\xa3Set\x95" => RawOp::Set {
                collection: self.str()?,
                key: self.bin()?,
                value: self.bin()?,
                consistency: self.level()?,
                ttl_ms: self.opt_uint()?,
            },
            b"\x81\xa3Del\x93" => {
                RawOp::Del { collection: self.str()?, key: self.bin()?, consistency: self.level()? }
            }
            _ => return None,
        })
    }

    /// An unsigned integer of any width.
    fn uint(&mut self) -> Option<u64> {
        let marker = self.byte()?;
        self.uint_after(marker)
    }

    /// `nil` or an unsigned integer.
    fn opt_uint(&mut self) -> Option<Option<u64>> {
        match self.byte()? {
            0xc0 => Some(None),
            marker => self.uint_after(marker).map(Some),
        }
    }

    fn uint_after(&mut self, marker: u8) -> Option<u64> {
        Some(match marker {
            0x00..=0x7f => u64::from(marker),
            0xcc => u64::from(self.byte()?),
            0xcd => u64::from(u16::from_be_bytes(self.array()?)),
            0xce => u64::from(u32::from_be_bytes(self.array()?)),
            0xcf => u64::from_be_bytes(self.array()?),
            _ => return None,
        })
    }

    /// A `str` of any width holding valid UTF-8.
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.str_bytes()?).ok()
    }

    /// The bytes of a `str` of any width, not yet checked to be UTF-8.
    fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            marker @ 0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => usize::from(u16::from_be_bytes(self.array()?)),
            0xdb => usize::try_from(u32::from_be_bytes(self.array()?)).ok()?,
            _ => return None,
        };
        self.take(len)
    }

    /// A `bin` of any width.
    fn bin(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            0xc4 => usize::from(self.byte()?),
            0xc5 => usize::from(u16::from_be_bytes(self.array()?)),
            0xc6 => usize::try_from(u32::from_be_bytes(self.array()?)).ok()?,
            _ => return None,
        };
        self.take(len)
    }

    /// A consistency level, read as its serde impl reads it: a `str` that
    /// [`Consistency`]'s `FromStr` parses. The names as they are written are matched
    /// first, to the levels `FromStr` gives them.
    fn level(&mut self) -> Option<Consistency> {
        match self.str_bytes()? {
            b"default" => Some(Consistency::Default),
            b"one" => Some(Consistency::One),
            b"quorum" => Some(Consistency::Quorum),
            b"all" => Some(Consistency::All),
            other => std::str::from_utf8(other).ok()?.parse().ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        proto::{Message, SyncBody, SyncMessage},
        wire::{self, DEFAULT_MAX_FRAME},
    };
    use proptest::prelude::*;
    use serde::Serialize;

    fn slow(frame: &[u8], max: usize) -> Result<ClientMessage, WireError> {
        wire::decode_with_limit::<ClientMessage>(frame, max)
    }

    fn frame_of(req: &ClientRequest) -> Vec<u8> {
        wire::encode_with_limit(&ClientMessage::Request(req.clone()), usize::MAX).unwrap()
    }

    /// A frame of `value` written by rmp-serde with structs as maps of field names.
    fn named_frame<T: Serialize>(value: &T) -> Vec<u8> {
        let mut frame = vec![VERSION];
        frame.extend(rmp_serde::to_vec_named(value).unwrap());
        frame
    }

    fn set(id: u64, key: &[u8], value: &[u8]) -> ClientRequest {
        ClientRequest {
            id,
            op: Op::Set {
                collection: "default".into(),
                key: Bytes::copy_from_slice(key),
                value: Bytes::copy_from_slice(value),
                consistency: Consistency::Default,
                ttl_ms: None,
            },
            seen: None,
        }
    }

    /// What the fast path makes of a frame of the right version.
    fn taken(frame: &[u8]) -> Option<ClientMessage> {
        frame.strip_prefix(&[VERSION]).and_then(fast_path)
    }

    /// Both decoders give the same answer, and the fast path is taken or not as said.
    fn agree(frame: &[u8], fast: bool) -> Result<ClientMessage, WireError> {
        let expected = slow(frame, DEFAULT_MAX_FRAME);
        assert_eq!(decode_request(frame, DEFAULT_MAX_FRAME), expected, "{frame:02x?}");
        let taken = taken(frame);
        assert_eq!(taken.is_some(), fast, "fast path taken? {frame:02x?}");
        if let Some(msg) = taken {
            assert_eq!(Ok(msg), expected);
        }
        expected
    }

    #[test]
    fn takes_the_bytes_rmp_serde_writes_for_a_set() {
        let req = set(7, b"k", b"v");
        let frame = frame_of(&req);
        let mut expected = vec![VERSION, 0x81, 0xa7];
        expected.extend(b"Request");
        expected.extend([0x92, 0x07, 0x81, 0xa3]);
        expected.extend(b"Set");
        expected.extend([0x95, 0xa7]);
        expected.extend(b"default");
        expected.extend([0xc4, 1, b'k', 0xc4, 1, b'v', 0xa7]);
        expected.extend(b"default");
        expected.push(0xc0);
        assert_eq!(frame, expected, "the layout the module docs describe");
        assert_eq!(agree(&frame, true), Ok(ClientMessage::Request(req)));
    }

    /// A request frame from its parts: `Request` with `fields` elements, the id bytes,
    /// a `Set` with the given field bytes, then `tail` (seen, or nothing).
    fn set_frame(fields: u8, id: &[u8], set_fields: &[&[u8]], tail: &[u8]) -> Vec<u8> {
        let mut frame = vec![VERSION, 0x81, 0xa7];
        frame.extend(b"Request");
        frame.push(fields);
        frame.extend(id);
        frame.extend([0x81, 0xa3]);
        frame.extend(b"Set");
        frame.push(0x95);
        for field in set_fields {
            frame.extend(*field);
        }
        frame.extend(tail);
        frame
    }

    #[test]
    fn takes_wider_encodings_rmp_serde_reads_the_same() {
        // id 7 as uint 64, collection as str 8, key as bin 32, value as bin 16, the level
        // in capitals, ttl as uint 16, seen as nil in a 3-element request.
        let frame = set_frame(
            0x93,
            &[0xcf, 0, 0, 0, 0, 0, 0, 0, 7],
            &[
                b"\xd9\x01c",
                b"\xc6\x00\x00\x00\x01k",
                b"\xc5\x00\x01v",
                b"\xa6QUORUM",
                b"\xcd\x01\x00",
            ],
            &[0xc0],
        );
        let ClientMessage::Request(req) = agree(&frame, true).unwrap();
        let op = Op::Set {
            collection: "c".into(),
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            consistency: Consistency::Quorum,
            ttl_ms: Some(256),
        };
        assert_eq!(req, ClientRequest { id: 7, op, seen: None });
        // A number with a leading zero as str 16, ttl as uint 32, seen as uint 8.
        let frame = set_frame(
            0x93,
            &[0xcc, 200],
            &[b"\xa1c", b"\xc4\x01k", b"\xc4\x00", b"\xda\x00\x0207", b"\xce\x00\x00\x00\x05"],
            &[0xcc, 9],
        );
        let ClientMessage::Request(req) = agree(&frame, true).unwrap();
        let op = Op::Set {
            collection: "c".into(),
            key: Bytes::from_static(b"k"),
            value: Bytes::new(),
            consistency: Consistency::N(7),
            ttl_ms: Some(5),
        };
        assert_eq!(req, ClientRequest { id: 200, op, seen: Some(Timestamp(9)) });
    }

    #[test]
    fn leaves_what_it_does_not_know_to_rmp_serde() {
        let req = set(7, b"k", b"v");
        let frame = frame_of(&req);
        let at = |needle: &[u8]| frame.windows(needle.len()).position(|w| w == needle).unwrap();
        let edit = |pos: usize, with: &[u8], remove: usize| {
            let mut f = frame.clone();
            f.splice(pos..pos + remove, with.iter().copied());
            f
        };
        let request = at(b"\xa7Request");
        let head = at(b"\x92\x07");
        let collection = at(b"\xa7def");
        let ttl = frame.len() - 1;
        let level = ttl - 8;
        // Accepted by rmp-serde, but not in the layout taken: the same message results.
        for f in [
            named_frame(&ClientMessage::Request(req.clone())), // structs as maps
            edit(request, &[0x00], 8),                         // variant by index
            edit(request, &[0xd9, 7], 1),                      // variant name as str 8
            edit(at(b"\xa3Set"), &[0x01], 4),                  // Set by index
            edit(collection, &[0xc4, 7], 1),                   // collection as bin
            edit(at(b"\xc4\x01k"), &[0xa1], 2),                // key as str
            edit(head, &[0x92, 0xd0, 0x07], 2),                // id as int 8
            edit(head, &[0x92, 0x07, 0xde, 0, 1], 3),          // Op as map 16
            edit(head, &[0xdc, 0, 2], 1),                      // request as array 16
            edit(level, &[0xc4, 7], 1),                        // level as bin
        ] {
            assert_eq!(agree(&f, false), Ok(ClientMessage::Request(req.clone())), "{f:02x?}");
        }
        let ClientMessage::Request(int8_ttl) = agree(&edit(ttl, &[0xd0, 1], 1), false).unwrap();
        assert!(matches!(int8_ttl.op, Op::Set { ttl_ms: Some(1), .. }));
        // Refused by rmp-serde: the same error results.
        for f in [
            edit(ttl + 1, &[0xc0], 0),                       // a trailing byte
            edit(head, &[0x94], 1),                          // 4 request fields, 2 present
            edit(head, &[0x93], 1),                          // 3 request fields, 2 present
            edit(head, &[0x91], 1),                          // no op
            edit(at(b"\x95"), &[0x94], 1),                   // Set without ttl
            edit(head, &[0x92, 0xff], 2),                    // negative id
            edit(head, &[0x92, 0xc3], 2),                    // boolean id
            edit(collection + 1, &[0xff], 1),                // invalid UTF-8 collection
            edit(level, &[0xa4, b'm', b'o', b's', b't'], 8), // unknown level
            edit(level, &[0xa3, b'2', b'5', b'6'], 8),       // level out of range
            edit(level, &[0xa0], 8),                         // empty level
            edit(ttl, &[0xff], 1),                           // negative ttl
            frame[..ttl].to_vec(),                           // cut
        ] {
            assert!(agree(&f, false).is_err(), "{f:02x?}");
        }
        let mut unknown = frame.clone();
        unknown[request + 1] = b'X';
        let err = agree(&unknown, false).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn checks_the_frame_before_decoding_as_before() {
        let frame = frame_of(&set(1, b"k", b"v"));
        assert_eq!(
            decode_request(&frame, frame.len() - 1),
            Err(WireError::TooLarge { len: frame.len(), max: frame.len() - 1 })
        );
        assert!(decode_request(&frame, frame.len()).is_ok());
        assert_eq!(decode_request(&[], 10), Err(WireError::Empty));
        let mut v2 = frame.clone();
        v2[0] = 2;
        assert_eq!(
            decode_request(&v2, DEFAULT_MAX_FRAME),
            Err(WireError::UnsupportedVersion { got: 2, supported: VERSION })
        );
    }

    #[test]
    fn other_ops_and_messages_decode_as_before() {
        let ops = [
            Op::GetMany {
                collection: "c".into(),
                keys: vec![Bytes::from_static(b"a")],
                consistency: Consistency::One,
            },
            Op::SetMany {
                collection: "c".into(),
                items: vec![(Bytes::from_static(b"a"), Bytes::from_static(b"b"))],
                consistency: Consistency::All,
                ttl_ms: Some(5),
            },
            Op::Scan {
                collection: "c".into(),
                cursor: None,
                prefix: Some(Bytes::from_static(b"p")),
                limit: 10,
                consistency: Consistency::N(2),
            },
            Op::Watch { collection: "c".into(), prefix: None },
            Op::Unwatch { watch: 3 },
            Op::Stats,
            Op::Ring,
            Op::TokenList,
            Op::Sync { msg: SyncMessage { session: 1, body: SyncBody::Done } },
            Op::CollectionCreate {
                collection: "c".into(),
                settings: crate::catalogue::CollectionSettings {
                    ttl_ms: Some(9),
                    ..Default::default()
                },
            },
            Op::CollectionAlter {
                collection: "c".into(),
                change: crate::catalogue::SettingsChange {
                    consistency: Some(Some(Consistency::One)),
                    max_keys: Some(None),
                    ..Default::default()
                },
            },
            Op::CollectionShow { collection: "c".into() },
            Op::CollectionList,
            Op::CollectionDrop { collection: "c".into(), consistency: Consistency::Default },
        ];
        for op in ops {
            let req = ClientRequest { id: 5, op, seen: Some(Timestamp(1)) };
            assert_eq!(agree(&frame_of(&req), false), Ok(ClientMessage::Request(req)));
        }
        let peer =
            wire::encode(&Message::Sync(SyncMessage { session: 1, body: SyncBody::Done })).unwrap();
        assert!(agree(&peer, false).is_err());
        let resp =
            crate::proto::ClientResponse::error(1, crate::proto::client::ErrorCode::Timeout, "x");
        assert!(agree(&wire::encode(&Message::Response(resp)).unwrap(), false).is_err());
    }

    fn width_u64() -> impl Strategy<Value = u64> {
        // Every width of MessagePack integer, not only the widest.
        (any::<u64>(), 0u32..64).prop_map(|(n, shift)| n >> shift)
    }

    fn level() -> impl Strategy<Value = Consistency> {
        prop_oneof![
            Just(Consistency::Default),
            Just(Consistency::One),
            Just(Consistency::Quorum),
            Just(Consistency::All),
            any::<u8>().prop_map(Consistency::N),
        ]
    }

    fn collection() -> impl Strategy<Value = String> {
        prop_oneof![Just("default".to_string()), "[a-z_]{0,40}", ".{0,12}", ".{0,120}"]
    }

    fn blob(max: usize) -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn hot_request(max: usize) -> impl Strategy<Value = ClientRequest> {
        let op = prop_oneof![
            (collection(), blob(max), level()).prop_map(|(collection, key, consistency)| {
                Op::Get { collection, key, consistency }
            }),
            (collection(), blob(max), blob(max), level(), prop::option::of(width_u64())).prop_map(
                |(collection, key, value, consistency, ttl_ms)| Op::Set {
                    collection,
                    key,
                    value,
                    consistency,
                    ttl_ms
                }
            ),
            (collection(), blob(max), level()).prop_map(|(collection, key, consistency)| {
                Op::Del { collection, key, consistency }
            }),
        ];
        (width_u64(), op, prop::option::of(width_u64().prop_map(Timestamp)))
            .prop_map(|(id, op, seen)| ClientRequest { id, op, seen })
    }

    /// One edit of a frame.
    #[derive(Debug, Clone)]
    enum Edit {
        Set(prop::sample::Index, u8),
        Insert(prop::sample::Index, u8),
        Remove(prop::sample::Index),
        Truncate(prop::sample::Index),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            3 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
            1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
            1 => any::<prop::sample::Index>().prop_map(Edit::Remove),
            1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
        ]
    }

    fn apply(frame: &mut Vec<u8>, edit: &Edit) {
        if frame.is_empty() {
            return;
        }
        match edit {
            Edit::Set(i, b) => {
                let i = i.index(frame.len());
                frame[i] = *b;
            }
            Edit::Insert(i, b) => frame.insert(i.index(frame.len() + 1), *b),
            Edit::Remove(i) => {
                frame.remove(i.index(frame.len()));
            }
            Edit::Truncate(i) => frame.truncate(i.index(frame.len())),
        }
    }

    /// Starts of frames for random tails: nothing, a version byte, and ever longer
    /// heads of the layout taken.
    fn heads() -> Vec<&'static [u8]> {
        vec![
            b"",
            b"\x01",
            b"\x01\x81\xa7Request",
            b"\x01\x81\xa7Request\x92",
            b"\x01\x81\xa7Request\x93\x07\x81\xa3Set\x95",
            b"\x01\x81\xa7Request\x92\x07\x81\xa3Get\x93\xa1c",
            b"\x01\x81\xa7Request\x92\x07\x81\xa3Del\x93\xa1c\xc4\x01k",
            b"\x01\x81\xa7Request\x93\x07\x81\xa3Set\x95\xa1c\xc4\x01k\xc4\x00\xa3one",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Every Get, Set and Del rmp-serde writes takes the fast path, to the value the
        /// slow path decodes.
        #[test]
        fn hot_requests_take_the_fast_path(req in hot_request(300)) {
            let frame = frame_of(&req);
            let msg = ClientMessage::Request(req);
            prop_assert_eq!(fast_path(&frame[1..]), Some(msg.clone()));
            prop_assert_eq!(slow(&frame, DEFAULT_MAX_FRAME), Ok(msg.clone()));
            prop_assert_eq!(decode_request(&frame, DEFAULT_MAX_FRAME), Ok(msg.clone()));
            prop_assert_eq!(decode_request(&frame, frame.len()), Ok(msg));
        }

        /// Mutated and cut frames get the slow path's answer, Ok or error alike.
        #[test]
        fn mutated_frames_get_the_slow_answer(
            req in hot_request(40),
            edits in prop::collection::vec(edit(), 1..4),
        ) {
            let mut frame = frame_of(&req);
            for e in &edits {
                apply(&mut frame, e);
            }
            let expected = slow(&frame, DEFAULT_MAX_FRAME);
            prop_assert_eq!(decode_request(&frame, DEFAULT_MAX_FRAME), expected.clone());
            if let Some(msg) = taken(&frame) {
                prop_assert_eq!(Ok(msg), expected);
            }
        }

        /// Random bytes, also after the fixed head of a request, get the slow answer.
        #[test]
        fn random_bytes_get_the_slow_answer(
            head in prop::sample::select(heads()),
            tail in prop::collection::vec(any::<u8>(), 0..24),
            max in prop_oneof![Just(DEFAULT_MAX_FRAME), 0usize..40],
        ) {
            let mut frame = head.to_vec();
            frame.extend(tail);
            prop_assert_eq!(decode_request(&frame, max), slow(&frame, max));
        }
    }

    fn response_frame(resp: &ClientResponse) -> Vec<u8> {
        wire::encode(&Message::Response(resp.clone())).unwrap()
    }

    fn slow_response(frame: &[u8], max: usize) -> Result<Message, WireError> {
        wire::decode_with_limit::<Message>(frame, max)
    }

    fn hot_response(max: usize) -> impl Strategy<Value = ClientResponse> {
        let ts = || prop::option::of(width_u64().prop_map(Timestamp));
        let result = prop_oneof![
            width_u64().prop_map(|t| Reply::Written { ts: Timestamp(t) }),
            (prop::option::of(blob(max)), ts()).prop_map(|(value, ts)| Reply::Value {
                value,
                ts,
                expires: None
            }),
        ];
        (width_u64(), result, ts()).prop_map(|(id, result, ts)| ClientResponse { id, result, ts })
    }

    #[test]
    fn other_answers_and_large_values_decode_as_before() {
        let big = Bytes::from(vec![7u8; 70_000]); // a bin 32
        let taken = [
            ClientResponse {
                id: 1,
                result: Reply::Value { value: Some(big), ts: None, expires: None },
                ts: None,
            },
            ClientResponse { id: u64::MAX, result: Reply::Written { ts: Timestamp(0) }, ts: None },
        ];
        for resp in taken {
            let frame = response_frame(&resp);
            assert!(fast_response(&frame[1..]).is_some());
            assert_eq!(decode_response(&frame, usize::MAX), Ok(Message::Response(resp)));
        }
        let left = [
            ClientResponse { id: 2, result: Reply::Ok, ts: None },
            ClientResponse { id: 3, result: Reply::Values { values: vec![None] }, ts: None },
            ClientResponse::error(4, crate::proto::client::ErrorCode::Timeout, "slow"),
        ];
        for resp in left {
            let frame = response_frame(&resp);
            assert!(fast_response(&frame[1..]).is_none());
            assert_eq!(decode_response(&frame, DEFAULT_MAX_FRAME), Ok(Message::Response(resp)));
        }
        // Over the limit, empty, another version: the slow path's errors.
        let frame = response_frame(&ClientResponse {
            id: 5,
            result: Reply::Written { ts: Timestamp(1) },
            ts: None,
        });
        assert_eq!(decode_response(&frame, 3), slow_response(&frame, 3));
        assert!(decode_response(&frame, 3).is_err());
        assert_eq!(decode_response(&[], 10), slow_response(&[], 10));
        let mut other = frame.clone();
        other[0] = VERSION + 1;
        assert_eq!(decode_response(&other, 100), slow_response(&other, 100));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Every Written and Value answer rmp-serde writes takes the fast path, to the
        /// value the slow path decodes.
        #[test]
        fn hot_answers_take_the_fast_path(resp in hot_response(300)) {
            let frame = response_frame(&resp);
            let msg = Message::Response(resp);
            prop_assert_eq!(fast_response(&frame[1..]), Some(msg.clone()));
            prop_assert_eq!(slow_response(&frame, DEFAULT_MAX_FRAME), Ok(msg.clone()));
            prop_assert_eq!(decode_response(&frame, frame.len()), Ok(msg));
        }

        /// Mutated and cut answers get the slow path's answer, Ok or error alike.
        #[test]
        fn mutated_answers_get_the_slow_answer(
            resp in hot_response(40),
            edits in prop::collection::vec(edit(), 1..4),
        ) {
            let mut frame = response_frame(&resp);
            for e in &edits {
                apply(&mut frame, e);
            }
            let expected = slow_response(&frame, DEFAULT_MAX_FRAME);
            prop_assert_eq!(decode_response(&frame, DEFAULT_MAX_FRAME), expected.clone());
            if let Some(msg) = frame.strip_prefix(&[VERSION]).and_then(fast_response) {
                prop_assert_eq!(Ok(msg), expected);
            }
        }
    }

    proptest! {
        /// A level's text, whatever it is, is read as the serde impl reads it.
        #[test]
        fn level_text_is_read_as_serde_reads_it(
            text in prop_oneof![
                "(?i)(default|one|quorum|all)",
                "[0-9]{0,4}",
                ".{0,6}",
                prop::collection::vec(any::<u8>(), 0..8)
                    .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            ],
            raw in prop::collection::vec(any::<u8>(), 0..8),
            use_raw: bool,
        ) {
            let text = if use_raw { raw } else { text.into_bytes() };
            prop_assume!(text.len() < 32);
            let mut level = vec![0xa0 | text.len() as u8];
            level.extend(&text);
            let frame = set_frame(0x92, &[7], &[b"\xa1c", b"\xc4\x01k", b"\xc4\x00", &level, b"\xc0"], &[]);
            let expected = slow(&frame, DEFAULT_MAX_FRAME);
            prop_assert_eq!(decode_request(&frame, DEFAULT_MAX_FRAME), expected.clone());
            prop_assert_eq!(taken(&frame).is_some(), expected.is_ok());
        }
    }

    #[test]
    fn large_values_take_the_fast_path() {
        for len in [255, 256, 65_535, 65_536, 70_000] {
            let req = set(u64::MAX, &vec![1; len], &vec![2; len]);
            let frame = frame_of(&req);
            assert_eq!(agree(&frame, true), Ok(ClientMessage::Request(req)));
        }
    }
}
