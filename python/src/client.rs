//! `dhrt._dhrt.Client` and `Watch`: the Rust [`dhrt::client::Client`] for Python (its
//! local copies are [`crate::replica`]).
//!
//! One native client serves both Python clients: made with `asynchronous=False` its
//! calls block with the GIL released (`dhrt.Client`), its connections living on the
//! runtime the waiting threads drive; with `asynchronous=True` they return awaitables
//! (`dhrt.AsyncClient`) and its connections live on the multi-thread runtime — see
//! [`crate::runtime`]. Arguments arrive already
//! converted and checked ([`crate::args`]); answers go back as plain Python values
//! (`bytes`, tuples, a JSON string for stats) that the pure-Python layer dresses up.

use crate::{
    args::{check_batch, check_value, Blob, Collection, Key, Level, Settings, Timeout, Ttl, Value},
    errors,
    runtime::{self, within},
};
use bytes::Bytes;
use dhrt::client::{self as native, ClientError};
use dhrt_core::proto::client::CollectionView;
use pyo3::prelude::*;
use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::{Mutex, Notify, OnceCell};

/// How long opening a connection may take inside a call whose own timeout is longer:
/// the native client's per-request limit is set this high so that the per-call
/// timeout (`within`) is the one that decides.
const NATIVE_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

/// A change seen by a watch: `(collection, key, value or None, ts)`.
type EventTuple = (String, Blob, Option<Blob>, u64);

/// A ring member: `(id, addr, tokens, status)`.
type MemberTuple = (u64, String, Vec<u64>, String);

/// A scan page: `([(key, value)], cursor or None)`.
type PageTuple = (Vec<(Blob, Blob)>, Option<Blob>);

/// A collection as described by the node: `(name, defined, placement, replicas, keys,
/// bytes, consistency or None, ttl_ms or None, max_keys or None, max_bytes or None,
/// (replicas or None, select, zone_label or None), moving or None)`; the consistency is
/// its name (`"one"`, `"quorum"`, `"all"`) or a number's digits, the triple is the
/// layout the settings ask for, and `moving` is [`moving`]'s.
type ViewTuple = (
    String,
    bool,
    String,
    u32,
    u64,
    u64,
    Option<String>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    (Option<u32>, BTreeMap<String, String>, Option<String>),
    Option<&'static str>,
);

fn view_tuple(v: CollectionView) -> ViewTuple {
    let moving = moving(&v);
    let s = v.settings;
    (
        v.name,
        v.defined,
        v.placement,
        v.replicas,
        v.keys,
        v.bytes,
        s.consistency.map(|c| c.to_string()),
        s.ttl_ms,
        s.max_keys,
        s.max_bytes,
        (s.replicas, s.select, s.zone_label),
        moving,
    )
}

/// How far the collection is from the layout its settings ask for: the phase of the
/// move under way (`announced`, `copying`, `joint`), `pending` when the settings ask
/// for another layout than the one in use and no move started yet (as the driving
/// node decides it, `node::moves`), None when it uses that layout.
fn moving(v: &CollectionView) -> Option<&'static str> {
    match &v.layout.moving {
        Some(m) => Some(m.phase.as_str()),
        None => (v.settings.layout() != v.layout.current).then_some("pending"),
    }
}

/// A pipelined, ring-aware client (see `dhrt.Client`). It connects on [`Client::connect`]
/// or on its first call, whichever comes first.
#[pyclass(frozen, module = "dhrt._dhrt")]
pub struct Client {
    link: Arc<Link>,
    max_value: usize,
    asynchronous: bool,
}

/// The native client, once connected.
struct Link {
    seeds: Vec<String>,
    options: native::ConnectOptions,
    limit: Option<Duration>,
    client: OnceCell<native::Client>,
}

impl Link {
    /// The connected client: connects through the seeds on first use (at most `limit`).
    async fn client(&self) -> PyResult<native::Client> {
        if let Some(c) = self.client.get() {
            return Ok(c.clone());
        }
        let connect = || async {
            let seeds: Vec<&str> = self.seeds.iter().map(String::as_str).collect();
            let options = self.options.clone();
            let connect = async {
                native::Client::connect_with_options(&seeds, NATIVE_LIMIT, options)
                    .await
                    .map_err(failed)
            };
            within(self.limit, connect).await
        };
        self.client.get_or_try_init(connect).await.cloned()
    }
}

fn failed(e: ClientError) -> PyErr {
    errors::client_error(e)
}

