//! The results of a `dhrt bench` run: as text for people, as one JSON line for scripts.

use super::{lane::LaneStats, BenchArgs, Plan, TargetKind, Workload};
use dhrt_core::proto::client::Consistency;
use serde::Serialize;
use std::time::Duration;

/// What a run measured. Latencies are microseconds from sending a request to reading
/// its answer.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `dhrt` or `redis`.
    pub target: &'static str,
    /// The address given.
    pub addr: String,
    /// Nodes driven (a cluster's masters for Redis).
    pub nodes: usize,
    /// `set`, `get` or `mixed`.
    pub workload: &'static str,
    /// Connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Bytes per key.
    pub key_size: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Distinct keys.
    pub keyspace: u64,
    /// dhrt's consistency level (`null` for Redis).
    pub consistency: Option<String>,
    /// Requests answered without an error.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// GETs that found no value.
    pub misses: u64,
    /// Requests redirected (Redis `MOVED`/`ASK`).
    pub redirects: u64,
    /// Length of the measured run.
    pub seconds: f64,
    /// Answered requests per second.
    pub ops_per_sec: f64,
    /// Median latency.
    pub p50_us: u64,
    /// 99th percentile latency.
    pub p99_us: u64,
    /// 99.9th percentile latency.
    pub p999_us: u64,
    /// Largest latency.
    pub max_us: u64,
    /// Mean latency.
    pub mean_us: f64,
    /// CPU the load generator used, in cores (1.0 = one core busy the whole run): near
    /// 1.0 with `--threads 1` means the client, not the server, may be the limit.
    pub client_cpu: f64,
    /// CPU the servers used per answered request, in microseconds, summed over every
    /// node of the target (replicas included); `null` when it could not be read.
    pub server_cpu_us: Option<f64>,
    /// Seconds the preload took, if there was one.
    pub preload_seconds: Option<f64>,
    /// The first failure's message.
    pub first_error: Option<String>,
}

impl Report {
    /// A report with the run's description and nothing measured yet; `dhrt` is the
    /// dhrt node given and the consistency asked for.
    pub fn new(args: &BenchArgs, plan: &Plan, nodes: usize, dhrt: (&str, Consistency)) -> Report {
        let (target, addr, consistency) = match args.target {
            TargetKind::Dhrt => ("dhrt", dhrt.0.to_string(), Some(dhrt.1.to_string())),
            TargetKind::Redis => ("redis", args.redis.clone(), None),
        };
        Report {
            target,
            addr,
            nodes,
            workload: match plan.workload {
                Workload::Set => "set",
                Workload::Get => "get",
                Workload::Mixed => "mixed",
            },
            connections: plan.connections,
            pipeline: plan.pipeline,
            key_size: plan.key_size,
            value_size: plan.value_size,
            keyspace: plan.keyspace,
            consistency,
            requests: 0,
            errors: 0,
            misses: 0,
            redirects: 0,
            seconds: 0.0,
            ops_per_sec: 0.0,
            p50_us: 0,
            p99_us: 0,
            p999_us: 0,
            max_us: 0,
            mean_us: 0.0,
            client_cpu: 0.0,
            server_cpu_us: None,
            preload_seconds: None,
            first_error: None,
        }
    }

    /// Fills in what the measured run saw, in `elapsed`, using `cpu` of the client.
    pub fn fill(&mut self, stats: LaneStats, elapsed: Duration, cpu: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let h = &stats.hist;
        self.requests = h.len();
        self.errors = stats.errors;
        self.misses = stats.misses;
        self.redirects = stats.redirects;
        self.seconds = round(secs, 3);
        self.ops_per_sec = round(h.len() as f64 / secs, 1);
        if !h.is_empty() {
            self.p50_us = h.value_at_quantile(0.50);
            self.p99_us = h.value_at_quantile(0.99);
            self.p999_us = h.value_at_quantile(0.999);
            self.max_us = h.max();
            self.mean_us = round(h.mean(), 1);
        }
        self.client_cpu = round(cpu.as_secs_f64() / secs, 3);
        self.first_error = stats.first_error;
    }

