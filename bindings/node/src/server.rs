//! The native server: the core's listener (optional) and its hub, host
//! operations, the event pump, and the release of everything JS-bound on stop.

use std::sync::Arc;

use napi::bindgen_prelude::{within_runtime_if_available, Buffer, PromiseRaw};
use napi::Env;
use napi_derive::napi;
use serde_json::json;
use switchboard::edge::{UpgradePaths, UpgradeRequest};
use switchboard::{Edge, Server, ServerHandle};
use tokio::sync::watch;

use crate::attach::{Admission, UpgradeFacts};
use crate::auth::{JsAsyncFn, JsAuthHook, Releasable};
use crate::errors::{config, parse_json, to_napi};
use crate::events::{Pump, Source};
use crate::options::{apply, ServerOptions};

#[derive(Debug)]
struct Inner {
    /// The connection kit: admission, counts and the hub, shared by the own
    /// listener and every attached `http.Server`.
    edge: Edge,
    /// `None` in attach-only mode (`listen: null`).
    handle: Option<ServerHandle>,
    auth: Option<Releasable>,
    pump: Pump,
    /// Turns true in `release()`: the pump and `waitReleased()` end.
    released: watch::Sender<bool>,
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
                (handle.edge().clone(), Some(handle))
            }
            None => {
                let c = server.config();
                if c.tls.is_some() {
                    // The application's https server terminates TLS in attach mode.
                    return Err(config(
                        "`tls` needs `listen`; attach to an https server instead",
                    ));
                }
                if c.demo || c.serve_client {
                    return Err(config(
                        "`demo`/`serveClient` need `listen`: the app serves its own pages",
                    ));
                }
                // `redisUrl` makes this a cluster node, as with a listener.
                (Edge::new(server.config().clone()).map_err(to_napi)?, None)
            }
        })
    }
    .await;
    let (edge, handle) = match started {
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
            edge,
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

    /// What the attach mode's socket layer is set up with (the rules are the
    /// kit's): the path, the `ws` frame limit, how often to ask `tick()`, and
    /// how long `close()` waits for sockets.
    #[napi]
    pub fn attach_config(&self) -> String {
        let c = self.inner.edge.config();
        let tick = c.heartbeat_interval.min(c.heartbeat_timeout) / 2;
        json!({
            "path": c.path,
            "maxMessageBytes": c.max_message_bytes,
            "tickMs": tick.as_millis().max(50) as u64,
            "drainTimeoutMs": c.drain_timeout.as_millis() as u64,
        })
        .to_string()
    }

    /// Admission of one attach-mode upgrade by the kit (origin, per-IP after
    /// trusted proxies, capacity, draining, handshake token).
    #[napi]
    pub fn admit<'e>(
        &self,
        env: &'e Env,
        facts: UpgradeFacts,
    ) -> napi::Result<PromiseRaw<'e, Admission>> {
        let edge = self.inner.edge.clone();
        let peer = facts.peer.as_deref().and_then(|p| p.parse().ok());
        let mut request = UpgradeRequest::new(peer, &facts.target);
        for pair in facts.headers.chunks_exact(2) {
            request.header(&pair[0], &pair[1]);
        }
        // The attachment's own path list decides the template fields.
        let paths = UpgradePaths::parse(&facts.paths).map_err(config)?;
        request.path_fields = Some(paths.matches(&request.path).unwrap_or_default());
        env.spawn_future(async move {
            let outcome = edge.admit(&request).await;
            Ok(Admission::new(outcome, edge.hub()))
        })
    }

    /// The operator API (`/api/v1/…`) as JSON `{status, contentType, body}`;
    /// the kit checks the key, routes and answers (docs/API.md).
    #[napi]
    pub fn api(
        &self,
        method: String,
        path: String,
        query: Option<String>,
        authorization: Option<String>,
        body: Buffer,
    ) -> String {
        let reply = within_runtime_if_available(|| {
            self.inner.edge.api(&switchboard::edge::ApiRequest {
                method: &method,
                path: &path,
                query: query.as_deref(),
                authorization: authorization.as_deref(),
                body: &body,
            })
        });
        json!({"status": reply.status, "contentType": reply.content_type, "body": reply.body})
            .to_string()
    }

    /// Whether an `Authorization` header carries the API key (only then is a
    /// request body read).
    #[napi]
    pub fn api_authorized(&self, authorization: Option<String>) -> bool {
        self.inner.edge.api_authorized(authorization.as_deref())
    }

    /// The largest API request body; a longer one is refused with 413 unread.
    #[napi(getter)]
    pub fn api_body_limit(&self) -> u32 {
        u32::try_from(self.inner.edge.api_body_limit()).unwrap_or(u32::MAX)
    }

    /// Whether an upgrade `path` is one of `paths` (a comma-separated list of
    /// fixed paths and `{roomId}`/`{userId}` templates); a config error names a
    /// bad entry.
    #[napi]
    pub fn match_path(&self, paths: String, path: String) -> napi::Result<bool> {
        let paths = UpgradePaths::parse(&paths).map_err(config)?;
        Ok(paths.matches(&path).is_some())
    }

    /// A plain endpoint of the kit (`/metrics`, `/health`, `/ready`) as JSON
    /// `{status, contentType, body}`, or `null` for another path.
    #[napi]
    pub fn endpoint(&self, path: String) -> Option<String> {
        self.inner.edge.endpoint(&path).map(|r| {
            json!({"status": r.status, "contentType": r.content_type, "body": r.body}).to_string()
        })
    }

    /// Starts receiving hub events (from now on) with an optional name filter.
    #[napi]
    pub fn subscribe(&self, kinds: Option<Vec<String>>) {
        self.set_event_filter(kinds);
        let hub = self.inner.edge.hub().clone();
        self.inner.pump.set_source(|| Source::Hub(hub.subscribe()));
    }

    /// Which event names cross into JS (`null` = all). Relayed kinds nobody
    /// listens for are not even built by the hub (`Hub::set_relay_events`).
    #[napi]
    pub fn set_event_filter(&self, kinds: Option<Vec<String>>) {
        match &kinds {
            Some(k) => {
                let names: Vec<&str> = k.iter().map(String::as_str).collect();
                self.inner.edge.hub().set_relay_events(Some(&names));
            }
            None => self.inner.edge.hub().set_relay_events(None),
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
            .edge
            .hub()
            .send(&room_id, &user_id, &msg)
            .map_err(to_napi)
    }

    /// Sends a host message to every peer of a room; returns how many got it.
    #[napi]
    pub fn broadcast(&self, room_id: String, message: String) -> napi::Result<u32> {
        let msg = parse_json(&message)?;
        self.inner
            .edge
            .hub()
            .broadcast(&room_id, &msg)
            .map(|n| n as u32)
            .map_err(to_napi)
    }

    /// Removes a peer (`user-left` with `kicked`, its connection closes with 4403).
    #[napi]
    pub fn kick(&self, room_id: String, user_id: String) -> napi::Result<()> {
        within_runtime_if_available(|| {
            self.inner
                .edge
                .hub()
                .kick(&room_id, &user_id)
                .map_err(to_napi)
        })
    }

    /// Puts a connected user into a room, as if it had sent `join`.
    #[napi]
    pub fn join(&self, user_id: String, room_id: String) -> napi::Result<()> {
        within_runtime_if_available(|| {
            self.inner
                .edge
                .hub()
                .join(&user_id, &room_id)
                .map_err(to_napi)
        })
    }

    /// Takes a user out of a room (`user-left` with `leave`).
    #[napi]
    pub fn leave(&self, user_id: String, room_id: String) -> napi::Result<()> {
        within_runtime_if_available(|| {
            self.inner
                .edge
                .hub()
                .leave(&user_id, &room_id)
                .map_err(to_napi)
        })
    }

    /// Every room with its peers, as JSON.
    #[napi]
    pub fn rooms(&self) -> String {
        serde_json::to_string(&self.inner.edge.hub().rooms()).unwrap_or_else(|_| "[]".to_owned())
    }

    /// The peers of one room as JSON (`[]` for an unknown room).
    #[napi]
    pub fn peers(&self, room_id: String) -> String {
        let peers = self.inner.edge.hub().peers(&room_id).unwrap_or_default();
        serde_json::to_string(&peers).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Open connections: the own listener's and every attached server's.
    #[napi(getter)]
    pub fn connection_count(&self) -> u32 {
        self.inner.edge.connection_count() as u32
    }

    #[napi(getter)]
    pub fn draining(&self) -> bool {
        self.inner.edge.hub().is_draining()
    }

    /// Whether connections must authenticate (an auth mode is configured).
    #[napi(getter)]
    pub fn auth_required(&self) -> bool {
        self.inner.edge.hub().auth_required()
    }

    /// Graceful drain: every client (own listener and attached) gets `draining`
    /// and a 1001 close; resolves once all finished or the drain timeout passed
    /// (the TypeScript layer then cuts attached sockets that are left).
    #[napi]
    pub fn shutdown<'e>(&self, env: &'e Env) -> napi::Result<PromiseRaw<'e, ()>> {
        let inner = self.inner.clone();
        env.spawn_future(async move {
            match &inner.handle {
                Some(h) => h.shutdown().await,
                None => inner.edge.drain().await,
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
