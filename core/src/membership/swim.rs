//! SWIM failure detection: probing, indirect probing, suspicion and its timeout.
//!
//! Each protocol period a node probes one member, taken round-robin from a shuffled list
//! of every member that is not down (the list is reshuffled each round, and a member
//! learned mid-round is inserted at a random position of the rest, so every member is
//! probed within two rounds). The probe is a `Ping`; with no `Ack` after
//! `probe_timeout_ms`, the node sends `PingReq` to `indirect_probes` random running
//! members, which ping the target and relay its ack. With still no ack when the period
//! ends, the target becomes `Suspect` at its current incarnation and the suspicion is
//! gossiped. A suspicion not refuted within the suspicion timeout turns into `Dead`.
//!
//! A ping to a member this node holds `Suspect` carries that suspicion first among its
//! updates, so a suspect that can be reached refutes it before it even acks.
//!
//! Two guards keep a verdict of death honest, because death costs the member a re-sync:
//!
//! - *Health.* A node that had received no message at all for two periods when it sent
//!   a probe, or when the probe ended, raises no suspicion from its failure; one that has
//!   received none within the suspicion timeout declares nobody dead (unless the suspect
//!   is the only other member it could probe, when it cannot tell the two cases apart).
//!   An isolated node would otherwise declare the whole cluster dead and, once
//!   reconnected, spread those verdicts.
//! - *A last probe.* Two periods before a suspicion times out, unless this node has just
//!   seen the suspect fail a probe, it probes the suspect once more (ahead of the
//!   round-robin order, with the suspicion on the ping); the verdict waits for that
//!   probe to fail. A suspicion formed during a short outage of this node's own, and
//!   never heard by the suspect, is so refuted rather than turned into a death, at no
//!   cost in detection time. An ack from a suspect restarts its suspicion timeout.

use super::{Member, Membership, MembershipMessage, Status};
use crate::{Millis, NodeId};
use std::collections::{BTreeMap, VecDeque};

/// A suspicion this node holds, and how it will end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Suspicion {
    /// When the suspicion times out.
    pub deadline: Millis,
    /// When this node's own probe of the suspect last failed.
    pub probe_failed_at: Option<Millis>,
    /// Whether the last probe before the verdict has been scheduled.
    pub last_probe: bool,
}

impl Suspicion {
    /// A suspicion that times out at `deadline`.
    pub fn until(deadline: Millis) -> Self {
        Suspicion { deadline, probe_failed_at: None, last_probe: false }
    }

    /// When the last probe is due: two periods before the deadline.
    fn last_probe_at(&self, interval: Millis) -> Millis {
        self.deadline.saturating_sub(interval.saturating_mul(2))
    }

    /// When this suspicion next needs attention.
    pub fn wake_at(&self, interval: Millis) -> Millis {
        if self.last_probe {
            self.deadline
        } else {
            self.last_probe_at(interval)
        }
    }

    /// Whether this node's own probe of the suspect failed within two periods of `now`.
    fn recently_failed(&self, now: Millis, interval: Millis) -> bool {
        self.probe_failed_at.is_some_and(|t| now.saturating_sub(t) <= interval.saturating_mul(2))
    }
}

/// The probing half of the state machine.
#[derive(Debug, Clone, Default)]
pub(super) struct Prober {
    /// This round's probe order.
    order: Vec<NodeId>,
    /// Suspects to probe before the round-robin order, for a last probe.
    priority: VecDeque<NodeId>,
    /// The next position in `order`.
    index: usize,
    /// The probe of the current period.
    current: Option<Probe>,
    /// When the next period starts.
    pub next_at: Option<Millis>,
    /// Indirect probes this node runs for others, by the seq of its own ping.
    relays: BTreeMap<u64, Relay>,
    /// The next sequence number.
    next_seq: u64,
    /// When this node last received any message: evidence it is not cut off.
    pub last_heard_at: Option<Millis>,
}

/// The probe of one period.
#[derive(Debug, Clone)]
struct Probe {
    target: NodeId,
    seq: u64,
    /// Whether this node was hearing from others when it sent the probe.
    connected_at_start: bool,
    indirect_at: Millis,
    indirect_sent: bool,
    acked: bool,
}

/// An indirect probe run for a requester.
#[derive(Debug, Clone)]
struct Relay {
    requester: NodeId,
    requester_seq: u64,
    target: NodeId,
    expires_at: Millis,
}

impl Prober {
    /// A prober whose sequence numbers start at `first_seq`.
    pub fn new(first_seq: u64) -> Self {
        Prober { next_seq: first_seq, ..Default::default() }
    }

    fn seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    /// The moment the pending probe goes indirect, if it is still waiting for it.
    pub fn indirect_deadline(&self) -> Option<Millis> {
        self.current.as_ref().filter(|p| !p.acked && !p.indirect_sent).map(|p| p.indirect_at)
    }

