//! Every message dhrt sends, as plain data: one enum per direction.
//!
//! [`Message`] is the envelope that travels in a frame (see [`crate::wire`]); its
//! variants carry the client protocol ([`client`]) and the peer protocols: Merkle sync
//! ([`sync`]), replication ([`replica`]), watches ([`watch`]) and membership gossip
//! ([`crate::membership::MembershipMessage`], defined beside its state machine). Every
//! variant and field is documented because this *is* the protocol.

pub mod client;
pub mod replica;
pub mod size;
pub mod sync;
pub mod watch;

pub use client::{ClientRequest, ClientResponse};
pub use replica::ReplicaMessage;
pub use sync::{SyncBody, SyncItem, SyncMessage};
pub use watch::WatchMessage;

use crate::membership::MembershipMessage;
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
    /// Membership gossip and failure detection between two nodes.
    Gossip(MembershipMessage),
    /// A coordinator's write or read to a replica, or the replica's answer.
    Replica(ReplicaMessage),
    /// A watch's subscription at a source node, or the changes it streams back.
    Watch(WatchMessage),
}

/// What a peer link carries: every message one node sends another, and nothing a
/// client sends. A host decodes a peer link's frames as this type (and a client
/// connection's as [`ClientMessage`]), so a client frame on a peer link, or a peer frame
/// on a client connection, is a decoding error that never reaches the node. The variant
/// names are those of [`Message`], so the bytes on the wire are the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// A step of a Merkle sync session between two replicas.
    Sync(SyncMessage),
    /// Membership gossip and failure detection between two nodes.
    Gossip(MembershipMessage),
    /// A coordinator's write or read to a replica, or the replica's answer.
    Replica(ReplicaMessage),
    /// A watch's subscription at a source node, or the changes it streams back.
    Watch(WatchMessage),
}

impl From<PeerMessage> for Message {
    fn from(msg: PeerMessage) -> Message {
        match msg {
            PeerMessage::Sync(m) => Message::Sync(m),
            PeerMessage::Gossip(m) => Message::Gossip(m),
            PeerMessage::Replica(m) => Message::Replica(m),
            PeerMessage::Watch(m) => Message::Watch(m),
        }
    }
}

impl TryFrom<Message> for PeerMessage {
    /// The message, given back: a client frame, which no peer link carries.
    type Error = Message;

    fn try_from(msg: Message) -> Result<PeerMessage, Message> {
        match msg {
            Message::Sync(m) => Ok(PeerMessage::Sync(m)),
            Message::Gossip(m) => Ok(PeerMessage::Gossip(m)),
            Message::Replica(m) => Ok(PeerMessage::Replica(m)),
            Message::Watch(m) => Ok(PeerMessage::Watch(m)),
            other => Err(other),
        }
    }
}

/// What a client connection carries from the client: requests only. The variant name
/// is that of [`Message::Request`], so the bytes on the wire are the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// A request from a client, tagged with the client's request id.
    Request(ClientRequest),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{entry::NodeId, membership::Member, wire};

    #[test]
    fn peer_messages_round_trip_through_frames() {
        let me = Member::new(NodeId(1), "127.0.0.1:7453", vec![1, 2, 3]);
        let messages = vec![
            // A client's answer: no peer link carries it.
            Message::Response(ClientResponse { id: 7, result: client::Reply::Ok, ts: None }),
            Message::Gossip(MembershipMessage::Ping {
                seq: 3,
                sender: me.clone(),
                updates: vec![me],
                clock: None,
            }),
        ];
        for m in messages {
            let frame = wire::encode(&m).unwrap();
            // A peer link decodes the same bytes as its own type, or refuses them.
            match PeerMessage::try_from(m.clone()) {
                Ok(peer) => assert_eq!(
                    wire::decode_with_limit::<PeerMessage>(&frame, wire::DEFAULT_MAX_FRAME)
                        .unwrap(),
                    peer
                ),
                Err(_) => {
                    assert!(wire::decode_with_limit::<PeerMessage>(&frame, wire::DEFAULT_MAX_FRAME)
                        .is_err())
                }
            }
            assert!(
                wire::decode_with_limit::<ClientMessage>(&frame, wire::DEFAULT_MAX_FRAME).is_err(),
                "no client sends {m:?}"
            );
            assert_eq!(wire::decode(&frame).unwrap(), m);
            for cut in 1..frame.len() {
                assert!(wire::decode(&frame[..cut]).is_err(), "truncated at {cut}");
            }
        }
    }

    #[test]
    fn client_and_peer_frames_decode_only_on_their_own_side() {
        let req = ClientRequest { id: 9, op: client::Op::Stats, seen: None };
        let frame = wire::encode(&Message::Request(req.clone())).unwrap();
        assert_eq!(
            wire::decode_with_limit::<ClientMessage>(&frame, wire::DEFAULT_MAX_FRAME).unwrap(),
            ClientMessage::Request(req)
        );
        assert!(
            wire::decode_with_limit::<PeerMessage>(&frame, wire::DEFAULT_MAX_FRAME).is_err(),
            "a request on a peer link"
        );
        let resp = ClientResponse::error(9, client::ErrorCode::Internal, "x");
        let frame = wire::encode(&Message::Response(resp)).unwrap();
        assert!(
            wire::decode_with_limit::<PeerMessage>(&frame, wire::DEFAULT_MAX_FRAME).is_err(),
            "a response on a peer link"
        );
        assert!(
            wire::decode_with_limit::<ClientMessage>(&frame, wire::DEFAULT_MAX_FRAME).is_err(),
            "a client sends no responses"
        );
    }
}
