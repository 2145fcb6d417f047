//! The three load scenarios: `relay` (closed-loop candidate ping-pong
//! between pairs), `idle` (many joined connections that say nothing) and
//! `joins` (connect + join throughput). Each returns plain numbers; the
//! caller owns the server process and the report.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, FrameBuilder, Incoming, Wire, Ws};
use crate::sys;

/// How much other processes used the CPU during a run (% of one core).
pub(crate) trait Noise {
    fn noise_pct(&self) -> f64;
    /// Nothing lost, reordered or invalid (such a run is never repeated away).
    fn clean(&self) -> bool {
        true
    }
}

impl Noise for RelayResult {
    fn noise_pct(&self) -> f64 {
        self.others_cpu_pct
    }
    fn clean(&self) -> bool {
        self.lost + self.reordered + self.bad == 0
    }
}

impl Noise for JoinsResult {
    fn noise_pct(&self) -> f64 {
        self.others_cpu_pct
    }
}

impl Noise for crate::idle::IdleResult {
    /// RSS does not depend on what else runs.
    fn noise_pct(&self) -> f64 {
        0.0
    }
}

/// Parameters of one relay run.
#[derive(Debug, Clone)]
pub(crate) struct RelayParams {
    pub(crate) pairs: usize,
    pub(crate) window: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) frame_bytes: usize,
    pub(crate) ack_every: u64,
    /// The load clients' encoding (MessagePack: the server transcodes).
    pub(crate) wire: Wire,
    /// Whether the server stamps `from` (the bare relay forwards frames as sent).
    pub(crate) stamps_from: bool,
}

/// Outcome of one relay run.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelayResult {
    pub(crate) msgs_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) server_cpu_us_per_msg: f64,
    pub(crate) server_cpu_pct: f64,
    pub(crate) loadgen_cpu_pct: f64,
    /// CPU used by everything else on the machine, % of one core.
    pub(crate) others_cpu_pct: f64,
    pub(crate) lost: u64,
    pub(crate) reordered: u64,
    pub(crate) bad: u64,
    /// Candidates received over the whole run (warm-up and drain included).
    pub(crate) received: u64,
}

/// How long in-flight messages may take to arrive once sending stops.
const DRAIN: Duration = Duration::from_secs(5);

struct Peer {
    ws: Ws,
    me: String,
    frames: FrameBuilder,
    sent: u64,
    received: u64,
    expect: u64,
    in_flight: usize,
    last_seq: u64,
    acked_seq: u64,
    /// Frames fed but not flushed.
    dirty: bool,
    wire: Wire,
    stamps_from: bool,
}

#[derive(Default)]
struct PairStats {
    received_in_window: u64,
    /// Every candidate received, warm-up and drain included.
    received: u64,
    latencies_ns: Vec<u64>,
    lost: u64,
    reordered: u64,
    /// Wrong `from`, seq gaps, `error` frames, unparsable frames, disconnects.
    bad: u64,
    first_problem: Option<String>,
}

impl PairStats {
    fn problem(&mut self, what: String) {
        self.bad += 1;
        if self.first_problem.is_none() {
            self.first_problem = Some(what);
        }
    }
}

struct Clock {
    base: Instant,
    measure_from: Instant,
    stop_at: Instant,
}

impl Clock {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// One pair in its own room: A connects to `url_a`, B to `url_b` (the same server,
/// or another node of a cluster).
async fn setup_pair(
    url_a: &str,
    url_b: &str,
    i: usize,
    frame_bytes: usize,
    wire: Wire,
    stamps_from: bool,
) -> Result<(Peer, Peer), String> {
    let room = format!("bench-relay-{i}");
    let (na, nb) = (format!("a{i}"), format!("b{i}"));
    let mut wa = client::connect(url_a, wire).await?;
    let seq_a = client::join(&mut wa, &room, &na, wire).await?;
    let mut wb = client::connect(url_b, wire).await?;
    let seq_b = client::join_seeing(&mut wb, &room, &nb, &na, wire).await?;
    let mut seq_a2 = seq_a;
    client::wait_for(&mut wa, "user-joined", &mut seq_a2).await?;
    let peer = |ws, me: &str, to: &str, seq| Peer {
        ws,
        me: me.to_string(),
        frames: FrameBuilder::new(to, frame_bytes),
        sent: 0,
        received: 0,
        expect: 0,
        in_flight: 0,
        last_seq: seq,
        acked_seq: 0,
        dirty: false,
        wire,
        stamps_from,
    };
    Ok((peer(wa, &na, &nb, seq_a2), peer(wb, &nb, &na, seq_b)))
}

impl Peer {
    /// Queue one candidate; [`Peer::flush`] writes the queue out.
    async fn send_candidate(&mut self, clock: &Clock) -> Result<(), String> {
        let frame = self.frames.build(self.sent, clock.now_ns());
        self.sent += 1;
        self.in_flight += 1;
        let msg = self.wire.message(frame);
        self.feed(msg).await
    }

