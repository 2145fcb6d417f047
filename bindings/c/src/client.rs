//! The client half of the C API: `switchboard_client_options` (the Rust
//! `ClientBuilder`'s options) and `switchboard_client` (connect, join, leave,
//! sends, events, close, free) with the core's reconnect and resume, each
//! client on its own one-thread runtime.

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use sb::{Client, ClientBuilder, EventStream, Reply};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::event::{
    switchboard_event, switchboard_event_callback, EventCallbackFn, EventHub, Fanout,
};
use crate::guard::{
    self, count, millis, set, string, with_mut, with_ref, FfiError, FfiResult, UserData,
};
use crate::switchboard_result;

/// Client options being built: the core client's defaults until set. Made by
/// `switchboard_client_options_new`, consumed by
/// `switchboard_client_connect_with_options` (or freed with
/// `switchboard_client_options_free`). One thread at a time.
#[derive(Debug)]
pub struct switchboard_client_options {
    user_id: Option<String>,
    token: Option<String>,
    display_name: Option<String>,
    metadata: Option<Value>,
    subprotocol: Option<Option<String>>,
    backoff: Option<(Duration, Duration)>,
    max_reconnect_attempts: Option<Option<u32>>,
    stable_after: Option<Duration>,
    heartbeat_interval: Option<Duration>,
    heartbeat_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    queue_limits: Option<(usize, usize)>,
    max_in_flight: Option<usize>,
    max_message_bytes: Option<usize>,
    event_capacity: usize,
    send_timeout: Duration,
    event_callback: Option<(EventCallbackFn, UserData)>,
    token_callback: Option<(TokenCallbackFn, UserData)>,
}

impl Default for switchboard_client_options {
    fn default() -> Self {
        switchboard_client_options {
            user_id: None,
            token: None,
            display_name: None,
            metadata: None,
            subprotocol: None,
            backoff: None,
            max_reconnect_attempts: None,
            stable_after: None,
            heartbeat_interval: None,
            heartbeat_timeout: None,
            connect_timeout: None,
            queue_limits: None,
            max_in_flight: None,
            max_message_bytes: None,
            event_capacity: 1024,
            send_timeout: Duration::from_secs(10),
            event_callback: None,
            token_callback: None,
        }
    }
}

impl switchboard_client_options {
    /// The core builder; `runtime` runs a token callback on its blocking threads.
    fn builder(&self, url: &str, runtime: &tokio::runtime::Handle) -> ClientBuilder {
        let o = self;
        let mut b = Client::builder(url).event_capacity(o.event_capacity);
        if let Some(v) = &o.user_id {
            b = b.user_id(v);
        }
        if let Some(v) = &o.token {
            b = b.token(v);
        }
        if let Some(v) = &o.display_name {
            b = b.display_name(v);
        }
        if let Some(v) = &o.metadata {
            b = b.metadata(v.clone());
        }
        if let Some(v) = &o.subprotocol {
            b = b.subprotocol(v.as_deref());
        }
        if let Some((base, max)) = o.backoff {
            b = b.reconnect_backoff(base, max);
        }
        if let Some(v) = o.max_reconnect_attempts {
            b = b.max_reconnect_attempts(v);
        }
        if let Some(v) = o.stable_after {
            b = b.stable_after(v);
        }
        if let Some(v) = o.heartbeat_interval {
            b = b.heartbeat_interval(v);
        }
        if let Some(v) = o.heartbeat_timeout {
            b = b.heartbeat_timeout(v);
        }
        if let Some(v) = o.connect_timeout {
            b = b.connect_timeout(v);
        }
        if let Some((messages, bytes)) = o.queue_limits {
            b = b.queue_limits(messages, bytes);
        }
        if let Some(v) = o.max_in_flight {
            b = b.max_in_flight(v);
        }
        if let Some(v) = o.max_message_bytes {
            b = b.max_message_bytes(v);
        }
        // Last: a token callback replaces a fixed token.
        if let Some((callback, userdata)) = o.token_callback {
            let runtime = runtime.clone();
            b = b.token_provider(move || ask_token(&runtime, callback, userdata));
        }
        b
    }
}

