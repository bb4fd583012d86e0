//! The client protocol: requests a client sends to any node, and the node's answers.
//!
//! A client sends [`ClientRequest`]s, each with an id of its choosing, over one
//! connection (WebSocket, or the HTTP routes, which a host translates into these). The
//! node that receives a request coordinates it — routes it to the key's replicas and
//! waits for the requested [`Consistency`] — and answers with one [`ClientResponse`]
//! carrying the same id. Requests may be pipelined; responses can arrive in any order,
//! so the id is what pairs them.
//!
//! Watches are the one exception to "one request, one response": a [`Op::Watch`] is
//! answered by [`Reply::Ok`] and then by a [`Reply::Event`] for every change, all
//! tagged with the watch request's id, until the client sends [`Op::Unwatch`] naming
//! that id (or disconnects). A [`Reply::Error`] with the watch's id after the `Ok` ends
//! the watch: the node could no longer promise every change (code
//! [`ErrorCode::Unavailable`]); the client re-syncs and watches again.
//!
//! A client that keeps a local copy of a collection (a [`crate::replica::Replica`])
//! refreshes it with [`Op::Sync`]: the Merkle sync protocol of [`crate::sync`], with the
//! client as the initiator and pulling only, the node answering and never taking
//! entries. After a reconnect a client watches first, then syncs every ring interval
//! with one of its replicas, applying events as they come: nothing is missed (see
//! `docs/node.md`, "Watch").
//!
//! A missing key is not an error: [`Op::Get`] answers [`Reply::Value`] with no value
//! (a host maps that to HTTP 404). Errors carry an [`ErrorCode`], which each host maps to
//! its own error shape (HTTP status via [`ErrorCode::http_status`], Python exception, JS
//! error) in one place, and a sentence a person can act on.
//!
//! Keys and values are raw bytes ([`Bytes`], MessagePack `bin` on the wire); collection
//! names are strings, [`DEFAULT_COLLECTION`] when a client names none.
//!
//! The requests and replies are here; what a node reports of itself ([`NodeStats`] and
//! its parts) is in `stats`, the error codes in `error`, consistency levels in
//! `consistency`.

mod consistency;
mod error;
mod stats;

pub use consistency::{Consistency, ConsistencyError, ParseConsistencyError};
pub use error::ErrorCode;
pub use stats::{
    ClockStats, CollectionLayout, CollectionView, LayoutsInUse, MemberCounts, NodeStats, Progress,
    RingMember, SyncStats,
};

use crate::{
    auth::{BearerToken, Role, TokenInfo},
    catalogue::{CollectionSettings, SettingsChange},
    clock::Timestamp,
    entry::NodeId,
    proto::SyncMessage,
    Millis,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The collection used when a request names none (`GET /:key`, `set KEY VALUE`).
pub const DEFAULT_COLLECTION: &str = "default";

/// The frames of the client protocol alone: [`Message`](super::Message) restricted to
/// its `Request` and `Response` variants, and encoded exactly as they are. A client
/// encodes and decodes its frames as this type, so a client build carries no code for
/// the peer protocols (in the WebAssembly light peer, most of the module's size); a
/// peer message fails to decode as one, with a typed error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// [`Message::Request`](super::Message::Request).
    Request(ClientRequest),
    /// [`Message::Response`](super::Message::Response).
    Response(ClientResponse),
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    /// The client's id for this request, echoed in the response (and, for a watch, in
    /// every event it delivers). Unique among the client's requests in flight.
    pub id: u64,
    /// What the client asks for.
    pub op: Op,
    /// The newest timestamp the client has seen in a reply (see
    /// [`ClientResponse::ts`]), from any node. The coordinator adopts it into its clock
    /// before it stamps anything, so the client's next write is stamped above everything
    /// it saw; one further ahead of the node's clock than the max offset is refused
    /// (`invalid_input`). Omitted from the frame when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Timestamp>,
}

