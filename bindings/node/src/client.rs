//! The native client: the core client (reconnect, resume, outbox) with every
//! send queued synchronously in the JS call, replies as promises, and events
//! pulled in batches until the client ends.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::PromiseRaw;
use napi::Env;
use napi_derive::napi;
use serde_json::Value;
use switchboard::{Client, Error, Reply};
use tokio::sync::watch;

use crate::auth::{JsAsyncFn, Releasable};
use crate::errors::{config, parse_json, to_napi};
use crate::events::{Pump, Source};

/// Options of `Client.connect()`; the TypeScript layer documents each one.
#[napi(object)]
#[derive(Debug, Default)]
pub struct ClientOptions {
    pub user_id: Option<String>,
    pub token: Option<String>,
    pub display_name: Option<String>,
    /// JSON text.
    pub metadata: Option<String>,
    /// `""` offers no subprotocol.
    pub subprotocol: Option<String>,
    /// `"json"` (default) or `"msgpack"`.
    pub encoding: Option<String>,
    pub reconnect_base_ms: Option<f64>,
    pub reconnect_max_ms: Option<f64>,
    /// Absent: retry forever.
    pub max_reconnect_attempts: Option<f64>,
    pub stable_after_ms: Option<f64>,
    pub heartbeat_interval_ms: Option<f64>,
    pub heartbeat_timeout_ms: Option<f64>,
    pub connect_timeout_ms: Option<f64>,
    pub queue_max_messages: Option<f64>,
    pub queue_max_bytes: Option<f64>,
    pub max_in_flight: Option<f64>,
    pub max_message_bytes: Option<f64>,
    pub event_capacity: Option<f64>,
}

fn int(name: &str, v: Option<f64>) -> napi::Result<Option<u64>> {
    match v {
        None => Ok(None),
        Some(v) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 1e15 => Ok(Some(v as u64)),
        Some(v) => Err(config(format!(
            "`{name}` must be a non-negative integer, got {v}"
        ))),
    }
}

fn ms(name: &str, v: Option<f64>) -> napi::Result<Option<Duration>> {
    Ok(int(name, v)?.map(Duration::from_millis))
}

#[derive(Debug)]
struct Inner {
    client: Client,
    token_provider: Option<Releasable>,
    pump: Pump,
    /// Never signalled: the client's event stream ends by itself after `closed`.
    no_stop: watch::Sender<bool>,
}

/// A connected client (see `node/src/client.ts`).
#[napi]
#[derive(Debug)]
pub struct NativeClient {
    inner: Arc<Inner>,
}

/// Connects; resolves once the server's `connected` arrived.
#[napi]
pub async fn connect_client(
    url: String,
    options: ClientOptions,
    #[napi(ts_arg_type = "((arg: string) => Promise<string | null>) | undefined | null")]
    token_provider: Option<JsAsyncFn>,
) -> napi::Result<NativeClient> {
    let provider = token_provider.map(Releasable::new);
    let result = connect(url, &options, provider.clone()).await;
    if result.is_err() {
        if let Some(p) = &provider {
            p.release();
        }
    }
    let client = result?;
    let pump = Pump::new();
    // The first `events()` call gets every event since `connect()` began.
    pump.set_source(|| Source::Client(client.events()));
    Ok(NativeClient {
        inner: Arc::new(Inner {
            client,
            token_provider: provider,
            pump,
            no_stop: watch::channel(false).0,
        }),
    })
}