/// New client options with the core client's defaults (offers the
/// `webrtc-signaling` subprotocol; reconnects forever with backoff 1 s..30 s;
/// heartbeat 15 s + 10 s; connect timeout 10 s; outbox 256 messages / 1 MiB;
/// 1024 buffered events per reader; sends wait up to 10 s for their
/// acknowledgement). The caller owns them: pass them to
/// `switchboard_client_connect_with_options` (which consumes them) or free
/// them with `switchboard_client_options_free`. NULL only if the library panicked.
#[no_mangle]
pub extern "C" fn switchboard_client_options_new() -> *mut switchboard_client_options {
    guard::guard_or(std::ptr::null_mut(), || Ok(Box::into_raw(Box::default())))
}

/// Frees options that were not passed to `switchboard_client_connect_with_options`.
/// NULL is allowed.
///
/// # Safety
/// `opts` is NULL or options the caller owns, not freed or consumed before.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_free(opts: *mut switchboard_client_options) {
    guard::guard_void(|| {
        if !opts.is_null() {
            // SAFETY: made by `Box::into_raw` in `switchboard_client_options_new`.
            drop(unsafe { Box::from_raw(opts) });
        }
    });
}

/// The user id sent with every `join` (and every re-join after a lost
/// session). Without one the server assigns an id, which the client keeps.
///
/// # Safety
/// `opts` is NULL or live options; `user_id` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_user_id(
    opts: *mut switchboard_client_options,
    user_id: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(user_id, "user_id") };
    with_mut(opts, "opts", |o| set(&mut o.user_id, Some(value?)))
}

/// A token sent as `Authorization: Bearer ...` on every connection.
///
/// # Safety
/// `opts` is NULL or live options; `token` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_token(
    opts: *mut switchboard_client_options,
    token: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(token, "token") };
    with_mut(opts, "opts", |o| set(&mut o.token, Some(value?)))
}

/// `displayName` sent with every `join`.
///
/// # Safety
/// `opts` is NULL or live options; `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_display_name(
    opts: *mut switchboard_client_options,
    name: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { string(name, "name") };
    with_mut(opts, "opts", |o| set(&mut o.display_name, Some(value?)))
}

/// `metadata` sent with every `join`: any JSON text.
///
/// # Safety
/// `opts` is NULL or live options; `metadata_json` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_metadata_json(
    opts: *mut switchboard_client_options,
    metadata_json: *const c_char,
) -> switchboard_result {
    // SAFETY: header contract.
    let value = unsafe { guard::json_arg(metadata_json, "metadata_json") };
    with_mut(opts, "opts", |o| set(&mut o.metadata, Some(value?)))
}

/// The WebSocket subprotocol to offer (default `webrtc-signaling`); NULL
/// offers none (the server speaks JSON either way).
///
/// # Safety
/// `opts` is NULL or live options; `subprotocol` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_subprotocol(
    opts: *mut switchboard_client_options,
    subprotocol: *const c_char,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        // SAFETY: header contract.
        let p = unsafe { guard::opt_str_arg(subprotocol, "subprotocol") }?;
        o.subprotocol = Some(p.map(str::to_owned));
        Ok(())
    })
}

/// Reconnect backoff: attempt `n` waits a random time in
/// `[0, min(max_ms, base_ms * 2^(n-1))]` (default 1000 and 30000; 0 < base <= max).
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_reconnect_backoff_ms(
    opts: *mut switchboard_client_options,
    base_ms: u64,
    max_ms: u64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        set(&mut o.backoff, Some((millis(base_ms), millis(max_ms))))
    })
}

/// Reconnect attempts in a row before giving up with `reconnect-failed`;
/// negative (the default) retries forever, 0 never reconnects.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_max_reconnect_attempts(
    opts: *mut switchboard_client_options,
    attempts: i64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        let attempts = if attempts < 0 {
            None
        } else {
            Some(
                u32::try_from(attempts)
                    .map_err(|_| FfiError::config("max_reconnect_attempts is too large"))?,
            )
        };
        o.max_reconnect_attempts = Some(attempts);
        Ok(())
    })
}