#[pymethods]
impl Client {
    /// A client of the cluster reached through `seeds`; connecting waits at most
    /// `timeout` seconds. Its calls block, or return awaitables when `asynchronous`.
    /// `token` is presented on every connection it opens. `tls_ca` (a PEM file)
    /// verifies the nodes' TLS certificates and turns TLS on; `wss://` seeds speak TLS
    /// verified against the public roots without it. Nothing is sent yet.
    #[new]
    #[pyo3(signature = (seeds, timeout, max_value, asynchronous=false, token=None, tls_ca=None))]
    fn new(
        seeds: Vec<String>,
        timeout: Option<Timeout>,
        max_value: usize,
        asynchronous: bool,
        token: Option<String>,
        tls_ca: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        if seeds.is_empty() {
            return Err(errors::invalid(
                "give at least one node address, such as ws://127.0.0.1:7453",
            ));
        }
        let options = native::ConnectOptions { token, tls_ca, ..native::ConnectOptions::default() };
        let link = Link { seeds, options, limit: timeout.map(|t| t.0), client: OnceCell::new() };
        Ok(Client { link: Arc::new(link), max_value, asynchronous })
    }

    /// Connects through the first reachable seed and reads the ring (once).
    fn connect(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let link = self.link.clone();
        runtime::run(py, self.asynchronous, async move { link.client().await.map(|_| ()) })
    }

    /// The value of `key`, or None.
    #[pyo3(signature = (collection, key, consistency, timeout))]
    fn get(
        &self,
        py: Python<'_>,
        collection: Collection,
        key: Key,
        consistency: Level,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        self.call(py, timeout, move |c| async move {
            Ok(c.get(&collection.0, key.0, consistency.0).await?.map(Blob))
        })
    }

    /// Writes `key` = `value`; returns the write's timestamp.
    #[pyo3(signature = (collection, key, value, consistency, ttl, timeout))]
    #[allow(clippy::too_many_arguments)]
    fn set(
        &self,
        py: Python<'_>,
        collection: Collection,
        key: Key,
        value: Value,
        consistency: Level,
        ttl: Option<Ttl>,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        check_value(&value, self.max_value)?;
        self.call(py, timeout, move |c| async move {
            let ttl = ttl.map(|t| t.0);
            Ok(c.set(&collection.0, key.0, value.0, consistency.0, ttl).await?.0)
        })
    }

    /// Deletes `key`; returns the delete's timestamp.
    #[pyo3(signature = (collection, key, consistency, timeout))]
    fn delete(
        &self,
        py: Python<'_>,
        collection: Collection,
        key: Key,
        consistency: Level,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        self.call(py, timeout, move |c| async move {
            Ok(c.del(&collection.0, key.0, consistency.0).await?.0)
        })
    }

