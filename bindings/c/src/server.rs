//! `switchboard_server`: a hub on its own runtime with the event API (push
//! callback, pull queue), host operations (send, broadcast, kick, rooms) and a
//! graceful stop; started with a listener (`switchboard_server_start`) or
//! without one for the host-socket mode (`switchboard_server_create`, see
//! `host.rs`).

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sb::{Edge, Event, Server, ServerHandle};
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::switchboard_server_config;
use crate::event::{switchboard_event, switchboard_event_callback, EventHub, Fanout};
use crate::guard::{self, with_ref, FfiError, FfiResult};
use crate::switchboard_result;

/// A running (or stopped) server. Every function may be called from any thread
/// until `switchboard_server_free`, which must not race with other calls.
#[derive(Debug)]
pub struct switchboard_server {
    runtime: Option<Runtime>,
    /// The connection kit: the hub, admission and counts (shared by the
    /// listener and host sockets).
    pub(crate) edge: Edge,
    /// The listener; `None` in host-socket mode (`switchboard_server_create`).
    handle: Option<ServerHandle>,
    url: Option<CString>,
    events: EventHub,
    stopped: AtomicBool,
    stop: Mutex<Stop>,
}

#[derive(Debug)]
struct Stop {
    done: bool,
    signal: watch::Sender<bool>,
    pump: Option<JoinHandle<()>>,
}

impl switchboard_server {
    pub(crate) fn runtime(&self) -> &Runtime {
        // Only `free` takes the runtime, after which the handle is gone.
        self.runtime
            .as_ref()
            .unwrap_or_else(|| unreachable!("runtime taken before free"))
    }

    pub(crate) fn check_running(&self) -> FfiResult<()> {
        if self.stopped.load(Ordering::Acquire) {
            Err(FfiError::closed("the server is stopped"))
        } else {
            Ok(())
        }
    }

    /// Graceful drain, then every event delivered, then the callbacks joined.
    fn stop(&self) {
        let mut stop = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        if !stop.done {
            self.stopped.store(true, Ordering::Release);
            let rt = self.runtime();
            match &self.handle {
                Some(h) => rt.block_on(h.shutdown()),
                None => rt.block_on(self.edge.drain()),
            }
            let _ = stop.signal.send(true);
            if let Some(pump) = stop.pump.take() {
                let _ = rt.block_on(pump);
            }
            stop.done = true;
        }
        // Both locks are released before joining: a running callback may be
        // waiting for one of them.
        drop(stop);
        self.events.join_callbacks();
    }
}

/// Moves the hub's events into the fan-out until the server stops; then the
/// events already emitted are delivered and the readers told the stream ended.
async fn pump(
    mut events: broadcast::Receiver<Event>,
    mut stop: watch::Receiver<bool>,
    fanout: Arc<Fanout>,
) {
    use broadcast::error::{RecvError, TryRecvError};
    loop {
        tokio::select! {
            biased;
            received = events.recv() => match received {
                Ok(e) => fanout.publish(&e),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "C event pump fell behind the hub");
                    fanout.lost(n);
                }
                Err(RecvError::Closed) => break,
            },
            _ = stop.wait_for(|s| *s) => {
                loop {
                    match events.try_recv() {
                        Ok(e) => fanout.publish(&e),
                        Err(TryRecvError::Lagged(n)) => fanout.lost(n),
                        Err(_) => break,
                    }
                }
                break;
            }
        }
    }
    fanout.finish();
}

/// A server on its own runtime; `listen`: with the listener, else host-socket mode.
fn start(cfg: &mut switchboard_server_config, listen: bool) -> FfiResult<switchboard_server> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.worker_threads)
        .thread_name("switchboard-server")
        .enable_all()
        .build()
        .map_err(|e| {
            FfiError::new(
                switchboard_result::Io,
                format!("cannot start the runtime: {e}"),
            )
        })?;
    let core = cfg.build(&runtime)?;
    // The callback's queue exists before the pump: it sees the first event.
    let events = EventHub::new(core.event_buffer, cfg.event_callback)?;
    let (edge, handle) = if listen {
        let server = Server::builder().config(core).build()?;
        let handle = runtime.block_on(server.start())?;
        (handle.edge().clone(), Some(handle))
    } else {
        if core.tls.is_some() {
            // The host's own server terminates TLS for its sockets.
            return Err(FfiError::config(
                "TLS needs the listener: use switchboard_server_start",
            ));
        }
        // `redis_url` makes this a cluster node, as with a listener.
        let _entered = runtime.enter();
        (Edge::new(core)?, None)
    };
    let url = handle
        .as_ref()
        .map(|h| CString::new(h.url()).unwrap_or_default());
    let (signal, stop_rx) = watch::channel(false);
    let pump = runtime.spawn(pump(edge.hub().subscribe(), stop_rx, events.fanout()));
    Ok(switchboard_server {
        runtime: Some(runtime),
        edge,
        handle,
        url,
        events,
        stopped: AtomicBool::new(false),
        stop: Mutex::new(Stop {
            done: false,
            signal,
            pump: Some(pump),
        }),
    })
}

