//! Safety checkers: seeded schedules of client operations and faults against a
//! simulated cluster of [`Node`]s, and the rules every read at the end must obey.
//!
//! A [`Workload`] issues random sets and deletes (unique values, a small key space so
//! keys are overwritten) through random nodes while a schedule breaks things: crashes
//! with or without the disk, partitions, long absences past the tombstone grace
//! period, clock skew, message loss and duplication. It records what was acknowledged.
//! After the faults end and the cluster settles, every key is read back and checked
//! against the history ([`Workload::verify`]), with a `quorum` read:
//!
//! - a value read was written by some client (no invented or double-applied data);
//! - a read never returns anything older than the newest acknowledged operation on the
//!   key — so an acknowledged write is never lost, and a deleted value never returns
//!   (a resurrected value carries its old, smaller timestamp);
//! - every replica of a key holds the same entry (convergence), and no replica stores
//!   a live value older than the key's acknowledged delete.
//!
//! Each schedule returns a [`Report`] of what it verified; tests sum them.

use super::{
    node::{memory_cluster, NodeOutput, NodeProcess},
    NetConfig, Sim,
};
use crate::{
    clock::Timestamp,
    entry::NodeId,
    membership::Status,
    proto::{
        client::{Consistency, Op, Reply},
        ClientRequest, ClientResponse,
    },
    store::{MemStore, Store},
    Millis,
};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// A simulated cluster of nodes over stores `S` (memory nodes by default).
pub type Cluster<S = MemStore> = Sim<NodeProcess<S>>;

/// The collection the workloads write.
pub const COLLECTION: &str = "safety";

/// What a schedule (or a sum of schedules) verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Schedules run.
    pub schedules: u64,
    /// Sets acknowledged by the cluster.
    pub sets_acked: u64,
    /// Deletes acknowledged.
    pub deletes_acked: u64,
    /// Operations that failed (quorum not reached, timeouts): allowed, but unknown.
    pub ops_failed: u64,
    /// Keys read back and checked at the end.
    pub keys_checked: u64,
    /// Of those, keys whose newest acknowledged operation was a delete.
    pub deleted_keys_checked: u64,
    /// Replica entries compared for convergence.
    pub replicas_compared: u64,
    /// Crashes that kept the disk, and that lost it.
    pub crashes_with_disk: u64,
    /// Crashes that lost the disk.
    pub crashes_without_disk: u64,
    /// Absences longer than the tombstone grace period.
    pub absences_past_grace: u64,
    /// Partitions healed.
    pub partitions: u64,
    /// Messages lost and duplicated by the network.
    pub messages_lost: u64,
    /// Messages duplicated by the network.
    pub messages_duplicated: u64,
    /// Commits that failed (injected fsync errors, torn commits, failed begins).
    pub commits_failed: u64,
    /// Acknowledgements (replica `WriteAck`s and client `Written`s) checked against the
    /// durable images when they were given.
    pub acks_audited: u64,
    /// Crashes that lost every write not yet committed.
    pub crashes_losing_uncommitted: u64,
    /// Entries dropped by cleaning (after handing them off).
    pub entries_cleaned: u64,
    /// Times every acknowledged write was looked for in the durable images (a power cut
    /// of the whole cluster at that moment would keep it).
    pub power_cut_checks: u64,
}

