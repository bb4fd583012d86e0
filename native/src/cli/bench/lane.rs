//! One connection of `dhrt bench` and the loop that keeps its window of requests full.
//!
//! A lane sends requests until its source runs dry — the keys it must preload, or the
//! run's shared budget of requests and time — keeping up to `window` of them in
//! flight, and records each answer's latency in its own histogram (merged at the end,
//! so lanes share nothing but two counters).

use super::raw::RawConn;
use super::redis::{redirect, Redirect, RespConn};
use super::{write_key, Workload};
use bytes::Bytes;
use dhrt::resp::{encode_command, Value};
use dhrt_core::proto::client::{Consistency, Op, Reply};
use hdrhistogram::Histogram;
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// What every lane of a run reads.
#[derive(Debug)]
pub struct Context {
    /// The dhrt collection.
    pub collection: String,
    /// The value every SET writes.
    pub value: Bytes,
    /// Bytes per key.
    pub key_size: usize,
    /// Distinct keys.
    pub keyspace: u64,
    /// What to send.
    pub workload: Workload,
    /// dhrt's consistency level.
    pub consistency: Consistency,
    /// How long a dhrt request may wait for its answer.
    pub timeout: Duration,
}

/// The budget of a measured run, shared by its lanes.
#[derive(Debug)]
pub struct Shared {
    issued: AtomicU64,
    /// Requests answered so far (for the progress bar).
    pub done: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
}

impl Shared {
    /// A budget of `limit` requests and/or until `deadline`.
    pub fn new(limit: Option<u64>, deadline: Option<Instant>) -> Shared {
        Shared { issued: AtomicU64::new(0), done: AtomicU64::new(0), limit, deadline }
    }

    /// Takes one request from the budget; false once it is spent.
    fn claim(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match self.limit {
            Some(limit) => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            None => true,
        }
    }
}

/// What a lane does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// SET each of the lane's share of the keys once.
    Preload,
    /// Send the workload until the shared budget is spent.
    Measure,
}

/// A request: which command, which key number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Set,
    Get,
}

/// A lane's socket.
pub enum LaneConn {
    /// A dhrt WebSocket connection.
    Dhrt(Box<RawConn>),
    /// A Redis connection.
    Redis(Box<RespConn>),
}

/// One connection and the keys it uses.
pub struct Lane {
    conn: LaneConn,
    /// The keys this lane's node owns (`None`: the whole keyspace).
    keys: Option<Arc<Vec<u64>>>,
    /// This lane's index among the lanes of its node.
    rank: usize,
    /// How many lanes its node has.
    group_size: usize,
    rng: u64,
}

/// What a lane saw.
#[derive(Debug)]
pub struct LaneStats {
    /// Latency of each answered request, in microseconds.
    pub hist: Histogram<u64>,
    /// Requests that failed.
    pub errors: u64,
    /// GETs that found no value.
    pub misses: u64,
    /// Requests that were redirected (Redis `MOVED`/`ASK`).
    pub redirects: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
}

impl LaneStats {
    /// Nothing seen yet.
    pub fn new() -> LaneStats {
        LaneStats {
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            errors: 0,
            misses: 0,
            redirects: 0,
            first_error: None,
        }
    }

    /// Counts a failed request.
    pub fn error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }

    fn latency(&mut self, since: Instant) {
        let us = since.elapsed().as_micros().clamp(1, 3_600_000_000) as u64;
        self.hist.saturating_record(us);
    }

    /// All lanes' statistics in one.
    pub fn merge(all: Vec<LaneStats>) -> LaneStats {
        let mut total = LaneStats::new();
        for s in all {
            let _ = total.hist.add(&s.hist);
            total.errors += s.errors;
            total.misses += s.misses;
            total.redirects += s.redirects;
            if total.first_error.is_none() {
                total.first_error = s.first_error;
            }
        }
        total
    }
}

impl Lane {
    /// A lane over `conn`, the `rank`-th of the `group_size` lanes of its node.
    pub fn new(
        conn: LaneConn,
        keys: Option<Arc<Vec<u64>>>,
        rank: usize,
        group_size: usize,
        seed: u64,
    ) -> Lane {
        // splitmix64 of the seed: distinct, well-mixed starting states per lane.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Lane { conn, keys, rank, group_size: group_size.max(1), rng: (z ^ (z >> 31)) | 1 }
    }

