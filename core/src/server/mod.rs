//! The built-in server: a TCP (or TLS) listener, an HTTP/1.1 front for the plain
//! endpoints, and the tokio-tungstenite adapter of the connection kit
//! ([`crate::edge`]), which decides admission, limits and liveness.

mod builder;
mod descriptors;
mod framing;
mod http;
mod operator;
mod static_files;
mod ticker;
mod tls;
mod ws;
mod ws_read;

pub use crate::proxy::{Cidr, TrustedProxies};

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, info, warn};

use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::edge::{Edge, EdgeConnection, Liveness, Pending, Refused};
use crate::error::Result;
use crate::event::Event;
use crate::hub::{Hub, PeerInfo, RoomInfo};
pub use builder::ServerBuilder;
use http::{read_request, respond, switch_protocols, HeadError, Request, WriteDeadline};

/// A configured server, not yet listening.
#[derive(Debug, Clone)]
pub struct Server {
    config: ServerConfig,
}

#[derive(Debug)]
struct Shared {
    /// Admission, counting, the hub (and cluster) and draining: the kit's.
    edge: Edge,
    local_addr: SocketAddr,
    url: String,
    tls: Option<tls::Tls>,
    stop_accepting: Notify,
    stopped: watch::Sender<bool>,
    /// The connections' timer.
    ticker: Arc<ticker::Ticker>,
}

/// A running server. Cheap to clone; every clone controls the same server.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl Server {
    /// A builder with the protocol's defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The validated configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Binds the listener and starts serving in the background.
    pub async fn start(self) -> Result<ServerHandle> {
        let listener = TcpListener::bind(&self.config.listen).await?;
        Server::serve(listener, Edge::new(descriptors::fit(self.config))?)
    }

    /// Serves an existing [`Edge`] (its hub, limits and counts shared with the
    /// host's other modes, e.g. a binding's route mode) on `listener`.
    pub fn serve(listener: TcpListener, edge: Edge) -> Result<ServerHandle> {
        let local_addr = listener.local_addr()?;
        let config = edge.config();
        // Certificate problems fail here, before any client could connect.
        let tls = config.tls.as_ref().map(tls::Tls::new).transpose()?;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let url = format!("{scheme}://{local_addr}{}", config.url_path());
        let shared = Arc::new(Shared {
            tls,
            edge,
            local_addr,
            url,
            stop_accepting: Notify::new(),
            stopped: watch::channel(false).0,
            ticker: ticker::Ticker::start(),
        });
        info!(url = %shared.url, "listening");
        tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(ServerHandle { shared })
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Every socket's task counts itself in the ticker's census, so that a
    // drain that times out can cut the rest (`Ticker::cut_all`).
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // The socket counts against its IP from here on, before a byte is read.
                    let pending = match shared.edge.accept(peer.ip()) {
                        Ok(pending) => pending,
                        Err(refused) => {
                            let refuse = refuse_socket(stream, refused, shared.clone());
                            tokio::spawn(ticker::until_cut(refuse, shared.ticker.census()));
                            continue;
                        }
                    };
                    match &shared.tls {
                        None => drop(tokio::spawn(serve_socket(stream, pending, shared.clone()))),
                        Some(tls) => drop(tokio::spawn(handle_tls(tls.acceptor(), stream, peer, pending, shared.clone()))),
                    };
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shared.stop_accepting.notified() => break,
        }
    }
    drop(listener);
    // Anything still running outlived the drain: cut it (its session goes away).
    shared.ticker.cut_all().await;
    shared.ticker.stop();
    // `send_replace`, not `send`: `send` stores nothing while no receiver exists,
    // and `shutdown()` may subscribe (in `stopped()`) only after this line.
    shared.stopped.send_replace(true);
}

impl Shared {
    fn config(&self) -> &ServerConfig {
        self.edge.config()
    }
}

/// A socket over its IP's pending or rate budget: a plain listener answers the
/// status at once (no request is read); a TLS one just closes, since an answer
/// would need the handshake the budget is there to avoid.
async fn refuse_socket(mut stream: TcpStream, refused: Refused, shared: Arc<Shared>) {
    if shared.tls.is_some() {
        return;
    }
    let mut stream = WriteDeadline::new(&mut stream, shared.config().http_write_timeout);
    let (status, headers, body) = (refused.status, refused.headers, refused.body);
    respond(&mut stream, status, "text/plain", headers, body).await;
}

/// The TLS handshake (bounded by the handshake timeout), then the same as plain.
async fn handle_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    pending: Pending,
    shared: Arc<Shared>,
) {
    let handshake =
        tokio::time::timeout(shared.config().handshake_timeout, acceptor.accept(stream));
    // A drain that runs out of time cuts a handshake in progress too.
    let Some(handshake) = ticker::until_cut(handshake, shared.ticker.census()).await else {
        return;
    };
    match handshake {
        Ok(Ok(tls)) => serve_socket(tls, pending, shared).await,
        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => debug!(%peer, "TLS handshake timed out"),
    }
}

/// A connection past the upgrade: the WebSocket and its kit connection (which
/// holds the admission slot).
type Upgraded<S> = (S, Vec<u8>, EdgeConnection);

