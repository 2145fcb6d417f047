//! The Redis side of a node: connecting and reconnecting with a full resync,
//! then serving: the ordered writer (`write.rs`), the subscriber (`subscriber.rs`),
//! the heartbeat and reaper (`heartbeat.rs`); claims are in `claim.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::wire::{self, encode, Membership};
use super::{keys, lock, Cluster, Op};
use crate::hub::backplane::LocalSession;
use crate::protocol::{now_millis, LeaveReason};

use super::heartbeat::{alive_nodes, ticker};
use super::mirror::Mirrors;
use super::queue::OpReceiver;
use super::subscriber::subscriber;
use super::write::{retry_held, write, Held};

/// Commands per pipeline in a resync (a node with many sessions writes a lot).
const RESYNC_CHUNK: usize = 4096;
/// Members per part of a snapshot announcement: with metadata capped at a few
/// KiB, a part stays around a megabyte.
pub(super) const SNAPSHOT_PART: usize = 256;
/// Operations written per round trip at most, each delivery counted (several
/// share one queued operation); the last operation taken may pass it.
const BATCH: usize = 1024;
/// Scheduler rounds a busy writer lets pass to gather a batch ([`gather`]),
/// and the time it gives them at most (a round on a runtime with many ready
/// tasks can be long).
const GATHER_ROUNDS: usize = 4;
const GATHER_TIME: Duration = Duration::from_micros(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Pause before re-sending to a node that is not listening but not expired.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Runs the node's link to Redis until the cluster stops: connect, resync, serve;
/// while Redis is down, refuse what is queued and retry with a backoff.
pub(super) async fn run(cluster: Arc<Cluster>) {
    let Some(mut rx) = lock(&cluster.ops_rx).take() else {
        return;
    };
    let mut stop = cluster.stop.subscribe();
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            break;
        }
        match connect(&cluster).await {
            Ok((conn, pubsub)) => {
                backoff = Duration::from_millis(100);
                let reason = serve(&cluster, conn, pubsub, &mut rx, &mut stop).await;
                if *stop.borrow() {
                    cluster.up.store(false, Ordering::Release);
                    break;
                }
                set_down(&cluster, reason);
            }
            Err(e) => set_down(&cluster, format!("cannot connect to Redis: {e}")),
        }
        let deadline = Instant::now() + backoff;
        loop {
            tokio::select! {
                op = rx.recv() => refuse(&cluster, op),
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stop.changed() => break,
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    cluster.up.store(false, Ordering::Release);
    *lock(&cluster.down_reason) = "this node left the cluster".into();
    *lock(&cluster.query_conn) = None;
    // Closed, so a send racing this exit is refused to its caller, not left
    // queued with nobody to write or refuse it.
    for op in rx.close() {
        refuse(&cluster, op);
    }
    cluster.exited.send_replace(true);
}

/// Leaves the cluster in order: stop listening (senders now find no subscriber and
/// retry), write everything queued, then remove the liveness key, after which
/// senders buffer into Redis and other nodes claim this node's sessions at once.
pub(super) async fn leave(
    cluster: &Arc<Cluster>,
    conn: &mut MultiplexedConnection,
    rx: &mut OpReceiver,
    held: &mut Held,
    mirrors: &mut Mirrors,
) -> RedisResult<()> {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        rx.take(&mut batch, BATCH);
        let idle = batch.is_empty();
        // The last call (idle) writes the mirror's waiting frames.
        write(cluster, conn, rx, &mut batch, held, mirrors, idle).await?;
        if idle {
            break;
        }
    }
    retry_held(cluster, conn, held).await?;
    redis::cmd("DEL")
        .arg(keys::node_alive(&cluster.node))
        .query_async::<()>(conn)
        .await
}

/// While operations come fast, lets the node's other ready tasks run before a
/// batch goes (at most [`GATHER_ROUNDS`] times and [`GATHER_TIME`], while they
/// keep queueing more), so the deliveries they queue meanwhile join it; `n` is
/// what `batch` counts, and what it counts after is returned.
///
/// Why: a round trip's fixed costs (a `PUBLISH` Redis parses and fans out, the
/// subscriber woken on the other node, the context switches between them) were
/// spread over the ~60 deliveries that queued during the last one. Gathering
/// for a few scheduler rounds doubles that, and the cross-node CPU per message
/// fell by about a tenth (`docs/BENCHMARKS.md`, cluster). It costs no latency
/// at a slow pace (the writer is not busy then) and a few scheduler rounds,
/// far below the round trip, at a fast one.
async fn gather(rx: &OpReceiver, batch: &mut Vec<Op>, mut n: usize) -> usize {
    let start = Instant::now();
    for _ in 0..GATHER_ROUNDS {
        if n >= BATCH || start.elapsed() >= GATHER_TIME {
            break;
        }
        tokio::task::yield_now().await;
        let more = rx.take(batch, BATCH - n);
        if more == 0 {
            break;
        }
        n += more;
    }
    n
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

pub(super) fn set_down(cluster: &Cluster, reason: String) {
    cluster.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
    if cluster.up.swap(false, Ordering::AcqRel) {
        warn!(%reason, "cluster: Redis unavailable; serving local rooms only");
    } else {
        debug!(%reason, "cluster: Redis still unavailable");
    }
    *lock(&cluster.down_reason) = reason;
    *lock(&cluster.query_conn) = None;
    cluster.needs_resync.store(true, Ordering::Release);
}

/// What can not be carried out while Redis is down: sends are answered with an
/// error, state writes are left to the resync.
pub(super) fn refuse(cluster: &Cluster, op: Op) {
    match op {
        Op::Deliver { record, .. } => {
            for d in record.split_views() {
                if let Some((s, i)) = d.s.zip(d.i) {
                    let why = format!("cluster unavailable: {}", lock(&cluster.down_reason));
                    cluster.stats.refused.fetch_add(1, Ordering::Relaxed);
                    cluster.answered(s, i, Some(("internal".into(), why)));
                }
            }
        }
        _ => cluster.needs_resync.store(true, Ordering::Release),
    }
}

pub(super) async fn connect(
    cluster: &Cluster,
) -> RedisResult<(MultiplexedConnection, redis::aio::PubSub)> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let conn = cluster
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let subscribe = async {
        let mut pubsub = cluster.client.get_async_pubsub().await?;
        pubsub.subscribe(keys::MEMBERSHIP).await?;
        pubsub.subscribe(keys::inbox(&cluster.node)).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT * 2, subscribe)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "subscribe timed out")))??;
    Ok((conn, pubsub))
}

