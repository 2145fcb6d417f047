//! The Redis side of a node: connecting and reconnecting (with a full resync), the
//! ordered writer, the subscriber that applies what other nodes say, the heartbeat
//! and the reaper of dead nodes, and claiming sessions for a resume.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult, Script, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::wire::{self, encode, Delivery, Inbox, Membership};
use super::{keys, lock, Cluster, Op, HELD_PER_CLAIM, RELEASE_TIMEOUT};
use crate::hub::backplane::{ClaimRequest, Delivered, LocalSession, SessionParts};
use crate::hub::Hub;
use crate::protocol::{now_millis, Frame, LeaveReason};

/// Commands per pipeline in a resync (a node with many sessions writes a lot).
const RESYNC_CHUNK: usize = 4096;
/// Operations written per round trip at most.
const BATCH: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one claim may take in all.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
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
                op = rx.recv() => match op {
                    Some(op) => refuse(&cluster, op),
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stop.changed() => break,
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    cluster.up.store(false, Ordering::Release);
    *lock(&cluster.down_reason) = "this node left the cluster".into();
    *lock(&cluster.query_conn) = None;
    while let Ok(op) = rx.try_recv() {
        refuse(&cluster, op);
    }
    cluster.exited.send_replace(true);
}

/// Leaves the cluster in order: stop listening (senders now find no subscriber and
/// retry), write everything queued, then remove the liveness key, after which
/// senders buffer into Redis and other nodes claim this node's sessions at once.
async fn leave(
    cluster: &Arc<Cluster>,
    conn: &mut MultiplexedConnection,
    rx: &mut mpsc::Receiver<Op>,
    held: &mut Held,
) -> RedisResult<()> {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        write(cluster, conn, &mut batch, held).await?;
    }
    retry_held(cluster, conn, held).await?;
    redis::cmd("DEL")
        .arg(keys::node_alive(&cluster.node))
        .query_async::<()>(conn)
        .await
}