/// Serves one TCP (or TLS) connection: the request phase (head, admission,
/// auth, upgrade), then the WebSocket connection.
fn serve_socket<S>(stream: S, pending: Pending, shared: Arc<Shared>) -> SocketTask<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = ticker::CutWatch::new(shared.ticker.census());
    let request = Box::pin(async move {
        let mut upgraded = None;
        let stream = WriteDeadline::new(stream, shared.config().http_write_timeout);
        handle_socket(stream, pending, &shared, &mut upgraded).await;
        upgraded
    });
    SocketTask::Request(request, watch)
}

/// One socket's task. Written by hand rather than as an `async fn`: there the
/// request phase's locals stayed in the task's state beside the connection
/// (808 bytes); here the request phase is boxed and freed at the upgrade, and
/// every open connection's task holds only its `ConnectionTask`.
// The large variant is the point: boxing it would cost every connection an
// allocation; the small one lives for the request only.
#[allow(clippy::large_enum_variant)]
enum SocketTask<S> {
    Request(
        Pin<Box<dyn Future<Output = Option<Upgraded<S>>> + Send>>,
        ticker::CutWatch,
    ),
    Open(ws::ConnectionTask<S>),
    Done,
}

impl<S> Future for SocketTask<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                SocketTask::Request(request, watch) => match request.as_mut().poll(cx) {
                    Poll::Pending if watch.is_cut(cx) => *this = SocketTask::Done,
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(upgraded) => {
                        let SocketTask::Request(_, watch) =
                            std::mem::replace(this, SocketTask::Done)
                        else {
                            unreachable!("matched above")
                        };
                        if let Some((io, rest, conn)) = upgraded {
                            let census = watch.into_census();
                            *this =
                                SocketTask::Open(ws::ConnectionTask::new(io, rest, conn, census));
                        }
                    }
                },
                SocketTask::Open(task) => {
                    ready!(Pin::new(task).poll(cx));
                    *this = SocketTask::Done;
                }
                SocketTask::Done => return Poll::Ready(()),
            }
        }
    }
}

