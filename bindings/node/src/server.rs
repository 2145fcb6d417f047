//! The native server: the core's listener (optional) and its hub, host
//! operations, the event pump, and the release of everything JS-bound on stop.

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::PromiseRaw;
use napi::Env;
use napi_derive::napi;
use serde_json::json;
use switchboard::auth::token_from_request;
use switchboard::hub::ConnectInfo;
use switchboard::{AuthRequest, Hub, Identity, Server, ServerHandle};
use tokio::sync::watch;

use crate::attach::NativeConnection;
use crate::auth::{JsAsyncFn, JsAuthHook, Releasable};
use crate::errors::{config, parse_json, to_napi};
use crate::events::{Pump, Source};
use crate::options::{apply, ServerOptions};

#[derive(Debug)]
struct Inner {
    hub: Hub,
    /// `None` in attach-only mode (`listen: null`).
    handle: Option<ServerHandle>,
    auth: Option<Releasable>,
    pump: Pump,
    /// Turns true in `release()`: the pump and `waitReleased()` end.
    released: watch::Sender<bool>,
}

/// What the attach mode knows about an upgrade request.
#[napi(object)]
#[derive(Debug, Default)]
pub struct HandshakeRequest {
    /// The query string (without `?`), where a `token=` may be.
    pub query: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    pub origin: Option<String>,
    pub ip: Option<String>,
    /// The request path without the query string.
    pub path: String,
}

/// The outcome of `authenticateHandshake`: refused (answer 401), or admitted
/// with the identity (if any) that `connect()` hands to the hub.
#[napi]
#[derive(Debug)]
pub struct HandshakeAuth {
    refused: bool,
    identity: Mutex<Option<Identity>>,
}

#[napi]
impl HandshakeAuth {
    #[napi(getter)]
    pub fn refused(&self) -> bool {
        self.refused
    }
}

/// A running Switchboard server (see `node/src/server.ts`).
#[napi]
#[derive(Debug)]
pub struct NativeServer {
    inner: Arc<Inner>,
}

/// Starts a server. `auth_hook` is the TypeScript wrapper of the user's hook.
#[napi]
pub async fn start_server(
    options: ServerOptions,
    #[napi(ts_arg_type = "((request: string) => Promise<string | null>) | undefined | null")]
    auth_hook: Option<JsAsyncFn>,
) -> napi::Result<NativeServer> {
    let mut builder = apply(Server::builder(), &options)?;
    let auth = auth_hook.map(Releasable::new);
    if let Some(a) = &auth {
        if options.auth_tokens.is_some() || options.jwt.is_some() {
            a.release();
            return Err(config(
                "choose one of `auth.tokens`, `auth.jwt` or `auth.hook`",
            ));
        }
        builder = builder.auth_hook(JsAuthHook(a.clone()));
    }
    let listen = options.listen.clone();
    if let Some(l) = &listen {
        builder = builder.listen(l.as_str());
    }
    let started = async {
        let server = builder.build().map_err(to_napi)?;
        Ok::<_, napi::Error>(match listen {
            Some(_) => {
                let handle = server.start().await.map_err(to_napi)?;
                (handle.hub().clone(), Some(handle))
            }
            None => (Hub::new(Arc::new(server.config().clone())), None),
        })
    }
    .await;
    let (hub, handle) = match started {
        Ok(v) => v,
        Err(e) => {
            if let Some(a) = &auth {
                a.release();
            }
            return Err(e);
        }
    };
    Ok(NativeServer {
        inner: Arc::new(Inner {
            hub,
            handle,
            auth,
            pump: Pump::new(),
            released: watch::channel(false).0,
        }),
    })
}

#[napi]
impl NativeServer {
    /// `ws://HOST:PORT/PATH` of the own listener, `null` in attach-only mode.
    #[napi(getter)]
    pub fn url(&self) -> Option<String> {
        self.inner.handle.as_ref().map(|h| h.url().to_owned())
    }

    /// The settings the attach mode enforces itself, as JSON.
    #[napi]
    pub fn attach_config(&self) -> String {
        let c = self.inner.hub.config();
        json!({
            "path": c.path,
            "maxMessageBytes": c.max_message_bytes,
            "maxConns": c.max_conns,
            "maxConnsPerIp": c.max_conns_per_ip,
            "heartbeatMs": c.heartbeat_interval.as_millis() as u64,
            "heartbeatTimeoutMs": c.heartbeat_timeout.as_millis() as u64,
            "allowedOrigins": c.allowed_origins,
            "drainTimeoutMs": c.drain_timeout.as_millis() as u64,
        })
        .to_string()
    }

    /// Starts receiving hub events (from now on) with an optional name filter.
    #[napi]
    pub fn subscribe(&self, kinds: Option<Vec<String>>) {
        self.set_event_filter(kinds);
        let hub = self.inner.hub.clone();
        self.inner.pump.set_source(|| Source::Hub(hub.subscribe()));
    }

    /// Which event names cross into JS (`null` = all). Relayed kinds nobody
    /// listens for are not even built by the hub (`Hub::set_relay_events`).
    #[napi]
    pub fn set_event_filter(&self, kinds: Option<Vec<String>>) {
        match &kinds {
            Some(k) => {
                let names: Vec<&str> = k.iter().map(String::as_str).collect();
                self.inner.hub.set_relay_events(Some(&names));
            }
            None => self.inner.hub.set_relay_events(None),
        }
        self.inner.pump.set_filter(kinds);
    }

