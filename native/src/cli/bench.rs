//! `dhrt bench`: a load generator that drives a dhrt node or cluster (its WebSocket
//! protocol) or a Redis server or cluster (RESP), so one client measures both.
//!
//! The model is redis-benchmark's: `--connections` connections, each keeping
//! `--pipeline` requests in flight (a sliding window: a new request leaves as soon as an
//! answer arrives), keys of `--key-size` bytes drawn uniformly from a `--keyspace`,
//! values of `--value-size` bytes. `--preload` first writes every key of the keyspace
//! once, so every GET of the measured run hits. The run stops after `--requests` in
//! total or after `--duration` seconds, whichever comes first; it reports operations
//! per second, latency percentiles (from send to answer, per request, in an HDR
//! histogram) and errors, as text or as one JSON line (`--json`).
//!
//! Each connection is its own socket: a [`raw::RawConn`] for dhrt (one WebSocket,
//! requests framed and written together, answers paired by id), a [`redis::RespConn`] for Redis
//! (answers come in order). Clusters are driven the way `redis-benchmark --cluster`
//! drives them: the connections are spread over the nodes, and each connection only
//! uses keys its node owns — the first node of the key's preference list for dhrt (what
//! [`dhrt::Client`](dhrt::client::Client) routes to), the master of the key's slot for
//! Redis — so no request pays an extra hop. `--route node` sends everything to the
//! `--node` given instead and lets it coordinate. A Redis `MOVED` answer is followed
//! (and counted) should the slot map change during the run.

mod lane;
mod raw;
mod redis;
mod report;
mod server_cpu;

use clap::{Args, ValueEnum};
use dhrt::client::{normalize_addr, Client, ConnectOptions};
use dhrt_core::{hash::Placement, proto::client::Consistency, ring::RingTable};
use indicatif::{ProgressBar, ProgressStyle};
use lane::{Lane, LaneConn, LaneStats, Phase, Shared};
use raw::RawConn;
use redis::RespConn;
use report::Report;
use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use super::data::Target;

/// Largest value `dhrt bench` will send (dhrt's default `--max-value`).
const MAX_VALUE: usize = 16 * 1024 * 1024;

/// Requests of a run that gives neither `--requests` nor `--duration`.
const DEFAULT_REQUESTS: u64 = 100_000;

/// Options of `dhrt bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to drive: `dhrt` (the node at the global --node) or `redis` (at --redis).
    #[arg(long, value_enum, default_value_t = TargetKind::Dhrt)]
    pub target: TargetKind,
    /// The Redis server to drive, HOST:PORT (with --redis-cluster: any cluster node).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6379")]
    pub redis: String,
    /// The Redis server is a Redis Cluster node: read CLUSTER SLOTS and send each key
    /// to its slot's master.
    #[arg(long)]
    pub redis_cluster: bool,
    /// Connections (each its own socket), spread over a cluster's nodes.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Requests in total (default 100000 when --duration is not given either; 0 with
    /// --preload only loads the keyspace).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Seconds to run (stops at whichever of --requests and --duration comes first).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Bytes per key (keys are the key's number, zero-padded to this width).
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Distinct keys the requests are drawn from (uniformly).
    #[arg(long, default_value_t = 100_000)]
    pub keyspace: u64,
    /// What to send: `set`, `get`, or `mixed` (half each).
    #[arg(long, value_enum, default_value_t = Workload::Set)]
    pub workload: Workload,
    /// Write every key of the keyspace once before the measured run, so every GET hits.
    #[arg(long)]
    pub preload: bool,
    /// The dhrt collection to use.
    #[arg(long, default_value = "bench")]
    pub collection: String,
    /// dhrt clusters: `owner` spreads the connections over the nodes, each using keys
    /// its node owns; `node` sends everything to --node, which coordinates.
    #[arg(long, value_enum, default_value_t = Route::Owner)]
    pub route: Route,
    /// Client threads (1: a single-threaded runtime, what a load generator pinned to
    /// one core wants).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Print one JSON line of results (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// The kind of server driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// A dhrt node or cluster, over its WebSocket protocol.
    Dhrt,
    /// A Redis server or Redis Cluster, over RESP2.
    Redis,
}

