//! A Redis connection's commands in order: sent to the node as soon as nothing holds
//! them back, answered by the node in any order, replied to in command order.
//!
//! Redis clients pair replies with commands by position; the node answers requests by
//! id, whenever each is done. So the connection keeps its commands in a [`Queue`]: each
//! [`Pending`] command collects the answers to its requests, and once every command
//! before it has been replied to, its reply is written. A command with two stages (DEL,
//! GETDEL, SET ... GET: read, then write what depends on it) is a *barrier*: the
//! commands after it wait, unsent, until it has finished, so no later write overtakes
//! its delete. Everything else goes to the node the moment it is read.
//!
//! The queue keeps running counts — barriers, commands waiting unsent, bytes held — so
//! the connection's per-command checks cost the same with one command queued as with a
//! thousand, and files an answer next to where the last one went (the node answers
//! mostly in order), not by scanning from the front.

use super::plan::{self, Finish, Next, Ops, Plan};
use crate::resp::reply::{Protocol, Writer};
use dhrt_core::{
    proto::{
        client::{Op, Reply},
        ClientRequest,
    },
    Millis,
};
use smallvec::{smallvec, SmallVec};
use std::collections::VecDeque;

/// Most commands of one connection waiting for the node's answers; past it, no more
/// are read until some are answered.
pub const MAX_QUEUED: usize = 1024;

/// Requests on their way to the node, numbered in the order they are made.
#[derive(Debug)]
pub struct Requests {
    next_id: u64,
    /// Made and not yet handed to the node.
    pub reqs: Vec<ClientRequest>,
}

impl Default for Requests {
    fn default() -> Self {
        Requests { next_id: 1, reqs: Vec::new() }
    }
}

impl Requests {
    /// Queues `ops` as the next requests; the id of the first (the others follow it).
    pub fn send(&mut self, ops: impl IntoIterator<Item = Op>) -> u64 {
        let first = self.next_id;
        for op in ops {
            self.reqs.push(ClientRequest { id: self.next_id, op, seen: None });
            self.next_id += 1;
        }
        first
    }
}

/// The answers to one stage's requests, in request order, as they come. The node
/// answers each request once.
#[derive(Debug)]
struct Got {
    /// Answered slots hold the answer; the others a placeholder.
    replies: SmallVec<[Reply; 1]>,
    /// Slots not yet answered.
    missing: usize,
}

impl Got {
    fn new(n: usize) -> Got {
        let replies = match n {
            1 => smallvec![Reply::Ok],
            n => (0..n).map(|_| Reply::Ok).collect(),
        };
        Got { replies, missing: n }
    }
}

/// A command in the queue.
#[derive(Debug)]
struct Pending {
    /// The protocol its reply is written in (the connection's when it was read).
    proto: Protocol,
    /// Bytes of the command's arguments, held until it is answered.
    size: usize,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    /// Not yet sent: a barrier before it has not finished.
    Queued { plan: Plan, ops: Ops },
    /// The first stage's requests were sent with ids `first..`.
    First { plan: Plan, first: u64, got: Got },
    /// The second stage's requests were sent with ids `first..`.
    Second { finish: Box<Finish>, first: u64, got: Got },
    /// Answered: the reply, written when every command before it is.
    Done(Vec<u8>),
    /// A subscription's confirmation, held until the watches it opened (request ids
    /// `ids`) are in place on every node: a write acknowledged after the confirmation
    /// is then heard.
    Watching { ids: Vec<u64>, reply: Vec<u8> },
}

/// What a command counts for in the queue's running totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Weight {
    barriers: usize,
    queued: usize,
    held: usize,
}

impl Pending {
    fn weight(&self) -> Weight {
        let (barrier, queued, held) = match &self.stage {
            Stage::Queued { plan, .. } => (two_stages(plan), true, self.size),
            Stage::First { plan, .. } => (two_stages(plan), false, self.size),
            Stage::Second { .. } => (true, false, self.size),
            Stage::Done(bytes) => (false, false, bytes.len()),
            Stage::Watching { reply, .. } => (true, false, reply.len()),
        };
        Weight { barriers: usize::from(barrier), queued: usize::from(queued), held }
    }

