//! Deadlines of many things at once, in time order: how a part of the node that waits
//! on many requests knows its next deadline without looking at every one of them.
//!
//! Each key (a request number, as a rule) has at most one deadline. The earliest is at
//! hand ([`Timers::next`]), those due by a time are a range ([`Timers::due`]), and
//! setting, moving or cancelling one costs a logarithm of how many there are.

use crate::Millis;
use std::collections::{BTreeMap, BTreeSet};

/// Deadlines by key; see the module docs.
#[derive(Debug, Clone)]
pub struct Timers<K: Ord + Copy> {
    by_time: BTreeSet<(Millis, K)>,
    at: BTreeMap<K, Millis>,
}

impl<K: Ord + Copy> Default for Timers<K> {
    fn default() -> Self {
        Timers { by_time: BTreeSet::new(), at: BTreeMap::new() }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// Gives `key` the deadline `at`, replacing any it had; `None` cancels it.
    pub fn set(&mut self, key: K, at: Option<Millis>) {
        if self.at.get(&key).copied() == at {
            return;
        }
        self.cancel(key);
        if let Some(at) = at {
            self.by_time.insert((at, key));
            self.at.insert(key, at);
        }
    }

    /// Removes `key`'s deadline, if it has one.
    pub fn cancel(&mut self, key: K) {
        if let Some(at) = self.at.remove(&key) {
            self.by_time.remove(&(at, key));
        }
    }

    /// `key`'s deadline.
    pub fn get(&self, key: K) -> Option<Millis> {
        self.at.get(&key).copied()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Millis> {
        self.by_time.first().map(|&(at, _)| at)
    }

    /// The keys whose deadline is at or before `now`, sorted by key (the order in which
    /// they were handed out, for request numbers), so that what they trigger happens in
    /// an order that does not depend on their deadlines' ties.
    pub fn due(&self, now: Millis) -> Vec<K> {
        let mut due: Vec<K> =
            self.by_time.iter().take_while(|(at, _)| *at <= now).map(|&(_, k)| k).collect();
        due.sort_unstable();
        due
    }

    /// How many keys have a deadline.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether no key has a deadline.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_deadline_and_those_due_follow_every_change() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(7u64, Some(30));
        t.set(3, Some(10));
        t.set(5, Some(10));
        assert_eq!(t.next(), Some(10));
        assert_eq!(t.due(9), Vec::<u64>::new());
        assert_eq!(t.due(10), vec![3, 5]);
        // Moved later, then cancelled: it is no longer due at its old time.
        t.set(3, Some(40));
        assert_eq!(t.due(10), vec![5]);
        t.cancel(5);
        assert_eq!((t.next(), t.len()), (Some(30), 2));
        assert_eq!(t.due(100), vec![3, 7], "sorted by key, not by deadline");
        t.set(7, None);
        assert_eq!((t.get(7), t.get(3), t.len()), (None, Some(40), 1));
        t.cancel(3);
        assert!(t.is_empty() && t.next().is_none());
    }
}
