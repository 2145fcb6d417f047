//! The server side: [`NativeHub`], a started server or a hub without a
//! listener for route mode (`route.rs`), both on one kit `Edge`, built from
//! [`ServerOptions`] (`server_options.rs`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use pyo3::prelude::*;
use switchboard::{Edge, Hub, Server, ServerHandle};

use crate::convert::{config_error, from_py, ok, to_py, Json, Outcome};
use crate::feed::{EventFeed, FeedShared, ALL_KINDS};
use crate::runtime::{self, awaitable, check_pid};
pub(crate) use crate::server_options::ServerOptions;

/// A hub with, in server mode, its listener: what `switchboard.Server` and
/// `switchboard.Hub` wrap. Both host modes (the own port and FastAPI routes)
/// serve one [`Edge`], so limits and counts hold across them.
#[pyclass(frozen, module = "switchboard._native")]
#[derive(Debug)]
pub(crate) struct NativeHub {
    pub(crate) edge: Edge,
    handle: Option<ServerHandle>,
    pub(crate) pid: u32,
    feeds: Mutex<Vec<Weak<FeedShared>>>,
}

impl NativeHub {
    fn new(edge: Edge, handle: Option<ServerHandle>) -> NativeHub {
        NativeHub {
            edge,
            handle,
            pid: runtime::pid(),
            feeds: Mutex::new(Vec::new()),
        }
    }

    fn hub(&self) -> &Hub {
        self.edge.hub()
    }

    pub(crate) fn check(&self) -> PyResult<()> {
        check_pid(self.pid, "server")
    }
}

/// Starts a server (binds, then serves in the background).
#[pyfunction]
pub(crate) fn start_server<'py>(
    py: Python<'py>,
    options: &Bound<'py, ServerOptions>,
    event_loop: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let options = options.get();
    if let Some(hook) = &options.hook {
        hook.bind_loop(event_loop)?;
    }
    let config = options.config.clone();
    awaitable(py, async move {
        let server = Server::builder()
            .config(config)
            .build()
            .map_err(|e| config_error(&e.to_string()))?;
        match server.start().await {
            Ok(handle) => ok(NativeHub::new(handle.edge().clone(), Some(handle))),
            Err(e) => Ok(Outcome(Err(e))),
        }
    })
}

/// A hub without a listener, for route mode only.
#[pyfunction]
pub(crate) fn create_hub(
    options: &Bound<'_, ServerOptions>,
    event_loop: &Bound<'_, PyAny>,
) -> PyResult<NativeHub> {
    let options = options.get();
    if let Some(hook) = &options.hook {
        hook.bind_loop(event_loop)?;
    }
    if options.config.tls.is_some() {
        // The host's web server terminates TLS for route mode.
        return Err(config_error(
            "tls_cert/tls_key need a listener: use Server, or TLS in the ASGI server",
        ));
    }
    let _rt = runtime::handle();
    let _entered = _rt.enter();
    // `redis_url` makes this a cluster node, as for a Server.
    let edge = Edge::new(options.config.clone()).map_err(|e| config_error(&e.to_string()))?;
    Ok(NativeHub::new(edge, None))
}

#[pymethods]
impl NativeHub {
    /// `ws://HOST:PORT/PATH` of the listener (`None` for a hub without one).
    #[getter]
    fn url(&self) -> Option<String> {
        self.handle.as_ref().map(|h| h.url().to_owned())
    }

    /// `(host, port)` of the listener.
    #[getter]
    fn address(&self) -> Option<(String, u16)> {
        self.handle.as_ref().map(|h| {
            let a = h.local_addr();
            (a.ip().to_string(), a.port())
        })
    }

    /// Open connections (the listener's and route mode's).
    fn connection_count(&self) -> usize {
        self.edge.connection_count()
    }

    /// A plain endpoint of the kit (`/metrics`, `/health`, `/ready`) as
    /// `(status, content_type, body)`, or `None` for another path.
    fn endpoint(&self, path: &str) -> Option<(u16, &'static str, String)> {
        self.edge
            .endpoint(path)
            .map(|r| (r.status, r.content_type, r.body))
    }

    /// The operator API (`/api/v1/…`) as `(status, content_type, body)`; the
    /// kit checks the key, routes and answers (docs/API.md).
    #[pyo3(signature = (method, path, query, authorization, body))]
    fn api(
        &self,
        py: Python<'_>,
        method: &str,
        path: &str,
        query: Option<&str>,
        authorization: Option<&str>,
        body: &[u8],
    ) -> (u16, &'static str, String) {
        let request = switchboard::edge::ApiRequest {
            method,
            path,
            query,
            authorization,
            body,
        };
        let rt = crate::runtime::handle();
        let reply = py.detach(|| {
            // Kicks and sends may start hub timers: they need the runtime.
            let _entered = rt.enter();
            self.edge.api(&request)
        });
        (reply.status, reply.content_type, reply.body)
    }

