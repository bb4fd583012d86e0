//! Watches and local copies: subscriptions that outlive the node they are placed on.
//!
//! A subscription is one [`Op::Watch`] on one node at a time. When that node's
//! connection fails, it answers an error after its `Ok` (the watch lagged), or it never
//! answers, the subscription is placed again on another node and reported
//! [`StreamStatus::Interrupted`] until it is [`StreamStatus::Live`] again. A local copy
//! is a subscription whose events are merged into its [`LocalCopy`]; each time it
//! becomes live it catches up with a sync round — watch first, then sync, the order
//! `docs/protocol.md` prescribes so that nothing is missed.

use super::{LightOutput, LightPeer, LocalCopy, Purpose, StreamStatus};
use crate::{
    entry::Entry,
    proto::client::{ErrorCode, Op, Reply},
    replica::Change,
    Millis,
};
use bytes::Bytes;

/// A watch or a local copy.
#[derive(Debug)]
pub(super) struct Sub {
    collection: String,
    prefix: Option<Bytes>,
    /// Whether the node confirmed the watch in place now.
    live: bool,
    /// When to try placing it again after no node took it.
    retry_at: Option<Millis>,
    /// The local copy, for copies.
    copy: Option<LocalCopy>,
    /// Whether a copy reports each change it applies.
    notify: bool,
    /// When a copy starts its next catch-up.
    resync_at: Option<Millis>,
}

impl LightPeer {
    /// Subscribes to changes of `collection` (keys starting with `prefix`, if given).
    /// Changes arrive as [`LightOutput::Change`] with the returned handle, states as
    /// [`LightOutput::Status`].
    pub fn watch(&mut self, now: Millis, collection: &str, prefix: Option<Bytes>) -> u64 {
        self.subscribe(now, collection, prefix, None, false)
    }

    /// Opens a local copy of `collection`: watched, then caught up by sync, and kept
    /// current. With `notify`, every change applied to it is reported as a
    /// [`LightOutput::Change`]; its states come as [`LightOutput::Status`]. Read it
    /// with [`LightPeer::copy`].
    pub fn open_copy(&mut self, now: Millis, collection: &str, notify: bool) -> u64 {
        let mut copy = LocalCopy::new(collection);
        copy.set_change_feed(notify);
        // The collection's layout may have changed since the peer last asked.
        self.refresh_layouts(now);
        self.subscribe(now, collection, None, Some(copy), notify)
    }

    /// The local copy `handle`, if it is open.
    pub fn copy(&self, handle: u64) -> Option<&LocalCopy> {
        self.subs.get(&handle).and_then(|s| s.copy.as_ref())
    }

    /// Ends watch or copy `handle`; false when no such subscription is open.
    pub fn unsubscribe(&mut self, now: Millis, handle: u64) -> bool {
        if self.subs.remove(&handle).is_none() {
            return false;
        }
        if let Some((id, addr)) = self.watch_flight(handle) {
            self.inflight.remove(&id);
            self.send_to(now, Purpose::Unwatch, Op::Unwatch { watch: id }, vec![addr]);
        }
        self.drop_sync_flights(handle);
        true
    }

    fn subscribe(
        &mut self,
        now: Millis,
        collection: &str,
        prefix: Option<Bytes>,
        copy: Option<LocalCopy>,
        notify: bool,
    ) -> u64 {
        let handle = self.fresh_id();
        let sub = Sub {
            collection: collection.to_string(),
            prefix,
            live: false,
            retry_at: None,
            copy,
            notify,
            resync_at: None,
        };
        self.subs.insert(handle, sub);
        self.place(now, handle);
        handle
    }

    /// Sends the subscription's watch to the best node.
    fn place(&mut self, now: Millis, handle: u64) {
        let Some(sub) = self.subs.get(&handle) else { return };
        let op = Op::Watch { collection: sub.collection.clone(), prefix: sub.prefix.clone() };
        let candidates = self.any_candidates(now);
        self.send_to(now, Purpose::Watch(handle), op, candidates);
    }

