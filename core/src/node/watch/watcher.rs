//! The watcher's side: a client's watch, its subscriptions at every source, and the
//! events it emits — once per change, in timestamp order per key.

use super::{
    error, reachable, reply_to, Env, LocalWatch, Source, Timer, WatchOutput, Watches,
    MAX_HELD_EVENTS, SUBSCRIBE_CHUNK,
};
use crate::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    membership::{Membership, Status},
    node::ClientId,
    proto::{
        client::{ErrorCode, Reply},
        watch::Subscription,
        WatchMessage,
    },
    replica::Change,
    store::Store,
    Millis,
};
use bytes::Bytes;
use std::collections::BTreeMap;

impl Watches {
    pub(super) fn open_watch<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        client: ClientId,
        id: u64,
        collection: String,
        prefix: Option<Bytes>,
    ) {
        if let Err(e) = crate::store::validate_collection(&collection) {
            return self.outputs.push_back(error(
                client,
                id,
                ErrorCode::InvalidInput,
                e.to_string(),
            ));
        }
        if prefix.as_ref().is_some_and(|p| p.len() > crate::store::MAX_KEY_LEN) {
            let msg = format!(
                "a watch prefix can be at most {} bytes (a key's limit)",
                crate::store::MAX_KEY_LEN
            );
            return self.outputs.push_back(error(client, id, ErrorCode::InvalidInput, msg));
        }
        if self.by_client.contains_key(&(client, id)) {
            let msg = format!("a watch with id {id} is already open: use another request id");
            return self.outputs.push_back(error(client, id, ErrorCode::InvalidInput, msg));
        }
        if self.watches.len() >= self.config.max_watches {
            let msg = format!(
                "this node holds the most watches it allows ({}); close some or watch through \
                 another node",
                self.config.max_watches
            );
            return self.outputs.push_back(error(client, id, ErrorCode::Unavailable, msg));
        }
        let mut sub = env.rng.next_u64() ^ env.clock.now(now).0.rotate_left(29);
        while self.watches.contains_key(&sub) {
            sub = env.rng.next_u64();
        }
        let me = env.membership.me().id;
        let sources: BTreeMap<NodeId, Source> = env
            .membership
            .members()
            .filter(|m| m.id != me && m.status != Status::Left)
            .map(|m| (m.id, Source { feed: None, next_subscribe: now }))
            .collect();
        let prefix = prefix.filter(|p| !p.is_empty());
        let watch = LocalWatch {
            client,
            id,
            collection,
            prefix,
            sources,
            opening: Some((now + self.open_timeout_ms, Vec::new())),
            emitted: BTreeMap::new(),
            order: BTreeMap::new(),
            next_order: 0,
        };
        self.watches.insert(sub, watch);
        self.changed.insert(Timer::Watch(sub));
        self.by_client.insert((client, id), sub);
        env.replica.set_change_feed(true);
        self.send_subscribes(env.membership, now, Some(sub));
        self.check_opened(env.membership, now, sub);
    }

    /// Sends the `Subscribe`s that are due (of one watch only, when `only` is given).
    pub(super) fn send_subscribes(
        &mut self,
        membership: &Membership,
        now: Millis,
        only: Option<u64>,
    ) {
        let retry = self.config.retry_ms.max(1);
        let refresh = self.config.refresh_ms.max(1);
        let mut out: BTreeMap<NodeId, Vec<Subscription>> = BTreeMap::new();
        for (sub, w) in self.watches.iter_mut() {
            if only.is_some_and(|o| o != *sub) {
                continue;
            }
            let targets: Vec<NodeId> = w
                .sources
                .iter()
                .filter(|(id, s)| {
                    s.next_subscribe <= now
                        && membership.member(**id).is_some_and(|m| reachable(m.status))
                })
                .map(|(id, _)| *id)
                .collect();
            if !targets.is_empty() {
                self.changed.insert(Timer::Watch(*sub));
            }
            for id in targets {
                let s = w.sources.get(&id).copied();
                out.entry(id).or_default().push(w.subscription(*sub, s.as_ref()));
                if let Some(s) = w.sources.get_mut(&id) {
                    s.next_subscribe = now + if s.feed.is_some() { refresh } else { retry };
                }
            }
        }
        for (to, subs) in out {
            for chunk in subs.chunks(SUBSCRIBE_CHUNK) {
                let msg = WatchMessage::Subscribe { subs: chunk.to_vec() };
                self.send(to, msg);
            }
        }
    }

    /// Sends a watch's `Ok` (and the events held back) once every serving member
    /// confirmed it, or its deadline passed.
    pub(super) fn check_opened(&mut self, membership: &Membership, now: Millis, sub: u64) {
        let Some(w) = self.watches.get(&sub) else { return };
        let Some((deadline, held)) = &w.opening else { return };
        let me = membership.me().id;
        let confirmed = membership
            .members()
            .filter(|m| m.id != me && m.status == Status::Alive)
            .all(|m| w.sources.get(&m.id).is_some_and(|s| s.feed.is_some()));
        if !(confirmed || *deadline <= now || held.len() >= MAX_HELD_EVENTS) {
            return;
        }
        let Some(w) = self.watches.get_mut(&sub) else { return };
        let Some((_, held)) = w.opening.take() else { return };
        self.changed.insert(Timer::Watch(sub));
        let (client, id) = (w.client, w.id);
        self.outputs.push_back(reply_to(client, id, Reply::Ok));
        for r in held {
            self.outputs.push_back(reply_to(client, id, r));
        }
    }

    /// Removes a watch and unsubscribes it everywhere. A watch still opening is
    /// answered first, so that every request gets its answer.
    pub(super) fn close_watch(&mut self, membership: &Membership, sub: u64) {
        let Some(w) = self.watches.remove(&sub) else { return };
        self.changed.insert(Timer::Watch(sub));
        self.by_client.remove(&(w.client, w.id));
        if w.opening.is_some() {
            self.outputs.push_back(reply_to(w.client, w.id, Reply::Ok));
        }
        let targets: Vec<NodeId> = w
            .sources
            .keys()
            .copied()
            .filter(|id| membership.member(*id).is_some_and(|m| reachable(m.status)))
            .collect();
        for to in targets {
            self.send(to, WatchMessage::Unsubscribe { subs: vec![sub] });
        }
    }

    /// Ends a watch that can no longer promise every change.
    pub(super) fn end_lagged(&mut self, membership: &Membership, sub: u64) {
        let Some(w) = self.watches.get_mut(&sub) else { return };
        w.opening = None;
        let (client, id) = (w.client, w.id);
        self.close_watch(membership, sub);
        self.stats.lagged += 1;
        let msg = "the watch fell behind: a node dropped changes for it, so it ended; sync your \
                   copy again (sync) and watch again";
        self.outputs.push_back(error(client, id, ErrorCode::Unavailable, msg));
    }

    /// Ends watch `id` of `client` because an event it was about to send showed a write
    /// whose commit failed (see [`crate::node::durability`]): the client's copy may hold
    /// what never became durable, so it must re-sync. Returns the error to send, once
    /// per watch (`None` when the watch already ended).
    pub(in crate::node) fn end_uncommitted_watch(
        &mut self,
        membership: &Membership,
        client: ClientId,
        id: u64,
        reason: &str,
    ) -> Option<WatchOutput> {
        let sub = *self.by_client.get(&(client, id))?;
        if let Some(w) = self.watches.get_mut(&sub) {
            w.opening = None;
        }
        self.close_watch(membership, sub);
        self.stats.lagged += 1;
        let msg = format!(
            "the watch showed a write that was not committed ({reason}), so it ended; sync \
             your copy again (sync) and watch again"
        );
        Some(error(client, id, ErrorCode::Unavailable, msg))
    }

    /// Drops client sync session `id` of `client`, whose step carried entries whose
    /// commit failed; the client is told to sync again.
    pub(in crate::node) fn end_uncommitted_sync(&mut self, client: ClientId, id: u64) {
        self.syncs.remove(&(client, id));
        self.changed.insert(Timer::Sync(client, id));
    }

    /// A source sent a batch of a watch's changes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_changes(
        &mut self,
        membership: &Membership,
        now: Millis,
        from: NodeId,
        sub: u64,
        epoch: Timestamp,
        seq: u64,
        items: Vec<(Bytes, Entry)>,
        lagged: bool,
    ) {
        let refresh = self.config.refresh_ms.max(1);
        let Some(w) = self.watches.get_mut(&sub) else {
            // A watch that ended (its Unsubscribe was lost): say so again.
            return self.send(from, WatchMessage::Unsubscribe { subs: vec![sub] });
        };
        self.changed.insert(Timer::Watch(sub));
        let source =
            w.sources.entry(from).or_insert(Source { feed: None, next_subscribe: now + refresh });
        match source.feed {
            Some((e, _)) if epoch < e => return, // a feed that was replaced
            Some((e, _)) if epoch == e => {}
            _ if seq == 1 || lagged => {
                // The first batch of a new feed (the first, or one a restarted source
                // opened): follow it from here.
                source.feed = Some((epoch, 1));
                source.next_subscribe = now + refresh;
            }
            _ => return, // a newer feed whose first batch has not arrived yet
        }
        let next = source.feed.map_or(1, |(_, n)| n);
        let accepted = !lagged && seq == next;
        if accepted {
            source.feed = Some((epoch, next + 1));
        }
        let acked = if lagged && seq >= next { seq } else { next + u64::from(accepted) - 1 };
        if acked > 0 {
            self.send(from, WatchMessage::ChangesAck { sub, epoch, seq: acked });
        }
        if lagged && seq >= next {
            return self.end_lagged(membership, sub);
        }
        if !accepted {
            self.stats.batches_discarded += 1;
            return;
        }
        for (key, entry) in items {
            self.emit(now, sub, key, entry);
        }
        self.check_opened(membership, now, sub);
    }

    /// Emits a change to a watch's client when it is newer than the last emitted for
    /// its key.
    pub(super) fn emit(&mut self, now: Millis, sub: u64, key: Bytes, entry: Entry) {
        let max_keys = self.config.max_keys;
        let Some(w) = self.watches.get_mut(&sub) else { return };
        if !w.prefix.as_ref().is_none_or(|p| key.starts_with(p)) {
            return;
        }
        if !w.admit(&key, entry.version(), max_keys) {
            self.stats.suppressed += 1;
            return;
        }
        self.stats.events += 1;
        let Entry { value, ts, origin, expires } = entry.materialize(now);
        let event =
            Reply::Event { collection: w.collection.clone(), key, value, ts, origin, expires };
        match w.opening.as_mut() {
            Some((_, held)) => held.push(event),
            None => {
                let (client, id) = (w.client, w.id);
                self.outputs.push_back(reply_to(client, id, event));
            }
        }
    }

    /// Emits the changes that match local watches.
    pub(super) fn route_to_watches(
        &mut self,
        membership: &Membership,
        now: Millis,
        changes: &[Change],
    ) {
        let subs: Vec<u64> = self
            .watches
            .iter()
            .filter(|(_, w)| changes.iter().any(|c| w.matches(&c.collection, &c.key)))
            .map(|(s, _)| *s)
            .collect();
        for sub in subs {
            for c in changes {
                let matches =
                    self.watches.get(&sub).is_some_and(|w| w.matches(&c.collection, &c.key));
                if matches {
                    self.emit(now, sub, c.key.clone(), c.entry.clone());
                }
            }
            self.check_opened(membership, now, sub);
        }
    }
}