/// Serves one Redis connection until it fails (returns why) or the cluster stops.
pub(super) async fn serve(
    cluster: &Arc<Cluster>,
    mut conn: MultiplexedConnection,
    pubsub: redis::aio::PubSub,
    rx: &mut OpReceiver,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> String {
    // Subscribed first, so nothing announced during the resync is missed.
    let (fail_tx, mut fail_rx) = mpsc::channel::<String>(4);
    let (finish, finished) = oneshot::channel();
    let mut sub = tokio::spawn(subscriber(
        cluster.clone(),
        pubsub,
        fail_tx.clone(),
        finished,
    ));
    cluster.needs_resync.store(false, Ordering::Release);
    if let Err(e) = resync(cluster, &mut conn).await {
        sub.abort();
        return format!("resync failed: {e}");
    }
    *lock(&cluster.query_conn) = Some(conn.clone());
    cluster.up.store(true, Ordering::Release);
    info!(node = %cluster.node, "cluster: connected to Redis and in sync");
    let tick = tokio::spawn(ticker(cluster.clone(), conn.clone(), fail_tx));
    let mut batch = Vec::with_capacity(BATCH);
    let mut held = Held::default();
    let mut mirrors = Mirrors::default();
    let reason = loop {
        if cluster.needs_resync.swap(false, Ordering::AcqRel) {
            // The resync writes every local stream from memory (and marks its
            // frames written); sessions waiting here keep only what came after,
            // and handed-over ones still give theirs before `Owner`.
            if let Err(e) = resync(cluster, &mut conn).await {
                break format!("resync failed: {e}");
            }
        }
        tokio::select! {
            biased;
            Some(why) = fail_rx.recv() => break why,
            n = rx.recv_many(&mut batch, BATCH) => {
                // Its pace as of now (a burst that ended is no longer busy).
                mirrors.note_ops(0);
                let n = if mirrors.busy() { gather(rx, &mut batch, n).await } else { n };
                if let Err(e) = write(cluster, &mut conn, rx, &mut batch, &mut held, &mut mirrors, false).await {
                    break format!("Redis write failed: {e}");
                }
                // Nothing else to write, at a slow pace: the mirror's frames go
                // now, not later.
                mirrors.note_ops(n);
                if !mirrors.is_empty() && rx.is_empty() && !mirrors.busy() {
                    if let Err(e) = write(cluster, &mut conn, rx, &mut batch, &mut held, &mut mirrors, true).await {
                        break format!("Redis write failed: {e}");
                    }
                }
            }
            _ = tokio::time::sleep_until(mirrors.deadline().unwrap_or_else(far_future)), if !mirrors.is_empty() => {
                if let Err(e) = write(cluster, &mut conn, rx, &mut batch, &mut held, &mut mirrors, false).await {
                    break format!("Redis write failed: {e}");
                }
            }
            _ = tokio::time::sleep(RETRY_PAUSE), if !held.0.is_empty() => {
                if let Err(e) = retry_held(cluster, &mut conn, &mut held).await {
                    break format!("Redis write failed: {e}");
                }
            }
            _ = stop.changed() => {
                tick.abort();
                let _ = finish.send(());
                if tokio::time::timeout(RESPONSE_TIMEOUT * 2, &mut sub).await.is_err() {
                    sub.abort();
                }
                if let Err(e) = leave(cluster, &mut conn, rx, &mut held, &mut mirrors).await {
                    warn!(error = %e, "cluster: could not leave cleanly; the others will reap this node");
                }
                break "stopped".into();
            }
        }
    };
    sub.abort();
    tick.abort();
    reason
}

/// Writes everything this node holds (Redis may have lost it), announces it, and
/// loads what the other live nodes hold.
pub(super) async fn resync(
    cluster: &Arc<Cluster>,
    conn: &mut MultiplexedConnection,
) -> RedisResult<()> {
    let Some(hub) = cluster.hub.upgrade() else {
        return Ok(());
    };
    let node = &cluster.node;
    // What this node listed of the others before: whatever Redis no longer has
    // left while this node was not listening (a ghost, unless dropped below).
    let listed_before: HashSet<(Arc<str>, Arc<str>)> = hub
        .remote_members()
        .into_iter()
        .map(|(room, m)| (room, m.session_id))
        .collect();
    super::heartbeat::register(cluster, conn).await?;
    let mut pipe = Chunked::new();
    pipe.cmd(redis::cmd("SADD").arg(keys::NODES).arg(&**node).clone());
    let window = cluster.settings.resume_window.as_millis() as u64;
    for LocalSession {
        id: sid,
        resume_token: token,
        away,
        frames,
    } in hub.local_sessions()
    {
        let meta = keys::session_meta(&sid);
        let mut hset = redis::cmd("HSET");
        hset.arg(&meta)
            .arg("token")
            .arg(&*token)
            .arg("owner")
            .arg(&**node);
        if away {
            hset.arg("away_until").arg(now_millis() + window);
        }
        pipe.cmd(hset);
        if !away {
            pipe.cmd(redis::cmd("HDEL").arg(&meta).arg("away_until").clone());
        }
        pipe.cmd(
            redis::cmd("SADD")
                .arg(keys::node_sessions(node))
                .arg(&*sid)
                .clone(),
        );
        let stream = keys::session_replay(&sid);
        pipe.cmd(redis::cmd("DEL").arg(&stream).clone());
        for (seq, frame) in frames {
            pipe.cmd(
                redis::cmd("XADD")
                    .arg(&stream)
                    .arg(format!("{seq}-0"))
                    .arg("f")
                    .arg(frame.as_str())
                    .clone(),
            );
        }
        pipe.flush_if_full(conn).await?;
    }
    let mine: Vec<wire::Member> = hub
        .local_members()
        .into_iter()
        .map(|r| wire::Member::from_local(node, r))
        .collect();
    let mine_fields: HashSet<String> = mine.iter().map(wire::Member::field).collect();
    for m in &mine {
        pipe.cmd(
            redis::cmd("HSET")
                .arg(keys::MEMBERS)
                .arg(m.field())
                .arg(encode(m))
                .clone(),
        );
    }
    pipe.flush(conn).await?;
    // What Redis still lists for this node but this node no longer holds.
    let all: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::MEMBERS)
        .query_async(conn)
        .await?;
    let mut others: Vec<wire::Member> = Vec::new();
    for (field, value) in all {
        match serde_json::from_str::<wire::Member>(&value) {
            Ok(m) if m.n == *node => {
                if !mine_fields.contains(&field) {
                    pipe.cmd(redis::cmd("HDEL").arg(keys::MEMBERS).arg(&field).clone());
                }
            }
            Ok(m) => others.push(m),
            Err(_) => pipe.cmd(redis::cmd("HDEL").arg(keys::MEMBERS).arg(&field).clone()),
        }
    }
    // In parts, each far below Redis' client output limit (32 MB by default).
    let parts: Vec<&[wire::Member]> = if mine.is_empty() {
        vec![&[]]
    } else {
        mine.chunks(SNAPSHOT_PART).collect()
    };
    let last = parts.len() - 1;
    for (i, part) in parts.into_iter().enumerate() {
        let snapshot = Membership::Snapshot {
            n: node.clone(),
            ms: part.to_vec(),
            first: i == 0,
            more: i < last,
        };
        pipe.cmd(
            redis::cmd("PUBLISH")
                .arg(keys::MEMBERSHIP)
                .arg(encode(&snapshot))
                .clone(),
        );
        pipe.flush_if_full(conn).await?;
    }
    pipe.flush(conn).await?;
    // Load the members of live nodes (dead ones are the reaper's).
    let nodes: Vec<Arc<str>> = others
        .iter()
        .map(|m| m.n.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let alive = alive_nodes(conn, &nodes).await?;
    let mut listed_now = HashSet::new();
    for m in others {
        if alive.contains(&m.n) {
            listed_now.insert((m.r.clone(), m.s.clone()));
            hub.remote_joined(&m.r.clone(), m.to_remote());
        }
    }
    for (room, sid) in listed_before.difference(&listed_now) {
        hub.remote_left(room, sid, LeaveReason::Timeout);
    }
    cluster.stats.resyncs.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// A pipeline sent in chunks of [`RESYNC_CHUNK`] commands; errors of single
/// commands are ignored (a stale `XADD` is refused by Redis and harmless).
struct Chunked {
    pipe: redis::Pipeline,
    len: usize,
}

impl Chunked {
    fn new() -> Self {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        Chunked { pipe, len: 0 }
    }

    fn cmd(&mut self, cmd: redis::Cmd) {
        self.pipe.add_command(cmd);
        self.len += 1;
    }

    async fn flush_if_full(&mut self, conn: &mut MultiplexedConnection) -> RedisResult<()> {
        if self.len >= RESYNC_CHUNK {
            self.flush(conn).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut MultiplexedConnection) -> RedisResult<()> {
        if self.len > 0 {
            let _: Vec<RedisResult<Value>> = self.pipe.query_async(conn).await?;
            self.pipe = redis::pipe();
            self.pipe.ignore_errors();
            self.len = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::queue::OpQueue;

    fn publish() -> Op {
        Op::Publish {
            channel: "c".into(),
            payload: String::new(),
        }
    }

    /// A task that queues one operation each time it runs, `rounds` times;
    /// its first round also moves the paused clock on by `first_round_takes`.
    fn queue_each_round(
        q: &Arc<OpQueue>,
        rounds: usize,
        first_round_takes: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let q = q.clone();
        tokio::spawn(async move {
            for round in 0..rounds {
                q.try_send(publish()).expect("room");
                if round == 0 && !first_round_takes.is_zero() {
                    tokio::time::advance(first_round_takes).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        })
    }

    // The clock is paused: a loaded machine can take 500 us between two
    // scheduler rounds, and the rounds, not the wall clock, are under test here.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_busy_writer_gathers_while_tasks_keep_queueing_and_stops_when_they_do() {
        let (q, rx) = OpQueue::new();
        let q = Arc::new(q);
        let producer = queue_each_round(&q, 10, Duration::ZERO);
        let mut batch = Vec::new();
        let n = gather(&rx, &mut batch, 0).await;
        assert_eq!(n, GATHER_ROUNDS, "one per round, for the rounds allowed");
        assert_eq!(batch.len(), n);
        producer.await.unwrap();
        // Nothing queued meanwhile: what was left comes at the first round,
        // and nothing after.
        batch.clear();
        let n = gather(&rx, &mut batch, 0).await;
        assert_eq!(n, 10 - GATHER_ROUNDS);
        assert_eq!(gather(&rx, &mut batch, n).await, n);
        assert_eq!(batch.len(), n);
        // A full batch does not wait.
        q.try_send(publish()).expect("room");
        assert_eq!(gather(&rx, &mut batch, BATCH).await, BATCH);
        assert_eq!(rx.take(&mut batch, 1), 1, "still queued");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn gathering_stops_once_its_time_is_spent() {
        let (q, rx) = OpQueue::new();
        let q = Arc::new(q);
        // Each round queues one more, but the first round takes all the time.
        let producer = queue_each_round(&q, 6, GATHER_TIME);
        let mut batch = Vec::new();
        let n = gather(&rx, &mut batch, 0).await;
        assert!(
            (1..GATHER_ROUNDS).contains(&n),
            "stopped at the time cap, not the round cap: {n}"
        );
        producer.await.unwrap();
    }
}