    /// The wire id and node of the watch request of `handle`, if one is out.
    fn watch_flight(&self, handle: u64) -> Option<(u64, String)> {
        self.inflight.iter().find_map(|(id, f)| match f.purpose {
            Purpose::Watch(h) if h == handle => Some((*id, f.addr.clone())),
            _ => None,
        })
    }

    fn drop_sync_flights(&mut self, handle: u64) {
        self.inflight
            .retain(|_, f| !matches!(f.purpose, Purpose::Sync { copy, .. } if copy == handle));
    }

    fn status(&mut self, handle: u64, status: StreamStatus) {
        self.outputs.push_back(LightOutput::Status { handle, status });
    }

    /// A node's answer to the watch request `id` of subscription `handle`.
    pub(super) fn on_watch_reply(&mut self, now: Millis, id: u64, handle: u64, result: Reply) {
        let confirmed = self.inflight.get(&id).is_some_and(|f| f.deadline.is_none());
        match result {
            Reply::Ok if !confirmed => {
                if let Some(f) = self.inflight.get_mut(&id) {
                    f.deadline = None;
                    self.home = Some(f.addr.clone());
                }
                let Some(sub) = self.subs.get_mut(&handle) else { return };
                sub.live = true;
                let is_copy = sub.copy.is_some();
                self.status(handle, StreamStatus::Live);
                if is_copy {
                    self.begin_catch_up(now, handle);
                }
            }
            Reply::Event { collection, key, value, ts, origin, expires } => {
                let entry = Entry { value, ts, origin, expires };
                let Some(sub) = self.subs.get_mut(&handle) else { return };
                match sub.copy.as_mut() {
                    Some(copy) => {
                        copy.apply(key, entry);
                        self.emit_copy_changes(handle);
                    }
                    None => {
                        let change = Change { collection, key, entry };
                        self.outputs.push_back(LightOutput::Change { handle, change });
                    }
                }
            }
            Reply::Error { code, message, .. } => {
                if confirmed {
                    self.inflight.remove(&id);
                    self.on_watch_lost(now, handle, message);
                } else if code == ErrorCode::Unavailable || code == ErrorCode::Timeout {
                    self.attempt_failed(now, id);
                } else {
                    self.inflight.remove(&id);
                    self.end_sub(handle, code, message);
                }
            }
            _ => {}
        }
    }

    /// Subscription `handle` lost its node: place it again.
    pub(super) fn on_watch_lost(&mut self, now: Millis, handle: u64, reason: String) {
        let Some(sub) = self.subs.get_mut(&handle) else { return };
        sub.live = false;
        if let Some(copy) = sub.copy.as_mut() {
            copy.cancel_round();
        }
        self.drop_sync_flights(handle);
        self.status(handle, StreamStatus::Interrupted { reason });
        self.place(now, handle);
    }

    /// No node took subscription `handle`: try again later.
    pub(super) fn on_watch_unplaced(&mut self, now: Millis, handle: u64) {
        let retry = now + self.config.retry_ms;
        let Some(sub) = self.subs.get_mut(&handle) else { return };
        sub.retry_at = Some(retry);
        let reason = "no node took the subscription; trying again".to_string();
        self.status(handle, StreamStatus::Interrupted { reason });
    }

    /// Subscription `handle` ends for good.
    pub(super) fn end_sub(&mut self, handle: u64, code: ErrorCode, message: String) {
        if self.subs.remove(&handle).is_some() {
            self.drop_sync_flights(handle);
            self.status(handle, StreamStatus::Ended { code, message });
        }
    }

    /// Starts a sync round of copy `handle` over the ring as last read, planned by the
    /// layout its collection uses.
    fn begin_catch_up(&mut self, now: Millis, handle: u64) {
        let Some(sub) = self.subs.get(&handle) else { return };
        let plan = self.sync_plan(&sub.collection);
        let retry = now + self.config.retry_ms;
        let Some(sub) = self.subs.get_mut(&handle) else { return };
        let Some(copy) = sub.copy.as_mut() else { return };
        if plan.is_empty() {
            sub.resync_at = Some(retry);
            return;
        }
        let total = plan.len();
        copy.begin_round(plan);
        self.status(handle, StreamStatus::Syncing { done: 0, total });
        self.pump_copy(now, handle);
    }

