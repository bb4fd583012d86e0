//! Every message dhrt sends, as plain data: one enum per direction.
//!
//! [`Message`] is the envelope that travels in a frame (see [`crate::wire`]); its
//! variants carry the client protocol ([`client`]) and the peer protocols ([`sync`] so
//! far). Every variant and field is documented because this *is* the protocol.

pub mod chord;
pub mod client;
pub mod sync;

pub use chord::{ChordMessage, NextHop};
pub use client::{ClientRequest, ClientResponse};
pub use sync::{SyncBody, SyncItem, SyncMessage};

use serde::{Deserialize, Serialize};

/// The envelope of everything sent in a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A request from a client, tagged with the client's request id.
    Request(ClientRequest),
    /// The answer to a client request.
    Response(ClientResponse),
    /// A step of a Merkle sync session between two replicas.
    Sync(SyncMessage),
}
