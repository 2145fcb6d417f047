//! One connection of the attach mode: the TypeScript layer owns the `ws` socket
//! (on the application's `http.Server`) and drives the hub through this object —
//! inbound text frames in, outbox batches out (one pending `next()` at a time,
//! so the outbox bound holds and nothing queues up unbounded in JS).

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{within_runtime_if_available, PromiseRaw};
use napi::Env;
use napi_derive::napi;
use switchboard::hub::{Connection, Next, Outbox};
use switchboard::protocol::close;

/// What to do next with the socket.
#[napi(object)]
#[derive(Debug)]
pub struct OutboxBatch {
    /// Frames to write, in order (then wait until they are flushed).
    pub frames: Option<Vec<String>>,
    /// Send this close code and end the connection.
    pub close_code: Option<u32>,
    pub close_reason: Option<String>,
}

/// A hub connection driven from JS.
#[napi]
#[derive(Debug)]
pub struct NativeConnection {
    conn: Arc<Mutex<Option<Connection>>>,
    outbox: Arc<Outbox>,
    client_id: String,
}

impl NativeConnection {
    pub(crate) fn new(conn: Connection) -> Self {
        NativeConnection {
            outbox: conn.outbox().clone(),
            client_id: conn.client_id().to_owned(),
            conn: Arc::new(Mutex::new(Some(conn))),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> Option<T> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().map(f)
    }
}

#[napi]
impl NativeConnection {
    #[napi(getter)]
    pub fn client_id(&self) -> String {
        self.client_id.clone()
    }

    /// One inbound text frame.
    #[napi]
    pub fn handle_text(&self, text: String) {
        within_runtime_if_available(|| {
            self.with(|c| {
                // A bug in one message's handling costs that connection (1011),
                // never the process: the native transport does the same.
                let ok =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.handle_text(&text)))
                        .is_ok();
                if !ok {
                    c.close(close::INTERNAL, "internal error");
                }
            })
        });
    }

    /// A violation the socket layer detected: 1002 (protocol), 1003 (binary),
    /// 1009 (too big), else 1011. Membership ends at once.
    #[napi]
    pub fn close(&self, code: u32) {
        let (code, reason) = match code {
            1002 => (close::PROTOCOL_ERROR, "protocol error"),
            1003 => (close::UNSUPPORTED_DATA, "binary frames are not accepted"),
            1009 => (close::TOO_BIG, "message too big"),
            _ => (close::INTERNAL, "internal error"),
        };
        self.with(|c| c.close(code, reason));
    }

    /// The next outbox batch or close request (one pending call at a time).
    #[napi]
    pub fn next<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, OutboxBatch>> {
        let outbox = self.outbox.clone();
        env.spawn_future(async move {
            let mut batch = Vec::new();
            Ok(match outbox.next(&mut batch).await {
                Next::Frames => OutboxBatch {
                    frames: Some(batch.iter().map(|f| f.as_str().to_owned()).collect()),
                    close_code: None,
                    close_reason: None,
                },
                Next::Close(req) => OutboxBatch {
                    frames: None,
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
