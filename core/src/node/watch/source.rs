//! The source's side: feeds of the changes this node's replica applies, in numbered
//! batches, re-sent until the watcher acknowledges them.

use super::{Batch, Env, Feed, Timer, Watches};
use crate::{
    clock::Timestamp,
    entry::{Entry, NodeId},
    proto::{watch::Subscription, WatchMessage},
    replica::Change,
    store::Store,
    Millis,
};
use std::collections::VecDeque;

/// Batches re-sent at once when a feed's timer fires.
const RESEND_WINDOW: usize = 32;

fn change_size(key: &[u8], e: &Entry) -> usize {
    key.len() + e.size() + 8
}

impl Watches {
    /// A watcher asks this node for a subscription's changes.
    pub(super) fn subscribe<S: Store>(
        &mut self,
        env: &mut Env<'_, S>,
        now: Millis,
        from: NodeId,
        s: Subscription,
    ) {
        if crate::store::validate_collection(&s.collection).is_err()
            || s.prefix.as_ref().is_some_and(|p| p.len() > crate::store::MAX_KEY_LEN)
        {
            return;
        }
        let key = (from, s.sub);
        self.changed.insert(Timer::Feed(from, s.sub));
        if let Some(feed) = self.feeds.get_mut(&key) {
            if feed.collection == s.collection && feed.prefix == s.prefix {
                if s.resume != Some(feed.epoch) {
                    // The watcher has not seen the first batch yet: re-send now.
                    feed.retransmit_at = now;
                }
                return;
            }
            self.feeds.remove(&key);
        }
        if self.feeds.len() >= self.config.max_feeds {
            return; // the watcher retries; its watch answers Ok at its deadline
        }
        let booted = *self.booted.get_or_insert_with(|| env.clock.now(now));
        let epoch = env.clock.now(now);
        // A feed of this run of the node is gone although the watcher follows it: the
        // node stopped it (it declared the watcher dead), so changes were dropped.
        let lagged = s.resume.is_some_and(|e| e >= booted);
        let base = self.config.retransmit_ms.max(1);
        let mut feed = Feed {
            collection: s.collection,
            prefix: s.prefix.filter(|p| !p.is_empty()),
            epoch,
            next_seq: 1,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            retransmit_at: now + base,
            backoff: base,
            ended: lagged,
        };
        let first = Batch { seq: 1, items: Vec::new(), bytes: 0, lagged };
        feed.next_seq = 2;
        feed.unacked.push_back(first.clone());
        self.feeds.insert(key, feed);
        env.replica.set_change_feed(true);
        self.send_batch(from, s.sub, epoch, first);
        self.stats.batches_sent += 1;
    }

    pub(super) fn send_batch(&mut self, to: NodeId, sub: u64, epoch: Timestamp, b: Batch) {
        let msg =
            WatchMessage::Changes { sub, epoch, seq: b.seq, items: b.items, lagged: b.lagged };
        self.send(to, msg);
    }

    /// The watcher acknowledged a feed's batches up to `seq`.
    pub(super) fn on_ack(
        &mut self,
        now: Millis,
        from: NodeId,
        sub: u64,
        epoch: Timestamp,
        seq: u64,
    ) {
        let key = (from, sub);
        let Some(feed) = self.feeds.get_mut(&key) else { return };
        self.changed.insert(Timer::Feed(from, sub));
        if feed.epoch != epoch {
            return;
        }
        let mut progress = false;
        while feed.unacked.front().is_some_and(|b| b.seq <= seq) {
            if let Some(b) = feed.unacked.pop_front() {
                feed.unacked_bytes -= b.bytes;
                progress = true;
            }
        }
        if progress {
            feed.backoff = self.config.retransmit_ms.max(1);
            feed.retransmit_at = now + feed.backoff;
        }
        if feed.ended && feed.unacked.is_empty() {
            self.feeds.remove(&key);
        }
    }

    /// Adds the changes to the feeds they match, in batches, and sends the batches.
    pub(super) fn route_to_feeds(&mut self, now: Millis, changes: &[Change]) {
        let max_batch = self.config.batch_max_bytes.max(1);
        let max_buffer = self.config.buffer_max_bytes;
        let mut sends: Vec<(NodeId, u64, Timestamp, Batch)> = Vec::new();
        for ((to, sub), feed) in self.feeds.iter_mut() {
            if feed.ended {
                continue;
            }
            let unacked = feed.unacked.len();
            let mut batch = Batch { seq: 0, items: Vec::new(), bytes: 0, lagged: false };
            let mut batches = Vec::new();
            for c in changes {
                if c.collection != feed.collection
                    || !feed.prefix.as_ref().is_none_or(|p| c.key.starts_with(p))
                {
                    continue;
                }
                let size = change_size(&c.key, &c.entry);
                if batch.bytes + size > max_batch && !batch.items.is_empty() {
                    batches.push(std::mem::replace(
                        &mut batch,
                        Batch { seq: 0, items: Vec::new(), bytes: 0, lagged: false },
                    ));
                }
                batch.bytes += size;
                batch.items.push((c.key.clone(), c.entry.clone()));
            }
            if !batch.items.is_empty() {
                batches.push(batch);
            }
            for mut b in batches {
                // At least one batch is always buffered, so a single large value
                // never counts as falling behind.
                if feed.unacked_bytes > 0 && feed.unacked_bytes + b.bytes > max_buffer {
                    // The watcher is too far behind: drop the buffer, tell it so.
                    feed.unacked.clear();
                    feed.unacked_bytes = 0;
                    feed.ended = true;
                    let lag =
                        Batch { seq: feed.next_seq, items: Vec::new(), bytes: 0, lagged: true };
                    feed.next_seq += 1;
                    feed.unacked.push_back(lag.clone());
                    sends.push((*to, *sub, feed.epoch, lag));
                    break;
                }
                b.seq = feed.next_seq;
                feed.next_seq += 1;
                feed.unacked_bytes += b.bytes;
                if feed.unacked.is_empty() {
                    feed.retransmit_at = now + feed.backoff;
                }
                feed.unacked.push_back(b.clone());
                sends.push((*to, *sub, feed.epoch, b));
            }
            if feed.unacked.len() != unacked || feed.ended {
                self.changed.insert(Timer::Feed(*to, *sub));
            }
        }
        self.stats.batches_sent += sends.len() as u64;
        for (to, sub, epoch, b) in sends {
            self.send_batch(to, sub, epoch, b);
        }
    }

    pub(super) fn resend_due(&mut self, now: Millis) {
        let max = self.config.max_retransmit_ms.max(1);
        let mut sends = Vec::new();
        for ((to, sub), feed) in self.feeds.iter_mut() {
            if feed.unacked.is_empty() || feed.retransmit_at > now {
                continue;
            }
            for b in feed.unacked.iter().take(RESEND_WINDOW) {
                sends.push((*to, *sub, feed.epoch, b.clone()));
            }
            feed.backoff = (feed.backoff * 2).min(max);
            feed.retransmit_at = now + feed.backoff;
            self.changed.insert(Timer::Feed(*to, *sub));
        }
        self.stats.batches_resent += sends.len() as u64;
        for (to, sub, epoch, b) in sends {
            self.send_batch(to, sub, epoch, b);
        }
    }
}