/// Consumes `cfg`, starts a server (with or without its listener) and writes it out.
///
/// # Safety
/// As `switchboard_server_start`.
unsafe fn start_into(
    cfg: *mut switchboard_server_config,
    server_out: *mut *mut switchboard_server,
    listen: bool,
) -> switchboard_result {
    guard::guard(|| {
        if cfg.is_null() {
            return Err(guard::null_arg("cfg"));
        }
        // SAFETY: made by `switchboard_server_config_new`; consumed here.
        let mut cfg = unsafe { Box::from_raw(cfg) };
        let out = guard::out_arg(server_out, "server_out")?;
        let server = start(&mut cfg, listen)?;
        // SAFETY: checked by `out_arg`; writable by the caller's contract.
        unsafe { guard::write_out(out, Box::into_raw(Box::new(server))) };
        Ok(())
    })
}

/// Starts a server: its runtime, the listener, the event pump. Consumes `cfg`
/// in every case (never use or free it afterwards). On success writes the new
/// server to `*server_out`, which the caller owns and frees with
/// `switchboard_server_free`. Fails with `SWITCHBOARD_RESULT_CONFIG` for an
/// invalid configuration and `SWITCHBOARD_RESULT_IO` when the address can not
/// be bound.
///
/// # Safety
/// `cfg` is NULL or a configuration the caller owns; `server_out` is NULL or
/// points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_start(
    cfg: *mut switchboard_server_config,
    server_out: *mut *mut switchboard_server,
) -> switchboard_result {
    // SAFETY: forwarded contract.
    unsafe { start_into(cfg, server_out, true) }
}

/// Creates a server without a listener, for the host-socket mode: a host that
/// owns the WebSockets (Spring, a native server) admits each upgrade with
/// `switchboard_server_admit` and drives its connections (`switchboard_conn_*`). The event API, send, broadcast, kick, rooms,
/// stop and free work as for a started server; `url` is NULL and `port` 0. A
/// `redis_url` makes it a cluster node. Consumes `cfg` in every case. Fails
/// with `SWITCHBOARD_RESULT_CONFIG` for an invalid configuration, TLS included
/// (the host terminates TLS).
///
/// # Safety
/// As `switchboard_server_start`.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_create(
    cfg: *mut switchboard_server_config,
    server_out: *mut *mut switchboard_server,
) -> switchboard_result {
    // SAFETY: forwarded contract.
    unsafe { start_into(cfg, server_out, false) }
}

/// The server's `ws://HOST:PORT/PATH` (the real port when bound to port 0).
/// Owned by `server`, valid until `switchboard_server_free`; NULL if `server`
/// is NULL or has no listener (host-socket mode).
///
/// # Safety
/// `server` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_url(
    server: *const switchboard_server,
) -> *const c_char {
    guard::read(server, "server", std::ptr::null(), |s| {
        guard::c_ptr(s.url.as_ref())
    })
}

/// The bound TCP port, or 0 if `server` is NULL or has no listener.
///
/// # Safety
/// `server` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_port(server: *const switchboard_server) -> u16 {
    guard::read(server, "server", 0, |s| {
        s.handle.as_ref().map_or(0, |h| h.local_addr().port())
    })
}

/// Sets the push callback: from now on it is called once per server event, in
/// order, on a thread the library owns (one per callback, never a runtime
/// thread), so it may block - but events for it queue meanwhile (bounded by the
/// event buffer; past it the oldest are dropped). It may call any function of
/// this server, `stop` and `free` included (then it gets no further event).
/// Replaces the previous callback (which gets no event after this returns,
/// except one it may be running); NULL removes it. The pull API keeps its own
/// queue either way. `userdata` must stay valid until `switchboard_server_free`
/// returns. Events before this call are not replayed to it: to see every
/// event, use `switchboard_server_config_set_event_callback`.
///
/// # Safety
/// `server` is NULL or a live server; `callback` is NULL or a function that
/// may be called from a library thread with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_set_event_callback(
    server: *const switchboard_server,
    callback: switchboard_event_callback,
    userdata: *mut c_void,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        s.events.set_callback(callback, userdata)
    })
}

