//! The one place where dhrt's failures become Python exceptions.
//!
//! The exception classes are defined in pure Python (`dhrt/errors.py`, so they have
//! docstrings, attributes and work with `pickle`) and imported here lazily; creating
//! one needs no GIL, so futures running on the runtime can fail with them too. The
//! hierarchy:
//!
//! ```text
//! dhrt.Error
//! ├── InvalidInputError (ValueError)     invalid_input, unsupported; bad arguments
//! │   ├── InvalidTypeError (TypeError)   an argument of the wrong type
//! │   ├── TooLargeError                  too_large
//! │   └── FrameError                     bytes that are not a valid wire frame
//! ├── NotFoundError (KeyError)           not_found
//! ├── UnavailableError                   unavailable
//! │   ├── QuorumError                    quorum_not_reached (.acks, .required)
//! │   ├── StorageFullError               storage_full (.acks, .required)
//! │   │   └── QuotaExceededError         quota_exceeded: the collection's quota
//! │   └── ConflictError                  conflict (.acks, .required)
//! ├── TimeoutError (TimeoutError)        timeout, on the node or in the client
//! ├── ConnectionError (ConnectionError)  no node reachable, connection lost
//! ├── AuthError (PermissionError)
//! │   ├── UnauthorizedError              unauthorized: no token, or a bad or revoked one
//! │   └── ForbiddenError                 forbidden: the token does not allow it
//! ├── NodeError                          an in-process node could not start or stop
//! └── ProtocolError                      an answer the client did not expect; internal
//! ```

use dhrt::client::ClientError;
use dhrt_core::proto::client::ErrorCode;
use pyo3::{import_exception, PyErr};
use std::time::Duration;

import_exception!(dhrt.errors, InvalidInputError);
import_exception!(dhrt.errors, InvalidTypeError);
import_exception!(dhrt.errors, TooLargeError);
import_exception!(dhrt.errors, FrameError);
import_exception!(dhrt.errors, NotFoundError);
import_exception!(dhrt.errors, UnavailableError);
import_exception!(dhrt.errors, QuorumError);
import_exception!(dhrt.errors, ConflictError);
import_exception!(dhrt.errors, StorageFullError);
import_exception!(dhrt.errors, QuotaExceededError);
import_exception!(dhrt.errors, TimeoutError);
import_exception!(dhrt.errors, ConnectionError);
import_exception!(dhrt.errors, UnauthorizedError);
import_exception!(dhrt.errors, ForbiddenError);
import_exception!(dhrt.errors, NodeError);
import_exception!(dhrt.errors, ProtocolError);

/// A client call's failure as a Python exception.
pub fn client_error(err: ClientError) -> PyErr {
    match err {
        ClientError::Connection(message) => PyErr::new::<ConnectionError, _>((format!(
            "connection failed: {message}; is the node running? (start one with \
             `python -m dhrt serve` or `dhrt serve`)"
        ),)),
        ClientError::Timeout(limit) => timed_out(limit),
        ClientError::Protocol(message) => PyErr::new::<ProtocolError, _>((format!(
            "unexpected answer from the node: {message}; is the node the same dhrt version?"
        ),)),
        ClientError::Server { code, message, acked } => server_error(code, message, acked),
    }
}

/// An error the node answered with, by its code.
pub fn server_error(code: ErrorCode, message: String, acked: Option<(u32, u32)>) -> PyErr {
    let (acks, required) = acked.unzip();
    match code {
        ErrorCode::NotFound => PyErr::new::<NotFoundError, _>((message,)),
        ErrorCode::InvalidInput => PyErr::new::<InvalidInputError, _>((message, code.as_str())),
        ErrorCode::Unsupported => PyErr::new::<InvalidInputError, _>((message, code.as_str())),
        ErrorCode::TooLarge => PyErr::new::<TooLargeError, _>((message,)),
        ErrorCode::QuorumNotReached => PyErr::new::<QuorumError, _>((message, acks, required)),
        ErrorCode::StorageFull => PyErr::new::<StorageFullError, _>((message, acks, required)),
        ErrorCode::Conflict => PyErr::new::<ConflictError, _>((message, acks, required)),
        ErrorCode::QuotaExceeded => PyErr::new::<QuotaExceededError, _>((message, acks, required)),
        ErrorCode::Timeout => PyErr::new::<TimeoutError, _>((message, acks, required)),
        ErrorCode::Unavailable => PyErr::new::<UnavailableError, _>((message,)),
        ErrorCode::Unauthorized => PyErr::new::<UnauthorizedError, _>((message,)),
        ErrorCode::Forbidden => PyErr::new::<ForbiddenError, _>((message,)),
        _ => PyErr::new::<ProtocolError, _>((
            format!("the node failed: {message} (code {code}; please report it)"),
            code.as_str(),
        )),
    }
}

/// The client gave up waiting after `limit`.
pub fn timed_out(limit: Duration) -> PyErr {
    let message = format!(
        "no answer within {:.3} s; pass a larger timeout= or check that the nodes are running",
        limit.as_secs_f64()
    );
    PyErr::new::<TimeoutError, _>((message, None::<u32>, None::<u32>))
}

/// A bad argument value.
pub fn invalid(message: impl Into<String>) -> PyErr {
    PyErr::new::<InvalidInputError, _>((message.into(),))
}

/// An argument of the wrong type.
pub fn wrong_type(message: impl Into<String>) -> PyErr {
    PyErr::new::<InvalidTypeError, _>((message.into(),))
}

/// A key or value over its limit.
pub fn too_large(message: impl Into<String>) -> PyErr {
    PyErr::new::<TooLargeError, _>((message.into(),))
}

/// A node that could not start or stop.
pub fn node_error(message: impl Into<String>) -> PyErr {
    PyErr::new::<NodeError, _>((message.into(),))
}

/// Bytes that are not a valid wire frame; `kind` is the error's stable name.
pub fn frame_error(message: String, kind: &str) -> PyErr {
    PyErr::new::<FrameError, _>((message, kind.to_string()))
}
