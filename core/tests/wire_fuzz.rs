//! The wire format against arbitrary and hostile input.
//!
//! Every [`Message`] survives a round trip; random bytes, truncated frames and mutated
//! frames never panic the decoder; each kind of bad frame gets its own [`WireError`];
//! and frames that *declare* gigabytes in a few bytes are refused without allocating
//! them (checked by a counting allocator installed for this test binary).

use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    entry::{Entry, NodeId, Version},
    hash::{Interval, Placement},
    merkle::{NodeRef, Summary},
    proto::{
        client::{Consistency, ErrorCode, NodeStats, Op, Progress, Reply, RingMember, SyncStats},
        watch::Subscription,
        ClientRequest, ClientResponse, Message, SyncBody, SyncItem, SyncMessage, WatchMessage,
    },
    wire::{self, WireError},
};
use proptest::prelude::*;
use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

// ---------------------------------------------------------------------------------------
// A counting allocator: records the largest single allocation made by the current thread
// while tracking is on, so a test can assert that decoding a frame never asked for more.

struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping
// touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`, returning its result and the largest single allocation it made.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    (r, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------------------
// Generators for every message type.

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(dhrt_core::proto::client::DEFAULT_COLLECTION.to_string()),
        "[a-z0-9_.-]{1,12}",
        ".{0,6}",
    ]
}

fn consistency() -> impl Strategy<Value = Consistency> {
    prop_oneof![
        Just(Consistency::One),
        Just(Consistency::Quorum),
        Just(Consistency::All),
        any::<u8>().prop_map(Consistency::N),
    ]
}

fn ts() -> impl Strategy<Value = Timestamp> {
    any::<u64>().prop_map(Timestamp)
}

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<u64>().prop_map(NodeId)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (name(), bytes(16), consistency()).prop_map(|(collection, key, consistency)| Op::Get {
            collection,
            key,
            consistency
        }),
        (name(), bytes(16), bytes(32), consistency(), any::<Option<u64>>()).prop_map(
            |(collection, key, value, consistency, ttl_ms)| Op::Set {
                collection,
                key,
                value,
                consistency,
                ttl_ms
            }
        ),
        (name(), bytes(16), consistency()).prop_map(|(collection, key, consistency)| Op::Del {
            collection,
            key,
            consistency
        }),
        (name(), prop::collection::vec(bytes(8), 0..6), consistency()).prop_map(
            |(collection, keys, consistency)| Op::GetMany { collection, keys, consistency }
        ),
        (
            name(),
            prop::collection::vec((bytes(8), bytes(8)), 0..6),
            consistency(),
            any::<Option<u64>>()
        )
            .prop_map(|(collection, items, consistency, ttl_ms)| Op::SetMany {
                collection,
                items,
                consistency,
                ttl_ms
            }),
        (
            name(),
            prop::option::of(bytes(12)),
            prop::option::of(bytes(6)),
            any::<u32>(),
            consistency()
        )
            .prop_map(|(collection, cursor, prefix, limit, consistency)| Op::Scan {
                collection,
                cursor,
                prefix,
                limit,
                consistency
            }),
        (name(), prop::option::of(bytes(6)))
            .prop_map(|(collection, prefix)| Op::Watch { collection, prefix }),
        any::<u64>().prop_map(|watch| Op::Unwatch { watch }),
        Just(Op::Stats),
        Just(Op::Ring),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (prop::option::of(bytes(32)), prop::option::of(ts())).prop_map(|(value, ts)| {
            Reply::Value { expires: value.as_ref().map(|v| v.len() as u64), value, ts }
        }),
        Just(Reply::Ok),
        ts().prop_map(|ts| Reply::Written { ts }),
        prop::collection::vec(prop::option::of(bytes(8)), 0..6)
            .prop_map(|values| Reply::Values { values }),
        (prop::collection::vec((bytes(8), bytes(8)), 0..6), prop::option::of(bytes(12)))
            .prop_map(|(items, cursor)| Reply::Page { items, cursor }),
        (name(), bytes(16), prop::option::of(bytes(16)), ts()).prop_map(
            |(collection, key, value, ts)| Reply::Event {
                collection,
                key,
                value,
                ts,
                origin: NodeId(ts.0 >> 3),
                expires: (ts.0 % 3 == 0).then_some(ts.0 >> 20),
            }
        ),
        (node_id(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(node, keys, tombstones, bytes, collections)| Reply::Stats(Box::new(NodeStats {
                node,
                keys,
                tombstones,
                bytes,
                collections,
                status: "alive".into(),
                hints_pending: keys % 7,
                sync: SyncStats {
                    completed: bytes % 11,
                    last_full_sync_ms: Some(tombstones),
                    handoff: Some(Progress { done: 1, total: 2, entries: keys }),
                    ..SyncStats::default()
                },
                ..NodeStats::default()
            }))
        ),
        prop::collection::vec(
            (node_id(), ".{0,20}", prop::collection::vec(any::<u64>(), 0..5)).prop_map(
                |(id, addr, tokens)| RingMember {
                    id,
                    labels: [("zone".to_string(), addr.clone())].into_iter().collect(),
                    addr,
                    tokens,
                    status: "suspect".into(),
                    joining: false,
                    leaving: false,
                }
            ),
            0..4
        )
        .prop_map(|members| Reply::Ring { members }),
        (error_code(), ".{0,40}", prop::option::of(any::<(u32, u32)>()))
            .prop_map(|(code, message, acked)| Reply::Error { code, message, acked }),
    ]
}

