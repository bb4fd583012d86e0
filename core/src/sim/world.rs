//! The simulated world: hosts running [`Process`]es, a clock, and an event queue.

use super::net::NetConfig;
use crate::{entry::NodeId, rng::Rng, Millis};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Debug;

/// What a process asks the world to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<M, E> {
    /// Send `msg` to node `to` over the simulated network.
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        msg: M,
    },
    /// Something happened that the scenario may want to check.
    Event(E),
}

/// A sans-IO state machine the simulator can host: the same shape as the node API the
/// servers drive (`handle`, `tick`, `poll`, `next_deadline`), with time given as the
/// host's local clock (which may be skewed).
pub trait Process {
    /// Messages between processes.
    type Msg: Clone + Debug;
    /// Events a process reports.
    type Event: Debug;
    /// Called once when the process is added or restarted.
    fn start(&mut self, _now: Millis) {}
    /// A message from `from` arrives.
    fn handle(&mut self, now: Millis, from: NodeId, msg: Self::Msg);
    /// Timers due at or before `now` fire.
    fn tick(&mut self, now: Millis);
    /// The next effect, if any.
    fn poll(&mut self) -> Option<Effect<Self::Msg, Self::Event>>;
    /// When `tick` next has work, in local time.
    fn next_deadline(&self) -> Option<Millis>;
}

struct Host<P> {
    process: Option<P>,
    skew_ms: i64,
    extra_latency_ms: Millis,
    group: u32,
    wake_at: Option<Millis>,
}

enum Item<M> {
    Deliver { from: NodeId, to: NodeId, msg: M },
    Wake { node: NodeId },
}

struct Scheduled<M> {
    at: Millis,
    seq: u64,
    item: Item<M>,
}

impl<M> PartialEq for Scheduled<M> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<M> Eq for Scheduled<M> {}
impl<M> PartialOrd for Scheduled<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Scheduled<M> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Earliest first in a max-heap.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Counters of what the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Lost by the loss model.
    pub lost: u64,
    /// Dropped because the destination was crashed or absent.
    pub to_dead: u64,
    /// Dropped by a partition.
    pub partitioned: u64,
    /// Delivered a second time by the duplication model.
    pub duplicated: u64,
}

/// A deterministic simulation of processes on a network. Everything random comes from
/// the seed; the same seed and the same calls give the same run.
pub struct Sim<P: Process> {
    seed: u64,
    now: Millis,
    rng: Rng,
    net: NetConfig,
    hosts: BTreeMap<NodeId, Host<P>>,
    queue: BinaryHeap<Scheduled<P::Msg>>,
    seq: u64,
    events: Vec<(Millis, NodeId, P::Event)>,
    stats: SimStats,
}

impl<P: Process> Sim<P> {
    /// An empty world at time 0 with the given seed and network.
    pub fn new(seed: u64, net: NetConfig) -> Self {
        Sim {
            seed,
            now: 0,
            rng: Rng::new(seed),
            net,
            hosts: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            events: Vec::new(),
            stats: SimStats::default(),
        }
    }

    /// The seed this run replays from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Global simulated time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The world's random generator, for scenario decisions (which node fails, …).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Network counters.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Changes the network model from now on.
    pub fn set_net(&mut self, net: NetConfig) {
        self.net = net;
    }