    /// Launches the sessions copy `handle` may run, and ends its round when all are done.
    fn pump_copy(&mut self, now: Millis, handle: u64) {
        let retry = now + self.config.retry_ms;
        let parallel = self.config.sync_parallel;
        let LightPeer { subs, next_id, rng, .. } = self;
        let Some(sub) = subs.get_mut(&handle) else { return };
        let Some(copy) = sub.copy.as_mut() else { return };
        let starts = copy.launch(parallel, next_id, rng);
        let finished = copy.finish_round();
        let entries = copy.len();
        if finished == Some(false) {
            sub.resync_at = Some(retry);
        }
        if finished == Some(true) {
            self.status(handle, StreamStatus::Synced { entries });
        }
        // Pieces no node would serve: the collection's layout may have moved since the
        // peer last asked; the next round plans by what a node says then.
        if finished == Some(false) {
            self.refresh_layouts(now);
        }
        for (session, addr, begin) in starts {
            let purpose = Purpose::Sync { copy: handle, session };
            self.send_to(now, purpose, Op::Sync { msg: begin }, vec![addr]);
        }
        self.emit_copy_changes(handle);
    }

    /// The node's answer in session `session` of copy `handle`.
    pub(super) fn on_sync_reply(&mut self, now: Millis, handle: u64, session: u64, reply: Reply) {
        let Some(copy) = self.subs.get_mut(&handle).and_then(|s| s.copy.as_mut()) else {
            return;
        };
        if !copy.is_running(session) {
            return;
        }
        match copy.on_reply(session, reply) {
            Some((addr, msg)) => {
                let purpose = Purpose::Sync { copy: handle, session };
                self.send_to(now, purpose, Op::Sync { msg }, vec![addr]);
                self.emit_copy_changes(handle);
            }
            None => self.session_ended(now, handle),
        }
    }

    /// Session `session` of copy `handle` got no answer.
    pub(super) fn on_sync_failed(&mut self, now: Millis, handle: u64, session: u64) {
        let Some(copy) = self.subs.get_mut(&handle).and_then(|s| s.copy.as_mut()) else {
            return;
        };
        copy.on_failure(session);
        self.pump_copy(now, handle);
    }

    fn session_ended(&mut self, now: Millis, handle: u64) {
        let progress = self.copy(handle).and_then(LocalCopy::progress);
        if let Some((done, total)) = progress {
            self.status(handle, StreamStatus::Syncing { done, total });
        }
        self.pump_copy(now, handle);
    }

    fn emit_copy_changes(&mut self, handle: u64) {
        let Some(sub) = self.subs.get_mut(&handle) else { return };
        if !sub.notify {
            return;
        }
        let Some(copy) = sub.copy.as_mut() else { return };
        for change in copy.take_changes() {
            self.outputs.push_back(LightOutput::Change { handle, change });
        }
    }

    /// Subscriptions waiting to be placed again, copies waiting for a new round.
    pub(super) fn tick_subs(&mut self, now: Millis) {
        let due = |t: Option<Millis>| t.is_some_and(|t| t <= now);
        let place: Vec<u64> =
            self.subs.iter().filter(|(_, s)| due(s.retry_at)).map(|(h, _)| *h).collect();
        for handle in place {
            if let Some(sub) = self.subs.get_mut(&handle) {
                sub.retry_at = None;
            }
            self.place(now, handle);
        }
        let resync: Vec<u64> =
            self.subs.iter().filter(|(_, s)| s.live && due(s.resync_at)).map(|(h, _)| *h).collect();
        for handle in resync {
            if let Some(sub) = self.subs.get_mut(&handle) {
                sub.resync_at = None;
            }
            self.begin_catch_up(now, handle);
        }
    }

    /// The earliest retry of a subscription or a copy.
    pub(super) fn subs_deadline(&self) -> Option<Millis> {
        self.subs.values().flat_map(|s| [s.retry_at, s.resync_at]).flatten().min()
    }
}