fn node_ref() -> impl Strategy<Value = NodeRef> {
    (any::<u8>(), any::<u64>()).prop_map(|(level, prefix)| NodeRef { level, prefix })
}

fn entry() -> impl Strategy<Value = Entry> {
    (prop::option::of(bytes(24)), ts(), node_id(), any::<Option<u64>>())
        .prop_map(|(value, ts, origin, expires)| Entry { value, ts, origin, expires })
}

fn version() -> impl Strategy<Value = Version> {
    (ts(), node_id(), any::<bool>()).prop_map(|(ts, origin, tombstone)| Version {
        ts,
        origin,
        tombstone,
    })
}

fn sync_item() -> impl Strategy<Value = SyncItem> {
    prop_oneof![
        (node_ref(), any::<u8>(), prop::collection::vec(any::<u64>(), 0..5))
            .prop_map(|(node, mask, digests)| SyncItem::Children { node, mask, digests }),
        (node_ref(), prop::collection::vec((bytes(12), version()), 0..5))
            .prop_map(|(node, versions)| SyncItem::Versions { node, versions }),
        prop::collection::vec((bytes(12), entry()), 0..5)
            .prop_map(|entries| SyncItem::Entries { entries }),
        prop::collection::vec(bytes(12), 0..5).prop_map(|keys| SyncItem::Want { keys }),
    ]
}