    /// Stops probing (after a graceful leave).
    pub fn stop(&mut self) {
        self.current = None;
        self.next_at = None;
    }
}

impl Membership {
    /// Whether `id` is probed: another member that is not down.
    fn probe_eligible(&self, id: NodeId) -> bool {
        id != self.id && self.view.get(&id).is_some_and(|s| s.record().status.is_probed())
    }

    /// Adds a member that became probe-eligible to the rest of this round, at a random
    /// position.
    pub(super) fn add_probe_target(&mut self, id: NodeId) {
        let p = &mut self.prober;
        let index = p.index.min(p.order.len());
        if p.order[index..].contains(&id) {
            return;
        }
        let at = index + self.rng.below((p.order.len() - index) as u64 + 1) as usize;
        p.order.insert(at, id);
    }

    /// The record of `id` if this node suspects it: what a message to it should carry
    /// first, so that it can refute.
    pub(super) fn suspicion_of(&self, id: NodeId) -> Option<Member> {
        self.member(id).filter(|m| m.status == Status::Suspect).cloned()
    }

    /// The next member to probe: a suspect due for its last probe, else round-robin over
    /// a list reshuffled every round.
    fn next_probe_target(&mut self) -> Option<NodeId> {
        while let Some(id) = self.prober.priority.pop_front() {
            if self.probe_eligible(id) {
                return Some(id);
            }
        }
        while self.prober.index < self.prober.order.len() {
            let id = self.prober.order[self.prober.index];
            self.prober.index += 1;
            if self.probe_eligible(id) {
                return Some(id);
            }
        }
        let mut order: Vec<NodeId> =
            self.view.keys().copied().filter(|&id| self.probe_eligible(id)).collect();
        self.rng.shuffle(&mut order);
        self.prober.order = order;
        self.prober.index = 0;
        let first = self.prober.order.first().copied();
        if first.is_some() {
            self.prober.index = 1;
        }
        first
    }

    /// Runs the probe timers due at `now`.
    pub(super) fn probe_tick(&mut self, now: Millis) {
        if self.prober.indirect_deadline().is_some_and(|t| now >= t) {
            self.send_indirect_probes();
        }
        let Some(period) = self.prober.next_at else { return };
        if now < period {
            return;
        }
        self.conclude_probe(now);
        let interval = self.config.probe_interval_ms;
        match self.next_probe_target() {
            Some(target) => {
                let seq = self.prober.seq();
                let updates = self.piggyback(self.suspicion_of(target));
                let sender = self.me().clone();
                self.send(target, MembershipMessage::Ping { seq, sender, updates, clock: None });
                self.stats.probes_sent += 1;
                let indirect_at = now.saturating_add(self.config.probe_timeout_ms);
                let connected_at_start = self.connected_within(now, interval.saturating_mul(2));
                self.prober.current = Some(Probe {
                    target,
                    seq,
                    connected_at_start,
                    indirect_at,
                    indirect_sent: false,
                    acked: false,
                });
                let next = period.saturating_add(interval);
                self.prober.next_at =
                    Some(if next > now { next } else { now.saturating_add(interval) });
            }
            None => self.prober.stop(),
        }
    }

    /// Ends the current period's probe: no ack means the target is suspected.
    fn conclude_probe(&mut self, now: Millis) {
        let Some(probe) = self.prober.current.take() else { return };
        if probe.acked || !self.probe_eligible(probe.target) {
            return;
        }
        self.stats.probes_failed += 1;
        // A node that hears nothing at all is more likely cut off itself: its failed
        // probes are no evidence against anyone.
        if !probe.connected_at_start
            || !self.connected_within(now, self.config.probe_interval_ms.saturating_mul(2))
        {
            return;
        }
        let status = self.view.get(&probe.target).map(|s| s.record().status);
        if status.is_some_and(Status::is_up) {
            self.declare(now, probe.target, Status::Suspect);
        }
        if let Some(s) = self.suspicions.get_mut(&probe.target) {
            s.probe_failed_at = Some(now);
            if s.last_probe {
                s.deadline = now;
            }
        }
    }

    /// Asks up to `indirect_probes` random running members to probe the target.
    fn send_indirect_probes(&mut self) {
        let Some(probe) = self.prober.current.as_mut() else { return };
        probe.indirect_sent = true;
        let (target, seq) = (probe.target, probe.seq);
        let Some(target_addr) = self.view.get(&target).map(|s| s.record().addr.clone()) else {
            return;
        };
        let mut helpers = self.others(Status::is_up);
        helpers.retain(|&h| h != target);
        self.rng.shuffle(&mut helpers);
        helpers.truncate(self.config.indirect_probes);
        for helper in helpers {
            let updates = self.piggyback(self.suspicion_of(target));
            let sender = self.me().clone();
            let target_addr = target_addr.clone();
            let msg = MembershipMessage::PingReq {
                seq,
                target,
                target_addr,
                sender,
                updates,
                clock: None,
            };
            self.send(helper, msg);
        }
    }