    async fn feed(&mut self, msg: Message) -> Result<(), String> {
        self.dirty = true;
        self.ws
            .feed(msg)
            .await
            .map_err(|e| format!("{} send: {e}", self.me))
    }

    /// Write out everything queued since the last flush (one syscall).
    async fn flush(&mut self) -> Result<(), String> {
        if !std::mem::take(&mut self.dirty) {
            return Ok(());
        }
        self.ws
            .flush()
            .await
            .map_err(|e| format!("{} flush: {e}", self.me))
    }
}

/// Handle one frame read by `rx`, which was sent (if a candidate) by `tx`.
/// Returns false when `rx`'s connection is gone.
async fn on_frame(
    rx: &mut Peer,
    tx: &mut Peer,
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    clock: &Clock,
    sending: bool,
    ack_every: u64,
    st: &mut PairStats,
) -> bool {
    // JSON frames are parsed in place; MessagePack ones after transcoding.
    let (utf8, decoded);
    let text: &str = match frame {
        Some(Ok(Message::Text(t))) => {
            utf8 = t;
            utf8.as_str()
        }
        Some(Ok(Message::Binary(b))) => match client::msgpack_to_json(&b) {
            Ok(json) => {
                decoded = json;
                &decoded
            }
            Err(e) => {
                st.problem(format!("{}: {e}", rx.me));
                return true;
            }
        },
        Some(Ok(Message::Close(c))) => {
            st.problem(format!("{}: server closed: {c:?}", rx.me));
            return false;
        }
        Some(Ok(_)) => return true,
        Some(Err(e)) => {
            st.problem(format!("{}: {e}", rx.me));
            return false;
        }
        None => {
            st.problem(format!("{}: connection ended", rx.me));
            return false;
        }
    };
    let now = Instant::now();
    let msg: Incoming<'_> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            st.problem(format!("{}: unparsable frame ({e}): {text}", rx.me));
            return true;
        }
    };
    if let Some(seq) = msg.seq {
        if rx.last_seq != 0 && seq != rx.last_seq + 1 {
            st.problem(format!("{}: seq {} after {}", rx.me, seq, rx.last_seq));
        }
        rx.last_seq = seq;
    }
    match msg.ty {
        "candidate" => {
            if msg.from != Some(tx.me.as_str()) && (rx.stamps_from || msg.from.is_some()) {
                st.problem(format!("{}: candidate from {:?}", rx.me, msg.from));
            }
            let (n, t) = msg.candidate.as_ref().map_or((None, None), |c| (c.n, c.t));
            let (Some(n), Some(t)) = (n, t) else {
                st.problem(format!("{}: candidate without n/t", rx.me));
                return true;
            };
            if n >= rx.expect {
                // A jump forward means messages in between never arrived;
                // they are counted as lost at the end (sent - received).
                rx.expect = n + 1;
            } else {
                st.reordered += 1;
            }
            rx.received += 1;
            tx.in_flight = tx.in_flight.saturating_sub(1);
            if now >= clock.measure_from && now < clock.stop_at {
                st.received_in_window += 1;
                st.latencies_ns
                    .push(((now - clock.base).as_nanos() as u64).saturating_sub(t));
            }
            if sending {
                if let Err(e) = tx.send_candidate(clock).await {
                    st.problem(e);
                }
            }
        }
        "error" => st.problem(format!("{}: server error {:?}: {text}", rx.me, msg.code)),
        _ => {}
    }
    if ack_every > 0 && rx.last_seq >= rx.acked_seq + ack_every {
        rx.acked_seq = rx.last_seq;
        let ack = format!(r#"{{"type":"ack","seq":{}}}"#, rx.last_seq);
        let ack = rx.wire.message(ack);
        if let Err(e) = rx.feed(ack).await {
            st.problem(e);
        }
    }
    true
}

