//! The HTTP API's one error type and its JSON body.
//!
//! Every failure — bad input found by the HTTP layer, a [`Reply::Error`] from the node,
//! a route that does not exist — leaves as an [`ApiError`], rendered as
//!
//! ```json
//! {"error": {"code": "quorum_not_reached", "message": "…", "acked": [1, 2]}}
//! ```
//!
//! `code` is [`ErrorCode::as_str`], `message` a sentence a person can act on, and
//! `acked` the `[answered, required]` replicas of a request that missed its consistency
//! (`null` otherwise). The status comes from [`ErrorCode::http_status`]; the node's
//! errors are mapped here, in [`ApiError::from_reply`], and nowhere else.

use axum::{
    extract::rejection::BytesRejection,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use dhrt_core::proto::client::{ErrorCode, Reply};
use serde_json::json;

/// A failed HTTP request: status, code, sentence and (for consistency misses) the
/// replicas that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status answered.
    pub status: StatusCode,
    /// What kind of failure, for programs.
    pub code: ErrorCode,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// `(answered, required)` replicas, when a request missed its consistency.
    pub acked: Option<(u32, u32)>,
}

impl ApiError {
    /// An error of `code`, answered with the code's HTTP status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError { status, code, message: message.into(), acked: None }
    }

    /// Bad input (400).
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidInput, message)
    }

    /// Nothing there (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// Over a size limit (413).
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::TooLarge, message)
    }

    /// The same error answered with another status (405 for a method a route lacks).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The error for a reply that is not the answer expected: a [`Reply::Error`] maps
    /// through [`ErrorCode::http_status`] with its count of replicas; any other reply
    /// is a bug on the node (500).
    pub fn from_reply(reply: Reply) -> Self {
        match reply {
            Reply::Error { code, message, acked } => {
                ApiError { acked, ..ApiError::new(code, message) }
            }
            other => ApiError::new(
                ErrorCode::Internal,
                format!("the node gave an unexpected answer ({}); please report it", kind(&other)),
            ),
        }
    }

    /// The error for a request body that could not be read: over `limit` bytes (413)
    /// or cut off (400).
    pub fn from_body(rejection: &BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!(
                "the request body is over the {limit} byte limit; send a smaller value \
                 (the limit is `dhrt serve --max-value`)"
            ))
        } else {
            ApiError::invalid(format!("the request body could not be read: {rejection}"))
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "code": self.code.as_str(),
                "message": self.message,
                "acked": self.acked.map(|(answered, required)| [answered, required]),
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// The variant name of a reply, for the message of an unexpected one.
fn kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Value { .. } => "value",
        Reply::Ok => "ok",
        Reply::Written { .. } => "written",
        Reply::Values { .. } => "values",
        Reply::Page { .. } => "page",
        Reply::Event { .. } => "event",
        Reply::Sync { .. } => "sync",
        Reply::Stats(_) => "stats",
        Reply::Ring { .. } => "ring",
        Reply::Error { .. } => "error",
        Reply::Token { .. } => "token",
        Reply::Tokens { .. } => "tokens",
        Reply::Collection(_) => "collection",
        Reply::Collections { .. } => "collections",
        Reply::Dropped { .. } => "dropped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_errors_keep_their_code_status_and_replica_count() {
        let reply = Reply::Error {
            code: ErrorCode::QuorumNotReached,
            message: "1 of 2 replicas answered".into(),
            acked: Some((1, 2)),
        };
        let e = ApiError::from_reply(reply);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            e.body(),
            json!({"error": {"code": "quorum_not_reached", "message": "1 of 2 replicas answered", "acked": [1, 2]}})
        );
        let timeout = ApiError::from_reply(Reply::Error {
            code: ErrorCode::Timeout,
            message: "slow".into(),
            acked: None,
        });
        assert_eq!(timeout.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(timeout.body()["error"]["acked"], serde_json::Value::Null);
    }

    #[test]
    fn every_code_maps_to_its_status() {
        for code in ErrorCode::ALL {
            let e = ApiError::new(code, "x");
            assert_eq!(e.status.as_u16(), code.http_status());
            assert_eq!(e.body()["error"]["code"], code.as_str());
        }
    }

    #[test]
    fn an_unexpected_answer_is_an_internal_error() {
        let e = ApiError::from_reply(Reply::Ok);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.message.contains("(ok)"), "{}", e.message);
    }
}
