//! The runtimes of the process, and the two ways Python waits on them.
//!
//! - [`shared`]: a multi-thread tokio runtime, created on first use and registered with
//!   `pyo3-async-runtimes`. In-process nodes run on it (their servers must work while
//!   Python does something else), and so does every `AsyncClient`: a call spawns its
//!   future there and returns an awaitable, which completes an asyncio future on the
//!   caller's event loop (`call_soon_threadsafe`) — no thread pool.
//! - [`driven`]: a current-thread runtime for blocking clients, driven by whichever
//!   Python thread is waiting on it. The caller writes its request, waits on the socket
//!   and reads the answer itself: no hand-off to a worker thread and back, which on a
//!   busy machine was most of a blocking call's time (docs/benchmarks.md). Several
//!   threads may wait at once; one drives the connections for all.
//!
//! A blocking wait ([`block`]) releases the GIL, so other Python threads run meanwhile,
//! and every [`SIGNAL_SLICE`] takes it back for a moment to let Ctrl-C through. Both
//! kinds of call apply their timeout the same way ([`within`]).

use crate::errors;
use pyo3::{prelude::*, IntoPyObjectExt};
use std::{future::Future, sync::OnceLock, time::Duration};
use tokio::runtime::Runtime;

/// How long a blocking wait runs between checks for Python signals (Ctrl-C).
pub const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// The multi-thread runtime: in-process nodes and asyncio clients.
pub fn shared() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("dhrt-py")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime (out of threads or memory?)")
    });
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        let _ = pyo3_async_runtimes::tokio::init_with_runtime(rt);
    });
    rt
}

/// The current-thread runtime of blocking clients, driven by the threads that wait.
pub fn driven() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime (out of memory?)")
    })
}

/// `fut`, failing with `dhrt.TimeoutError` when it takes longer than `timeout`.
pub async fn within<T>(
    timeout: Option<Duration>,
    fut: impl Future<Output = PyResult<T>>,
) -> PyResult<T> {
    match timeout {
        Some(limit) => {
            tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| Err(errors::timed_out(limit)))
        }
        None => fut.await,
    }
}

/// Runs `fut` on `rt` and waits for it with the GIL released.
pub fn block<T, F>(py: Python<'_>, rt: &Runtime, fut: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send,
    T: Send,
{
    let mut fut = std::pin::pin!(fut);
    loop {
        let slice = py.detach(|| {
            rt.block_on(async { tokio::time::timeout(SIGNAL_SLICE, fut.as_mut()).await })
        });
        match slice {
            Ok(done) => return done,
            Err(_) => py.check_signals()?,
        }
    }
}

/// Runs `fut` as an asyncio awaitable when `asynchronous` (on [`shared`]), else blocks
/// on it (on [`driven`]): the one switch between `dhrt.AsyncClient` and `dhrt.Client`.
pub fn run<T, F>(py: Python<'_>, asynchronous: bool, fut: F) -> PyResult<Py<PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if asynchronous {
        shared();
        pyo3_async_runtimes::tokio::future_into_py(py, fut).map(Bound::unbind)
    } else {
        block(py, driven(), fut)?.into_py_any(py)
    }
}