async fn run_pair(
    mut a: Peer,
    mut b: Peer,
    clock: Arc<Clock>,
    window: usize,
    ack_every: u64,
) -> PairStats {
    let mut st = PairStats::default();
    for _ in 0..window {
        for p in [&mut a, &mut b] {
            if let Err(e) = p.send_candidate(&clock).await {
                st.problem(e);
            }
        }
    }
    for p in [&mut a, &mut b] {
        if let Err(e) = p.flush().await {
            st.problem(e);
        }
    }
    let sleep = tokio::time::sleep_until(clock.stop_at);
    tokio::pin!(sleep);
    let mut sending = true;
    loop {
        let mut alive = tokio::select! {
            f = a.ws.next() => on_frame(&mut a, &mut b, f, &clock, sending, ack_every, &mut st).await,
            f = b.ws.next() => on_frame(&mut b, &mut a, f, &clock, sending, ack_every, &mut st).await,
            () = &mut sleep => {
                if !sending {
                    break;
                }
                sending = false;
                sleep.as_mut().reset(clock.stop_at + DRAIN);
                true
            }
        };
        // Handle every frame that is already readable, so that the replies
        // they trigger leave in one write per connection (as a real client
        // trickling ICE candidates would batch them).
        for _ in 0..256 {
            let mut progressed = false;
            if let Some(f) = a.ws.next().now_or_never() {
                alive &= on_frame(&mut a, &mut b, f, &clock, sending, ack_every, &mut st).await;
                progressed = true;
            }
            if let Some(f) = b.ws.next().now_or_never() {
                alive &= on_frame(&mut b, &mut a, f, &clock, sending, ack_every, &mut st).await;
                progressed = true;
            }
            if !progressed || !alive {
                break;
            }
        }
        for p in [&mut a, &mut b] {
            if let Err(e) = p.flush().await {
                st.problem(e);
                alive = false;
            }
        }
        if !alive || (!sending && a.in_flight == 0 && b.in_flight == 0) {
            break;
        }
    }
    st.lost = a.sent.saturating_sub(b.received) + b.sent.saturating_sub(a.received);
    st.received = a.received + b.received;
    if st.lost > 0 && st.first_problem.is_none() {
        st.first_problem = Some(format!(
            "{}→{}: {} sent, {} received; {}→{}: {} sent, {} received",
            a.me, b.me, a.sent, b.received, b.me, a.me, b.sent, a.received
        ));
    }
    for p in [&mut a, &mut b] {
        let _ = tokio::time::timeout(Duration::from_millis(200), p.ws.close(None)).await;
    }
    st
}

