//! A hand-over's answer: how the disk thread tells whoever waits that a batch is on
//! disk, or why not.
//!
//! The node's driver does not wait for it on a thread of its own: it gives the answer
//! the function that reports to the node thread ([`SyncReport`]), and the disk thread
//! calls it the moment the flush returns — one thread hop per commit instead of two
//! (disk thread → node thread, not disk thread → sync thread → node thread). The
//! answer may come before the function does (a quick flush); then the function is
//! called at once, on the driver's thread.

use dhrt_core::store::{StoreError, SyncJob, SyncReport};
use std::sync::{Arc, Mutex};

/// One hand-over's answer, shared by the disk thread and the job the store returned.
pub(super) struct Answer(Mutex<State>);

enum State {
    /// Neither the outcome nor where to report it is known yet.
    Waiting,
    /// Where to report, waiting for the outcome.
    Told(SyncReport),
    /// The outcome, waiting for where to report it.
    Known(Result<(), StoreError>),
    /// Reported.
    Done,
}

impl Answer {
    /// A new answer, and the job that reports it.
    pub(super) fn new() -> (Arc<Answer>, SyncJob) {
        let answer = Arc::new(Answer(Mutex::new(State::Waiting)));
        let waiter = answer.clone();
        (answer, SyncJob::Report(Box::new(move |report| waiter.report_to(report))))
    }

    /// The disk thread's side: the batch's outcome. Calls the report function on this
    /// thread when it was given already.
    pub(super) fn give(&self, outcome: Result<(), StoreError>) {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Done) {
            State::Told(report) => {
                drop(state);
                report(outcome);
            }
            State::Waiting => *state = State::Known(outcome),
            done @ (State::Known(_) | State::Done) => *state = done,
        }
    }

    /// The driver's side: where to report. Reports at once when the outcome is known.
    fn report_to(&self, report: SyncReport) {
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Done) {
            State::Known(outcome) => {
                drop(state);
                report(outcome);
            }
            State::Waiting => *state = State::Told(report),
            done @ (State::Told(_) | State::Done) => *state = done,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Answer {
    /// A hand-over the disk thread dropped unanswered (it stopped) is reported failed,
    /// so nothing waits for it forever.
    fn drop(&mut self) {
        let state = std::mem::replace(
            self.0.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner),
            State::Done,
        );
        if let State::Told(report) = state {
            report(Err(StoreError::Io("the disk thread stopped".into())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn collector() -> (SyncReport, mpsc::Receiver<Result<(), StoreError>>) {
        let (tx, rx) = mpsc::channel();
        (Box::new(move |outcome| drop(tx.send(outcome))), rx)
    }

    fn register(job: SyncJob, report: SyncReport) {
        match job {
            SyncJob::Report(register) => register(report),
            SyncJob::Run(_) => panic!("an answer reports by itself"),
        }
    }

    #[test]
    fn the_outcome_reaches_the_report_whichever_comes_first() {
        // Report function first, outcome later (from another thread).
        let (answer, job) = Answer::new();
        let (report, rx) = collector();
        register(job, report);
        assert!(rx.try_recv().is_err(), "nothing reported before the outcome");
        std::thread::spawn(move || answer.give(Err(StoreError::Io("EIO".into())))).join().unwrap();
        assert!(matches!(rx.try_recv(), Ok(Err(StoreError::Io(m))) if m == "EIO"));
        // Outcome first: reported when the function comes, once.
        let (answer, job) = Answer::new();
        answer.give(Ok(()));
        let (report, rx) = collector();
        register(job, report);
        assert!(matches!(rx.try_recv(), Ok(Ok(()))));
        answer.give(Err(StoreError::Io("late".into())));
        assert!(rx.try_recv().is_err(), "reported once");
    }

    #[test]
    fn an_answer_dropped_unanswered_reports_a_failure() {
        let (answer, job) = Answer::new();
        let (report, rx) = collector();
        register(job, report);
        drop(answer);
        assert!(matches!(rx.try_recv(), Ok(Err(StoreError::Io(m))) if m.contains("stopped")));
    }
}
