//! Every message dhrt sends, as plain data: one enum per direction.
//!
//! [`Message`] is the envelope that travels in a frame (see [`crate::wire`]); its
//! variants carry the client protocol ([`client`]) and the peer protocols: Merkle sync
//! ([`sync`]), replication ([`replica`]), watches ([`watch`]), Chord routing ([`chord`])
//! and membership gossip
//! ([`crate::membership::MembershipMessage`], defined beside its state machine). Every
//! variant and field is documented because this *is* the protocol.

pub mod chord;
pub mod client;
pub mod replica;
pub mod sync;
pub mod watch;

pub use chord::{ChordMessage, NextHop};
pub use client::{ClientRequest, ClientResponse};
pub use replica::ReplicaMessage;
pub use sync::{SyncBody, SyncItem, SyncMessage};
pub use watch::WatchMessage;

use crate::{membership::MembershipMessage, ring::Vnode};
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
    /// A Chord routing message between two vnodes.
    Chord {
        /// The sending vnode.
        from: Vnode,
        /// The vnode addressed (a node answers for all its tokens).
        to: Vnode,
        /// The message.
        msg: ChordMessage,
    },
    /// Membership gossip and failure detection between two nodes.
    Gossip(MembershipMessage),
    /// A coordinator's write or read to a replica, or the replica's answer.
    Replica(ReplicaMessage),
    /// A watch's subscription at a source node, or the changes it streams back.
    Watch(WatchMessage),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{entry::NodeId, membership::Member, wire};

    #[test]
    fn peer_messages_round_trip_through_frames() {
        let a = Vnode { pos: 1, node: NodeId(1) };
        let b = Vnode { pos: u64::MAX, node: NodeId(2) };
        let me = Member::new(NodeId(1), "127.0.0.1:7453", vec![1, 2, 3]);
        let messages = vec![
            Message::Chord { from: a, to: b, msg: ChordMessage::FindNext { req: 7, target: 9 } },
            Message::Chord {
                from: b,
                to: a,
                msg: ChordMessage::Next {
                    req: 7,
                    hop: NextHop::Closer {
                        fingers: vec![a],
                        successors: vec![b],
                        predecessor: None,
                    },
                },
            },
            Message::Gossip(MembershipMessage::Ping {
                seq: 3,
                sender: me.clone(),
                updates: vec![me],
            }),
        ];
        for m in messages {
            let frame = wire::encode(&m).unwrap();
            assert_eq!(wire::decode(&frame).unwrap(), m);
            for cut in 1..frame.len() {
                assert!(wire::decode(&frame[..cut]).is_err(), "truncated at {cut}");
            }
        }
    }
}
