//! The client's clock over HTTP: every answer says the node's hybrid clock, and a
//! request may say the newest timestamp its client has seen.
//!
//! - `x-dhrt-clock` (response): the answering node's hybrid timestamp when the answer
//!   left (a decimal `u64`, as `x-dhrt-ts`), at or above every write the answer
//!   acknowledges and every entry it shows. Set on every answer that went through the
//!   node.
//! - `x-dhrt-seen` (request): the newest `x-dhrt-clock` (or `x-dhrt-ts`) the client has
//!   seen, from any node. The node adopts it into its clock before it stamps anything,
//!   so the client's next write is stamped above everything it saw. One that is not a
//!   decimal `u64`, or further ahead of the node's clock than the max offset, is refused
//!   `400 invalid_input`.
//!
//! The middleware keeps both in a task-local for the request being served;
//! `Server::call` reads `seen` from it and records each answer's timestamp in it.

use super::error::ApiError;
use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use dhrt_core::{clock::Timestamp, proto::client::ErrorCode};
use std::cell::Cell;

/// The response header: the node's clock when the answer left.
pub const CLOCK_HEADER: &str = "x-dhrt-clock";
/// The request header: the newest timestamp the client has seen.
pub const SEEN_HEADER: &str = "x-dhrt-seen";

/// The clocks of the HTTP request being served.
#[derive(Debug, Default)]
pub struct RequestClock {
    /// What the request's `x-dhrt-seen` said.
    pub seen: Option<Timestamp>,
    /// The newest timestamp the node's answers carried.
    pub answered: Cell<Option<Timestamp>>,
}

tokio::task_local! {
    /// The clocks of the HTTP request being served (set by [`clock_headers`]).
    pub static REQUEST_CLOCK: RequestClock;
}

/// The `x-dhrt-seen` of the request being served, if any.
pub fn seen() -> Option<Timestamp> {
    REQUEST_CLOCK.try_with(|c| c.seen).ok().flatten()
}

/// Records a timestamp an answer of the node carried, for `x-dhrt-clock`.
pub fn answered(ts: Option<Timestamp>) {
    let _ = REQUEST_CLOCK.try_with(|c| c.answered.set(c.answered.get().max(ts)));
}

/// Reads `x-dhrt-seen`, serves the request, sets `x-dhrt-clock`.
pub async fn clock_headers(req: Request, next: Next) -> Response {
    let seen = match req.headers().get(SEEN_HEADER) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(ts) => Some(Timestamp(ts)),
            None => {
                let msg = format!(
                    "{SEEN_HEADER} must be a timestamp as a decimal number, as the \
                     {CLOCK_HEADER} header of an earlier answer"
                );
                return ApiError::new(ErrorCode::InvalidInput, msg).into_response();
            }
        },
    };
    let clock = RequestClock { seen, answered: Cell::new(None) };
    let (mut response, answered) = REQUEST_CLOCK
        .scope(clock, async move {
            let response = next.run(req).await;
            (response, REQUEST_CLOCK.with(|c| c.answered.get()))
        })
        .await;
    if let Some(v) = answered.and_then(|ts| HeaderValue::from_str(&ts.0.to_string()).ok()) {
        response.headers_mut().insert(HeaderName::from_static(CLOCK_HEADER), v);
    }
    response
}