/// The pull API: waits up to `timeout_ms` (0 = do not wait) for the next
/// server event (`connected`, `user-joined`, `offer`, `disconnected`, ...; every
/// event since start, in order). On success writes a new event to `*event_out`,
/// which the caller frees with `switchboard_event_free`. Returns
/// `SWITCHBOARD_RESULT_TIMEOUT` when none came in time, and
/// `SWITCHBOARD_RESULT_CLOSED` once the server is stopped and every event was
/// read. One queue serves all pulling threads (each event goes to one of them).
///
/// # Safety
/// `server` is NULL or a live server; `event_out` is NULL or points to writable
/// memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_next_event(
    server: *const switchboard_server,
    timeout_ms: u32,
    event_out: *mut *mut switchboard_event,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        s.events.next_event(timeout_ms, event_out)
    })
}

/// Events the pull queue dropped because nobody read them in time (the oldest
/// go first once `event_buffer` events wait). 0 if `server` is NULL.
///
/// # Safety
/// `server` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_events_missed(
    server: *const switchboard_server,
) -> u64 {
    guard::read(server, "server", 0, |s| s.events.missed())
}

/// Sends a message (`json`: a JSON object with a string `type`) to one peer of a
/// room. Fails with `SWITCHBOARD_RESULT_NOT_IN_ROOM` for a room nobody is in,
/// `SWITCHBOARD_RESULT_PEER_NOT_FOUND` when no such peer is there, `SWITCHBOARD_RESULT_INVALID_JSON`/`INVALID_MESSAGE` for bad JSON,
/// `SWITCHBOARD_RESULT_CLOSED` after stop.
///
/// # Safety
/// `server` is NULL or a live server; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_send(
    server: *const switchboard_server,
    room_id: *const c_char,
    user_id: *const c_char,
    json: *const c_char,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        // SAFETY: header contract.
        let (room, user, message) = unsafe {
            (
                guard::str_arg(room_id, "room_id")?,
                guard::str_arg(user_id, "user_id")?,
                guard::json_arg(json, "json")?,
            )
        };
        s.check_running()?;
        let _entered = s.runtime().enter();
        Ok(s.edge.hub().send(room, user, &message)?)
    })
}

/// Sends a message (a JSON object with a string `type`) to every peer of a room.
/// On success writes how many peers got it to `*delivered_out` when that is not
/// NULL. Fails with `SWITCHBOARD_RESULT_NOT_IN_ROOM` for a room nobody is in.
///
/// # Safety
/// `server` is NULL or a live server; the strings are NULL or NUL-terminated;
/// `delivered_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_broadcast(
    server: *const switchboard_server,
    room_id: *const c_char,
    json: *const c_char,
    delivered_out: *mut u64,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        // SAFETY: header contract.
        let (room, message) = unsafe {
            (
                guard::str_arg(room_id, "room_id")?,
                guard::json_arg(json, "json")?,
            )
        };
        s.check_running()?;
        let _entered = s.runtime().enter();
        let n = s.edge.hub().broadcast(room, &message)?;
        if !delivered_out.is_null() {
            // SAFETY: not NULL; writable by the caller's contract.
            unsafe { guard::write_out(delivered_out, n as u64) };
        }
        Ok(())
    })
}

/// A host operation on the hub with two string arguments (a room and a user):
/// checked, on a running server, inside its runtime.
///
/// # Safety
/// `server` is NULL or a live server; the strings are NULL or NUL-terminated.
unsafe fn hub_op(
    server: *const switchboard_server,
    (a, a_name): (*const c_char, &str),
    (b, b_name): (*const c_char, &str),
    op: impl FnOnce(&sb::Hub, &str, &str) -> sb::Result<()>,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        // SAFETY: forwarded to the caller's contract.
        let (a, b) = unsafe { (guard::str_arg(a, a_name)?, guard::str_arg(b, b_name)?) };
        s.check_running()?;
        let _entered = s.runtime().enter();
        Ok(op(s.edge.hub(), a, b)?)
    })
}

/// Removes a peer from a room: the others get `user-left` (`kicked`) and its
/// connection closes with 4403 (final: its client does not reconnect).
///
/// # Safety
/// `server` is NULL or a live server; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_kick(
    server: *const switchboard_server,
    room_id: *const c_char,
    user_id: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    unsafe {
        hub_op(
            server,
            (room_id, "room_id"),
            (user_id, "user_id"),
            |hub, room_id, user_id| hub.kick(room_id, user_id),
        )
    }
}