fn sync_body() -> impl Strategy<Value = SyncBody> {
    prop_oneof![
        (
            name(),
            prop_oneof![Just(Placement::Hashed), Just(Placement::Ordered)],
            any::<(u64, u64)>(),
            any::<u8>(),
            any::<u64>(),
            any::<(u64, u64)>()
        )
            .prop_map(
                |(collection, placement, (start, end), depth, salt, (digest, count))| {
                    SyncBody::Begin {
                        collection,
                        placement,
                        range: Interval::new(start, end),
                        depth,
                        salt,
                        root: Summary { digest, count },
                    }
                }
            ),
        prop::collection::vec(sync_item(), 0..5).prop_map(|items| SyncBody::Step { items }),
        Just(SyncBody::Done),
        ".{0,30}".prop_map(|reason| SyncBody::Abort { reason }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), op()).prop_map(|(id, op)| Message::Request(ClientRequest {
            id,
            op,
            seen: None
        })),
        (any::<u64>(), reply()).prop_map(|(id, result)| Message::Response(ClientResponse {
            id,
            result,
            ts: None
        })),
        (any::<u64>(), sync_body())
            .prop_map(|(session, body)| Message::Sync(SyncMessage { session, body })),
        watch_message().prop_map(Message::Watch),
        (any::<u64>(), any::<u64>(), sync_body()).prop_map(|(id, session, body)| {
            Message::Request(ClientRequest {
                id,
                op: Op::Sync { msg: SyncMessage { session, body } },
                seen: None,
            })
        }),
        (any::<u64>(), any::<u64>(), sync_body()).prop_map(|(id, session, body)| {
            Message::Response(ClientResponse {
                id,
                result: Reply::Sync { msg: SyncMessage { session, body } },
                ts: None,
            })
        }),
    ]
}

fn watch_message() -> impl Strategy<Value = WatchMessage> {
    let subscription =
        (any::<u64>(), name(), prop::option::of(bytes(8)), prop::option::of(ts())).prop_map(
            |(sub, collection, prefix, resume)| Subscription { sub, collection, prefix, resume },
        );
    prop_oneof![
        prop::collection::vec(subscription, 0..4).prop_map(|subs| WatchMessage::Subscribe { subs }),
        prop::collection::vec(any::<u64>(), 0..4)
            .prop_map(|subs| WatchMessage::Unsubscribe { subs }),
        (
            any::<u64>(),
            ts(),
            any::<u64>(),
            prop::collection::vec((bytes(8), entry()), 0..4),
            any::<bool>()
        )
            .prop_map(|(sub, epoch, seq, items, lagged)| WatchMessage::Changes {
                sub,
                epoch,
                seq,
                items,
                lagged
            }),
        (any::<u64>(), ts(), any::<u64>()).prop_map(|(sub, epoch, seq)| WatchMessage::ChangesAck {
            sub,
            epoch,
            seq
        }),
    ]
}

// ---------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) encode → decode gives the message back; the frame is the version byte plus
    /// `encoded_len` bytes.
    #[test]
    fn every_message_round_trips(msg in message()) {
        let frame = wire::encode(&msg).unwrap();
        prop_assert_eq!(frame[0], wire::VERSION);
        prop_assert_eq!(frame.len(), wire::encoded_len(&msg) + 1);
        prop_assert_eq!(wire::decode(&frame), Ok(msg));
    }

    /// (b) random bytes never panic the decoder, with or without a valid version byte.
    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = wire::decode(&body);
        let mut frame = vec![wire::VERSION];
        frame.extend_from_slice(&body);
        if let Ok(msg) = wire::decode(&frame) {
            // Whatever decodes is a real message: it encodes and decodes again.
            let again = wire::encode(&msg).unwrap();
            prop_assert_eq!(wire::decode(&again), Ok(msg));
        }
    }

    /// (c) every proper prefix of a valid frame is an error; only the whole decodes.
    #[test]
    fn every_truncation_is_an_error(msg in message()) {
        let frame = wire::encode(&msg).unwrap();
        for cut in 0..frame.len() {
            let got = wire::decode(&frame[..cut]);
            prop_assert!(got.is_err(), "prefix {}/{} decoded: {:?}", cut, frame.len(), got);
            if cut == 0 {
                prop_assert_eq!(got, Err(WireError::Empty));
            }
        }
        prop_assert_eq!(wire::decode(&frame), Ok(msg));
    }

    /// (d) mutating bytes of a valid frame never panics, and whatever still decodes
    /// re-encodes to a frame that decodes to the same message.
    #[test]
    fn mutations_never_panic(
        msg in message(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut frame = wire::encode(&msg).unwrap();
        for (i, (at, byte)) in edits.iter().enumerate() {
            let at = at.index(frame.len());
            frame[at] = *byte;
            if i == 0 {
                // A single-byte mutation, on its own.
                let _ = wire::decode(&frame);
            }
        }
        if let Ok(m) = wire::decode(&frame) {
            prop_assert_eq!(wire::decode(&wire::encode(&m).unwrap()), Ok(m));
        }
    }

    /// Bytes appended to a valid frame are reported as trailing, whatever they are.
    #[test]
    fn appended_bytes_are_trailing(
        msg in message(),
        tail in prop::collection::vec(any::<u8>(), 1..40),
    ) {
        let mut frame = wire::encode(&msg).unwrap();
        frame.extend_from_slice(&tail);
        prop_assert_eq!(wire::decode(&frame), Err(WireError::Trailing(tail.len())));
    }

    /// Every frame decodes without a single allocation larger than the frame itself
    /// (plus serde's and the reader's small fixed buffers).
    #[test]
    fn decoding_allocates_in_proportion_to_the_frame(
        msg in message(),
        cut in any::<prop::sample::Index>(),
    ) {
        let frame = wire::encode(&msg).unwrap();
        let part = &frame[..cut.index(frame.len()).max(1)];
        let (_, largest) = largest_allocation(|| wire::decode(part));
        let bound = 4096 + 64 * part.len();
        prop_assert!(largest <= bound, "{} bytes for a frame of {}", largest, part.len());
    }
}