    /// Files the answer to request `id` if it is one of this command's.
    fn take(&mut self, id: u64, reply: &mut Option<Reply>) -> bool {
        let (Stage::First { first, got, .. } | Stage::Second { first, got, .. }) = &mut self.stage
        else {
            return false;
        };
        let Some(slot) = id.checked_sub(*first).and_then(|i| got.replies.get_mut(i as usize))
        else {
            return false;
        };
        if let Some(answer) = reply.take() {
            *slot = answer;
            got.missing = got.missing.saturating_sub(1);
        }
        true
    }

    fn answered(&self) -> bool {
        match &self.stage {
            Stage::First { got, .. } | Stage::Second { got, .. } => got.missing == 0,
            _ => false,
        }
    }
}

/// Whether a command of this plan has a second stage: a barrier.
fn two_stages(plan: &Plan) -> bool {
    matches!(
        plan,
        Plan::SetGet { .. }
            | Plan::GetDel { .. }
            | Plan::Del { .. }
            | Plan::SetKeep { .. }
            | Plan::Expire { .. }
            | Plan::Persist { .. }
            | Plan::GetEx { change: Some(_), .. }
            | Plan::Walk { .. }
    )
}

/// A connection's commands waiting for the node, or for the commands before them.
#[derive(Debug, Default)]
pub struct Queue {
    items: VecDeque<Pending>,
    /// The running totals of every item's [`Weight`].
    totals: Weight,
    /// Where the last answer was filed: the next one is most often there or just after.
    hint: usize,
}

impl Queue {
    /// Commands waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no command waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes held: the arguments of commands not yet answered, and replies waiting for
    /// the commands before them.
    pub fn held(&self) -> usize {
        self.totals.held
    }

    fn push(&mut self, p: Pending) {
        self.count(p.weight());
        self.items.push_back(p);
    }

    fn pop_front(&mut self) {
        if let Some(p) = self.items.pop_front() {
            self.forget(p.weight());
            self.hint = self.hint.saturating_sub(1);
        }
    }

    fn count(&mut self, w: Weight) {
        self.totals.barriers += w.barriers;
        self.totals.queued += w.queued;
        self.totals.held += w.held;
    }

    fn forget(&mut self, w: Weight) {
        self.totals.barriers -= w.barriers;
        self.totals.queued -= w.queued;
        self.totals.held -= w.held;
    }

    /// Gives item `i` a new stage, keeping the totals; the old stage.
    fn replace(&mut self, i: usize, stage: Stage) -> Stage {
        let before = self.items[i].weight();
        self.forget(before);
        let old = std::mem::replace(&mut self.items[i].stage, stage);
        self.count(self.items[i].weight());
        old
    }

    /// A reply already made, written after every command before it.
    pub fn push_reply(&mut self, proto: Protocol, bytes: Vec<u8>) {
        self.push(Pending { proto, size: 0, stage: Stage::Done(bytes) });
    }

    /// A data command (its arguments `size` bytes): its first stage goes to the node
    /// at once unless a barrier holds it back.
    pub fn push_command(
        &mut self,
        proto: Protocol,
        size: usize,
        plan: Plan,
        ops: Ops,
        requests: &mut Requests,
    ) {
        let stage = if self.totals.barriers == 0 && self.totals.queued == 0 {
            let got = Got::new(ops.len());
            Stage::First { plan, first: requests.send(ops), got }
        } else {
            Stage::Queued { plan, ops }
        };
        self.push(Pending { proto, size, stage });
    }

    /// A subscription's confirmation `reply`, written once the watches `ids` are in
    /// place ([`Queue::watch_ready`]).
    pub fn push_watching(&mut self, proto: Protocol, ids: Vec<u64>, reply: Vec<u8>) {
        self.push(Pending { proto, size: 0, stage: Stage::Watching { ids, reply } });
    }

    /// The watch opened by request `id` is in place (or failed).
    pub fn watch_ready(&mut self, id: u64) {
        for p in self.items.iter_mut() {
            if let Stage::Watching { ids, .. } = &mut p.stage {
                ids.retain(|&w| w != id);
            }
        }
    }

    /// Files the node's answer to request `id` with its command; false if no command
    /// waits for it.
    pub fn file(&mut self, id: u64, reply: Reply) -> bool {
        let start = self.hint.min(self.items.len());
        let mut reply = Some(reply);
        // From the hint to the back, then from the front to the hint.
        for i in (start..self.items.len()).chain(0..start) {
            if self.items[i].take(id, &mut reply) {
                self.hint = i;
                return true;
            }
        }
        false
    }

