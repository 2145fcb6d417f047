//! Attach mode's native half: an adapter of the core's connection kit. The
//! TypeScript layer owns the `ws` socket on the application's `http.Server`; it
//! hands the request facts to [`Admission`] (the kit admits or refuses) and drives
//! a [`NativeConnection`]: inbound text frames in, outbox batches out (one pending
//! `next()` at a time, so the outbox bound holds and nothing queues up unbounded
//! in JS), pings and drops when the kit's liveness clock says so.

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{within_runtime_if_available, Buffer, PromiseRaw};
use napi::Env;
use napi_derive::napi;
use switchboard::edge::{
    Admitted, EdgeConnection, Encoding, Liveness, Refused, Tick, Violation, Wire,
};
use switchboard::hub::{Hub, Next, Outbox};

/// The facts of one upgrade request, as `http` gives them.
#[napi(object)]
#[derive(Debug, Default)]
pub struct UpgradeFacts {
    /// The socket's remote address.
    pub peer: Option<String>,
    /// `req.url`: the path with its query.
    pub target: String,
    /// `req.rawHeaders`: name, value, name, value, …
    pub headers: Vec<String>,
    /// The attachment's path list (fixed paths and `{roomId}`/`{userId}`
    /// templates) the target is matched against.
    pub paths: String,
}

/// The kit's decision on one upgrade: `status` 101 (then `open()`), or the HTTP
/// refusal to write (`status`, `reason`, `headers`, `body`).
#[napi]
#[derive(Debug)]
pub struct Admission {
    outcome: Mutex<Result<Option<(Admitted, Hub)>, Refused>>,
    subprotocol: Option<&'static str>,
}

impl Admission {
    pub(crate) fn new(outcome: Result<Admitted, Refused>, hub: &Hub) -> Admission {
        let subprotocol = outcome.as_ref().ok().and_then(Admitted::subprotocol);
        Admission {
            outcome: Mutex::new(outcome.map(|a| Some((a, hub.clone())))),
            subprotocol,
        }
    }

    fn refused(&self) -> Option<Refused> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .err()
            .copied()
    }
}

#[napi]
impl Admission {
    /// 101 when admitted, else the refusal's HTTP status.
    #[napi(getter)]
    pub fn status(&self) -> u32 {
        self.refused().map_or(101, |r| u32::from(r.status))
    }

    /// The reason phrase of a refusal.
    #[napi(getter)]
    pub fn reason(&self) -> String {
        self.refused()
            .map_or("Switching Protocols", |r| r.reason_phrase())
            .to_owned()
    }

    /// Extra headers of a refusal: name, value, name, value, …
    #[napi(getter)]
    pub fn headers(&self) -> Vec<String> {
        self.refused()
            .map(|r| {
                r.headers
                    .iter()
                    .flat_map(|(k, v)| [k.to_string(), v.to_string()])
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The body of a refusal.
    #[napi(getter)]
    pub fn body(&self) -> String {
        self.refused()
            .map(|r| r.body)
            .unwrap_or_default()
            .to_owned()
    }

    /// The subprotocol to select in the 101 answer.
    #[napi(getter)]
    pub fn subprotocol(&self) -> Option<String> {
        self.subprotocol.map(str::to_owned)
    }

    /// Opens the hub connection of an admitted upgrade (once); `null` when refused
    /// or already opened.
    #[napi]
    pub fn open(&self) -> Option<NativeConnection> {
        let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        let (admitted, hub) = outcome.as_mut().ok()?.take()?;
        // Liveness: the TypeScript layer pings when `tick()` says so.
        let conn = within_runtime_if_available(|| admitted.open(&hub, Liveness::Pings));
        Some(NativeConnection::new(conn))
    }

    /// Gives the connection slot back without opening (the socket went away
    /// before the upgrade finished). Idempotent.
    #[napi]
    pub fn release(&self) {
        let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(slot) = outcome.as_mut() {
            slot.take();
        }
    }
}

/// What to do next with the socket.
#[napi(object)]
pub struct OutboxBatch {
    /// Text frames to write, in order (then wait until they are flushed).
    pub frames: Option<Vec<String>>,
    /// Binary frames (MessagePack connections), likewise.
    pub binary_frames: Option<Vec<Buffer>>,
    /// Send this close code and end the connection.
    pub close_code: Option<u32>,
    pub close_reason: Option<String>,
}

impl std::fmt::Debug for OutboxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxBatch")
            .field("frames", &self.frames.as_ref().map(Vec::len))
            .field("binary_frames", &self.binary_frames.as_ref().map(Vec::len))
            .field("close_code", &self.close_code)
            .finish_non_exhaustive()
    }
}

/// A hub connection driven from JS.
#[napi]
#[derive(Debug)]
pub struct NativeConnection {
    conn: Arc<Mutex<Option<EdgeConnection>>>,
    outbox: Arc<Outbox>,
    encoding: Encoding,
    client_id: String,
}

impl NativeConnection {
    fn new(conn: EdgeConnection) -> Self {
        NativeConnection {
            outbox: conn.outbox().clone(),
            encoding: conn.encoding(),
            client_id: conn.client_id(),
            conn: Arc::new(Mutex::new(Some(conn))),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut EdgeConnection) -> T) -> Option<T> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // The kit may start hub timers (resume window, auth): they need the runtime.
        within_runtime_if_available(|| guard.as_mut().map(f))
    }
}

