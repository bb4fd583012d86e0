//! Waiting for the disk off the node thread.
//!
//! A group commit ends with an fsync. Done on the node thread, every batch would wait
//! for the disk before the next one could start, and the node thread sat idle a third
//! of the time under a write load (docs/benchmarks.md). So the driver begins each
//! flush ([`Node::flush_begin`](dhrt_core::node::Node::flush_begin): the log append,
//! no fsync) and hands the returned [`SyncJob`] to a *sync thread*, then goes on with
//! the next batch. The batch's outputs — acknowledgements among them — wait here until
//! their job reports back: nothing is acknowledged before it is on disk, as before.
//!
//! One job runs at a time. Batches that finish while it runs queue their jobs; only
//! the newest queued job is kept, because an fsync covers every write made before it.
//! Outputs are released in batch order. A failed job fails every batch still held
//! (their acknowledgements are withheld, see the driver) and drops the queued job: after
//! a failed fsync, nothing written since the last good one can be trusted.

use super::driver::Input;
use dhrt_core::{node::Output, store::SyncJob};
use std::collections::VecDeque;
use std::sync::{mpsc, Weak};

/// Outputs that may go out now, in order; `failed` says why their writes are not
/// durable (their acknowledgements must be withheld).
#[derive(Default)]
pub struct Release {
    /// The outputs, oldest batch first.
    pub outputs: Vec<Output>,
    /// Why these batches' writes could not be made durable, if they could not.
    pub failed: Option<String>,
}

/// The batches waiting for the disk, and the sync thread's queue.
pub struct Syncer {
    held: VecDeque<(u64, Vec<Output>)>,
    next_seq: u64,
    in_flight: bool,
    queued: Option<(u64, SyncJob)>,
    jobs: Option<mpsc::Sender<(u64, SyncJob)>>,
}

