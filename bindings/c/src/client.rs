//! The client half of the C API: `switchboard_client_options` (the Rust
//! `ClientBuilder`'s options) and `switchboard_client` (connect, join, leave,
//! sends, events, close, free) with the core's reconnect and resume, each
//! client on its own one-thread runtime.

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use sb::{Client, EventStream, Reply};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::client_options::switchboard_client_options;
use crate::event::{switchboard_event, switchboard_event_callback, EventHub, Fanout};
use crate::guard::{self, millis, with_ref, FfiError, FfiResult};
use crate::switchboard_result;

/// A connected client. Every function may be called from any thread until
/// `switchboard_client_free`, which must not race with other calls.
#[derive(Debug)]
pub struct switchboard_client {
    runtime: Option<Runtime>,
    client: Client,
    events: EventHub,
    send_timeout: Duration,
    close: Mutex<Option<JoinHandle<()>>>,
}

impl switchboard_client {
    fn runtime(&self) -> &Runtime {
        // Only `free` takes the runtime, after which the handle is gone.
        self.runtime
            .as_ref()
            .unwrap_or_else(|| unreachable!("runtime taken before free"))
    }

    /// Waits for a reply: `timeout` zero returns once queued (a refusal before
    /// queueing still fails at once).
    fn wait<T>(&self, reply: Reply<T>, timeout: Duration) -> FfiResult<Option<T>> {
        if reply.id().is_some() && timeout.is_zero() {
            return Ok(None);
        }
        // The timer must be made inside the runtime: `block_on` enters it.
        let outcome = self
            .runtime()
            .block_on(async { tokio::time::timeout(timeout, reply).await });
        match outcome {
            Ok(outcome) => Ok(Some(outcome?)),
            Err(_) => Err(FfiError::new(
                switchboard_result::Timeout,
                format!(
                    "not acknowledged within {} ms; the message stays queued and is sent on",
                    timeout.as_millis()
                ),
            )),
        }
    }

    /// Closes the client once, delivers its last events, joins the callbacks.
    fn close(&self) {
        let mut pump = self.close.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pump.take() {
            let rt = self.runtime();
            rt.block_on(self.client.close());
            let _ = rt.block_on(p);
        }
        // The locks are released before joining: a running callback may wait
        // for one of them.
        drop(pump);
        self.events.join_callbacks();
    }
}

/// Moves the client's events into the fan-out; the stream ends after `closed`.
async fn pump(mut events: EventStream, fanout: Arc<Fanout>) {
    let mut missed = 0;
    while let Some(e) = events.next().await {
        // Events the core's own bounded stream dropped count for every reader.
        if events.missed() > missed {
            fanout.lost(events.missed() - missed);
            missed = events.missed();
        }
        fanout.publish(&e);
    }
    fanout.finish();
}

fn connect(url: &str, opts: &switchboard_client_options) -> FfiResult<switchboard_client> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("switchboard-client")
        .enable_all()
        .build()
        .map_err(|e| {
            FfiError::new(
                switchboard_result::Io,
                format!("cannot start the runtime: {e}"),
            )
        })?;
    let events = EventHub::new(opts.event_capacity, opts.event_callback)?;
    let connected = runtime.block_on(opts.builder(url, runtime.handle()).connect());
    let client = match connected {
        Ok(c) => c,
        Err(e) => {
            // The callback saw the attempt; end its stream and wait for it.
            events.abandon();
            return Err(e.into());
        }
    };
    // The first `events()` call gets every event since connect began.
    let pump = runtime.spawn(pump(client.events(), events.fanout()));
    Ok(switchboard_client {
        runtime: Some(runtime),
        client,
        events,
        send_timeout: opts.send_timeout,
        close: Mutex::new(Some(pump)),
    })
}

/// Connects with default options to `url` (`ws://host:port/path` or `wss://…`) as
/// `user_id` (NULL: the server assigns one). Blocks until the server's
/// `connected` arrived (at most the connect timeout, 10 s); this first attempt
/// is not retried, later losses are (reconnect with backoff and session
/// resume). On success writes the new client to `*client_out`, which the
/// caller owns and frees with `switchboard_client_free`. Fails with
/// `SWITCHBOARD_RESULT_IO`/`WEBSOCKET`/`TIMEOUT`/`UNAUTHORIZED`, or `CONFIG` for
/// a bad URL (a scheme other than `ws://` or `wss://`).
///
/// # Safety
/// `url` and `user_id` are NULL or NUL-terminated; `client_out` is NULL or
/// points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_connect(
    url: *const c_char,
    user_id: *const c_char,
    client_out: *mut *mut switchboard_client,
) -> switchboard_result {
    guard::guard(|| {
        // SAFETY: header contract.
        let user_id = unsafe { guard::opt_str_arg(user_id, "user_id") }?;
        let opts = switchboard_client_options {
            user_id: user_id.map(str::to_owned),
            ..Default::default()
        };
        // SAFETY: header contract.
        unsafe { connect_into(url, &opts, client_out) }
    })
}

