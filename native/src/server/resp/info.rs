//! `INFO` and `CONFIG` of the Redis endpoint.
//!
//! INFO answers Redis's sections — server, clients, memory, stats, keyspace — from the
//! node's snapshot (the figures `/metrics` shows), plus a `dhrt` section on the ring
//! and this node's state. Counts are this node's: `keyspace` lists the keys this node
//! holds replicas of in each mapped collection (DBSIZE counts the whole collection).
//!
//! CONFIG answers for the few parameters that mean something here: `databases`,
//! `save` and `appendonly` (what redis-benchmark asks; how this node persists), and
//! `notify-keyspace-events`, which CONFIG SET changes for the whole node, as in Redis.

use super::{RespConfig, REDIS_VERSION};
use crate::server::stats::Snapshot;
use std::fmt::Write;

/// What a node's Redis endpoint settles at run time (`CONFIG SET`).
#[derive(Debug, Default)]
pub struct Settings {
    /// `notify-keyspace-events`, as set (Redis's flags: `K`, `E`, `g`, `$`, `x`, `A`).
    pub notify: std::sync::Mutex<String>,
}

impl Settings {
    /// The current `notify-keyspace-events`.
    pub fn notify(&self) -> String {
        self.notify.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The sections INFO answers when asked for none, `default` or `all`.
const SECTIONS: [&str; 6] = ["server", "clients", "memory", "stats", "keyspace", "dhrt"];

/// The INFO text of `sections` (empty: every section).
pub fn info(
    sections: &[String],
    snap: &Snapshot,
    config: &RespConfig,
    clients: u64,
    port: u16,
) -> String {
    let wanted = |s: &str| {
        sections.is_empty()
            || sections.iter().any(|w| w == s || w == "all" || w == "default" || w == "everything")
    };
    let mut out = String::new();
    for section in SECTIONS.iter().filter(|s| wanted(s)) {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let _ = match *section {
            "server" => server(&mut out, port),
            "clients" => {
                write!(out, "# Clients\r\nconnected_clients:{clients}\r\nblocked_clients:0\r\n")
            }
            "memory" => memory(&mut out, snap),
            "stats" => stats(&mut out, snap),
            "keyspace" => keyspace(&mut out, snap, config),
            _ => ring(&mut out, snap),
        };
    }
    out
}

fn server(out: &mut String, port: u16) -> std::fmt::Result {
    write!(
        out,
        "# Server\r\nredis_version:{REDIS_VERSION}\r\ndhrt_version:{}\r\nredis_mode:standalone\r\n\
         os:{}\r\narch_bits:{}\r\nprocess_id:{}\r\ntcp_port:{port}\r\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        usize::BITS,
        std::process::id(),
    )
}

fn memory(out: &mut String, snap: &Snapshot) -> std::fmt::Result {
    let rss = resident_bytes().unwrap_or(0);
    write!(
        out,
        "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{:.2}M\r\nused_memory_rss:{rss}\r\n\
         dhrt_data_bytes:{}\r\n",
        rss as f64 / (1 << 20) as f64,
        snap.stats.bytes,
    )
}

fn stats(out: &mut String, snap: &Snapshot) -> std::fmt::Result {
    let s = &snap.stats;
    write!(
        out,
        "# Stats\r\ntotal_commands_processed:{}\r\nexpired_keys:{}\r\n\
         dhrt_tombstones_purged:{}\r\ndhrt_hints_pending:{}\r\n",
        s.requests, s.expired, s.tombstones_purged, s.hints_pending,
    )
}

fn keyspace(out: &mut String, snap: &Snapshot, config: &RespConfig) -> std::fmt::Result {
    out.push_str("# Keyspace\r\n");
    for c in &snap.collections {
        if let Some(db) = config.index_of(&c.name) {
            let keys = c.entries.saturating_sub(c.tombstones);
            write!(out, "db{db}:keys={keys},expires=0,avg_ttl=0\r\n")?;
        }
    }
    Ok(())
}

fn ring(out: &mut String, snap: &Snapshot) -> std::fmt::Result {
    let s = &snap.stats;
    let alive = snap.ring.iter().filter(|m| m.status == "alive").count();
    write!(
        out,
        "# dhrt\r\nnode_id:{:016x}\r\nnode_addr:{}\r\nnode_status:{}\r\nreplicas:{}\r\n\
         members:{}\r\nmembers_alive:{alive}\r\ncollections:{}\r\nkeys:{}\r\ntombstones:{}\r\n",
        s.node.0,
        snap.addr,
        s.status,
        s.replicas,
        snap.ring.len(),
        s.collections,
        s.keys,
        s.tombstones,
    )?;
    for (i, m) in snap.ring.iter().enumerate() {
        let change = if m.joining {
            ",joining"
        } else if m.leaving {
            ",leaving"
        } else {
            ""
        };
        write!(
            out,
            "member{i}:id={:016x},addr={},status={}{change}\r\n",
            m.id.0, m.addr, m.status
        )?;
    }
    Ok(())
}

/// This process's resident memory, from `/proc/self/statm` (Linux).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The parameters CONFIG GET knows, with their values: `persisted` says whether this
/// node keeps its data on disk.
pub fn parameters(config: &RespConfig, persisted: bool) -> Vec<(&'static str, String)> {
    let settings = &config.settings;
    vec![
        ("databases", config.len().to_string()),
        ("save", String::new()),
        ("appendonly", if persisted { "yes" } else { "no" }.into()),
        ("appendfsync", if persisted { "always" } else { "no" }.into()),
        ("notify-keyspace-events", settings.notify()),
    ]
}

/// Validates and normalizes a `notify-keyspace-events` value as Redis reads it.
pub fn notify_flags(value: &str) -> Result<String, String> {
    let mut flags = String::new();
    for c in value.chars() {
        if !"KEg$lshzxetdmnA".contains(c) {
            return Err("ERR Invalid argument 'notify-keyspace-events' for CONFIG SET".into());
        }
        if !flags.contains(c) {
            flags.push(c);
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_flags_are_checked() {
        assert_eq!(notify_flags("KEA").unwrap(), "KEA");
        assert_eq!(notify_flags("").unwrap(), "");
        assert!(notify_flags("Kq").is_err());
    }
}
