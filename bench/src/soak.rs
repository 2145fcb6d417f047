//! The soak run: minutes of churn against one server — pairs connect, join,
//! relay acknowledged messages, drop without a close frame and resume, leave,
//! start over — while the server's RSS and open descriptors are sampled. At the
//! end the clients go, the away sessions expire, and the last sample is set
//! against the first: what churn leaves behind is a leak. Every acknowledged
//! message must reach its receiver (live or by the resume's replay).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{connect, Wire, Ws, STEP_TIMEOUT};
use crate::sys::{self, ServerProc};

/// What every pair counts.
#[derive(Debug, Default)]
struct Counts {
    acked: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    resumes: AtomicU64,
    cycles: AtomicU64,
    failures: AtomicU64,
}

/// One client: its socket, session and the highest `seq` it saw.
struct Peer {
    ws: Ws,
    session: (String, String),
    last_seq: u64,
}

async fn recv(ws: &mut Ws) -> Result<Value, String> {
    loop {
        let next = tokio::time::timeout(STEP_TIMEOUT, ws.next())
            .await
            .map_err(|_| "no frame in time".to_owned())?;
        match next {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str()).map_err(|e| e.to_string())
            }
            Some(Ok(Message::Close(c))) => return Err(format!("closed: {c:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed".into()),
        }
    }
}

async fn send(ws: &mut Ws, v: Value) -> Result<(), String> {
    ws.send(Message::text(v.to_string()))
        .await
        .map_err(|e| e.to_string())
}

impl Peer {
    async fn open(url: &str) -> Result<Peer, String> {
        let mut ws = connect(url, Wire::Json).await?;
        let c = recv(&mut ws).await?;
        let session = (
            c["sessionId"].as_str().unwrap_or_default().to_owned(),
            c["resumeToken"].as_str().unwrap_or_default().to_owned(),
        );
        Ok(Peer {
            ws,
            session,
            last_seq: 0,
        })
    }

    /// The next frame of type `ty`; `seq`s are followed, `message`s kept in `got`.
    async fn until(&mut self, ty: &str, got: &mut Vec<u64>) -> Result<Value, String> {
        loop {
            let v = recv(&mut self.ws).await?;
            self.last_seq = self.last_seq.max(v["seq"].as_u64().unwrap_or(0));
            if v["type"] == "message" {
                got.extend(v["data"]["n"].as_u64());
            }
            if v["type"] == ty {
                return Ok(v);
            }
            if v["type"] == "error" {
                return Err(format!("error: {v}"));
            }
        }
    }
}

/// One pair's life: join, rounds of acknowledged messages from `a` to `b`
/// (some with `b` cut and resuming in between), then a clean or abrupt end.
async fn pair_cycle(url: &str, i: usize, cycle: u64, counts: &Counts) -> Result<(), String> {
    let room = format!("soak-{i}-{cycle}");
    // Fresh ids per cycle: an abruptly ended cycle leaves its away sessions
    // holding the old ones for the resume window.
    let (ua, ub) = (format!("a{i}-{cycle}"), format!("b{i}-{cycle}"));
    let mut a = Peer::open(url).await?;
    let mut b = Peer::open(url).await?;
    let mut got = Vec::new();
    send(&mut a.ws, json!({"type":"join","roomId":room,"userId":ua})).await?;
    a.until("room-info", &mut got).await?;
    send(&mut b.ws, json!({"type":"join","roomId":room,"userId":ub})).await?;
    b.until("room-info", &mut got).await?;
    a.until("user-joined", &mut got).await?;
    let mut n = 0u64;
    let mut acked = Vec::new();
    for round in 0..4 {
        let cut = round % 2 == 1;
        if cut {
            // b's network goes: no close frame; its session waits for a resume.
            drop(std::mem::replace(
                &mut b.ws,
                connect(url, Wire::Json).await?,
            ));
            recv(&mut b.ws).await?; // the new connection's own `connected`
        }
        for _ in 0..10 {
            send(
                &mut a.ws,
                json!({"type":"message","to":ub,"id":n,"data":{"n":n}}),
            )
            .await?;
            n += 1;
        }
        let mut answered = 0;
        let mut ignored = Vec::new();
        while answered < 10 {
            let v = recv(&mut a.ws).await?;
            match v["type"].as_str() {
                Some("ack") => {
                    acked.extend(v["id"].as_u64());
                    answered += 1;
                }
                Some("error") => answered += 1,
                _ => ignored.push(v),
            }
        }
        if cut {
            let (sid, token) = b.session.clone();
            let last = b.last_seq;
            send(
                &mut b.ws,
                json!({"type":"resume","sessionId":sid,"resumeToken":token,"lastSeq":last}),
            )
            .await?;
            b.until("resumed", &mut got).await?;
            counts.resumes.fetch_add(1, Ordering::Relaxed);
        }
        while !acked.iter().all(|n| got.contains(n)) {
            b.until("message", &mut got).await?;
        }
    }
    counts
        .acked
        .fetch_add(acked.len() as u64, Ordering::Relaxed);
    counts
        .received
        .fetch_add(got.len() as u64, Ordering::Relaxed);
    let lost = acked.iter().filter(|n| !got.contains(n)).count();
    counts.lost.fetch_add(lost as u64, Ordering::Relaxed);
    if cycle.is_multiple_of(2) {
        // A clean end: leave and close.
        for (p, u) in [(&mut a, &ua), (&mut b, &ub)] {
            let _ = send(&mut p.ws, json!({"type":"leave","roomId":room,"userId":u})).await;
            let _ = p.ws.close(None).await;
        }
    }
    // Otherwise both drop without a close: their sessions expire after the window.
    Ok(())
}