/// A connection that stayed up this long (default 10000 ms) resets the
/// attempt counter.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_stable_after_ms(
    opts: *mut switchboard_client_options,
    ms: u64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| set(&mut o.stable_after, Some(millis(ms))))
}

/// The client sends a `ping` this often (default 15000 ms, positive).
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_heartbeat_ms(
    opts: *mut switchboard_client_options,
    ms: u64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        set(&mut o.heartbeat_interval, Some(millis(ms)))
    })
}

/// With no frame from the server for heartbeat + this (default 10000 ms), the
/// connection is dropped and the client reconnects.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_heartbeat_timeout_ms(
    opts: *mut switchboard_client_options,
    ms: u64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        set(&mut o.heartbeat_timeout, Some(millis(ms)))
    })
}

/// Bound on one connection attempt (TCP, WebSocket handshake, the server's
/// `connected`), default 10000 ms.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_connect_timeout_ms(
    opts: *mut switchboard_client_options,
    ms: u64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        set(&mut o.connect_timeout, Some(millis(ms)))
    })
}

/// The outbox bound (default 256 messages and 1048576 bytes not yet
/// acknowledged); a send past it fails with `SWITCHBOARD_RESULT_QUEUE_FULL`
/// and is not queued.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_queue_limits(
    opts: *mut switchboard_client_options,
    max_messages: u64,
    max_bytes: u64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        o.queue_limits = Some((
            count(max_messages, "max_messages")?,
            count(max_bytes, "max_bytes")?,
        ));
        Ok(())
    })
}

/// Messages written and not yet acknowledged at once (default 32); keep it
/// below the server's rate-limit burst.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_max_in_flight(
    opts: *mut switchboard_client_options,
    messages: u64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        set(
            &mut o.max_in_flight,
            Some(count(messages, "max_in_flight")?),
        )
    })
}

/// Largest message the client sends (default 65536); a longer one fails with
/// `SWITCHBOARD_RESULT_MESSAGE_TOO_BIG`.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_max_message_bytes(
    opts: *mut switchboard_client_options,
    bytes: u64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        set(
            &mut o.max_message_bytes,
            Some(count(bytes, "max_message_bytes")?),
        )
    })
}

/// Events buffered per reader (default 1024, positive): the pull queue and
/// the callback's queue. A reader further behind loses the oldest events
/// (counted by `switchboard_client_events_missed`).
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_event_capacity(
    opts: *mut switchboard_client_options,
    events: u64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        let n = count(events, "event_capacity")?;
        if n == 0 {
            return Err(FfiError::config("event_capacity must be at least 1"));
        }
        o.event_capacity = n;
        Ok(())
    })
}

/// How long the send functions (`send_json`, `send_offer`, ...) wait for the
/// server's acknowledgement (default 10000 ms). 0: they return as soon as the
/// message is queued, and a server error for it arrives as an `error` event
/// whose `ref` is the message id.
///
/// # Safety
/// `opts` is NULL or live options.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_send_timeout_ms(
    opts: *mut switchboard_client_options,
    ms: u64,
) -> switchboard_result {
    with_mut(opts, "opts", |o| set(&mut o.send_timeout, millis(ms)))
}

/// A push callback that sees every event from the first (`connecting`), called
/// on a library thread as described at `switchboard_client_set_event_callback`.
/// `userdata` must stay valid until `switchboard_client_free` returns. NULL
/// `callback` removes it.
///
/// # Safety
/// `opts` is NULL or live options; `callback` is NULL or a function that may be
/// called from a library thread with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_event_callback(
    opts: *mut switchboard_client_options,
    callback: switchboard_event_callback,
    userdata: *mut c_void,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        set(
            &mut o.event_callback,
            callback.map(|cb| (cb, UserData(userdata))),
        )
    })
}