// ---------------------------------------------------------------------------------------
// (e) Each kind of bad frame has its own error.

fn sample() -> Message {
    Message::Request(ClientRequest {
        id: 42,
        op: Op::Set {
            collection: "users".into(),
            key: Bytes::from_static(b"ada"),
            value: Bytes::from_static(b"lovelace"),
            consistency: Consistency::Quorum,
            ttl_ms: Some(60_000),
        },
        seen: None,
    })
}

#[test]
fn empty_frame() {
    assert_eq!(wire::decode(&[]), Err(WireError::Empty));
}

#[test]
fn wrong_version() {
    let mut frame = wire::encode(&sample()).unwrap();
    for v in [0u8, 2, 0x81, 0xff] {
        frame[0] = v;
        assert_eq!(
            wire::decode(&frame),
            Err(WireError::UnsupportedVersion { got: v, supported: wire::VERSION })
        );
    }
    let err = wire::decode(&[2]).unwrap_err();
    assert!(err.to_string().contains("upgrade"), "{err}");
}

#[test]
fn trailing_bytes() {
    let mut frame = wire::encode(&sample()).unwrap();
    frame.extend_from_slice(&[0xc0, 0xc0, 0xc0]);
    assert_eq!(wire::decode(&frame), Err(WireError::Trailing(3)));
    // Two whole messages in one frame: the second is trailing.
    let one = wire::encode(&sample()).unwrap();
    let mut two = one.clone();
    two.extend_from_slice(&one[1..]);
    assert_eq!(wire::decode(&two), Err(WireError::Trailing(one.len() - 1)));
}

#[test]
fn oversize_frames() {
    let frame = wire::encode(&sample()).unwrap();
    let n = frame.len();
    assert_eq!(
        wire::decode_with_limit::<Message>(&frame, n - 1),
        Err(WireError::TooLarge { len: n, max: n - 1 })
    );
    assert_eq!(wire::decode_with_limit::<Message>(&frame, n), Ok(sample()));
    assert_eq!(
        wire::encode_with_limit(&sample(), n - 1),
        Err(WireError::TooLarge { len: n, max: n - 1 })
    );
    assert_eq!(wire::encode_with_limit(&sample(), n).as_deref(), Ok(&frame[..]));
    // The size check comes before anything else, even for garbage.
    let big = vec![0u8; wire::DEFAULT_MAX_FRAME + 1];
    assert_eq!(
        wire::decode(&big),
        Err(WireError::TooLarge { len: wire::DEFAULT_MAX_FRAME + 1, max: wire::DEFAULT_MAX_FRAME })
    );
}

