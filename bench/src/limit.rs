//! At the descriptor limit: the load opens more joined connections than the
//! server's descriptors allow; each pair that got in makes a call. The ones
//! beyond must be refused cleanly (503, counted) while the ones it holds keep
//! working; joins per second are read in blocks over the whole climb.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::MaybeTlsStream;

use crate::client::{self, Wire, Ws};
use crate::idle::{call, settled_rss};
use crate::sys;

/// Joins per block when the join rate is read over the climb.
const BLOCK: usize = 2000;

/// Outcome of one run at the limit.
#[derive(Debug, Clone, Default)]
pub(crate) struct LimitResult {
    pub(crate) attempted: usize,
    pub(crate) joined: usize,
    /// Upgrades answered 503.
    pub(crate) refused: usize,
    /// Anything else that failed (a timeout, a reset): must stay 0.
    pub(crate) failed: usize,
    pub(crate) first_failure: Option<String>,
    /// Joins per second over each block of `BLOCK` joins: the lowest and the median.
    pub(crate) joins_per_s_min: f64,
    pub(crate) joins_per_s_median: f64,
    pub(crate) rss_before_mib: f64,
    pub(crate) rss_after_mib: f64,
    pub(crate) kib_per_conn: f64,
    /// Pairs that relayed a message after the refusals.
    pub(crate) served_after: usize,
    /// `switchboard_handshakes_refused_total{reason="capacity"}` at the end.
    pub(crate) refused_metric: Option<u64>,
}

/// Opens `n` connections, `concurrency` at a time, then makes a call in every
/// complete pair (SDPs of `sdp_bytes`).
pub(crate) async fn at_limit(
    url: &str,
    pid: u32,
    n: usize,
    concurrency: usize,
    sdp_bytes: usize,
) -> Result<LimitResult, String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = sys::rss_bytes(pid).ok_or("cannot read server RSS")?;
    let next = Arc::new(AtomicUsize::new(0));
    let joined_at = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let workers: Vec<_> = (0..concurrency.clamp(1, n.max(1)))
        .map(|_| {
            let (next, joined_at, url) = (next.clone(), joined_at.clone(), url.to_string());
            tokio::spawn(async move {
                let (mut mine, mut refused, mut failed, mut first) = (Vec::new(), 0, 0, None);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return (mine, refused, failed, first);
                    }
                    match connect_and_join(&url, i).await {
                        Ok(ws) => {
                            joined_at.lock().expect("lock").push(Instant::now());
                            mine.push((i, ws));
                        }
                        Err(Refusal::Status503) => refused += 1,
                        Err(Refusal::Other(e)) => {
                            failed += 1;
                            first.get_or_insert(e);
                        }
                    }
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    let mut out = LimitResult {
        attempted: n,
        ..LimitResult::default()
    };
    let mut conns = Vec::with_capacity(n);
    for w in workers {
        let (mine, refused, failed, first) = w.await.map_err(|e| e.to_string())?;
        conns.extend(mine);
        out.refused += refused;
        out.failed += failed;
        if out.first_failure.is_none() {
            out.first_failure = first;
        }
    }
    out.joined = conns.len();
    let mut times = std::mem::take(&mut *joined_at.lock().expect("lock"));
    times.sort();
    let mut rates: Vec<f64> = std::iter::once(t0)
        .chain(times.iter().copied())
        .collect::<Vec<_>>()
        .chunks(BLOCK)
        .filter(|c| c.len() == BLOCK)
        .map(|c| (BLOCK - 1) as f64 / (c[BLOCK - 1] - c[0]).as_secs_f64())
        .collect();
    eprintln!(
        "   joins/s per block of {BLOCK}, in order: {}",
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    rates.sort_by(f64::total_cmp);
    out.joins_per_s_min = rates.first().copied().unwrap_or(f64::NAN);
    out.joins_per_s_median = rates.get(rates.len() / 2).copied().unwrap_or(f64::NAN);

    // Every complete pair makes a call; the rest idle joined.
    conns.sort_by_key(|(i, _)| *i);
    let mut pairs: Vec<(usize, Ws)> = Vec::new();
    let mut singles = Vec::new();
    let mut it = conns.into_iter().peekable();
    while let Some((i, ws)) = it.next() {
        match it.peek() {
            Some((j, _)) if i % 2 == 0 && *j == i + 1 => {
                pairs.push((i, ws));
                pairs.extend(it.next());
            }
            _ => singles.push((i, ws)),
        }
    }
    if sdp_bytes > 0 {
        call(&mut pairs, "limit", sdp_bytes, true).await?;
    }
    let after = settled_rss(pid).await;
    out.rss_before_mib = before as f64 / 1048576.0;
    out.rss_after_mib = after as f64 / 1048576.0;
    out.kib_per_conn = (after as f64 - before as f64) / 1024.0 / out.joined.max(1) as f64;

    // The connections the server holds still relay (first 10 pairs).
    for pair in pairs.chunks_exact_mut(2).take(10) {
        let [(_, a), (ib, b)] = pair else { continue };
        let to = format!("limitu{ib}");
        let msg = format!(r#"{{"type":"message","to":"{to}","data":"after"}}"#);
        if a.send(Message::text(msg)).await.is_err() {
            continue;
        }
        let mut seq = 0;
        if client::wait_for(b, "message", &mut seq).await.is_ok() {
            out.served_after += 1;
        }
    }
    out.refused_metric = refused_metric(url).await;
    drop(pairs);
    drop(singles);
    Ok(out)
}

enum Refusal {
    Status503,
    Other(String),
}

/// Source addresses the load spreads over: past about half of one address's
/// ephemeral ports, the kernel's search for a free one slows every connect.
const SOURCES: usize = 16;

async fn connect_and_join(url: &str, i: usize) -> Result<Ws, Refusal> {
    let other = |what: &str, e: &dyn std::fmt::Display| Refusal::Other(format!("{what} {i}: {e}"));
    let host = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| other("url", &url))?;
    let server: std::net::SocketAddr = host.parse().map_err(|e| other("address", &e))?;
    let source = std::net::SocketAddr::from(([127, 0, 0, 2 + (i % SOURCES) as u8], 0));
    let connect = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(source)?;
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    };
    let stream = match tokio::time::timeout(client::STEP_TIMEOUT, connect).await {
        Ok(Ok(s)) => MaybeTlsStream::Plain(s),
        Ok(Err(e)) => return Err(other("connect", &e)),
        Err(_) => return Err(other("connect", &"timed out")),
    };
    let upgrade =
        tokio_tungstenite::client_async_with_config(url, stream, Some(client::client_config()));
    let mut ws = match tokio::time::timeout(client::STEP_TIMEOUT, upgrade).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(WsError::Http(resp))) if resp.status() == 503 => return Err(Refusal::Status503),
        Ok(Err(e)) => return Err(other("upgrade", &e)),
        Err(_) => return Err(other("upgrade", &"timed out")),
    };
    let room = format!("limit{}", i / 2);
    client::join(&mut ws, &room, &format!("limitu{i}"), Wire::Json)
        .await
        .map_err(Refusal::Other)?;
    Ok(ws)
}

/// The capacity refusals the server counted, from its `/metrics`.
async fn refused_metric(ws_url: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = ws_url.strip_prefix("ws://")?.split('/').next()?;
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    body.lines()
        .find(|l| {
            l.starts_with("switchboard_handshakes_refused_total") && l.contains("\"capacity\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}