/// A request for a token, handed to a `switchboard_token_callback`. Complete
/// it exactly once with `switchboard_token_request_provide` or
/// `switchboard_token_request_fail` (each frees it), from any thread, during
/// the callback or later; the connection attempt waits up to the connect timeout.
#[derive(Debug)]
pub struct switchboard_token_request {
    reply: oneshot::Sender<Option<String>>,
}

/// A token provider, asked before every connection attempt (the first and each
/// reconnect), so an expiring token can be refreshed. It runs on a blocking
/// thread of the client's runtime, so it may block (an HTTP call to an identity
/// provider). When the server refuses a token, the client reconnects only if
/// the callback then provides a different one.
pub type switchboard_token_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, request: *mut switchboard_token_request)>;

/// The function of a [`switchboard_token_callback`].
type TokenCallbackFn = unsafe extern "C" fn(*mut c_void, *mut switchboard_token_request);

/// Runs the C token callback on a blocking thread; its answer or refusal.
fn ask_token(
    runtime: &tokio::runtime::Handle,
    callback: TokenCallbackFn,
    userdata: UserData,
) -> impl std::future::Future<Output = sb::Result<String>> {
    let (reply, answer) = oneshot::channel();
    let request = Box::new(switchboard_token_request { reply });
    // Unrun (runtime shutting down), the request drops and the answer fails.
    drop(runtime.spawn_blocking(move || {
        // Rebinds the whole wrapper, so the closure captures `UserData` (Send).
        let userdata = userdata;
        // SAFETY: registered together by the C side, callable from a library
        // thread; the request is handed over, freed by provide/fail.
        unsafe { callback(userdata.0, Box::into_raw(request)) };
    }));
    async move {
        match answer.await {
            Ok(Some(token)) => Ok(token),
            _ => Err(sb::Error::protocol(
                sb::ErrorCode::Unauthorized,
                "the token callback gave no token",
            )),
        }
    }
}

/// Answers a token request with `token`. Consumes and frees `request` whatever
/// the result (on a bad `token` the attempt fails as if refused).
///
/// # Safety
/// `request` is NULL or a request not yet completed; `token` is NULL or
/// NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_token_request_provide(
    request: *mut switchboard_token_request,
    token: *const c_char,
) -> switchboard_result {
    guard::guard(|| {
        if request.is_null() {
            return Err(guard::null_arg("request"));
        }
        // SAFETY: made by `Box::into_raw` in `ask_token`, completed once.
        let request = unsafe { Box::from_raw(request) };
        // SAFETY: header contract.
        let token = unsafe { string(token, "token") };
        // The attempt may have given up (connect timeout): nothing to tell then.
        let _ = request.reply.send(token.as_ref().ok().cloned());
        token.map(drop)
    })
}

/// Refuses a token request: this connection attempt fails (the first
/// `connect` returns `SWITCHBOARD_RESULT_UNAUTHORIZED`; a reconnect counts as
/// failed and is retried later). Consumes and frees `request`; NULL is allowed.
///
/// # Safety
/// `request` is NULL or a request not yet completed.
#[no_mangle]
pub unsafe extern "C" fn switchboard_token_request_fail(request: *mut switchboard_token_request) {
    guard::guard_void(|| {
        if !request.is_null() {
            // SAFETY: made by `Box::into_raw` in `ask_token`, completed once.
            let request = unsafe { Box::from_raw(request) };
            let _ = request.reply.send(None);
        }
    });
}

/// A token provider instead of a fixed token (it wins over
/// `switchboard_client_options_set_token`; see `switchboard_token_callback`). `userdata` is passed to every call and must
/// stay valid until `switchboard_client_free` returns. NULL removes it.
///
/// # Safety
/// `opts` is NULL or live options; `callback` is NULL or a function that may be
/// called from a library thread with `userdata`.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_token_callback(
    opts: *mut switchboard_client_options,
    callback: switchboard_token_callback,
    userdata: *mut c_void,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        set(
            &mut o.token_callback,
            callback.map(|cb| (cb, UserData(userdata))),
        )
    })
}

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