/// The requests of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Only SET.
    Set,
    /// Only GET.
    Get,
    /// GET and SET, half each (chosen at random per request).
    Mixed,
}

/// How requests reach a dhrt cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Route {
    /// Each connection talks to one node and uses only keys that node owns.
    Owner,
    /// Every connection talks to --node, which coordinates every request.
    Node,
}

/// A checked run description.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Requests in total, if bounded by count.
    pub requests: Option<u64>,
    /// Length of the run, if bounded by time.
    pub duration: Option<Duration>,
    /// Bytes per key.
    pub key_size: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Distinct keys.
    pub keyspace: u64,
    /// What to send.
    pub workload: Workload,
    /// Load the keyspace first.
    pub preload: bool,
    /// Client threads.
    pub threads: usize,
}

impl Plan {
    /// Whether the run has a measured phase (not only a preload).
    pub fn measures(&self) -> bool {
        self.requests != Some(0) || self.duration.is_some()
    }
}

impl BenchArgs {
    /// Checks the options and fills in defaults.
    pub fn plan(&self) -> Result<Plan, String> {
        if !(1..=10_000).contains(&self.connections) {
            return Err("--connections must be 1 to 10000".into());
        }
        if !(1..=10_000).contains(&self.pipeline) {
            return Err("--pipeline must be 1 to 10000".into());
        }
        if !(1..=256).contains(&self.threads) {
            return Err("--threads must be 1 to 256".into());
        }
        if !(1..=64 * 1024).contains(&self.key_size) {
            return Err("--key-size must be 1 to 65536 bytes".into());
        }
        if self.value_size > MAX_VALUE {
            return Err(format!("--value-size must be at most {MAX_VALUE} bytes"));
        }
        if self.keyspace == 0 {
            return Err("--keyspace must be at least 1".into());
        }
        let digits = (self.keyspace - 1).checked_ilog10().map_or(1, |d| d as usize + 1);
        if digits > self.key_size {
            return Err(format!(
                "{}-byte keys cannot number {} keys: raise --key-size to {digits} or lower --keyspace",
                self.key_size, self.keyspace
            ));
        }
        let duration = match self.duration {
            None => None,
            Some(s) if s > 0.0 && s <= 24.0 * 3600.0 => Some(Duration::from_secs_f64(s)),
            Some(_) => return Err("--duration must be more than 0 and at most a day".into()),
        };
        let requests = match (self.requests, duration) {
            (None, None) => Some(DEFAULT_REQUESTS),
            (r, _) => r,
        };
        if requests == Some(0) && duration.is_none() && !self.preload {
            return Err("nothing to do: --requests 0 without --preload or --duration".into());
        }
        if self.target == TargetKind::Dhrt {
            dhrt_core::store::validate_collection(&self.collection).map_err(|e| e.to_string())?;
        }
        Ok(Plan {
            connections: self.connections,
            pipeline: self.pipeline,
            requests,
            duration,
            key_size: self.key_size,
            value_size: self.value_size,
            keyspace: self.keyspace,
            workload: self.workload,
            preload: self.preload,
            threads: self.threads,
        })
    }
}

/// Writes key number `i` (zero-padded decimal, `size` bytes) to `out`.
pub fn write_key(out: &mut Vec<u8>, i: u64, size: usize) {
    let start = out.len();
    out.resize(start + size, b'0');
    let mut n = i;
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
}

/// Runs `dhrt bench`.
pub fn run(args: &BenchArgs, target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    let plan = args.plan()?;
    let runtime = if plan.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.threads)
            .enable_all()
            .build()?
    };
    let report = runtime.block_on(bench(args, &plan, target))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render());
    }
    if report.requests == 0 && report.errors > 0 {
        return Err(format!(
            "every request failed; the first error: {}",
            report.first_error.as_deref().unwrap_or("unknown")
        )
        .into());
    }
    Ok(())
}

/// One node of the target and the keys its connections use (`None`: the whole keyspace).
struct Group {
    addr: String,
    keys: Option<Arc<Vec<u64>>>,
}

