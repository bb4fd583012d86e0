//! The one tokio runtime of the process, and the two ways Python waits on it.
//!
//! Every client connection, watch and in-process node of the module runs on one
//! multi-thread runtime, created on first use and shared with `pyo3-async-runtimes` so
//! that awaitables run there too. A call waits either
//!
//! - **blocking** ([`block`]): the calling thread drives the future with the GIL
//!   released, so other Python threads run meanwhile; every [`SIGNAL_SLICE`] it takes
//!   the GIL back for a moment to let Ctrl-C through; or
//! - **as an awaitable** ([`awaitable`]): the future is spawned on the runtime and
//!   completes an asyncio future on the caller's event loop (`call_soon_threadsafe`).
//!
//! Both apply the call's timeout the same way ([`within`]).

use crate::errors;
use pyo3::{prelude::*, IntoPyObjectExt};
use std::{future::Future, sync::OnceLock, time::Duration};
use tokio::runtime::Runtime;

/// How long a blocking wait runs between checks for Python signals (Ctrl-C).
pub const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// The process-wide runtime, created on first use.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .thread_name("dhrt-py")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime (out of threads or memory?)");
        rt
    })
}

/// Registers [`runtime`] with `pyo3-async-runtimes` (once; later calls do nothing).
fn share_with_asyncio() -> &'static Runtime {
    static SHARED: OnceLock<()> = OnceLock::new();
    let rt = runtime();
    SHARED.get_or_init(|| {
        let _ = pyo3_async_runtimes::tokio::init_with_runtime(rt);
    });
    rt
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

/// Runs `fut` on the runtime and waits for it with the GIL released.
pub fn block<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send,
    T: Send,
{
    let rt = runtime();
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

/// Spawns `fut` on the runtime and returns an asyncio awaitable of its result.
pub fn awaitable<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    share_with_asyncio();
    pyo3_async_runtimes::tokio::future_into_py(py, fut)
}

/// Runs `fut` blocking, or returns it as an awaitable when `asynchronous`: the one
/// switch between `dhrt.Client` and `dhrt.AsyncClient`.
pub fn run<T, F>(py: Python<'_>, asynchronous: bool, fut: F) -> PyResult<Py<PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if asynchronous {
        awaitable(py, fut).map(Bound::unbind)
    } else {
        let value = block(py, fut)?;
        value.into_py_any(py)
    }
}
