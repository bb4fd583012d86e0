//! [`NodeProcess`]: a whole dhrt [`Node`] as a simulated host.
//!
//! The host behaves like the server's node thread: after every input it begins a
//! commit ([`Node::flush_begin`]) and, when the store returned a job (a disk to wait
//! for), runs it after a commit latency drawn from its [`CommitModel`] and reports the
//! outcome ([`Node::committed`]). Commits end in the order they began. A failed commit
//! drops the ones queued behind it, as the server's sync thread does. An [`Audit`]
//! (optional) checks every acknowledgement the node gives against the durable images of
//! the stores (see [`super::durability`]).

use super::durability::Audit;
use super::{
    cluster::sim_addr,
    net::NetConfig,
    world::{Effect, Process, Sim},
};
use crate::{
    entry::NodeId,
    node::{durability::Commit, ClientId, Node, NodeConfig, NodeEvent, NodeState, Output},
    proto::{
        client::{Op, Reply},
        ClientRequest, ClientResponse, Message,
    },
    rng::Rng,
    store::{
        faulty::{FaultHandle, FaultyStore},
        MemStore, Store, StoreError, SyncJob,
    },
    Millis,
};
use std::collections::VecDeque;

/// How long a simulated host's commits take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommitModel {
    /// Shortest commit latency.
    pub min_ms: Millis,
    /// Longest ordinary commit latency.
    pub max_ms: Millis,
    /// Chance that a commit stalls instead.
    pub stall_chance: f64,
    /// A stall's latency.
    pub stall_ms: Millis,
    /// Emulates the rule the server's driver used to enforce: every output of the node
    /// waits while any commit is under way. For comparison only.
    pub hold_everything: bool,
    /// Emulates the rule before sync session ends were held: a `Done` or an empty step
    /// leaves at once, before the commit of what the session merged. For comparison only.
    pub session_ends_at_once: bool,
}

impl Default for CommitModel {
    /// Instant commits.
    fn default() -> Self {
        CommitModel {
            min_ms: 0,
            max_ms: 0,
            stall_chance: 0.0,
            stall_ms: 0,
            hold_everything: false,
            session_ends_at_once: false,
        }
    }
}

impl CommitModel {
    /// 0–20 ms, and one commit in a hundred stalls for 600 ms (longer than a probe
    /// timeout).
    pub fn disk() -> Self {
        CommitModel { min_ms: 0, max_ms: 20, stall_chance: 0.01, stall_ms: 600, ..Self::default() }
    }

    fn draw(&self, rng: &mut Rng) -> Millis {
        if self.stall_chance > 0.0 && rng.chance(self.stall_chance) {
            return self.stall_ms;
        }
        self.min_ms + rng.below(self.max_ms.saturating_sub(self.min_ms) + 1)
    }
}

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
    /// How long its commits take.
    pub commit_model: CommitModel,
    /// The acknowledgement checker, when one runs.
    pub audit: Option<Audit>,
    /// Commits under way, with when they end, in the order they began.
    commits: VecDeque<(Millis, Commit)>,
    rng: Rng,
}

impl<S: Store> NodeProcess<S> {
    /// A host running `node`.
    pub fn new(node: Node<S>) -> Self {
        let state = node.state().clone();
        let rng = Rng::new(node.config().seed ^ 0xc0ff_ee00_d15c);
        NodeProcess {
            node,
            state,
            seed: None,
            commit_model: CommitModel::default(),
            audit: None,
            commits: VecDeque::new(),
            rng,
        }
    }

    /// The same host, committing as `model` says.
    pub fn with_commits(mut self, model: CommitModel) -> Self {
        self.commit_model = model;
        self
    }

    /// Commits under way.
    pub fn commits_pending(&self) -> usize {
        self.commits.len()
    }

    /// Begins a commit of what the last input wrote; schedules its end.
    fn begin_commit(&mut self, now: Millis) {
        self.node.release_session_ends_at_once(self.commit_model.session_ends_at_once);
        // An error was already handled by the node as a failed commit.
        let Ok(commit) = self.node.flush_begin(now) else { return };
        if commit.job.is_none() {
            return;
        }
        let at = now + self.commit_model.draw(&mut self.rng);
        let at = self.commits.back().map_or(at, |(last, _)| at.max(*last));
        self.commits.push_back((at, commit));
    }

    /// Ends the oldest commit when it is due by `now`; returns whether it did. One at a
    /// time, so that what a commit releases leaves the host before the next commit
    /// changes the durable image (an audit checks acknowledgements as they leave).
    fn end_commit(&mut self, now: Millis) -> bool {
        if self.commits.front().is_none_or(|(at, _)| *at > now) {
            return false;
        }
        let Some((_, Commit { epoch, job })) = self.commits.pop_front() else { return false };
        let result = job.map_or(Ok(()), SyncJob::wait);
        let failed = result.is_err();
        self.node.committed(now, epoch, result);
        if failed {
            // As the server's sync thread: after a failed fsync the queued commits are
            // dropped (the node failed everything they covered).
            self.commits.clear();
        }
        true
    }

    /// The same host, joining through `seed` whenever it starts.
    pub fn joining(mut self, seed: impl Into<String>) -> Self {
        self.seed = Some(seed.into());
        self
    }

    /// Hands a client request to the node (use with [`Sim::act`]).
    pub fn request(&mut self, now: Millis, client: ClientId, req: ClientRequest) {
        if let Some(audit) = &mut self.audit {
            audit.on_request(&self.node, client, &req);
        }
        self.node.handle_client(now, client, req);
        self.begin_commit(now);
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
        if let Some(audit) = &mut self.audit {
            audit.on_peer(&self.node, from, &msg);
        }
        self.node.handle_peer(now, from, msg);
        self.begin_commit(now);
    }

