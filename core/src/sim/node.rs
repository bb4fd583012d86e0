//! [`NodeProcess`]: a whole dhrt [`Node`] as a simulated host.

use super::{
    cluster::sim_addr,
    net::NetConfig,
    world::{Effect, Process, Sim},
};
use crate::{
    entry::NodeId,
    node::{ClientId, Node, NodeConfig, NodeEvent, NodeState, Output},
    proto::{
        client::{Op, Reply},
        ClientRequest, ClientResponse, Message,
    },
    store::{MemStore, Store, StoreError},
    Millis,
};

/// What a simulated node reports.
// Replies carry whole `NodeStats` (storage health included); boxing them would only
// move the allocation into every simulated reply.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOutput {
    /// An answer to a client.
    Reply {
        /// The client.
        client: ClientId,
        /// The answer.
        resp: ClientResponse,
    },
    /// A node event.
    Event(NodeEvent),
}

/// A host running a [`Node`]: the node, and the state it last asked to persist (its
/// "disk" besides the store).
#[derive(Debug)]
pub struct NodeProcess<S: Store> {
    /// The node.
    pub node: Node<S>,
    /// The last [`Output::Persist`] the node emitted.
    pub state: NodeState,
    /// The address the node joins through whenever its host starts (like a server's
    /// `--join`); `None` for a node that starts a cluster.
    pub seed: Option<String>,
}

impl<S: Store> NodeProcess<S> {
    /// A host running `node`.
    pub fn new(node: Node<S>) -> Self {
        let state = node.state().clone();
        NodeProcess { node, state, seed: None }
    }

    /// The same host, joining through `seed` whenever it starts.
    pub fn joining(mut self, seed: impl Into<String>) -> Self {
        self.seed = Some(seed.into());
        self
    }

    /// Hands a client request to the node (use with [`Sim::act`]).
    pub fn request(&mut self, now: Millis, client: ClientId, req: ClientRequest) {
        self.node.handle_client(now, client, req);
    }
}

impl<S: Store> Process for NodeProcess<S> {
    type Msg = Message;
    type Event = NodeOutput;

    fn start(&mut self, now: Millis) {
        if let Some(seed) = &self.seed {
            self.node.join(now, seed.clone());
        }
    }

    fn handle(&mut self, now: Millis, from: NodeId, msg: Message) {
        self.node.handle_peer(now, from, msg);
    }

    fn tick(&mut self, now: Millis) {
        self.node.tick(now);
    }

    fn poll(&mut self) -> Option<Effect<Message, NodeOutput>> {
        loop {
            return Some(match self.node.poll_output()? {
                Output::Send { to, msg, .. } => Effect::Send { to, msg },
                Output::SendAddr { addr, msg } => {
                    let Some(to) = addr.strip_prefix("sim-").and_then(|s| s.parse().ok()) else {
                        continue;
                    };
                    Effect::Send { to: NodeId(to), msg }
                }
                Output::Reply { client, resp } => Effect::Event(NodeOutput::Reply { client, resp }),
                Output::Persist(state) => {
                    self.state = state;
                    continue;
                }
                Output::Event(e) => Effect::Event(NodeOutput::Event(e)),
            });
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.node.next_deadline()
    }
}

/// Sends `op` to `node` (as client 7) and runs the world until the answer arrives, for
/// at most 10 simulated seconds. Other events reported meanwhile are discarded.
pub fn call<S: Store>(sim: &mut Sim<NodeProcess<S>>, node: NodeId, op: Op) -> Option<Reply> {
    let id = sim.rng().next_u64();
    sim.act(node, |p, now| p.request(now, 7, ClientRequest { id, op }))?;
    for _ in 0..100 {
        sim.run_for(100);
        for (_, _, e) in sim.take_events() {
            if let NodeOutput::Reply { resp: ClientResponse { id: rid, result }, .. } = e {
                if rid == id {
                    return Some(result);
                }
            }
        }
    }
    None
}

/// A converged cluster of `n` in-memory nodes (ids 1..=n) that joined through node 1
/// (node 1 rejoins through node 2 after a restart).
/// `configure` adjusts each node's config.
pub fn memory_cluster(
    n: usize,
    net: NetConfig,
    seed: u64,
    configure: impl Fn(&mut NodeConfig),
) -> Sim<NodeProcess<MemStore>> {
    let mut sim = Sim::new(seed, net);
    for i in 1..=n as u64 {
        let id = NodeId(i);
        let mut config = NodeConfig::new(id, sim_addr(id));
        config.seed = seed ^ i.wrapping_mul(0x9e37_79b9);
        configure(&mut config);
        let Ok(node) = Node::new(config, MemStore::new()) else { continue };
        let process = NodeProcess::new(node);
        let process = if i > 1 { process.joining(sim_addr(NodeId(1))) } else { process };
        sim.add(id, process);
        sim.run_for(20);
    }
    if n > 1 {
        // After a restart, node 1 joins through node 2 like any other member.
        sim.act(NodeId(1), |p, _| p.seed = Some(sim_addr(NodeId(2))));
    }
    let start = sim.now();
    while sim.now() - start < 120_000 {
        let running = sim.running();
        let agreed = sim
            .processes()
            .all(|(_, p)| p.node.membership().alive().map(|m| m.id).collect::<Vec<_>>() == running);
        if agreed {
            break;
        }
        sim.run_for(100);
    }
    sim
}

impl NodeProcess<MemStore> {
    /// The host after a crash and restart: a new node with the same configuration, over
    /// the old store and saved state when `keep_disk`, over nothing otherwise.
    pub fn restarted(self, keep_disk: bool) -> Result<Self, StoreError> {
        let config = self.node.config().clone();
        let (store, state) = if keep_disk {
            (self.node.into_store(), self.state)
        } else {
            (MemStore::new(), NodeState::default())
        };
        let node = Node::with_state(config, store, state.clone())?;
        Ok(NodeProcess { node, state, seed: self.seed })
    }
}
