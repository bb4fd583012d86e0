//! Keyspace notifications: Redis's `__keyspace@<db>__:<key>` and
//! `__keyevent@<db>__:<event>` channels, fed by dhrt's watches.
//!
//! A connection that subscribes to a channel (or a pattern) of database `n` watches
//! `n`'s collection — one dhrt watch per database, whatever the number of channels —
//! so it hears of every write to it made through any node of the cluster, once, in
//! timestamp order per key (dhrt's watch guarantees). Each change becomes Redis's
//! messages: a write with a value is the event `set` (and `expire` too when it carries
//! a time to live), a delete is `del`, and a value whose time ran out is `expired` —
//! sent when the node's collector rewrites it as a tombstone, which happens within a
//! collector round after the expiry, not at its millisecond (Redis too announces
//! expiries when it finds them). As in Redis, nothing is sent unless
//! `notify-keyspace-events` enables it (`K` for keyspace channels, `E` for keyevent
//! ones, with `$` for `set`, `g` for `del` and `expire`, `x` for `expired`, `A` for
//! all).
//!
//! Only keyspace channels can be subscribed to: dhrt has no PUBLISH, so any other
//! channel could never carry a message, and SUBSCRIBE says so rather than wait forever.

use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};

/// Most channels and patterns one connection may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;

/// A connection's subscriptions.
#[derive(Debug, Default)]
pub struct Subscriptions {
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    /// The open watch of each database: its request id.
    watches: HashMap<u32, u64>,
}

/// What a change delivers: `(pattern, channel, message)`, the pattern `None` for an
/// exact channel.
pub type Message = (Option<Bytes>, Bytes, Bytes);

/// A change of a key, as Redis names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A write; `ttl` when it carries a time to live.
    Set {
        /// It expires.
        ttl: bool,
    },
    /// A delete.
    Del,
    /// Its time to live ran out.
    Expired,
}

impl Change {
    /// The change a watch event reports: its value, and its expiry (an expired entry
    /// arrives without its value but with the expiry it passed).
    pub fn of(has_value: bool, expires: bool) -> Change {
        match (has_value, expires) {
            (true, ttl) => Change::Set { ttl },
            (false, true) => Change::Expired,
            (false, false) => Change::Del,
        }
    }
}

impl Subscriptions {
    /// How many channels and patterns are subscribed to (Redis's count in replies).
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Whether the connection is in subscribed mode.
    pub fn active(&self) -> bool {
        self.count() > 0
    }

    /// Subscribes to `name` (a pattern when `pattern`); false when it was already.
    pub fn add(&mut self, name: Bytes, pattern: bool) -> bool {
        if pattern {
            self.patterns.insert(name)
        } else {
            self.channels.insert(name)
        }
    }

    /// Unsubscribes from `name`; false when it was not subscribed.
    pub fn remove(&mut self, name: &[u8], pattern: bool) -> bool {
        if pattern {
            self.patterns.remove(name)
        } else {
            self.channels.remove(name)
        }
    }

    /// Every channel (or pattern) subscribed to.
    pub fn names(&self, pattern: bool) -> Vec<Bytes> {
        let set = if pattern { &self.patterns } else { &self.channels };
        set.iter().cloned().collect()
    }

    /// The databases some subscription may hear from, given `dbs` (those mapped).
    pub fn wanted(&self, dbs: &[u32]) -> BTreeSet<u32> {
        let exact = self.channels.iter().filter_map(|c| channel_db(c));
        let by_pattern = self.patterns.iter().flat_map(|p| pattern_dbs(p, dbs));
        exact.chain(by_pattern).collect()
    }

    /// The request id of database `db`'s watch, if one is open.
    pub fn watch_of(&self, db: u32) -> Option<u64> {
        self.watches.get(&db).copied()
    }

    /// The database whose watch has request id `id`.
    pub fn db_of_watch(&self, id: u64) -> Option<u32> {
        self.watches.iter().find(|(_, w)| **w == id).map(|(db, _)| *db)
    }

    /// Records `db`'s watch as request `id`.
    pub fn watching(&mut self, db: u32, id: u64) {
        self.watches.insert(db, id);
    }

    /// Forgets `db`'s watch, returning its id.
    pub fn unwatch(&mut self, db: u32) -> Option<u64> {
        self.watches.remove(&db)
    }

    /// The databases watched now.
    pub fn watched(&self) -> Vec<u32> {
        self.watches.keys().copied().collect()
    }