/// An operation a client can request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Read one key. Answered by [`Reply::Value`] (with no value when the key is
    /// missing or deleted).
    Get {
        /// The collection holding the key.
        collection: String,
        /// The key.
        key: Bytes,
        /// How many replicas must answer before the node replies.
        consistency: Consistency,
    },
    /// Write one key. Answered by [`Reply::Written`] once enough replicas stored it.
    Set {
        /// The collection to write to (created on first write).
        collection: String,
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// How many replicas must acknowledge before the node replies.
        consistency: Consistency,
        /// Time to live in milliseconds from the write; `None` keeps the value until it
        /// is overwritten or deleted.
        ttl_ms: Option<u64>,
    },
    /// Delete one key (leaves a tombstone). Answered by [`Reply::Written`], also when
    /// the key did not exist.
    Del {
        /// The collection holding the key.
        collection: String,
        /// The key.
        key: Bytes,
        /// How many replicas must acknowledge before the node replies.
        consistency: Consistency,
    },
    /// Read several keys of one collection. Answered by [`Reply::Values`], one value
    /// per requested key, in request order.
    GetMany {
        /// The collection holding the keys.
        collection: String,
        /// The keys, in the order the answer lists them.
        keys: Vec<Bytes>,
        /// How many replicas must answer for each key.
        consistency: Consistency,
    },
    /// Write several keys of one collection. Answered by [`Reply::Written`] once every
    /// item reached the requested consistency; all items share one timestamp. It is not
    /// a transaction: on an error, some items may have been written.
    SetMany {
        /// The collection to write to.
        collection: String,
        /// The `(key, value)` pairs to write.
        items: Vec<(Bytes, Bytes)>,
        /// How many replicas must acknowledge each item.
        consistency: Consistency,
        /// Time to live in milliseconds for every item; `None` for no expiry.
        ttl_ms: Option<u64>,
    },
    /// Read a page of live entries of a collection. Answered by [`Reply::Page`].
    ///
    /// Pages follow ring order: key order for ordered collections, hash order for
    /// hashed ones. Pass the previous page's cursor back to continue, until it is
    /// `None`; a page may hold fewer than `limit` items (even none) and still have a
    /// cursor. Each range of the ring is read at the requested consistency. See
    /// `docs/node.md` ("Scan").
    Scan {
        /// The collection to scan.
        collection: String,
        /// Where to continue: the opaque cursor of the previous [`Reply::Page`], or
        /// `None` to start at the beginning.
        cursor: Option<Bytes>,
        /// Only keys starting with these bytes; `None` for every key. Ordered
        /// collections read only the range such keys occupy; hashed collections walk
        /// the whole ring and filter.
        prefix: Option<Bytes>,
        /// Most entries in the page (a node may cap it lower; 0 means its default).
        limit: u32,
        /// How many replicas must answer for each range read.
        consistency: Consistency,
    },
    /// Subscribe to changes of a collection (optionally only keys with a prefix).
    /// Answered by [`Reply::Ok`] once every serving node has the subscription (or after
    /// the request timeout), then one [`Reply::Event`] per applied change, all with this
    /// request's id. Each change is delivered once, and the events of one key arrive in
    /// timestamp order. A [`Reply::Error`] with this id ends the watch (see the module
    /// docs).
    Watch {
        /// The collection to watch.
        collection: String,
        /// Only keys starting with these bytes; `None` for every key.
        prefix: Option<Bytes>,
    },
    /// End a subscription. Answered by [`Reply::Ok`], or a
    /// [`ErrorCode::NotFound`] error when no such watch is open.
    Unwatch {
        /// The id of the [`Op::Watch`] request that opened the subscription.
        watch: u64,
    },
    /// One message of a Merkle sync session between the client's local copy of a
    /// collection and the node's replica (see [`crate::sync`]). The client is the
    /// initiator — it opens with [`crate::proto::SyncBody::Begin`] and a session id of its
    /// choosing — and must not push entries ([`crate::sync::SyncConfig::pull_only`]):
    /// the node never merges what a client sends, and ends the session if it tries.
    /// The interval must be one the node replicates. Answered by [`Reply::Sync`] with
    /// the node's next message, by [`Reply::Ok`] when the client's message closed the
    /// session, or by an error, which also closes it.
    Sync {
        /// The client's message.
        msg: SyncMessage,
    },
    /// Counts and sizes of the answering node. Answered by [`Reply::Stats`].
    Stats,
    /// The ring as the answering node sees it. Answered by [`Reply::Ring`].
    Ring,
    /// Removes a member that is dead for good (admin only; see `node::remove`): the
    /// other owners of its ranges hand them to the nodes that inherit them, then the
    /// member is announced `Left`. Answered by [`Reply::Ok`] once the removal started
    /// (it goes on in the background; [`Op::Ring`] shows the member `dead` and
    /// `leaving` until it is `left`), or by an error: [`ErrorCode::NotFound`] for an
    /// unknown member, [`ErrorCode::InvalidInput`] for one that is not dead,
    /// [`ErrorCode::Unavailable`] while another change of the ring is under way.
    RemoveMember {
        /// The member's id.
        id: NodeId,
        /// Finish even if some of the other owners of its ranges are down too: writes
        /// that only the removed member and those owners held are then lost.
        #[serde(default)]
        force: bool,
    },
    /// Presents a token (see [`crate::auth`]): the first message of a WebSocket when the
    /// node requires tokens and the upgrade request carried no `Authorization: Bearer`.
    /// Answered by [`Reply::Ok`], or an [`ErrorCode::Unauthorized`] error (missing,
    /// malformed, unknown or revoked token); every later request of the connection is
    /// checked against the token's grant. The server answers it; a node never sees it.
    Auth {
        /// The token string (`dhrt_<id>_<secret>`, or the bootstrap admin token).
        token: BearerToken,
    },
    /// Creates a token (admin only). Answered by [`Reply::Token`], the one time the
    /// token string is shown.
    TokenCreate {
        /// What the token may do.
        role: Role,
        /// Collection names and `prefix*` patterns it covers; empty for all.
        collections: Vec<String>,
        /// Who or what it is for (at most [`crate::auth::MAX_NOTE`] bytes).
        note: String,
    },
    /// Lists every token, without secrets (admin only). Answered by [`Reply::Tokens`].
    TokenList,
    /// Revokes a token (admin only): it stops working on every node within seconds.
    /// Answered by [`Reply::Ok`], or [`ErrorCode::NotFound`] when no such token exists.
    TokenRevoke {
        /// The token's id (16 hex digits).
        id: String,
    },
    /// Gives a collection its settings (admin only; see [`crate::catalogue`]): written
    /// to the catalogue at quorum, on every member within a sync round. Answered by
    /// [`Reply::Collection`], or an [`ErrorCode::Conflict`] error when the collection
    /// has settings already (change them with [`Op::CollectionAlter`]). The server
    /// answers it; a node never sees it.
    CollectionCreate {
        /// The collection.
        collection: String,
        /// Its settings.
        settings: CollectionSettings,
    },
    /// Changes some settings of a collection (admin only); a collection without
    /// settings starts from the cluster's defaults. Answered by [`Reply::Collection`].
    /// The server answers it; a node never sees it.
    CollectionAlter {
        /// The collection.
        collection: String,
        /// What changes.
        change: SettingsChange,
    },
    /// A collection's settings and size. Answered by [`Reply::Collection`], or
    /// [`ErrorCode::NotFound`] when it has neither settings nor keys on the answering
    /// node. The server answers it; a node never sees it.
    CollectionShow {
        /// The collection.
        collection: String,
    },
    /// Every collection with settings or keys, by name. Answered by
    /// [`Reply::Collections`]. The server answers it; a node never sees it.
    CollectionList,
    /// Deletes every key of a collection and its settings (admin only). Not atomic:
    /// keys written while it runs may survive it, and running it again finishes the
    /// job. Answered by [`Reply::Dropped`]. The server answers it; a node never sees
    /// it.
    CollectionDrop {
        /// The collection.
        collection: String,
        /// The level each delete is acknowledged at.
        consistency: Consistency,
    },
}

