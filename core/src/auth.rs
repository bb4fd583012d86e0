//! Client tokens: who may do what, decided here once for every host.
//!
//! A client presents a token; the node hosting the connection looks it up (the server's
//! cache, in `native/src/server/auth.rs`) and gets a [`Grant`]: a [`Role`] and,
//! optionally, the collections it covers. Every request is then checked with
//! [`Grant::permits`] before it reaches the node:
//!
//! - `read`: [`Op::Get`], [`Op::GetMany`], [`Op::Scan`], [`Op::Watch`], [`Op::Unwatch`],
//!   [`Op::Sync`] (clients only pull);
//! - `write`: everything `read` may, plus [`Op::Set`], [`Op::Del`], [`Op::SetMany`];
//! - `admin`: everything, token management and dropping collections included.
//!
//! [`Op::Stats`] and [`Op::Ring`] name no collection and are allowed to every role.
//! A grant's collections are names (`users`) or prefixes written with a trailing `*`
//! (`logs.*` covers `logs.web` and `logs.db`, not `logs`); none means every collection.
//! An admin grant always covers every collection: an admin scoped to some collections
//! could mint itself an unscoped token anyway.
//!
//! Collections whose names start with [`RESERVED_PREFIX`] belong to the cluster itself:
//! [`TOKENS_COLLECTION`] holds the tokens. Client operations on them are refused whatever
//! the grant, admin included ([`check_reserved`]); only the token operations
//! ([`Op::TokenCreate`], [`Op::TokenList`], [`Op::TokenRevoke`]), which the server runs on
//! the client's behalf, touch them.
//!
//! A token is the string `dhrt_<id>_<secret>`: `id` 16 lowercase hex digits (8 random
//! bytes), `secret` 32 random bytes in unpadded base64url ([`format_token`],
//! [`parse_token`]). The cluster stores only a [`TokenRecord`] per id, in
//! [`TOKENS_COLLECTION`] under the id, holding the SHA-256 of the secret's text: a copy
//! of the data holds no usable token. Revoking a token deletes its record (a tombstone,
//! replicated like any delete). Hashing and randomness are the host's: this module is
//! pure.

use crate::proto::client::Op;
use crate::store::validate_collection;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// Collections starting with this belong to the cluster, not to clients.
pub const RESERVED_PREFIX: &str = "_dhrt.";
/// The collection holding the tokens: key = a token's id, value = its [`TokenRecord`].
pub const TOKENS_COLLECTION: &str = "_dhrt.tokens";
/// Most collection patterns one token may name.
pub const MAX_PATTERNS: usize = 64;
/// Longest note a token may carry, in bytes.
pub const MAX_NOTE: usize = 256;
/// Length of a token id: 16 hex digits.
pub const ID_LEN: usize = 16;
/// Length of a token secret: 32 bytes in unpadded base64url.
pub const SECRET_LEN: usize = 43;

/// Whether `collection` is reserved for the cluster ([`RESERVED_PREFIX`]).
pub fn is_reserved(collection: &str) -> bool {
    collection.starts_with(RESERVED_PREFIX)
}

/// Refuses an operation on a reserved collection, whoever asks.
pub fn check_reserved(op: &Op) -> Result<(), Denied> {
    match op.collection() {
        Some(c) if is_reserved(c) => Err(Denied::Reserved { collection: c.to_string() }),
        _ => Ok(()),
    }
}

/// What a token allows, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read data, watch, sync, stats and ring.
    Read,
    /// Read, and write or delete keys.
    Write,
    /// Everything: manage tokens, drop collections.
    Admin,
}

impl Role {
    /// The role's name: `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(TokenError::Role { input: s.chars().take(32).collect() }),
        }
    }
}

/// What one token allows: a role, over some collections (all when `collections` is
/// empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// What the token may do.
    pub role: Role,
    /// Collection names and `prefix*` patterns the token covers; empty for all.
    pub collections: Vec<String>,
}

impl Grant {
    /// Everything, everywhere: the bootstrap admin token's grant.
    pub fn admin() -> Grant {
        Grant { role: Role::Admin, collections: Vec::new() }
    }

    /// Whether this grant covers `collection`.
    pub fn covers(&self, collection: &str) -> bool {
        self.role == Role::Admin
            || self.collections.is_empty()
            || self.collections.iter().any(|p| pattern_matches(p, collection))
    }

