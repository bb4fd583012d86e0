//! Waiting for the disk off the node thread.
//!
//! A group commit ends with an fsync. Done on the node thread, every batch would wait
//! for the disk before the next one could start, and the node thread sat idle a third
//! of the time under a write load (docs/benchmarks.md). So the driver begins each
//! commit ([`Node::flush_begin`](dhrt_core::node::Node::flush_begin): the log append,
//! no fsync) and goes on with the next batch; the commit's [`SyncJob`] tells the node
//! thread, as [`Input::Synced`], when the disk has it, and the driver reports that to
//! the node ([`Node::committed`](dhrt_core::node::Node::committed)), which decides what
//! it releases — nothing here knows which outputs wait.
//!
//! Two kinds of job:
//! - [`SyncJob::Report`] (the memory-first store, whose disk thread already waits for
//!   the fsync): given a function that sends to the node thread's inbox, which the
//!   store's thread calls itself. No thread in between. A success reported after a
//!   later commit's success was sent is not sent: that one covered it (the store
//!   reports the newest success of a group commit first), and the node thread wakes
//!   once per fsync, not once per batch.
//! - [`SyncJob::Run`] (the `RedbStore` alone): a wait, run on the *sync thread*,
//!   started the first time one comes. One runs at a time. Commits that begin while it
//!   runs queue their jobs; only the newest queued job is kept, because an fsync covers
//!   every write made before it (its report resolves the skipped epochs too). A failed
//!   job drops the queued one: after a failed fsync nothing written since the last good
//!   one can be trusted, and the node fails every commit begun so far by itself.

use super::driver::{Inbox, Input};
use dhrt_core::{
    node::durability::Epoch,
    store::{StoreError, SyncJob},
};
use std::sync::{
    atomic::{AtomicU64, Ordering},
    mpsc, Arc, Weak,
};

/// A commit's outcome for the node: `(epoch, result)`.
pub type Report = (Epoch, Result<(), StoreError>);

/// A wait for the disk the sync thread runs.
type Wait = Box<dyn FnOnce() -> Result<(), StoreError> + Send>;

/// Who told the node thread a commit's outcome ([`Input::Synced`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teller {
    /// The sync thread, after running a [`SyncJob::Run`].
    SyncThread,
    /// The store's own thread, for a [`SyncJob::Report`].
    Store,
}

/// The commits waiting for the disk.
pub struct Syncer {
    /// The node thread's inbox (`None`: every job waits in place).
    inbox: Option<Weak<Inbox>>,
    /// The sync thread's queue, once it runs.
    jobs: Option<mpsc::Sender<(Epoch, Wait)>>,
    in_flight: bool,
    queued: Option<(Epoch, Wait)>,
    /// The newest commit whose store reports by itself, until its report comes.
    awaiting: Option<Epoch>,
    /// The newest commit whose success a store's report sent to the node thread.
    told_ok: Arc<AtomicU64>,
}

impl Syncer {
    /// A syncer whose jobs report back to the node thread as [`Input::Synced`] through
    /// `inbox` (weak, so the node thread still sees its inbox close when the server
    /// goes). Without `inbox`, jobs wait in place.
    pub fn new(inbox: Option<Weak<Inbox>>) -> Syncer {
        let told_ok = Arc::new(AtomicU64::new(0));
        Syncer { inbox, jobs: None, in_flight: false, queued: None, awaiting: None, told_ok }
    }

    /// Whether a job runs or waits.
    pub fn busy(&self) -> bool {
        self.in_flight || self.queued.is_some() || self.awaiting.is_some()
    }

