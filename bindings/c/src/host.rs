//! The host-socket mode: a host that owns the WebSockets (a Spring
//! `WebSocketHandler`, a native server) serves a `switchboard_server` through the
//! core's connection kit. Per upgrade: `switchboard_upgrade_new` + one
//! `switchboard_upgrade_header` per header, `switchboard_server_admit` (accept,
//! or the HTTP status to answer), `switchboard_upgrade_open`; then per connection:
//! received frames in (`switchboard_conn_text`, `_binary`, `_violation`, `_heard`), what to
//! do next out (`switchboard_conn_next`: frames, a close, a ping, or a drop), and
//! the peer's close (`switchboard_conn_finish`). This file converts only; every
//! rule is the kit's.

use std::ffi::{c_char, CString};
use std::sync::{Arc, Mutex};

use sb::edge::{
    Admitted, EdgeConnection, Encoding, Liveness, Refused, Tick, UpgradeRequest, Violation,
};
use sb::hub::{Next, Outbox};
use sb::Hub;
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::guard::{self, with_mut, with_ref, FfiError, FfiResult};
use crate::host_output::{switchboard_output, switchboard_output_kind};
use crate::server::switchboard_server;
use crate::switchboard_result;

/// Who keeps a host-socket connection alive.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum switchboard_liveness {
    /// The host sends a WebSocket ping whenever `switchboard_conn_next` gives
    /// `SWITCHBOARD_OUTPUT_PING`, and reports every frame it hears (pongs
    /// included) with `switchboard_conn_heard`; silence drops the connection.
    Pings = 0,
    /// The host's WebSocket server pings and reports dead peers itself.
    Host = 1,
}

/// One upgrade request: its facts, then the kit's decision. Made by
/// `switchboard_upgrade_new`, freed with `switchboard_upgrade_free` (or
/// consumed by a successful `switchboard_upgrade_open`). One thread at a time.
#[derive(Debug)]
pub struct switchboard_upgrade {
    request: UpgradeRequest,
    decision: Option<Result<Admitted, Refused>>,
    subprotocol: Option<CString>,
    refusal_header: Option<CString>,
}

/// One WebSocket owned by the host, attached to the hub. Every function may be
/// called from any thread until `switchboard_conn_free`.
#[derive(Debug)]
pub struct switchboard_conn {
    conn: Mutex<Option<EdgeConnection>>,
    outbox: Arc<Outbox>,
    encoding: Encoding,
    client_id: CString,
    runtime: Handle,
    /// When the liveness clock must be asked next (by `next`).
    next_tick: Mutex<Instant>,
}

/// Starts an upgrade request from `peer_ip` (the socket's remote address; NULL
/// when unknown) for `target` (the path with its query, as in the request
/// line). NULL when `target` is NULL or not UTF-8.
///
/// # Safety
/// `peer_ip` is NULL or NUL-terminated; `target` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_upgrade_new(
    peer_ip: *const c_char,
    target: *const c_char,
) -> *mut switchboard_upgrade {
    guard::guard_or(std::ptr::null_mut(), || {
        // SAFETY: header contract.
        let target = unsafe { guard::str_arg(target, "target") }?;
        let peer = if peer_ip.is_null() {
            None
        } else {
            // SAFETY: header contract.
            unsafe { guard::str_arg(peer_ip, "peer_ip") }?.parse().ok()
        };
        Ok(Box::into_raw(Box::new(switchboard_upgrade {
            request: UpgradeRequest::new(peer, target),
            decision: None,
            subprotocol: None,
            refusal_header: None,
        })))
    })
}

/// Adds one request header (call it for every header; the kit reads `Origin`,
/// `X-Forwarded-For`, `Forwarded`, `X-Real-IP`, `Authorization`,
/// `Sec-WebSocket-Protocol`).
///
/// # Safety
/// `upgrade` is NULL or live; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_upgrade_header(
    upgrade: *mut switchboard_upgrade,
    name: *const c_char,
    value: *const c_char,
) -> switchboard_result {
    with_mut(upgrade, "upgrade", |u| {
        // SAFETY: header contract.
        let (name, value) = unsafe {
            (
                guard::str_arg(name, "name")?,
                guard::str_arg(value, "value")?,
            )
        };
        u.request.header(name, value);
        Ok(())
    })
}