    /// Whether a drain has started.
    fn is_draining(&self) -> bool {
        self.hub().is_draining()
    }

    /// A feed of this hub's events (kinds in `mask`), bounded by `event_buffer`.
    #[pyo3(signature = (mask=ALL_KINDS))]
    fn subscribe(&self, mask: u32) -> PyResult<EventFeed> {
        self.check()?;
        let rx = self.hub().subscribe();
        let missed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = missed.clone();
        let stream = futures_util::stream::unfold(rx, move |mut rx| {
            let counter = counter.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(e) => return Some((e, rx)),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            counter.fetch_add(n, Ordering::Relaxed);
                            tracing::warn!(
                                missed = n,
                                "server events dropped: a Python reader fell behind"
                            );
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        let feed = EventFeed::counting(stream, mask, self.hub().config().event_buffer, missed);
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds.retain(|f| f.strong_count() > 0);
        feeds.push(feed.weak());
        Ok(feed)
    }

    /// Sends a message (a dict with a `type`) to one peer of a room.
    fn send<'py>(
        &self,
        py: Python<'py>,
        room_id: String,
        user_id: String,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check()?;
        let message = from_py(message)?;
        let hub = self.hub().clone();
        awaitable(py, async move {
            Ok(Outcome(hub.send(&room_id, &user_id, &message)))
        })
    }

    /// Sends a message to every peer of a room; resolves with how many got it.
    fn broadcast<'py>(
        &self,
        py: Python<'py>,
        room_id: String,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check()?;
        let message = from_py(message)?;
        let hub = self.hub().clone();
        awaitable(
            py,
            async move { Ok(Outcome(hub.broadcast(&room_id, &message))) },
        )
    }

    /// Removes a peer from a room (`user-left` `kicked`, close 4403).
    fn kick<'py>(
        &self,
        py: Python<'py>,
        room_id: String,
        user_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check()?;
        let hub = self.hub().clone();
        awaitable(py, async move { Ok(Outcome(hub.kick(&room_id, &user_id))) })
    }

    /// Puts a connected user into a room, as if it had sent `join`.
    fn join<'py>(
        &self,
        py: Python<'py>,
        user_id: String,
        room_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check()?;
        let hub = self.hub().clone();
        awaitable(py, async move { Ok(Outcome(hub.join(&user_id, &room_id))) })
    }

    /// Takes a user out of a room (`user-left` `leave`); it stays connected.
    fn leave<'py>(
        &self,
        py: Python<'py>,
        user_id: String,
        room_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check()?;
        let hub = self.hub().clone();
        awaitable(
            py,
            async move { Ok(Outcome(hub.leave(&user_id, &room_id))) },
        )
    }

    /// Every room with its peers (JSON: `[{roomId, peers: [...]}, ...]`).
    fn rooms<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let hub = self.hub().clone();
        let rooms = py.detach(move || serde_json::to_value(hub.rooms()));
        to_py(py, &rooms.unwrap_or_default())
    }

    /// The peers of one room (JSON list), or `None` when there is no such room.
    fn peers<'py>(&self, py: Python<'py>, room_id: &str) -> PyResult<Bound<'py, PyAny>> {
        let hub = self.hub().clone();
        let peers = py.detach(move || hub.peers(room_id).map(serde_json::to_value));
        match peers {
            Some(Ok(v)) => to_py(py, &v),
            _ => Ok(py.None().into_bound(py)),
        }
    }

    /// Graceful drain of both the listener and route-mode connections (one
    /// edge), then every event feed ends. Idempotent.
    fn shutdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check()?;
        let edge = self.edge.clone();
        let handle = self.handle.clone();
        let feeds: Vec<_> =
            std::mem::take(&mut *self.feeds.lock().unwrap_or_else(|p| p.into_inner()));
        awaitable(py, async move {
            match &handle {
                Some(h) => h.shutdown().await,
                None => edge.drain().await,
            }
            // Every connection is closed: the feeds take the events already
            // produced (the drain's user-left, disconnected), then end.
            for f in feeds.iter().filter_map(Weak::upgrade) {
                f.finish();
            }
            Ok(Json(serde_json::Value::Null))
        })
    }
}
