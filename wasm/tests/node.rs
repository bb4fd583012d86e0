//! The JavaScript face of `dhrt-wasm`, run in Node by `wasm-bindgen-test-runner`
//! (`scripts/test-wasm.sh`): the shapes of outputs and answers, `BigInt` timestamps, and
//! a request's way through the peer — out as a frame, answered by a frame the test
//! writes as a node would, back as a `reply`.

#![cfg(target_arch = "wasm32")]

use bytes::Bytes;
use dhrt_core::{
    clock::Timestamp,
    proto::{
        client::{ClientMessage, ErrorCode, Op, Reply},
        ClientRequest, ClientResponse, Message,
    },
    wire,
};
use dhrt_wasm::{convert::field, decode_response, encode_request, hashed_position, Peer};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

const SEED: &str = "127.0.0.1:7453";

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).unwrap();
    }
    o.into()
}

fn text(v: &str) -> JsValue {
    JsValue::from_str(v)
}

fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

fn str_field(v: &JsValue, name: &str) -> String {
    field(v, name).as_string().unwrap_or_else(|| panic!("{name} is not a string"))
}

fn outputs(peer: &mut Peer) -> Vec<JsValue> {
    peer.poll_outputs().iter().collect()
}

/// The request a `send` output carries.
fn sent_request(out: &JsValue) -> ClientRequest {
    assert_eq!(str_field(out, "type"), "send");
    let frame: Uint8Array = field(out, "frame").dyn_into().expect("frame is a Uint8Array");
    match wire::decode_with_limit(&frame.to_vec(), wire::DEFAULT_MAX_FRAME) {
        Ok(ClientMessage::Request(req)) => req,
        other => panic!("not a request: {other:?}"),
    }
}

fn answer(id: u64, result: Reply) -> Vec<u8> {
    wire::encode(&Message::Response(ClientResponse { id, result, ts: None })).unwrap()
}

#[wasm_bindgen_test]
fn start_asks_the_seed_for_the_ring_and_the_stats() {
    let mut peer = Peer::new(vec![SEED.into()], JsValue::UNDEFINED).unwrap();
    peer.start(1_000.0);
    let outs = outputs(&mut peer);
    assert_eq!(outs.len(), 2);
    for out in &outs {
        assert_eq!(str_field(out, "addr"), SEED);
    }
    let ring = sent_request(&outs[0]);
    let ring_members = vec![dhrt_core::proto::client::RingMember {
        id: dhrt_core::NodeId(u64::MAX),
        addr: SEED.into(),
        tokens: vec![1, 1 << 63],
        status: "alive".into(),
        joining: false,
        leaving: false,
        labels: Default::default(),
    }];
    peer.handle_frame(1_001.0, SEED, &answer(ring.id, Reply::Ring { members: ring_members }));
    let outs = outputs(&mut peer);
    assert_eq!(str_field(&outs[0], "type"), "ringChanged");
    let view = peer.ring();
    let members: Array = field(&view, "members").dyn_into().unwrap();
    let m = members.get(0);
    assert_eq!(str_field(&m, "id"), u64::MAX.to_string(), "ids stay exact as strings");
    assert_eq!(field(&m, "share").as_f64(), Some(1.0));
    assert_eq!(field(&m, "joining").as_bool(), Some(false));
    assert_eq!(field(&m, "leaving").as_bool(), Some(false));
    assert_eq!(peer.route("users", b"alice"), vec![SEED.to_string()]);
}

#[wasm_bindgen_test]
fn a_get_goes_out_as_a_frame_and_its_answer_comes_back_with_a_bigint_timestamp() {
    let mut peer =
        Peer::new(vec![SEED.into()], obj(&[("replicas", JsValue::from_f64(1.0))])).unwrap();
    let op = obj(&[("op", text("get")), ("collection", text("users")), ("key", bytes(b"ada"))]);
    let handle = peer.call(5.0, op).unwrap();
    let out = outputs(&mut peer).remove(0);
    let req = sent_request(&out);
    let ts = Timestamp(0x018b_cfe5_6800_0003);
    let reply = Reply::Value { value: Some(Bytes::from("lovelace")), ts: Some(ts), expires: None };
    peer.handle_frame(6.0, SEED, &answer(req.id, reply));
    let out = outputs(&mut peer).remove(0);
    assert_eq!(str_field(&out, "type"), "reply");
    assert_eq!(field(&out, "handle").as_f64(), Some(handle));
    let reply = field(&out, "reply");
    assert_eq!(str_field(&reply, "kind"), "value");
    let value: Uint8Array = field(&reply, "value").dyn_into().unwrap();
    assert_eq!(value.to_vec(), b"lovelace");
    let ts_js = field(&reply, "ts");
    assert!(ts_js.is_bigint(), "timestamps are BigInts");
    assert_eq!(u64::try_from(ts_js).unwrap(), ts.0);
}