/// The request phase: answers plain HTTP, or upgrades into `upgraded`. The
/// socket's place in its IP's pending budget (`pending`) is held until then.
async fn handle_socket<S>(
    mut stream: WriteDeadline<S>,
    pending: Pending,
    shared: &Arc<Shared>,
    upgraded: &mut Option<Upgraded<S>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = shared.config();
    let req = match read_request(&mut stream, config.handshake_timeout).await {
        Ok(r) => r,
        Err(HeadError::Gone) => return,
        Err(HeadError::Bad(status)) => {
            return respond(&mut stream, status, "text/plain", &[], "bad request\n").await
        }
    };
    if Edge::is_api_path(&req.path) {
        // Boxed: a rare path, kept out of every connection task's future.
        return Box::pin(operator::serve(
            &mut stream,
            &shared.edge,
            req,
            config.handshake_timeout,
        ))
        .await;
    }
    let upgrade_path = shared.edge.serves_path(&req.path);
    // `/` may be an upgrade path and the demo page at once: the upgrade header decides.
    let wants_upgrade = req.header_has_token("upgrade", "websocket");
    if !(upgrade_path && wants_upgrade) && matches!(req.method.as_str(), "GET" | "HEAD") {
        let p = req.path.as_str();
        if let Some(reply) = shared.edge.endpoint(p) {
            let body = &reply.body;
            return respond(&mut stream, reply.status, reply.content_type, &[], body).await;
        }
        if static_files::serves(config, p) {
            // Boxed: a rare path, kept out of every connection task's future.
            return Box::pin(static_files::serve(&mut stream, config, &req)).await;
        }
    }
    if !upgrade_path {
        return respond(&mut stream, 404, "text/plain", &[], "not found\n").await;
    }

    // The upgrade path.
    if req.method != "GET" {
        return respond(
            &mut stream,
            405,
            "text/plain",
            &[("allow", "GET")],
            "use a WebSocket upgrade\n",
        )
        .await;
    }
    if !req.header_has_token("upgrade", "websocket")
        || !req.header_has_token("connection", "upgrade")
    {
        return respond(
            &mut stream,
            426,
            "text/plain",
            &[("upgrade", "websocket")],
            "WebSocket upgrade required\n",
        )
        .await;
    }
    if req.header("sec-websocket-version") != Some("13") {
        return respond(
            &mut stream,
            426,
            "text/plain",
            &[("sec-websocket-version", "13")],
            "unsupported version\n",
        )
        .await;
    }
    let Some(key) = req.header("sec-websocket-key") else {
        return respond(
            &mut stream,
            400,
            "text/plain",
            &[],
            "missing Sec-WebSocket-Key\n",
        )
        .await;
    };
    let accept = derive_accept_key(key.as_bytes());
    // The request (headers as owned strings) would otherwise live as long as
    // the connection: keep only the bytes read past its head. (Moving out
    // `req.rest` alone would keep the other fields alive to the end of scope.)
    let Request {
        rest,
        method,
        path,
        query,
        headers,
    } = req;
    let mut facts = pending.request(&path);
    facts.query = query;
    facts.headers(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    drop((method, path, headers));
    let admitted = match shared.edge.admit(&facts).await {
        Ok(a) => a,
        Err(refused) => {
            return respond(
                &mut stream,
                refused.status,
                "text/plain",
                refused.headers,
                refused.body,
            )
            .await;
        }
    };
    drop((facts, pending));
    if switch_protocols(&mut stream, &accept, admitted.subprotocol())
        .await
        .is_err()
    {
        return;
    }
    let conn = admitted.open(shared.edge.hub(), Liveness::Pings);
    *upgraded = Some((stream.into_inner(), rest, conn));
}

impl ServerHandle {
    /// `ws://HOST:PORT/PATH` of this server.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The hub behind this server.
    pub fn hub(&self) -> &Hub {
        self.shared.edge.hub()
    }

    /// Cluster mode: this node's link to the cluster (`None` in memory).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.shared.edge.cluster()
    }

    /// The connection kit behind this server (shared with other host modes).
    pub fn edge(&self) -> &Edge {
        &self.shared.edge
    }

    /// A stream of server events. Bounded: a reader more than `event_buffer`
    /// events behind loses the oldest ones (logged as a warning).
    pub fn events(&self) -> impl Stream<Item = Event> + Send + Unpin + 'static {
        let rx = self.shared.edge.hub().subscribe();
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => return Some((e, rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!(
                            missed = n,
                            "events() reader fell behind; oldest events dropped"
                        );
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }

    /// Sends a message (a JSON object with a `type`) to one peer of a room.
    pub async fn send(&self, room_id: &str, user_id: &str, message: Value) -> Result<()> {
        self.shared.edge.hub().send(room_id, user_id, &message)
    }

    /// Sends a message to every peer of a room; returns how many got it.
    pub async fn broadcast(&self, room_id: &str, message: Value) -> Result<usize> {
        self.shared.edge.hub().broadcast(room_id, &message)
    }

    /// Removes a peer (`user-left` with `kicked`; its connection closes with 4403).
    pub async fn kick(&self, room_id: &str, user_id: &str) -> Result<()> {
        self.shared.edge.hub().kick(room_id, user_id)
    }

    /// Puts a connected user into a room, as if it had sent `join`.
    pub async fn join(&self, user_id: &str, room_id: &str) -> Result<()> {
        self.shared.edge.hub().join(user_id, room_id)
    }

    /// Takes a user out of a room (`user-left` with `leave`); it stays connected.
    pub async fn leave(&self, user_id: &str, room_id: &str) -> Result<()> {
        self.shared.edge.hub().leave(user_id, room_id)
    }

    /// Every room with its peers.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        self.shared.edge.hub().rooms()
    }

    /// The peers of one room, in join order.
    pub fn peers(&self, room_id: &str) -> Option<Vec<PeerInfo>> {
        self.shared.edge.hub().peers(room_id)
    }

    /// Reads the TLS certificate and key files again; handshakes from now on
    /// present the new certificate, open connections are untouched (the binary
    /// calls this on SIGHUP). On error the current certificate stays in use.
    pub fn reload_tls(&self) -> Result<()> {
        match &self.shared.tls {
            Some(tls) => tls.reload(),
            None => Err(crate::error::Error::Config("TLS is not configured".into())),
        }
    }

    /// Open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.shared.edge.connection_count()
    }

    /// Graceful drain: `/ready` answers 503, new upgrades get 503, every client gets
    /// `draining` and a 1001 close; returns once all are closed or the drain
    /// timeout passed (then the rest are cut). Idempotent.
    pub async fn shutdown(&self) {
        let s = &self.shared;
        if *s.stopped.borrow() {
            return;
        }
        s.edge.drain().await;
        s.stop_accepting.notify_one();
        self.stopped().await;
        info!("stopped");
    }

    /// Resolves once [`ServerHandle::shutdown`] has completed.
    pub async fn stopped(&self) {
        let mut rx = self.shared.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection task's future is allocated once per connection and lives as
    /// long as it: keep it from ballooning (the idle-memory benchmark counts
    /// every byte). tokio 1.54 adds 104 bytes of header and trailer and rounds
    /// the task up to 128: at most 152 keeps it in 256 bytes.
    #[tokio::test]
    async fn connection_future_stays_small() {
        // 152 bytes today: the socket 40, the kit connection 64 (its clock
        // keeps times only, its admission key is 16 bytes), a read in progress
        // and a pending write each one boxed pointer, the close state without
        // its reason; 264 before that, 368 with a `tokio::time::Sleep`, 808 as
        // an `async fn` with the request phase beside it, ~2.0 KiB with `select!`.
        const LIMIT: usize = 152;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let handle = Server::builder()
            .listen("127.0.0.1:0")
            .build()
            .unwrap()
            .start()
            .await
            .unwrap();
        let pending = handle.edge().accept(addr.ip()).unwrap();
        let fut = serve_socket(stream, pending, handle.shared.clone());
        let size = std::mem::size_of_val(&fut);
        println!("serve_socket future: {size} bytes");
        assert!(size <= LIMIT, "{size} bytes per connection task");
    }
}
