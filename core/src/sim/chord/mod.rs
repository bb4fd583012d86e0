//! Chord as research code on the simulator: the state machine ([`node`]), its messages
//! ([`messages`]) and [`ChordProcess`], one Chord vnode as a simulated host.

pub mod messages;
pub mod node;

pub use messages::{ChordMessage, NextHop};
pub use node::{ChordConfig, ChordNode, ChordOutput, LookupResult};

use super::world::{Effect, Process};
use crate::{entry::NodeId, ring::Vnode, Millis};

/// A Chord message with the vnodes it travels between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChordEnvelope {
    /// The sending vnode.
    pub from: Vnode,
    /// The message.
    pub msg: ChordMessage,
}

/// A host running one Chord vnode (the node id is the vnode's node).
#[derive(Debug, Clone)]
pub struct ChordProcess {
    /// The state machine.
    pub node: ChordNode,
}

impl ChordProcess {
    /// Wraps a Chord node.
    pub fn new(node: ChordNode) -> Self {
        ChordProcess { node }
    }
}

impl Process for ChordProcess {
    type Msg = ChordEnvelope;
    type Event = ChordOutput;

    fn start(&mut self, now: Millis) {
        self.node.start(now);
    }

    fn handle(&mut self, now: Millis, _from: NodeId, msg: ChordEnvelope) {
        self.node.handle(now, msg.from, msg.msg);
    }

    fn tick(&mut self, now: Millis) {
        self.node.tick(now);
    }

    fn poll(&mut self) -> Option<Effect<ChordEnvelope, ChordOutput>> {
        let out = self.node.poll_output()?;
        Some(match out {
            ChordOutput::Send { to, msg } => {
                Effect::Send { to: to.node, msg: ChordEnvelope { from: self.node.me(), msg } }
            }
            other => Effect::Event(other),
        })
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.node.next_deadline()
    }
}
