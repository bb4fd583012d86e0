//! The strict-quorum checker: concurrent clients read and write keys at `quorum` through
//! random coordinators while the cluster changes under them, and every read must return
//! the last acknowledged write of its key or a newer one.
//!
//! Each key is a register. The history records, for every operation, when it was
//! invoked and when it completed (simulated time) and how: acknowledged, refused, or
//! unknown (a timeout or a `quorum_not_reached` may have been stored anyway: such a write
//! may take effect at any time after it was invoked). A read is legal when it returns
//! the value of a write (or the absence a delete left, or the initial absence) that
//!
//! - was invoked before the read completed and was not refused, and
//! - was not *superseded* before the read began: no acknowledged write began after it was
//!   acknowledged and was itself acknowledged before the read began.
//!
//! So a write acknowledged before another began can never be read once the second is
//! acknowledged — an acknowledged write is never undone by an older one, whatever the
//! coordinators' clocks — and a read never misses a write acknowledged before it began.
//! Values are unique, so a read names the write it saw. The same rule checks the final
//! state once the faults end and anti-entropy has run.
//!
//! [`register_schedule`] runs it under joins, graceful leaves, removals of dead members,
//! crashes with and without
//! the disk, partitions and heals, clocks skewed ahead and behind within the maximum
//! offset, and one clock beyond it (that node must stop coordinating writes).

use super::{
    node::{memory_cluster, NodeOutput, NodeProcess},
    safety::{converge, Cluster},
    sim_addr, NetConfig,
};
use crate::{
    catalogue::{CollectionSettings, Layout, CATALOGUE_COLLECTION},
    entry::NodeId,
    membership::Status,
    node::{Node, NodeConfig},
    proto::{
        client::{Consistency, ErrorCode, Op, Reply},
        ClientRequest, ClientResponse,
    },
    store::MemStore,
    Millis,
};
use bytes::Bytes;
use std::collections::BTreeMap;

/// The collection the checker writes.
pub const COLLECTION: &str = "register";

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Still waiting (the node crashed, or the run ended): unknown.
    Pending,
    /// A write acknowledged; a read answered with this value (`None`: absent).
    Ok(Option<Bytes>),
    /// Refused before anything was written.
    Refused,
    /// Failed in a way that may have written (timeouts, quorum not reached).
    Unknown,
}

#[derive(Debug, Clone)]
struct Operation {
    key: Bytes,
    /// A write's value (`None`: a delete), or `None` for a read.
    write: Option<Option<Bytes>>,
    invoked: Millis,
    completed: Millis,
    outcome: Outcome,
    node: NodeId,
}

/// What a run checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegisterReport {
    /// Schedules run.
    pub schedules: u64,
    /// Writes and deletes acknowledged.
    pub writes_acked: u64,
    /// Reads answered and checked.
    pub reads_checked: u64,
    /// Operations refused or failed (allowed, counted).
    pub ops_failed: u64,
    /// Faults injected (crashes, partitions, joins, leaves, skews).
    pub faults: u64,
}

impl std::ops::AddAssign for RegisterReport {
    fn add_assign(&mut self, o: Self) {
        self.schedules += o.schedules;
        self.writes_acked += o.writes_acked;
        self.reads_checked += o.reads_checked;
        self.ops_failed += o.ops_failed;
        self.faults += o.faults;
    }
}

/// Concurrent random reads and writes, and their history.
#[derive(Debug, Default)]
pub struct History {
    ops: BTreeMap<u64, Operation>,
    next: u64,
    keys: u64,
    /// What the schedule did, with when, for the failure message.
    log: Vec<String>,
}

impl History {
    /// A history over `keys` keys.
    pub fn new(keys: u64) -> Self {
        History { keys, ..History::default() }
    }