    /// Whether this grant allows `op`, and why not. Reserved collections are refused
    /// whatever the role ([`check_reserved`]); [`Op::Auth`] is always allowed (it is
    /// how a grant is obtained).
    pub fn permits(&self, op: &Op) -> Result<(), Denied> {
        check_reserved(op)?;
        let needed = needed_role(op);
        if self.role < needed {
            return Err(Denied::Role { needed, has: self.role });
        }
        match op.collection() {
            Some(c) if !self.covers(c) => Err(Denied::Collection {
                collection: c.to_string(),
                covered: self.collections.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether this grant may drop (delete every key of) `collection`: admins only.
    pub fn may_drop(&self, collection: &str) -> Result<(), Denied> {
        if is_reserved(collection) {
            return Err(Denied::Reserved { collection: collection.to_string() });
        }
        if self.role < Role::Admin {
            return Err(Denied::Role { needed: Role::Admin, has: self.role });
        }
        Ok(())
    }
}

/// The least role that may run `op`.
pub fn needed_role(op: &Op) -> Role {
    match op {
        Op::Auth { .. }
        | Op::Stats
        | Op::Ring
        | Op::Get { .. }
        | Op::GetMany { .. }
        | Op::Scan { .. }
        | Op::Watch { .. }
        | Op::Unwatch { .. }
        | Op::Sync { .. }
        | Op::CollectionShow { .. }
        | Op::CollectionList => Role::Read,
        Op::Set { .. } | Op::Del { .. } | Op::SetMany { .. } => Role::Write,
        Op::TokenCreate { .. }
        | Op::TokenList
        | Op::TokenRevoke { .. }
        | Op::RemoveMember { .. }
        | Op::CollectionCreate { .. }
        | Op::CollectionAlter { .. }
        | Op::CollectionDrop { .. } => Role::Admin,
    }
}

/// Whether the pattern `pattern` (a name, or a prefix followed by `*`) matches
/// `collection`.
pub fn pattern_matches(pattern: &str, collection: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => collection.len() > prefix.len() && collection.starts_with(prefix),
        None => pattern == collection,
    }
}

/// Checks the collections a new token is to cover: at most [`MAX_PATTERNS`], each a
/// collection name or a non-empty prefix of one followed by `*`, none reserved; none
/// at all for an admin token (which covers everything).
pub fn validate_patterns(role: Role, patterns: &[String]) -> Result<(), TokenError> {
    if role == Role::Admin && !patterns.is_empty() {
        return Err(TokenError::AdminScoped);
    }
    if patterns.len() > MAX_PATTERNS {
        return Err(TokenError::TooManyPatterns { count: patterns.len() });
    }
    for p in patterns {
        let name = p.strip_suffix('*').unwrap_or(p);
        if name.is_empty() || validate_collection(name).is_err() || is_reserved(name) {
            return Err(TokenError::Pattern { pattern: p.chars().take(80).collect() });
        }
    }
    Ok(())
}

/// Why a [`Grant`] refuses an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The collection belongs to the cluster.
    #[error(
        "the collection {collection:?} is reserved for the cluster (names starting with \
         _dhrt. are): manage tokens with `dhrt token` or the /v1/tokens routes"
    )]
    Reserved {
        /// The collection named.
        collection: String,
    },
    /// The token's role is too low.
    #[error("this needs a token with the {needed} role; the token presented has the {has} role")]
    Role {
        /// The least role allowed.
        needed: Role,
        /// The token's role.
        has: Role,
    },
    /// The token does not cover the collection.
    #[error(
        "the token presented does not cover the collection {collection:?} (it covers {})",
        covered.join(", ")
    )]
    Collection {
        /// The collection named.
        collection: String,
        /// What the token covers.
        covered: Vec<String>,
    },
}

/// A token as the client sends it: never printed by `{:?}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BearerToken(pub String);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

/// A token string taken apart: `dhrt_<id>_<secret>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedToken<'a> {
    /// The id: 16 lowercase hex digits, the key of the token's record.
    pub id: &'a str,
    /// The secret: 43 base64url characters, hashed into the record.
    pub secret: &'a str,
}

/// Takes a token string apart; `None` when it is not of the form `dhrt_<id>_<secret>`.
pub fn parse_token(token: &str) -> Option<ParsedToken<'_>> {
    let rest = token.strip_prefix("dhrt_")?;
    let (id, secret) = rest.split_at_checked(ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    let b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    (is_id(id) && secret.len() == SECRET_LEN && secret.bytes().all(b64) && id.bytes().all(hex))
        .then_some(ParsedToken { id, secret })
}

