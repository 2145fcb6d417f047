//! The client: options → `ClientBuilder`, and [`NativeClient`], whose methods
//! queue a message at once (as the core client does) and return an awaitable of
//! its reply. Awaiting is optional; cancelling the awaitable stops waiting and
//! does not un-send.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use switchboard::{Client, ClientBuilder, Reply};
use tokio::sync::oneshot;

use crate::convert::{config_error, duration, from_py, Json, Outcome};
use crate::feed::{EventFeed, ALL_KINDS};
use crate::runtime::{self, awaitable, check_pid};

const OPTION_NAMES: &[&str] = &[
    "user_id",
    "token",
    "token_provider",
    "display_name",
    "metadata",
    "subprotocol",
    "encoding",
    "reconnect_base",
    "reconnect_max",
    "max_reconnect_attempts",
    "stable_after",
    "heartbeat_interval",
    "heartbeat_timeout",
    "connect_timeout",
    "queue_max_messages",
    "queue_max_bytes",
    "max_in_flight",
    "max_message_bytes",
    "event_capacity",
];

/// A Python token provider, asked on the loop before every connection attempt.
#[derive(Debug)]
struct TokenProvider {
    func: Py<PyAny>,
    call_soon_threadsafe: OnceLock<Py<PyAny>>,
}

impl TokenProvider {
    fn fetch(self: &Arc<Self>) -> oneshot::Receiver<Result<String, String>> {
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        runtime::spawn_blocking(move || {
            let _ = Python::try_attach(|py| {
                let Some(call) = this.call_soon_threadsafe.get() else {
                    return;
                };
                let reply = TokenReply {
                    tx: Mutex::new(Some(tx)),
                };
                let scheduled = (|| -> PyResult<()> {
                    let run = py
                        .import("switchboard._auth")?
                        .getattr("run_token_provider")?;
                    call.bind(py)
                        .call1((run, this.func.bind(py), Bound::new(py, reply)?))?;
                    Ok(())
                })();
                if let Err(e) = scheduled {
                    e.print(py);
                }
            });
        });
        rx
    }
}

/// Answers one token request: a `str`, or an error message.
#[pyclass(frozen, module = "switchboard._native")]
#[derive(Debug)]
pub(crate) struct TokenReply {
    tx: Mutex<Option<oneshot::Sender<Result<String, String>>>>,
}

#[pymethods]
impl TokenReply {
    #[pyo3(signature = (token, error=None))]
    fn __call__(&self, token: Option<String>, error: Option<String>) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(match (token, error) {
                (Some(t), None) => Ok(t),
                (_, e) => Err(e.unwrap_or_else(|| "the token provider returned no token".into())),
            });
        }
    }
}