async fn bench(
    args: &BenchArgs,
    plan: &Plan,
    target: &Target,
) -> Result<Report, Box<dyn std::error::Error>> {
    let timeout = Duration::from_secs_f64(target.timeout.clamp(0.01, 3600.0));
    let groups = match args.target {
        TargetKind::Dhrt => dhrt_groups(args, plan, target, timeout).await?,
        TargetKind::Redis => redis_groups(args, plan).await?,
    };
    if plan.connections < groups.len() {
        return Err(format!(
            "{} nodes need at least {} --connections (one per node)",
            groups.len(),
            groups.len()
        )
        .into());
    }
    let lanes = open_lanes(args, plan, &groups, timeout, &target.options()).await?;
    let ctx = Arc::new(lane::Context {
        collection: args.collection.clone(),
        value: vec![b'v'; plan.value_size].into(),
        key_size: plan.key_size,
        keyspace: plan.keyspace,
        workload: plan.workload,
        consistency: match args.target {
            TargetKind::Dhrt => target.consistency,
            TargetKind::Redis => Consistency::Default,
        },
        timeout,
    });
    let mut lanes = lanes;
    let mut preload_seconds = None;
    if plan.preload {
        let shared = Arc::new(Shared::new(None, None));
        let bar = progress(args.json, Some(plan.keyspace), "preload");
        let started = Instant::now();
        let window = plan.pipeline.max(16);
        let (back, stats) = run_phase(lanes, Phase::Preload, window, &ctx, &shared, &bar).await;
        bar.finish_and_clear();
        lanes = back;
        let stats = LaneStats::merge(stats);
        if stats.errors > 0 {
            return Err(format!(
                "preloading failed for {} keys; the first error: {}",
                stats.errors,
                stats.first_error.as_deref().unwrap_or("unknown")
            )
            .into());
        }
        preload_seconds = Some(started.elapsed().as_secs_f64());
    }
    let given = normalize_addr(&target.node);
    let mut report = Report::new(args, plan, groups.len(), (&given, target.consistency));
    report.preload_seconds = preload_seconds;
    if !plan.measures() {
        return Ok(report);
    }
    let started = Instant::now();
    let shared = Arc::new(Shared::new(plan.requests, plan.duration.map(|d| started + d)));
    let bar = match plan.requests {
        Some(n) if plan.duration.is_none() => progress(args.json, Some(n), "run"),
        _ => progress(args.json, None, "run"),
    };
    let servers = server_cpu::Servers::of(args, target, timeout).await;
    let server_before = match &servers {
        Some(s) => s.total().await,
        None => None,
    };
    let cpu_before = dhrt::cpu::process_cpu_time();
    let (_, stats) = run_phase(lanes, Phase::Measure, plan.pipeline, &ctx, &shared, &bar).await;
    let elapsed = started.elapsed();
    let cpu = dhrt::cpu::process_cpu_time().saturating_sub(cpu_before);
    bar.finish_and_clear();
    report.fill(LaneStats::merge(stats), elapsed, cpu);
    let server_after = match &servers {
        Some(s) => s.total().await,
        None => None,
    };
    if let (Some(before), Some(after)) = (server_before, server_after) {
        report.charge_servers(after.saturating_sub(before));
    }
    Ok(report)
}

/// The dhrt nodes to drive and, for a cluster routed by owner, the keys of each.
async fn dhrt_groups(
    args: &BenchArgs,
    plan: &Plan,
    target: &Target,
    timeout: Duration,
) -> Result<Vec<Group>, Box<dyn std::error::Error>> {
    let given = normalize_addr(&target.node);
    if args.route == Route::Node {
        return Ok(vec![Group { addr: given, keys: None }]);
    }
    let client =
        Client::connect_with_options(&[target.node.as_str()], timeout, target.options()).await?;
    let members: Vec<_> =
        client.ring().await?.into_iter().filter(|m| m.status == "alive").collect();
    if members.len() <= 1 {
        return Ok(vec![Group { addr: given, keys: None }]);
    }
    let table = RingTable::new(members.iter().map(|m| (m.id, m.tokens.as_slice())));
    let placement = Placement::of(&args.collection);
    let mut keys: Vec<Vec<u64>> = vec![Vec::new(); members.len()];
    let mut k = Vec::with_capacity(plan.key_size);
    for i in 0..plan.keyspace {
        k.clear();
        write_key(&mut k, i, plan.key_size);
        let pos = placement.position(&args.collection, &k);
        let owner = table.owner(pos).ok_or("the ring has no members")?;
        let at = members.iter().position(|m| m.id == owner).ok_or("an owner outside the ring")?;
        keys[at].push(i);
    }
    Ok(members
        .iter()
        .zip(keys)
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(m, keys)| Group { addr: m.addr.clone(), keys: Some(Arc::new(keys)) })
        .collect())
}