/// # Safety
/// As [`switchboard_client_connect`].
unsafe fn connect_into(
    url: *const c_char,
    opts: &switchboard_client_options,
    client_out: *mut *mut switchboard_client,
) -> FfiResult<()> {
    // SAFETY: forwarded contract.
    let url = unsafe { guard::str_arg(url, "url") }?;
    let out = guard::out_arg(client_out, "client_out")?;
    let client = connect(url, opts)?;
    // SAFETY: checked by `out_arg`; writable by the caller's contract.
    unsafe { guard::write_out(out, Box::into_raw(Box::new(client))) };
    Ok(())
}

/// Connects as `switchboard_client_connect` does, with `opts`. Consumes `opts`
/// in every case (never use or free them afterwards).
///
/// # Safety
/// `url` is NULL or NUL-terminated; `opts` is NULL or options the caller owns;
/// `client_out` is NULL or points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_connect_with_options(
    url: *const c_char,
    opts: *mut switchboard_client_options,
    client_out: *mut *mut switchboard_client,
) -> switchboard_result {
    guard::guard(|| {
        if opts.is_null() {
            return Err(guard::null_arg("opts"));
        }
        // SAFETY: made by `switchboard_client_options_new`; consumed here.
        let opts = unsafe { Box::from_raw(opts) };
        // SAFETY: header contract.
        unsafe { connect_into(url, &opts, client_out) }
    })
}

/// Joins a room and waits up to `timeout_ms` for the server's `room-info` (0:
/// return once queued). Fails with the server's code (`ROOM_FULL`,
/// `USER_ID_TAKEN`, `FORBIDDEN`, ...), `TIMEOUT` (the join stays queued), or
/// `CLOSED`. The `room-info` also arrives as an event.
///
/// # Safety
/// `client` is NULL or a live client; `room_id` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_join(
    client: *const switchboard_client,
    room_id: *const c_char,
    timeout_ms: u32,
) -> switchboard_result {
    with_ref(client, "client", |c| {
        // SAFETY: header contract.
        let room = unsafe { guard::str_arg(room_id, "room_id") }?;
        c.wait(c.client.join(room), millis(timeout_ms.into()))
            .map(drop)
    })
}

/// Joins a room as `switchboard_client_join` does, waiting (`timeout_ms` > 0)
/// for the `room-info`, which it writes on success to `*room_info_out` as JSON
/// (`{"type":"room-info","roomId":...,"users":[...],"peers":[...],"you":...}`); the
/// caller frees it with `switchboard_string_free`.
///
/// # Safety
/// `client` is NULL or a live client; `room_id` is NULL or NUL-terminated;
/// `room_info_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_join_with_info(
    client: *const switchboard_client,
    room_id: *const c_char,
    timeout_ms: u32,
    room_info_out: *mut *mut c_char,
) -> switchboard_result {
    with_ref(client, "client", |c| {
        // SAFETY: header contract.
        let room = unsafe { guard::str_arg(room_id, "room_id") }?;
        let out = guard::out_arg(room_info_out, "room_info_out")?;
        if timeout_ms == 0 {
            return Err(FfiError::new(
                switchboard_result::InvalidArgument,
                "timeout_ms must be positive to wait for the room-info",
            ));
        }
        let info = c.wait(c.client.join(room), millis(timeout_ms.into()))?;
        let json = info.unwrap_or(Value::Null).to_string();
        // SAFETY: checked by `out_arg`; writable by the caller's contract.
        unsafe { guard::write_out(out, guard::owned_c_string(json)) };
        Ok(())
    })
}

