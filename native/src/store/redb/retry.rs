//! When to try a checkpoint or a recovery again after one failed.
//!
//! A checkpoint that fails (a full disk: the commit meets `ENOSPC`) leaves the log
//! whole, and the failed collection is recovered by replaying the log into it; both
//! cost time proportional to the log. Tried again at every flush, a full disk made the
//! disk thread spend all its time failing them (every batch paid a whole-log replay),
//! and each attempt wrote pages that ate the reserve meant for deletes. So after a
//! failure the store waits before the next attempt — a tenth of a second, doubling to
//! five — unless room came back in the meantime (at least [`ROOM`] more bytes free
//! than at the failure), which is tried at once. Writes go on meanwhile: they are in
//! the log, durable with its `fdatasync`, whether or not the files have them yet.

use std::time::{Duration, Instant};

/// The first wait after a failure.
const FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
const MOST: Duration = Duration::from_secs(5);
/// More free bytes than at the failure that count as room come back.
pub(crate) const ROOM: u64 = 1 << 20;

/// The state of the retries: the last failure not yet followed by a success.
#[derive(Debug, Default)]
pub(crate) struct Retry {
    /// When the last attempt failed, and the bytes free then (when known).
    failed: Option<(Instant, Option<u64>)>,
    /// How long to wait after it.
    wait: Duration,
}

impl Retry {
    /// Whether an attempt may be made at `now`, with `free` bytes free: no failure
    /// since the last success, its wait is over, or room came back.
    pub(crate) fn ready(&self, now: Instant, free: Option<u64>) -> bool {
        let Some((at, free_then)) = self.failed else { return true };
        if now.saturating_duration_since(at) >= self.wait {
            return true;
        }
        matches!((free, free_then), (Some(now), Some(then)) if now >= then.saturating_add(ROOM))
    }

    /// An attempt failed at `now` with `free` bytes free: the next waits twice as long
    /// as the last (from [`FIRST`] to [`MOST`]).
    pub(crate) fn failed(&mut self, now: Instant, free: Option<u64>) {
        self.wait = if self.failed.is_some() { (self.wait * 2).clamp(FIRST, MOST) } else { FIRST };
        self.failed = Some((now, free));
    }

    /// An attempt succeeded: the next may come at once.
    pub(crate) fn succeeded(&mut self) {
        *self = Retry::default();
    }

    /// Whether the last attempt failed.
    pub(crate) fn failing(&self) -> bool {
        self.failed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_waits_doubling_up_to_the_most_and_a_success_clears_it() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        assert!(r.ready(t0, None));
        r.failed(t0, None);
        assert!(r.failing());
        assert!(!r.ready(t0 + FIRST / 2, None));
        assert!(r.ready(t0 + FIRST, None));
        let mut at = t0;
        let mut wait = FIRST;
        for _ in 0..10 {
            at += wait;
            r.failed(at, None);
            wait = (wait * 2).min(MOST);
            assert!(!r.ready(at + wait - Duration::from_millis(1), None), "{wait:?}");
            assert!(r.ready(at + wait, None));
        }
        assert_eq!(wait, MOST);
        r.succeeded();
        assert!(!r.failing() && r.ready(at, None));
    }

    #[test]
    fn room_coming_back_is_tried_at_once() {
        let t0 = Instant::now();
        let mut r = Retry::default();
        r.failed(t0, Some(5_000));
        assert!(!r.ready(t0, Some(5_000 + ROOM - 1)));
        assert!(r.ready(t0, Some(5_000 + ROOM)));
        // Unknown free space is no sign of room.
        assert!(!r.ready(t0, None));
        r.failed(t0, None);
        assert!(!r.ready(t0, Some(u64::MAX)));
    }
}
