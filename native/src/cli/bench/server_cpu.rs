//! The servers' CPU time, sampled before and after the measured run, so `dhrt bench`
//! reports what each request cost the servers (µs of CPU per request, summed over every
//! node of the target) beside ops/s and latency.
//!
//! - dhrt: `dhrt_cpu_microseconds_total` from `GET /v1/stats` of every member of the
//!   ring (replicas included: a quorum write costs every replica's CPU). Not sampled
//!   over TLS.
//! - Redis: `used_cpu_sys + used_cpu_user` from `INFO cpu` of the node given, or of
//!   every node `CLUSTER NODES` lists (masters and replicas).
//!
//! Any node that does not answer makes the figure unknown rather than wrong.

use super::{redis::RespConn, BenchArgs, TargetKind};
use crate::cli::data::Target;
use bytes::Bytes;
use dhrt::{
    client::{normalize_addr, Client},
    resp::Value,
};
use http_body_util::{BodyExt, Empty};
use std::time::Duration;

/// The nodes whose CPU a run is charged with.
pub enum Servers {
    /// dhrt nodes, and the token `/v1/stats` needs.
    Dhrt { addrs: Vec<String>, token: Option<String> },
    /// Redis nodes.
    Redis { addrs: Vec<String> },
}

impl Servers {
    /// The target's nodes; `None` when their CPU cannot be read (dhrt over TLS, or the
    /// node list could not be read).
    pub async fn of(args: &BenchArgs, target: &Target, timeout: Duration) -> Option<Servers> {
        match args.target {
            TargetKind::Dhrt => {
                let options = target.options();
                if options.tls {
                    return None;
                }
                let client =
                    Client::connect_with_options(&[target.node.as_str()], timeout, options)
                        .await
                        .ok()?;
                let ring = client.ring().await.ok()?;
                let addrs = ring
                    .into_iter()
                    .filter(|m| m.status != "left" && m.status != "dead")
                    .map(|m| m.addr)
                    .collect();
                Some(Servers::Dhrt { addrs, token: target.token.clone() })
            }
            TargetKind::Redis => {
                let addr = normalize_addr(&args.redis);
                if !args.redis_cluster {
                    return Some(Servers::Redis { addrs: vec![addr] });
                }
                let mut conn = RespConn::connect(&addr).await.ok()?;
                let nodes = conn.command(&[b"CLUSTER", b"NODES"]).await.ok()?;
                Some(Servers::Redis { addrs: cluster_nodes(&text(&nodes)?) })
            }
        }
    }

    /// The CPU all the nodes used so far, if every one of them answered.
    pub async fn total(&self) -> Option<Duration> {
        let mut total = Duration::ZERO;
        match self {
            Servers::Dhrt { addrs, token } => {
                for addr in addrs {
                    total += dhrt_cpu(addr, token.as_deref()).await?;
                }
            }
            Servers::Redis { addrs } => {
                for addr in addrs {
                    let mut conn = RespConn::connect(addr).await.ok()?;
                    let info = conn.command(&[b"INFO", b"cpu"]).await.ok()?;
                    total += redis_cpu(&text(&info)?)?;
                }
            }
        }
        Some(total)
    }
}

/// `dhrt_cpu_microseconds_total` of the node at `addr`.
async fn dhrt_cpu(addr: &str, token: Option<&str>) -> Option<Duration> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().uri("/v1/stats").header("host", addr);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = sender.send_request(req.body(Empty::<Bytes>::new()).ok()?).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let stats: serde_json::Value = serde_json::from_slice(&body).ok()?;
    stats["server"]["dhrt_cpu_microseconds_total"].as_u64().map(Duration::from_micros)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Simple(s) => Some(s.clone()),
        _ => None,
    }
}

/// `used_cpu_sys + used_cpu_user` of an `INFO cpu` answer.
fn redis_cpu(info: &str) -> Option<Duration> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')?.parse::<f64>().ok())
    };
    let seconds = field("used_cpu_sys")? + field("used_cpu_user")?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// The `host:port` of every node of a `CLUSTER NODES` answer.
fn cluster_nodes(nodes: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|a| a.split('@').next())
        .filter(|a| !a.starts_with(':'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_cpu_adds_system_and_user_time() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
                    used_cpu_sys_children:9.0\r\nused_cpu_user_children:9.0\r\n";
        assert_eq!(redis_cpu(info), Some(Duration::from_millis(3_750)));
        assert_eq!(redis_cpu("# CPU\r\nused_cpu_sys:1.0\r\n"), None);
    }

    #[test]
    fn cluster_nodes_lists_every_address() {
        let nodes = "07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected\n\
                     67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922\n\
                     2e6e :0@0 master,fail,noaddr - 1 1 0 disconnected\n";
        assert_eq!(cluster_nodes(nodes), vec!["127.0.0.1:30004", "127.0.0.1:30002"]);
    }
}
