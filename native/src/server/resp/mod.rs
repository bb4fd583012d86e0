//! The Redis endpoint: RESP2 and RESP3 on a port of its own (`dhrt serve --resp-port`),
//! so redis-cli, redis-benchmark and Redis client libraries work against any node —
//! with dhrt's replication, consistency and repair underneath, and no slot map: any
//! node answers any key. docs/redis.md says what works and what differs.
//!
//! Connections are accepted here under the node's connection cap (the same slots as
//! the main port's) and read budget, and served as WebSocket clients are: its commands
//! become the same operations, checked against the same tokens ([`conn`]). A plain
//! connection moves to the node thread and hands them to the node at the desk; on a
//! node with TLS the port speaks only TLS (as the main port does), and a connection
//! stays with its TLS session on the server's runtime, reaching the node through its
//! inbox.
//!
//! - [`plan`]: data commands as dhrt operations, and the node's answers as replies;
//! - [`keys`]: Redis's glob patterns and cursors for SCAN, KEYS, DBSIZE and FLUSHDB;
//! - [`info`]: INFO and CONFIG;
//! - [`notify`]: keyspace notifications (SUBSCRIBE, PSUBSCRIBE) from dhrt's watches;
//! - [`commands`]: the command table (`COMMAND`), and what is refused and why;
//! - [`queue`]: a connection's commands in order, sent and answered;
//! - [`conn`]: one connection.

pub mod commands;
pub mod conn;
pub mod info;
pub mod keys;
pub mod notify;
pub mod plan;
pub mod queue;

use super::{
    accept::Slot,
    read_budget::{Metered, ReadMeter},
    AppState,
};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The Redis version whose protocol and commands the endpoint follows (`HELLO`,
/// `INFO`): client libraries read it to choose what to send.
pub const REDIS_VERSION: &str = "7.0.0";

/// Databases a Redis client can `SELECT` by default, as Redis has.
pub const DEFAULT_DATABASES: u32 = 16;

/// How Redis databases map to collections, and what `CONFIG SET` changed.
#[derive(Debug)]
pub struct RespConfig {
    /// The collection of database `i`.
    databases: Vec<String>,
    /// What CONFIG SET settles, for every connection of the node.
    pub settings: info::Settings,
}

impl Default for RespConfig {
    /// Database 0 is the `default` collection, databases 1 to 15 the collections
    /// `db1` to `db15`.
    fn default() -> Self {
        let databases = (0..DEFAULT_DATABASES)
            .map(|i| match i {
                0 => dhrt_core::proto::client::DEFAULT_COLLECTION.to_string(),
                i => format!("db{i}"),
            })
            .collect();
        RespConfig { databases, settings: info::Settings::default() }
    }
}

impl RespConfig {
    /// The default table with the entries of `mapping` (`N=COLLECTION`, as
    /// `--resp-db` takes them) set; databases past 15 may be added.
    pub fn with_mapping(mapping: &[String]) -> Result<RespConfig, String> {
        let mut config = RespConfig::default();
        for entry in mapping {
            let bad = || format!("--resp-db {entry:?}: expected N=COLLECTION, N from 0 to 1023");
            let (n, name) = entry.split_once('=').ok_or_else(bad)?;
            let n: usize = n.trim().parse().map_err(|_| bad())?;
            let name = name.trim();
            if n >= 1024 || name.is_empty() || name.len() > 255 {
                return Err(bad());
            }
            if config.databases.len() <= n {
                config.databases.resize_with(n + 1, String::new);
            }
            config.databases[n] = name.to_string();
        }
        Ok(config)
    }

    /// The collection of database `n`, if it is mapped.
    pub fn database(&self, n: u32) -> Option<&str> {
        self.databases.get(n as usize).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// The databases mapped to a collection.
    pub fn mapped(&self) -> Vec<u32> {
        (0..self.databases.len() as u32).filter(|&n| self.database(n).is_some()).collect()
    }

    /// How many databases there are (`CONFIG GET databases`).
    pub fn len(&self) -> usize {
        self.databases.len()
    }

    /// Whether no database is mapped (never: database 0 always is).
    pub fn is_empty(&self) -> bool {
        self.databases.is_empty()
    }

    /// The database a collection is mapped to, if any.
    pub fn index_of(&self, collection: &str) -> Option<u32> {
        self.databases.iter().position(|c| c == collection).map(|i| i as u32)
    }
}

/// Accepts Redis connections from `listener` until the task is dropped: plain TCP, or
/// TLS with `tls` (the node's own port configuration: a node with TLS speaks only TLS).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    config: Arc<RespConfig>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    match tls {
        Some(tls) => {
            let timeout = state.limits.tls_handshake_timeout;
            let listener = crate::tls::TlsListener::new(listener, tls).handshake_timeout(timeout);
            serve_tls(listener, state, config).await
        }
        None => serve_plain(listener, state, config).await,
    }
}