    /// The messages a change of `key` in database `db` delivers to this connection,
    /// under the flags `notify` (`notify-keyspace-events`).
    pub fn messages(&self, db: u32, key: &[u8], change: Change, notify: &str) -> Vec<Message> {
        let mut events: Vec<&str> = Vec::new();
        let on = |class: char| notify.contains('A') || notify.contains(class);
        match change {
            Change::Set { ttl } => {
                if on('$') {
                    events.push("set");
                }
                if ttl && on('g') {
                    events.push("expire");
                }
            }
            Change::Del if on('g') => events.push("del"),
            Change::Expired if on('x') => events.push("expired"),
            _ => {}
        }
        let mut out = Vec::new();
        for event in events {
            if notify.contains('K') {
                let mut channel = format!("__keyspace@{db}__:").into_bytes();
                channel.extend_from_slice(key);
                self.deliver(Bytes::from(channel), Bytes::from(event), &mut out);
            }
            if notify.contains('E') {
                let channel = Bytes::from(format!("__keyevent@{db}__:{event}"));
                self.deliver(channel, Bytes::copy_from_slice(key), &mut out);
            }
        }
        out
    }

    fn deliver(&self, channel: Bytes, message: Bytes, out: &mut Vec<Message>) {
        if self.channels.contains(&channel) {
            out.push((None, channel.clone(), message.clone()));
        }
        for p in &self.patterns {
            if super::keys::glob(p, &channel) {
                out.push((Some(p.clone()), channel.clone(), message.clone()));
            }
        }
    }
}

/// The database of a keyspace or keyevent channel; `None` for any other channel.
pub fn channel_db(channel: &[u8]) -> Option<u32> {
    let rest =
        channel.strip_prefix(b"__keyspace@").or_else(|| channel.strip_prefix(b"__keyevent@"))?;
    let end = rest.windows(3).position(|w| w == b"__:")?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The databases (of `dbs`) whose keyspace or keyevent channels `pattern` may match;
/// empty when it can match none of them.
pub fn pattern_dbs(pattern: &[u8], dbs: &[u32]) -> Vec<u32> {
    if let Some(db) = channel_db(pattern) {
        return if dbs.contains(&db) { vec![db] } else { Vec::new() };
    }
    // Whether the pattern could match some channel of `db`: try the channels' fixed
    // beginnings against the pattern's literal start.
    let literal = super::keys::literal_prefix(pattern);
    dbs.iter()
        .copied()
        .filter(|db| {
            ["__keyspace@", "__keyevent@"].iter().any(|kind| {
                let head = format!("{kind}{db}__:");
                let n = literal.len().min(head.len());
                literal[..n] == head.as_bytes()[..n]
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_their_database() {
        assert_eq!(channel_db(b"__keyspace@0__:user:1"), Some(0));
        assert_eq!(channel_db(b"__keyevent@12__:set"), Some(12));
        assert_eq!(channel_db(b"news"), None);
        assert_eq!(channel_db(b"__keyspace@x__:k"), None);
        let dbs = [0, 1, 2];
        assert_eq!(pattern_dbs(b"__keyspace@1__:*", &dbs), [1]);
        assert_eq!(pattern_dbs(b"__key*__:*", &dbs), [0, 1, 2]);
        assert_eq!(pattern_dbs(b"*", &dbs), [0, 1, 2]);
        assert_eq!(pattern_dbs(b"__keyevent@*", &dbs), [0, 1, 2]);
        assert!(pattern_dbs(b"news.*", &dbs).is_empty());
        assert!(pattern_dbs(b"__keyspace@9__:*", &dbs).is_empty());
    }

    #[test]
    fn changes_become_redis_messages_when_enabled() {
        let mut subs = Subscriptions::default();
        subs.add(Bytes::from_static(b"__keyspace@0__:k"), false);
        subs.add(Bytes::from_static(b"__keyevent@0__:*"), true);
        let set = Change::Set { ttl: false };
        assert!(subs.messages(0, b"k", set, "").is_empty(), "off by default");
        let m = subs.messages(0, b"k", set, "KE$");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], (None, "__keyspace@0__:k".into(), "set".into()));
        assert_eq!(
            m[1],
            (Some("__keyevent@0__:*".into()), "__keyevent@0__:set".into(), "k".into())
        );
        let del = subs.messages(0, b"k", Change::Del, "KEA");
        assert_eq!(del[0].2, "del");
        assert!(subs.messages(0, b"k", Change::Del, "KE$").is_empty(), "del needs g");
        assert!(subs.messages(1, b"k", set, "KEA").is_empty(), "another database");
        let ex = subs.messages(0, b"k", Change::Set { ttl: true }, "KA");
        assert_eq!(ex.iter().map(|m| m.2.clone()).collect::<Vec<_>>(), ["set", "expire"]);
        assert_eq!(Change::of(false, true), Change::Expired);
        assert_eq!(subs.messages(0, b"k", Change::Expired, "Kx")[0].2, "expired");
        assert!(subs.messages(0, b"k", Change::Expired, "Kg").is_empty(), "expired needs x");
        assert_eq!(subs.wanted(&[0, 1]), BTreeSet::from([0]));
        assert!(subs.remove(b"__keyspace@0__:k", false));
        assert!(!subs.remove(b"__keyspace@0__:k", false));
        assert_eq!(subs.count(), 1);
    }
}