/// The Redis server, or a Redis Cluster's masters and the keys of each.
async fn redis_groups(
    args: &BenchArgs,
    plan: &Plan,
) -> Result<Vec<Group>, Box<dyn std::error::Error>> {
    let addr = normalize_addr(&args.redis);
    if !args.redis_cluster {
        return Ok(vec![Group { addr, keys: None }]);
    }
    let cluster = redis::Cluster::connect(&[addr.as_str()]).await?;
    let masters = cluster.slots().masters();
    let mut keys: Vec<Vec<u64>> = vec![Vec::new(); masters.len()];
    let mut k = Vec::with_capacity(plan.key_size);
    for i in 0..plan.keyspace {
        k.clear();
        write_key(&mut k, i, plan.key_size);
        let slot = redis::key_slot(&k);
        let master = cluster.slots().master(slot).ok_or(redis::RespError::Unserved(slot))?;
        let at = masters.iter().position(|m| m == master).ok_or("a master vanished")?;
        keys[at].push(i);
    }
    Ok(masters
        .into_iter()
        .zip(keys)
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(addr, keys)| Group { addr, keys: Some(Arc::new(keys)) })
        .collect())
}

/// Opens every connection: connection `c` goes to group `c % groups`.
async fn open_lanes(
    args: &BenchArgs,
    plan: &Plan,
    groups: &[Group],
    timeout: Duration,
    options: &ConnectOptions,
) -> Result<Vec<Lane>, Box<dyn std::error::Error>> {
    let mut opening = Vec::with_capacity(plan.connections);
    for c in 0..plan.connections {
        let group = &groups[c % groups.len()];
        let rank = c / groups.len();
        let group_size = (plan.connections - c % groups.len()).div_ceil(groups.len());
        let addr = group.addr.clone();
        let keys = group.keys.clone();
        let kind = args.target;
        let options = options.clone();
        opening.push(async move {
            let conn = match kind {
                TargetKind::Dhrt => {
                    LaneConn::Dhrt(Box::new(RawConn::open(&addr, timeout, &options).await?))
                }
                TargetKind::Redis => LaneConn::Redis(Box::new(RespConn::connect(&addr).await?)),
            };
            Ok::<_, Box<dyn std::error::Error>>(Lane::new(conn, keys, rank, group_size, c as u64))
        });
    }
    futures_util::future::try_join_all(opening).await
}

/// Runs `phase` on every lane at once; gives the lanes back with their statistics.
async fn run_phase(
    lanes: Vec<Lane>,
    phase: Phase,
    window: usize,
    ctx: &Arc<lane::Context>,
    shared: &Arc<Shared>,
    bar: &ProgressBar,
) -> (Vec<Lane>, Vec<LaneStats>) {
    let tasks: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let ctx = ctx.clone();
            let shared = shared.clone();
            tokio::spawn(lane.run(phase, window, ctx, shared))
        })
        .collect();
    let ticker = {
        let shared = shared.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let done = shared.done.load(Ordering::Relaxed);
                bar.set_position(done);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!("{} ops/s", report::thousands(done as f64 / secs)));
            }
        })
    };
    let mut back = Vec::with_capacity(tasks.len());
    let mut stats = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok((lane, s)) => {
                back.push(lane);
                stats.push(s);
            }
            Err(e) => {
                let mut s = LaneStats::new();
                s.error(format!("a connection's task failed: {e}"));
                stats.push(s);
            }
        }
    }
    ticker.abort();
    (back, stats)
}