    /// The values of `keys`, in order (None for each missing key).
    #[pyo3(signature = (collection, keys, consistency, timeout))]
    fn get_many(
        &self,
        py: Python<'_>,
        collection: Collection,
        keys: Vec<Key>,
        consistency: Level,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        let keys: Vec<Bytes> = keys.into_iter().map(|k| k.0).collect();
        check_batch(keys.iter().map(|k| k.len() + 8).sum(), self.max_value)?;
        self.call(py, timeout, move |c| async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let values = c.get_many(&collection.0, keys, consistency.0).await?;
            Ok(values.into_iter().map(|v| v.map(Blob)).collect())
        })
    }

    /// Writes every `(key, value)` of `items` with one timestamp; returns it (None for
    /// no items).
    #[pyo3(signature = (collection, items, consistency, ttl, timeout))]
    #[allow(clippy::too_many_arguments)]
    fn set_many(
        &self,
        py: Python<'_>,
        collection: Collection,
        items: Vec<(Key, Value)>,
        consistency: Level,
        ttl: Option<Ttl>,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        for (_, value) in &items {
            check_value(value, self.max_value)?;
        }
        check_batch(items.iter().map(|(k, v)| k.0.len() + v.0.len() + 16).sum(), self.max_value)?;
        let items: Vec<(Bytes, Bytes)> = items.into_iter().map(|(k, v)| (k.0, v.0)).collect();
        self.call(py, timeout, move |c| async move {
            if items.is_empty() {
                return Ok(None);
            }
            let ttl = ttl.map(|t| t.0);
            Ok(Some(c.set_many(&collection.0, items, consistency.0, ttl).await?.0))
        })
    }

    /// One page of a scan: `([(key, value)], cursor)`; the cursor is None at the end.
    #[pyo3(signature = (collection, cursor, prefix, limit, consistency, timeout))]
    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        py: Python<'_>,
        collection: Collection,
        cursor: Option<Vec<u8>>,
        prefix: Option<Key>,
        limit: u32,
        consistency: Level,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        self.call(py, timeout, move |c| async move {
            let (cursor, prefix) = (cursor.map(Bytes::from), prefix.map(|p| p.0));
            let page = c.scan(&collection.0, cursor, prefix, limit, consistency.0).await?;
            let items = page.items.into_iter().map(|(k, v)| (Blob(k), Blob(v))).collect();
            Ok::<PageTuple, _>((items, page.cursor.map(Blob)))
        })
    }

    /// Subscribes to changes of `collection` (keys starting with `prefix`).
    #[pyo3(signature = (collection, prefix, timeout))]
    fn watch(
        &self,
        py: Python<'_>,
        collection: Collection,
        prefix: Option<Key>,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        let asynchronous = self.asynchronous;
        self.call(py, timeout, move |c| async move {
            let inner = c.watch(&collection.0, prefix.map(|p| p.0)).await?;
            Ok(Watch {
                asynchronous,
                inner: Arc::new(Mutex::new(Some(inner))),
                closed: Arc::new(AtomicBool::new(false)),
                close: Arc::new(Notify::new()),
                interruptions: Arc::default(),
            })
        })
    }

    /// Opens a local copy of `collection` and waits (at most `timeout`) until it has
    /// caught up with the cluster.
    #[pyo3(signature = (collection, timeout))]
    fn replica(
        &self,
        py: Python<'_>,
        collection: Collection,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        let asynchronous = self.asynchronous;
        self.call(py, timeout, move |c| async move {
            let copy = c.replica(&collection.0);
            copy.synced(NATIVE_LIMIT).await?;
            Ok(crate::replica::Replica::new(copy, asynchronous))
        })
    }

    /// The stats of the node at `node` (any connected node when None), as JSON text.
    #[pyo3(signature = (node, timeout))]
    fn stats(
        &self,
        py: Python<'_>,
        node: Option<String>,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        self.call(py, timeout, move |c| async move {
            let stats = c.stats(node.as_deref()).await?;
            serde_json::to_string(&stats).map_err(|e| ClientError::Protocol(e.to_string()))
        })
    }

    /// Gives `collection` the settings named in `settings` (see [`Settings`]); its
    /// description. The node answers `conflict` when it has settings already.
    #[pyo3(signature = (collection, settings, timeout))]
    fn collection_create(
        &self,
        py: Python<'_>,
        collection: Collection,
        settings: Settings,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        let settings = settings.0.apply(&Default::default());
        self.call(py, timeout, move |c| async move {
            Ok(view_tuple(c.collection_create(&collection.0, settings).await?))
        })
    }

    /// Changes the settings named in `change` (None: back to the cluster's default);
    /// the collection's description.
    #[pyo3(signature = (collection, change, timeout))]
    fn collection_alter(
        &self,
        py: Python<'_>,
        collection: Collection,
        change: Settings,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        if change.0.is_empty() {
            return Err(errors::invalid(
                "nothing to change: give consistency, ttl, max_keys, max_bytes, replicas, \
                 select or zone_label (None returns a setting to the cluster's default)",
            ));
        }
        self.call(py, timeout, move |c| async move {
            Ok(view_tuple(c.collection_alter(&collection.0, change.0).await?))
        })
    }

    /// The description of `collection`; the node answers `not_found` when it has
    /// neither settings nor keys.
    #[pyo3(signature = (collection, timeout))]
    fn collection_show(
        &self,
        py: Python<'_>,
        collection: Collection,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        self.call(py, timeout, move |c| async move {
            Ok(view_tuple(c.collection_show(&collection.0).await?))
        })
    }

    /// Every collection with settings or keys, by name: `[description]`.
    #[pyo3(signature = (timeout))]
    fn collection_list(&self, py: Python<'_>, timeout: Option<Timeout>) -> PyResult<Py<PyAny>> {
        self.call(py, timeout, move |c| async move {
            Ok(c.collection_list().await?.into_iter().map(view_tuple).collect::<Vec<_>>())
        })
    }

    /// Deletes every key of `collection` and its settings; how many keys were deleted.
    #[pyo3(signature = (collection, consistency, timeout))]
    fn collection_drop(
        &self,
        py: Python<'_>,
        collection: Collection,
        consistency: Level,
        timeout: Option<Timeout>,
    ) -> PyResult<Py<PyAny>> {
        self.call(py, timeout, move |c| async move {
            c.collection_drop(&collection.0, consistency.0).await
        })
    }

    /// The newest timestamp a node's answer carried to this client (passed with every
    /// request, so its next write is stamped above it), or None before any answer.
    #[getter]
    fn seen(&self) -> Option<u64> {
        self.link.client.get().and_then(|c| c.seen()).map(|t| t.0)
    }

    /// The ring's members: `[(id, addr, tokens, status)]`.
    #[pyo3(signature = (timeout))]
    fn ring(&self, py: Python<'_>, timeout: Option<Timeout>) -> PyResult<Py<PyAny>> {
        self.call(py, timeout, move |c| async move {
            let members = c.ring().await?;
            Ok(members
                .into_iter()
                .map(|m| (m.id.0, m.addr, m.tokens, m.status))
                .collect::<Vec<MemberTuple>>())
        })
    }
}