fn set_down(cluster: &Cluster, reason: String) {
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
fn refuse(cluster: &Cluster, op: Op) {
    match op {
        Op::Deliver { delivery, .. } => {
            if let (Some(s), Some(i)) = (&delivery.s, &delivery.i) {
                let why = format!("cluster unavailable: {}", lock(&cluster.down_reason));
                cluster.stats.refused.fetch_add(1, Ordering::Relaxed);
                cluster.answered(s, i, Some(("internal".into(), why)));
            }
        }
        _ => cluster.needs_resync.store(true, Ordering::Release),
    }
}

async fn connect(cluster: &Cluster) -> RedisResult<(MultiplexedConnection, redis::aio::PubSub)> {
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
async fn serve(
    cluster: &Arc<Cluster>,
    mut conn: MultiplexedConnection,
    pubsub: redis::aio::PubSub,
    rx: &mut mpsc::Receiver<Op>,
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
    let reason = loop {
        if cluster.needs_resync.swap(false, Ordering::AcqRel) {
            if let Err(e) = resync(cluster, &mut conn).await {
                break format!("resync failed: {e}");
            }
        }
        tokio::select! {
            biased;
            Some(why) = fail_rx.recv() => break why,
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break "stopped".into();
                }
                if let Err(e) = write(cluster, &mut conn, &mut batch, &mut held).await {
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
                if let Err(e) = leave(cluster, &mut conn, rx, &mut held).await {
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
async fn resync(cluster: &Arc<Cluster>, conn: &mut MultiplexedConnection) -> RedisResult<()> {
    let Some(hub) = cluster.hub.upgrade() else {
        return Ok(());
    };
    let node = &cluster.node;
    let ttl = cluster.settings.node_ttl.as_millis() as u64;
    let mut pipe = Chunked::new();
    pipe.cmd(
        redis::cmd("SET")
            .arg(keys::node_alive(node))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .clone(),
    );
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
    pipe.cmd(
        redis::cmd("PUBLISH")
            .arg(keys::MEMBERSHIP)
            .arg(encode(&Membership::Snapshot {
                n: node.clone(),
                ms: mine,
            }))
            .clone(),
    );
    pipe.flush(conn).await?;
    // Load the members of live nodes (dead ones are the reaper's).
    let nodes: Vec<Arc<str>> = others
        .iter()
        .map(|m| m.n.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let alive = alive_nodes(conn, &nodes).await?;
    for m in others {
        if alive.contains(&m.n) {
            hub.remote_joined(&m.r.clone(), m.to_remote());
        }
    }
    cluster.stats.resyncs.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Which of `nodes` have their liveness key.
async fn alive_nodes(
    conn: &mut MultiplexedConnection,
    nodes: &[Arc<str>],
) -> RedisResult<HashSet<Arc<str>>> {
    if nodes.is_empty() {
        return Ok(HashSet::new());
    }
    let mut pipe = redis::pipe();
    for n in nodes {
        pipe.cmd("EXISTS").arg(keys::node_alive(n));
    }
    let exists: Vec<i64> = pipe.query_async(conn).await?;
    Ok(nodes
        .iter()
        .zip(exists)
        .filter(|(_, e)| *e == 1)
        .map(|(n, _)| n.clone())
        .collect())
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

/// Writes one batch of operations in one round trip, in order; then handles the
/// deliveries no node was subscribed for.
async fn write(
    cluster: &Arc<Cluster>,
    conn: &mut MultiplexedConnection,
    batch: &mut Vec<Op>,
    held: &mut Held,
) -> RedisResult<()> {
    let node = &cluster.node;
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut n = 0usize;
    let mut publishes: Vec<(usize, Arc<str>, Box<Delivery>)> = Vec::new();
    for op in batch.drain(..) {
        match op {
            Op::Open { sid, token } => {
                pipe.cmd("HSET")
                    .arg(keys::session_meta(&sid))
                    .arg("token")
                    .arg(&*token)
                    .arg("owner")
                    .arg(&**node);
                pipe.cmd("SADD").arg(keys::node_sessions(node)).arg(&*sid);
                n += 2;
            }
            Op::Mirror {
                sid,
                seq,
                frame,
                first_seq,
            } => {
                // Trimmed to exactly the in-memory buffer (message and byte bounds).
                pipe.cmd("XADD")
                    .arg(keys::session_replay(&sid))
                    .arg("MINID")
                    .arg(format!("{first_seq}-0"))
                    .arg(format!("{seq}-0"))
                    .arg("f")
                    .arg(frame.as_str());
                n += 1;
            }
            Op::Away { sid, until } => {
                match until {
                    Some(t) => pipe
                        .cmd("HSET")
                        .arg(keys::session_meta(&sid))
                        .arg("away_until")
                        .arg(t),
                    None => pipe
                        .cmd("HDEL")
                        .arg(keys::session_meta(&sid))
                        .arg("away_until"),
                };
                n += 1;
            }
            Op::Close { sid } => {
                pipe.cmd("DEL")
                    .arg(keys::session_meta(&sid))
                    .arg(keys::session_replay(&sid));
                pipe.cmd("SREM").arg(keys::node_sessions(node)).arg(&*sid);
                n += 2;
            }
            Op::Join(m) => {
                pipe.cmd("HSET")
                    .arg(keys::MEMBERS)
                    .arg(m.field())
                    .arg(encode(&m));
                pipe.cmd("HSET")
                    .arg(keys::session_meta(&m.s))
                    .arg("user")
                    .arg(&*m.u);
                pipe.cmd("PUBLISH")
                    .arg(keys::MEMBERSHIP)
                    .arg(encode(&Membership::Joined { m }));
                n += 3;
            }
            Op::Leave {
                room,
                user,
                sid,
                reason,
            } => {
                pipe.cmd("HDEL")
                    .arg(keys::MEMBERS)
                    .arg(keys::member_field(&room, &user, &sid));
                pipe.cmd("PUBLISH")
                    .arg(keys::MEMBERSHIP)
                    .arg(encode(&Membership::Left {
                        n: node.clone(),
                        r: room,
                        s: sid,
                        why: reason,
                    }));
                n += 2;
            }
            Op::Deliver { node: to, delivery } => {
                if held.holds(&to) {
                    held.hold(&to, delivery);
                    continue;
                }
                pipe.cmd("PUBLISH")
                    .arg(keys::inbox(&to))
                    .arg(encode(&Inbox::Deliver(delivery.clone())));
                publishes.push((n, to, delivery));
                n += 1;
            }
            Op::Publish { channel, payload } => {
                pipe.cmd("PUBLISH").arg(channel).arg(payload);
                n += 1;
            }
            Op::Owner { sid, node: to } => {
                pipe.cmd("HSET")
                    .arg(keys::session_meta(&sid))
                    .arg("owner")
                    .arg(&*to);
                pipe.cmd("SREM").arg(keys::node_sessions(node)).arg(&*sid);
                pipe.cmd("SADD").arg(keys::node_sessions(&to)).arg(&*sid);
                n += 3;
            }
        }
    }
    if n > 0 {
        let results: Vec<RedisResult<Value>> = pipe.query_async(conn).await?;
        for (i, to, delivery) in publishes {
            if let Some(Ok(Value::Int(0))) = results.get(i) {
                if held.holds(&to) {
                    held.hold(&to, delivery);
                } else if let Orphan::Hold(rest) = orphan(cluster, conn, &to, delivery).await? {
                    held.hold(&to, rest);
                }
            }
        }
    }
    Ok(())
}

/// Deliveries held for nodes that stopped listening but whose liveness key has not
/// expired yet (in the last moments of a drain, or just dead): per node, in
/// order, re-tried every [`RETRY_PAUSE`] until they can be delivered or buffered,
/// for at most a node TTL. Everything for such a node queues behind them, so one
/// sender's messages keep their order.
#[derive(Debug, Default)]
struct Held(HashMap<Arc<str>, (Instant, VecDeque<Box<Delivery>>)>);

impl Held {
    fn hold(&mut self, node: &Arc<str>, d: Box<Delivery>) {
        self.0
            .entry(node.clone())
            .or_insert_with(|| (Instant::now(), VecDeque::new()))
            .1
            .push_back(d);
    }

    fn holds(&self, node: &Arc<str>) -> bool {
        self.0.contains_key(node)
    }
}

/// What became of a delivery no node was subscribed for.
enum Orphan {
    Done,
    /// Its node is silent but not expired: hold these targets (the rest is done).
    Hold(Box<Delivery>),
}

/// A delivery that no node was subscribed for: its node drained or died. Each
/// receiver's session is buffered in Redis if it awaits a resume, redirected if
/// another node claimed it meanwhile, refused if it is gone; if the node has not
/// expired yet, the rest is held.
async fn orphan(
    cluster: &Arc<Cluster>,
    conn: &mut MultiplexedConnection,
    to: &Arc<str>,
    mut d: Box<Delivery>,
) -> RedisResult<Orphan> {
    let script = Script::new(keys::BUFFER_ORPHAN);
    let mut accepted = 0usize;
    let mut redirected = false;
    for k in 0..d.t.len() {
        let sid = d.t[k].clone();
        let r: Vec<Value> = script
            .key(keys::session_meta(&sid))
            .key(keys::session_replay(&sid))
            .arg(d.b.get())
            .arg(cluster.settings.replay_messages)
            .invoke_async(conn)
            .await?;
        match value_str(r.first()).as_deref() {
            Some("ok") => {
                accepted += 1;
                cluster
                    .stats
                    .buffered_orphan
                    .fetch_add(1, Ordering::Relaxed);
            }
            Some("live") => match value_str(r.get(1)) {
                Some(owner) if *owner != **to => {
                    // Claimed by another node meanwhile: follow it there.
                    let mut moved = d.clone();
                    moved.t = vec![sid];
                    if d.u {
                        redirected = true;
                    } else {
                        moved.s = None;
                        moved.i = None;
                    }
                    let _ = cluster.ops.try_send(Op::Deliver {
                        node: owner.into(),
                        delivery: moved,
                    });
                }
                _ => {
                    d.t.drain(..k);
                    return Ok(Orphan::Hold(d));
                }
            },
            _ => {}
        }
    }
    if let (Some(s), Some(i)) = (&d.s, &d.i) {
        if !redirected {
            let error = (d.u && accepted == 0).then(not_found_error);
            cluster.answered(s, i, error);
        }
    }
    Ok(Orphan::Done)
}

/// Re-tries the held deliveries of every silent node, in order per node; those of
/// a node still silent and unexpired well past its TTL are refused.
async fn retry_held(
    cluster: &Arc<Cluster>,
    conn: &mut MultiplexedConnection,
    held: &mut Held,
) -> RedisResult<()> {
    let nodes: Vec<Arc<str>> = held.0.keys().cloned().collect();
    let give_up = cluster.settings.node_ttl + RETRY_PAUSE * 5;
    for node in nodes {
        let Some((since, mut queue)) = held.0.remove(&node) else {
            continue;
        };
        while let Some(d) = queue.pop_front() {
            // It may listen again (its subscription came back).
            let listeners: i64 = redis::cmd("PUBLISH")
                .arg(keys::inbox(&node))
                .arg(encode(&Inbox::Deliver(d.clone())))
                .query_async(conn)
                .await?;
            if listeners > 0 {
                continue;
            }
            if let Orphan::Hold(rest) = orphan(cluster, conn, &node, d).await? {
                queue.push_front(rest);
                break;
            }
        }
        if queue.is_empty() {
            continue;
        }
        if since.elapsed() < give_up {
            held.0.insert(node, (since, queue));
            continue;
        }
        for d in queue {
            if let (Some(s), Some(i)) = (&d.s, &d.i) {
                cluster.stats.refused.fetch_add(1, Ordering::Relaxed);
                let why = "cluster: the peer's node is not reachable".to_owned();
                cluster.answered(s, i, Some(("internal".into(), why)));
            }
        }
    }
    Ok(())
}

fn not_found_error() -> (String, String) {
    ("peer-not-found".into(), "the peer left the room".into())
}

fn value_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// Applies what arrives on this node's channels, in order. When told to finish,
/// it unsubscribes and still handles everything published before that (Redis
/// sends it ahead of the unsubscribe confirmation), so a stopping node loses nothing.
async fn subscriber(
    cluster: Arc<Cluster>,
    pubsub: redis::aio::PubSub,
    fail: mpsc::Sender<String>,
    mut finish: oneshot::Receiver<()>,
) {
    let (mut sink, mut messages) = pubsub.split();
    loop {
        tokio::select! {
            msg = messages.next() => match msg {
                Some(msg) => handle(&cluster, &msg),
                None => {
                    let _ = fail.send("the Redis subscription was lost".into()).await;
                    return;
                }
            },
            _ = &mut finish => break,
        }
    }
    let channels = [keys::MEMBERSHIP.to_owned(), keys::inbox(&cluster.node)];
    let _ = tokio::time::timeout(RESPONSE_TIMEOUT, sink.unsubscribe(&channels)).await;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(50), messages.next()).await
    {
        handle(&cluster, &msg);
    }
}

fn handle(cluster: &Cluster, msg: &redis::Msg) {
    let Some(hub) = cluster.hub.upgrade() else {
        return;
    };
    let payload = msg.get_payload_bytes();
    if msg.get_channel_name() == keys::MEMBERSHIP {
        match serde_json::from_slice::<Membership>(payload) {
            Ok(m) => membership(cluster, &hub, m),
            Err(e) => warn!(error = %e, "cluster: unreadable membership event"),
        }
    } else {
        match serde_json::from_slice::<Inbox>(payload) {
            Ok(m) => inbox(cluster, &hub, m),
            Err(e) => warn!(error = %e, "cluster: unreadable inbox message"),
        }
    }
}

fn membership(cluster: &Cluster, hub: &Hub, event: Membership) {
    match event {
        Membership::Joined { m } if m.n != cluster.node => hub.remote_joined(&m.r, m.to_remote()),
        Membership::Left { n, r, s, why } if n != cluster.node => hub.remote_left(&r, &s, why),
        Membership::Snapshot { n, ms } if n != cluster.node => {
            // Replaces what this node knew of `n`: it may have restarted or
            // missed announcing leaves while Redis was down.
            let listed: HashSet<(Arc<str>, Arc<str>)> =
                ms.iter().map(|m| (m.r.clone(), m.s.clone())).collect();
            for (room, m) in hub.remote_members() {
                if m.node == n && !listed.contains(&(room.clone(), m.session_id.clone())) {
                    hub.remote_left(&room, &m.session_id, LeaveReason::Timeout);
                }
            }
            for m in ms {
                hub.remote_joined(&m.r.clone(), m.to_remote());
            }
        }
        Membership::Gone { n } if n != cluster.node => {
            for (room, m) in hub.remote_members() {
                if m.node == n {
                    hub.remote_left(&room, &m.session_id, LeaveReason::Timeout);
                }
            }
        }
        _ => {}
    }
}

fn inbox(cluster: &Cluster, hub: &Hub, msg: Inbox) {
    match msg {
        Inbox::Deliver(d) => {
            cluster.stats.received.fetch_add(1, Ordering::Relaxed);
            let claims = lock(&cluster.claims);
            deliver(cluster, hub, *d, claims);
        }
        Inbox::Answer { s, i, e } => {
            let error = e.map(|code| {
                let message = match code.as_str() {
                    "peer-not-found" => "the peer left the room".to_owned(),
                    _ => "the peer's node refused the message".to_owned(),
                };
                (code, message)
            });
            cluster.answered(&s, &i, error);
        }
        Inbox::Release { s, by } => {
            if hub.release(&s, &by).is_some() {
                cluster.stats.handovers.fetch_add(1, Ordering::Relaxed);
                lock(&cluster.tombstones)
                    .insert(s.clone(), (by.clone(), std::time::Instant::now()));
                // After every frame already queued for it, so the claimant reads them all.
                cluster.queue(Op::Owner {
                    sid: s.clone(),
                    node: by.clone(),
                });
            }
            cluster.queue(Op::Publish {
                channel: keys::inbox(&by),
                payload: encode(&Inbox::Released { s }),
            });
        }
        Inbox::Released { s } => {
            if let Some(tx) = lock(&cluster.releases).remove(&s) {
                let _ = tx.send(());
            }
        }
    }
}

/// Delivers a message from another node to its local receivers. Receivers being
/// claimed here hold it until they are installed; receivers handed over follow to
/// their new node. Runs under the claims lock, so it can not slip past a claim.
fn deliver(
    cluster: &Cluster,
    hub: &Hub,
    d: Delivery,
    mut claims: std::sync::MutexGuard<'_, HashMap<Arc<str>, Vec<Delivery>>>,
) {
    let mut here = Vec::with_capacity(d.t.len());
    let mut answer_here = true;
    for sid in &d.t {
        let single = |keep_reply: bool| {
            let mut one = d.clone();
            one.t = vec![sid.clone()];
            if !keep_reply {
                one.s = None;
                one.i = None;
            }
            one
        };
        if let Some(held) = claims.get_mut(sid) {
            if held.len() < HELD_PER_CLAIM {
                held.push(single(d.u));
                answer_here &= !d.u;
                continue;
            }
        } else if !hub.has_session(sid) {
            let moved = lock(&cluster.tombstones).get(sid).map(|(n, _)| n.clone());
            if let Some(node) = moved {
                let _ = cluster.ops.try_send(Op::Deliver {
                    node,
                    delivery: Box::new(single(d.u)),
                });
                answer_here &= !d.u;
                continue;
            }
        }
        here.push(sid.clone());
    }
    drop(claims);
    let result = if here.is_empty() && !answer_here {
        None
    } else {
        Some(hub.deliver_remote(&d.r, &here, d.b.get(), d.u))
    };
    if let (Some(result), Some(s), Some(i)) = (result, d.s, d.i) {
        if answer_here {
            let e = (result == Delivered::NotFound).then(|| "peer-not-found".to_owned());
            cluster.queue(Op::Publish {
                channel: keys::inbox(&d.o),
                payload: encode(&Inbox::Answer { s, i, e }),
            });
        }
    }
}

/// Every heartbeat: refresh this node's liveness, time out answers, reap dead nodes.
async fn ticker(
    cluster: Arc<Cluster>,
    mut conn: MultiplexedConnection,
    fail: mpsc::Sender<String>,
) {
    let settings = cluster.settings.clone();
    let mut interval = tokio::time::interval(settings.heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let connected_at = Instant::now();
    loop {
        interval.tick().await;
        let beat = redis::cmd("SET")
            .arg(keys::node_alive(&cluster.node))
            .arg(1)
            .arg("PX")
            .arg(settings.node_ttl.as_millis() as u64)
            .query_async::<()>(&mut conn)
            .await;
        if let Err(e) = beat {
            let _ = fail.send(format!("heartbeat failed: {e}")).await;
            return;
        }
        cluster.expire_pending();
        // After a reconnect (Redis restarted empty) the others need time to
        // reconnect and register again before their absence means anything.
        if connected_at.elapsed() >= settings.node_ttl + MAX_BACKOFF * 2 {
            if let Err(e) = reap(&cluster, &mut conn).await {
                debug!(error = %e, "cluster: reaping failed; retried next heartbeat");
            }
        }
    }
}

/// Finds nodes whose liveness key expired and reaps each (one survivor does it).
async fn reap(cluster: &Cluster, conn: &mut MultiplexedConnection) -> RedisResult<()> {
    let Some(hub) = cluster.hub.upgrade() else {
        return Ok(());
    };
    let registered: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys::NODES)
        .query_async(conn)
        .await?;
    let mut nodes: HashSet<Arc<str>> = registered.into_iter().map(Arc::from).collect();
    nodes.extend(hub.remote_members().into_iter().map(|(_, m)| m.node));
    nodes.remove(&cluster.node);
    let nodes: Vec<Arc<str>> = nodes.into_iter().collect();
    let alive = alive_nodes(conn, &nodes).await?;
    cluster
        .stats
        .nodes
        .store(alive.len() as u64 + 1, Ordering::Relaxed);
    for dead in nodes.iter().filter(|n| !alive.contains(*n)) {
        let lock_key = keys::reap_lock(dead);
        let got: Option<String> = redis::cmd("SET")
            .arg(&lock_key)
            .arg(&*cluster.node)
            .arg("NX")
            .arg("PX")
            .arg(cluster.settings.node_ttl.as_millis() as u64)
            .query_async(conn)
            .await?;
        if got.is_none() {
            continue;
        }
        let result = reap_node(cluster, conn, dead).await;
        let _: RedisResult<()> = redis::cmd("DEL").arg(&lock_key).query_async(conn).await;
        result?;
    }
    Ok(())
}

/// Ends the sessions of a dead node that nobody resumed and whose resume window
/// (for a drained node) passed; once none is left, the node is forgotten.
async fn reap_node(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
    dead: &Arc<str>,
) -> RedisResult<()> {
    let all: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys::MEMBERS)
        .query_async(conn)
        .await?;
    let members: Vec<wire::Member> = all
        .values()
        .filter_map(|v| serde_json::from_str::<wire::Member>(v).ok())
        .filter(|m| m.n == *dead)
        .collect();
    let listed: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys::node_sessions(dead))
        .query_async(conn)
        .await?;
    let mut sessions: HashSet<Arc<str>> = listed.into_iter().map(Arc::from).collect();
    sessions.extend(members.iter().map(|m| m.s.clone()));
    let script = Script::new(keys::REAP_SESSION);
    let mut waiting = false;
    for sid in sessions {
        let verdict: String = script
            .key(keys::session_meta(&sid))
            .key(keys::session_replay(&sid))
            .arg(&**dead)
            .arg(now_millis())
            .invoke_async(conn)
            .await?;
        match verdict.as_str() {
            "wait" => waiting = true,
            "reaped" => {
                cluster.stats.reaped.fetch_add(1, Ordering::Relaxed);
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for m in members.iter().filter(|m| m.s == sid) {
                    pipe.cmd("HDEL").arg(keys::MEMBERS).arg(m.field());
                    pipe.cmd("PUBLISH")
                        .arg(keys::MEMBERSHIP)
                        .arg(encode(&Membership::Left {
                            n: dead.clone(),
                            r: m.r.clone(),
                            s: sid.clone(),
                            why: LeaveReason::Timeout,
                        }));
                }
                pipe.cmd("SREM").arg(keys::node_sessions(dead)).arg(&*sid);
                let _: Vec<RedisResult<Value>> = pipe.query_async(conn).await?;
            }
            _ => {
                let _: RedisResult<()> = redis::cmd("SREM")
                    .arg(keys::node_sessions(dead))
                    .arg(&*sid)
                    .query_async(conn)
                    .await;
            }
        }
    }
    if !waiting {
        info!(node = %dead, "cluster: node gone; its sessions ended");
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH")
            .arg(keys::MEMBERSHIP)
            .arg(encode(&Membership::Gone { n: dead.clone() }));
        pipe.cmd("DEL").arg(keys::node_sessions(dead));
        pipe.cmd("SREM").arg(keys::NODES).arg(&**dead);
        let _: () = pipe.query_async(conn).await?;
    }
    Ok(())
}

/// Claims a session for a `resume` on this node and installs it (see
/// [`Hub::adopt`]); deliveries for it that arrive meanwhile wait and follow.
pub(super) async fn claim(cluster: Arc<Cluster>, hub: Hub, request: ClaimRequest) {
    let sid: Arc<str> = request.session_id.as_str().into();
    {
        let mut claims = lock(&cluster.claims);
        if claims.contains_key(&sid) {
            drop(claims);
            cluster.stats.claim_failures.fetch_add(1, Ordering::Relaxed);
            hub.claim_failed(
                &request,
                "the session is being resumed on another connection",
            );
            return;
        }
        claims.insert(sid.clone(), Vec::new());
    }
    let outcome = tokio::time::timeout(CLAIM_TIMEOUT, read_claimed(&cluster, &sid, &request))
        .await
        .unwrap_or_else(|_| Err("the cluster did not answer in time".into()));
    match outcome {
        Ok(parts) => {
            let mut claims = lock(&cluster.claims);
            let records = hub.adopt(parts, &request);
            let held = claims.remove(&sid).unwrap_or_default();
            for d in held {
                deliver(&cluster, &hub, d, claims);
                claims = lock(&cluster.claims);
            }
            drop(claims);
            cluster.stats.claims.fetch_add(1, Ordering::Relaxed);
            // Its memberships now live here.
            for r in records {
                cluster.queue(Op::Join(wire::Member::from_local(&cluster.node, r)));
            }
        }
        Err(why) => {
            let held = lock(&cluster.claims).remove(&sid).unwrap_or_default();
            for d in held {
                if let (Some(s), Some(i)) = (d.s, d.i) {
                    cluster.queue(Op::Publish {
                        channel: keys::inbox(&d.o),
                        payload: encode(&Inbox::Answer {
                            s,
                            i,
                            e: Some("peer-not-found".into()),
                        }),
                    });
                }
            }
            cluster.stats.claim_failures.fetch_add(1, Ordering::Relaxed);
            hub.claim_failed(&request, &why);
        }
    }
}

/// Takes the session over in Redis (asking a live owner to let it go first) and
/// reads its replay buffer back.
async fn read_claimed(
    cluster: &Arc<Cluster>,
    sid: &Arc<str>,
    request: &ClaimRequest,
) -> Result<SessionParts, String> {
    let mut conn = lock(&cluster.query_conn)
        .clone()
        .ok_or_else(|| "cluster unavailable".to_owned())?;
    let redis_err = |e: redis::RedisError| format!("cluster unavailable: {e}");
    let claim = Script::new(keys::CLAIM);
    let mut force = false;
    loop {
        let r: Vec<Value> = claim
            .key(keys::session_meta(sid))
            .arg(&request.resume_token)
            .arg(&*cluster.node)
            .arg(if force { "1" } else { "0" })
            .arg(request.user_id.as_deref().unwrap_or(""))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        match value_str(r.first()).as_deref() {
            Some("ok") => break,
            Some("live") if !force => {
                let owner = value_str(r.get(1)).unwrap_or_default();
                let (tx, rx) = oneshot::channel();
                lock(&cluster.releases).insert(sid.clone(), tx);
                let ask = encode(&Inbox::Release {
                    s: sid.clone(),
                    by: cluster.node.clone(),
                });
                let listeners: i64 = redis::cmd("PUBLISH")
                    .arg(keys::inbox(&owner))
                    .arg(ask)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                // Nobody listening: the owner died and its key has not expired yet.
                if listeners > 0 && tokio::time::timeout(RELEASE_TIMEOUT, rx).await.is_err() {
                    warn!(session = %sid, %owner, "cluster: no hand-over answer; taking the session");
                }
                lock(&cluster.releases).remove(sid);
                force = true;
            }
            _ => return Err("unknown or expired session".into()),
        }
    }
    let read: Vec<Value> = Script::new(keys::READ_REPLAY)
        .key(keys::session_replay(sid))
        .invoke_async(&mut conn)
        .await
        .map_err(redis_err)?;
    let last = value_str(read.first()).unwrap_or_default();
    let last_seq = entry_seq(&last).unwrap_or(0);
    let mut frames: Vec<(u64, Frame)> = Vec::new();
    if let Some(Value::Array(entries)) = read.get(1) {
        for e in entries {
            let Value::Array(parts) = e else { continue };
            let Some(seq) = value_str(parts.first()).as_deref().and_then(entry_seq) else {
                continue;
            };
            let Some(Value::Array(fields)) = parts.get(1) else {
                continue;
            };
            if let Some(text) = value_str(fields.get(1)) {
                frames.push((seq, Frame::from(text)));
            }
        }
    }
    // Only a gap-free run ending at the last seq can be replayed exactly.
    let mut start = frames.len();
    let mut expect = last_seq;
    while start > 0 && frames[start - 1].0 == expect {
        start -= 1;
        expect = expect.saturating_sub(1);
    }
    let frames = frames.split_off(start);
    let seen_ids = frames
        .iter()
        .filter(|(_, f)| f.as_str().contains(r#""type":"ack""#))
        .filter_map(|(_, f)| {
            let v: serde_json::Value = serde_json::from_str(f.as_str()).ok()?;
            let id = v.get("id")?;
            Some(id.to_string())
        })
        .collect();
    Ok(SessionParts {
        session_id: sid.clone(),
        resume_token: request.resume_token.as_str().into(),
        next_seq: last_seq + 1,
        frames,
        seen_ids,
    })
}

/// The seq of a stream entry id `{seq}-0`.
fn entry_seq(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}