impl Syncer {
    /// A syncer whose jobs run on their own thread and report back to the node thread
    /// as [`Input::Synced`] through `inbox` (weak, so the node thread still sees its
    /// inbox close when the server goes). Without `inbox`, jobs run in place.
    pub fn new(inbox: Option<Weak<mpsc::Sender<Input>>>) -> Syncer {
        let jobs = inbox.and_then(|inbox| {
            let (tx, rx) = mpsc::channel::<(u64, SyncJob)>();
            let spawned = std::thread::Builder::new().name("dhrt-sync".into()).spawn(move || {
                for (seq, job) in rx {
                    let result = job().map_err(|e| e.to_string());
                    match inbox.upgrade() {
                        Some(inbox) => {
                            let _ = inbox.send(Input::Synced { seq, result });
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
        Syncer { held: VecDeque::new(), next_seq: 1, in_flight: false, queued: None, jobs }
    }

    /// Whether batches are waiting for the disk.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// A batch's outputs and the job that makes its writes durable (`None`: nothing to
    /// wait for). Returns what may go out now.
    pub fn submit(&mut self, outputs: Vec<Output>, job: Option<SyncJob>) -> Release {
        let Some(job) = job else {
            if let Some((_, last)) = self.held.back_mut() {
                // Answers of this batch may show writes still on their way to the
                // disk: they go out with the batch before them.
                last.extend(outputs);
                return Release::default();
            }
            return Release { outputs, failed: None };
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.held.push_back((seq, outputs));
        let Some(jobs) = &self.jobs else {
            let result = job().map_err(|e| e.to_string());
            return self.synced(seq, result);
        };
        if self.in_flight {
            self.queued = Some((seq, job));
        } else {
            self.in_flight = jobs.send((seq, job)).is_ok();
            if !self.in_flight {
                return self.synced(seq, Err("the sync thread is gone".into()));
            }
        }
        Release::default()
    }

    /// The job of batch `seq` finished with `result`: releases what it covered and
    /// starts the queued job.
    pub fn synced(&mut self, seq: u64, result: Result<(), String>) -> Release {
        self.in_flight = false;
        match result {
            Ok(()) => {
                let mut outputs = Vec::new();
                while self.held.front().is_some_and(|(s, _)| *s <= seq) {
                    if let Some((_, out)) = self.held.pop_front() {
                        outputs.extend(out);
                    }
                }
                if let Some((seq, job)) = self.queued.take() {
                    match &self.jobs {
                        Some(jobs) if jobs.send((seq, job)).is_ok() => self.in_flight = true,
                        _ => {
                            let mut rest = self.synced(seq, Err("the sync thread is gone".into()));
                            outputs.append(&mut rest.outputs);
                            return Release { outputs, failed: rest.failed };
                        }
                    }
                }
                Release { outputs, failed: None }
            }
            Err(reason) => {
                self.queued = None;
                let outputs = self.held.drain(..).flat_map(|(_, out)| out).collect();
                Release { outputs, failed: Some(reason) }
            }
        }
    }

    /// Everything held, once a flush in place made it durable (at shutdown).
    pub fn release_all(&mut self) -> Vec<Output> {
        self.queued = None;
        self.held.drain(..).flat_map(|(_, out)| out).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhrt_core::{node::NodeEvent, store::StoreError};
    use std::sync::Arc;
    use std::time::Duration;

    /// An output that says which batch it came from.
    fn out(batch: u64) -> Output {
        Output::Event(NodeEvent::StoreFailed(StoreError::Io(format!("batch {batch}"))))
    }

    fn batches(release: &Release) -> Vec<String> {
        release
            .outputs
            .iter()
            .map(|o| match o {
                Output::Event(NodeEvent::StoreFailed(StoreError::Io(s))) => s.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn ok_job() -> Option<SyncJob> {
        Some(Box::new(|| Ok(())))
    }

    /// A syncer whose sync thread reports into a channel the test reads.
    fn threaded() -> (Syncer, Arc<mpsc::Sender<Input>>, mpsc::Receiver<Input>) {
        let (tx, rx) = mpsc::channel();
        let tx = Arc::new(tx);
        (Syncer::new(Some(Arc::downgrade(&tx))), tx, rx)
    }

    fn next_synced(rx: &mpsc::Receiver<Input>) -> (u64, Result<(), String>) {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Input::Synced { seq, result }) => (seq, result),
            other => panic!("expected a sync report, got {other:?}"),
        }
    }

    #[test]
    fn without_a_job_outputs_go_out_at_once() {
        let mut s = Syncer::new(None);
        let r = s.submit(vec![out(1)], None);
        assert_eq!(batches(&r), ["batch 1"]);
        assert!(r.failed.is_none() && !s.holding());
    }

    #[test]
    fn outputs_wait_for_their_job_and_leave_in_batch_order() {
        let (mut s, _tx, rx) = threaded();
        assert!(s.submit(vec![out(1)], ok_job()).outputs.is_empty());
        // Batch 2 arrives while 1's job runs: its job is queued; batch 3 has no writes
        // of its own but may have read batch 2's, so it waits with it.
        assert!(s.submit(vec![out(2)], ok_job()).outputs.is_empty());
        assert!(s.submit(vec![out(3)], None).outputs.is_empty());
        assert!(s.holding());
        let (seq, result) = next_synced(&rx);
        assert_eq!(seq, 1);
        let r = s.synced(seq, result);
        assert_eq!(batches(&r), ["batch 1"]);
        let (seq, result) = next_synced(&rx);
        let r = s.synced(seq, result);
        assert_eq!(batches(&r), ["batch 2", "batch 3"]);
        assert!(r.failed.is_none() && !s.holding());
    }

    #[test]
    fn only_the_newest_queued_job_runs_and_covers_the_batches_before_it() {
        let (mut s, _tx, rx) = threaded();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let slow: SyncJob = Box::new(move || {
            let _ = gate_rx.recv_timeout(Duration::from_secs(10));
            Ok(())
        });
        s.submit(vec![out(1)], Some(slow));
        s.submit(vec![out(2)], ok_job());
        s.submit(vec![out(3)], ok_job());
        gate_tx.send(()).unwrap();
        let (seq, result) = next_synced(&rx);
        assert_eq!(batches(&s.synced(seq, result)), ["batch 1"]);
        let (seq, result) = next_synced(&rx);
        assert_eq!(seq, 3, "batch 2's job was skipped: batch 3's covers it");
        assert_eq!(batches(&s.synced(seq, result)), ["batch 2", "batch 3"]);
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "no third job ran");
    }

    #[test]
    fn a_failed_job_fails_everything_held_and_drops_the_queued_job() {
        let (mut s, _tx, rx) = threaded();
        s.submit(vec![out(1)], Some(Box::new(|| Err(StoreError::Io("disk gone".into())))));
        s.submit(vec![out(2)], ok_job());
        let (seq, result) = next_synced(&rx);
        let r = s.synced(seq, result);
        assert_eq!(batches(&r), ["batch 1", "batch 2"]);
        assert!(r.failed.as_deref().is_some_and(|f| f.contains("disk gone")));
        assert!(!s.holding());
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "the queued job never ran");
    }

    #[test]
    fn in_place_jobs_release_or_fail_at_once() {
        let mut s = Syncer::new(None);
        assert_eq!(batches(&s.submit(vec![out(1)], ok_job())), ["batch 1"]);
        let r = s.submit(vec![out(2)], Some(Box::new(|| Err(StoreError::Io("no".into())))));
        assert_eq!(batches(&r), ["batch 2"]);
        assert!(r.failed.is_some());
    }
}