    /// Sends the commands no barrier holds back any more, starts the second stages of
    /// the commands whose first stage was answered, and writes the replies of the
    /// answered commands at the front — straight into `out`, in command order; a
    /// command answered behind one still waiting keeps its reply until it is at the
    /// front. `now` is the wall clock, for the replies that depend on it (TTL).
    pub fn advance(&mut self, out: &mut Vec<u8>, now: Millis, requests: &mut Requests) {
        let mut held_back = false;
        let mut i = 0;
        while i < self.items.len() {
            match &mut self.items[i].stage {
                Stage::Done(bytes) if i == 0 => {
                    out.extend_from_slice(bytes);
                    self.pop_front();
                    continue;
                }
                Stage::Queued { .. } if held_back => break,
                Stage::Queued { .. } => {
                    let Stage::Queued { plan, ops } = self.replace(i, Stage::Done(Vec::new()))
                    else {
                        unreachable!("matched above")
                    };
                    let got = Got::new(ops.len());
                    let first = requests.send(ops);
                    self.replace(i, Stage::First { plan, first, got });
                }
                Stage::Watching { ids, .. } if ids.is_empty() => {
                    let Stage::Watching { reply, .. } = self.replace(i, Stage::Done(Vec::new()))
                    else {
                        unreachable!("matched above")
                    };
                    self.replace(i, Stage::Done(reply));
                    continue;
                }
                _ => {}
            }
            if self.items[i].answered() {
                let front = i == 0;
                let mut behind = Vec::new();
                let p = &self.items[i];
                let mut w = Writer::new(if front { &mut *out } else { &mut behind }, p.proto);
                let next = match &p.stage {
                    Stage::First { plan, got, .. } => plan::first(plan, &got.replies, now, &mut w),
                    Stage::Second { finish, got, .. } => {
                        plan::second(finish, &got.replies, now, &mut w)
                    }
                    _ => unreachable!("only a stage waiting for answers is answered"),
                };
                match next {
                    Next::Done if front => {
                        self.pop_front();
                        continue;
                    }
                    Next::Done => {
                        self.replace(i, Stage::Done(behind));
                    }
                    Next::Then { ops, finish } => {
                        let got = Got::new(ops.len());
                        let first = requests.send(ops);
                        self.replace(i, Stage::Second { finish, first, got });
                    }
                }
            }
            held_back |= self.items[i].weight().barriers > 0;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::resp::plan::{plan, Target};
    use bytes::Bytes;
    use dhrt_core::{proto::client::Consistency, Timestamp};

    fn target() -> Target {
        Target { collection: "default".into(), consistency: Consistency::Default }
    }

    /// Queues `words` (a command) as the connection does.
    fn push(q: &mut Queue, requests: &mut Requests, words: &[&str]) {
        let mut args: Vec<Bytes> =
            words[1..].iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect();
        let size = args.iter().map(Bytes::len).sum();
        let planned = plan(words[0], &mut args, &target(), 1_000).unwrap().unwrap();
        q.push_command(Protocol::Resp2, size, planned.plan, planned.ops, requests);
    }

    fn value(v: &str) -> Reply {
        let ts = Some(Timestamp::from_parts(900, 0));
        Reply::Value { value: Some(Bytes::copy_from_slice(v.as_bytes())), ts, expires: None }
    }

    /// The ids of the requests made since the last call.
    fn sent(requests: &mut Requests) -> Vec<u64> {
        requests.reqs.drain(..).map(|r| r.id).collect()
    }

    /// The totals, counted again from every item.
    fn recount(q: &Queue) -> Weight {
        q.items.iter().map(Pending::weight).fold(Weight::default(), |a, w| Weight {
            barriers: a.barriers + w.barriers,
            queued: a.queued + w.queued,
            held: a.held + w.held,
        })
    }

    #[test]
    fn replies_leave_in_command_order_whatever_order_the_answers_come_in() {
        let (mut q, mut requests, mut out) = (Queue::default(), Requests::default(), Vec::new());
        push(&mut q, &mut requests, &["GET", "a"]);
        push(&mut q, &mut requests, &["SET", "b", "v"]);
        push(&mut q, &mut requests, &["GET", "c"]);
        assert_eq!(sent(&mut requests), vec![1, 2, 3], "nothing holds them back: all sent");
        assert_eq!(q.held(), 1 + 2 + 1);
        // The last answered first: kept until the ones before it are.
        assert!(q.file(3, value("C")));
        q.advance(&mut out, 1_000, &mut requests);
        assert!(out.is_empty());
        assert!(q.file(2, Reply::Ok));
        q.advance(&mut out, 1_000, &mut requests);
        assert!(out.is_empty(), "the first is still waiting");
        assert_eq!(q.totals, recount(&q));
        assert!(q.file(1, value("A")));
        q.advance(&mut out, 1_000, &mut requests);
        assert_eq!(String::from_utf8(out).unwrap(), "$1\r\nA\r\n+OK\r\n$1\r\nC\r\n");
        assert!(q.is_empty());
        assert_eq!(q.totals, Weight::default());
        assert!(!q.file(1, Reply::Ok), "an answer no command waits for is not filed");
    }

    #[test]
    fn a_two_stage_command_holds_back_the_commands_after_it() {
        let (mut q, mut requests, mut out) = (Queue::default(), Requests::default(), Vec::new());
        push(&mut q, &mut requests, &["DEL", "k"]);
        push(&mut q, &mut requests, &["SET", "k", "v"]);
        assert_eq!(sent(&mut requests), vec![1], "only DEL's read goes");
        assert_eq!(q.totals, Weight { barriers: 1, queued: 1, held: 1 + 2 });
        q.file(1, Reply::Values { values: vec![Some(Bytes::from_static(b"old"))] });
        q.advance(&mut out, 1_000, &mut requests);
        assert_eq!(sent(&mut requests), vec![2], "then its delete, still before the SET");
        assert!(out.is_empty());
        assert_eq!(q.totals, recount(&q));
        q.file(2, Reply::Ok);
        q.advance(&mut out, 1_000, &mut requests);
        assert_eq!(sent(&mut requests), vec![3], "DEL finished: the SET goes");
        assert_eq!(String::from_utf8_lossy(&out), ":1\r\n");
        q.file(3, Reply::Ok);
        q.advance(&mut out, 1_000, &mut requests);
        assert_eq!(String::from_utf8_lossy(&out), ":1\r\n+OK\r\n");
        assert_eq!(q.totals, Weight::default());
    }

    #[test]
    fn replies_made_at_once_wait_behind_the_commands_before_them() {
        let (mut q, mut requests, mut out) = (Queue::default(), Requests::default(), Vec::new());
        push(&mut q, &mut requests, &["GET", "a"]);
        q.push_reply(Protocol::Resp2, b"+PONG\r\n".to_vec());
        assert_eq!(q.held(), 1 + 7);
        q.advance(&mut out, 1_000, &mut requests);
        assert!(out.is_empty());
        q.file(1, value("A"));
        q.advance(&mut out, 1_000, &mut requests);
        assert_eq!(String::from_utf8_lossy(&out), "$1\r\nA\r\n+PONG\r\n");
        assert_eq!(q.totals, Weight::default());
    }

    #[test]
    fn a_subscription_is_confirmed_once_its_watches_are_in_place() {
        let (mut q, mut requests, mut out) = (Queue::default(), Requests::default(), Vec::new());
        let id = requests.send([Op::Watch { collection: "default".into(), prefix: None }]);
        q.push_watching(Protocol::Resp2, vec![id], b"*3\r\n...".to_vec());
        push(&mut q, &mut requests, &["GET", "a"]);
        assert_eq!(sent(&mut requests), vec![id], "a subscription is a barrier");
        q.advance(&mut out, 1_000, &mut requests);
        assert!(out.is_empty());
        q.watch_ready(id);
        q.advance(&mut out, 1_000, &mut requests);
        assert_eq!(String::from_utf8_lossy(&out), "*3\r\n...");
        assert_eq!(sent(&mut requests), vec![id + 1], "the GET goes once it is confirmed");
        assert_eq!(q.totals, recount(&q));
    }

    #[test]
    fn answers_are_filed_wherever_the_hint_points() {
        let (mut q, mut requests, mut out) = (Queue::default(), Requests::default(), Vec::new());
        for i in 0..100 {
            push(&mut q, &mut requests, &["GET", &format!("k{i}")]);
        }
        let ids = sent(&mut requests);
        // Answered from the back, then the front: each lands with its own command.
        for &id in ids.iter().rev() {
            assert!(q.file(id, value(&format!("{}", id - 1))));
        }
        q.advance(&mut out, 1_000, &mut requests);
        let text = String::from_utf8(out).unwrap();
        let expected: String =
            (0..100).map(|i| format!("${}\r\n{i}\r\n", i.to_string().len())).collect();
        assert_eq!(text, expected);
        assert!(q.is_empty());
    }
}
