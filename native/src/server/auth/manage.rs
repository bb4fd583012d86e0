//! Token management: create, list and revoke the tokens of [`TOKENS_COLLECTION`].
//!
//! The server runs these for an admin (over the WebSocket as [`Op::TokenCreate`],
//! [`Op::TokenList`] and [`Op::TokenRevoke`], over HTTP as `/v1/tokens`), as ordinary
//! quorum writes and reads of the reserved collection through its own node: a quorum
//! write and a later quorum read on any node share a replica, so a new token works
//! everywhere at once and a revocation is seen by every node's next lookup. The random
//! bytes of a token come from the OS ([`SystemRandom`]); only the SHA-256 of its secret
//! is stored.

use super::{sha256, Refusal};
use crate::server::AppState;
use bytes::Bytes;
use dhrt_core::{
    auth::{
        format_token, is_id, parse_token, validate_patterns, BearerToken, Role, TokenInfo,
        TokenRecord, MAX_NOTE, TOKENS_COLLECTION,
    },
    proto::client::{Consistency, ErrorCode, Op, Reply},
};
use ring::rand::{SecureRandom, SystemRandom};

/// Most tokens listed.
pub const MAX_LISTED: usize = 100_000;

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

fn from_reply(reply: Reply) -> Refusal {
    match reply {
        Reply::Error { code, message, .. } => refusal(code, message),
        other => {
            refusal(ErrorCode::Internal, format!("unexpected answer from the node: {other:?}"))
        }
    }
}

/// Creates a token; answers its string (shown this once) and what was stored.
pub async fn create(
    state: &AppState,
    role: Role,
    collections: Vec<String>,
    note: String,
) -> Result<(BearerToken, TokenInfo), Refusal> {
    validate_patterns(role, &collections)
        .map_err(|e| refusal(ErrorCode::InvalidInput, e.to_string()))?;
    if note.len() > MAX_NOTE {
        let e = dhrt_core::auth::TokenError::NoteTooLong { len: note.len() };
        return Err(refusal(ErrorCode::InvalidInput, e.to_string()));
    }
    let rng = SystemRandom::new();
    let (mut id, mut secret) = ([0u8; 8], [0u8; 32]);
    rng.fill(&mut id)
        .and_then(|()| rng.fill(&mut secret))
        .map_err(|_| refusal(ErrorCode::Internal, "the OS gave no random bytes; try again"))?;
    let token = format_token(id, secret);
    let parsed = parse_token(&token).ok_or_else(|| refusal(ErrorCode::Internal, "bad token"))?;
    let record = TokenRecord {
        hash: sha256(parsed.secret.as_bytes()),
        role,
        collections,
        created_ms: crate::server::wall_ms(),
        note,
    };
    let info = record.info(parsed.id);
    let op = Op::Set {
        collection: TOKENS_COLLECTION.into(),
        key: Bytes::copy_from_slice(parsed.id.as_bytes()),
        value: Bytes::from(record.encode()),
        consistency: Consistency::Quorum,
        ttl_ms: None,
    };
    match state.call_unchecked(op).await {
        Reply::Written { .. } => Ok((BearerToken(token), info)),
        other => Err(from_reply(other)),
    }
}

/// Every token, ordered by id, without secrets.
pub async fn list(state: &AppState) -> Result<Vec<TokenInfo>, Refusal> {
    let info = |key: Bytes, value: Bytes| {
        TokenRecord::decode(&value).ok().map(|r| r.info(&String::from_utf8_lossy(&key)))
    };
    let mut out =
        crate::server::collections::scan_reserved(state, TOKENS_COLLECTION, MAX_LISTED, info)
            .await
            .map_err(from_reply)?;
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Revokes token `id`: deletes its record; `not_found` when there is none.
pub async fn revoke(state: &AppState, id: &str) -> Result<(), Refusal> {
    if !is_id(id) {
        return Err(refusal(
            ErrorCode::InvalidInput,
            format!(
                "{:?} is not a token id: an id is 16 hex digits, as `dhrt token list` shows",
                id.chars().take(40).collect::<String>()
            ),
        ));
    }
    let key = Bytes::copy_from_slice(id.as_bytes());
    let get = Op::Get {
        collection: TOKENS_COLLECTION.into(),
        key: key.clone(),
        consistency: Consistency::Quorum,
    };
    match state.call_unchecked(get).await {
        Reply::Value { value: Some(_), .. } => {}
        Reply::Value { value: None, .. } => {
            return Err(refusal(ErrorCode::NotFound, format!("there is no token {id}")))
        }
        other => return Err(from_reply(other)),
    }
    let del =
        Op::Del { collection: TOKENS_COLLECTION.into(), key, consistency: Consistency::Quorum };
    match state.call_unchecked(del).await {
        Reply::Written { .. } => {
            state.tokens.forget(id);
            Ok(())
        }
        other => Err(from_reply(other)),
    }
}

/// Runs a token operation ([`Op::TokenCreate`], [`Op::TokenList`], [`Op::TokenRevoke`])
/// for a caller already allowed to; any other op is refused.
pub async fn run(state: &AppState, op: Op) -> Reply {
    let result = match op {
        Op::TokenCreate { role, collections, note } => create(state, role, collections, note)
            .await
            .map(|(token, info)| Reply::Token { token, info }),
        Op::TokenList => list(state).await.map(|tokens| Reply::Tokens { tokens }),
        Op::TokenRevoke { id } => revoke(state, &id).await.map(|()| Reply::Ok),
        _ => Err(refusal(ErrorCode::Unsupported, "not a token operation")),
    };
    result.unwrap_or_else(Refusal::reply)
}
