//! The kinds of failed requests ([`ErrorCode`]): their names on the wire and their HTTP
//! statuses, in one place for every host.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of a failed request. Hosts map it to their own error shape in one place.
///
/// On the wire a code is its name ([`ErrorCode::as_str`]). New codes are only ever
/// added; a name this build does not know (one a newer node sends) reads as
/// [`ErrorCode::Internal`], so the reply and its message still arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", from = "ErrorName")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The thing named does not exist (a watch, a collection).
    NotFound,
    /// The request is malformed or breaks a rule (bad key, bad collection name, bad
    /// consistency).
    InvalidInput,
    /// A key, value or request is larger than the node accepts.
    TooLarge,
    /// Fewer replicas answered than the consistency level requires.
    QuorumNotReached,
    /// The replicas did not answer in time.
    Timeout,
    /// The node cannot serve requests now (joining, leaving, overloaded).
    Unavailable,
    /// The node does not support the operation.
    Unsupported,
    /// A bug or a storage failure on the node.
    Internal,
    /// The node requires a token and none, or a malformed, unknown or revoked one, was
    /// presented.
    Unauthorized,
    /// The token presented does not allow the request (its role or collections), or the
    /// collection is reserved for the cluster.
    Forbidden,
    /// A write was refused for lack of storage: too many of its replicas are below
    /// their disk reserve (or at their cap on collections). Reads and deletes still
    /// work; the write succeeds once space is freed or nodes are added.
    StorageFull,
    /// A write lost to a newer write of the same key that a replica already held, and
    /// re-stamping it above that write did not win within the coordinator's bounded
    /// attempts (see `node::coordinator::restamp`). Nothing is acknowledged; retrying
    /// writes it above what the replicas hold.
    Conflict,
    /// A write was refused because its collection reached its quota of keys or bytes
    /// (see [`crate::catalogue`]). Reads and deletes still work; the write succeeds once
    /// keys are deleted or the quota is raised (`dhrt collection alter`).
    QuotaExceeded,
}

/// An error code's name as read from the wire, before it is known to be one.
#[derive(Deserialize)]
#[serde(transparent)]
struct ErrorName(String);

impl From<ErrorName> for ErrorCode {
    fn from(name: ErrorName) -> Self {
        ErrorCode::from_name(&name.0).unwrap_or(ErrorCode::Internal)
    }
}

impl ErrorCode {
    /// The HTTP status a host answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::NotFound => 404,
            ErrorCode::InvalidInput | ErrorCode::Unsupported => 400,
            ErrorCode::TooLarge => 413,
            ErrorCode::QuorumNotReached | ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::Internal => 500,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::StorageFull => 507,
            ErrorCode::Conflict => 409,
            ErrorCode::QuotaExceeded => 507,
        }
    }

    /// Every code, in the order they were added.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::NotFound,
        ErrorCode::InvalidInput,
        ErrorCode::TooLarge,
        ErrorCode::QuorumNotReached,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
        ErrorCode::Unsupported,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::StorageFull,
        ErrorCode::Conflict,
        ErrorCode::QuotaExceeded,
    ];

    /// The code named `name` ([`ErrorCode::as_str`]), if this build knows it.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The code's stable name, as in JSON error bodies: `not_found`, `invalid_input`…
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::QuorumNotReached => "quorum_not_reached",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::Conflict => "conflict",
            ErrorCode::QuotaExceeded => "quota_exceeded",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