async fn connect(
    url: String,
    o: &ClientOptions,
    provider: Option<Releasable>,
) -> napi::Result<Client> {
    let mut b = Client::builder(url);
    if let Some(u) = &o.user_id {
        b = b.user_id(u.as_str());
    }
    if let Some(t) = &o.token {
        b = b.token(t.as_str());
    }
    if let Some(p) = provider {
        b = b.token_provider(move || {
            let p = p.clone();
            async move {
                match p.call(String::new()).await {
                    Ok(Some(token)) => Ok(token),
                    Ok(None) => Err(Error::Config("the token provider gave no token".to_owned())),
                    Err(e) => Err(Error::Config(format!("the token provider failed: {e}"))),
                }
            }
        });
    }
    if let Some(d) = &o.display_name {
        b = b.display_name(d.as_str());
    }
    if let Some(m) = &o.metadata {
        b = b.metadata(parse_json(m)?);
    }
    if let Some(s) = &o.subprotocol {
        b = b.subprotocol((!s.is_empty()).then_some(s.as_str()));
    }
    match o.encoding.as_deref() {
        None => {}
        Some("json") => b = b.encoding(switchboard::Encoding::Json),
        Some("msgpack") => b = b.encoding(switchboard::Encoding::MessagePack),
        Some(other) => {
            return Err(crate::errors::config(format!(
                "`encoding` must be \"json\" or \"msgpack\", not {other:?}"
            )))
        }
    }
    let base = ms("reconnectBaseMs", o.reconnect_base_ms)?;
    let max = ms("reconnectMaxMs", o.reconnect_max_ms)?;
    if base.is_some() || max.is_some() {
        let base = base.unwrap_or(Duration::from_secs(1));
        b = b.reconnect_backoff(base, max.unwrap_or(Duration::from_secs(30)).max(base));
    }
    if let Some(n) = int("maxReconnectAttempts", o.max_reconnect_attempts)? {
        b = b.max_reconnect_attempts(Some(u32::try_from(n).unwrap_or(u32::MAX)));
    }
    if let Some(d) = ms("stableAfterMs", o.stable_after_ms)? {
        b = b.stable_after(d);
    }
    if let Some(d) = ms("heartbeatIntervalMs", o.heartbeat_interval_ms)? {
        b = b.heartbeat_interval(d);
    }
    if let Some(d) = ms("heartbeatTimeoutMs", o.heartbeat_timeout_ms)? {
        b = b.heartbeat_timeout(d);
    }
    if let Some(d) = ms("connectTimeoutMs", o.connect_timeout_ms)? {
        b = b.connect_timeout(d);
    }
    let qm = int("queueMaxMessages", o.queue_max_messages)?;
    let qb = int("queueMaxBytes", o.queue_max_bytes)?;
    if qm.is_some() || qb.is_some() {
        b = b.queue_limits(
            qm.map_or(256, |v| v as usize),
            qb.map_or(1024 * 1024, |v| v as usize),
        );
    }
    if let Some(n) = int("maxInFlight", o.max_in_flight)? {
        b = b.max_in_flight(n as usize);
    }
    if let Some(n) = int("maxMessageBytes", o.max_message_bytes)? {
        b = b.max_message_bytes(n as usize);
    }
    if let Some(n) = int("eventCapacity", o.event_capacity)? {
        b = b.event_capacity(n as usize);
    }
    b.connect().await.map_err(to_napi)
}

/// Awaits a reply in the runtime; `map` turns its value into what JS gets.
fn settle<'e, T: Send + 'static, U: napi::bindgen_prelude::ToNapiValue + Send + 'static>(
    env: &'e Env,
    reply: Reply<T>,
    map: fn(T) -> U,
) -> napi::Result<PromiseRaw<'e, U>> {
    env.spawn_future(async move { reply.await.map(map).map_err(to_napi) })
}

fn unit(_: ()) {}

fn json_text(v: Value) -> String {
    v.to_string()
}