impl std::fmt::Display for Report {
    /// The counts that are not zero, as `label value` pairs a person can read.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts = [
            ("schedules", self.schedules),
            ("sets acknowledged", self.sets_acked),
            ("deletes acknowledged", self.deletes_acked),
            ("operations failed", self.ops_failed),
            ("keys checked", self.keys_checked),
            ("deleted keys checked", self.deleted_keys_checked),
            ("replica entries compared", self.replicas_compared),
            ("crashes with disk", self.crashes_with_disk),
            ("crashes without disk", self.crashes_without_disk),
            ("absences past the grace period", self.absences_past_grace),
            ("partitions healed", self.partitions),
            ("messages lost", self.messages_lost),
            ("messages duplicated", self.messages_duplicated),
            ("commits failed", self.commits_failed),
            ("acknowledgements audited", self.acks_audited),
            ("crashes losing uncommitted writes", self.crashes_losing_uncommitted),
            ("entries cleaned", self.entries_cleaned),
            ("power-cut checks", self.power_cut_checks),
        ];
        let mut first = true;
        for (label, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
            write!(f, "{}{n} {label}", if first { "" } else { ", " })?;
            first = false;
        }
        Ok(())
    }
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, o: Report) {
        self.schedules += o.schedules;
        self.sets_acked += o.sets_acked;
        self.deletes_acked += o.deletes_acked;
        self.ops_failed += o.ops_failed;
        self.keys_checked += o.keys_checked;
        self.deleted_keys_checked += o.deleted_keys_checked;
        self.replicas_compared += o.replicas_compared;
        self.crashes_with_disk += o.crashes_with_disk;
        self.crashes_without_disk += o.crashes_without_disk;
        self.absences_past_grace += o.absences_past_grace;
        self.partitions += o.partitions;
        self.messages_lost += o.messages_lost;
        self.messages_duplicated += o.messages_duplicated;
        self.commits_failed += o.commits_failed;
        self.acks_audited += o.acks_audited;
        self.crashes_losing_uncommitted += o.crashes_losing_uncommitted;
        self.entries_cleaned += o.entries_cleaned;
        self.power_cut_checks += o.power_cut_checks;
    }
}

/// What the clients know about one key.
#[derive(Debug, Default)]
struct KeyHistory {
    /// The newest acknowledged operation: its timestamp and value (`None`: a delete).
    acked: Option<(Timestamp, Option<Bytes>)>,
    /// Every value ever attempted for the key.
    attempted: BTreeSet<Bytes>,
    /// Whether a delete was attempted and not acknowledged.
    unacked_delete: bool,
}

/// Random client operations and their history.
#[derive(Debug)]
pub struct Workload {
    keys: u64,
    delete_ratio: f64,
    pending: BTreeMap<u64, (Bytes, Option<Bytes>)>,
    history: BTreeMap<Bytes, KeyHistory>,
    next: u64,
    report: Report,
}

impl Workload {
    /// Operations over `keys` keys, a fraction `delete_ratio` of them deletes.
    pub fn new(keys: u64, delete_ratio: f64) -> Self {
        Workload {
            keys,
            delete_ratio,
            pending: BTreeMap::new(),
            history: BTreeMap::new(),
            next: 0,
            report: Report::default(),
        }
    }

    /// Issues one random operation through a random running node.
    pub fn issue<S: Store>(&mut self, sim: &mut Cluster<S>) {
        let running = sim.running();
        let Some(i) = sim.rng().index(running.len()) else { return };
        let node = running[i];
        let key = Bytes::from(format!("k{:03}", sim.rng().below(self.keys)));
        self.next += 1;
        let delete = sim.rng().chance(self.delete_ratio);
        let value = (!delete).then(|| Bytes::from(format!("v{}", self.next)));
        let op = match &value {
            Some(v) => Op::Set {
                collection: COLLECTION.into(),
                key: key.clone(),
                value: v.clone(),
                consistency: Consistency::Quorum,
                ttl_ms: None,
            },
            None => Op::Del {
                collection: COLLECTION.into(),
                key: key.clone(),
                consistency: Consistency::Quorum,
            },
        };
        let id = self.next;
        let h = self.history.entry(key.clone()).or_default();
        match &value {
            Some(v) => {
                h.attempted.insert(v.clone());
            }
            None => h.unacked_delete = true,
        }
        self.pending.insert(id, (key, value));
        sim.act(node, |p, now| p.request(now, 1, ClientRequest { id, op, seen: None }));
    }

    /// Books the replies among the simulator's events.
    pub fn absorb<S: Store>(&mut self, sim: &mut Cluster<S>) {
        for (_, _, e) in sim.take_events() {
            let NodeOutput::Reply { resp: ClientResponse { id, result, .. }, .. } = e else {
                continue;
            };
            let Some((key, value)) = self.pending.remove(&id) else { continue };
            let h = self.history.entry(key).or_default();
            match result {
                Reply::Written { ts } => {
                    if value.is_some() {
                        self.report.sets_acked += 1;
                    } else {
                        self.report.deletes_acked += 1;
                    }
                    if h.acked.as_ref().is_none_or(|(t, _)| ts > *t) {
                        h.acked = Some((ts, value));
                    }
                }
                _ => self.report.ops_failed += 1,
            }
        }
    }