/// Leaves a room (NULL `room_id`: every room) and waits up to `timeout_ms` for
/// the acknowledgement (0: return once queued).
///
/// # Safety
/// `client` is NULL or a live client; `room_id` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_leave(
    client: *const switchboard_client,
    room_id: *const c_char,
    timeout_ms: u32,
) -> switchboard_result {
    with_ref(client, "client", |c| {
        // SAFETY: header contract.
        let reply = match unsafe { guard::opt_str_arg(room_id, "room_id") }? {
            Some(room) => c.client.leave(room),
            None => c.client.leave_all(),
        };
        c.wait(reply, millis(timeout_ms.into())).map(drop)
    })
}

/// Sends any client message of the protocol, given as JSON text of an object
/// with its `type` (`offer`, `answer`, `candidate`, `message`, `chat`, `join`,
/// `leave`, `auth`; e.g. with an explicit `roomId`); the client sets its `id`.
/// Waits for the acknowledgement up to the send timeout (options; 0 = return
/// once queued). Fails with `SWITCHBOARD_RESULT_INVALID_JSON` when `json` does
/// not parse, `INVALID_MESSAGE` when it is not an object with a known `type`
/// (`ping`, `ack` and `resume` are the client's own), the server's code
/// (`PEER_NOT_FOUND`, `NOT_IN_ROOM`, ...), `QUEUE_FULL`, `MESSAGE_TOO_BIG`,
/// `TIMEOUT` (still queued) or `CLOSED`.
///
/// # Safety
/// `client` is NULL or a live client; `json` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_send_json(
    client: *const switchboard_client,
    json: *const c_char,
) -> switchboard_result {
    with_ref(client, "client", |c| {
        // SAFETY: header contract.
        let message = unsafe { guard::json_arg(json, "json") }?;
        c.wait(c.client.send_json(message), c.send_timeout)
            .map(drop)
    })
}

/// The typed sends: `field` is the message's payload field (`sdp`, `candidate`).
///
/// # Safety
/// Pointers as in the header contract of the callers.
unsafe fn send_to(
    client: *const switchboard_client,
    to: *const c_char,
    payload_json: *const c_char,
    payload_name: &str,
    send: fn(&Client, &str, Value) -> Reply<()>,
) -> switchboard_result {
    with_ref(client, "client", |c| {
        // SAFETY: forwarded contract.
        let (to, payload) = unsafe {
            (
                guard::str_arg(to, "to")?,
                guard::json_arg(payload_json, payload_name)?,
            )
        };
        c.wait(send(&c.client, to, payload), c.send_timeout)
            .map(drop)
    })
}

/// Sends an SDP offer to peer `to` (in the one room the client is in; use
/// `send_json` with a `roomId` when in several). `sdp_json` is the `sdp`
/// field as JSON text: an object such as `{"type":"offer","sdp":"v=0..."}` or a
/// JSON string. Waits and fails as `switchboard_client_send_json`.
///
/// # Safety
/// `client` is NULL or a live client; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_send_offer(
    client: *const switchboard_client,
    to: *const c_char,
    sdp_json: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    unsafe {
        send_to(client, to, sdp_json, "sdp_json", |c, to, v| {
            c.send_offer(to, v)
        })
    }
}

/// Sends an SDP answer to peer `to`; as `switchboard_client_send_offer`.
///
/// # Safety
/// `client` is NULL or a live client; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_send_answer(
    client: *const switchboard_client,
    to: *const c_char,
    sdp_json: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    unsafe {
        send_to(client, to, sdp_json, "sdp_json", |c, to, v| {
            c.send_answer(to, v)
        })
    }
}

/// Sends an ICE candidate to peer `to`: `candidate_json` is the `candidate`
/// field as JSON text (`{"candidate":"candidate:...","sdpMid":"0"}`, or `null`
/// for the end of candidates). Waits and fails as `switchboard_client_send_json`.
///
/// # Safety
/// `client` is NULL or a live client; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_send_candidate(
    client: *const switchboard_client,
    to: *const c_char,
    candidate_json: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    unsafe {
        send_to(client, to, candidate_json, "candidate_json", |c, to, v| {
            c.send_candidate(to, v)
        })
    }
}

/// Sends application data (`data_json`: any JSON text) to peer `to`, or with
/// `to` NULL to every other peer of the room. Waits and fails as
/// `switchboard_client_send_json`.
///
/// # Safety
/// `client` is NULL or a live client; the strings are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_send_message(
    client: *const switchboard_client,
    to: *const c_char,
    data_json: *const c_char,
) -> switchboard_result {
    with_ref(client, "client", |c| {
        // SAFETY: header contract.
        let (to, data) = unsafe {
            (
                guard::opt_str_arg(to, "to")?,
                guard::json_arg(data_json, "data_json")?,
            )
        };
        c.wait(c.client.send(to, data), c.send_timeout).map(drop)
    })
}

