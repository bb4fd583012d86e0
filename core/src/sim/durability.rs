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
use std::collections::BTreeMap;
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

/// A client write coordinated here: its collection, and each key with its position and
/// the durable copies it needs.
type Planned = (String, Vec<(Position, Bytes, usize)>);

/// The acknowledgement checker of one host (see the module docs).
#[derive(Debug)]
pub struct Audit {
    me: NodeId,
    images: Images,
    /// Replica writes received and not yet acknowledged, by (coordinator, request).
    writes: BTreeMap<(NodeId, u64), (String, Vec<Written>)>,
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
            let n = node.table().preference_list(pos, node.config().replicas.max(1)).len();
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
            self.writes.insert((from, *req), (collection.clone(), keys));
        }
    }

    /// The node lets `out` go.
    pub fn on_output<S: Store>(&mut self, _node: &Node<S>, out: &Output) {
        match out {
            Output::Send {
                to,
                msg: Message::Replica(ReplicaMessage::WriteAck { req, error }),
                ..
            } => {
                let Some((collection, keys)) = self.writes.remove(&(*to, *req)) else { return };
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
