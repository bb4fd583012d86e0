//! The durability checker: nothing is acknowledged before it is durable.
//!
//! Nodes here run over [`FaultyStore`]s, whose *durable image* is what a crash keeps
//! (see [`crate::store::faulty`]), and their hosts model commit latency and stalls
//! ([`CommitModel`]). An [`Audit`] on each host watches the node's inputs and outputs
//! and checks, at the moment an acknowledgement leaves the node:
//!
//! - a `WriteAck` (without error) for a replica write: the acknowledging node's durable
//!   image holds every entry of that write, or a newer one;
//! - a client's `Written` for a write at consistency W: at least W nodes' durable
//!   images hold each key's entry (or a newer one).
//!
//! [`commit_schedule`] runs a [`Workload`] under commit latency and stalls, injected
//! fsync failures, torn commits, failed commit begins and crashes that lose every
//! uncommitted write; then it checks the audit and the usual end-of-run rules
//! ([`Workload::verify`]). [`stall_schedule`] shows a disk stall longer than the probe
//! timeout does not get a node suspected: only acknowledgements wait for the disk.

use super::{
    node::{cluster_of, CommitModel, NodeOutput, NodeProcess},
    safety::{converge, settle, Cluster, Report, Workload},
    NetConfig,
};
use crate::{
    clock::Timestamp,
    entry::NodeId,
    hash::Position,
    membership::{MembershipEvent, Status},
    node::{ClientId, Node, NodeEvent, Output},
    proto::{
        client::{Op, Reply},
        ClientRequest, Message, ReplicaMessage,
    },
    store::{
        faulty::{FaultHandle, FaultyStore},
        MemStore, Store,
    },
};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A simulated cluster of nodes over fault-injecting stores.
pub type DurableCluster = Cluster<FaultyStore<MemStore>>;

/// Every node's fault handle, through which its durable image is read.
#[derive(Debug, Clone, Default)]
pub struct Images(Arc<Mutex<BTreeMap<NodeId, FaultHandle>>>);

impl Images {
    fn set(&self, id: NodeId, handle: FaultHandle) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id, handle);
    }

    fn get(&self, id: NodeId) -> Option<FaultHandle> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    /// Forgets `id` (a node that left and was removed: its disk is gone).
    fn remove(&self, id: NodeId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// How many nodes durably hold `key` at `ts` or newer.
    fn holding(&self, collection: &str, pos: Position, key: &[u8], ts: Timestamp) -> usize {
        let images = self.0.lock().unwrap_or_else(|e| e.into_inner());
        images
            .values()
            .filter(|h| h.durable_get(collection, pos, key).is_some_and(|e| e.ts >= ts))
            .count()
    }
}

/// One key of a write: where it lives and what must be durable.
type Written = (Position, Bytes, Timestamp);

/// A replica write received: its collection and keys.
type ReplicaWrite = (String, Vec<Written>);

/// A client write coordinated here: its collection, and each key with its position and
/// the durable copies it needs.
type Planned = (String, Vec<(Position, Bytes, usize)>);

/// The acknowledgement checker of one host (see the module docs).
#[derive(Debug)]
pub struct Audit {
    me: NodeId,
    images: Images,
    /// Replica writes received and not yet acknowledged, by (coordinator, request),
    /// oldest first: a coordinator that restarted numbers its requests from 1 again, so
    /// a held acknowledgement of its previous life can share a number with a new write.
    writes: BTreeMap<(NodeId, u64), VecDeque<ReplicaWrite>>,
    /// Client writes coordinated here: collection, keys with their positions and the
    /// acknowledgements each needs.
    requests: BTreeMap<(ClientId, u64), Planned>,
    /// What went wrong.
    pub violations: Vec<String>,
    /// Acknowledgements checked.
    pub checked: u64,
}

