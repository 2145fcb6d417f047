//! The tokio runtime behind every Python object, made fork-safe, and the bridge
//! from Rust futures to asyncio awaitables (pyo3-async-runtimes' generic bridge
//! over this runtime, so cancelling the awaitable drops the Rust future).
//!
//! Fork: a forked child has the parent's memory but none of its threads, so the
//! parent's runtime is dead there (its workers do not exist). The runtime is
//! therefore keyed by process id: the first use in a new process builds a fresh
//! one and leaks the dead one (dropping it would join threads that do not exist).
//!
//! Exit: an `atexit` hook ([`shutdown`]) stops the runtime before the interpreter
//! finalizes, waiting (without the GIL) for its threads to finish what they do.
//! Otherwise a worker still handing a result to Python while the interpreter
//! tears down aborts the process (`PyGILState_Release: thread state … must be
//! current`) or crashes it.
//! This is what makes `gunicorn --preload` work: the master imports, the workers
//! start servers. Objects created before the fork stay with the parent and refuse
//! to work in the child (see [`check_pid`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{ContextExt, JoinError, Runtime as BridgeRuntime};
use pyo3_async_runtimes::TaskLocals;
use tokio::runtime::{Handle, Runtime};

use crate::convert::closed_error;

/// This process's runtime, with the pid it was built in. A child of a fork finds
/// its parent's pid here and builds its own; the parent's is leaked. `None` in
/// the runtime slot after [`shutdown`]: the handle stays, spawns are dropped.
static CURRENT: Mutex<Option<(u32, Handle, Option<Runtime>)>> = Mutex::new(None);

/// How long the exit hook waits for the runtime's threads.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// Threads of the blocking pool: they only carry hand-offs to Python (results,
/// event wake-ups, auth calls), each short; past the bound hand-offs wait in
/// tokio's queue.
const MAX_BLOCKING_THREADS: usize = 8;

fn build() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("switchboard")
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(Duration::from_secs(5))
        .build()
        .expect("building the tokio runtime")
}

/// This process's runtime handle (built on first use, and again after a fork).
///
/// On the runtime's own threads the current handle is used without a lock. Other
/// callers hold the GIL, and so does the thread that forks: the lock is never
/// held across a fork.
pub(crate) fn handle() -> Handle {
    if let Ok(h) = Handle::try_current() {
        return h;
    }
    let pid = std::process::id();
    let mut current = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    match &*current {
        Some((owner, handle, _)) if *owner == pid => handle.clone(),
        _ => {
            // The previous runtime (if any) belongs to the parent: leak it.
            if let Some((_, _, Some(dead))) = current.take() {
                Box::leak(Box::new(dead));
            }
            let rt = build();
            let handle = rt.handle().clone();
            *current = Some((pid, handle.clone(), Some(rt)));
            handle
        }
    }
}

/// Stops this process's runtime and waits for its threads (the `atexit` hook
/// registered at import; see the module notes). Later spawns are dropped.
#[pyfunction]
pub(crate) fn shutdown(py: Python<'_>) {
    let pid = std::process::id();
    let rt = {
        let mut current = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
        match current.as_mut() {
            Some((owner, _, rt)) if *owner == pid => rt.take(),
            _ => None,
        }
    };
    if let Some(rt) = rt {
        // Without the GIL: a worker may need it to finish its hand-off.
        py.detach(move || rt.shutdown_timeout(EXIT_GRACE));
    }
}

/// The process id objects are stamped with, to refuse use after a fork.
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// Fails when an object made in another process (before a fork) is used here.
pub(crate) fn check_pid(owner: u32, what: &str) -> PyResult<()> {
    if owner == pid() {
        Ok(())
    } else {
        Err(closed_error(&format!(
            "this {what} was created in process {owner} before a fork; create a new one in this process"
        )))
    }
}

/// Spawns onto this process's runtime.
pub(crate) fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(fut)
}

/// Runs a blocking closure (a hand-off to Python) on the blocking pool.
pub(crate) fn spawn_blocking<F>(f: F)
where
    F: FnOnce() + Send + 'static,
{
    drop(handle().spawn_blocking(f));
}

/// The runtime as pyo3-async-runtimes sees it.
#[derive(Debug)]
pub(crate) struct Tokio;

/// Join errors of the bridge's tasks.
#[derive(Debug)]
pub(crate) struct TaskJoinError(tokio::task::JoinError);

impl JoinError for TaskJoinError {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }
    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

type BoxedJoin = Pin<Box<dyn Future<Output = Result<(), TaskJoinError>> + Send>>;

impl BridgeRuntime for Tokio {
    type JoinError = TaskJoinError;
    type JoinHandle = BoxedJoin;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let h = spawn(fut);
        Box::pin(async move { h.await.map_err(TaskJoinError) })
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        let h = handle().spawn_blocking(f);
        Box::pin(async move { h.await.map_err(TaskJoinError) })
    }
}

tokio::task_local! {
    static TASK_LOCALS: std::cell::OnceCell<TaskLocals>;
}

impl ContextExt for Tokio {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = std::cell::OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// Turns a Rust future into an asyncio awaitable on the running loop. The future
/// runs on the tokio runtime without the GIL; its result is handed to the loop
/// with `call_soon_threadsafe`. Cancelling the awaitable drops the future.
pub(crate) fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<Tokio, _, _>(py, fut)
}