/// Admission by the kit (origin 403, per-IP 429 after trusted proxies,
/// capacity or draining 503, handshake token 401; refusals are counted in the
/// metrics). Blocks the calling thread while an auth callback decides (bounded
/// by the auth timeout). Writes 101 to `*status_out` when admitted (answer the
/// upgrade with `switchboard_upgrade_subprotocol`, then open), else the HTTP
/// status to answer (with `switchboard_upgrade_refusal_header`) and returns
/// `SWITCHBOARD_RESULT_REFUSED`. An upgrade is admitted once.
///
/// # Safety
/// `server` and `upgrade` are NULL or live; `status_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_admit(
    server: *const switchboard_server,
    upgrade: *mut switchboard_upgrade,
    status_out: *mut u16,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        // SAFETY: NULL or live, used by one thread at a time (header contract).
        let u = unsafe { upgrade.as_mut() }.ok_or_else(|| guard::null_arg("upgrade"))?;
        let out = guard::out_arg(status_out, "status_out")?;
        if u.decision.is_some() {
            return Err(FfiError::new(
                switchboard_result::InvalidArgument,
                "this upgrade was admitted already",
            ));
        }
        let decision = s.runtime().block_on(s.edge.admit(&u.request));
        let status = match &decision {
            Ok(a) => {
                u.subprotocol = a.subprotocol().and_then(guard::c_string);
                101
            }
            Err(r) => {
                let header = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).next();
                u.refusal_header = header.as_deref().and_then(guard::c_string);
                r.status
            }
        };
        u.decision = Some(decision);
        // SAFETY: checked by `out_arg`; writable by the caller's contract.
        unsafe { guard::write_out(out, status) };
        if status == 101 {
            Ok(())
        } else {
            Err(FfiError::new(
                switchboard_result::Refused,
                format!("upgrade refused: {status}"),
            ))
        }
    })
}

/// The subprotocol to select in the 101 answer (`"webrtc-signaling"` when the
/// client offered it), or NULL. Owned by `upgrade`.
///
/// # Safety
/// `upgrade` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_upgrade_subprotocol(
    upgrade: *const switchboard_upgrade,
) -> *const c_char {
    guard::read(upgrade, "upgrade", std::ptr::null(), |u| {
        guard::c_ptr(u.subprotocol.as_ref())
    })
}

/// A header line to add to a refusal (`"www-authenticate: Bearer"` with 401),
/// or NULL. Owned by `upgrade`.
///
/// # Safety
/// `upgrade` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_upgrade_refusal_header(
    upgrade: *const switchboard_upgrade,
) -> *const c_char {
    guard::read(upgrade, "upgrade", std::ptr::null(), |u| {
        guard::c_ptr(u.refusal_header.as_ref())
    })
}

/// Opens the connection of an admitted upgrade (its `connected` message is the
/// first output). Consumes `upgrade` on success; writes the connection to
/// `*conn_out`, which the caller frees with `switchboard_conn_free`.
///
/// # Safety
/// `server` is NULL or live; `upgrade` is NULL or live and not used after
/// success; `conn_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_upgrade_open(
    server: *const switchboard_server,
    upgrade: *mut switchboard_upgrade,
    liveness: switchboard_liveness,
    conn_out: *mut *mut switchboard_conn,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        let out = guard::out_arg(conn_out, "conn_out")?;
        // SAFETY: NULL or live (header contract).
        let u = unsafe { upgrade.as_mut() }.ok_or_else(|| guard::null_arg("upgrade"))?;
        let Some(Ok(_)) = &u.decision else {
            return Err(FfiError::new(
                switchboard_result::InvalidArgument,
                "open needs an upgrade that switchboard_server_admit admitted",
            ));
        };
        // SAFETY: made by `switchboard_upgrade_new`; consumed here.
        let u = unsafe { Box::from_raw(upgrade) };
        let Some(Ok(admitted)) = u.decision else {
            unreachable!("checked above")
        };
        let conn = open(s.edge.hub(), s.runtime().handle(), admitted, liveness);
        // SAFETY: checked by `out_arg`; writable by the caller's contract.
        unsafe { guard::write_out(out, Box::into_raw(Box::new(conn))) };
        Ok(())
    })
}