impl Op {
    /// The collection the operation addresses, if it addresses one.
    pub fn collection(&self) -> Option<&str> {
        match self {
            Op::Get { collection, .. }
            | Op::Set { collection, .. }
            | Op::Del { collection, .. }
            | Op::GetMany { collection, .. }
            | Op::SetMany { collection, .. }
            | Op::Scan { collection, .. }
            | Op::Watch { collection, .. }
            | Op::CollectionCreate { collection, .. }
            | Op::CollectionAlter { collection, .. }
            | Op::CollectionShow { collection }
            | Op::CollectionDrop { collection, .. } => Some(collection),
            Op::Sync { msg } => match &msg.body {
                crate::proto::SyncBody::Begin { collection, .. } => Some(collection),
                _ => None,
            },
            Op::Unwatch { .. }
            | Op::Stats
            | Op::Ring
            | Op::RemoveMember { .. }
            | Op::Auth { .. }
            | Op::TokenCreate { .. }
            | Op::TokenList
            | Op::TokenRevoke { .. }
            | Op::CollectionList => None,
        }
    }

    /// Whether the operation changes data.
    pub fn is_write(&self) -> bool {
        matches!(self, Op::Set { .. } | Op::Del { .. } | Op::SetMany { .. })
    }
}

/// A node's answer to a [`ClientRequest`] (or an event of a watch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientResponse {
    /// The id of the request answered (for events, of the [`Op::Watch`] request).
    pub id: u64,
    /// The answer.
    pub result: Reply,
    /// The answering node's hybrid clock when the answer left: at or above the stamp of
    /// any write acknowledged and any entry read in it. Clients keep the newest they
    /// saw and pass it as [`ClientRequest::seen`]. Omitted from the frame when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<Timestamp>,
}