fn build(
    url: String,
    opts: Option<&Bound<'_, PyDict>>,
) -> PyResult<(ClientBuilder, Option<Arc<TokenProvider>>)> {
    let mut b = Client::builder(url);
    let mut provider = None;
    let Some(opts) = opts else {
        return Ok((b, None));
    };
    for key in opts.keys() {
        let key: String = key.extract()?;
        if !OPTION_NAMES.contains(&key.as_str()) {
            return Err(PyTypeError::new_err(format!(
                "unknown client option {key:?}"
            )));
        }
    }
    let get = |k: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        Ok(opts.get_item(k)?.filter(|v| !v.is_none()))
    };
    let secs =
        |k: &str| -> PyResult<Option<Duration>> { get(k)?.map(|v| duration(&v, k)).transpose() };
    if let Some(v) = get("user_id")? {
        b = b.user_id(v.extract::<String>()?);
    }
    match (get("token")?, get("token_provider")?) {
        (Some(_), Some(_)) => {
            return Err(config_error("token and token_provider exclude each other"))
        }
        (Some(t), None) => b = b.token(t.extract::<String>()?),
        (None, Some(f)) => {
            if !f.is_callable() {
                return Err(PyTypeError::new_err("token_provider: a callable"));
            }
            let p = Arc::new(TokenProvider {
                func: f.unbind(),
                call_soon_threadsafe: OnceLock::new(),
            });
            let fetcher = p.clone();
            b = b.token_provider(move || {
                let rx = fetcher.fetch();
                async move {
                    match rx.await {
                        Ok(Ok(t)) => Ok(t),
                        Ok(Err(e)) => {
                            Err(switchboard::Error::Config(format!("token provider: {e}")))
                        }
                        Err(_) => Err(switchboard::Error::Closed(
                            "the event loop of the token provider is gone".into(),
                        )),
                    }
                }
            });
            provider = Some(p);
        }
        (None, None) => {}
    }
    if let Some(v) = get("display_name")? {
        b = b.display_name(v.extract::<String>()?);
    }
    if let Some(v) = get("metadata")? {
        b = b.metadata(from_py(&v)?);
    }
    if let Some(v) = opts.get_item("subprotocol")? {
        // `None` given explicitly offers no subprotocol.
        b = b.subprotocol(v.extract::<Option<String>>()?.as_deref());
    }
    if let Some(v) = get("encoding")? {
        b = b.encoding(match v.extract::<String>()?.as_str() {
            "json" => switchboard::Encoding::Json,
            "msgpack" => switchboard::Encoding::MessagePack,
            other => {
                return Err(crate::convert::config_error(&format!(
                    "encoding: \"json\" or \"msgpack\", not {other:?}"
                )))
            }
        });
    }
    let base = secs("reconnect_base")?;
    let max = secs("reconnect_max")?;
    if base.is_some() || max.is_some() {
        b = b.reconnect_backoff(
            base.unwrap_or(Duration::from_secs(1)),
            max.unwrap_or(Duration::from_secs(30)),
        );
    }
    if let Some(v) = opts.get_item("max_reconnect_attempts")? {
        b = b.max_reconnect_attempts(v.extract::<Option<u32>>()?);
    }
    if let Some(d) = secs("stable_after")? {
        b = b.stable_after(d);
    }
    if let Some(d) = secs("heartbeat_interval")? {
        b = b.heartbeat_interval(d);
    }
    if let Some(d) = secs("heartbeat_timeout")? {
        b = b.heartbeat_timeout(d);
    }
    if let Some(d) = secs("connect_timeout")? {
        b = b.connect_timeout(d);
    }
    let qm = get("queue_max_messages")?
        .map(|v| v.extract::<usize>())
        .transpose()?;
    let qb = get("queue_max_bytes")?
        .map(|v| v.extract::<usize>())
        .transpose()?;
    if qm.is_some() || qb.is_some() {
        b = b.queue_limits(qm.unwrap_or(256), qb.unwrap_or(1024 * 1024));
    }
    if let Some(v) = get("max_in_flight")? {
        b = b.max_in_flight(v.extract()?);
    }
    if let Some(v) = get("max_message_bytes")? {
        b = b.max_message_bytes(v.extract()?);
    }
    if let Some(v) = get("event_capacity")? {
        b = b.event_capacity(v.extract()?);
    }
    Ok((b, provider))
}

/// Connects a client; resolves once the server's `connected` arrived.
#[pyfunction]
#[pyo3(signature = (url, event_loop, **options))]
pub(crate) fn connect_client<'py>(
    py: Python<'py>,
    url: String,
    event_loop: &Bound<'py, PyAny>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (builder, provider) = build(url, options)?;
    if let Some(p) = provider {
        let _ = p
            .call_soon_threadsafe
            .set(event_loop.getattr("call_soon_threadsafe")?.unbind());
    }
    let capacity = options
        .and_then(|o| o.get_item("event_capacity").ok().flatten())
        .and_then(|v| v.extract::<usize>().ok())
        .unwrap_or(1024);
    awaitable(py, async move {
        Ok(Outcome(builder.connect().await.map(|client| {
            NativeClient {
                client,
                pid: runtime::pid(),
                capacity,
            }
        })))
    })
}