    /// Issues one random operation (40% reads, 15% deletes) through a random running
    /// node.
    pub fn issue(&mut self, sim: &mut Cluster) {
        let running = sim.running();
        let Some(i) = sim.rng().index(running.len()) else { return };
        let node = running[i];
        let key = Bytes::from(format!("r{:02}", sim.rng().below(self.keys.max(1))));
        self.next += 1;
        let id = self.next;
        let roll = sim.rng().below(100);
        let collection = COLLECTION.to_string();
        let consistency = Consistency::Quorum;
        let (op, write) = if roll < 40 {
            (Op::Get { collection, key: key.clone(), consistency }, None)
        } else if roll < 55 {
            (Op::Del { collection, key: key.clone(), consistency }, Some(None))
        } else {
            let value = Bytes::from(format!("v{id}"));
            let op = Op::Set {
                collection,
                key: key.clone(),
                value: value.clone(),
                consistency,
                ttl_ms: None,
            };
            (op, Some(Some(value)))
        };
        let now = sim.now();
        let operation =
            Operation { key, write, invoked: now, completed: 0, outcome: Outcome::Pending, node };
        self.ops.insert(id, operation);
        sim.act(node, |p, now| p.request(now, 1, ClientRequest { id, op, seen: None }));
    }

    /// Books the replies among the simulator's events.
    pub fn absorb(&mut self, sim: &mut Cluster) {
        let now = sim.now();
        for (_, _, e) in sim.take_events() {
            let NodeOutput::Reply { resp: ClientResponse { id, result, .. }, .. } = e else {
                continue;
            };
            let Some(op) = self.ops.get_mut(&id).filter(|o| o.outcome == Outcome::Pending) else {
                continue;
            };
            op.completed = now;
            op.outcome = match (result, &op.write) {
                (Reply::Written { .. }, Some(v)) => Outcome::Ok(v.clone()),
                (Reply::Value { value, .. }, None) => Outcome::Ok(value),
                // Refused before anything was sent: no replica can hold it.
                (
                    Reply::Error { code: ErrorCode::Unavailable | ErrorCode::InvalidInput, .. },
                    _,
                ) => Outcome::Refused,
                _ => Outcome::Unknown,
            };
        }
    }

    /// Runs for `ms`, issuing about one operation every `every` ms.
    pub fn run(&mut self, sim: &mut Cluster, ms: Millis, every: Millis) {
        let end = sim.now() + ms;
        while sim.now() < end {
            if sim.rng().below(every.max(1)) < 20 {
                self.issue(sim);
            }
            sim.run_for(20);
            self.absorb(sim);
        }
    }

    /// Splits `running` into two random sides for `ms` while the workload runs, then
    /// heals.
    pub fn partition_for(&mut self, sim: &mut Cluster, running: &[NodeId], ms: Millis) {
        let mut ids = running.to_vec();
        sim.rng().shuffle(&mut ids);
        let cut = 1 + sim.rng().index(ids.len() - 1).unwrap_or(0);
        let (a, b) = ids.split_at(cut);
        sim.partition(&[a, b]);
        self.note(sim.now(), format!("partition {a:?} | {b:?}"));
        self.run(sim, ms, 30);
        sim.heal();
        self.note(sim.now(), "heal".into());
    }

    /// Notes a fault in the log a failure prints.
    pub fn note(&mut self, now: Millis, what: String) {
        self.log.push(format!("{now} ms: {what}"));
    }

    /// Operations that never completed become unknown (their node crashed).
    fn close(&mut self, now: Millis) {
        for op in self.ops.values_mut().filter(|o| o.outcome == Outcome::Pending) {
            op.outcome = Outcome::Unknown;
            op.completed = now;
        }
    }