impl ClientResponse {
    /// An error answer to request `id`.
    pub fn error(id: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        let result = Reply::Error { code, message: message.into(), acked: None };
        ClientResponse { id, result, ts: None }
    }
}

/// What a node answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The answer to [`Op::Get`].
    Value {
        /// The value; `None` when the key is missing, deleted or expired.
        value: Option<Bytes>,
        /// The timestamp of the winning write (a delete's, when the key was deleted);
        /// `None` when no replica asked knows the key.
        ts: Option<Timestamp>,
        /// When the value expires (wall-clock milliseconds), if it has a time to live;
        /// `None` for a value without one, and whenever `value` is `None`. Omitted from
        /// the frame when `None`, so answers without it read as before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<Millis>,
    },
    /// The request succeeded and has nothing to report ([`Op::Watch`], [`Op::Unwatch`],
    /// an [`Op::Sync`] that closed its session).
    Ok,
    /// The answer to a write ([`Op::Set`], [`Op::Del`], [`Op::SetMany`]).
    Written {
        /// The timestamp the write was stamped with.
        ts: Timestamp,
    },
    /// The answer to [`Op::GetMany`].
    Values {
        /// One value per requested key, in request order; `None` for a key missing,
        /// deleted or expired.
        values: Vec<Option<Bytes>>,
    },
    /// The answer to [`Op::Scan`].
    Page {
        /// The live `(key, value)` pairs of the page, in ring order.
        items: Vec<(Bytes, Bytes)>,
        /// Pass this back in the next [`Op::Scan`] to continue; `None` when the scan
        /// reached the end.
        cursor: Option<Bytes>,
    },
    /// A change seen by a watch, pushed with the [`Op::Watch`] request's id.
    Event {
        /// The collection changed.
        collection: String,
        /// The key changed.
        key: Bytes,
        /// The new value; `None` when the key was deleted or expired.
        value: Option<Bytes>,
        /// The timestamp of the change (events of one key arrive in timestamp order).
        ts: Timestamp,
        /// The node that coordinated the write: with `ts`, `value` and `expires`, the
        /// exact entry the cluster stores, so a client's local copy matches its replicas
        /// digest for digest (and a later [`Op::Sync`] ships only what it missed).
        #[serde(default)]
        origin: NodeId,
        /// When the value expires (wall-clock milliseconds), if it has a TTL.
        #[serde(default)]
        expires: Option<Millis>,
    },
    /// The answer to [`Op::Sync`]: the node's next message of the session.
    Sync {
        /// The node's message.
        msg: SyncMessage,
    },
    /// The answer to [`Op::Stats`].
    Stats(Box<NodeStats>),
    /// The answer to [`Op::Ring`].
    Ring {
        /// Every member the node knows, in ring order of their first token.
        members: Vec<RingMember>,
    },
    /// The request failed.
    Error {
        /// What kind of failure, for programs.
        code: ErrorCode,
        /// What went wrong and what to do about it, for people.
        message: String,
        /// For writes and reads that did not reach their consistency: `(answered,
        /// required)` replicas. A write may have been stored by the replicas that
        /// answered.
        acked: Option<(u32, u32)>,
    },
    /// The answer to [`Op::TokenCreate`]: the new token, shown this once.
    Token {
        /// The token string to hand to the client.
        token: BearerToken,
        /// What was stored about it.
        info: TokenInfo,
    },
    /// The answer to [`Op::TokenList`].
    Tokens {
        /// Every token, ordered by id.
        tokens: Vec<TokenInfo>,
    },
    /// The answer to [`Op::CollectionCreate`], [`Op::CollectionAlter`] and
    /// [`Op::CollectionShow`].
    Collection(Box<CollectionView>),
    /// The answer to [`Op::CollectionList`].
    Collections {
        /// Every collection with settings or keys, by name.
        collections: Vec<CollectionView>,
    },
    /// The answer to [`Op::CollectionDrop`].
    Dropped {
        /// How many keys were deleted.
        deleted: u64,
    },
}