/// The named series of the server's `/metrics`, as `name value` pairs.
fn gauges(ws_url: &str, names: &[&str]) -> String {
    use std::io::{Read, Write};
    let addr = ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    let mut text = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let _ = s.read_to_string(&mut text);
    }
    text.lines()
        .filter(|l| names.iter().any(|n| l.starts_with(n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `pairs` pairs of churn for `minutes`, sampling every `sample`.
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    server_cmd: &str,
    pin: Option<usize>,
    pairs: usize,
    minutes: f64,
    sample: Duration,
    settle: Duration,
) -> Result<bool, String> {
    let server = ServerProc::spawn(server_cmd, pin, Duration::from_secs(10))?;
    let pid = server.pid;
    let url = server.url.clone();
    let probe = move || {
        let rss = sys::rss_bytes(pid).unwrap_or(0) / 1024;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        (rss, fds)
    };
    let (base_rss, base_fds) = probe();
    eprintln!("soak: {pairs} pairs for {minutes} min against {server_cmd}");
    println!("t_s\trss_kib\tfds\tacked\tlost\tresumes\tcycles\tfailures");
    println!("0\t{base_rss}\t{base_fds}\t0\t0\t0\t0\t0");
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let started = Instant::now();
    let (mut peak_rss, mut peak_fds) = (base_rss, base_fds);
    rt.block_on(async {
        let mut workers = tokio::task::JoinSet::new();
        for i in 0..pairs {
            let (url, counts) = (url.clone(), counts.clone());
            workers.spawn(async move {
                let mut cycle = 0u64;
                while Instant::now() < deadline {
                    if let Err(e) = pair_cycle(&url, i, cycle, &counts).await {
                        counts.failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("soak: pair {i} cycle {cycle}: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    counts.cycles.fetch_add(1, Ordering::Relaxed);
                    cycle += 1;
                }
            });
        }
        let mut tick = tokio::time::interval(sample);
        tick.tick().await;
        while !workers.is_empty() {
            tokio::select! {
                _ = workers.join_next() => {}
                _ = tick.tick() => {
                    let (rss, fds) = probe();
                    (peak_rss, peak_fds) = (peak_rss.max(rss), peak_fds.max(fds));
                    let c = &counts;
                    println!(
                        "{}\t{rss}\t{fds}\t{}\t{}\t{}\t{}\t{}",
                        started.elapsed().as_secs(),
                        c.acked.load(Ordering::Relaxed),
                        c.lost.load(Ordering::Relaxed),
                        c.resumes.load(Ordering::Relaxed),
                        c.cycles.load(Ordering::Relaxed),
                        c.failures.load(Ordering::Relaxed),
                    );
                }
            }
        }
    });
    // The clients are gone; the abruptly dropped sessions expire after the window.
    std::thread::sleep(settle);
    let (end_rss, end_fds) = probe();
    let left = gauges(&url, &["switchboard_sessions ", "switchboard_rooms "]);
    eprintln!("soak: after settling, {left}");
    let c = &counts;
    let (acked, lost) = (
        c.acked.load(Ordering::Relaxed),
        c.lost.load(Ordering::Relaxed),
    );
    println!(
        "{}\t{end_rss}\t{end_fds}\t{acked}\t{lost}\t{}\t{}\t{}",
        started.elapsed().as_secs(),
        c.resumes.load(Ordering::Relaxed),
        c.cycles.load(Ordering::Relaxed),
        c.failures.load(Ordering::Relaxed),
    );
    eprintln!(
        "soak: RSS {base_rss} KiB at start, {peak_rss} KiB at peak, {end_rss} KiB after settling; \
         descriptors {base_fds} / {peak_fds} / {end_fds}; {acked} messages acknowledged, {lost} lost; \
         {} resumes, {} cycles, {} failed cycles",
        c.resumes.load(Ordering::Relaxed),
        c.cycles.load(Ordering::Relaxed),
        c.failures.load(Ordering::Relaxed),
    );
    drop(server);
    Ok(lost == 0 && end_fds <= base_fds)
}