#[napi]
impl NativeConnection {
    #[napi(getter)]
    pub fn client_id(&self) -> String {
        self.client_id.clone()
    }

    /// One inbound text frame (the kit checks its size and isolates panics).
    #[napi]
    pub fn handle_text(&self, text: String) {
        self.with(|c| c.text(&text));
    }

    /// One inbound binary frame: a message on the MessagePack subprotocol, a
    /// 1003 close on JSON connections.
    #[napi]
    pub fn handle_binary(&self, data: Buffer) {
        self.with(|c| c.binary(&data));
    }

    /// A violation the socket layer detected: 1002 (protocol), 1003 (binary),
    /// 1009 (too big). Membership ends at once.
    #[napi]
    pub fn violation(&self, code: u32) {
        let v = u16::try_from(code)
            .ok()
            .and_then(Violation::from_code)
            .unwrap_or(Violation::Protocol);
        self.with(|c| c.violation(v));
    }

    /// The peer was heard (a message, ping or pong).
    #[napi]
    pub fn heard(&self) {
        self.with(EdgeConnection::heard);
    }

    /// A batch is being written (`written()` once flushed).
    #[napi]
    pub fn writing(&self) {
        self.with(EdgeConnection::writing);
    }

    #[napi]
    pub fn written(&self) {
        self.with(EdgeConnection::written);
    }

    /// The liveness decision now: `"ping"` (send one), `"drop"` (terminate
    /// without a close frame) or `"idle"`.
    #[napi]
    pub fn tick(&self) -> String {
        let tick = self.with(EdgeConnection::tick);
        match tick {
            Some(Tick::Ping(_)) => "ping",
            Some(Tick::Drop) => "drop",
            Some(Tick::Idle(_)) | None => "idle",
        }
        .to_owned()
    }

    /// The next outbox batch or close request (one pending call at a time).
    #[napi]
    pub fn next<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, OutboxBatch>> {
        let outbox = self.outbox.clone();
        let encoding = self.encoding;
        env.spawn_future(async move {
            let mut batch = Vec::new();
            Ok(match outbox.next(&mut batch).await {
                Next::Frames if encoding == Encoding::MessagePack => OutboxBatch {
                    frames: None,
                    binary_frames: Some(
                        batch
                            .into_iter()
                            .map(|f| match encoding.wire(f) {
                                Wire::Binary(b) => Buffer::from(b),
                                Wire::Text(t) => Buffer::from(t.as_str().as_bytes().to_vec()),
                            })
                            .collect(),
                    ),
                    close_code: None,
                    close_reason: None,
                },
                Next::Frames => OutboxBatch {
                    frames: Some(batch.iter().map(|f| f.as_str().to_owned()).collect()),
                    binary_frames: None,
                    close_code: None,
                    close_reason: None,
                },
                Next::Close(req) => OutboxBatch {
                    frames: None,
                    binary_frames: None,
                    close_code: Some(u32::from(req.code)),
                    close_reason: Some(req.reason.to_owned()),
                },
            })
        })
    }

    /// The socket is gone. `client_close`: the code of the client's close frame,
    /// `null` when the connection ended without one (a cut: the session waits
    /// for a resume). Idempotent.
    #[napi]
    pub fn finish(&self, client_close: Option<u32>) {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(conn) = conn {
            let code = client_close.and_then(|c| u16::try_from(c).ok());
            within_runtime_if_available(|| conn.finish(code));
        }
    }
}

impl Drop for NativeConnection {
    // Collected without `finish()`: an abnormal end (the hub needs the runtime
    // for the resume-window timer).
    fn drop(&mut self) {
        self.finish(None);
    }
}