fn open(
    hub: &Hub,
    rt: &Handle,
    admitted: Admitted,
    liveness: switchboard_liveness,
) -> switchboard_conn {
    let mode = match liveness {
        switchboard_liveness::Pings => Liveness::Pings,
        switchboard_liveness::Host => Liveness::Host,
    };
    let _entered = rt.enter();
    let conn = admitted.open(hub, mode);
    switchboard_conn {
        outbox: conn.outbox().clone(),
        encoding: conn.encoding(),
        client_id: guard::c_string(&conn.client_id()).unwrap_or_default(),
        conn: Mutex::new(Some(conn)),
        runtime: rt.clone(),
        next_tick: Mutex::new(Instant::now()),
    }
}

/// Frees an upgrade that was not opened (an admitted one gives its connection
/// slot back). NULL is ignored.
///
/// # Safety
/// `upgrade` is NULL or live and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn switchboard_upgrade_free(upgrade: *mut switchboard_upgrade) {
    guard::guard_void(|| {
        if !upgrade.is_null() {
            // SAFETY: made by `switchboard_upgrade_new`; freed once (header contract).
            drop(unsafe { Box::from_raw(upgrade) });
        }
    })
}

impl switchboard_conn {
    fn with(&self, f: impl FnOnce(&mut EdgeConnection)) -> FfiResult<()> {
        let _entered = self.runtime.enter();
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = guard
            .as_mut()
            .ok_or_else(|| FfiError::closed("the connection is finished"))?;
        f(conn);
        Ok(())
    }

    /// The liveness decision when it is due: a ping or a drop to output now.
    fn due(&self) -> FfiResult<Option<switchboard_output_kind>> {
        let mut next_tick = self.next_tick.lock().unwrap_or_else(|p| p.into_inner());
        if Instant::now() < *next_tick {
            return Ok(None);
        }
        let mut out = None;
        self.with(|c| match c.tick() {
            Tick::Idle(n) => *next_tick = n,
            Tick::Ping(n) => {
                *next_tick = n;
                out = Some(switchboard_output_kind::Ping);
            }
            Tick::Drop => out = Some(switchboard_output_kind::Drop),
        })?;
        Ok(out)
    }
}

/// This connection's `clientId`, owned by `conn`.
///
/// # Safety
/// `conn` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_conn_client_id(
    conn: *const switchboard_conn,
) -> *const c_char {
    guard::read(conn, "conn", std::ptr::null(), |c| c.client_id.as_ptr())
}

/// One received text frame (`len` bytes of UTF-8, no NUL needed). Invalid UTF-8
/// closes the connection (1002); an oversized frame 1009; bad messages are
/// answered with `error` frames in the output.
///
/// # Safety
/// `conn` is NULL or live; `data` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn switchboard_conn_text(
    conn: *const switchboard_conn,
    data: *const c_char,
    len: usize,
) -> switchboard_result {
    with_ref(conn, "conn", |c| {
        // SAFETY: header contract.
        let bytes = unsafe { guard::bytes_arg(data.cast::<u8>(), len, "data") }?;
        match std::str::from_utf8(bytes) {
            Ok(text) => c.with(|e| e.text(text)),
            Err(_) => c.with(|e| e.violation(Violation::Protocol)),
        }
    })
}

/// One received binary frame (`len` bytes): a message on the MessagePack
/// subprotocol (bad MessagePack is answered `invalid-json`); on a JSON
/// connection the connection closes with 1003.
///
/// # Safety
/// `conn` is NULL or live; `data` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn switchboard_conn_binary(
    conn: *const switchboard_conn,
    data: *const u8,
    len: usize,
) -> switchboard_result {
    with_ref(conn, "conn", |c| {
        // SAFETY: header contract.
        let bytes = unsafe { guard::bytes_arg(data, len, "data") }?;
        c.with(|e| e.binary(bytes))
    })
}