    /// Runs `phase` with up to `window` requests in flight; returns the lane (to run the
    /// next phase on the same connection) and what it saw.
    pub async fn run(
        mut self,
        phase: Phase,
        window: usize,
        ctx: Arc<Context>,
        shared: Arc<Shared>,
    ) -> (Lane, LaneStats) {
        let mut stats = LaneStats::new();
        let keys = self.keys.clone();
        let (rank, step) = (self.rank, self.group_size);
        let mut preloaded = 0usize;
        let mut rng = self.rng;
        let workload = ctx.workload;
        let keyspace = ctx.keyspace;
        let budget = shared.clone();
        let next = move || -> Option<(Kind, u64)> {
            match phase {
                Phase::Preload => {
                    let at = rank + preloaded * step;
                    preloaded += 1;
                    match &keys {
                        Some(k) => k.get(at).map(|&i| (Kind::Set, i)),
                        None => ((at as u64) < keyspace).then_some((Kind::Set, at as u64)),
                    }
                }
                Phase::Measure => {
                    if !budget.claim() {
                        return None;
                    }
                    let r = xorshift(&mut rng);
                    let i = match &keys {
                        Some(k) => k[(r % k.len() as u64) as usize],
                        None => r % keyspace,
                    };
                    let kind = match workload {
                        Workload::Set => Kind::Set,
                        Workload::Get => Kind::Get,
                        Workload::Mixed if r >> 63 == 0 => Kind::Set,
                        Workload::Mixed => Kind::Get,
                    };
                    Some((kind, i))
                }
            }
        };
        let done = &shared.done;
        match &mut self.conn {
            LaneConn::Dhrt(conn) => run_dhrt(conn, window, next, &ctx, &mut stats, done).await,
            LaneConn::Redis(conn) => run_redis(conn, window, next, &ctx, &mut stats, done).await,
        }
        self.rng = rng;
        (self, stats)
    }
}

/// xorshift64*: fast, good enough to pick keys uniformly.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// A dhrt lane's requests in flight, by id: what each asked and when. Hashed with
/// foldhash — SipHash was 0.7% of the load generator's samples, work the Redis lane (whose
/// answers come in order) does not do.
type Inflight = HashMap<u64, (Kind, Instant), foldhash::fast::RandomState>;

async fn run_dhrt(
    conn: &mut RawConn,
    window: usize,
    mut next: impl FnMut() -> Option<(Kind, u64)>,
    ctx: &Context,
    stats: &mut LaneStats,
    done: &AtomicU64,
) {
    let mut inflight: Inflight = Inflight::with_capacity_and_hasher(window, Default::default());
    let mut replies = Vec::with_capacity(window);
    let mut exhausted = false;
    loop {
        if !exhausted && inflight.len() < window {
            let now = Instant::now();
            while inflight.len() < window {
                let Some((kind, i)) = next() else {
                    exhausted = true;
                    break;
                };
                let mut k = Vec::with_capacity(ctx.key_size);
                write_key(&mut k, i, ctx.key_size);
                let key = Bytes::from(k);
                let collection = ctx.collection.clone();
                let consistency = ctx.consistency;
                let op = match kind {
                    Kind::Set => Op::Set {
                        collection,
                        key,
                        value: ctx.value.clone(),
                        consistency,
                        ttl_ms: None,
                    },
                    Kind::Get => Op::Get { collection, key, consistency },
                };
                match conn.queue(op) {
                    Ok(id) => {
                        inflight.insert(id, (kind, now));
                    }
                    Err(e) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        stats.error(e.to_string());
                    }
                }
            }
            if let Err(e) = conn.send().await {
                return fail_inflight(&mut inflight, stats, done, &e.to_string());
            }
        }
        if inflight.is_empty() {
            return;
        }
        // Take every answer already here (at least one), then refill the window.
        if let Err(e) = conn.receive(ctx.timeout, &mut replies).await {
            return fail_inflight(&mut inflight, stats, done, &e.to_string());
        }
        for (id, reply) in replies.drain(..) {
            let Some((kind, started)) = inflight.remove(&id) else {
                stats.error(format!("an answer to request {id}, which nobody asked for"));
                continue;
            };
            done.fetch_add(1, Ordering::Relaxed);
            match (kind, reply) {
                (Kind::Set, Reply::Written { .. }) => stats.latency(started),
                (Kind::Get, Reply::Value { value, .. }) => {
                    stats.latency(started);
                    if value.is_none() {
                        stats.misses += 1;
                    }
                }
                (_, Reply::Error { code, message, .. }) => {
                    stats.error(format!("{code:?}: {message}"))
                }
                (_, other) => stats.error(format!("unexpected answer {other:?}")),
            }
        }
    }
}

/// Counts every request in flight on a dhrt lane as failed with `why`.
fn fail_inflight(inflight: &mut Inflight, stats: &mut LaneStats, done: &AtomicU64, why: &str) {
    for _ in inflight.drain() {
        done.fetch_add(1, Ordering::Relaxed);
        stats.error(why.to_string());
    }
}