    /// Charges the requests answered with `cpu`, the servers' CPU during the run.
    pub fn charge_servers(&mut self, cpu: Duration) {
        if self.requests > 0 {
            self.server_cpu_us = Some(round(cpu.as_secs_f64() * 1e6 / self.requests as f64, 2));
        }
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} {}: {} node{}, {}, {} connections x pipeline {}, {} B keys, {} B values, keyspace {}{}\n",
            self.target,
            self.addr,
            self.nodes,
            if self.nodes == 1 { "" } else { "s" },
            self.workload,
            self.connections,
            self.pipeline,
            self.key_size,
            self.value_size,
            self.keyspace,
            self.consistency.as_deref().map_or(String::new(), |c| format!(", consistency {c}")),
        );
        if let Some(p) = self.preload_seconds {
            out += &format!(
                "  preload:    {} keys in {p:.2} s ({} keys/s)\n",
                self.keyspace,
                thousands(self.keyspace as f64 / p.max(1e-9))
            );
        }
        if self.seconds == 0.0 {
            return out;
        }
        out += &format!(
            "  requests:   {} in {:.2} s, {} errors, {} misses{}\n",
            self.requests,
            self.seconds,
            self.errors,
            self.misses,
            if self.redirects > 0 {
                format!(", {} redirects", self.redirects)
            } else {
                String::new()
            }
        );
        out += &format!("  throughput: {} ops/s\n", thousands(self.ops_per_sec));
        out += &format!(
            "  latency:    p50 {}  p99 {}  p99.9 {}  max {}  (mean {})\n",
            micros(self.p50_us as f64),
            micros(self.p99_us as f64),
            micros(self.p999_us as f64),
            micros(self.max_us as f64),
            micros(self.mean_us),
        );
        out += &format!("  client CPU: {:.0}% of a core\n", self.client_cpu * 100.0);
        if let Some(us) = self.server_cpu_us {
            out += &format!("  server CPU: {us:.1} µs per request (every node)\n");
        }
        if let Some(e) = &self.first_error {
            out += &format!("  first error: {e}\n");
        }
        out
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(x: f64) -> String {
    let n = x.max(0.0).round() as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds as `412 µs`, `1.25 ms` or `2.10 s`.
fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(micros(412.0), "412 µs");
        assert_eq!(micros(1250.0), "1.25 ms");
        assert_eq!(micros(2_100_000.0), "2.10 s");
        assert_eq!(round(1.23456, 2), 1.23);
    }

    #[test]
    fn a_filled_report_has_percentiles_and_rates() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let args = Cli::parse_from(["bench", "--target", "redis", "--pipeline", "4"]).bench;
        let plan = args.plan().unwrap();
        let mut report = Report::new(&args, &plan, 1, ("x:1", Consistency::One));
        let mut stats = LaneStats::new();
        for us in 1..=1000 {
            stats.hist.record(us).unwrap();
        }
        stats.misses = 3;
        report.fill(stats, Duration::from_millis(500), Duration::from_millis(250));
        assert_eq!(report.requests, 1000);
        assert_eq!(report.ops_per_sec, 2000.0);
        assert!((499..=501).contains(&report.p50_us), "{}", report.p50_us);
        assert!((989..=991).contains(&report.p99_us), "{}", report.p99_us);
        assert_eq!(report.max_us, 1000);
        assert_eq!(report.client_cpu, 0.5);
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["target"], "redis");
        assert_eq!(json["pipeline"], 4);
        assert_eq!(json["misses"], 3);
        assert_eq!(json["consistency"], serde_json::Value::Null);
        let text = report.render();
        assert!(text.contains("throughput: 2,000 ops/s"), "{text}");
        assert!(text.contains("1000 in 0.50 s, 0 errors, 3 misses"), "{text}");
        assert!(text.starts_with("redis 127.0.0.1:6379: 1 node, set, 50 connections"), "{text}");
        assert!(!text.contains("server CPU"), "unknown, so not shown: {text}");
        // 40 ms of server CPU over 1000 requests: 40 µs each.
        report.charge_servers(Duration::from_millis(40));
        assert_eq!(report.server_cpu_us, Some(40.0));
        assert!(report.render().contains("server CPU: 40.0 µs per request"));
    }
}