    /// Commit `epoch`'s job. Returns its report at once when it waited in place (no
    /// inbox) or could not be started; otherwise it arrives later as [`Input::Synced`].
    pub fn submit(&mut self, epoch: Epoch, job: SyncJob) -> Option<Report> {
        let Some(inbox) = self.inbox.clone() else {
            return Some((epoch, job.wait()));
        };
        match job {
            SyncJob::Report(register) => {
                self.awaiting = Some(epoch);
                let told_ok = self.told_ok.clone();
                register(Box::new(move |result| {
                    // Covered by a later success already sent (its epoch is newer).
                    if result.is_ok() && told_ok.fetch_max(epoch, Ordering::AcqRel) > epoch {
                        return;
                    }
                    tell(&inbox, epoch, result, Teller::Store)
                }));
                None
            }
            SyncJob::Run(wait) => {
                if self.in_flight {
                    self.queued = Some((epoch, wait));
                    return None;
                }
                self.start(epoch, wait)
            }
        }
    }

    /// Hands `wait` to the sync thread (started now when it does not run yet).
    fn start(&mut self, epoch: Epoch, wait: Wait) -> Option<Report> {
        if self.jobs.is_none() {
            self.jobs = self.inbox.clone().and_then(spawn);
        }
        let Some(jobs) = &self.jobs else {
            // No sync thread: the node thread waits itself.
            return Some((epoch, wait()));
        };
        self.in_flight = jobs.send((epoch, wait)).is_ok();
        (!self.in_flight).then(|| (epoch, Err(gone())))
    }

    /// Commit `epoch`'s job, told by `teller`, finished (`ok`: it succeeded). After the
    /// sync thread's, starts the queued job, or drops it after a failure; returns a
    /// report when the queued job could not be started.
    pub fn synced(&mut self, epoch: Epoch, teller: Teller, ok: bool) -> Option<Report> {
        if teller == Teller::Store {
            // The newest always reports itself (nothing newer covers it).
            if self.awaiting.is_some_and(|newest| epoch >= newest) {
                self.awaiting = None;
            }
            return None;
        }
        self.in_flight = false;
        let (epoch, wait) = self.queued.take()?;
        if !ok {
            return None;
        }
        self.start(epoch, wait)
    }
}

/// Sends a commit's outcome to the node thread (nothing when the server is gone).
fn tell(inbox: &Weak<Inbox>, epoch: Epoch, result: Result<(), StoreError>, by: Teller) {
    if let Some(inbox) = inbox.upgrade() {
        let _ = inbox.send(Input::Synced { epoch, result, by });
    }
}

/// Starts the sync thread; `None` when the system will not give one.
fn spawn(inbox: Weak<Inbox>) -> Option<mpsc::Sender<(Epoch, Wait)>> {
    let (tx, rx) = mpsc::channel::<(Epoch, Wait)>();
    let spawned = std::thread::Builder::new().name("dhrt-sync".into()).spawn(move || {
        for (epoch, wait) in rx {
            let result = wait();
            if inbox.strong_count() == 0 {
                break;
            }
            tell(&inbox, epoch, result, Teller::SyncThread);
        }
    });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "no sync thread: the node thread waits for the disk");
            None
        }
    }
}