    /// Runs the simulation for `ms`, issuing about one operation every `every` ms.
    pub fn run<S: Store>(&mut self, sim: &mut Cluster<S>, ms: Millis, every: Millis) {
        let end = sim.now() + ms;
        while sim.now() < end {
            if sim.rng().below(every.max(1)) < 25 {
                self.issue(sim);
            }
            sim.run_for(25);
            self.absorb(sim);
        }
    }

    /// Lets requests in flight finish (or time out).
    pub fn drain<S: Store>(&mut self, sim: &mut Cluster<S>) {
        for _ in 0..200 {
            if self.pending.is_empty() {
                break;
            }
            sim.run_for(25);
            self.absorb(sim);
        }
        // Requests to nodes that crashed never answer: they count as failed.
        self.report.ops_failed += self.pending.len() as u64;
        self.pending.clear();
    }

    /// Every key with an acknowledged operation, and the timestamp of its newest one.
    pub(super) fn acknowledged(&self) -> impl Iterator<Item = (&Bytes, Timestamp)> + '_ {
        self.history.iter().filter_map(|(k, h)| h.acked.as_ref().map(|(ts, _)| (k, *ts)))
    }

    /// Reads every key back at `quorum` through a running node and checks it against the
    /// history, then compares the replicas of each key (see `check_replicas` for
    /// `all_nodes`).
    pub fn verify<S: Store>(
        &mut self,
        sim: &mut Cluster<S>,
        all_nodes: bool,
    ) -> Result<Report, String> {
        let keys: Vec<Bytes> = self.history.keys().cloned().collect();
        for key in keys {
            let reply = read(sim, &key)?;
            let h = &self.history[&key];
            check_read(&key, h, &reply)?;
            self.report.keys_checked += 1;
            if matches!(h.acked, Some((_, None))) {
                self.report.deleted_keys_checked += 1;
            }
            self.report.replicas_compared += check_replicas(sim, &key, h, all_nodes)?;
        }
        let stats = sim.stats();
        self.report.messages_lost = stats.lost;
        self.report.messages_duplicated = stats.duplicated;
        self.report.schedules = 1;
        Ok(self.report)
    }
}