#[wasm_bindgen_test]
fn malformed_requests_throw_with_a_sentence() {
    let mut peer = Peer::new(vec![SEED.into()], JsValue::UNDEFINED).unwrap();
    for (op, says) in [
        (obj(&[("op", text("fly"))]), "unknown op"),
        (obj(&[("op", text("get")), ("collection", text("c")), ("key", text("k"))]), "Uint8Array"),
        (
            obj(&[
                ("op", text("get")),
                ("collection", text("c")),
                ("key", bytes(b"k")),
                ("consistency", text("most")),
            ]),
            "quorum",
        ),
        (text("get"), "object"),
    ] {
        let err: JsValue = peer.call(1.0, op).unwrap_err().into();
        let message = field(&err, "message").as_string().unwrap();
        assert!(message.contains(says), "{message}");
    }
    assert!(Peer::new(vec![], obj(&[("replicas", text("three"))])).is_err());
}

#[wasm_bindgen_test]
fn an_unreachable_seed_is_reported() {
    let mut peer = Peer::new(vec![SEED.into()], JsValue::UNDEFINED).unwrap();
    peer.start(1.0);
    outputs(&mut peer);
    peer.disconnected(2.0, SEED);
    let outs = outputs(&mut peer);
    let unreachable = outs.iter().find(|o| str_field(o, "type") == "unreachable").unwrap();
    assert!(str_field(unreachable, "message").contains(SEED));
}

#[wasm_bindgen_test]
fn frames_encode_and_decode_in_the_shapes_the_package_uses() {
    let op = obj(&[
        ("op", text("setMany")),
        ("collection", text("c")),
        (
            "items",
            Array::of2(
                &Array::of2(&bytes(b"k"), &bytes(b"v")),
                &Array::of2(&bytes(b"k2"), &bytes(b"v2")),
            )
            .into(),
        ),
        ("ttlMs", JsValue::from_f64(1000.0)),
    ]);
    let frame = encode_request(9.0, op).unwrap();
    let decoded = wire::decode(&frame).unwrap();
    let Message::Request(ClientRequest {
        id: 9,
        op: dhrt_core::proto::client::Op::SetMany { items, ttl_ms, .. },
        ..
    }) = decoded
    else {
        panic!("{decoded:?}")
    };
    assert_eq!(items.len(), 2);
    assert_eq!(ttl_ms, Some(1000));
    let err =
        Reply::Error { code: ErrorCode::Timeout, message: "slow".into(), acked: Some((1, 2)) };
    let resp = decode_response(&answer(4, err)).unwrap();
    let reply = field(&resp, "reply");
    assert_eq!(str_field(&reply, "code"), "timeout");
    let acked: Array = field(&reply, "acked").dyn_into().unwrap();
    assert_eq!((acked.get(0).as_f64(), acked.get(1).as_f64()), (Some(1.0), Some(2.0)));
    assert_eq!(hashed_position("users", b"alice"), 0x842b_5888_779e_2fb0);
}

