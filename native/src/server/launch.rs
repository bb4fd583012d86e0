//! Starting a whole node — identity, storage and server — from a bound listener.
//!
//! `dhrt serve` does this once per process; an embedding host (the Python package's
//! `LocalCluster`) does it for several nodes inside its own process, and restarts them.
//! Both go through [`launch`], so a node started either way opens its data dir, keeps
//! its identity and rejoins through its saved peers the same way.
//!
//! [`launch`] must be called inside a tokio runtime: the server's tasks are spawned on
//! it. [`init_logs`] sets up what a node process prints.

use super::{driver::Ephemeral, Bound, ServeError, ServeOptions, Server};
use crate::store::{MemFirstStore, NodeDb, Reads, RedbOptions, RedbStore};
use dhrt_core::{node::Node, store::MemStore, NodeId};
use std::{path::PathBuf, time::Instant};

/// Where a node keeps its data.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Everything in RAM: nothing is written to disk, all is lost when the node stops.
    Memory,
    /// A data dir: one redb file per collection plus `node.redb` (identity, state,
    /// peers, hints).
    Dir {
        /// The directory (created when missing).
        path: PathBuf,
        /// Writes are refused when less than this many bytes would stay free.
        min_free_bytes: u64,
    },
    /// A data dir with every store setting (reserve, open files, collection cap).
    Tuned {
        /// The directory (created when missing).
        path: PathBuf,
        /// The store's settings.
        options: RedbOptions,
    },
}

/// A node that [`launch`] started.
pub struct Launched {
    /// The node's id: from `node.redb` for a data dir seen before, else the one asked
    /// for, else a random one.
    pub id: NodeId,
    /// The running server.
    pub server: Server,
    /// Where the data lives, for people: `in memory` or `in DIR`.
    pub storage: String,
}

/// Starts a node on `bound` with `storage`. `id` names the node when the storage does
/// not already (a data dir remembers its node's id, which wins). A node on a data dir
/// rejoins through the peers it saved when `opts.join` is empty.
pub fn launch(
    bound: Bound,
    opts: &ServeOptions,
    storage: &Storage,
    id: Option<NodeId>,
) -> Result<Launched, ServeError> {
    let id = id.unwrap_or_else(|| NodeId(super::random_u64()));
    match storage {
        Storage::Memory => {
            let config = super::node_config(opts, id, &bound.advertise);
            let node = Node::new(config, MemStore::new())?;
            let server = super::start(bound, node, Ephemeral, opts, opts.join.clone())?;
            Ok(Launched { id, server, storage: "in memory".into() })
        }
        Storage::Dir { path, min_free_bytes } => {
            let options =
                RedbOptions { min_free_bytes: *min_free_bytes, ..RedbOptions::memory_first() };
            launch_persisted(bound, opts, path, options, id)
        }
        Storage::Tuned { path, options } => {
            launch_persisted(bound, opts, path, options.clone(), id)
        }
    }
}

/// Opens the data dir: the node's identity and state from `node.redb`, the collections
/// from their files; rejoins through the saved peers when no `join` is given.
fn launch_persisted(
    bound: Bound,
    opts: &ServeOptions,
    dir: &std::path::Path,
    options: RedbOptions,
    id: NodeId,
) -> Result<Launched, ServeError> {
    let in_dir =
        |e: dhrt_core::store::StoreError| ServeError::Other(format!("{}: {e}", dir.display()));
    let db = NodeDb::open(dir).map_err(in_dir)?;
    let id = match db.node_id().map_err(in_dir)? {
        Some(saved) => saved,
        None => {
            db.set_node_id(id).map_err(in_dir)?;
            id
        }
    };
    let state = db.state().map_err(in_dir)?;
    let hints = db.hints().map_err(in_dir)?;
    let peers = if opts.join.is_empty() { db.peers().map_err(in_dir)? } else { opts.join.clone() };
    let started = Instant::now();
    let config = super::node_config(opts, id, &bound.advertise);
    let server = match options.reads {
        Reads::Memory => {
            let store = MemFirstStore::open(dir, options).map_err(in_dir)?;
            let node = node_over(config, store, state, hints, started)?;
            super::start(bound, node, db, opts, peers.clone())?
        }
        Reads::Disk => {
            let store = RedbStore::open(dir, options).map_err(in_dir)?;
            let node = node_over(config, store, state, hints, started)?;
            super::start(bound, node, db, opts, peers.clone())?
        }
    };
    if !peers.is_empty() && opts.join.is_empty() {
        tracing::info!(?peers, "rejoining through the members known before the restart");
    }
    Ok(Launched { id, server, storage: format!("in {}", dir.display()) })
}

/// The node over an opened store: its state, the hints it kept, its trees built.
fn node_over<S: dhrt_core::store::Store>(
    config: dhrt_core::node::NodeConfig,
    store: S,
    state: dhrt_core::node::NodeState,
    hints: Vec<(NodeId, dhrt_core::node::hints::Hint)>,
    started: Instant,
) -> Result<Node<S>, ServeError> {
    let opened = started.elapsed();
    let mut node = Node::with_state(config, store, state)?;
    if !hints.is_empty() {
        tracing::info!(hints = hints.len(), "hints for other nodes restored");
        node.restore_hints(super::driver::Clock::default().now(), hints);
    }
    let stats = node.stats();
    tracing::info!(
        keys = stats.keys,
        collections = stats.collections,
        open_ms = opened.as_millis() as u64,
        trees_ms = (started.elapsed() - opened).as_millis() as u64,
        "data dir opened"
    );
    Ok(node)
}

/// Sends logs to stderr (coloured only on a terminal), filtered by `filter` (`info`,
/// `debug`, `dhrt=trace`...). Only the first call in a process installs the logger; a
/// filter that does not parse is an error that says so.
pub fn init_logs(filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}