/// A progress bar on stderr (hidden for --json and when stderr is not a terminal).
fn progress(json: bool, len: Option<u64>, what: &str) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(n) => (
            ProgressBar::new(n),
            format!("{what} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {{msg}}"),
        ),
        None => (
            ProgressBar::no_length(),
            format!("{what} {{spinner}} [{{elapsed_precise}}] {{pos}} {{msg}}"),
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn key(i: u64, size: usize) -> Vec<u8> {
        let mut k = Vec::new();
        write_key(&mut k, i, size);
        k
    }

    fn parse(args: &[&str]) -> BenchArgs {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").bench
    }

    #[test]
    fn defaults_are_the_issues_workload() {
        let args = parse(&[]);
        assert_eq!(args.target, TargetKind::Dhrt);
        let plan = args.plan().unwrap();
        assert_eq!(plan.connections, 50);
        assert_eq!(plan.pipeline, 1);
        assert_eq!(plan.key_size, 16);
        assert_eq!(plan.value_size, 100);
        assert_eq!(plan.workload, Workload::Set);
        assert_eq!(plan.requests, Some(DEFAULT_REQUESTS));
        assert_eq!(plan.duration, None);
        assert!(plan.measures());
    }

    #[test]
    fn options_parse() {
        let args = parse(&[
            "--target",
            "redis",
            "--redis",
            "127.0.0.1:7000",
            "--redis-cluster",
            "--connections",
            "4",
            "--pipeline",
            "16",
            "--duration",
            "2.5",
            "--workload",
            "mixed",
            "--keyspace",
            "1000",
            "--preload",
            "--json",
        ]);
        assert_eq!(args.target, TargetKind::Redis);
        assert!(args.redis_cluster && args.preload && args.json);
        let plan = args.plan().unwrap();
        assert_eq!((plan.connections, plan.pipeline), (4, 16));
        assert_eq!(plan.duration, Some(Duration::from_millis(2500)));
        assert_eq!(plan.requests, None, "a duration alone bounds the run");
        assert_eq!(plan.workload, Workload::Mixed);
        let both = parse(&["--requests", "10", "--duration", "1"]).plan().unwrap();
        assert_eq!((both.requests, both.duration), (Some(10), Some(Duration::from_secs(1))));
        assert!(Cli::try_parse_from(["bench", "--workload", "delete"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--target", "memcached"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--pipeline", "-1"]).is_err());
    }

    #[test]
    fn bad_options_say_what_to_do() {
        let err = |args: &[&str]| parse(args).plan().unwrap_err();
        assert!(err(&["--connections", "0"]).contains("--connections"));
        assert!(err(&["--pipeline", "0"]).contains("--pipeline"));
        assert!(err(&["--key-size", "0"]).contains("--key-size"));
        assert!(err(&["--keyspace", "0"]).contains("--keyspace"));
        assert!(err(&["--duration", "0"]).contains("--duration"));
        assert!(err(&["--duration=-3"]).contains("--duration"));
        assert!(err(&["--value-size", "20000000"]).contains("--value-size"));
        assert!(err(&["--threads", "0"]).contains("--threads"));
        let e = err(&["--key-size", "3", "--keyspace", "1001"]);
        assert!(e.contains("raise --key-size to 4"), "{e}");
        assert!(err(&["--requests", "0"]).contains("nothing to do"));
        assert!(err(&["--collection", "no/slash"]).contains("collection"));
        // Redis has no collections: the name is not checked.
        assert!(parse(&["--target", "redis", "--collection", "no/slash"]).plan().is_ok());
    }

    #[test]
    fn preload_only_runs_no_measured_phase() {
        let plan = parse(&["--preload", "--requests", "0"]).plan().unwrap();
        assert!(!plan.measures());
        assert!(parse(&["--preload", "--requests", "0", "--duration", "1"])
            .plan()
            .unwrap()
            .measures());
    }

    #[test]
    fn keys_have_the_asked_size_and_differ() {
        assert_eq!(key(42, 16), b"0000000000000042");
        assert_eq!(key(0, 1), b"0");
        assert_eq!(key(999, 3), b"999");
        let keys: std::collections::BTreeSet<Vec<u8>> = (0..1000).map(|i| key(i, 4)).collect();
        assert_eq!(keys.len(), 1000);
        assert!(keys.iter().all(|k| k.len() == 4));
        let ks = parse(&["--key-size", "3", "--keyspace", "1000"]).plan().unwrap();
        assert_eq!(key(ks.keyspace - 1, ks.key_size), b"999");
        let mut buf = b"x".to_vec();
        write_key(&mut buf, 7, 2);
        assert_eq!(buf, b"x07");
    }
}