    /// Checks every read of the history; then, after the faults, reads every key at
    /// `quorum` once more and checks those too.
    pub fn verify(&mut self, sim: &mut Cluster) -> Result<RegisterReport, String> {
        for _ in 0..150 {
            sim.run_for(20);
            self.absorb(sim);
        }
        self.close(sim.now());
        converge(sim)?;
        let keys: Vec<Bytes> = (0..self.keys).map(|k| Bytes::from(format!("r{k:02}"))).collect();
        for key in keys {
            let value = final_read(sim, &key)?;
            self.next += 1;
            let now = sim.now();
            let op = Operation {
                key,
                write: None,
                invoked: now,
                completed: now,
                outcome: Outcome::Ok(value),
                node: NodeId(0),
            };
            self.ops.insert(self.next, op);
        }
        let mut report = RegisterReport { schedules: 1, ..RegisterReport::default() };
        let mut by_key: BTreeMap<&Bytes, Vec<&Operation>> = BTreeMap::new();
        for op in self.ops.values() {
            by_key.entry(&op.key).or_default().push(op);
        }
        for ops in by_key.values() {
            let writes: Vec<&&Operation> = ops.iter().filter(|o| o.write.is_some()).collect();
            report.writes_acked +=
                writes.iter().filter(|w| matches!(w.outcome, Outcome::Ok(_))).count() as u64;
            report.ops_failed += ops
                .iter()
                .filter(|o| matches!(o.outcome, Outcome::Refused | Outcome::Unknown))
                .count() as u64;
            for read in ops.iter().filter(|o| o.write.is_none()) {
                let Outcome::Ok(seen) = &read.outcome else { continue };
                check_read(read, seen, &writes).map_err(|e| {
                    let recent: Vec<String> = ops
                        .iter()
                        .filter(|o| {
                            o.invoked + 3_000 >= read.invoked && o.invoked <= read.completed
                        })
                        .map(|o| {
                            format!(
                                "{} {:?} via {} {}..{} {:?}",
                                if o.write.is_some() { "write" } else { "read" },
                                o.write,
                                o.node,
                                o.invoked,
                                o.completed,
                                o.outcome
                            )
                        })
                        .collect();
                    format!(
                        "{e}; faults: {}; the key's operations around it: {}",
                        self.log.join(", "),
                        recent.join(" | ")
                    )
                })?;
                report.reads_checked += 1;
            }
        }
        Ok(report)
    }
}

/// Whether `read`, which returned `seen`, is legal given the key's `writes`.
fn check_read(
    read: &Operation,
    seen: &Option<Bytes>,
    writes: &[&&Operation],
) -> Result<(), String> {
    let acked = |w: &Operation| matches!(w.outcome, Outcome::Ok(_));
    // Some acknowledged write began after `w` was acknowledged and was acknowledged
    // itself before the read began.
    let superseded = |w: &Operation| {
        acked(w)
            && writes
                .iter()
                .any(|o| acked(o) && o.invoked > w.completed && o.completed < read.invoked)
    };
    let candidates = writes
        .iter()
        .filter(|w| w.outcome != Outcome::Refused && w.invoked <= read.completed && !superseded(w));
    let mut legal = false;
    for w in candidates {
        if w.write.as_ref() == Some(seen) {
            legal = true;
            break;
        }
    }
    // The initial absence: until some acknowledged write completed before the read.
    let initial = seen.is_none() && !writes.iter().any(|o| acked(o) && o.completed < read.invoked);
    if legal || initial {
        return Ok(());
    }
    let newest_before = writes
        .iter()
        .filter(|o| acked(o) && o.completed < read.invoked)
        .max_by_key(|o| o.completed)
        .map(|o| format!("{:?} acknowledged at {} ms", o.write, o.completed));
    Err(format!(
        "key {:?}: a quorum read through {} ({}..{} ms) returned {seen:?}, older than the last \
         acknowledged write ({})",
        String::from_utf8_lossy(&read.key),
        read.node,
        read.invoked,
        read.completed,
        newest_before.unwrap_or_default()
    ))
}