/// Sends a chat line to the whole room (the sender gets it back too). Waits
/// and fails as `switchboard_client_send_json`.
///
/// # Safety
/// `client` is NULL or a live client; `content` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_chat(
    client: *const switchboard_client,
    content: *const c_char,
) -> switchboard_result {
    with_ref(client, "client", |c| {
        // SAFETY: header contract.
        let content = unsafe { guard::str_arg(content, "content") }?;
        c.wait(c.client.chat(content), c.send_timeout).map(drop)
    })
}

/// Sets the push callback: from now on it is called once per client event, in
/// order, on a thread the library owns (one per callback, never a runtime
/// thread), so it may block - events for it queue meanwhile (bounded by the
/// event capacity; past it the oldest are dropped) - and may call any function
/// of this client, `close` and `free` included (then it gets no further event).
/// Replaces the previous callback (which gets no event after this returns,
/// except one it may be running); NULL removes it. `userdata` must stay valid
/// until `switchboard_client_free` returns. To see the events of the first
/// connection too, set it in the options instead.
///
/// # Safety
/// `client` is NULL or a live client; `callback` is NULL or a function that may
/// be called from a library thread with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_set_event_callback(
    client: *const switchboard_client,
    callback: switchboard_event_callback,
    userdata: *mut c_void,
) -> switchboard_result {
    with_ref(client, "client", |c| {
        c.events.set_callback(callback, userdata)
    })
}

/// The pull API: waits up to `timeout_ms` (0 = do not wait) for the next client
/// event: every server message (`connected`, `room-info`, `user-joined`,
/// `offer`, ...; not `ack`/`pong`) and the connection states (`connecting`,
/// `open`, `reconnecting`, `resumed`, `rejoined`, `reconnect-failed`, `closed`),
/// every one since connect, in order. On success writes a new event to
/// `*event_out` (free it with `switchboard_event_free`). Returns
/// `SWITCHBOARD_RESULT_TIMEOUT` when none came in time, and
/// `SWITCHBOARD_RESULT_CLOSED` after the `closed` event was read.
///
/// # Safety
/// `client` is NULL or a live client; `event_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_next_event(
    client: *const switchboard_client,
    timeout_ms: u32,
    event_out: *mut *mut switchboard_event,
) -> switchboard_result {
    with_ref(client, "client", |c| {
        c.events.next_event(timeout_ms, event_out)
    })
}

/// Events the pull queue dropped because nobody read them in time. 0 if
/// `client` is NULL.
///
/// # Safety
/// `client` is NULL or a live client.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_events_missed(
    client: *const switchboard_client,
) -> u64 {
    guard::read(client, "client", 0, |c| c.events.missed())
}

/// Whether a session is established right now (false while reconnecting and
/// after close, or if `client` is NULL).
///
/// # Safety
/// `client` is NULL or a live client.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_is_connected(
    client: *const switchboard_client,
) -> bool {
    guard::read(client, "client", false, |c| c.client.is_connected())
}

/// Closes the client: no more reconnects; messages already queued are written
/// and their acknowledgements awaited for up to 1 s, then the WebSocket closes
/// (peers see `user-left` with `closed`). Returns once the client's task ended,
/// its last events (`closed`) were handed to the readers and the callback
/// threads ended. Idempotent; later sends fail with `SWITCHBOARD_RESULT_CLOSED`.
///
/// # Safety
/// `client` is NULL or a live client.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_close(
    client: *const switchboard_client,
) -> switchboard_result {
    with_ref(client, "client", |c| {
        c.close();
        Ok(())
    })
}

/// Closes the client if needed (as `switchboard_client_close`), joins every
/// thread it started, and frees it. NULL is allowed. Must not race with other
/// calls on `client`; may be called from the client's own event callback.
///
/// # Safety
/// `client` is NULL or a client the caller owns, not freed before.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_free(client: *mut switchboard_client) {
    guard::guard_void(|| {
        if client.is_null() {
            return;
        }
        // SAFETY: made by `Box::into_raw` in `connect_into`.
        let mut client = unsafe { Box::from_raw(client) };
        client.close();
        // Dropping the runtime waits for its threads.
        let runtime = client.runtime.take();
        drop(client);
        drop(runtime);
    });
}
