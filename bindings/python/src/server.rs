//! The server side: options → `ServerConfig` (every option of the Rust builder,
//! checked before any I/O), and [`NativeHub`]: a started server, or a hub
//! without a listener for route mode (`route.rs`), both on one kit `Edge`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use switchboard::{AuthConfig, Edge, Hub, JwtConfig, Server, ServerConfig, ServerHandle};

use crate::auth::{PyAuthHook, SharedHook};
use crate::convert::{config_error, duration, from_py, ok, to_py, Json, Outcome};
use crate::feed::{EventFeed, FeedShared, ALL_KINDS};
use crate::runtime::{self, awaitable, check_pid};

/// Validated server options. Built from keyword arguments; does no I/O.
#[pyclass(frozen, module = "switchboard._native")]
#[derive(Debug)]
pub(crate) struct ServerOptions {
    config: ServerConfig,
    hook: Option<Arc<PyAuthHook>>,
}

fn get<'py>(opts: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(opts.get_item(key)?.filter(|v| !v.is_none()))
}

fn strings(v: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if v.is_instance_of::<pyo3::types::PyString>() {
        // A lone string is a comma-separated list, as on the command line.
        let s: String = v.extract()?;
        return Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect());
    }
    v.extract()
        .map_err(|_| PyTypeError::new_err(format!("{name}: a list of str")))
}

fn count<T: for<'a, 'py> FromPyObject<'a, 'py>>(v: &Bound<'_, PyAny>, name: &str) -> PyResult<T> {
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!("{name}: an int")));
    }
    v.extract()
        .map_err(|_| PyValueError::new_err(format!("{name}: a non-negative int in range")))
}

/// A PEM key: `str`/`bytes` content, or an `os.PathLike` naming a file.
fn pem(v: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(s.into_bytes());
    }
    if v.hasattr("__fspath__")? {
        let path: PathBuf = v.extract()?;
        return std::fs::read(&path)
            .map_err(|e| config_error(&format!("{name}: reading {}: {e}", path.display())));
    }
    Err(PyTypeError::new_err(format!(
        "{name}: PEM as str or bytes, or a path"
    )))
}

/// Every option name the server accepts (the Python layer's keyword arguments).
const OPTION_NAMES: &[&str] = &[
    "listen",
    "path",
    "max_message_bytes",
    "max_conns",
    "max_conns_per_ip",
    "max_pending_per_ip",
    "max_pending",
    "conn_rate_per_ip",
    "conn_burst_per_ip",
    "ipv6_prefix",
    "max_room_size",
    "max_rooms_per_session",
    "max_metadata_bytes",
    "max_away_per_ip",
    "max_away_per_user",
    "max_away_sessions",
    "away_replay_budget_bytes",
    "rate_limit_burst",
    "rate_limit_rps",
    "heartbeat_interval",
    "heartbeat_timeout",
    "resume_window",
    "replay_buffer_messages",
    "replay_buffer_bytes",
    "outbound_queue_bytes",
    "outbound_budget_bytes",
    "allowed_origins",
    "handshake_timeout",
    "http_write_timeout",
    "drain_timeout",
    "drain_retry_after",
    "event_buffer",
    "auth_tokens",
    "jwt_secret",
    "jwt_public_key",
    "jwt_audience",
    "jwt_issuer",
    "jwt_leeway",
    "authenticate",
    "auth_timeout",
    "tls_cert",
    "tls_key",
    "trusted_proxies",
    "turn_secret",
    "turn_urls",
    "turn_ttl",
    "redis_url",
    "redis_ca_cert",
    "demo",
    "serve_client",
    "app_types",
    "api_key",
];