#[napi]
impl NativeClient {
    /// Joins a room; resolves with the `room-info` message as JSON.
    #[napi]
    pub fn join<'e>(&self, env: &'e Env, room_id: String) -> napi::Result<PromiseRaw<'e, String>> {
        settle(env, self.inner.client.join(&room_id), json_text)
    }

    /// Leaves one room, or every room without `room_id`.
    #[napi]
    pub fn leave<'e>(
        &self,
        env: &'e Env,
        room_id: Option<String>,
    ) -> napi::Result<PromiseRaw<'e, ()>> {
        let reply = match &room_id {
            Some(r) => self.inner.client.leave(r),
            None => self.inner.client.leave_all(),
        };
        settle(env, reply, unit)
    }

    /// Queues a signaling message whose payload is JSON text, at once, and
    /// returns the promise of its acknowledgement.
    fn signal<'e>(
        &self,
        env: &'e Env,
        payload: &str,
        send: impl FnOnce(&Client, Value) -> Reply<()>,
    ) -> napi::Result<PromiseRaw<'e, ()>> {
        let payload = parse_json(payload)?;
        settle(env, send(&self.inner.client, payload), unit)
    }

    /// `sdp` is JSON text (an object or a string).
    #[napi]
    pub fn send_offer<'e>(
        &self,
        env: &'e Env,
        to: String,
        sdp: String,
    ) -> napi::Result<PromiseRaw<'e, ()>> {
        self.signal(env, &sdp, |c, v| c.send_offer(&to, v))
    }

    #[napi]
    pub fn send_answer<'e>(
        &self,
        env: &'e Env,
        to: String,
        sdp: String,
    ) -> napi::Result<PromiseRaw<'e, ()>> {
        self.signal(env, &sdp, |c, v| c.send_answer(&to, v))
    }

    #[napi]
    pub fn send_candidate<'e>(
        &self,
        env: &'e Env,
        to: String,
        candidate: String,
    ) -> napi::Result<PromiseRaw<'e, ()>> {
        self.signal(env, &candidate, |c, v| c.send_candidate(&to, v))
    }

    /// Application data (JSON text) to one peer, or the whole room without `to`.
    #[napi]
    pub fn send<'e>(
        &self,
        env: &'e Env,
        to: Option<String>,
        data: String,
    ) -> napi::Result<PromiseRaw<'e, ()>> {
        self.signal(env, &data, |c, v| c.send(to.as_deref(), v))
    }

    #[napi]
    pub fn chat<'e>(&self, env: &'e Env, content: String) -> napi::Result<PromiseRaw<'e, ()>> {
        settle(env, self.inner.client.chat(&content), unit)
    }

    /// Any client message (JSON text); resolves with JSON (`room-info` or `null`).
    #[napi]
    pub fn send_json<'e>(
        &self,
        env: &'e Env,
        message: String,
    ) -> napi::Result<PromiseRaw<'e, String>> {
        let message = parse_json(&message)?;
        settle(env, self.inner.client.send_json(message), json_text)
    }

    /// The next batch of events (a JSON array), `null` once the client ended.
    #[napi]
    pub fn next_events<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, Option<String>>> {
        let inner = self.inner.clone();
        env.spawn_future(async move {
            let stop = inner.no_stop.subscribe();
            Ok(inner.pump.next(stop).await)
        })
    }

    /// Closes for good and releases the token provider.
    #[napi]
    pub fn close<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, ()>> {
        let inner = self.inner.clone();
        env.spawn_future(async move {
            inner.client.close().await;
            if let Some(p) = &inner.token_provider {
                p.release();
            }
            Ok(())
        })
    }

    /// Releases the token provider without waiting (the client ended by itself).
    #[napi]
    pub fn release(&self) {
        if let Some(p) = &self.inner.token_provider {
            p.release();
        }
    }

    #[napi(getter)]
    pub fn session_id(&self) -> Option<String> {
        self.inner.client.session_id()
    }

    #[napi(getter)]
    pub fn connected(&self) -> bool {
        self.inner.client.is_connected()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.inner.client.is_closed()
    }

    #[napi(getter)]
    pub fn rooms(&self) -> Vec<String> {
        self.inner.client.rooms()
    }

    #[napi(getter)]
    pub fn pending(&self) -> u32 {
        self.inner.client.pending() as u32
    }

    #[napi(getter)]
    pub fn missed_events(&self) -> f64 {
        self.inner.pump.missed() as f64
    }
}