impl Client {
    /// Runs `op` on the connected client (connecting first if need be) within
    /// `timeout`, blocking or as an awaitable: the shape of every method above.
    fn call<T, F, Fut>(
        &self,
        py: Python<'_>,
        timeout: Option<Timeout>,
        op: F,
    ) -> PyResult<Py<PyAny>>
    where
        F: FnOnce(native::Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ClientError>> + Send,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let link = self.link.clone();
        runtime::run(py, self.asynchronous, async move {
            let call = async {
                let c = link.client().await?;
                op(c).await.map_err(failed)
            };
            within(timeout.map(|t| t.0), call).await
        })
    }
}

/// A subscription to changes (see `dhrt.Watch`). Closing it, or dropping it,
/// unsubscribes.
#[pyclass(frozen, module = "dhrt._dhrt")]
pub struct Watch {
    asynchronous: bool,
    inner: Arc<Mutex<Option<native::Watch>>>,
    closed: Arc<AtomicBool>,
    close: Arc<Notify>,
    /// The native watch's count of interruptions, as of the last `next`.
    interruptions: Arc<AtomicU64>,
}

#[pymethods]
impl Watch {
    /// The next change as `(collection, key, value, ts)`; None once the watch ended (the
    /// node ended it, or it was closed). Raises
    /// `dhrt.TimeoutError` when nothing arrived within `timeout`.
    #[pyo3(signature = (timeout))]
    fn next(&self, py: Python<'_>, timeout: Option<Timeout>) -> PyResult<Py<PyAny>> {
        let (inner, closed, close) = (self.inner.clone(), self.closed.clone(), self.close.clone());
        let interruptions = self.interruptions.clone();
        runtime::run(py, self.asynchronous, async move {
            let next = async {
                // Listen for `close` before looking at the flag, so a close between the
                // two still wakes this call.
                let closing = close.notified();
                tokio::pin!(closing);
                closing.as_mut().enable();
                let mut guard = inner.lock().await;
                let Some(watch) = guard.as_mut().filter(|_| !closed.load(Ordering::Acquire)) else {
                    *guard = None;
                    return Ok(None);
                };
                let event = tokio::select! {
                    event = watch.next() => event,
                    () = closing => Ok(None),
                };
                interruptions.store(watch.interruptions(), Ordering::Relaxed);
                match event {
                    Ok(Some(e)) => Ok(Some((e.collection, Blob(e.key), e.value.map(Blob), e.ts.0))),
                    Ok(None) => {
                        *guard = None;
                        Ok(None)
                    }
                    Err(e) => {
                        *guard = None;
                        Err(failed(e))
                    }
                }
            };
            within::<Option<EventTuple>>(timeout.map(|t| t.0), next).await
        })
    }

    /// Ends the subscription; a `next` waiting in another thread returns None.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.close.notify_waiters();
        if let Ok(mut guard) = self.inner.try_lock() {
            *guard = None;
        }
    }

    /// How many times the watch lost its node (it died, or ended the watch for falling
    /// behind) and was placed on another: changes made in such a gap may be missed.
    #[getter]
    fn interruptions(&self) -> u64 {
        self.interruptions.load(Ordering::Relaxed)
    }

    /// Whether the watch has ended (closed, or ended by the node).
    #[getter]
    fn ended(&self) -> bool {
        self.closed.load(Ordering::Acquire)
            || self.inner.try_lock().map(|g| g.is_none()).unwrap_or(false)
    }
}