/// Reads `key` at `quorum` through a serving node, retrying on failures.
fn final_read(sim: &mut Cluster, key: &Bytes) -> Result<Option<Bytes>, String> {
    for attempt in 0..10 {
        let serving: Vec<NodeId> = sim
            .processes()
            .filter(|(_, p)| p.node.membership().me().status == Status::Alive)
            .map(|(id, _)| id)
            .collect();
        let node = serving[(attempt as usize) % serving.len().max(1)];
        let op = Op::Get {
            collection: COLLECTION.into(),
            key: key.clone(),
            consistency: Consistency::Quorum,
        };
        let id = u64::MAX - attempt;
        sim.act(node, |p, now| p.request(now, 2, ClientRequest { id, op, seen: None }));
        for _ in 0..200 {
            sim.run_for(20);
            let reply = sim.take_events().into_iter().find_map(|(_, _, e)| match e {
                NodeOutput::Reply { resp, .. } if resp.id == id => Some(resp.result),
                _ => None,
            });
            match reply {
                Some(Reply::Value { value, .. }) => return Ok(value),
                Some(_) => break,
                None => {}
            }
        }
        sim.run_for(500);
    }
    Err(format!("key {:?} could not be read at quorum after the faults", key))
}

fn configure(c: &mut NodeConfig) {
    c.sync_interval_ms = 3_000;
    c.sync_timeout_ms = 5_000;
    c.gc_interval_ms = 1_000;
    c.ring_delay_ms = 1_000;
}

/// A fresh node `id` joining through a running node.
fn join(sim: &mut Cluster, id: NodeId, seed: u64) -> Result<(), String> {
    let running = sim.running();
    let through = running[sim.rng().index(running.len()).ok_or("no node runs")?];
    let mut config = NodeConfig::new(id, sim_addr(id));
    configure(&mut config);
    config.seed = seed ^ id.0.wrapping_mul(0x9e37_79b9);
    let node = Node::new(config, MemStore::new()).map_err(|e| e.to_string())?;
    sim.add(id, NodeProcess::new(node).joining(sim_addr(through)));
    Ok(())
}