impl Audit {
    /// An audit of node `me`, reading durable images through `images`.
    pub fn new(me: NodeId, images: Images) -> Self {
        Audit {
            me,
            images,
            writes: BTreeMap::new(),
            requests: BTreeMap::new(),
            violations: Vec::new(),
            checked: 0,
        }
    }

    /// A client request reaches the node.
    pub fn on_request<S: Store>(&mut self, node: &Node<S>, client: ClientId, req: &ClientRequest) {
        let (collection, keys, consistency) = match &req.op {
            Op::Set { collection, key, consistency, .. }
            | Op::Del { collection, key, consistency } => {
                (collection, vec![key.clone()], *consistency)
            }
            Op::SetMany { collection, items, consistency, .. } => {
                (collection, items.iter().map(|(k, _)| k.clone()).collect(), *consistency)
            }
            _ => return,
        };
        let level = node.consistency_for(collection, consistency);
        let mut planned = Vec::new();
        for key in keys {
            let pos = node.replica().position(collection, &key);
            let n = node.placement_for(collection).key(pos).owners.len();
            let Ok(required) = level.required(n) else { return };
            planned.push((pos, key, required));
        }
        self.requests.insert((client, req.id), (collection.clone(), planned));
    }

    /// A peer message reaches the node.
    pub fn on_peer<S: Store>(&mut self, node: &Node<S>, from: NodeId, msg: &Message) {
        if let Message::Replica(ReplicaMessage::Write { req, collection, records }) = msg {
            let keys = records
                .iter()
                .map(|(k, e)| (node.replica().position(collection, k), k.clone(), e.ts))
                .collect();
            self.writes.entry((from, *req)).or_default().push_back((collection.clone(), keys));
        }
    }