/// Whether `path` (without the query) is one of the configured upgrade paths:
/// a fixed entry or a `{roomId}`/`{userId}` template. A host that routes
/// upgrades itself answers 404 otherwise.
///
/// # Safety
/// `server` is NULL or a live server; `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_serves_path(
    server: *const switchboard_server,
    path: *const c_char,
) -> bool {
    guard::read(server, "server", false, |s| {
        // SAFETY: header contract.
        match unsafe { guard::str_arg(path, "path") } {
            Ok(p) => s.edge.serves_path(p),
            Err(_) => false,
        }
    })
}

/// Puts a connected user into a room, as if it had sent `join` (`room-info`
/// to it, `user-joined` to the others). `SWITCHBOARD_RESULT_PEER_NOT_FOUND`
/// when no connection carries `user_id`; the join's own refusals likewise.
///
/// # Safety
/// `server` is NULL or a live server; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_join(
    server: *const switchboard_server,
    user_id: *const c_char,
    room_id: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    unsafe {
        hub_op(
            server,
            (user_id, "user_id"),
            (room_id, "room_id"),
            |hub, user_id, room_id| hub.join(user_id, room_id),
        )
    }
}

/// Takes a user out of a room (the others get `user-left` with `leave`); its
/// connection stays open.
///
/// # Safety
/// `server` is NULL or a live server; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_leave(
    server: *const switchboard_server,
    user_id: *const c_char,
    room_id: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    unsafe {
        hub_op(
            server,
            (user_id, "user_id"),
            (room_id, "room_id"),
            |hub, user_id, room_id| hub.leave(user_id, room_id),
        )
    }
}

/// Every room with its peers, as JSON:
/// `[{"roomId":"r","peers":[{"userId":"a","sessionId":"...","displayName":null,
/// "metadata":null,"connected":true}]}]`, rooms sorted by id, peers in join
/// order. On success writes a new string to `*json_out`, which the caller frees
/// with `switchboard_string_free`.
///
/// # Safety
/// `server` is NULL or a live server; `json_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_rooms_json(
    server: *const switchboard_server,
    json_out: *mut *mut c_char,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        let out = guard::out_arg(json_out, "json_out")?;
        let json = serde_json::to_string(&s.edge.hub().rooms())
            .map_err(|e| FfiError::new(switchboard_result::Internal, e.to_string()))?;
        // SAFETY: checked by `out_arg`; writable by the caller's contract.
        unsafe { guard::write_out(out, guard::owned_c_string(json)) };
        Ok(())
    })
}

/// The OpenMetrics text of the server (what its `/metrics` answers; a host in
/// host-socket mode serves it on its own port), with the content type
/// `application/openmetrics-text; version=1.0.0; charset=utf-8`. On success
/// writes a new string to `*text_out`, which the caller frees with
/// `switchboard_string_free`.
///
/// # Safety
/// `server` is NULL or a live server; `text_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_metrics(
    server: *const switchboard_server,
    text_out: *mut *mut c_char,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        let out = guard::out_arg(text_out, "text_out")?;
        let body = s.edge.metrics().body;
        // SAFETY: checked by `out_arg`; writable by the caller's contract.
        unsafe { guard::write_out(out, guard::owned_c_string(body)) };
        Ok(())
    })
}

/// Stops the server gracefully: new upgrades get 503, every client gets
/// `draining` and a 1001 close; returns once all are closed or the drain
/// timeout passed (the rest are cut), every event was handed to the readers and
/// the callback threads ended. Idempotent. Afterwards `url` still works,
/// `next_event` returns the remaining events then `SWITCHBOARD_RESULT_CLOSED`,
/// and send/broadcast/kick return `SWITCHBOARD_RESULT_CLOSED`.
///
/// # Safety
/// `server` is NULL or a live server.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_stop(
    server: *const switchboard_server,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        s.stop();
        Ok(())
    })
}

/// Stops the server if needed (as `switchboard_server_stop`), joins every
/// thread it started (runtime, callbacks, running auth callbacks), and frees it.
/// NULL is allowed. Must not race with other calls on `server`; may be called
/// from the server's own event callback.
///
/// # Safety
/// `server` is NULL or a server the caller owns, not freed before.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_free(server: *mut switchboard_server) {
    guard::guard_void(|| {
        if server.is_null() {
            return;
        }
        // SAFETY: made by `Box::into_raw` in `switchboard_server_start`.
        let mut server = unsafe { Box::from_raw(server) };
        server.stop();
        // Dropping the runtime waits for its worker and blocking threads.
        let runtime = server.runtime.take();
        drop(server);
        drop(runtime);
    });
}