/// Reads `key` at consistency `quorum` through a running, serving node.
fn read<S: Store>(
    sim: &mut Cluster<S>,
    key: &Bytes,
) -> Result<(Option<Bytes>, Option<Timestamp>), String> {
    for attempt in 0..5 {
        let serving: Vec<NodeId> = sim
            .processes()
            .filter(|(_, p)| p.node.membership().me().status == Status::Alive)
            .map(|(id, _)| id)
            .collect();
        let Some(&node) = serving.get(attempt % serving.len().max(1)) else {
            return Err("no node serves".into());
        };
        let id = u64::MAX - attempt as u64;
        let op = Op::Get {
            collection: COLLECTION.into(),
            key: key.clone(),
            consistency: Consistency::Quorum,
        };
        sim.act(node, |p, now| p.request(now, 2, ClientRequest { id, op, seen: None }));
        for _ in 0..120 {
            sim.run_for(25);
            for (_, _, e) in sim.take_events() {
                if let NodeOutput::Reply { resp: ClientResponse { id: rid, result, .. }, .. } = e {
                    if rid == id {
                        match result {
                            Reply::Value { value, ts, .. } => return Ok((value, ts)),
                            other if attempt == 4 => {
                                return Err(format!("reading {key:?}: {other:?}"))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    Err(format!("reading {key:?}: no answer"))
}

/// The rules a final read obeys (see the module docs).
fn check_read(
    key: &Bytes,
    h: &KeyHistory,
    (value, ts): &(Option<Bytes>, Option<Timestamp>),
) -> Result<(), String> {
    if let Some(v) = value {
        if !h.attempted.contains(v) {
            return Err(format!("{key:?} reads {v:?}, which no client wrote"));
        }
    }
    let Some((acked_ts, acked)) = &h.acked else { return Ok(()) };
    // Two coordinators can stamp concurrent writes with the same timestamp; the merge
    // then orders them by origin, which a read does not report. So at an equal
    // timestamp any written value (or a delete) may win; only older ones are wrong.
    let ok = match (acked, value) {
        (Some(_), Some(_)) => ts.is_some_and(|t| t >= *acked_ts),
        (Some(_), None) => ts.map_or(h.unacked_delete, |t| t >= *acked_ts),
        (None, Some(_)) => ts.is_some_and(|t| t >= *acked_ts),
        (None, None) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key:?} reads {value:?} at {ts:?}, older than its acknowledged {acked:?} at {acked_ts:?}"
        ))
    }
}

/// Every serving replica of `key` holds the same entry, and none a live value older than
/// an acknowledged delete. Returns how many replicas were compared.
///
/// With `all_nodes`, no node at all may hold such a value (once tombstones were
/// collected, a stale copy anywhere could be handed back); otherwise a node that no
/// longer replicates the key may still hold an old copy until cleaning drops it.
fn check_replicas<S: Store>(
    sim: &Cluster<S>,
    key: &Bytes,
    h: &KeyHistory,
    all_nodes: bool,
) -> Result<u64, String> {
    let mut held = Vec::new();
    for (id, p) in sim.processes() {
        let node = &p.node;
        if node.membership().me().status != Status::Alive {
            continue;
        }
        let pos = node.replica().position(COLLECTION, key);
        let replicas = node.placement_for(COLLECTION).key(pos).owners;
        let entry = node.replica().get(COLLECTION, key).map_err(|e| e.to_string())?;
        let replica = replicas.contains(&id);
        if let (Some(e), Some((t, None))) = (&entry, &h.acked) {
            if e.value.is_some() && e.ts < *t && (replica || all_nodes) {
                return Err(format!(
                    "node {id} (replica: {replica}) holds deleted {key:?} again: {e:?}"
                ));
            }
        }
        if replica {
            held.push((id, entry));
        }
    }
    if held.windows(2).any(|w| w[0].1 != w[1].1) {
        return Err(format!("replicas of {key:?} disagree: {held:?}"));
    }
    Ok(held.len() as u64)
}

/// A cluster of `n` nodes with fast anti-entropy and collection, every node serving.
fn cluster(n: u64, seed: u64, net: NetConfig, grace: Millis) -> Result<Cluster, String> {
    let mut sim = memory_cluster(n as usize, net, seed, |c| {
        c.sync_interval_ms = 3_000;
        c.sync_timeout_ms = 5_000;
        c.gc_interval_ms = 1_000;
        c.tombstone_grace_ms = grace;
    });
    settle(&mut sim, 60_000)?;
    Ok(sim)
}

/// Runs until every running node serves and sees every running node serving.
pub fn settle<S: Store>(sim: &mut Cluster<S>, limit: Millis) -> Result<(), String> {
    let start = sim.now();
    loop {
        let running = sim.running();
        let agreed = sim.processes().all(|(_, p)| {
            p.node.membership().me().status == Status::Alive
                && p.node.membership().alive().map(|m| m.id).collect::<Vec<_>>() == running
        });
        if agreed {
            return Ok(());
        }
        if sim.now() - start > limit {
            return Err(format!("the cluster did not settle within {limit} ms"));
        }
        sim.run_for(100);
    }
}

/// Waits for membership to settle, then for two anti-entropy periods.
pub fn converge<S: Store>(sim: &mut Cluster<S>) -> Result<(), String> {
    settle(sim, 120_000)?;
    sim.run_for(10_000);
    settle(sim, 60_000)
}

/// N = 3, quorum writes; one node crashes at a random moment, with or without its
/// disk, and comes back after a random time or never.
pub fn crash_schedule(seed: u64) -> Result<Report, String> {
    let mut sim = cluster(3 + seed % 3, seed, NetConfig::lan(), 24 * 3_600_000)?;
    let mut w = Workload::new(40, 0.2);
    let before = sim.rng().below(6_000);
    w.run(&mut sim, before, 60);
    let nodes = sim.running();
    let victim = nodes[sim.rng().index(nodes.len()).unwrap_or(0)];
    let keep_disk = sim.rng().chance(0.5);
    let Some(crashed) = sim.crash(victim) else { return Err("victim not running".into()) };
    let down_for = sim.rng().below(20_000);
    let returns = sim.rng().chance(0.8);
    w.run(&mut sim, down_for.min(8_000), 60);
    if returns {
        sim.run_for(down_for.saturating_sub(8_000));
        let back = crashed.restarted(keep_disk).map_err(|e| e.to_string())?;
        sim.restart(victim, back);
        w.run(&mut sim, 4_000, 60);
    }
    w.drain(&mut sim);
    converge(&mut sim)?;
    let mut report = w.verify(&mut sim, false)?;
    if keep_disk {
        report.crashes_with_disk = 1;
    } else {
        report.crashes_without_disk = 1;
    }
    Ok(report)
}

/// Five nodes; the network splits into two random sides a few times while clients
/// write to both; after the last heal the replicas converge and reads return the newest
/// acknowledged operation.
pub fn partition_schedule(seed: u64) -> Result<Report, String> {
    let mut sim = cluster(5, seed, NetConfig::lan(), 24 * 3_600_000)?;
    let mut w = Workload::new(40, 0.2);
    let mut partitions = 0;
    for _ in 0..1 + sim.rng().below(3) {
        let quiet = sim.rng().below(3_000);
        w.run(&mut sim, quiet, 50);
        let mut ids = sim.running();
        sim.rng().shuffle(&mut ids);
        let cut = 1 + sim.rng().index(ids.len() - 1).unwrap_or(0);
        let (a, b) = ids.split_at(cut);
        sim.partition(&[a, b]);
        let lasts = 1_000 + sim.rng().below(30_000);
        w.run(&mut sim, lasts, 50);
        sim.heal();
        partitions += 1;
    }
    w.drain(&mut sim);
    converge(&mut sim)?;
    let mut report = w.verify(&mut sim, false)?;
    report.partitions = partitions;
    Ok(report)
}

/// Deletes that stay deleted: many deletes, clocks skewed within the maximum offset,
/// a short tombstone grace period, and one node away (with its disk) for up to three
/// grace periods, so it often returns holding values whose tombstones were purged.
pub fn delete_schedule(seed: u64) -> Result<Report, String> {
    let grace = 20_000;
    let mut sim = cluster(3 + seed % 2, seed, NetConfig::lan(), grace)?;
    for id in sim.nodes() {
        let skew = sim.rng().below(801) as i64 - 400;
        sim.set_skew(id, skew);
    }
    let mut w = Workload::new(30, 0.4);
    w.run(&mut sim, 3_000, 40);
    let nodes = sim.running();
    let victim = nodes[sim.rng().index(nodes.len()).unwrap_or(0)];
    let Some(crashed) = sim.crash(victim) else { return Err("victim not running".into()) };
    w.run(&mut sim, 5_000, 40);
    let away = sim.rng().below(3 * grace);
    sim.run_for(away);
    sim.restart(victim, crashed.restarted(true).map_err(|e| e.to_string())?);
    w.run(&mut sim, 3_000, 40);
    w.drain(&mut sim);
    converge(&mut sim)?;
    // Let every tombstone pass its grace period and be collected everywhere.
    sim.run_for(grace * 2);
    converge(&mut sim)?;
    let mut report = w.verify(&mut sim, true)?;
    report.crashes_with_disk = 1;
    report.absences_past_grace = u64::from(away > grace);
    Ok(report)
}

/// A lossy network that duplicates messages: nothing acknowledged is lost, nothing is
/// applied twice in a way a reader sees (an older value resurfacing), replicas converge.
pub fn lossy_schedule(seed: u64) -> Result<Report, String> {
    let net = NetConfig::lan().with_loss(0.05).with_duplicates(0.1);
    let mut sim = cluster(4, seed, net, 24 * 3_600_000)?;
    let mut w = Workload::new(40, 0.2);
    w.run(&mut sim, 8_000, 40);
    w.drain(&mut sim);
    let stats = sim.stats();
    // The faults end; the cluster must converge on what happened under them.
    sim.set_net(NetConfig::lan());
    converge(&mut sim)?;
    let mut report = w.verify(&mut sim, false)?;
    report.messages_lost = stats.lost;
    report.messages_duplicated = stats.duplicated;
    Ok(report)
}
