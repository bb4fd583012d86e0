//! Waiting for the disk off the node thread.
//!
//! A group commit ends with an fsync. Done on the node thread, every batch would wait
//! for the disk before the next one could start, and the node thread sat idle a third
//! of the time under a write load (docs/benchmarks.md). So the driver begins each
//! commit ([`Node::flush_begin`](dhrt_core::node::Node::flush_begin): the log append,
//! no fsync) and hands the returned [`SyncJob`] to a *sync thread*, then goes on with
//! the next batch. When a job returns, the driver reports it to the node
//! ([`Node::committed`](dhrt_core::node::Node::committed)), which decides what that
//! releases — nothing here knows which outputs wait.
//!
//! One job runs at a time. Commits that begin while it runs queue their jobs; only the
//! newest queued job is kept, because an fsync covers every write made before it (its
//! report resolves the skipped epochs too). A failed job drops the queued one: after a
//! failed fsync nothing written since the last good one can be trusted, and the node
//! fails every commit begun so far by itself.

use super::driver::{Inbox, Input};
use dhrt_core::{
    node::durability::Epoch,
    store::{StoreError, SyncJob},
};
use std::sync::{mpsc, Weak};

/// A commit's outcome for the node: `(epoch, result)`.
pub type Report = (Epoch, Result<(), StoreError>);

/// The sync thread's queue.
pub struct Syncer {
    in_flight: bool,
    queued: Option<(Epoch, SyncJob)>,
    jobs: Option<mpsc::Sender<(Epoch, SyncJob)>>,
}

impl Syncer {
    /// A syncer whose jobs run on their own thread and report back to the node thread
    /// as [`Input::Synced`] through `inbox` (weak, so the node thread still sees its
    /// inbox close when the server goes). Without `inbox`, jobs run in place.
    pub fn new(inbox: Option<Weak<Inbox>>) -> Syncer {
        let jobs = inbox.and_then(|inbox| {
            let (tx, rx) = mpsc::channel::<(Epoch, SyncJob)>();
            let spawned = std::thread::Builder::new().name("dhrt-sync".into()).spawn(move || {
                for (epoch, job) in rx {
                    let result = job();
                    match inbox.upgrade() {
                        Some(inbox) => {
                            let _ = inbox.send(Input::Synced { epoch, result });
                        }
                        None => break,
                    }
                }
            });
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "no sync thread: the node thread waits for the disk");
                    None
                }
            }
        });
        Syncer { in_flight: false, queued: None, jobs }
    }

    /// Whether a job runs or waits.
    pub fn busy(&self) -> bool {
        self.in_flight || self.queued.is_some()
    }

    /// Commit `epoch`'s job. Returns its report at once when it ran in place (no sync
    /// thread) or could not be started; otherwise it arrives later as [`Input::Synced`].
    pub fn submit(&mut self, epoch: Epoch, job: SyncJob) -> Option<Report> {
        let Some(jobs) = &self.jobs else {
            return Some((epoch, job()));
        };
        if self.in_flight {
            self.queued = Some((epoch, job));
            return None;
        }
        self.in_flight = jobs.send((epoch, job)).is_ok();
        (!self.in_flight).then(|| (epoch, Err(gone())))
    }

    /// The running job finished (`ok`: it succeeded): starts the queued job, or drops
    /// it after a failure. Returns a report when the queued job could not be started.
    pub fn synced(&mut self, ok: bool) -> Option<Report> {
        self.in_flight = false;
        let (epoch, job) = self.queued.take()?;
        if !ok {
            return None;
        }
        self.submit(epoch, job)
    }
}

fn gone() -> StoreError {
    StoreError::Io("the sync thread is gone".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn ok_job() -> SyncJob {
        Box::new(|| Ok(()))
    }

    /// A syncer whose sync thread reports into a channel the test reads.
    fn threaded() -> (Syncer, Arc<Inbox>, Receiver) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let tx = Arc::new(tx);
        (Syncer::new(Some(Arc::downgrade(&tx))), tx, Receiver(rx))
    }

    /// The test's end of the inbox, read with a timeout.
    struct Receiver(tokio::sync::mpsc::UnboundedReceiver<Input>);

    impl Receiver {
        fn recv_timeout(&mut self, wait: Duration) -> Option<Input> {
            let end = std::time::Instant::now() + wait;
            loop {
                if let Ok(input) = self.0.try_recv() {
                    return Some(input);
                }
                if std::time::Instant::now() >= end {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn next_synced(rx: &mut Receiver) -> (Epoch, Result<(), StoreError>) {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Some(Input::Synced { epoch, result }) => (epoch, result),
            other => panic!("expected a sync report, got {other:?}"),
        }
    }

    #[test]
    fn only_the_newest_queued_job_runs_and_reports_for_the_ones_it_covers() {
        let (mut s, _tx, mut rx) = threaded();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let slow: SyncJob = Box::new(move || {
            let _ = gate_rx.recv_timeout(Duration::from_secs(10));
            Ok(())
        });
        assert!(s.submit(1, slow).is_none());
        assert!(s.submit(2, ok_job()).is_none());
        assert!(s.submit(3, ok_job()).is_none());
        assert!(s.busy());
        gate_tx.send(()).unwrap();
        let (epoch, result) = next_synced(&mut rx);
        assert_eq!((epoch, result.is_ok()), (1, true));
        assert!(s.synced(true).is_none());
        let (epoch, _) = next_synced(&mut rx);
        assert_eq!(epoch, 3, "epoch 2's job was skipped: 3's covers it");
        assert!(s.synced(true).is_none());
        assert!(!s.busy());
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_none(), "no third job ran");
    }

    #[test]
    fn a_failed_job_drops_the_queued_one() {
        let (mut s, _tx, mut rx) = threaded();
        s.submit(1, Box::new(|| Err(StoreError::Io("disk gone".into()))));
        s.submit(2, ok_job());
        let (epoch, result) = next_synced(&mut rx);
        assert_eq!(epoch, 1);
        assert!(matches!(result, Err(StoreError::Io(m)) if m.contains("disk gone")));
        assert!(s.synced(false).is_none());
        assert!(!s.busy());
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_none(), "the queued job never ran");
    }

    #[test]
    fn in_place_jobs_report_at_once() {
        let mut s = Syncer::new(None);
        assert!(matches!(s.submit(1, ok_job()), Some((1, Ok(())))));
        let failed = s.submit(2, Box::new(|| Err(StoreError::Io("no".into()))));
        assert!(matches!(failed, Some((2, Err(_)))));
        assert!(!s.busy());
    }
}