fn gone() -> StoreError {
    StoreError::Io("the sync thread is gone".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhrt_core::store::SyncReport;
    use std::sync::Arc;
    use std::time::Duration;

    fn ok_job() -> SyncJob {
        SyncJob::run(|| Ok(()))
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
            Some(Input::Synced { epoch, result, by: Teller::SyncThread }) => (epoch, result),
            other => panic!("expected the sync thread's report, got {other:?}"),
        }
    }

    #[test]
    fn only_the_newest_queued_job_runs_and_reports_for_the_ones_it_covers() {
        let (mut s, _tx, mut rx) = threaded();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let slow = SyncJob::run(move || {
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
        assert!(s.synced(epoch, Teller::SyncThread, true).is_none());
        let (epoch, _) = next_synced(&mut rx);
        assert_eq!(epoch, 3, "epoch 2's job was skipped: 3's covers it");
        assert!(s.synced(epoch, Teller::SyncThread, true).is_none());
        assert!(!s.busy());
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_none(), "no third job ran");
    }

    #[test]
    fn a_failed_job_drops_the_queued_one() {
        let (mut s, _tx, mut rx) = threaded();
        s.submit(1, SyncJob::run(|| Err(StoreError::Io("disk gone".into()))));
        s.submit(2, ok_job());
        let (epoch, result) = next_synced(&mut rx);
        assert_eq!(epoch, 1);
        assert!(matches!(result, Err(StoreError::Io(m)) if m.contains("disk gone")));
        assert!(s.synced(epoch, Teller::SyncThread, false).is_none());
        assert!(!s.busy());
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_none(), "the queued job never ran");
    }

    #[test]
    fn in_place_jobs_report_at_once() {
        let mut s = Syncer::new(None);
        assert!(matches!(s.submit(1, ok_job()), Some((1, Ok(())))));
        let failed = s.submit(2, SyncJob::run(|| Err(StoreError::Io("no".into()))));
        assert!(matches!(failed, Some((2, Err(_)))));
        assert!(!s.busy());
    }

    #[test]
    fn a_store_that_reports_tells_the_node_thread_itself_and_no_sync_thread_starts() {
        let (mut s, _tx, mut rx) = threaded();
        let (store_tx, store_rx) = mpsc::channel::<SyncReport>();
        let reported = |store_tx: &mpsc::Sender<SyncReport>| {
            let store_tx = store_tx.clone();
            SyncJob::Report(Box::new(move |report| drop(store_tx.send(report))))
        };
        assert!(s.submit(1, reported(&store_tx)).is_none());
        assert!(s.submit(2, reported(&store_tx)).is_none());
        assert!(s.busy());
        // The store's thread answers both, in order; neither is skipped.
        let store = std::thread::spawn(move || {
            store_rx.recv().unwrap()(Ok(()));
            store_rx.recv().unwrap()(Err(StoreError::Io("fsync: EIO".into())));
        });
        store.join().unwrap();
        for (want, ok) in [(1, true), (2, false)] {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Some(Input::Synced { epoch, result, by: Teller::Store }) => {
                    assert_eq!((epoch, result.is_ok()), (want, ok));
                    assert!(s.synced(epoch, Teller::Store, ok).is_none());
                }
                other => panic!("expected the store's report, got {other:?}"),
            }
        }
        assert!(!s.busy());
        assert!(s.jobs.is_none(), "no sync thread for a store that reports itself");
    }

    #[test]
    fn a_success_covered_by_a_newer_one_already_sent_does_not_wake_the_node_thread() {
        let (mut s, _tx, mut rx) = threaded();
        let mut reports = Vec::new();
        for epoch in 1..=3 {
            let (tx, report) = mpsc::channel::<SyncReport>();
            let job = SyncJob::Report(Box::new(move |r| drop(tx.send(r))));
            assert!(s.submit(epoch, job).is_none());
            reports.push(report.recv().unwrap());
        }
        // The store's group commit: the newest success first, then the older ones.
        let newest = reports.pop().unwrap();
        newest(Ok(()));
        for older in reports {
            older(Ok(()));
        }
        match rx.recv_timeout(Duration::from_secs(10)) {
            Some(Input::Synced { epoch: 3, result: Ok(()), by: Teller::Store }) => {}
            other => panic!("expected epoch 3's success, got {other:?}"),
        }
        assert!(s.busy(), "not heard yet, as far as the syncer knows");
        assert!(s.synced(3, Teller::Store, true).is_none());
        assert!(!s.busy());
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_none(), "1 and 2 were covered");
        // A failure is always sent, even of an older commit.
        let job = SyncJob::Report(Box::new(|r: SyncReport| r(Err(StoreError::Io("EIO".into())))));
        assert!(s.submit(2, job).is_none());
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(10)),
            Some(Input::Synced { epoch: 2, result: Err(_), by: Teller::Store })
        ));
    }

    #[test]
    fn without_an_inbox_a_reported_job_waits_in_place() {
        let mut s = Syncer::new(None);
        let job = SyncJob::Report(Box::new(|report: SyncReport| report(Ok(()))));
        assert!(matches!(s.submit(7, job), Some((7, Ok(())))));
        assert!(!s.busy());
    }
}