/// A violation the host's WebSocket layer saw: 1002 (bad framing), 1003 (a
/// binary frame), 1009 (too big). The connection closes with that code and its
/// memberships end at once. Other codes are `SWITCHBOARD_RESULT_INVALID_ARGUMENT`.
///
/// # Safety
/// `conn` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_conn_violation(
    conn: *const switchboard_conn,
    close_code: u16,
) -> switchboard_result {
    with_ref(conn, "conn", |c| {
        let v = Violation::from_code(close_code).ok_or_else(|| {
            FfiError::new(
                switchboard_result::InvalidArgument,
                "a violation is 1002, 1003 or 1009",
            )
        })?;
        c.with(|e| e.violation(v))
    })
}

/// The peer was heard (a pong, a ping, any frame).
///
/// # Safety
/// `conn` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_conn_heard(
    conn: *const switchboard_conn,
) -> switchboard_result {
    with_ref(conn, "conn", |c| c.with(EdgeConnection::heard))
}

/// Waits up to `timeout_ms` (0 = do not wait) for what to do next and writes it
/// to `*output_out` (free it with `switchboard_output_free`). Returns
/// `SWITCHBOARD_RESULT_TIMEOUT` when there is nothing yet. One thread at a time
/// should pull a connection (its writer). After `FRAMES`, call
/// `switchboard_conn_written` once they are sent; after `CLOSE` or `DROP`, only
/// `switchboard_conn_finish` remains.
///
/// # Safety
/// `conn` is NULL or live; `output_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_conn_next(
    conn: *const switchboard_conn,
    timeout_ms: u32,
    output_out: *mut *mut switchboard_output,
) -> switchboard_result {
    with_ref(conn, "conn", |c| {
        let out = guard::out_arg(output_out, "output_out")?;
        let deadline = Instant::now() + guard::millis(u64::from(timeout_ms));
        let output = loop {
            if let Some(kind) = c.due()? {
                break switchboard_output::of(kind);
            }
            let until = (*c.next_tick.lock().unwrap_or_else(|p| p.into_inner())).min(deadline);
            let mut batch = Vec::new();
            // Cancel-safe: the outbox fills `batch` only when it is ready.
            let got = c.runtime.block_on(async {
                tokio::time::timeout_at(until, c.outbox.next(&mut batch))
                    .await
                    .ok()
            });
            match got {
                Some(Next::Frames) => {
                    c.with(EdgeConnection::writing)?;
                    break switchboard_output::frames(batch, c.encoding);
                }
                Some(Next::Close(req)) => {
                    let mut o = switchboard_output::of(switchboard_output_kind::Close);
                    o.close_code = req.code;
                    o.close_reason = guard::c_string(req.reason).unwrap_or_default();
                    break o;
                }
                None if Instant::now() >= deadline => {
                    return Err(FfiError::new(
                        switchboard_result::Timeout,
                        "nothing to do yet",
                    ));
                }
                None => {} // the liveness clock is due
            }
        };
        // SAFETY: checked by `out_arg`; writable by the caller's contract.
        unsafe { guard::write_out(out, Box::into_raw(Box::new(output))) };
        Ok(())
    })
}

/// The frames of a `FRAMES` output were written and flushed.
///
/// # Safety
/// `conn` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_conn_written(
    conn: *const switchboard_conn,
) -> switchboard_result {
    with_ref(conn, "conn", |c| c.with(EdgeConnection::written))
}

/// The socket is gone: `client_close` is the close code the peer sent, or -1
/// when it ended without a close frame (a cut: the session stays resumable for
/// the resume window). Idempotent; the connection only waits for `free` then.
///
/// # Safety
/// `conn` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_conn_finish(
    conn: *const switchboard_conn,
    client_close: i32,
) -> switchboard_result {
    with_ref(conn, "conn", |c| {
        finish(c, u16::try_from(client_close).ok());
        Ok(())
    })
}

fn finish(c: &switchboard_conn, client_close: Option<u16>) {
    let _entered = c.runtime.enter();
    let taken = c.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(conn) = taken {
        conn.finish(client_close);
    }
}

/// Frees a connection (finishing it as a cut first if `finish` was not called).
/// NULL is ignored. Must not race with other calls on `conn`.
///
/// # Safety
/// `conn` is NULL or live and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn switchboard_conn_free(conn: *mut switchboard_conn) {
    guard::guard_void(|| {
        if !conn.is_null() {
            // SAFETY: made by `switchboard_upgrade_open`; freed once (header contract).
            let c = unsafe { Box::from_raw(conn) };
            finish(&c, None);
        }
    })
}
