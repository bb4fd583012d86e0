//! `dhrt._dhrt.Node`: a real dhrt node running inside the Python process.
//!
//! The node is the one `dhrt serve` runs ([`dhrt::server::launch`]): its server tasks
//! run on the module's multi-thread runtime ([`crate::runtime::shared`]) and its state machine on a thread of its own. It
//! listens on 127.0.0.1 (port 0 picks a free one), in memory or on a data dir, with
//! TLS when given a certificate and key.
//! `dhrt.LocalCluster` starts several, and `python -m dhrt serve` one.
//!
//! [`Node::kill`] stops it at once — no hand-off, no goodbye: the other nodes find out
//! by failure detection, as after a crash (data already committed on a data dir stays).
//! [`Node::leave`] leaves gracefully, as `dhrt serve` does on SIGTERM.

use crate::{errors, runtime};
use dhrt::server::{
    self,
    launch::{launch, Storage},
    security::{SecurityOptions, TlsFiles},
    ServeOptions, Server,
};
use dhrt_core::NodeId;
use pyo3::prelude::*;
use std::{path::PathBuf, sync::Mutex, time::Duration};

/// A node running in this process.
#[pyclass(frozen, module = "dhrt._dhrt")]
pub struct Node {
    server: Mutex<Option<Server>>,
    addr: String,
    id: u64,
    storage: String,
}

#[pymethods]
impl Node {
    /// Starts a node and returns once it listens. `data_dir` None keeps it in memory;
    /// `id` names it unless the data dir already does (restarts keep their identity).
    #[staticmethod]
    #[pyo3(signature = (
        host="127.0.0.1".to_string(), port=0, data_dir=None, join=Vec::new(), replicas=3,
        vnodes=dhrt_core::ring::DEFAULT_VNODES, max_value=16 * 1024 * 1024, id=None,
        min_free_mb=64, leave_timeout=30.0, advertise=None, admin_token_file=None,
        tls_cert=None, tls_key=None, tls_ca=None, tls_client_auth=false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        py: Python<'_>,
        host: String,
        port: u16,
        data_dir: Option<PathBuf>,
        join: Vec<String>,
        replicas: usize,
        vnodes: usize,
        max_value: usize,
        id: Option<u64>,
        min_free_mb: u64,
        leave_timeout: f64,
        advertise: Option<String>,
        admin_token_file: Option<PathBuf>,
        tls_cert: Option<PathBuf>,
        tls_key: Option<PathBuf>,
        tls_ca: Option<PathBuf>,
        tls_client_auth: bool,
    ) -> PyResult<Node> {
        if !(leave_timeout.is_finite() && leave_timeout >= 0.0) {
            return Err(errors::invalid("leave_timeout must be a number of seconds >= 0"));
        }
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => {
                Some(TlsFiles { cert, key, ca: tls_ca, client_auth: tls_client_auth })
            }
            (None, None) if tls_ca.is_none() && !tls_client_auth => None,
            _ => {
                return Err(errors::invalid(
                    "TLS needs both tls_cert and tls_key (tls_ca and tls_client_auth only go with them)",
                ))
            }
        };
        let opts = ServeOptions {
            host,
            port,
            advertise,
            join: join.iter().map(|a| dhrt::client::normalize_addr(a)).collect(),
            replicas,
            vnodes,
            max_value_bytes: max_value,
            leave_timeout: Duration::from_secs_f64(leave_timeout),
            security: SecurityOptions { tls, admin_token_file, ..SecurityOptions::default() },
            ..ServeOptions::default()
        };
        let storage = match data_dir {
            Some(path) => {
                Storage::Dir { path, min_free_bytes: min_free_mb.saturating_mul(1 << 20) }
            }
            None => Storage::Memory,
        };
        runtime::block(py, runtime::shared(), async move {
            let started = async {
                let bound = server::bind(&opts).await?;
                let addr = bound.advertise.clone();
                let node = launch(bound, &opts, &storage, id.map(NodeId))?;
                Ok::<_, server::ServeError>((addr, node))
            };
            let (addr, node) = started.await.map_err(|e| errors::node_error(e.to_string()))?;
            Ok(Node {
                server: Mutex::new(Some(node.server)),
                addr,
                id: node.id.0,
                storage: node.storage,
            })
        })
    }

    /// Where clients and peers reach it: `host:port`.
    #[getter]
    fn addr(&self) -> &str {
        &self.addr
    }

    /// Its node id.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// Where its data lives, for people: `in memory` or `in DIR`.
    #[getter]
    fn storage(&self) -> &str {
        &self.storage
    }

    /// Whether it is still running.
    #[getter]
    fn running(&self) -> bool {
        self.server.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Stops it at once, as a crash would (no hand-off, no goodbye). Does nothing when
    /// it already stopped.
    fn kill(&self, py: Python<'_>) -> PyResult<()> {
        let Some(mut server) = self.take() else { return Ok(()) };
        runtime::block(py, runtime::shared(), async move {
            server.stop().await;
            Ok(())
        })
    }

    /// Leaves the cluster gracefully (hands its ranges off, says goodbye, flushes) and
    /// stops. Returns whether every range was handed off. Does nothing (returns False)
    /// when it already stopped.
    fn leave(&self, py: Python<'_>) -> PyResult<bool> {
        let Some(server) = self.take() else { return Ok(false) };
        runtime::block(py, runtime::shared(), async move {
            let outcome = server.leave().await;
            match outcome.flush_error {
                Some(e) => Err(errors::node_error(format!("the final flush failed: {e}"))),
                None => Ok(outcome.handed_off),
            }
        })
    }

    fn __repr__(&self) -> String {
        let state = if self.running() { "running" } else { "stopped" };
        format!("<dhrt node {:016x} at {} {}, {state}>", self.id, self.addr, self.storage)
    }
}

impl Node {
    fn take(&self) -> Option<Server> {
        self.server.lock().ok().and_then(|mut s| s.take())
    }
}

/// Sends the nodes' logs to stderr, filtered by `filter` (`info`, `debug`,
/// `dhrt=trace`...). Only the first call in a process has an effect.
#[pyfunction]
pub fn init_logs(filter: &str) -> PyResult<()> {
    dhrt::server::launch::init_logs(filter).map_err(errors::invalid)
}