/// Whether `id` is a token id: 16 lowercase hex digits.
pub fn is_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The token string for an id of 8 random bytes and a secret of 32 (random bytes from
/// the host's OS).
pub fn format_token(id: [u8; 8], secret: [u8; 32]) -> String {
    let mut out = String::with_capacity(5 + ID_LEN + 1 + SECRET_LEN);
    out.push_str("dhrt_");
    for b in id {
        out.push_str(&format!("{b:02x}"));
    }
    out.push('_');
    base64url(&secret, &mut out);
    out
}

/// Appends `bytes` in unpadded base64url.
fn base64url(bytes: &[u8], out: &mut String) {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
}

/// What the cluster stores about one token, under its id in [`TOKENS_COLLECTION`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// SHA-256 of the secret's text.
    #[serde(with = "serde_bytes")]
    pub hash: [u8; 32],
    /// What the token may do.
    pub role: Role,
    /// What it covers (empty: every collection).
    pub collections: Vec<String>,
    /// When it was created, wall-clock milliseconds.
    pub created_ms: u64,
    /// Who or what it is for, as its creator wrote.
    pub note: String,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("role", &self.role)
            .field("collections", &self.collections)
            .field("created_ms", &self.created_ms)
            .field("note", &self.note)
            .finish_non_exhaustive()
    }
}

impl TokenRecord {
    /// The record's bytes: MessagePack with named fields, so later fields can be added.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("a token record always encodes")
    }

    /// A record from its bytes.
    pub fn decode(bytes: &[u8]) -> Result<TokenRecord, TokenError> {
        rmp_serde::from_slice(bytes).map_err(|e| TokenError::Record(e.to_string()))
    }

    /// What the token allows.
    pub fn grant(&self) -> Grant {
        Grant { role: self.role, collections: self.collections.clone() }
    }

    /// The record as listed to an admin, without its hash.
    pub fn info(&self, id: &str) -> TokenInfo {
        TokenInfo {
            id: id.to_string(),
            role: self.role,
            collections: self.collections.clone(),
            created_ms: self.created_ms,
            note: self.note.clone(),
        }
    }
}

/// A token as listed: everything but its secret and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The id (`dhrt token revoke ID`).
    pub id: String,
    /// What the token may do.
    pub role: Role,
    /// What it covers (empty: every collection).
    pub collections: Vec<String>,
    /// When it was created, wall-clock milliseconds.
    pub created_ms: u64,
    /// Its note.
    pub note: String,
}

