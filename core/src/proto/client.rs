//! The client protocol: requests a client sends to any node, and the node's answers.
//! (Filled in by the client-protocol work; kept minimal until then.)

use serde::{Deserialize, Serialize};

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    /// The client's id for this request, echoed in the response.
    pub id: u64,
}

/// A node's answer to a [`ClientRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientResponse {
    /// The id of the request answered.
    pub id: u64,
}