/// A connected client (it reconnects and resumes in the background).
#[pyclass(frozen, module = "switchboard._native")]
#[derive(Debug)]
pub(crate) struct NativeClient {
    client: Client,
    pid: u32,
    capacity: usize,
}

impl NativeClient {
    /// Queues a message with `send` (after the fork check) and returns an
    /// awaitable of its reply.
    fn reply<'py, T, U>(
        &self,
        py: Python<'py>,
        send: impl FnOnce(&Client) -> PyResult<Reply<T>>,
        map: fn(T) -> U,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        T: Send + 'static,
        U: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        check_pid(self.pid, "client")?;
        let reply = send(&self.client)?;
        awaitable(py, async move { Ok(Outcome(reply.await.map(map))) })
    }

    /// `offer`, `answer` and `candidate`: a JSON payload to one peer.
    fn signal<'py>(
        &self,
        py: Python<'py>,
        to: &str,
        payload: &Bound<'py, PyAny>,
        send: fn(&Client, &str, Value) -> Reply<()>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.reply(py, |c| Ok(send(c, to, from_py(payload)?)), unit)
    }

    fn check(&self) -> PyResult<()> {
        check_pid(self.pid, "client")
    }
}

fn unit(_: ()) -> Json {
    Json(Value::Null)
}

#[pymethods]
impl NativeClient {
    /// Joins a room; resolves with the `room-info` message (a dict).
    fn join<'py>(&self, py: Python<'py>, room_id: &str) -> PyResult<Bound<'py, PyAny>> {
        self.reply(py, |c| Ok(c.join(room_id)), Json)
    }

    /// Leaves a room.
    fn leave<'py>(&self, py: Python<'py>, room_id: &str) -> PyResult<Bound<'py, PyAny>> {
        self.reply(py, |c| Ok(c.leave(room_id)), unit)
    }

    /// Leaves every room.
    fn leave_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.reply(py, |c| Ok(c.leave_all()), unit)
    }

    fn send_offer<'py>(
        &self,
        py: Python<'py>,
        to: &str,
        sdp: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.signal(py, to, sdp, |c, to, v| c.send_offer(to, v))
    }

    fn send_answer<'py>(
        &self,
        py: Python<'py>,
        to: &str,
        sdp: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.signal(py, to, sdp, |c, to, v| c.send_answer(to, v))
    }

    fn send_candidate<'py>(
        &self,
        py: Python<'py>,
        to: &str,
        candidate: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.signal(py, to, candidate, |c, to, v| c.send_candidate(to, v))
    }

    /// Application data to one peer (`to`) or every other peer of the room.
    #[pyo3(signature = (data, to=None))]
    fn send<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        to: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.reply(py, |c| Ok(c.send(to, from_py(data)?)), unit)
    }

    fn chat<'py>(&self, py: Python<'py>, content: &str) -> PyResult<Bound<'py, PyAny>> {
        self.reply(py, |c| Ok(c.chat(content)), unit)
    }

    /// Any client message as a dict with its `type`; resolves with the
    /// `room-info` for a join, `None` otherwise.
    fn send_json<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.reply(py, |c| Ok(c.send_json(from_py(message)?)), Json)
    }

    /// A feed of the client's events. The first call gets every event since
    /// connect; later calls, events from then on.
    #[pyo3(signature = (mask=ALL_KINDS))]
    fn subscribe(&self, mask: u32) -> PyResult<EventFeed> {
        self.check()?;
        Ok(EventFeed::new(self.client.events(), mask, self.capacity))
    }

    /// Closes for good (flushes what is queued for up to 1 s, then 1000).
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check()?;
        let client = self.client.clone();
        awaitable(py, async move {
            client.close().await;
            Ok(Json(Value::Null))
        })
    }

    #[getter]
    fn session_id(&self) -> Option<String> {
        self.client.session_id()
    }

    #[getter]
    fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    #[getter]
    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn rooms(&self) -> Vec<String> {
        self.client.rooms()
    }

    /// Messages queued or awaiting their acknowledgement.
    #[getter]
    fn pending(&self) -> usize {
        self.client.pending()
    }
}