#[pymethods]
impl ServerOptions {
    /// Checks every option (types, ranges, combinations) and builds the config.
    #[new]
    #[pyo3(signature = (**options))]
    fn new(py: Python<'_>, options: Option<&Bound<'_, PyDict>>) -> PyResult<ServerOptions> {
        let empty = PyDict::new(py);
        let opts = options.unwrap_or(&empty);
        for key in opts.keys() {
            let key: String = key.extract()?;
            if !OPTION_NAMES.contains(&key.as_str()) {
                return Err(PyTypeError::new_err(format!(
                    "unknown server option {key:?}"
                )));
            }
        }
        let mut c = ServerConfig::default();
        macro_rules! counts {
            ($($name:ident),*) => {$(
                if let Some(v) = get(opts, stringify!($name))? {
                    c.$name = count(&v, stringify!($name))?;
                }
            )*};
        }
        counts!(
            max_message_bytes,
            max_conns,
            max_conns_per_ip,
            max_pending_per_ip,
            max_pending,
            conn_rate_per_ip,
            conn_burst_per_ip,
            ipv6_prefix,
            max_room_size,
            max_rooms_per_session,
            max_metadata_bytes,
            max_away_per_ip,
            max_away_per_user,
            max_away_sessions,
            away_replay_budget_bytes,
            rate_limit_burst,
            rate_limit_rps,
            replay_buffer_messages,
            replay_buffer_bytes,
            outbound_queue_bytes,
            outbound_budget_bytes,
            event_buffer
        );
        macro_rules! durations {
            ($($name:ident),*) => {$(
                if let Some(v) = get(opts, stringify!($name))? {
                    c.$name = duration(&v, stringify!($name))?;
                }
            )*};
        }
        durations!(
            heartbeat_interval,
            heartbeat_timeout,
            resume_window,
            handshake_timeout,
            http_write_timeout,
            drain_timeout,
            drain_retry_after,
            auth_timeout
        );
        if let Some(v) = get(opts, "listen")? {
            c.listen = v.extract()?;
        }
        if let Some(v) = get(opts, "path")? {
            c.path = v.extract()?;
        }
        if let Some(v) = get(opts, "allowed_origins")? {
            c.allowed_origins = strings(&v, "allowed_origins")?;
        }
        if let Some(v) = get(opts, "api_key")? {
            c.api_key = Some(switchboard::config::ApiKey::new(v.extract::<String>()?));
        }
        if let Some(v) = get(opts, "app_types")? {
            c.app_types = strings(&v, "app_types")?;
        }
        if let Some(v) = get(opts, "trusted_proxies")? {
            c.trusted_proxies = strings(&v, "trusted_proxies")?;
        }
        if let Some(v) = get(opts, "redis_url")? {
            c.redis_url = Some(v.extract()?);
        }
        if let Some(v) = get(opts, "redis_ca_cert")? {
            c.redis_ca_cert = Some(v.extract()?);
        }
        if let Some(v) = get(opts, "demo")? {
            c.demo = v.is_truthy()?;
        }
        if let Some(v) = get(opts, "serve_client")? {
            c.serve_client = v.is_truthy()?;
        }

        // TLS: both files or neither.
        match (get(opts, "tls_cert")?, get(opts, "tls_key")?) {
            (Some(cert), Some(key)) => {
                c.tls = Some(switchboard::TlsConfig {
                    cert_path: cert.extract()?,
                    key_path: key.extract()?,
                });
            }
            (None, None) => {}
            _ => return Err(config_error("tls_cert and tls_key go together")),
        }

        // TURN: a secret and at least one URL.
        let turn_ttl = match get(opts, "turn_ttl")? {
            Some(v) => duration(&v, "turn_ttl")?,
            None => Duration::from_secs(3600),
        };
        match (get(opts, "turn_secret")?, get(opts, "turn_urls")?) {
            (Some(secret), Some(urls)) => {
                let urls = strings(&urls, "turn_urls")?;
                if urls.is_empty() {
                    return Err(config_error("turn_urls needs at least one URL"));
                }
                c.turn = Some(switchboard::TurnConfig {
                    secret: secret.extract()?,
                    urls,
                    ttl: turn_ttl,
                });
            }
            (None, None) => {}
            _ => return Err(config_error("turn_secret and turn_urls go together")),
        }

        // Authentication: at most one way.
        let mut hook = None;
        let mut ways = Vec::new();
        if let Some(v) = get(opts, "auth_tokens")? {
            let table: HashMap<String, String> = v.extract().map_err(|_| {
                PyTypeError::new_err("auth_tokens: a dict of token (str) to user id (str)")
            })?;
            c.auth = AuthConfig::Tokens(table);
            ways.push("auth_tokens");
        }
        let secret = get(opts, "jwt_secret")?;
        let public_key = get(opts, "jwt_public_key")?;
        let jwt_settings = ["jwt_audience", "jwt_issuer", "jwt_leeway"];
        if secret.is_some() || public_key.is_some() {
            let mut jwt = match (secret, public_key) {
                (Some(s), None) => JwtConfig::hs256(pem(&s, "jwt_secret")?),
                (None, Some(k)) => JwtConfig::public_key_pem(pem(&k, "jwt_public_key")?),
                _ => {
                    return Err(config_error(
                        "jwt_secret and jwt_public_key exclude each other",
                    ))
                }
            };
            if let Some(v) = get(opts, "jwt_audience")? {
                jwt.audience = Some(v.extract()?);
            }
            if let Some(v) = get(opts, "jwt_issuer")? {
                jwt.issuer = Some(v.extract()?);
            }
            if let Some(v) = get(opts, "jwt_leeway")? {
                jwt.leeway = duration(&v, "jwt_leeway")?;
            }
            c.auth = AuthConfig::Jwt(jwt);
            ways.push("jwt");
        } else {
            for name in jwt_settings {
                if get(opts, name)?.is_some() {
                    return Err(config_error(&format!(
                        "{name} needs jwt_secret or jwt_public_key"
                    )));
                }
            }
        }
        if let Some(f) = get(opts, "authenticate")? {
            if !f.is_callable() {
                return Err(PyTypeError::new_err("authenticate: a callable"));
            }
            let h = PyAuthHook::new(f.unbind(), c.auth_timeout);
            c.auth = AuthConfig::Hook(Arc::new(SharedHook(h.clone())));
            hook = Some(h);
            ways.push("authenticate");
        }
        if ways.len() > 1 {
            return Err(config_error(&format!(
                "choose one way to authenticate, not {}",
                ways.join(" and ")
            )));
        }

        let config = Server::builder()
            .config(c)
            .build()
            .map_err(|e| config_error(&e.to_string()))?
            .config()
            .clone();
        Ok(ServerOptions { config, hook })
    }

    /// The address to bind.
    #[getter]
    fn listen(&self) -> &str {
        &self.config.listen
    }

    /// The WebSocket path.
    #[getter]
    fn path(&self) -> &str {
        &self.config.path
    }

    /// Seconds an idle graceful drain may take.
    #[getter]
    fn drain_timeout(&self) -> f64 {
        self.config.drain_timeout.as_secs_f64()
    }

    /// Largest accepted message in bytes.
    #[getter]
    fn max_message_bytes(&self) -> usize {
        self.config.max_message_bytes
    }

    /// Heartbeat interval plus timeout, in seconds: the longest a write may take
    /// before a route-mode connection is dropped as stuck.
    #[getter]
    fn heartbeat_timeout(&self) -> f64 {
        self.config.heartbeat_timeout.as_secs_f64()
    }

    /// Whether auth is configured.
    #[getter]
    fn auth(&self) -> bool {
        self.config.auth.is_on()
    }
}

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