    /// A `PingReq` from `from`: ping the target and remember to relay its ack.
    pub(super) fn on_ping_req(
        &mut self,
        now: Millis,
        from: NodeId,
        seq: u64,
        target: NodeId,
        target_addr: String,
    ) {
        // Only toward a member this node knows, at the address in its own view: the
        // address in the request is never used, so a request cannot aim this node at
        // arbitrary hosts.
        let _ = target_addr;
        let known = self.view.get(&target).map(|s| s.record().addr.clone());
        let Some(addr) = known.filter(|_| target != self.id && target != from) else {
            self.stats.rejected_messages += 1;
            return;
        };
        if self.prober.relays.len() >= self.config.max_relays {
            self.prober.relays.pop_first();
        }
        let my_seq = self.prober.seq();
        let expires_at = now.saturating_add(self.config.probe_interval_ms);
        self.prober
            .relays
            .insert(my_seq, Relay { requester: from, requester_seq: seq, target, expires_at });
        let updates = self.piggyback(self.suspicion_of(target));
        let sender = self.me().clone();
        self.send_to(
            target,
            addr,
            MembershipMessage::Ping { seq: my_seq, sender, updates, clock: None },
        );
    }

    /// An `Ack` from `from`: completes this node's probe, or is relayed to a requester.
    pub(super) fn on_ack(
        &mut self,
        now: Millis,
        from: NodeId,
        seq: u64,
        on_behalf: Option<NodeId>,
    ) {
        if on_behalf.is_none() && self.prober.relays.get(&seq).is_some_and(|r| r.target == from) {
            if let Some(relay) = self.prober.relays.remove(&seq) {
                let updates = self.piggyback(None);
                let sender = self.me().clone();
                let msg = MembershipMessage::Ack {
                    seq: relay.requester_seq,
                    on_behalf: Some(from),
                    sender,
                    updates,
                    clock: None,
                };
                self.send(relay.requester, msg);
            }
            return;
        }
        let answered_by = on_behalf.unwrap_or(from);
        match self.prober.current.as_mut() {
            Some(p) if p.seq == seq && p.target == answered_by && on_behalf != Some(from) => {
                p.acked = true;
                let timeout = self.suspicion_timeout();
                if let Some(s) = self.suspicions.get_mut(&answered_by) {
                    *s = Suspicion::until(now.saturating_add(timeout));
                }
            }
            _ => self.stats.unknown_acks += 1,
        }
    }

    /// Drops relays whose requester has given up.
    pub(super) fn expire_relays(&mut self, now: Millis) {
        self.prober.relays.retain(|_, r| r.expires_at > now);
    }

    /// Whether this node heard from anyone within `window`, or has at most one other
    /// member to hear from (then it cannot tell its own isolation from the other's
    /// failure, and errs towards declaring).
    fn connected_within(&self, now: Millis, window: Millis) -> bool {
        let heard = self.prober.last_heard_at.is_some_and(|t| now.saturating_sub(t) <= window);
        heard || self.count_others(Status::is_probed) <= 1
    }

    /// Schedules last probes and turns suspicions whose timeout has passed into deaths
    /// (not while this node itself looks cut off).
    pub(super) fn suspicion_tick(&mut self, now: Millis) {
        let interval = self.config.probe_interval_ms;
        let due: Vec<NodeId> = self
            .suspicions
            .iter()
            .filter(|&(_, s)| s.wake_at(interval) <= now)
            .map(|(&id, _)| id)
            .collect();
        if due.is_empty() {
            return;
        }
        let healthy = self.connected_within(now, self.suspicion_timeout());
        for id in due {
            let Some(s) = self.suspicions.get_mut(&id) else { continue };
            let recently_failed = s.recently_failed(now, interval);
            if s.deadline > now {
                // Two periods to go: probe once more unless we just did.
                s.last_probe = true;
                if !recently_failed && !self.prober.priority.contains(&id) {
                    self.prober.priority.push_back(id);
                }
            } else if !healthy {
                s.deadline = now.saturating_add(interval);
                self.stats.deaths_postponed += 1;
            } else if recently_failed {
                self.suspicions.remove(&id);
                self.declare(now, id, Status::Dead);
            } else {
                // The last probe has not failed (yet): make sure it runs, and wait for it.
                s.deadline = now.saturating_add(interval);
                s.last_probe = true;
                self.stats.deaths_postponed += 1;
                let in_flight = self.prober.current.as_ref().is_some_and(|p| p.target == id);
                if !in_flight && !self.prober.priority.contains(&id) {
                    self.prober.priority.push_back(id);
                }
            }
        }
    }
}
