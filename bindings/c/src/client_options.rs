//! `switchboard_client_options`: every option of the Rust `ClientBuilder`, set
//! from C, and the token callback (`switchboard_token_request`) asked before
//! every connection attempt.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use sb::{Client, ClientBuilder};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::event::{switchboard_event_callback, EventCallbackFn};
use crate::guard::{self, count, millis, set, string, with_mut, FfiError, UserData};
use crate::switchboard_result;

/// Client options being built: the core client's defaults until set. Made by
/// `switchboard_client_options_new`, consumed by
/// `switchboard_client_connect_with_options` (or freed with
/// `switchboard_client_options_free`). One thread at a time.
#[derive(Debug)]
pub struct switchboard_client_options {
    pub(crate) user_id: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) metadata: Option<Value>,
    pub(crate) subprotocol: Option<Option<String>>,
    pub(crate) backoff: Option<(Duration, Duration)>,
    pub(crate) max_reconnect_attempts: Option<Option<u32>>,
    pub(crate) stable_after: Option<Duration>,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) heartbeat_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) queue_limits: Option<(usize, usize)>,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) max_message_bytes: Option<usize>,
    pub(crate) event_capacity: usize,
    pub(crate) send_timeout: Duration,
    pub(crate) event_callback: Option<(EventCallbackFn, UserData)>,
    pub(crate) token_callback: Option<(TokenCallbackFn, UserData)>,
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
    pub(crate) fn builder(&self, url: &str, runtime: &tokio::runtime::Handle) -> ClientBuilder {
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

/// How messages travel: `"json"` (default) or `"msgpack"` (MessagePack binary
/// frames; offers the `webrtc-signaling.msgpack` subprotocol). Other values
/// are `SWITCHBOARD_RESULT_INVALID_ARGUMENT`.
///
/// # Safety
/// `opts` is NULL or live options; `encoding` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn switchboard_client_options_set_encoding(
    opts: *mut switchboard_client_options,
    encoding: *const c_char,
) -> switchboard_result {
    with_mut(opts, "opts", |o| {
        // SAFETY: header contract.
        let protocol = match unsafe { guard::str_arg(encoding, "encoding") }? {
            "json" => sb::protocol::SUBPROTOCOL_JSON,
            "msgpack" => sb::protocol::SUBPROTOCOL_MSGPACK,
            _ => {
                return Err(FfiError::new(
                    switchboard_result::InvalidArgument,
                    "encoding is \"json\" or \"msgpack\"",
                ))
            }
        };
        o.subprotocol = Some(Some(protocol.to_owned()));
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
pub(crate) fn ask_token(
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