async fn run_redis(
    conn: &mut RespConn,
    window: usize,
    mut next: impl FnMut() -> Option<(Kind, u64)>,
    ctx: &Context,
    stats: &mut LaneStats,
    done: &AtomicU64,
) {
    let mut wbuf = Vec::with_capacity(window * (ctx.key_size + ctx.value.len() + 48));
    let mut key = Vec::with_capacity(ctx.key_size);
    let mut inflight: VecDeque<(Kind, Instant, u64)> = VecDeque::with_capacity(window);
    let mut side: HashMap<String, RespConn> = HashMap::new();
    let mut exhausted = false;
    loop {
        if !exhausted && inflight.len() < window {
            let now = Instant::now();
            while inflight.len() < window {
                let Some((kind, i)) = next() else {
                    exhausted = true;
                    break;
                };
                key.clear();
                write_key(&mut key, i, ctx.key_size);
                encode(&mut wbuf, kind, &key, &ctx.value);
                inflight.push_back((kind, now, i));
            }
            if !wbuf.is_empty() {
                if let Err(e) = conn.send(&wbuf).await {
                    fail_all(&mut inflight, stats, done, &e.to_string());
                    return;
                }
                wbuf.clear();
            }
        }
        if inflight.is_empty() {
            return;
        }
        // Take every answer already here (at least one), then refill the window.
        let mut got = 0;
        loop {
            let value = match conn.try_value() {
                Ok(Some(v)) => v,
                Ok(None) if got > 0 => break,
                Ok(None) => match conn.fill().await {
                    Ok(()) => continue,
                    Err(e) => {
                        fail_all(&mut inflight, stats, done, &e.to_string());
                        return;
                    }
                },
                Err(e) => {
                    fail_all(&mut inflight, stats, done, &e.to_string());
                    return;
                }
            };
            got += 1;
            let Some((kind, started, i)) = inflight.pop_front() else {
                stats.error("an answer nobody asked for".into());
                return;
            };
            let value = match redirect(&value) {
                None => value,
                Some(to) => {
                    stats.redirects += 1;
                    key.clear();
                    write_key(&mut key, i, ctx.key_size);
                    let mut cmd = Vec::new();
                    encode(&mut cmd, kind, &key, &ctx.value);
                    match follow(&mut side, to, &cmd).await {
                        Ok(v) => v,
                        Err(e) => Value::Error(e),
                    }
                }
            };
            done.fetch_add(1, Ordering::Relaxed);
            match (kind, value) {
                (Kind::Set, Value::Simple(s)) if s == "OK" => stats.latency(started),
                (Kind::Get, Value::Bulk(v)) => {
                    stats.latency(started);
                    if v.is_none() {
                        stats.misses += 1;
                    }
                }
                (_, Value::Error(e)) => stats.error(e),
                (_, other) => stats.error(format!("unexpected answer {other:?}")),
            }
            if inflight.is_empty() {
                break;
            }
        }
    }
}

fn encode(buf: &mut Vec<u8>, kind: Kind, key: &[u8], value: &[u8]) {
    match kind {
        Kind::Set => encode_command(buf, &[b"SET", key, value]),
        Kind::Get => encode_command(buf, &[b"GET", key]),
    }
}

/// Sends `cmd` where `redirect` says, following further redirects, on side connections.
async fn follow(
    side: &mut HashMap<String, RespConn>,
    mut to: Redirect,
    cmd: &[u8],
) -> Result<Value, String> {
    for _ in 0..MAX_REDIRECTS {
        let (addr, asking) = match &to {
            Redirect::Moved { addr, .. } => (addr.clone(), false),
            Redirect::Ask { addr, .. } => (addr.clone(), true),
        };
        if !side.contains_key(&addr) {
            let c = RespConn::connect(&addr).await.map_err(|e| e.to_string())?;
            side.insert(addr.clone(), c);
        }
        let conn = side.get_mut(&addr).ok_or("connection vanished")?;
        if asking {
            conn.command(&[b"ASKING"]).await.map_err(|e| e.to_string())?;
        }
        conn.send(cmd).await.map_err(|e| e.to_string())?;
        let reply = conn.read_value().await.map_err(|e| e.to_string())?;
        match redirect(&reply) {
            None => return Ok(reply),
            Some(r) => to = r,
        }
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

fn fail_all(
    inflight: &mut VecDeque<(Kind, Instant, u64)>,
    stats: &mut LaneStats,
    done: &AtomicU64,
    why: &str,
) {
    for _ in inflight.drain(..) {
        done.fetch_add(1, Ordering::Relaxed);
        stats.error(why.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_and_bounded() {
        let shared = Shared::new(Some(3), None);
        assert!(shared.claim() && shared.claim() && shared.claim());
        assert!(!shared.claim());
        assert!(!shared.claim());
        let past = Shared::new(None, Some(Instant::now()));
        assert!(!past.claim());
        let open = Shared::new(None, Some(Instant::now() + Duration::from_secs(60)));
        assert!(open.claim());
    }

    #[test]
    fn key_draws_cover_the_keyspace() {
        let mut rng = 12345u64;
        let mut seen = [false; 100];
        for _ in 0..10_000 {
            seen[(xorshift(&mut rng) % 100) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn stats_merge() {
        let mut a = LaneStats::new();
        a.hist.record(100).unwrap();
        a.error("first".into());
        let mut b = LaneStats::new();
        b.hist.record(300).unwrap();
        b.misses = 2;
        b.error("second".into());
        let all = LaneStats::merge(vec![a, b]);
        assert_eq!(all.hist.len(), 2);
        assert_eq!((all.errors, all.misses), (2, 2));
        assert_eq!(all.first_error.as_deref(), Some("first"));
    }
}