    fn tick(&mut self, now: Millis) {
        if self.end_commit(now) {
            // The node's own timers run at the next wake-up, after the host polled.
            return;
        }
        self.node.tick(now);
        self.begin_commit(now);
    }

    fn poll(&mut self) -> Option<Effect<Message, NodeOutput>> {
        if self.commit_model.hold_everything && !self.commits.is_empty() {
            return None;
        }
        loop {
            let out = self.node.poll_output()?;
            if let Some(audit) = &mut self.audit {
                audit.on_output(&self.node, &out);
            }
            return Some(match out {
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
        let commit = self.commits.front().map(|(at, _)| *at);
        self.node.next_deadline().into_iter().chain(commit).min()
    }
}

/// Sends `op` to `node` (as client 7) and runs the world until the answer arrives, for
/// at most 10 simulated seconds. Other events reported meanwhile are discarded.
pub fn call<S: Store>(sim: &mut Sim<NodeProcess<S>>, node: NodeId, op: Op) -> Option<Reply> {
    let id = sim.rng().next_u64();
    sim.act(node, |p, now| p.request(now, 7, ClientRequest { id, op, seen: None }))?;
    for _ in 0..100 {
        sim.run_for(100);
        for (_, _, e) in sim.take_events() {
            if let NodeOutput::Reply { resp: ClientResponse { id: rid, result, .. }, .. } = e {
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
    cluster_of(n, net, seed, configure, |_| Some(MemStore::new()), |p| p)
}

/// A settled cluster of `n` in-memory nodes labelled by disk — `disk=ssd` on nodes 1, 2
/// and 4, `disk=hdd` on the others — with anti-entropy every 2 s: what collections
/// placed by a selector are tested on.
pub fn ssd_cluster(n: usize, seed: u64) -> Result<Sim<NodeProcess<MemStore>>, String> {
    let mut sim = memory_cluster(n, NetConfig::lan(), seed, |c| {
        c.sync_interval_ms = 2_000;
        c.ring_delay_ms = 1_000;
        let disk = if matches!(c.id.0, 1 | 2 | 4) { "ssd" } else { "hdd" };
        c.labels.insert("disk".into(), disk.into());
    });
    super::safety::settle(&mut sim, 60_000)?;
    Ok(sim)
}

/// As [`memory_cluster`], each node over the store `store` makes for it, each host
/// adjusted by `host` before it starts.
pub fn cluster_of<S: Store>(
    n: usize,
    net: NetConfig,
    seed: u64,
    configure: impl Fn(&mut NodeConfig),
    store: impl Fn(NodeId) -> Option<S>,
    host: impl Fn(NodeProcess<S>) -> NodeProcess<S>,
) -> Sim<NodeProcess<S>> {
    let mut sim = Sim::new(seed, net);
    for i in 1..=n as u64 {
        let id = NodeId(i);
        let mut config = NodeConfig::new(id, sim_addr(id));
        config.seed = seed ^ i.wrapping_mul(0x9e37_79b9);
        configure(&mut config);
        let Some(store) = store(id) else { continue };
        let Ok(node) = Node::new(config, store) else { continue };
        let process = host(NodeProcess::new(node));
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
        self.restarted_with(keep_disk, |_| {})
    }

    /// As [`NodeProcess::restarted`], its configuration changed by `configure` first (a
    /// node restarted with other labels, say).
    pub fn restarted_with(
        self,
        keep_disk: bool,
        configure: impl FnOnce(&mut NodeConfig),
    ) -> Result<Self, StoreError> {
        let mut config = self.node.config().clone();
        configure(&mut config);
        // Fresh randomness for the new life, as above.
        config.seed = config.seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
        let (store, state) = if keep_disk {
            (self.node.into_store(), self.state)
        } else {
            (MemStore::new(), NodeState::default())
        };
        let node = Node::with_state(config, store, state.clone())?;
        let mut p = NodeProcess::new(node).with_commits(self.commit_model);
        p.state = state;
        p.seed = self.seed;
        Ok(p)
    }
}

impl NodeProcess<FaultyStore<MemStore>> {
    /// The host after a crash and restart: a new node with the same configuration, over
    /// what its store had made durable (uncommitted writes are lost) and its saved state
    /// when `keep_disk`, over nothing otherwise. Commit model and audit carry over.
    pub fn restarted(self, keep_disk: bool) -> Result<Self, StoreError> {
        let mut config = self.node.config().clone();
        // A restarted process draws fresh randomness, as a native node does (its seed
        // is random on every start): request numbers of the new life differ.
        config.seed = config.seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
        let handle = self.node.replica().store().handle();
        let (store, state) = if keep_disk {
            (handle.recovered(), self.state)
        } else {
            (FaultyStore::new(MemStore::new())?, NodeState::default())
        };
        let mut audit = self.audit;
        if let Some(audit) = &mut audit {
            audit.restarted(config.id, store.handle());
        }
        let node = Node::with_state(config, store, state.clone())?;
        let mut p = NodeProcess::new(node).with_commits(self.commit_model);
        p.state = state;
        p.seed = self.seed;
        p.audit = audit;
        Ok(p)
    }

    /// The handle on this host's store faults and durable image.
    pub fn faults(&self) -> FaultHandle {
        self.node.replica().store().handle()
    }
}
