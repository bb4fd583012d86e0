//! Token management over HTTP, for admins ([`crate::server::auth::manage`]).
//!
//! ```text
//! POST   /v1/tokens        {"role": "read", "collections": ["logs.*"], "note": "…"}
//!                          answers the token, shown this once (201)
//! GET    /v1/tokens        {"tokens": [{id, role, collections, created_ms, note}]}
//! DELETE /v1/tokens/{id}   revokes it: it stops working on every node within seconds
//! ```
//!
//! Each route checks its [`Op`] against the caller's grant like any other
//! ([`crate::server::auth::Tokens::authorize_current`]): only an admin token may, when
//! the node requires tokens.

use super::{error::ApiError, input::Segments};
use crate::server::{auth::manage, AppState};
use axum::{
    extract::{rejection::BytesRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use bytes::Bytes;
use dhrt_core::auth::{Role, TokenInfo};
use dhrt_core::proto::client::{Op, Reply};
use serde::Deserialize;
use serde_json::{json, Value};

/// The body of `POST /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    role: String,
    #[serde(default)]
    collections: Vec<String>,
    #[serde(default)]
    note: String,
}

/// A token as JSON.
pub fn info(t: &TokenInfo) -> Value {
    json!({
        "id": t.id,
        "role": t.role.as_str(),
        "collections": t.collections,
        "created_ms": t.created_ms,
        "note": t.note,
    })
}

/// `POST /v1/tokens`: creates a token; the answer is the one time it is shown.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::from_body(&e, state.max_value))?;
    let new: NewToken = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "the body is not a token request of the form {{\"role\": \"read\", \
             \"collections\": [\"logs.*\"], \"note\": \"…\"}}: {e}"
        ))
    })?;
    let role: Role = new.role.parse().map_err(|e| ApiError::invalid(format!("{e}")))?;
    let op = Op::TokenCreate { role, collections: new.collections, note: new.note };
    state.tokens.authorize_current(&op)?;
    match manage::run(&state, op).await {
        Reply::Token { token, info: created } => {
            let mut body = info(&created);
            body["token"] = Value::String(token.0);
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        other => Err(ApiError::from_reply(other)),
    }
}

/// `GET /v1/tokens`: every token, without secrets.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.tokens.authorize_current(&Op::TokenList)?;
    let tokens = manage::list(&state).await?;
    Ok(Json(json!({ "tokens": tokens.iter().map(info).collect::<Vec<_>>() })))
}

/// `DELETE /v1/tokens/{id}`: revokes a token.
pub async fn revoke(
    State(state): State<AppState>,
    path: Segments,
) -> Result<Json<Value>, ApiError> {
    let id = String::from_utf8_lossy(&path.raw(2)).into_owned();
    state.tokens.authorize_current(&Op::TokenRevoke { id: id.clone() })?;
    manage::revoke(&state, &id).await?;
    Ok(Json(json!({ "id": id, "revoked": true })))
}