#[wasm_bindgen_test]
fn a_token_is_presented_first_and_a_refused_start_says_why() {
    let options = obj(&[("token", text("dhrt_secret"))]);
    let mut peer = Peer::new(vec![SEED.into()], options).unwrap();
    peer.start(1.0);
    let outs = outputs(&mut peer);
    let auth = sent_request(&outs[0]);
    let Op::Auth { token } = &auth.op else { panic!("Auth first, not {:?}", auth.op) };
    assert_eq!(token.0, "dhrt_secret");
    let ring = sent_request(&outs[1]);
    assert!(matches!(ring.op, Op::Ring), "{:?}", ring.op);
    let refused = Reply::Error {
        code: ErrorCode::Unauthorized,
        message: "the token presented is unknown or revoked".into(),
        acked: None,
    };
    peer.handle_frame(2.0, SEED, &answer(auth.id, refused));
    let no_token =
        Reply::Error { code: ErrorCode::Unauthorized, message: "no token".into(), acked: None };
    peer.handle_frame(2.0, SEED, &answer(ring.id, no_token));
    let outs = outputs(&mut peer);
    let out = outs.iter().find(|o| str_field(o, "type") == "refused").expect("refused");
    assert_eq!(str_field(out, "code"), "unauthorized");
    assert_eq!(str_field(out, "message"), "the token presented is unknown or revoked");
    // Without a token nothing is presented.
    let mut plain = Peer::new(vec![SEED.into()], obj(&[("token", text(""))])).unwrap();
    plain.start(1.0);
    assert!(matches!(sent_request(&outputs(&mut plain)[0]).op, Op::Ring));
}