    /// Ids of all hosts, running or crashed.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.hosts.keys().copied().collect()
    }

    /// Ids of running hosts.
    pub fn running(&self) -> Vec<NodeId> {
        self.hosts.iter().filter(|(_, h)| h.process.is_some()).map(|(id, _)| *id).collect()
    }

    /// Whether `id` is running.
    pub fn is_running(&self, id: NodeId) -> bool {
        self.hosts.get(&id).is_some_and(|h| h.process.is_some())
    }

    /// The process on `id`, if running.
    pub fn process(&self, id: NodeId) -> Option<&P> {
        self.hosts.get(&id).and_then(|h| h.process.as_ref())
    }

    /// Every running process.
    pub fn processes(&self) -> impl Iterator<Item = (NodeId, &P)> {
        self.hosts.iter().filter_map(|(id, h)| h.process.as_ref().map(|p| (*id, p)))
    }

    fn local(&self, id: NodeId) -> Millis {
        let skew = self.hosts.get(&id).map_or(0, |h| h.skew_ms);
        self.now.saturating_add_signed(skew)
    }

    /// Adds a host running `process` and starts it.
    pub fn add(&mut self, id: NodeId, process: P) {
        self.hosts.insert(
            id,
            Host {
                process: Some(process),
                skew_ms: 0,
                extra_latency_ms: 0,
                group: 0,
                wake_at: None,
            },
        );
        self.start(id);
    }

    fn start(&mut self, id: NodeId) {
        let now = self.local(id);
        if let Some(p) = self.hosts.get_mut(&id).and_then(|h| h.process.as_mut()) {
            p.start(now);
        }
        self.drain(id);
    }

    /// Crashes `id`: its process stops and is returned (the caller decides what survives:
    /// restart it with its state to model a disk, or with a fresh one to model a lost
    /// disk). Messages to it are dropped until it restarts.
    pub fn crash(&mut self, id: NodeId) -> Option<P> {
        let host = self.hosts.get_mut(&id)?;
        host.wake_at = None;
        host.process.take()
    }

    /// Restarts `id` with `process`.
    pub fn restart(&mut self, id: NodeId, process: P) {
        match self.hosts.get_mut(&id) {
            Some(h) => h.process = Some(process),
            None => return self.add(id, process),
        }
        self.start(id);
    }

    /// Removes `id` from the world entirely.
    pub fn remove(&mut self, id: NodeId) -> Option<P> {
        self.hosts.remove(&id).and_then(|h| h.process)
    }

    /// Sets `id`'s clock to run `skew_ms` ahead (negative: behind) of global time.
    pub fn set_skew(&mut self, id: NodeId, skew_ms: i64) {
        if let Some(h) = self.hosts.get_mut(&id) {
            h.skew_ms = skew_ms;
        }
    }

    /// Makes `id` a slow peer: every message to or from it takes `extra_ms` longer.
    pub fn set_slow(&mut self, id: NodeId, extra_ms: Millis) {
        if let Some(h) = self.hosts.get_mut(&id) {
            h.extra_latency_ms = extra_ms;
        }
    }

    /// Splits the network: hosts in different groups cannot reach each other. Hosts not
    /// listed form one more group together.
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        for h in self.hosts.values_mut() {
            h.group = 0;
        }
        for (g, members) in groups.iter().enumerate() {
            for id in *members {
                if let Some(h) = self.hosts.get_mut(id) {
                    h.group = g as u32 + 1;
                }
            }
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.partition(&[]);
    }

    /// Calls `f` on the process of `id` with its local time (to start a lookup, a write,
    /// a leave…), then carries out its effects. `None` when `id` is not running.
    pub fn act<R>(&mut self, id: NodeId, f: impl FnOnce(&mut P, Millis) -> R) -> Option<R> {
        let now = self.local(id);
        let p = self.hosts.get_mut(&id)?.process.as_mut()?;
        let r = f(p, now);
        self.drain(id);
        Some(r)
    }

    /// Events reported so far, oldest first, removing them from the world.
    pub fn take_events(&mut self) -> Vec<(Millis, NodeId, P::Event)> {
        std::mem::take(&mut self.events)
    }

    /// Runs every scheduled delivery and timer up to and including global time `until`,
    /// then sets the clock to `until`.
    pub fn run_until(&mut self, until: Millis) {
        while self.queue.peek().is_some_and(|s| s.at <= until) {
            let Some(next) = self.queue.pop() else { break };
            self.now = self.now.max(next.at);
            match next.item {
                Item::Deliver { from, to, msg } => self.deliver(from, to, msg),
                Item::Wake { node } => self.wake(node, next.at),
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `ms` more milliseconds.
    pub fn run_for(&mut self, ms: Millis) {
        let until = self.now.saturating_add(ms);
        self.run_until(until);
    }

    /// Whether nothing at all is scheduled.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, msg: P::Msg) {
        let (from_group, to_group) = (
            self.hosts.get(&from).map_or(0, |h| h.group),
            self.hosts.get(&to).map_or(0, |h| h.group),
        );
        if from_group != to_group {
            self.stats.partitioned += 1;
            return;
        }
        let now = self.local(to);
        let Some(p) = self.hosts.get_mut(&to).and_then(|h| h.process.as_mut()) else {
            self.stats.to_dead += 1;
            return;
        };
        self.stats.delivered += 1;
        p.handle(now, from, msg);
        self.drain(to);
    }

    fn wake(&mut self, id: NodeId, at: Millis) {
        let Some(h) = self.hosts.get_mut(&id) else { return };
        if h.wake_at != Some(at) {
            return; // superseded by an earlier or later wake-up
        }
        h.wake_at = None;
        let now = self.local(id);
        if let Some(p) = self.hosts.get_mut(&id).and_then(|h| h.process.as_mut()) {
            p.tick(now);
        }
        self.drain(id);
    }

    fn push(&mut self, at: Millis, item: Item<P::Msg>) {
        self.seq += 1;
        self.queue.push(Scheduled { at, seq: self.seq, item });
    }

    /// Carries out every effect `id` has queued and schedules its next wake-up.
    fn drain(&mut self, id: NodeId) {
        let mut effects = Vec::new();
        let deadline = {
            let Some(p) = self.hosts.get_mut(&id).and_then(|h| h.process.as_mut()) else {
                return;
            };
            while let Some(e) = p.poll() {
                effects.push(e);
            }
            p.next_deadline()
        };
        for e in effects {
            match e {
                Effect::Send { to, msg } => self.send(id, to, msg),
                Effect::Event(ev) => self.events.push((self.now, id, ev)),
            }
        }
        if let Some(local_deadline) = deadline {
            let skew = self.hosts.get(&id).map_or(0, |h| h.skew_ms);
            let at = local_deadline.saturating_add_signed(-skew).max(self.now);
            let Some(host) = self.hosts.get_mut(&id) else { return };
            if host.wake_at.is_none_or(|w| at < w) {
                host.wake_at = Some(at);
                self.push(at, Item::Wake { node: id });
            }
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: P::Msg) {
        self.stats.sent += 1;
        if self.net.loss > 0.0 && self.rng.chance(self.net.loss) {
            self.stats.lost += 1;
            return;
        }
        let extra = self.hosts.get(&from).map_or(0, |h| h.extra_latency_ms)
            + self.hosts.get(&to).map_or(0, |h| h.extra_latency_ms);
        let copies = if self.net.duplicate > 0.0 && self.rng.chance(self.net.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        if copies == 2 {
            let at = self.now + self.net.latency.sample(&mut self.rng) + extra;
            self.push(at, Item::Deliver { from, to, msg: msg.clone() });
        }
        let at = self.now + self.net.latency.sample(&mut self.rng) + extra;
        self.push(at, Item::Deliver { from, to, msg });
    }
}
