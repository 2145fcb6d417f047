//! The Python `authenticate` hook as a core [`AuthHook`]: the core calls it from a
//! tokio task; the call is handed to the asyncio loop (`call_soon_threadsafe` on
//! the blocking pool, with the GIL), where `switchboard._auth.run_hook` awaits the
//! user's function under the auth timeout and answers through [`AuthReply`].
//! A refusal, an exception, a timeout or a loop that is gone all deny.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use pyo3::prelude::*;
use switchboard::auth::AuthFuture;
use switchboard::{AuthHook, AuthRequest, Identity};
use tokio::sync::oneshot;

use crate::convert::from_py;
use crate::runtime;

/// The hook's Python side: the user's function, and the loop it runs on (known
/// once the server starts).
#[derive(Debug)]
pub(crate) struct PyAuthHook {
    func: Py<PyAny>,
    timeout: Duration,
    call_soon_threadsafe: OnceLock<Py<PyAny>>,
}

impl PyAuthHook {
    pub(crate) fn new(func: Py<PyAny>, timeout: Duration) -> Arc<PyAuthHook> {
        Arc::new(PyAuthHook {
            func,
            timeout,
            call_soon_threadsafe: OnceLock::new(),
        })
    }

    /// Binds the hook to the loop of the server that uses it (the first wins).
    pub(crate) fn bind_loop(&self, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        let call = event_loop.getattr("call_soon_threadsafe")?.unbind();
        let _ = self.call_soon_threadsafe.set(call);
        Ok(())
    }
}

/// Shares the hook with the core (which wants an owned `AuthHook`).
#[derive(Debug, Clone)]
pub(crate) struct SharedHook(pub(crate) Arc<PyAuthHook>);

impl AuthHook for SharedHook {
    fn authenticate(&self, request: AuthRequest) -> AuthFuture {
        let (tx, rx) = oneshot::channel();
        let hook = self.0.clone();
        runtime::spawn_blocking(move || {
            let _ = Python::try_attach(|py| {
                let Some(call) = hook.call_soon_threadsafe.get() else {
                    return; // not started: `tx` drops, the request is denied
                };
                let reply = AuthReply {
                    tx: Mutex::new(Some(tx)),
                };
                let scheduled = (|| -> PyResult<()> {
                    let run = py.import("switchboard._auth")?.getattr("run_hook")?;
                    let req = (
                        request.token,
                        request.origin,
                        request.ip.map(|ip| ip.to_string()),
                        request.path,
                    );
                    call.bind(py).call1((
                        run,
                        hook.func.bind(py),
                        req,
                        hook.timeout.as_secs_f64(),
                        Bound::new(py, reply)?,
                    ))?;
                    Ok(())
                })();
                if let Err(e) = scheduled {
                    e.print(py);
                }
            });
        });
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

/// Called once on the loop with the hook's `Identity` (or `None` to deny).
#[pyclass(frozen, module = "switchboard._native")]
#[derive(Debug)]
pub(crate) struct AuthReply {
    tx: Mutex<Option<oneshot::Sender<Option<Identity>>>>,
}

#[pymethods]
impl AuthReply {
    /// Converts an `Identity`-like object (attributes `user_id`, `rooms`,
    /// `metadata`, `expires_at`) and answers the core; `None` denies.
    fn __call__(&self, identity: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let answer = if identity.is_none() {
            None
        } else {
            match to_identity(identity) {
                Ok(id) => Some(id),
                Err(e) => {
                    let _ = tx.send(None);
                    return Err(e);
                }
            }
        };
        let _ = tx.send(answer);
        Ok(())
    }
}

fn to_identity(obj: &Bound<'_, PyAny>) -> PyResult<Identity> {
    let user_id: String = obj.getattr("user_id")?.extract()?;
    let mut identity = Identity::new(user_id);
    let rooms = obj.getattr("rooms")?;
    if !rooms.is_none() {
        identity.rooms = Some(rooms.extract()?);
    }
    let metadata = obj.getattr("metadata")?;
    if !metadata.is_none() {
        identity.metadata = Some(from_py(&metadata)?);
    }
    let expires = obj.getattr("expires_at")?;
    if !expires.is_none() {
        // A datetime, or seconds since the epoch.
        let secs: f64 = if expires.hasattr("timestamp")? {
            expires.call_method0("timestamp")?.extract()?
        } else {
            expires.extract()?
        };
        identity.expires_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0)));
    }
    Ok(identity)
}