/// Five nodes, N = 3; clients read and write at `quorum` through random nodes while a
/// seeded sequence of faults runs: a crash with or without the disk and a restart, a
/// partition into two random sides, one node isolated, a fresh node joining, a node
/// leaving gracefully, a node lost for good and removed, clocks skewed within the
/// maximum offset, one clock beyond it. Faults do not overlap.
pub fn register_schedule(seed: u64) -> Result<RegisterReport, String> {
    let mut sim = memory_cluster(5, NetConfig::lan(), seed, configure);
    super::safety::settle(&mut sim, 60_000)?;
    let mut h = History::new(12);
    let mut faults = 0;
    let mut next_id = 100;
    for _ in 0..3 + sim.rng().below(4) {
        let quiet = 500 + sim.rng().below(2_000);
        h.run(&mut sim, quiet, 30);
        let running = sim.running();
        let victim = running[sim.rng().index(running.len()).ok_or("no node runs")?];
        let lasts = 1_000 + sim.rng().below(8_000);
        faults += 1;
        match sim.rng().below(8) {
            0 | 1 => {
                let keep_disk = sim.rng().chance(0.6);
                h.note(sim.now(), format!("crash {victim} (keep disk: {keep_disk})"));
                let crashed = sim.crash(victim).ok_or("victim not running")?;
                h.run(&mut sim, lasts, 30);
                let back = crashed.restarted(keep_disk).map_err(|e| e.to_string())?;
                sim.restart(victim, back);
                h.note(sim.now(), format!("restart {victim}"));
            }
            2 => h.partition_for(&mut sim, &running, lasts),
            3 => {
                next_id += 1;
                h.note(sim.now(), format!("join {}", NodeId(next_id)));
                join(&mut sim, NodeId(next_id), seed)?;
            }
            4 if running.len() > 4 => {
                h.note(sim.now(), format!("{victim} leaves"));
                sim.act(victim, |p, now| p.node.leave(now));
                h.run(&mut sim, lasts, 30);
                // Announce, wait, hand off, `Left`, wait: the workload runs throughout.
                let limit = sim.now() + 30_000;
                while !sim.process(victim).is_some_and(|p| p.node.left()) {
                    if sim.now() > limit {
                        return Err(format!("{victim} did not finish leaving in 30 s"));
                    }
                    h.run(&mut sim, 500, 30);
                }
                sim.remove(victim);
                h.note(sim.now(), format!("{victim} left and stopped"));
            }
            7 if running.len() > 4 => {
                // Lost for good: declared dead, then removed through another node while
                // the workload runs.
                h.note(sim.now(), format!("crash {victim} for good"));
                sim.crash(victim).ok_or("victim not running")?;
                let others: Vec<NodeId> = sim.running();
                let limit = sim.now() + 30_000;
                while !others.iter().all(|o| {
                    let seen = sim.process(*o).and_then(|p| p.node.membership().member(victim));
                    seen.is_some_and(|m| m.status == Status::Dead)
                }) {
                    if sim.now() > limit {
                        return Err(format!("{victim} was not declared dead in 30 s"));
                    }
                    h.run(&mut sim, 500, 30);
                }
                let by = others[sim.rng().index(others.len()).ok_or("no node runs")?];
                let started = sim.act(by, |p, now| p.node.remove_member(now, victim, false));
                if let Some(Err(e)) = started {
                    // Another change under way (a join): the member stays, dead.
                    h.note(sim.now(), format!("{by} cannot remove {victim}: {e}"));
                    continue;
                }
                h.note(sim.now(), format!("{by} removes {victim}"));
                let limit = sim.now() + 60_000;
                while !others.iter().all(|o| {
                    let seen = sim.process(*o).and_then(|p| p.node.membership().member(victim));
                    seen.is_some_and(|m| m.status == Status::Left)
                }) {
                    if sim.now() > limit {
                        let p = sim.process(by).and_then(|p| p.node.removal());
                        return Err(format!("{victim} was not removed in 60 s: {p:?}"));
                    }
                    h.run(&mut sim, 500, 30);
                }
                h.note(sim.now(), format!("{victim} removed"));
            }
            5 => {
                // One clock beyond the maximum offset, ahead or behind: that node must
                // notice and stop coordinating writes rather than lose or hide any.
                let off = 600 + sim.rng().below(1_400) as i64;
                let off = if sim.rng().chance(0.5) { off } else { -off };
                sim.set_skew(victim, off);
                h.note(sim.now(), format!("{victim}'s clock off by {off} ms"));
                h.run(&mut sim, lasts, 30);
                sim.set_skew(victim, 0);
                h.note(sim.now(), format!("{victim}'s clock fixed"));
            }
            _ => {
                for id in sim.nodes() {
                    let skew = sim.rng().below(501) as i64 - 250;
                    sim.set_skew(id, skew);
                }
                h.note(sim.now(), "clocks skewed".into());
            }
        }
    }
    h.run(&mut sim, 3_000, 30);
    let mut report = h.verify(&mut sim)?;
    report.faults = faults;
    Ok(report)
}

/// The labels of node `id` in [`alter_schedule`]: `disk=ssd` on nodes 1, 2 and 4, `hdd`
/// on the others.
fn disk_of(id: NodeId) -> &'static str {
    if matches!(id.0, 1 | 2 | 4) {
        "ssd"
    } else {
        "hdd"
    }
}

/// Writes `settings` for the checker's collection through `node`, as the server does
/// for `dhrt collection alter` (the answer is not awaited: the schedule watches every
/// node's catalogue instead).
fn alter(sim: &mut Cluster, node: NodeId, id: u64, settings: &CollectionSettings) {
    let op = Op::Set {
        collection: CATALOGUE_COLLECTION.into(),
        key: Bytes::from_static(COLLECTION.as_bytes()),
        value: Bytes::from(settings.encode()),
        consistency: Consistency::Quorum,
        ttl_ms: None,
    };
    sim.act(node, |p, now| p.request(now, 3, ClientRequest { id, op, seen: None }));
}

/// Whether every running node uses `layout` for the checker's collection, with no move
/// under way.
fn moved_everywhere(sim: &Cluster, layout: &Layout) -> bool {
    sim.processes().filter(|(id, _)| sim.is_running(*id)).all(|(_, p)| {
        let state = p.node.catalogue().layout(COLLECTION).cloned().unwrap_or_default();
        state.moving.is_none() && state.current == *layout
    })
}