/// An answer unpacked by the operation that asked for it. Each gives the answer back
/// whole (`Err`) when it is not of the kind expected — an error, as a rule — for the
/// caller to turn into its own error type (the client's, the HTTP API's).
impl Reply {
    /// A [`Reply::Value`]: the value (`None`: missing, deleted or expired) and the
    /// timestamp of the write that decided it.
    pub fn into_value(self) -> Result<(Option<Bytes>, Option<Timestamp>), Reply> {
        match self {
            Reply::Value { value, ts, .. } => Ok((value, ts)),
            other => Err(other),
        }
    }

    /// A [`Reply::Values`]: one value per key asked, in order.
    pub fn into_values(self) -> Result<Vec<Option<Bytes>>, Reply> {
        match self {
            Reply::Values { values } => Ok(values),
            other => Err(other),
        }
    }

    /// A [`Reply::Page`]: the items and the cursor to go on from.
    #[allow(clippy::type_complexity)]
    pub fn into_page(self) -> Result<(Vec<(Bytes, Bytes)>, Option<Bytes>), Reply> {
        match self {
            Reply::Page { items, cursor } => Ok((items, cursor)),
            other => Err(other),
        }
    }

    /// A [`Reply::Written`]: the write's timestamp.
    pub fn into_written(self) -> Result<Timestamp, Reply> {
        match self {
            Reply::Written { ts } => Ok(ts),
            other => Err(other),
        }
    }