    /// Events lost because JS fell behind the `eventBuffer` bound.
    #[napi(getter)]
    pub fn missed_events(&self) -> f64 {
        self.inner.pump.missed() as f64
    }

    /// The next batch of events (a JSON array), or `null` after `release()`.
    #[napi]
    pub fn next_events<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, Option<String>>> {
        let inner = self.inner.clone();
        env.spawn_future(async move {
            let stop = inner.released.subscribe();
            Ok(inner.pump.next(stop).await)
        })
    }

    /// Sends a host message (JSON text of an object with a `type`) to one peer.
    #[napi]
    pub fn send(&self, room_id: String, user_id: String, message: String) -> napi::Result<()> {
        let msg = parse_json(&message)?;
        self.inner
            .hub
            .send(&room_id, &user_id, &msg)
            .map_err(to_napi)
    }

    /// Sends a host message to every peer of a room; returns how many got it.
    #[napi]
    pub fn broadcast(&self, room_id: String, message: String) -> napi::Result<u32> {
        let msg = parse_json(&message)?;
        self.inner
            .hub
            .broadcast(&room_id, &msg)
            .map(|n| n as u32)
            .map_err(to_napi)
    }

    /// Removes a peer (`user-left` with `kicked`, its connection closes with 4403).
    #[napi]
    pub fn kick(&self, room_id: String, user_id: String) -> napi::Result<()> {
        napi::bindgen_prelude::within_runtime_if_available(|| {
            self.inner.hub.kick(&room_id, &user_id).map_err(to_napi)
        })
    }

    /// Every room with its peers, as JSON.
    #[napi]
    pub fn rooms(&self) -> String {
        serde_json::to_string(&self.inner.hub.rooms()).unwrap_or_else(|_| "[]".to_owned())
    }

    /// The peers of one room as JSON (`[]` for an unknown room).
    #[napi]
    pub fn peers(&self, room_id: String) -> String {
        let peers = self.inner.hub.peers(&room_id).unwrap_or_default();
        serde_json::to_string(&peers).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Open connections on the own listener.
    #[napi(getter)]
    pub fn connection_count(&self) -> u32 {
        self.inner
            .handle
            .as_ref()
            .map_or(0, |h| h.connection_count() as u32)
    }

    #[napi(getter)]
    pub fn draining(&self) -> bool {
        self.inner.hub.is_draining()
    }

    /// Whether connections must authenticate (an auth mode is configured).
    #[napi(getter)]
    pub fn auth_required(&self) -> bool {
        self.inner.hub.auth_required()
    }

    /// The auth decision for an attach-mode upgrade, before it happens (the
    /// token from `?token=` or `Authorization: Bearer`, as the own listener).
    #[napi]
    pub fn authenticate_handshake<'e>(
        &self,
        env: &'e Env,
        request: HandshakeRequest,
    ) -> napi::Result<PromiseRaw<'e, HandshakeAuth>> {
        let hub = self.inner.hub.clone();
        env.spawn_future(async move {
            let auth_request = AuthRequest {
                token: token_from_request(
                    request.query.as_deref(),
                    request.authorization.as_deref(),
                ),
                origin: request.origin,
                ip: request.ip.as_deref().and_then(|ip| ip.parse().ok()),
                path: request.path,
            };
            let (refused, identity) = match hub.authenticate_handshake(&auth_request).await {
                Ok(identity) => (false, identity),
                Err(_) => (true, None),
            };
            Ok(HandshakeAuth {
                refused,
                identity: Mutex::new(identity),
            })
        })
    }

    /// A connection of the attach mode (a JS `ws` socket) on this hub.
    #[napi]
    pub fn connect(
        &self,
        request: HandshakeRequest,
        auth: Option<&HandshakeAuth>,
    ) -> NativeConnection {
        let info = ConnectInfo {
            ip: request.ip.as_deref().and_then(|ip| ip.parse().ok()),
            origin: request.origin,
            path: request.path,
            token: None,
            identity: auth
                .and_then(|a| a.identity.lock().unwrap_or_else(|p| p.into_inner()).take()),
        };
        let hub = &self.inner.hub;
        NativeConnection::new(napi::bindgen_prelude::within_runtime_if_available(|| {
            hub.connect(info)
        }))
    }

    /// Graceful drain: every client (own listener and attached) gets `draining`
    /// and a 1001 close; the own listener waits for its connections up to the
    /// drain timeout. Attached sockets are awaited by the TypeScript layer.
    #[napi]
    pub fn shutdown<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, ()>> {
        let inner = self.inner.clone();
        env.spawn_future(async move {
            match &inner.handle {
                Some(h) => h.shutdown().await,
                None => inner.hub.drain(),
            }
            Ok(())
        })
    }

    /// Ends the event pump and `waitReleased()`, and releases the auth hook, so
    /// nothing of this server keeps the process alive. Idempotent.
    #[napi]
    pub fn release(&self) {
        if let Some(a) = &self.inner.auth {
            a.release();
        }
        self.inner.released.send_replace(true);
    }

    /// Resolves on `release()`: pending, it keeps the process alive while the
    /// server runs, as a listening socket does.
    #[napi]
    pub fn wait_released<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, ()>> {
        let mut rx = self.inner.released.subscribe();
        env.spawn_future(async move {
            let _ = rx.wait_for(|r| *r).await;
            Ok(())
        })
    }
}