    /// The node lets `out` go.
    pub fn on_output<S: Store>(&mut self, _node: &Node<S>, out: &Output) {
        match out {
            Output::Send {
                to,
                msg: Message::Replica(ReplicaMessage::WriteAck { req, error, .. }),
                ..
            } => {
                let Some(queue) = self.writes.get_mut(&(*to, *req)) else { return };
                let Some((collection, keys)) = queue.pop_front() else { return };
                if queue.is_empty() {
                    self.writes.remove(&(*to, *req));
                }
                if error.is_some() {
                    return;
                }
                self.checked += 1;
                let Some(image) = self.images.get(self.me) else { return };
                for (pos, key, ts) in keys {
                    if image.durable_get(&collection, pos, &key).is_none_or(|e| e.ts < ts) {
                        self.violations.push(format!(
                            "node {} acknowledged {key:?} at {ts:?} to {to} before it was durable",
                            self.me
                        ));
                    }
                }
            }
            Output::Reply { client, resp } => {
                let Some((collection, keys)) = self.requests.remove(&(*client, resp.id)) else {
                    return;
                };
                let Reply::Written { ts } = resp.result else { return };
                self.checked += 1;
                for (pos, key, required) in keys {
                    let durable = self.images.holding(&collection, pos, &key, ts);
                    if durable < required {
                        self.violations.push(format!(
                            "node {} answered Written for {key:?} at {ts:?} with {durable} durable \
                             copies, {required} required",
                            self.me
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    /// The host restarted over the store `handle` belongs to: what was in flight is gone.
    pub fn restarted(&mut self, me: NodeId, handle: FaultHandle) {
        self.images.set(me, handle);
        self.writes.clear();
        self.requests.clear();
    }
}

/// A cluster of `n` nodes over fault-injecting stores committing as `model` says, each
/// audited, every node serving.
pub fn durable_cluster(
    n: u64,
    seed: u64,
    net: NetConfig,
    model: CommitModel,
) -> Result<(DurableCluster, Images), String> {
    let images = Images::default();
    let mut sim = cluster_of(
        n as usize,
        net,
        seed,
        |c| {
            c.sync_interval_ms = 3_000;
            c.sync_timeout_ms = 5_000;
            c.gc_interval_ms = 1_000;
        },
        |_| FaultyStore::new(MemStore::new()).ok(),
        |p: NodeProcess<FaultyStore<MemStore>>| {
            let id = p.node.id();
            images.set(id, p.faults());
            let mut p = p.with_commits(model);
            p.audit = Some(Audit::new(id, images.clone()));
            p
        },
    );
    settle(&mut sim, 60_000)?;
    Ok((sim, images))
}

/// The audit's findings over every running host (a restarted host keeps its audit).
fn audit(sim: &DurableCluster) -> Result<u64, String> {
    let audits = sim.processes().filter_map(|(_, p)| p.audit.as_ref());
    let mut checked = 0;
    for a in audits {
        if let Some(v) = a.violations.first() {
            return Err(format!("{v} ({} violations on this node)", a.violations.len()));
        }
        checked += a.checked;
    }
    Ok(checked)
}

/// N = 3 and quorum writes on 3 to 5 nodes whose commits take 0–20 ms and sometimes
/// stall; meanwhile fsyncs fail, commits tear, commit begins fail, and nodes crash,
/// losing what they had not committed. Every acknowledgement is audited when given; at
/// the end the usual rules hold.
pub fn commit_schedule(seed: u64) -> Result<Report, String> {
    let (mut sim, _images) =
        durable_cluster(3 + seed % 3, seed, NetConfig::lan(), CommitModel::disk())?;
    let mut w = Workload::new(40, 0.2);
    let mut report = Report::default();
    for _ in 0..4 {
        let quiet = sim.rng().below(3_000);
        w.run(&mut sim, quiet, 40);
        let running = sim.running();
        let Some(i) = sim.rng().index(running.len()) else { break };
        let victim = running[i];
        match sim.rng().below(4) {
            0 => arm(&sim, victim, |f| f.failing_syncs += 1),
            1 => arm(&sim, victim, |f| f.torn_syncs += 1),
            2 => arm(&sim, victim, |f| f.failing_begins += 1),
            _ => {
                // A crash keeps the durable image and loses the rest. (Losing a whole disk
                // is `safety::crash_schedule`'s business: on top of nodes re-syncing after
                // failed commits it would exceed what N = 3 tolerates.)
                let Some(crashed) = sim.crash(victim) else { continue };
                let down = sim.rng().below(5_000);
                w.run(&mut sim, down, 40);
                let back = crashed.restarted(true).map_err(|e| e.to_string())?;
                report.crashes_losing_uncommitted += 1;
                sim.restart(victim, back);
            }
        }
    }
    w.run(&mut sim, 2_000, 40);
    w.drain(&mut sim);
    report.commits_failed = sim.processes().map(|(_, p)| p.node.commits().failed).sum();
    audit(&sim)?;
    converge(&mut sim)?;
    let mut total = w.verify(&mut sim, false)?;
    report.acks_audited = audit(&sim)?;
    total.commits_failed = report.commits_failed;
    total.acks_audited = report.acks_audited;
    total.crashes_losing_uncommitted = report.crashes_losing_uncommitted;
    Ok(total)
}

fn arm(sim: &DurableCluster, id: NodeId, f: impl FnOnce(&mut crate::store::faulty::Faults)) {
    if let Some(p) = sim.process(id) {
        p.faults().arm(f);
    }
}

/// What [`stall_schedule`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StallReport {
    /// Times another node marked the stalled node suspect (or dead).
    pub suspected: u64,
    /// Writes acknowledged to clients during the stall.
    pub written: u64,
    /// Commits the stalled node began.
    pub commits: u64,
}

/// Three nodes; node 2's every commit takes 1.5–2.5 s (five to eight probe timeouts)
/// while clients write through all three for 20 s. Counts how often the others suspect
/// node 2. With `hold_everything` the host holds every output while a commit is under
/// way — the rule the server's driver used to enforce — for comparison.
pub fn stall_schedule(seed: u64, hold_everything: bool) -> Result<StallReport, String> {
    let (mut sim, _) = durable_cluster(3, seed, NetConfig::lan(), CommitModel::default())?;
    let stalled = NodeId(2);
    let slow = CommitModel {
        min_ms: 1_500,
        max_ms: 2_500,
        stall_chance: 0.0,
        stall_ms: 0,
        hold_everything,
        ..CommitModel::default()
    };
    sim.act(stalled, |p, _| p.commit_model = slow);
    sim.take_events();
    let mut w = Workload::new(40, 0.0);
    let mut report = StallReport::default();
    let end = sim.now() + 20_000;
    while sim.now() < end {
        w.issue(&mut sim);
        sim.run_for(20);
        for (_, node, e) in sim.take_events() {
            match e {
                NodeOutput::Event(NodeEvent::Membership(MembershipEvent::StatusChanged {
                    id,
                    to: Status::Suspect | Status::Dead,
                    ..
                })) if id == stalled && node != stalled => report.suspected += 1,
                NodeOutput::Reply { resp, .. } if matches!(resp.result, Reply::Written { .. }) => {
                    report.written += 1
                }
                _ => {}
            }
        }
    }
    report.commits = sim.process(stalled).map_or(0, |p| p.node.commits().begun);
    audit(&sim)?;
    Ok(report)
}

/// The disk of the nodes that join in [`handoff_schedule`]: commits of 10–150 ms, and
/// one in twenty stalls for 1.5 s — longer than a sync session's round trips, so
/// sessions that merged data into such a node end long before its commit would.
pub fn slow_disk() -> CommitModel {
    CommitModel {
        min_ms: 10,
        max_ms: 150,
        stall_chance: 0.05,
        stall_ms: 1_500,
        ..CommitModel::default()
    }
}

/// What [`handoff_schedule`] drives: the cluster, the durable images, the workload, and
/// the nodes crashed with when they come back.
struct Churn {
    sim: DurableCluster,
    images: Images,
    w: Workload,
    down: Vec<(crate::Millis, NodeId, NodeProcess<FaultyStore<MemStore>>)>,
    /// A node that must not crash (one leaving).
    spared: Option<NodeId>,
    report: Report,
    /// Durability checks of every acknowledged write.
    checks: u64,
}

impl Churn {
    /// Every acknowledged write is in at least one durable image: a power cut of the
    /// whole cluster now would not lose it.
    fn check(&mut self, when: &str) -> Result<(), String> {
        let Some(node) = self.sim.processes().next().map(|(_, p)| &p.node) else {
            return Ok(());
        };
        self.checks += 1;
        for (key, ts) in self.w.acknowledged() {
            let pos = node.replica().position(super::safety::COLLECTION, key);
            if self.images.holding(super::safety::COLLECTION, pos, key, ts) == 0 {
                return Err(format!(
                    "{when}: no node durably holds acknowledged {key:?} at {ts:?} (t = {} ms)",
                    self.sim.now()
                ));
            }
        }
        Ok(())
    }

    /// Runs the workload for `ms` in slices; after each slice checks the acknowledged
    /// writes, brings back crashed nodes that are due, and now and then crashes a
    /// running node (one at a time), which loses what it had not committed.
    fn run(&mut self, ms: crate::Millis, when: &str) -> Result<(), String> {
        let end = self.sim.now() + ms;
        while self.sim.now() < end {
            let slice = 100 + self.sim.rng().below(400);
            self.w.run(&mut self.sim, slice, 40);
            self.check(when)?;
            self.restart_due(false)?;
            if self.down.is_empty() && self.sim.rng().chance(0.02) {
                let running: Vec<NodeId> =
                    self.sim.running().into_iter().filter(|id| Some(*id) != self.spared).collect();
                let Some(i) = self.sim.rng().index(running.len()) else { continue };
                let victim = running[i];
                if let Some(crashed) = self.sim.crash(victim) {
                    self.report.entries_cleaned += crashed.node.anti_entropy().cleaned();
                    // Down for longer than any commit takes here: a restarted
                    // coordinator numbers its requests from 1 again, and a held
                    // acknowledgement of its previous life must not meet a new request
                    // of the same number (the audit matches them by number, as the
                    // coordinator does).
                    let back = self.sim.now() + 5_000 + self.sim.rng().below(3_000);
                    self.down.push((back, victim, crashed));
                    self.report.crashes_losing_uncommitted += 1;
                }
            }
        }
        Ok(())
    }

    /// Restarts the crashed nodes that are due (all of them with `all`) from their
    /// durable images.
    fn restart_due(&mut self, all: bool) -> Result<(), String> {
        let now = self.sim.now();
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.down).into_iter().partition(|(at, _, _)| all || *at <= now);
        self.down = later;
        for (_, id, crashed) in due {
            let back = crashed.restarted(true).map_err(|e| e.to_string())?;
            self.sim.restart(id, back);
        }
        Ok(())
    }

    /// Runs until `done` holds, for at most `limit` ms.
    fn run_until(
        &mut self,
        limit: crate::Millis,
        when: &str,
        done: impl Fn(&DurableCluster) -> bool,
    ) -> Result<(), String> {
        let end = self.sim.now() + limit;
        while !done(&self.sim) {
            if self.sim.now() > end {
                let states: Vec<String> = self
                    .sim
                    .processes()
                    .map(|(id, p)| {
                        let n = &p.node;
                        format!(
                            "{id}: {:?} joining={} handoff={:?} counts={:?} last_full={:?}",
                            n.membership().me().status,
                            n.membership().me().joining,
                            n.anti_entropy().handoff(),
                            n.sessions().counts(),
                            n.state().last_full_sync_ms
                        )
                    })
                    .collect();
                return Err(format!("{when}: not done within {limit} ms; {}", states.join("; ")));
            }
            self.run(500, when)?;
        }
        Ok(())
    }

    /// Adds node `id` over a fault-injecting store committing as `model`, audited,
    /// joining through a random running node.
    fn join(&mut self, id: NodeId, seed: u64, model: CommitModel) -> Result<(), String> {
        let running = self.sim.running();
        let through = running[self.sim.rng().index(running.len()).ok_or("no node runs")?];
        let mut config = crate::node::NodeConfig::new(id, super::sim_addr(id));
        config.seed = seed ^ id.0.wrapping_mul(0x9e37_79b9);
        config.sync_interval_ms = 3_000;
        config.sync_timeout_ms = 5_000;
        config.gc_interval_ms = 1_000;
        let store = FaultyStore::new(MemStore::new()).map_err(|e| e.to_string())?;
        let node = Node::new(config, store).map_err(|e| e.to_string())?;
        let mut p = NodeProcess::new(node).with_commits(model).joining(super::sim_addr(through));
        self.images.set(id, p.faults());
        p.audit = Some(Audit::new(id, self.images.clone()));
        self.sim.add(id, p);
        Ok(())
    }
}

/// Whether node `id` runs and serves.
fn serving(sim: &DurableCluster, id: NodeId) -> bool {
    sim.process(id).is_some_and(|p| p.node.membership().me().status == Status::Alive)
}

/// Hand-off and cleaning under commit latency, stalls and crashes. Three nodes take
/// writes; three more join one by one over slow disks ([`slow_disk`]), so ranges move
/// wholly to new nodes and their old owners hand them off and clean them; then a random
/// node leaves gracefully and is removed with its disk. Meanwhile a random node now and
/// then crashes, losing what it had not committed, and restarts from its durable image.
/// After every slice of time every acknowledged write must be in at least one durable
/// image; at the end every node crashes and restarts from its image, and the usual
/// end-of-run rules hold ([`Workload::verify`]).
///
/// `session_ends_at_once` lets sync session ends leave before their commit (the rule
/// before they were held; [`CommitModel::session_ends_at_once`]), for comparison.
pub fn handoff_schedule(seed: u64, session_ends_at_once: bool) -> Result<Report, String> {
    let first = CommitModel { session_ends_at_once, ..CommitModel::disk() };
    let (sim, images) = durable_cluster(3, seed, NetConfig::lan(), first)?;
    let mut c = Churn {
        sim,
        images,
        w: Workload::new(60, 0.2),
        down: Vec::new(),
        spared: None,
        report: Report::default(),
        checks: 0,
    };
    c.run(3_000, "writing to 3 nodes")?;
    for id in 4..=6 {
        let id = NodeId(id);
        c.join(id, seed, CommitModel { session_ends_at_once, ..slow_disk() })?;
        c.run_until(90_000, "joining", |sim| serving(sim, id))?;
        // Two anti-entropy periods: the old owners hand off and clean.
        let cleaning = 6_000 + c.sim.rng().below(3_000);
        c.run(cleaning, "cleaning after a join")?;
    }
    c.restart_due(true)?;
    settle(&mut c.sim, 60_000)?;
    let running = c.sim.running();
    let leaver = running[c.sim.rng().index(running.len()).ok_or("no node runs")?];
    c.spared = Some(leaver);
    c.sim.act(leaver, |p, now| p.node.leave(now));
    c.run_until(90_000, "leaving", |sim| sim.process(leaver).is_none_or(|p| p.node.left()))?;
    // Requests the leaver took part in finish before it goes: its acknowledgements
    // counted towards their quorums (see the docs on leaving).
    c.w.drain(&mut c.sim);
    audit(&c.sim)?;
    if let Some(p) = c.sim.remove(leaver) {
        c.report.entries_cleaned += p.node.anti_entropy().cleaned();
    }
    c.images.remove(leaver);
    c.check("the leaver removed")?;
    // Whoever joins through the leaver after a restart joins through another node.
    let others = c.sim.nodes();
    let other = *others.iter().find(|id| **id != leaver).ok_or("no node left")?;
    for id in others {
        c.sim.act(id, |p, _| {
            if p.seed.as_deref() == Some(&super::sim_addr(leaver)) {
                p.seed = Some(super::sim_addr(other));
            }
        });
    }
    for (_, _, p) in &mut c.down {
        if p.seed.as_deref() == Some(&super::sim_addr(leaver)) {
            p.seed = Some(super::sim_addr(other));
        }
    }
    c.spared = None;
    c.run(6_000, "cleaning after the leave")?;
    c.restart_due(true)?;
    c.w.drain(&mut c.sim);
    c.check("drained")?;
    audit(&c.sim)?;
    // A power cut of the whole cluster: every node restarts from its durable image.
    let cleaned: u64 = c.report.entries_cleaned
        + c.sim.processes().map(|(_, p)| p.node.anti_entropy().cleaned()).sum::<u64>();
    let crashed: Vec<_> =
        c.sim.running().into_iter().filter_map(|id| Some((id, c.sim.crash(id)?))).collect();
    for (id, p) in crashed {
        let back = p.restarted(true).map_err(|e| e.to_string())?;
        c.sim.restart(id, back);
    }
    // Sessions with the slow disks end only when those commit: give anti-entropy a few
    // more periods than the other schedules do.
    converge(&mut c.sim)?;
    c.sim.run_for(20_000);
    converge(&mut c.sim)?;
    let mut total = c.w.verify(&mut c.sim, false)?;
    total.acks_audited = audit(&c.sim)?;
    total.crashes_losing_uncommitted = c.report.crashes_losing_uncommitted;
    total.commits_failed = c.sim.processes().map(|(_, p)| p.node.commits().failed).sum();
    total.entries_cleaned = cleaned;
    total.power_cut_checks = c.checks;
    Ok(total)
}
