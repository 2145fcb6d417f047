//! The memory scenarios: idle joined connections, with or without a call
//! before, acking or classic clients; the server's settled RSS.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws};
use crate::scenarios::connect_many;
use crate::sys;

/// Outcome of one idle run.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdleResult {
    pub(crate) rss_before_mib: f64,
    pub(crate) rss_after_mib: f64,
    pub(crate) kib_per_conn: f64,
    pub(crate) setup_joins_per_s: f64,
}

/// Hold `n` idle joined connections; RSS growth per connection once settled.
///
/// With `sdp_bytes > 0`, each pair first makes a call, as every real one does
/// before it goes quiet: an offer and an answer carrying an SDP of that size,
/// then 4 candidates each way. This shows buffers that grow with the largest
/// message and are kept. Acking clients then acknowledge everything; classic
/// ones (`classic_wait: Some`) never do, keep answering pings, and are
/// measured after that wait (the replay age rule must pass).
pub(crate) async fn idle(
    url: &str,
    pid: u32,
    n: usize,
    concurrency: usize,
    sdp_bytes: usize,
    classic_wait: Option<Duration>,
) -> Result<IdleResult, String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = sys::rss_bytes(pid).ok_or("cannot read server RSS")?;
    let t0 = Instant::now();
    let joined = connect_many(url, n, concurrency, "idle").await?;
    let setup = t0.elapsed().as_secs_f64();
    let mut conns = if sdp_bytes == 0 && classic_wait.is_none() {
        ack_joins(joined).await?
    } else {
        joined.into_iter().map(|(i, ws, _)| (i, ws)).collect()
    };
    if sdp_bytes > 0 {
        conns.sort_by_key(|(i, _)| *i);
        call(&mut conns, "idle", sdp_bytes, classic_wait.is_none()).await?;
    }
    let mut readers = Vec::new();
    if let Some(wait) = classic_wait {
        // Reading answers the server's pings (tungstenite replies on read).
        for (_, mut ws) in conns.drain(..) {
            readers.push(tokio::spawn(async move {
                while let Some(Ok(_)) = ws.next().await {}
            }));
        }
        tokio::time::sleep(wait).await;
    }
    let after = settled_rss(pid).await;
    drop(conns);
    for r in readers {
        r.abort();
    }
    Ok(IdleResult {
        rss_before_mib: before as f64 / 1048576.0,
        rss_after_mib: after as f64 / 1048576.0,
        kib_per_conn: (after as f64 - before as f64) / 1024.0 / n as f64,
        setup_joins_per_s: n as f64 / setup,
    })
}

/// Acking clients without a call: each acknowledges everything the join
/// brought (its `room-info`, and a `user-joined` when its peer came later),
/// once 300 ms passed without a frame.
async fn ack_joins(joined: Vec<(usize, Ws, u64)>) -> Result<Vec<(usize, Ws)>, String> {
    let tasks: Vec<_> = joined
        .into_iter()
        .map(|(i, mut ws, mut seq)| {
            tokio::spawn(async move {
                let quiet = Duration::from_millis(300);
                while let Ok(Some(Ok(msg))) = tokio::time::timeout(quiet, ws.next()).await {
                    if let Message::Text(text) = msg {
                        let v: serde_json::Value = serde_json::from_str(text.as_str())
                            .map_err(|e| format!("a frame that is not JSON: {e}"))?;
                        seq = seq.max(v["seq"].as_u64().unwrap_or(0));
                    }
                }
                let ack = format!(r#"{{"type":"ack","seq":{seq}}}"#);
                ws.send(Message::text(ack))
                    .await
                    .map_err(|e| format!("send ack: {e}"))?;
                Ok::<_, String>((i, ws))
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(tasks.len());
    for t in tasks {
        conns.push(t.await.map_err(|e| e.to_string())??);
    }
    Ok(conns)
}

/// The server's RSS once it stopped changing: within 64 KiB over 1 s, at most 10 s.
pub(crate) async fn settled_rss(pid: u32) -> u64 {
    let mut samples = vec![sys::rss_bytes(pid).unwrap_or(0)];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        samples.push(sys::rss_bytes(pid).unwrap_or(0));
        if samples.len() >= 5 {
            let recent = &samples[samples.len() - 5..];
            let (lo, hi) = (
                recent.iter().min().unwrap_or(&0),
                recent.iter().max().unwrap_or(&0),
            );
            if hi - lo <= 64 * 1024 {
                break;
            }
        }
    }
    *samples.last().unwrap_or(&0)
}

/// Every pair (2k, 2k+1) of `conns` (sorted by index): 2k sends an offer
/// with an SDP of `sdp_bytes`, 2k+1 answers with one of the same size, then
/// each sends the other 4 candidates; with `ack`, both acknowledge all they got.
pub(crate) async fn call(
    conns: &mut [(usize, Ws)],
    prefix: &str,
    sdp_bytes: usize,
    ack: bool,
) -> Result<(), String> {
    let line = "a=candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host generation 0\\r\\n";
    let mut sdp =
        String::from("v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\n");
    while sdp.len() + line.len() <= sdp_bytes {
        sdp.push_str(line);
    }
    for pair in conns.chunks_exact_mut(2) {
        let [(ia, a), (ib, b)] = pair else { continue };
        let (ua, ub) = (format!("{prefix}u{ia}"), format!("{prefix}u{ib}"));
        let (mut seq_a, mut seq_b) = (0, 0);
        let offer =
            format!(r#"{{"type":"offer","to":"{ub}","sdp":{{"type":"offer","sdp":"{sdp}"}}}}"#);
        a.send(Message::text(offer))
            .await
            .map_err(|e| format!("send offer: {e}"))?;
        client::wait_for(b, "offer", &mut seq_b).await?;
        let answer =
            format!(r#"{{"type":"answer","to":"{ua}","sdp":{{"type":"answer","sdp":"{sdp}"}}}}"#);
        b.send(Message::text(answer))
            .await
            .map_err(|e| format!("send answer: {e}"))?;
        client::wait_for(a, "answer", &mut seq_a).await?;
        for (from, to_name) in [(&mut *a, &ub), (&mut *b, &ua)] {
            for k in 0..4 {
                let candidate = format!(
                    r#"{{"type":"candidate","to":"{to_name}","candidate":{{"candidate":"candidate:{k} 1 udp 2122260223 192.0.2.1 5{k}321 typ host","sdpMid":"0","sdpMLineIndex":0}}}}"#
                );
                from.send(Message::text(candidate))
                    .await
                    .map_err(|e| format!("send candidate: {e}"))?;
            }
        }
        for _ in 0..4 {
            client::wait_for(b, "candidate", &mut seq_b).await?;
            client::wait_for(a, "candidate", &mut seq_a).await?;
        }
        for (ws, seq) in [(a, seq_a), (b, seq_b)] {
            if ack && seq > 0 {
                let ack = format!(r#"{{"type":"ack","seq":{seq}}}"#);
                ws.send(Message::text(ack))
                    .await
                    .map_err(|e| format!("send ack: {e}"))?;
            }
        }
    }
    Ok(())
}
