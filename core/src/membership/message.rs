//! What the membership state machine sends and what it tells its host.
//!
//! [`MembershipMessage`] is the peer protocol (one enum, every field documented: this
//! *is* the protocol). Every message names its sender's own current record (`sender`, or
//! the sender's entry in a full state), so any message is direct evidence of life and
//! lets a receiver that never heard of the sender answer it. Gossip rides on `updates`.
//!
//! [`MembershipOutput`] is what [`super::Membership::poll_output`] hands the host: a
//! message to send, by node id and address or by address alone (a join, before the
//! seed's id is known), or an event for the node layer.

use super::clock::ClockStamp;
use super::member::{Member, Status};
use crate::NodeId;
use serde::{Deserialize, Serialize};

/// A membership protocol message between two nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipMessage {
    /// A probe: "are you there?". Answered with an [`MembershipMessage::Ack`] carrying
    /// the same `seq`.
    Ping {
        /// The prober's sequence number, echoed by the ack.
        seq: u64,
        /// The prober's own current record.
        sender: Member,
        /// Piggybacked membership updates (at most `max_piggyback`).
        updates: Vec<Member>,
        /// The sender's clocks when it sent the message (see [`ClockStamp`]); absent
        /// from frames of hosts that do not stamp membership messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<ClockStamp>,
    },
    /// The answer to a [`MembershipMessage::Ping`], or a helper relaying the answer to an
    /// indirect probe.
    Ack {
        /// The `seq` of the ping (or of the ping request) being answered.
        seq: u64,
        /// Set when a helper relays the ack of an indirect probe: the probed member that
        /// answered. `None` when the sender answers for itself.
        on_behalf: Option<NodeId>,
        /// The acknowledging node's own current record.
        sender: Member,
        /// Piggybacked membership updates.
        updates: Vec<Member>,
        /// The sender's clocks when it sent the message (see [`ClockStamp`]); absent
        /// from frames of hosts that do not stamp membership messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<ClockStamp>,
    },
    /// An indirect probe: "please ping `target` for me and relay its ack".
    PingReq {
        /// The requester's sequence number, echoed by the relayed ack.
        seq: u64,
        /// The member to probe.
        target: NodeId,
        /// The target's address, for a helper that does not know it yet.
        target_addr: String,
        /// The requester's own current record.
        sender: Member,
        /// Piggybacked membership updates.
        updates: Vec<Member>,
        /// The sender's clocks when it sent the message (see [`ClockStamp`]); absent
        /// from frames of hosts that do not stamp membership messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<ClockStamp>,
    },
    /// A full-state exchange (anti-entropy for membership): every record the sender
    /// knows, its own included.
    PushPull {
        /// All members the sender knows, sorted by id.
        members: Vec<Member>,
        /// Whether the receiver should answer with its own full state.
        reply: bool,
        /// The sender's clocks when it sent the message (see [`ClockStamp`]); nil from
        /// hosts that do not stamp membership messages. (Always in the frame: a field
        /// follows it, and frames are positional.)
        #[serde(default)]
        clock: Option<ClockStamp>,
        /// Whether the sender started without its data, was told to join a cluster and
        /// has not merged a complete view of it yet ([`Membership::view_partial`]): its
        /// state is merged, but does not count as the cluster's full view
        /// ([`Membership::heard_full_state`]). Absent from older frames: false.
        ///
        /// [`Membership::view_partial`]: crate::membership::Membership::view_partial
        /// [`Membership::heard_full_state`]: crate::membership::Membership::heard_full_state
        #[serde(default)]
        partial: bool,
    },
    /// A request to enter the cluster, sent to a seed by address. The seed answers with
    /// a [`MembershipMessage::PushPull`] (`reply: false`) and gossips the newcomer.
    Join {
        /// The joining node's own record.
        member: Member,
        /// The sender's clocks when it sent the message (see [`ClockStamp`]); absent
        /// from frames of hosts that do not stamp membership messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<ClockStamp>,
    },
    /// Updates pushed outside the probe cycle: a graceful leave told directly to a few
    /// members, or a correction telling a member what the cluster believes about it.
    Gossip {
        /// The sender's own current record.
        sender: Member,
        /// The updates.
        updates: Vec<Member>,
        /// The sender's clocks when it sent the message (see [`ClockStamp`]); absent
        /// from frames of hosts that do not stamp membership messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<ClockStamp>,
    },
}