#[wasm_bindgen_test]
fn collection_requests_and_answers_take_the_package_shapes() {
    use dhrt_core::{
        catalogue::{CollectionSettings, SettingsChange},
        proto::client::{CollectionView, Consistency},
    };
    let op_of = |op: JsValue| -> Op {
        match wire::decode(&encode_request(1.0, op).unwrap()).unwrap() {
            Message::Request(ClientRequest { op, .. }) => op,
            other => panic!("not a request: {other:?}"),
        }
    };
    let settings = obj(&[
        ("consistency", text("all")),
        ("ttlMs", JsValue::from_f64(60_000.0)),
        ("maxKeys", JsValue::NULL),
    ]);
    let create = op_of(obj(&[
        ("op", text("collectionCreate")),
        ("collection", text("events")),
        ("settings", settings),
    ]));
    let want = CollectionSettings {
        consistency: Some(Consistency::All),
        ttl_ms: Some(60_000),
        ..Default::default()
    };
    assert_eq!(create, Op::CollectionCreate { collection: "events".into(), settings: want });
    // In a change, null resets a setting and a missing (or undefined) one stays.
    let change = obj(&[
        ("ttlMs", JsValue::NULL),
        ("maxBytes", JsValue::from_f64(1024.0)),
        ("consistency", JsValue::UNDEFINED),
    ]);
    let alter = op_of(obj(&[
        ("op", text("collectionAlter")),
        ("collection", text("events")),
        ("changes", change),
    ]));
    let want =
        SettingsChange { ttl_ms: Some(None), max_bytes: Some(Some(1024)), ..Default::default() };
    assert_eq!(alter, Op::CollectionAlter { collection: "events".into(), change: want });
    assert_eq!(op_of(obj(&[("op", text("collectionList"))])), Op::CollectionList);
    assert_eq!(
        op_of(obj(&[("op", text("collectionDrop")), ("collection", text("events"))])),
        Op::CollectionDrop { collection: "events".into(), consistency: Consistency::Default }
    );
    for (change, says) in [
        (obj(&[("ttl", JsValue::from_f64(5.0))]), "unknown setting \"ttl\""),
        (obj(&[("maxKeys", JsValue::from_f64(1.5))]), "whole number"),
        (obj(&[("maxKeys", text("10"))]), "must be a number"),
        (obj(&[("consistency", text("most"))]), "quorum"),
        (obj(&[("ttlMs", JsValue::from_f64(0.0))]), "ttlMs"),
        (text("all"), "must be an object"),
        (JsValue::UNDEFINED, "must be an object"),
    ] {
        let op =
            obj(&[("op", text("collectionAlter")), ("collection", text("c")), ("changes", change)]);
        let err: JsValue = encode_request(1.0, op).unwrap_err().into();
        let message = field(&err, "message").as_string().unwrap();
        assert!(message.contains(says), "{says:?} in {message}");
    }

    let view = CollectionView {
        name: "events".into(),
        defined: true,
        settings: CollectionSettings { max_keys: Some(10), ..Default::default() },
        placement: "hashed".into(),
        replicas: 3,
        keys: 4,
        bytes: 40,
        layout: Default::default(),
    };
    let resp = decode_response(&answer(2, Reply::Collection(Box::new(view.clone())))).unwrap();
    let reply = field(&resp, "reply");
    assert_eq!(str_field(&reply, "kind"), "collection");
    let c = field(&reply, "collection");
    assert_eq!(str_field(&c, "name"), "events");
    assert_eq!(field(&c, "defined").as_bool(), Some(true));
    assert_eq!(str_field(&c, "placement"), "hashed");
    assert_eq!(field(&c, "replicas").as_f64(), Some(3.0));
    assert_eq!((field(&c, "keys").as_f64(), field(&c, "bytes").as_f64()), (Some(4.0), Some(40.0)));
    let s = field(&c, "settings");
    assert_eq!(field(&s, "maxKeys").as_f64(), Some(10.0));
    for unset in ["consistency", "ttlMs", "maxBytes", "replicas", "zoneLabel"] {
        assert!(field(&s, unset).is_null(), "{unset} at the default is null");
    }
    assert_eq!(Object::keys(&field(&s, "select").dyn_into::<Object>().unwrap()).length(), 0);
    let layout = field(&c, "layout");
    assert!(field(&layout, "moving").is_null(), "no move");
    let current = field(&layout, "current");
    assert!(field(&current, "replicas").is_null() && field(&current, "zoneLabel").is_null());
    assert_eq!(Object::keys(&field(&current, "select").dyn_into::<Object>().unwrap()).length(), 0);
    // A layout asked for, and the move to it under way.
    {
        use dhrt_core::catalogue::{Layout, LayoutState, Move, MovePhase};
        let to = Layout {
            replicas: Some(2),
            select: [("disk".to_string(), "ssd".to_string())].into(),
            zone_label: Some("zone".into()),
        };
        let moving = CollectionView {
            settings: CollectionSettings {
                replicas: to.replicas,
                select: to.select.clone(),
                zone_label: to.zone_label.clone(),
                ..Default::default()
            },
            layout: LayoutState {
                current: Layout::default(),
                since: 0,
                moving: Some(Move {
                    to,
                    at: 1_700_000_000_000,
                    phase: MovePhase::Copying,
                    labels: Default::default(),
                }),
                labels: Default::default(),
            },
            ..view.clone()
        };
        let resp = decode_response(&answer(9, Reply::Collection(Box::new(moving)))).unwrap();
        let c = field(&field(&resp, "reply"), "collection");
        let s = field(&c, "settings");
        assert_eq!(field(&s, "replicas").as_f64(), Some(2.0));
        assert_eq!(str_field(&field(&s, "select"), "disk"), "ssd");
        assert_eq!(str_field(&s, "zoneLabel"), "zone");
        let m = field(&field(&c, "layout"), "moving");
        assert_eq!(str_field(&m, "phase"), "copying");
        assert_eq!(field(&m, "startedMs").as_f64(), Some(1_700_000_000_000.0));
        let to = field(&m, "to");
        assert_eq!(field(&to, "replicas").as_f64(), Some(2.0));
        assert_eq!(str_field(&field(&to, "select"), "disk"), "ssd");
        assert_eq!(str_field(&to, "zoneLabel"), "zone");
        assert!(field(&field(&field(&c, "layout"), "current"), "replicas").is_null());
        // The settings go back into an alter as they are.
        let op = obj(&[("op", text("collectionAlter")), ("collection", text("c")), ("changes", s)]);
        assert!(encode_request(1.0, op).is_ok());
    }
    let resp = decode_response(&answer(3, Reply::Collections { collections: vec![view] })).unwrap();
    let reply = field(&resp, "reply");
    assert_eq!(str_field(&reply, "kind"), "collections");
    let list: Array = field(&reply, "collections").dyn_into().unwrap();
    assert_eq!(list.length(), 1);
    assert_eq!(str_field(&list.get(0), "name"), "events");
    let resp = decode_response(&answer(4, Reply::Dropped { deleted: 7 })).unwrap();
    let reply = field(&resp, "reply");
    assert_eq!(str_field(&reply, "kind"), "dropped");
    assert_eq!(field(&reply, "deleted").as_f64(), Some(7.0));
    let quota = Reply::Error {
        code: ErrorCode::QuotaExceeded,
        message: "its quota is 10".into(),
        acked: None,
    };
    let resp = decode_response(&answer(5, quota)).unwrap();
    assert_eq!(str_field(&field(&resp, "reply"), "code"), "quota_exceeded");
}