/// Five labelled nodes (`disk=ssd` on three of them), N = 3; clients read and write at
/// `quorum` through random nodes while the collection's layout changes two to four
/// times — its replicas (1 to 5) and its selector (`disk=ssd`, or any node) — with a
/// crash or a partition during some of the moves, and after some a node restarted with
/// the other kind of disk (the collection follows its labels by another move). Every read must return the last
/// acknowledged write or a newer one, every move must complete, and at the end each
/// key lives on exactly the owners its layout gives it.
pub fn alter_schedule(seed: u64) -> Result<RegisterReport, String> {
    // Anti-entropy is slow and there are no hints here, so that what a move's new
    // owners hold comes from its hand-off and the writes they acknowledged, not from a
    // round that happened to run meanwhile or a hint delivered later.
    let mut sim = memory_cluster(5, NetConfig::lan(), seed, |c| {
        configure(c);
        c.sync_interval_ms = SLOW_SYNC_MS;
        c.hints.max_per_node = 0;
        c.labels.insert("disk".into(), disk_of(c.id).into());
    });
    super::safety::settle(&mut sim, 60_000)?;
    // Many keys, each rarely touched: what the new owners hold of most of them comes
    // from the hand-off, not from reads repairing them.
    let mut h = History::new(ALTER_KEYS);
    let mut faults = 0;
    // Nodes restarted with the other kind of disk than they started with.
    let mut relabelled: Vec<NodeId> = Vec::new();
    for round in 0..2 + sim.rng().below(3) {
        let quiet = 500 + sim.rng().below(2_000);
        h.run(&mut sim, quiet, 30);
        let mut settings = CollectionSettings {
            replicas: Some(1 + sim.rng().below(5) as u32),
            ..CollectionSettings::default()
        };
        if sim.rng().chance(0.4) {
            settings.select.insert("disk".into(), "ssd".into());
        }
        let layout = settings.layout();
        let running = sim.running();
        let through = running[sim.rng().index(running.len()).ok_or("no node runs")?];
        h.note(
            sim.now(),
            format!(
                "alter to {:?} replicas on {} via {through}",
                layout.replicas,
                layout.select_text()
            ),
        );
        alter(&mut sim, through, (1 << 40) + round, &settings);
        let before_fault = 200 + sim.rng().below(3_000);
        h.run(&mut sim, before_fault, 30);
        let victim = running[sim.rng().index(running.len()).ok_or("no node runs")?];
        let lasts = 1_000 + sim.rng().below(6_000);
        match sim.rng().below(4) {
            0 => {
                faults += 1;
                h.note(sim.now(), format!("crash {victim} (disk kept)"));
                let crashed = sim.crash(victim).ok_or("victim not running")?;
                h.run(&mut sim, lasts, 30);
                sim.restart(victim, crashed.restarted(true).map_err(|e| e.to_string())?);
                h.note(sim.now(), format!("restart {victim}"));
            }
            1 => {
                faults += 1;
                h.partition_for(&mut sim, &running, lasts);
            }
            _ => {}
        }
        // The move completes everywhere; the settings are written again if the write
        // was lost with its coordinator.
        let limit = sim.now() + 180_000;
        let mut again = sim.now() + 20_000;
        while !moved_everywhere(&sim, &layout) {
            if sim.now() > limit {
                let states: Vec<String> = sim
                    .processes()
                    .map(|(id, p)| {
                        format!(
                            "{id}: {:?} {:?}",
                            p.node.catalogue().layout(COLLECTION),
                            p.node.moves()
                        )
                    })
                    .collect();
                return Err(format!(
                    "the move to {layout:?} did not complete in 180 s: {}; log: {}",
                    states.join(", "),
                    h.log.join(", ")
                ));
            }
            if sim.now() > again {
                let running = sim.running();
                let through = running[sim.rng().index(running.len()).ok_or("no node runs")?];
                let id = (1 << 41) + sim.now();
                alter(&mut sim, through, id, &settings);
                again = sim.now() + 20_000;
            }
            h.run(&mut sim, 500, 30);
        }
        h.note(sim.now(), format!("moved to {layout:?}"));
        if layout.needs_labels() && sim.rng().chance(0.5) {
            // A node rebuilt with the other kind of disk: the collection follows it.
            faults += 1;
            let running = sim.running();
            let victim = running[sim.rng().index(running.len()).ok_or("no node runs")?];
            let disk = if relabelled.contains(&victim) == (disk_of(victim) == "ssd") {
                "hdd"
            } else {
                "ssd"
            };
            if relabelled.contains(&victim) {
                relabelled.retain(|r| *r != victim);
            } else {
                relabelled.push(victim);
            }
            h.note(sim.now(), format!("restart {victim} with disk={disk}"));
            let crashed = sim.crash(victim).ok_or("victim not running")?;
            h.run(&mut sim, 500, 30);
            let back = crashed
                .restarted_with(true, |c| {
                    c.labels.insert("disk".into(), disk.into());
                })
                .map_err(|e| e.to_string())?;
            sim.restart(victim, back);
            let limit = sim.now() + 180_000;
            while !follows_labels(&sim) {
                if sim.now() > limit {
                    return Err(format!(
                        "the collection did not follow {victim}'s new labels in 180 s; log: {}",
                        h.log.join(", ")
                    ));
                }
                h.run(&mut sim, 500, 30);
            }
            h.note(sim.now(), "the collection follows the new labels".into());
        }
    }
    h.run(&mut sim, 3_000, 30);
    let mut report = h.verify(&mut sim)?;
    report.faults = faults;
    // Cleaning runs with anti-entropy rounds.
    sim.run_for(3 * SLOW_SYNC_MS);
    placed_on_owners(&sim)?;
    Ok(report)
}