impl MembershipMessage {
    /// A short name of the variant, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            MembershipMessage::Ping { .. } => "ping",
            MembershipMessage::Ack { .. } => "ack",
            MembershipMessage::PingReq { .. } => "ping-req",
            MembershipMessage::PushPull { .. } => "push-pull",
            MembershipMessage::Join { .. } => "join",
            MembershipMessage::Gossip { .. } => "gossip",
        }
    }

    /// The sender's clock stamp, if the message carries one.
    pub fn clock(&self) -> Option<&ClockStamp> {
        self.clock_slot().as_ref()
    }

    /// Sets the sender's clock stamp (the node does it as the message leaves).
    pub fn set_clock(&mut self, stamp: ClockStamp) {
        *self.clock_mut() = Some(stamp);
    }

    fn clock_slot(&self) -> &Option<ClockStamp> {
        match self {
            MembershipMessage::Ping { clock, .. }
            | MembershipMessage::Ack { clock, .. }
            | MembershipMessage::PingReq { clock, .. }
            | MembershipMessage::PushPull { clock, .. }
            | MembershipMessage::Join { clock, .. }
            | MembershipMessage::Gossip { clock, .. } => clock,
        }
    }

    fn clock_mut(&mut self) -> &mut Option<ClockStamp> {
        match self {
            MembershipMessage::Ping { clock, .. }
            | MembershipMessage::Ack { clock, .. }
            | MembershipMessage::PingReq { clock, .. }
            | MembershipMessage::PushPull { clock, .. }
            | MembershipMessage::Join { clock, .. }
            | MembershipMessage::Gossip { clock, .. } => clock,
        }
    }
}

/// Something the membership state machine wants done or known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipOutput {
    /// Send `msg` to the member `to`, reachable at `addr`.
    Send {
        /// The receiving member.
        to: NodeId,
        /// Its address.
        addr: String,
        /// The message.
        msg: MembershipMessage,
    },
    /// Send `msg` to whoever listens at `addr` (a join to a seed whose id is unknown).
    SendAddr {
        /// The address.
        addr: String,
        /// The message.
        msg: MembershipMessage,
    },
    /// A change the node layer should know about.
    Event(MembershipEvent),
}

/// A change in the membership view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipEvent {
    /// A member this node did not know before (its record has its status).
    MemberJoined {
        /// The new member.
        id: NodeId,
    },
    /// A member's effective status changed in this node's view (this node included).
    StatusChanged {
        /// The member.
        id: NodeId,
        /// The status before.
        from: Status,
        /// The status now.
        to: Status,
    },
    /// This node learned the cluster declared it dead (or left) and now announces itself
    /// `Syncing`: the node layer must re-sync its data, then call
    /// [`super::Membership::resynced`].
    MustResync,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_through_messagepack() {
        let m = Member::new(NodeId(3), "10.0.0.3:7453", vec![1, u64::MAX]);
        let suspect = m.with(Status::Suspect, 4);
        let messages = vec![
            MembershipMessage::Ping {
                seq: 1,
                sender: m.clone(),
                updates: vec![suspect.clone()],
                clock: None,
            },
            MembershipMessage::Ack {
                seq: u64::MAX,
                on_behalf: Some(NodeId(9)),
                sender: m.clone(),
                updates: vec![],
                clock: None,
            },
            MembershipMessage::PingReq {
                seq: 2,
                target: NodeId(9),
                target_addr: "10.0.0.9:7453".into(),
                sender: m.clone(),
                updates: vec![m.with(Status::Syncing, 1)],
                clock: None,
            },
            MembershipMessage::PushPull {
                members: vec![m.clone(), suspect.clone()],
                reply: true,
                partial: true,
                clock: None,
            },
            MembershipMessage::PushPull {
                members: vec![suspect],
                reply: false,
                partial: false,
                clock: Some(ClockStamp { wall_ms: 7, ..ClockStamp::default() }),
            },
            MembershipMessage::Join { member: m.clone(), clock: None },
            MembershipMessage::Gossip {
                sender: m.with(Status::Left, 5),
                updates: vec![],
                clock: None,
            },
        ];
        for msg in messages {
            let bytes = rmp_serde::to_vec(&msg).unwrap();
            let back: MembershipMessage = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(back, msg, "{}", msg.kind());
        }
        // A frame from before `clock` and `partial`: both default.
        let old = rmp_serde::to_vec(&serde_json::json!({"PushPull": [[], true]})).unwrap();
        let back: MembershipMessage = rmp_serde::from_slice(&old).unwrap();
        assert_eq!(
            back,
            MembershipMessage::PushPull {
                members: vec![],
                reply: true,
                clock: None,
                partial: false
            }
        );
        let event = MembershipEvent::StatusChanged {
            id: NodeId(1),
            from: Status::Alive,
            to: Status::Suspect,
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(json, r#"{"StatusChanged":{"id":1,"from":"alive","to":"suspect"}}"#);
    }
}