    /// A [`Reply::Ok`].
    pub fn into_ok(self) -> Result<(), Reply> {
        match self {
            Reply::Ok => Ok(()),
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_named_levels_in_any_case() {
        for (s, c) in [
            ("one", Consistency::One),
            ("ONE", Consistency::One),
            ("quorum", Consistency::Quorum),
            ("Quorum", Consistency::Quorum),
            ("default", Consistency::Default),
            ("all", Consistency::All),
            ("0", Consistency::N(0)),
            ("1", Consistency::N(1)),
            ("3", Consistency::N(3)),
            ("255", Consistency::N(255)),
            ("007", Consistency::N(7)),
        ] {
            assert_eq!(s.parse::<Consistency>(), Ok(c), "{s}");
        }
    }

    #[test]
    fn refuses_everything_else_with_a_typed_error() {
        for s in ["", "256", "-1", "+2", " one", "one ", "majority", "2.0", "1e2", "٣"] {
            let err = s.parse::<Consistency>().unwrap_err();
            assert_eq!(err.input, s, "{s:?}");
            assert!(err.to_string().contains("quorum"), "the message says what to use");
        }
        let long = "x".repeat(1000);
        assert_eq!(long.parse::<Consistency>().unwrap_err().input.len(), 32);
    }

    #[test]
    fn displays_what_it_parses() {
        assert_eq!(Consistency::One.to_string(), "one");
        assert_eq!(Consistency::Quorum.to_string(), "quorum");
        assert_eq!(Consistency::All.to_string(), "all");
        assert_eq!(Consistency::N(2).to_string(), "2");
        assert_eq!(Consistency::Default.to_string(), "default");
        assert_eq!(Consistency::default(), Consistency::Default);
    }

    #[test]
    fn default_resolves_to_the_configured_level_else_quorum() {
        assert_eq!(Consistency::Default.resolve(Consistency::All), Consistency::All);
        assert_eq!(Consistency::Default.resolve(Consistency::Default), Consistency::Quorum);
        assert_eq!(Consistency::One.resolve(Consistency::All), Consistency::One);
        assert_eq!(Consistency::Default.required(3), Ok(2));
    }

    #[test]
    fn required_replicas() {
        assert_eq!(Consistency::One.required(3), Ok(1));
        assert_eq!(Consistency::Quorum.required(1), Ok(1));
        assert_eq!(Consistency::Quorum.required(2), Ok(2));
        assert_eq!(Consistency::Quorum.required(3), Ok(2));
        assert_eq!(Consistency::Quorum.required(4), Ok(3));
        assert_eq!(Consistency::Quorum.required(5), Ok(3));
        assert_eq!(Consistency::All.required(5), Ok(5));
        assert_eq!(Consistency::N(1).required(3), Ok(1));
        assert_eq!(Consistency::N(3).required(3), Ok(3));
        assert_eq!(
            Consistency::N(4).required(3),
            Err(ConsistencyError::OutOfRange { requested: 4, replicas: 3 })
        );
        assert_eq!(
            Consistency::N(0).required(3),
            Err(ConsistencyError::OutOfRange { requested: 0, replicas: 3 })
        );
        for c in [Consistency::One, Consistency::Quorum, Consistency::All, Consistency::N(1)] {
            assert_eq!(c.required(0), Err(ConsistencyError::NoReplicas));
        }
        assert!(Consistency::N(4).required(3).unwrap_err().to_string().contains("1 to 3"));
    }

    #[test]
    fn error_codes_map_to_http_statuses() {
        let all = [
            (ErrorCode::NotFound, 404, "not_found"),
            (ErrorCode::InvalidInput, 400, "invalid_input"),
            (ErrorCode::TooLarge, 413, "too_large"),
            (ErrorCode::QuorumNotReached, 503, "quorum_not_reached"),
            (ErrorCode::Timeout, 504, "timeout"),
            (ErrorCode::Unavailable, 503, "unavailable"),
            (ErrorCode::Unsupported, 400, "unsupported"),
            (ErrorCode::Internal, 500, "internal"),
            (ErrorCode::Unauthorized, 401, "unauthorized"),
            (ErrorCode::Forbidden, 403, "forbidden"),
            (ErrorCode::StorageFull, 507, "storage_full"),
            (ErrorCode::Conflict, 409, "conflict"),
            (ErrorCode::QuotaExceeded, 507, "quota_exceeded"),
        ];
        assert_eq!(all.map(|(c, ..)| c), ErrorCode::ALL);
        for (code, status, name) in all {
            assert_eq!(code.http_status(), status, "{code:?}");
            assert_eq!(code.to_string(), name);
            // The serde name is the stable name too, in JSON and on the wire.
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(name));
            assert_eq!(serde_json::from_value::<ErrorCode>(name.into()).unwrap(), code);
            let bytes = rmp_serde::to_vec(&code).unwrap();
            assert_eq!(rmp_serde::from_slice::<ErrorCode>(&bytes).unwrap(), code);
            assert_eq!(ErrorCode::from_name(name), Some(code));
        }
    }

    #[test]
    fn an_unknown_error_code_reads_as_internal() {
        // A code added by a newer node still delivers its reply and message.
        let bytes = rmp_serde::to_vec(&"disk_on_fire").unwrap();
        assert_eq!(rmp_serde::from_slice::<ErrorCode>(&bytes).unwrap(), ErrorCode::Internal);
        let reply: Reply = serde_json::from_value(serde_json::json!(
            {"Error": {"code": "disk_on_fire", "message": "m", "acked": null}}
        ))
        .unwrap();
        assert!(matches!(reply, Reply::Error { code: ErrorCode::Internal, .. }), "{reply:?}");
        assert_eq!(ErrorCode::from_name("disk_on_fire"), None);
    }

    #[test]
    fn consistency_travels_as_its_text() {
        assert_eq!(serde_json::to_value(Consistency::N(3)).unwrap(), serde_json::json!("3"));
        assert_eq!(
            serde_json::from_value::<Consistency>(serde_json::json!("all")).unwrap(),
            Consistency::All
        );
        assert!(serde_json::from_value::<Consistency>(serde_json::json!("most")).is_err());
        // Every value survives the wire, also those `required` refuses.
        let zero = rmp_serde::to_vec(&Consistency::N(0)).unwrap();
        assert_eq!(rmp_serde::from_slice::<Consistency>(&zero).unwrap(), Consistency::N(0));
        let bytes = rmp_serde::to_vec(&Consistency::Quorum).unwrap();
        assert_eq!(rmp_serde::from_slice::<Consistency>(&bytes).unwrap(), Consistency::Quorum);
    }

    #[test]
    fn ops_name_their_collection() {
        let get = Op::Get {
            collection: DEFAULT_COLLECTION.into(),
            key: Bytes::from_static(b"k"),
            consistency: Consistency::default(),
        };
        assert_eq!(get.collection(), Some("default"));
        assert!(!get.is_write());
        assert_eq!(Op::Unwatch { watch: 1 }.collection(), None);
        assert!(Op::Del {
            collection: "c".into(),
            key: Bytes::new(),
            consistency: Consistency::One
        }
        .is_write());
        let e = ClientResponse::error(9, ErrorCode::Timeout, "slow");
        assert_eq!(
            e.result,
            Reply::Error { code: ErrorCode::Timeout, message: "slow".into(), acked: None }
        );
    }

    #[test]
    fn client_messages_are_encoded_as_messages_are() {
        use crate::{proto::Message, wire};
        let req = ClientRequest { id: 9, op: Op::Stats, seen: None };
        let resp = ClientResponse { id: 9, result: Reply::Written { ts: Timestamp(77) }, ts: None };
        let a = wire::encode(&Message::Request(req.clone())).unwrap();
        let b = wire::encode_with_limit(&ClientMessage::Request(req.clone()), usize::MAX).unwrap();
        assert_eq!(a, b);
        let frame = wire::encode(&Message::Response(resp.clone())).unwrap();
        assert_eq!(
            wire::decode_with_limit::<ClientMessage>(&frame, usize::MAX),
            Ok(ClientMessage::Response(resp))
        );
        let peer = wire::encode(&Message::Sync(crate::proto::SyncMessage {
            session: 1,
            body: crate::proto::SyncBody::Done,
        }))
        .unwrap();
        assert!(wire::decode_with_limit::<ClientMessage>(&peer, usize::MAX).is_err());
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(n: u8, pick in 0u8..4) {
            let c = match pick {
                0 => Consistency::One,
                1 => Consistency::Quorum,
                2 => Consistency::All,
                _ => Consistency::N(n),
            };
            prop_assert_eq!(c.to_string().parse::<Consistency>(), Ok(c));
        }

        #[test]
        fn a_level_is_on_the_wire_as_its_text(n: u8, pick in 0u8..5) {
            let c = match pick {
                0 => Consistency::One,
                1 => Consistency::Quorum,
                2 => Consistency::All,
                3 => Consistency::Default,
                _ => Consistency::N(n),
            };
            let bytes = rmp_serde::to_vec(&c).unwrap();
            prop_assert_eq!(&bytes, &rmp_serde::to_vec(&c.to_string()).unwrap());
            prop_assert_eq!(rmp_serde::from_slice::<Consistency>(&bytes).unwrap(), c);
            prop_assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(c.to_string()));
        }

        #[test]
        fn parse_never_panics(s in ".{0,12}") {
            if let Ok(c) = s.parse::<Consistency>() {
                prop_assert_eq!(c.to_string().parse::<Consistency>(), Ok(c));
            }
        }

        #[test]
        fn required_is_within_the_replicas(n: u8, replicas in 0usize..300, pick in 0u8..4) {
            let c = match pick {
                0 => Consistency::One,
                1 => Consistency::Quorum,
                2 => Consistency::All,
                _ => Consistency::N(n),
            };
            match c.required(replicas) {
                Ok(k) => prop_assert!(k >= 1 && k <= replicas),
                Err(ConsistencyError::NoReplicas) => prop_assert_eq!(replicas, 0),
                Err(ConsistencyError::OutOfRange { requested, .. }) => {
                    prop_assert!(requested == 0 || usize::from(requested) > replicas)
                }
            }
        }
    }
}