#[test]
fn a_sixteen_mebibyte_value_fits_the_default_frame() {
    let value = Bytes::from(vec![0xab; 16 * 1024 * 1024]);
    let msg = Message::Request(ClientRequest {
        id: 1,
        op: Op::Set {
            collection: "c".into(),
            key: Bytes::from(vec![b'k'; 64 * 1024]),
            value,
            consistency: Consistency::All,
            ttl_ms: None,
        },
        seen: None,
    });
    let frame = wire::encode(&msg).unwrap();
    assert_eq!(wire::decode(&frame), Ok(msg));
}

#[test]
fn garbage_after_the_version_is_malformed() {
    for body in [&[0xc1][..], &[0x81, 0xa3, b'F', b'o', b'o', 0xc0], &[0x93, 1, 2, 3], &[0xc0]] {
        let mut frame = vec![wire::VERSION];
        frame.extend_from_slice(body);
        assert!(
            matches!(wire::decode(&frame), Err(WireError::Malformed(_))),
            "{body:02x?}: {:?}",
            wire::decode(&frame)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Frames that declare huge lengths in a few bytes.

/// The frame prefix of `Message::Request(ClientRequest { id: 1, op: Op::Get { .. } })`
/// up to (not including) the collection name: map{"Request": [1, {"Get": [ ...`.
fn get_prefix() -> Vec<u8> {
    let mut f = vec![wire::VERSION, 0x81, 0xa7];
    f.extend_from_slice(b"Request");
    f.extend_from_slice(&[0x92, 0x01, 0x81, 0xa3]);
    f.extend_from_slice(b"Get");
    f.push(0x93);
    f
}

/// The frame prefix of a sync `Step` up to its item array: map{"Sync": [0, {"Step": [`.
fn step_prefix() -> Vec<u8> {
    let mut f = vec![wire::VERSION, 0x81, 0xa4];
    f.extend_from_slice(b"Sync");
    f.extend_from_slice(&[0x92, 0x00, 0x81, 0xa4]);
    f.extend_from_slice(b"Step");
    f.push(0x91);
    f
}

fn hostile_frames() -> Vec<(&'static str, Vec<u8>)> {
    let huge = [0xff, 0xff, 0xff, 0xff];
    let with = |mut prefix: Vec<u8>, tail: &[u8]| {
        prefix.extend_from_slice(tail);
        prefix
    };
    let mut cases = vec![
        // Key of a Get declared as bin 32 of 4 GiB.
        ("bin32 key", with(get_prefix(), &[&[0xa1, b'c', 0xc6][..], &huge].concat())),
        // Collection name declared as str 32 of 4 GiB.
        ("str32 collection", with(get_prefix(), &[&[0xdb][..], &huge].concat())),
        // A Step with an item array of 4 billion elements.
        ("array32 items", with(step_prefix(), &[&[0xdd][..], &huge].concat())),
        // ...and one real item, an Entries whose entry list claims 2^32 - 1 elements.
        (
            "array32 entries",
            with(
                step_prefix(),
                &[&[0x91, 0x81, 0xa7][..], b"Entries", &[0x91, 0xdd], &huge].concat(),
            ),
        ),
        // A Want whose key list claims 65,535 elements in a dozen bytes.
        (
            "array16 keys",
            with(
                step_prefix(),
                &[&[0x91, 0x81, 0xa4][..], b"Want", &[0x91, 0xdc, 0xff, 0xff]].concat(),
            ),
        ),
        // The envelope itself as a map of 4 billion pairs.
        ("map32 envelope", [&[wire::VERSION, 0xdf][..], &huge].concat()),
        // The ClientRequest struct given as a map of 4 billion fields.
        ("map32 request", [&[wire::VERSION, 0x81, 0xa7][..], b"Request", &[0xdf], &huge].concat()),
        // The Get's fields as a map32.
        (
            "map32 get",
            with(get_prefix()[..get_prefix().len() - 1].to_vec(), &[&[0xdf][..], &huge].concat()),
        ),
        // An ext 32 of 4 GiB where the op should be.
        (
            "ext32",
            [&[wire::VERSION, 0x81, 0xa7][..], b"Request", &[0x92, 0x01, 0xc9], &huge, &[0x01]]
                .concat(),
        ),
        // A length field cut off mid-way.
        ("cut length", with(get_prefix(), &[0xa1, b'c', 0xc6, 0xff])),
    ];
    // Unknown struct fields are skipped by serde without a type, so their nesting is
    // not bounded by the message types: nest 100,000 arrays (and, separately, maps) in
    // one. The decoder must refuse the depth, not overflow its stack.
    for (label, level) in [("deep arrays", &[0x91u8][..]), ("deep maps", &[0x81, 0xc0][..])] {
        let mut deep = vec![wire::VERSION, 0x81, 0xa7];
        deep.extend_from_slice(b"Request");
        deep.extend_from_slice(&[0x82, 0xa2, b'i', b'd', 0x01, 0xa1, b'x']);
        for _ in 0..100_000 {
            deep.extend_from_slice(level);
        }
        deep.push(0xc0);
        cases.push((label, deep));
    }
    cases
}

#[test]
fn declared_lengths_do_not_allocate() {
    for (name, frame) in hostile_frames() {
        let (got, largest) = largest_allocation(|| wire::decode(&frame));
        assert!(
            matches!(got, Err(WireError::Malformed(_))),
            "{name}: expected a malformed-frame error, got {got:?}"
        );
        // The reader's and the error message's small buffers only.
        assert!(
            largest <= 4096,
            "{name}: allocated {largest} bytes for a {}-byte frame",
            frame.len()
        );
    }
}

#[test]
fn declared_lengths_are_refused_in_every_position() {
    // Replace each byte of valid frames, one at a time, by a 4 GiB length marker: the
    // decoder must refuse (or accept a real message) without a large allocation.
    let msgs = [
        sample(),
        Message::Sync(SyncMessage {
            session: 7,
            body: SyncBody::Step {
                items: vec![
                    SyncItem::Want {
                        keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
                    },
                    SyncItem::Entries {
                        entries: vec![(
                            Bytes::from_static(b"k"),
                            Entry::value("v", Timestamp(9), NodeId(3)),
                        )],
                    },
                ],
            },
        }),
    ];
    for msg in msgs {
        let frame = wire::encode(&msg).unwrap();
        for at in 1..frame.len() {
            for marker in [0xc6u8, 0xc9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf] {
                let mut f = frame[..at].to_vec();
                f.push(marker);
                f.extend_from_slice(&[0xff; 4]);
                f.extend_from_slice(&frame[at + 1..]);
                let (got, largest) = largest_allocation(|| wire::decode(&f));
                assert!(got.is_err(), "marker {marker:#x} at {at} decoded: {got:?}");
                assert!(largest <= 4096, "marker {marker:#x} at {at}: allocated {largest} bytes");
            }
        }
    }
}

#[test]
fn the_deepest_real_messages_still_decode() {
    // The most deeply nested message the protocol has: entries inside a sync step.
    let msg = Message::Sync(SyncMessage {
        session: u64::MAX,
        body: SyncBody::Step {
            items: vec![
                SyncItem::Entries {
                    entries: vec![(
                        Bytes::from_static(b"k"),
                        Entry::value("v", Timestamp::MAX, NodeId(u64::MAX)).with_expiry(Some(1)),
                    )],
                },
                SyncItem::Versions {
                    node: NodeRef { level: 32, prefix: u64::MAX },
                    versions: vec![(Bytes::new(), Version::default())],
                },
            ],
        },
    });
    assert_eq!(wire::decode(&wire::encode(&msg).unwrap()), Ok(msg));
}