/// The keys [`alter_schedule`] writes.
const ALTER_KEYS: u64 = 300;

/// The anti-entropy period of [`alter_schedule`].
const SLOW_SYNC_MS: Millis = 120_000;

/// Whether every running node uses, for the checker's collection, the labels every
/// member carries now, with no move under way.
fn follows_labels(sim: &Cluster) -> bool {
    sim.processes().filter(|(id, _)| sim.is_running(*id)).all(|(_, p)| {
        let state = p.node.catalogue().layout(COLLECTION).cloned().unwrap_or_default();
        let live: Vec<(NodeId, String)> = (p.node.membership().members())
            .filter(|m| m.status != Status::Left)
            .filter_map(|m| Some((m.id, m.labels.get("disk")?.clone())))
            .collect();
        state.moving.is_none()
            && live
                .iter()
                .all(|(id, disk)| state.labels.get(id).and_then(|l| l.get("disk")) == Some(disk))
    })
}

/// Every key of the checker's collection is held by exactly its owners under the
/// collection's layout, as each node sees it, once cleaning ran.
fn placed_on_owners(sim: &Cluster) -> Result<(), String> {
    for k in 0..ALTER_KEYS {
        let key = Bytes::from(format!("r{k:02}"));
        for (id, p) in sim.processes() {
            let node = &p.node;
            let pos = node.replica().position(COLLECTION, &key);
            let owners = node.placement_for(COLLECTION).key(pos).owners;
            let select = node.catalogue().layout(COLLECTION).map(|s| s.current.select.clone());
            for o in &owners {
                let labels = node.membership().member(*o).map(|m| m.labels.clone());
                let fits = select
                    .iter()
                    .flatten()
                    .all(|(k, v)| labels.as_ref().and_then(|l| l.get(k)) == Some(v));
                if !fits {
                    return Err(format!("node {o} owns {key:?} but lacks the selector {select:?}"));
                }
            }
            let held = node.replica().get(COLLECTION, &key).map_err(|e| e.to_string())?;
            if held.is_some() && !owners.contains(&id) {
                return Err(format!("node {id} still holds {key:?}, owned by {owners:?}"));
            }
        }
    }
    Ok(())
}
