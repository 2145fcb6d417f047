//! Route mode: one WebSocket of a host framework (Starlette/FastAPI) served by
//! the connection kit. This layer only converts: the request facts go to
//! `Edge::admit`, frames go to the kit's connection, the outbox comes back as
//! batches. Admission, limits, trusted proxies, violations and the protocol's
//! messages are the kit's (`switchboard::edge`).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use switchboard::edge::{
    EdgeConnection, Encoding, Liveness, PathFields, UpgradeRequest, Violation, Wire,
};
use switchboard::hub::{Next, Outbox};
use switchboard::protocol::Frame;

use crate::runtime::{self, awaitable, check_pid};
use crate::server::NativeHub;

/// Admits one route-mode WebSocket: `peer` is the socket's address, `target` the
/// path with its query, `headers` every request header. Resolves with
/// `(101, subprotocol, connection)`, or `(status, [(header, value)], None)`
/// when the kit refuses the upgrade.
#[pyfunction]
#[pyo3(signature = (hub, peer, target, headers, path_fields=None))]
pub(crate) fn open_route<'py>(
    py: Python<'py>,
    hub: &Bound<'py, NativeHub>,
    peer: Option<&str>,
    target: &str,
    headers: Vec<(String, String)>,
    path_fields: Option<(Option<String>, Option<String>)>,
) -> PyResult<Bound<'py, PyAny>> {
    let hub = hub.get();
    hub.check()?;
    let peer: Option<IpAddr> = peer.and_then(|s| s.parse().ok());
    let mut request = UpgradeRequest::new(peer, target);
    // The app's router matched a template (`/signaling/{room_id}/{user_id}`).
    request.path_fields = path_fields.map(|(room_id, user_id)| PathFields { room_id, user_id });
    request.headers(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let edge = hub.edge.clone();
    awaitable(py, async move {
        Ok(match edge.admit(&request).await {
            Err(refused) => Opened::Refused(refused.status, refused.headers),
            Ok(admitted) => {
                let subprotocol = admitted.subprotocol();
                let encoding = admitted.encoding();
                let conn = admitted.open(edge.hub(), Liveness::Host);
                Opened::Open(
                    subprotocol,
                    Box::new(RouteConnection {
                        outbox: conn.outbox().clone(),
                        encoding,
                        client_id: conn.client_id(),
                        conn: Mutex::new(Some(conn)),
                        pid: runtime::pid(),
                    }),
                )
            }
        })
    })
}

/// What `open_route` resolves with.
#[derive(Debug)]
enum Opened {
    Open(Option<&'static str>, Box<RouteConnection>),
    Refused(u16, &'static [(&'static str, &'static str)]),
}

impl<'py> IntoPyObject<'py> for Opened {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Opened::Open(subprotocol, conn) => {
                let conn = Bound::new(py, *conn)?;
                Ok((101u16, subprotocol, conn).into_pyobject(py)?.into_any())
            }
            Opened::Refused(status, headers) => {
                let headers: Vec<(&str, &str)> = headers.to_vec();
                Ok((status, headers, py.None()).into_pyobject(py)?.into_any())
            }
        }
    }
}

/// One route-mode WebSocket attached to the hub. The Python side runs a receive
/// loop (`handle_text`) and a send loop (`next_batch`), and calls `finish`.
#[pyclass(frozen, module = "switchboard._native")]
#[derive(Debug)]
pub(crate) struct RouteConnection {
    conn: Mutex<Option<EdgeConnection>>,
    outbox: Arc<Outbox>,
    encoding: Encoding,
    client_id: String,
    pid: u32,
}

impl RouteConnection {
    fn with(&self, f: impl FnOnce(&mut EdgeConnection)) {
        // The kit may start hub timers (resume window, auth): they need the runtime.
        let rt = runtime::handle();
        let _entered = rt.enter();
        if let Some(conn) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            f(conn);
        }
    }
}

#[pymethods]
impl RouteConnection {
    /// This connection's `clientId`.
    #[getter]
    fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Handles one inbound text frame. Never raises for bad input: the kit
    /// answers with `error` or a close request (1009 when too big).
    fn handle_text(&self, py: Python<'_>, text: &str) -> PyResult<()> {
        check_pid(self.pid, "connection")?;
        py.detach(|| self.with(|conn| conn.text(text)));
        Ok(())
    }

    /// Handles one inbound binary frame: a message on the MessagePack
    /// subprotocol, a 1003 close on JSON connections.
    fn handle_bytes(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        check_pid(self.pid, "connection")?;
        py.detach(|| self.with(|conn| conn.binary(data)));
        Ok(())
    }

    /// A violation the ASGI layer saw: 1003 (binary frame), 1009 (too big),
    /// 1002 (protocol error).
    fn close_for(&self, code: u16) -> PyResult<()> {
        let violation = Violation::from_code(code)
            .ok_or_else(|| PyValueError::new_err("close_for takes 1002, 1003 or 1009"))?;
        self.with(|conn| conn.violation(violation));
        Ok(())
    }

    /// Waits for what to write next: a list of frames (`str` for JSON, `bytes`
    /// for MessagePack), or `(code, reason)` for the close to send (after which
    /// nothing more is written).
    fn next_batch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        check_pid(self.pid, "connection")?;
        let outbox = self.outbox.clone();
        let encoding = self.encoding;
        awaitable(py, async move {
            let mut batch: Vec<Frame> = Vec::new();
            Ok(match outbox.next(&mut batch).await {
                Next::Frames => {
                    Batch::Frames(batch.into_iter().map(|f| encoding.wire(f)).collect())
                }
                Next::Close(req) => Batch::Close(req.code, req.reason),
            })
        })
    }

    /// Ends the connection: `client_close` is the close code the client sent, or
    /// `None` when it ended without a close frame (network cut: the session stays
    /// resumable). Idempotent.
    #[pyo3(signature = (client_close=None))]
    fn finish(&self, py: Python<'_>, client_close: Option<u16>) {
        py.detach(|| {
            let rt = runtime::handle();
            let _entered = rt.enter();
            let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(conn) = conn {
                conn.finish(client_close);
            }
        });
    }
}

impl Drop for RouteConnection {
    fn drop(&mut self) {
        // Dropped without `finish`: an abnormal end; it may start the
        // resume-window timer, which needs the runtime.
        let rt = runtime::handle();
        let _entered = rt.enter();
        self.conn
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

/// What `next_batch` resolves with.
#[derive(Debug)]
enum Batch {
    Frames(Vec<Wire>),
    Close(u16, &'static str),
}

impl<'py> IntoPyObject<'py> for Batch {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Batch::Frames(frames) => {
                let list = PyList::empty(py);
                for frame in &frames {
                    match frame {
                        Wire::Text(text) => list.append(text.as_str())?,
                        Wire::Binary(bytes) => list.append(PyBytes::new(py, bytes))?,
                    }
                }
                Ok(list.into_any())
            }
            Batch::Close(code, reason) => Ok((code, reason).into_pyobject(py)?.into_any()),
        }
    }
}
