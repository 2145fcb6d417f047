//! A fault-injecting TCP proxy for the client's network tests: it sits between a
//! client and a server on 127.0.0.1 and can cut every connection without a
//! WebSocket close frame, stall traffic in both directions (a black hole that
//! keeps the sockets open), delay it, and switch to another upstream (a "restarted"
//! server) at run time.
//!
//! Each test binary uses a different subset of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::{sleep, timeout, Instant};

/// The proxy stops accepting, and every connection through it ends, after this
/// long: a forgotten proxy cannot outlive a test run.
const MAX_LIFETIME: Duration = Duration::from_secs(180);

/// How long the proxy tries to reach the upstream before dropping the client
/// (which then sees its handshake fail, like a refused connection).
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    blackhole: bool,
    delay: Duration,
}

#[derive(Debug)]
struct Inner {
    upstream: Mutex<SocketAddr>,
    faults: watch::Sender<Faults>,
    /// Live connection tasks; `cut()` aborts them, which drops both sockets.
    conns: Mutex<Vec<AbortHandle>>,
    accepted: AtomicUsize,
}

/// The proxy. Dropping it stops it and ends every connection through it.
#[derive(Debug)]
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept_task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (an OS-chosen port) forwarding to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("proxy address");
        let (faults, _) = watch::channel(Faults::default());
        let inner = Arc::new(Inner {
            upstream: Mutex::new(upstream),
            faults,
            conns: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
        });
        let accept_task = tokio::spawn(accept_loop(listener, inner.clone()));
        FaultProxy {
            addr,
            inner,
            accept_task,
        }
    }

    /// The proxy's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR{path}` through the proxy.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// New connections go to `upstream` from now on (existing ones stay).
    pub(crate) fn set_upstream(&self, upstream: SocketAddr) {
        *self.inner.upstream.lock().unwrap() = upstream;
    }

    /// Drops every live connection at once, on both sides, without any
    /// WebSocket close frame (the peers see the TCP stream end). Returns how many.
    pub(crate) fn cut(&self) -> usize {
        let conns = std::mem::take(&mut *self.inner.conns.lock().unwrap());
        let live = conns.iter().filter(|c| !c.is_finished()).count();
        for c in conns {
            c.abort();
        }
        live
    }

    /// While on, nothing is forwarded in either direction, on live and new
    /// connections alike; the sockets stay open (a silent network, not a reset).
    /// Bytes already read are held and forwarded when it is turned off.
    pub(crate) fn blackhole(&self, on: bool) {
        self.inner.faults.send_modify(|f| f.blackhole = on);
    }

    /// Holds every chunk for `delay` before forwarding it. Chunks of one direction
    /// are forwarded one after another, so under load the added latency can grow
    /// beyond `delay` (like a slow link).
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.inner.faults.send_modify(|f| f.delay = delay);
    }

    /// Connections accepted since the start.
    pub(crate) fn accepted(&self) -> usize {
        self.inner.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently open through the proxy.
    pub(crate) fn live(&self) -> usize {
        self.inner
            .conns
            .lock()
            .unwrap()
            .iter()
            .filter(|c| !c.is_finished())
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let deadline = Instant::now() + MAX_LIFETIME;
    while let Ok(Ok((client, _))) = tokio::time::timeout_at(deadline, listener.accept()).await {
        inner.accepted.fetch_add(1, Ordering::SeqCst);
        let task = tokio::spawn(timeout(MAX_LIFETIME, connection(client, inner.clone())));
        let mut conns = inner.conns.lock().unwrap();
        conns.retain(|c| !c.is_finished());
        conns.push(task.abort_handle());
    }
}

async fn connection(client: TcpStream, inner: Arc<Inner>) {
    let upstream = *inner.upstream.lock().unwrap();
    let server = match timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        // Upstream down: dropping the client socket is what a refused connection
        // looks like to it, one step later.
        _ => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, inner.faults.subscribe()),
        pump(server_read, client_write, inner.faults.subscribe()),
    );
}

/// Waits until no black hole is on; `false` when the proxy is gone.
async fn wait_open(faults: &mut watch::Receiver<Faults>) -> bool {
    loop {
        if !faults.borrow_and_update().blackhole {
            return true;
        }
        if faults.changed().await.is_err() {
            return false;
        }
    }
}

/// Forwards one direction until EOF or an error, then half-closes the other side.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !wait_open(&mut faults).await {
            break;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = faults.borrow().delay;
        if !delay.is_zero() {
            sleep(delay).await;
        }
        // A black hole that started while this chunk was being read holds it.
        if !wait_open(&mut faults).await {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
