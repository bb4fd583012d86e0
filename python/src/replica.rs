//! `dhrt._dhrt.Replica`: a local copy of a collection ([`dhrt::client::Replica`]) for
//! Python, read without asking any node.
//!
//! The copy is kept by the client's light peer: caught up by Merkle sync, then current
//! through a watch. An `AsyncClient`'s copy follows the cluster in the background (its
//! runtime's threads run the peer). A blocking `Client`'s connections run only while a
//! Python thread waits on them ([`crate::runtime::driven`]), so every read here first
//! lets the client take in what has arrived, then reads — a read sees every change that
//! reached this process before it.

use crate::{
    args::{Key, Timeout},
    runtime::{self, block, within},
};
use dhrt::client as native;
use dhrt_core::light::StreamStatus;
use pyo3::prelude::*;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// A page of the copy: `([(key, value)], cursor or None)`.
type PageTuple = (Vec<(crate::args::Blob, crate::args::Blob)>, Option<crate::args::Blob>);

/// A read-only local copy of one collection (see `dhrt.Replica`).
#[pyclass(frozen, module = "dhrt._dhrt")]
pub struct Replica {
    /// The copy; `None` once closed.
    inner: Mutex<Option<Arc<native::Replica>>>,
    asynchronous: bool,
}

impl Replica {
    /// Wraps a copy opened by a client of the given kind.
    pub fn new(inner: native::Replica, asynchronous: bool) -> Self {
        Replica { inner: Mutex::new(Some(Arc::new(inner))), asynchronous }
    }

    /// The open copy.
    fn copy(&self) -> PyResult<Arc<native::Replica>> {
        let open = self.inner.lock().ok().and_then(|c| c.clone());
        open.ok_or_else(|| {
            crate::errors::client_error(native::ClientError::Connection(
                "the replica is closed: open it again with client.replica()".into(),
            ))
        })
    }

    /// Runs `read` on the copy once the client has taken in what arrived.
    fn read<T: Send>(
        &self,
        py: Python<'_>,
        read: impl FnOnce(&native::Replica) -> PyResult<T> + Send,
    ) -> PyResult<T> {
        let inner = self.copy()?;
        if self.asynchronous {
            return read(&inner);
        }
        block(py, runtime::driven(), async move {
            // One turn of the driven runtime: the connections read what is waiting.
            tokio::task::yield_now().await;
            read(&inner)
        })
    }
}

#[pymethods]
impl Replica {
    /// The collection copied.
    #[getter]
    fn collection(&self) -> PyResult<String> {
        Ok(self.copy()?.collection().to_string())
    }

    /// Closes the copy: it stops following the cluster and forgets what it holds.
    fn close(&self) {
        let copy = self.inner.lock().ok().and_then(|mut c| c.take());
        drop(copy);
    }

    /// Whether the copy was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.lock().map(|c| c.is_none()).unwrap_or(true)
    }

    /// The live value of `key`, or None.
    fn get(&self, py: Python<'_>, key: Key) -> PyResult<Option<crate::args::Blob>> {
        self.read(py, move |r| Ok(r.get(&key.0).map(crate::args::Blob)))
    }

    /// Live entries held.
    fn len(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |r| Ok(r.len()))
    }

    /// Up to `limit` live pairs after `cursor`, and the next page's cursor.
    #[pyo3(signature = (cursor, limit))]
    fn scan(&self, py: Python<'_>, cursor: Option<Vec<u8>>, limit: usize) -> PyResult<PageTuple> {
        self.read(py, move |r| {
            let page = r.scan(cursor.as_deref(), limit).map_err(crate::errors::client_error)?;
            let items = page
                .items
                .into_iter()
                .map(|(k, v)| (crate::args::Blob(k), crate::args::Blob(v)))
                .collect();
            Ok((items, page.cursor.map(crate::args::Blob)))
        })
    }

    /// The copy's state: `"syncing"`, `"synced"`, `"interrupted"`, `"live"` or
    /// `"ended"`.
    #[getter]
    fn status(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.read(py, |r| {
            Ok(match r.status() {
                StreamStatus::Live => "live",
                StreamStatus::Interrupted { .. } => "interrupted",
                StreamStatus::Syncing { .. } => "syncing",
                StreamStatus::Synced { .. } => "synced",
                StreamStatus::Ended { .. } => "ended",
            })
        })
    }

    /// Waits until the copy has caught up with the cluster (at most `timeout`).
    #[pyo3(signature = (timeout))]
    fn wait_synced(&self, py: Python<'_>, timeout: Option<Timeout>) -> PyResult<Py<PyAny>> {
        let inner = self.copy()?;
        runtime::run(py, self.asynchronous, async move {
            let wait = async {
                let limit = Duration::from_secs(24 * 60 * 60);
                inner.synced(limit).await.map_err(crate::errors::client_error)
            };
            within(timeout.map(|t| t.0), wait).await
        })
    }
}