/// A token request or record that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// An unknown role.
    #[error("unknown role {input:?}: use read, write or admin")]
    Role {
        /// The rejected text (its first 32 characters).
        input: String,
    },
    /// A collection pattern that is neither a name nor a prefix followed by `*`.
    #[error(
        "{pattern:?} is not a collection name or prefix: use names of A-Z a-z 0-9 _ - . \
         (not starting with _dhrt.), or a prefix followed by * such as logs.*"
    )]
    Pattern {
        /// The rejected pattern (its first 80 characters).
        pattern: String,
    },
    /// More patterns than [`MAX_PATTERNS`].
    #[error("{count} collection patterns is over the limit of {MAX_PATTERNS}: use prefixes such as logs.*")]
    TooManyPatterns {
        /// How many were given.
        count: usize,
    },
    /// Collections given for an admin token.
    #[error(
        "an admin token covers every collection: give collections only with the read or write role"
    )]
    AdminScoped,
    /// A note over [`MAX_NOTE`] bytes.
    #[error("the note is {len} bytes, over the limit of {MAX_NOTE}")]
    NoteTooLong {
        /// Its length.
        len: usize,
    },
    /// A stored record that does not decode.
    #[error("a stored token record is damaged ({0}): revoke the token and create another")]
    Record(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::client::Consistency;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn get(c: &str) -> Op {
        Op::Get {
            collection: c.into(),
            key: Bytes::from_static(b"k"),
            consistency: Consistency::One,
        }
    }

    fn set(c: &str) -> Op {
        Op::Set {
            collection: c.into(),
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            consistency: Consistency::One,
            ttl_ms: None,
        }
    }

    fn grant(role: Role, collections: &[&str]) -> Grant {
        Grant { role, collections: collections.iter().map(|c| c.to_string()).collect() }
    }

    #[test]
    fn roles_allow_what_the_docs_say() {
        let read = grant(Role::Read, &[]);
        let write = grant(Role::Write, &[]);
        let admin = Grant::admin();
        for g in [&read, &write, &admin] {
            assert_eq!(g.permits(&get("users")), Ok(()));
            assert_eq!(g.permits(&Op::Stats), Ok(()));
            assert_eq!(g.permits(&Op::Ring), Ok(()));
            assert_eq!(g.permits(&Op::Unwatch { watch: 1 }), Ok(()));
        }
        assert_eq!(
            read.permits(&set("users")),
            Err(Denied::Role { needed: Role::Write, has: Role::Read })
        );
        assert_eq!(write.permits(&set("users")), Ok(()));
        assert!(write.permits(&Op::TokenList).is_err());
        assert!(read.permits(&Op::TokenRevoke { id: "0".repeat(16) }).is_err());
        assert_eq!(admin.permits(&Op::TokenList), Ok(()));
        assert!(write.may_drop("users").is_err());
        assert_eq!(admin.may_drop("users"), Ok(()));
        let msg = read.permits(&set("users")).unwrap_err().to_string();
        assert!(msg.contains("write role") && msg.contains("read role"), "{msg}");
    }

    #[test]
    fn collections_limit_a_grant() {
        let g = grant(Role::Write, &["users", "logs.*"]);
        assert_eq!(g.permits(&set("users")), Ok(()));
        assert_eq!(g.permits(&get("logs.web")), Ok(()));
        assert!(g.permits(&get("logs")).is_err(), "a prefix pattern needs more than the prefix");
        assert!(g.permits(&get("users2")).is_err());
        let err = g.permits(&get("orders")).unwrap_err();
        assert!(matches!(err, Denied::Collection { .. }));
        assert!(err.to_string().contains("users, logs.*"), "{err}");
        // Collection-less operations stay allowed.
        assert_eq!(g.permits(&Op::Stats), Ok(()));
    }

    #[test]
    fn reserved_collections_are_refused_to_everyone() {
        for g in [grant(Role::Read, &[]), Grant::admin(), grant(Role::Read, &["_dhrt.*"])] {
            for op in [get(TOKENS_COLLECTION), set(TOKENS_COLLECTION), get("_dhrt.other")] {
                assert!(matches!(g.permits(&op), Err(Denied::Reserved { .. })), "{op:?}");
            }
            assert!(g.may_drop(TOKENS_COLLECTION).is_err());
        }
        assert!(check_reserved(&get(TOKENS_COLLECTION)).is_err());
        assert_eq!(check_reserved(&get("_dhrtx")), Ok(()));
    }

    #[test]
    fn patterns_are_checked() {
        assert_eq!(validate_patterns(Role::Read, &["users".into(), "logs.*".into()]), Ok(()));
        for bad in ["", "*", "a b", "_dhrt.tokens", "_dhrt.*", "x/y*"] {
            assert!(validate_patterns(Role::Read, &[bad.into()]).is_err(), "{bad:?}");
        }
        assert_eq!(validate_patterns(Role::Admin, &["users".into()]), Err(TokenError::AdminScoped));
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("c{i}")).collect();
        assert!(validate_patterns(Role::Write, &many).is_err());
        assert_eq!("write".parse::<Role>(), Ok(Role::Write));
        assert!("root".parse::<Role>().unwrap_err().to_string().contains("read, write or admin"));
    }

    #[test]
    fn token_strings_round_trip() {
        let t = format_token([0xab; 8], [0xff; 32]);
        assert_eq!(t.len(), 5 + ID_LEN + 1 + SECRET_LEN);
        let p = parse_token(&t).expect("parses");
        assert_eq!(p.id, "abababababababab");
        assert_eq!(p.secret, "_".repeat(42) + "8");
        let zero = format_token([0; 8], [0; 32]);
        assert_eq!(parse_token(&zero).unwrap().secret, "A".repeat(43));
        for bad in [
            "",
            "dhrt_",
            "dhrt_abababababababab",
            "dhrt_ABABABABABABABAB_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "dhrt_abababababababab_AAAA",
            "dhrt_abababababababab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "xhrt_abababababababab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(parse_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn records_round_trip_and_hide_their_hash() {
        let r = TokenRecord {
            hash: [7; 32],
            role: Role::Write,
            collections: vec!["logs.*".into()],
            created_ms: 42,
            note: "ingest".into(),
        };
        assert_eq!(TokenRecord::decode(&r.encode()), Ok(r.clone()));
        assert!(TokenRecord::decode(b"\x01\x02").is_err());
        assert!(!format!("{r:?}").contains("hash"));
        assert_eq!(r.info("x").note, "ingest");
        assert_eq!(format!("{:?}", BearerToken("dhrt_secret".into())), "BearerToken(..)");
    }

    proptest! {
        #[test]
        fn every_formatted_token_parses(id: [u8; 8], secret: [u8; 32]) {
            let t = format_token(id, secret);
            let p = parse_token(&t).expect("a formatted token parses");
            prop_assert_eq!(p.id.len(), ID_LEN);
            prop_assert!(t.ends_with(p.secret));
        }

        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = parse_token(&s);
        }

        #[test]
        fn a_scoped_grant_never_reaches_outside(c in "[a-z.]{1,12}", p in "[a-z.]{1,6}") {
            let g = grant(Role::Write, &[&format!("{p}*")]);
            prop_assert_eq!(g.covers(&c), c.starts_with(&p) && c.len() > p.len());
            let admin_only = [Op::TokenList, Op::TokenRevoke { id: c.clone() }];
            for op in admin_only {
                prop_assert!(g.permits(&op).is_err());
            }
        }
    }
}