/// A slot under the node's connection cap (shared with the main port), or `None` when
/// the cap is reached (the refusal counted and logged).
fn slot(
    state: &AppState,
    refusals: &mut super::accept::Refusals,
    remote: std::net::SocketAddr,
) -> Option<Slot> {
    match state.connection_slots.clone().try_acquire_owned() {
        Ok(permit) => Some(Slot::new(permit, state.counters.clone())),
        Err(_) => {
            state.counters.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            refusals.log(state.limits.max_connections, remote);
            None
        }
    }
}

/// Plain connections: each socket moves to the node thread and is served at the desk.
async fn serve_plain(listener: TcpListener, state: AppState, config: Arc<RespConfig>) {
    let mut refusals = super::accept::Refusals::default();
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "accepting a Redis connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = slot(&state, &mut refusals, remote) else { continue };
        let _ = tcp.set_nodelay(true);
        let std = match tcp.into_std() {
            Ok(std) => std,
            Err(e) => {
                tracing::debug!(error = %e, "a Redis connection could not be moved");
                continue;
            }
        };
        let (state, config) = (state.clone(), config.clone());
        // Served on the node thread, as WebSocket clients are.
        let node = state.node_runtime.clone();
        node.spawn(async move {
            let tcp = match tokio::net::TcpStream::from_std(std) {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::debug!(error = %e, "a Redis connection could not be moved");
                    return;
                }
            };
            let port = tcp.local_addr().map_or(0, |a| a.port());
            let meter = ReadMeter::default();
            // Its answers through the node thread's ring, when it has one.
            #[cfg(target_os = "linux")]
            if let Some(ring) = crate::server::ring::Ring::local() {
                let io = Metered::new(ring.adopt(tcp), state.read_budget.clone(), meter.clone())
                    .keeping(slot);
                conn::serve(io, port, meter, state, config, conn::Route::Desk).await;
                return;
            }
            let io = Metered::new(tcp, state.read_budget.clone(), meter.clone()).keeping(slot);
            conn::serve(io, port, meter, state, config, conn::Route::Desk).await;
        });
    }
}

/// TLS connections ([`crate::tls::TlsListener`]: handshakes bounded in number and
/// time). The TLS session lives in the stream, so a connection stays on the server's
/// runtime and reaches the node through its inbox, as a WebSocket client over TLS does.
async fn serve_tls(
    mut listener: crate::tls::TlsListener,
    state: AppState,
    config: Arc<RespConfig>,
) {
    use axum::serve::Listener;
    let mut refusals = super::accept::Refusals::default();
    loop {
        let (tls, remote) = listener.accept().await;
        let Some(slot) = slot(&state, &mut refusals, remote.addr) else { continue };
        let (state, config) = (state.clone(), config.clone());
        tokio::spawn(async move {
            let port = tls.get_ref().0.local_addr().map_or(0, |a| a.port());
            let meter = ReadMeter::default();
            let io = Metered::new(tls, state.read_budget.clone(), meter.clone()).keeping(slot);
            conn::serve(io, port, meter, state, config, conn::Route::Inbox).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_map_to_collections() {
        let config = RespConfig::default();
        assert_eq!(config.database(0), Some("default"));
        assert_eq!(config.database(15), Some("db15"));
        assert_eq!(config.database(16), None);
        let config = RespConfig::with_mapping(&["1=users".into(), "20 = logs".into()]).unwrap();
        assert_eq!(config.database(1), Some("users"));
        assert_eq!(config.database(20), Some("logs"));
        assert_eq!(config.database(17), None, "a gap is not a database");
        assert_eq!(config.index_of("logs"), Some(20));
        for bad in ["x", "1", "=a", "2000=a", "1="] {
            assert!(RespConfig::with_mapping(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