/// Closed-loop relay: `pairs` pairs, each in its own room; A sends
/// candidates to B and B to A, `window` in flight per direction. A side on
/// `url_a`, B side on `url_b`; server CPU is summed over `pids` (cluster: both
/// nodes and Redis); `perf` samples the first.
pub(crate) async fn relay(
    url_a: &str,
    url_b: &str,
    pids: &[u32],
    p: &RelayParams,
    perf: Option<&Path>,
) -> Result<RelayResult, String> {
    let mut pairs = Vec::with_capacity(p.pairs);
    for i in 0..p.pairs {
        pairs.push(setup_pair(url_a, url_b, i, p.frame_bytes, p.wire, p.stamps_from).await?);
    }
    let base = Instant::now();
    let clock = Arc::new(Clock {
        base,
        measure_from: base + p.warmup,
        stop_at: base + p.warmup + p.duration,
    });
    let tasks: Vec<_> = pairs
        .into_iter()
        .map(|(a, b)| tokio::spawn(run_pair(a, b, Arc::clone(&clock), p.window, p.ack_every)))
        .collect();
    tokio::time::sleep_until(clock.measure_from).await;
    let recorder = perf.and_then(|out| sys::PerfRecord::start(pids[0], out));
    let cpu0 = sys::CpuSample::take(pids);
    tokio::time::sleep_until(clock.stop_at).await;
    let cpu = sys::CpuSample::take(pids).since(&cpu0);
    drop(recorder);

    let mut total = PairStats::default();
    for t in tasks {
        let st = match tokio::time::timeout(DRAIN + Duration::from_secs(5), t).await {
            Ok(Ok(st)) => st,
            _ => return Err("a relay pair did not finish".into()),
        };
        total.received_in_window += st.received_in_window;
        total.received += st.received;
        total.latencies_ns.extend(st.latencies_ns);
        total.lost += st.lost;
        total.reordered += st.reordered;
        total.bad += st.bad;
        if total.first_problem.is_none() {
            total.first_problem = st.first_problem;
        }
    }
    if let Some(problem) = &total.first_problem {
        eprintln!("    first problem: {problem}");
    }
    let msgs = total.received_in_window as f64;
    let mut lat = total.latencies_ns;
    Ok(RelayResult {
        msgs_per_s: msgs / (clock.stop_at - clock.measure_from).as_secs_f64(),
        p50_us: percentile_us(&mut lat, 0.50),
        p99_us: percentile_us(&mut lat, 0.99),
        server_cpu_us_per_msg: cpu.server * 1e6 / msgs.max(1.0),
        server_cpu_pct: 100.0 * cpu.server / cpu.wall,
        loadgen_cpu_pct: 100.0 * cpu.own / cpu.wall,
        others_cpu_pct: 100.0 * cpu.others / cpu.wall,
        lost: total.lost,
        reordered: total.reordered,
        bad: total.bad,
        received: total.received,
    })
}

fn percentile_us(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((v.len() - 1) as f64 * q).round() as usize;
    let (_, x, _) = v.select_nth_unstable(idx);
    *x as f64 / 1000.0
}

/// Open `n` connections, `concurrency` at a time, each joining room
/// `{prefix}{i / 2}` (rooms of two) as user `{prefix}u{i}`; with each, the
/// `seq` of its `room-info`.
pub(crate) async fn connect_many(
    url: &str,
    n: usize,
    concurrency: usize,
    prefix: &str,
) -> Result<Vec<(usize, Ws, u64)>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.clamp(1, n.max(1)))
        .map(|_| {
            let (next, url, prefix) = (Arc::clone(&next), url.to_string(), prefix.to_string());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, String>(mine);
                    }
                    let mut ws = client::connect(&url, Wire::Json).await?;
                    let seq = client::join(
                        &mut ws,
                        &format!("{prefix}{}", i / 2),
                        &format!("{prefix}u{i}"),
                        Wire::Json,
                    )
                    .await?;
                    mine.push((i, ws, seq));
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    let mut first_err = None;
    for w in workers {
        match w.await {
            Ok(Ok(v)) => all.extend(v),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    match first_err {
        Some(e) => Err(format!("{e} (after {} joined)", all.len())),
        None => Ok(all),
    }
}

/// Outcome of one joins run.
#[derive(Debug, Clone, Default)]
pub(crate) struct JoinsResult {
    pub(crate) joins_per_s: f64,
    pub(crate) server_cpu_us_per_join: f64,
    pub(crate) loadgen_cpu_pct: f64,
    /// CPU used by everything else on the machine, % of one core.
    pub(crate) others_cpu_pct: f64,
}

/// Connect + join `n` connections, `concurrency` at a time; joins per second.
pub(crate) async fn joins(
    url: &str,
    pid: u32,
    n: usize,
    concurrency: usize,
    perf: Option<&Path>,
) -> Result<JoinsResult, String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recorder = perf.and_then(|out| sys::PerfRecord::start(pid, out));
    let cpu0 = sys::CpuSample::take(&[pid]);
    let conns = connect_many(url, n, concurrency, "join").await?;
    let cpu = sys::CpuSample::take(&[pid]).since(&cpu0);
    drop(recorder);
    drop(conns);
    Ok(JoinsResult {
        joins_per_s: n as f64 / cpu.wall,
        server_cpu_us_per_join: cpu.server * 1e6 / n as f64,
        loadgen_cpu_pct: 100.0 * cpu.own / cpu.wall,
        others_cpu_pct: 100.0 * cpu.others / cpu.wall,
    })
}
