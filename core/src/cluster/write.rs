//! The ordered writer of a node: queued operations go to Redis in batches, in
//! order (which keeps per-sender order across nodes); sends to nodes that are not
//! listening are held and retried, or refused once the node is gone.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script, Value};
use tokio::time::Instant;

use super::bundle::{Bundle, Record};
use super::mirror::Mirrors;
use super::queue::OpReceiver;
use super::wire::{encode, Membership};
use super::{bundle, keys, Cluster, Op};

/// Pause before re-sending to a node that is not listening but not expired.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Writes one batch of operations in one round trip, in order; then handles the
/// deliveries no node was subscribed for; the buffers of the records written go
/// back to `rx` for new deliveries.
pub(super) async fn write(
    cluster: &Arc<Cluster>,
    conn: &mut MultiplexedConnection,
    rx: &OpReceiver,
    batch: &mut Vec<Op>,
    held: &mut Held,
    mirrors: &mut Mirrors,
    idle: bool,
) -> RedisResult<()> {
    let node = &cluster.node;
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut n = 0usize;
    let mut bundles = Bundles::default();
    for op in batch.drain(..) {
        // Deliveries wait in their node's bundle; anything else that publishes
        // sends the bundles first, so nothing overtakes what was queued before it
        // (a `user-joined` still precedes the newcomer's offer).
        if matches!(
            op,
            Op::Away { .. } | Op::Join(_) | Op::Leave { .. } | Op::Publish { .. }
        ) {
            bundles.publish(&mut pipe, &mut n);
        }
        match op {
            Op::Open { sid, token } => {
                pipe.cmd("HSET")
                    .arg(keys::session_meta(&sid))
                    .arg("token")
                    .arg(&*token)
                    .arg("owner")
                    .arg(&**node);
                pipe.cmd("SADD").arg(keys::node_sessions(node)).arg(&*sid);
                pipe.cmd("PEXPIRE")
                    .arg(keys::session_meta(&sid))
                    .arg(cluster.settings.session_ttl.as_millis() as u64);
                n += 3;
            }
            Op::Mirror(session) => mirrors.add(session),
            Op::Away { sid, until, rooms } => {
                // A resume elsewhere reads the stream: it must be complete.
                mirrors.write_session(&sid, &mut pipe, &mut n);
                pipe.cmd("PUBLISH")
                    .arg(keys::MEMBERSHIP)
                    .arg(encode(&Membership::Away {
                        n: node.clone(),
                        s: sid.clone(),
                        r: rooms,
                        a: until.is_some(),
                    }));
                n += 1;
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
                mirrors.forget(&sid);
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
            Op::Deliver { node: to, record } => {
                if held.holds(&to) {
                    for one in record.split() {
                        held.hold(&to, one);
                    }
                    continue;
                }
                bundles.add(to, record, &mut pipe, &mut n);
            }
            Op::Publish { channel, payload } => {
                pipe.cmd("PUBLISH").arg(channel).arg(payload);
                n += 1;
            }
            Op::Nudge => {}
            Op::Owner { sid, node: to } => {
                // The new owner reads every frame buffered here.
                mirrors.write_session(&sid, &mut pipe, &mut n);
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
    bundles.publish(&mut pipe, &mut n);
    mirrors.write_due(idle, &mut pipe, &mut n);
    if n > 0 {
        let results: Vec<RedisResult<Value>> = pipe.query_async(conn).await?;
        for (i, to, records) in bundles.published {
            let Some(Ok(Value::Int(0))) = results.get(i) else {
                rx.recycle(records);
                continue;
            };
            // Nobody listened: each delivery, in order, is held or orphaned.
            for record in records.into_iter().flat_map(Record::split) {
                if held.holds(&to) {
                    held.hold(&to, record);
                } else if let Orphan::Hold(rest) = orphan(cluster, conn, &to, record).await? {
                    held.hold(&to, rest);
                }
            }
        }
    }
    Ok(())
}

/// The deliveries of one batch, gathered per node; each node's records go as one
/// `PUBLISH` of a bundle (`bundle.rs`), written from the queued record sets.
/// They are kept until the reply: those of a bundle nobody listened to are
/// handled one by one.
#[derive(Default)]
struct Bundles {
    /// Per node: its records and their bundle's size so far.
    open: Vec<(Arc<str>, Vec<Record>, usize)>,
    /// (reply index, node, records) of the bundles in the pipeline.
    published: Vec<(usize, Arc<str>, Vec<Record>)>,
}

impl Bundles {
    fn add(&mut self, to: Arc<str>, record: Record, pipe: &mut redis::Pipeline, n: &mut usize) {
        let at = match self.open.iter().position(|(node, ..)| *node == to) {
            Some(at) => at,
            None => {
                self.open.push((to, Vec::new(), bundle::MAGIC.len()));
                self.open.len() - 1
            }
        };
        let (_, records, size) = &mut self.open[at];
        *size += record.len();
        records.push(record);
        if *size >= bundle::FLUSH_BYTES {
            let (node, records, _) = self.open.swap_remove(at);
            self.publish_one(node, records, pipe, n);
        }
    }

    /// Publishes every open bundle, at this point of the pipeline.
    fn publish(&mut self, pipe: &mut redis::Pipeline, n: &mut usize) {
        for (node, records, _) in std::mem::take(&mut self.open) {
            self.publish_one(node, records, pipe, n);
        }
    }

    fn publish_one(
        &mut self,
        node: Arc<str>,
        records: Vec<Record>,
        pipe: &mut redis::Pipeline,
        n: &mut usize,
    ) {
        pipe.cmd("PUBLISH")
            .arg(keys::inbox(&node))
            .arg(Bundle(&records));
        self.published.push((*n, node, records));
        *n += 1;
    }
}

/// Publishes one delivery on its own (a retry); returns how many listened.
async fn publish_single(
    conn: &mut MultiplexedConnection,
    node: &str,
    record: &Record,
) -> RedisResult<i64> {
    redis::cmd("PUBLISH")
        .arg(keys::inbox(node))
        .arg(Bundle(std::slice::from_ref(record)))
        .query_async(conn)
        .await
}

/// Deliveries held for nodes that stopped listening but whose liveness key has not
/// expired yet (in the last moments of a drain, or just dead): per node, in
/// order, re-tried every [`RETRY_PAUSE`] until they can be delivered or buffered,
/// for at most a node TTL. Everything for such a node queues behind them, so one
/// sender's messages keep their order.
#[derive(Debug, Default)]
pub(super) struct Held(pub(super) HashMap<Arc<str>, (Instant, VecDeque<Record>)>);

impl Held {
    pub(super) fn hold(&mut self, node: &Arc<str>, mut d: Record) {
        // Held by time, not by bytes: it keeps no more than its own size (a
        // record may have been written into a lent 256 KiB buffer).
        d.shrink();
        self.0
            .entry(node.clone())
            .or_insert_with(|| (Instant::now(), VecDeque::new()))
            .1
            .push_back(d);
    }

    pub(super) fn holds(&self, node: &Arc<str>) -> bool {
        self.0.contains_key(node)
    }
}

/// What became of a delivery no node was subscribed for.
pub(super) enum Orphan {
    Done,
    /// Its node is silent but not expired: hold these targets (the rest is done).
    Hold(Record),
}

/// A delivery that no node was subscribed for: its node drained or died. Each
/// receiver's session is buffered in Redis if it awaits a resume, redirected if
/// another node claimed it meanwhile, refused if it is gone; if the node has not
/// expired yet, the rest is held.
pub(super) async fn orphan(
    cluster: &Arc<Cluster>,
    conn: &mut MultiplexedConnection,
    to: &Arc<str>,
    record: Record,
) -> RedisResult<Orphan> {
    let Some(d) = record.view() else {
        return Ok(Orphan::Done);
    };
    let script = Script::new(keys::BUFFER_ORPHAN);
    let mut accepted = 0usize;
    let mut redirected = false;
    for (k, sid) in d.t.iter().enumerate() {
        let r: Vec<Value> = script
            .key(keys::session_meta(sid))
            .key(keys::session_replay(sid))
            .arg(d.b)
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
                    // Claimed by another node meanwhile: follow it there (a
                    // unicast is answered there).
                    redirected |= d.u;
                    let _ = cluster.ops.try_send(Op::Deliver {
                        node: owner.into(),
                        record: d.record_for(std::iter::once(sid), d.u),
                    });
                }
                _ => {
                    let rest = d.record_for(d.t.iter().skip(k), true);
                    return Ok(Orphan::Hold(rest));
                }
            },
            _ => {}
        }
    }
    if let (Some(s), Some(i)) = (d.s, d.i) {
        if !redirected {
            let error = (d.u && accepted == 0).then(not_found_error);
            cluster.answered(s, i, error);
        }
    }
    Ok(Orphan::Done)
}

/// Re-tries the held deliveries of every silent node, in order per node; those of
/// a node still silent and unexpired well past its TTL are refused.
pub(super) async fn retry_held(
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
            let listeners = publish_single(conn, &node, &d).await?;
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
        for record in queue {
            if let Some((s, i)) = record.view().and_then(|d| d.s.zip(d.i)) {
                cluster.stats.refused.fetch_add(1, Ordering::Relaxed);
                let why = "cluster: the peer's node is not reachable".to_owned();
                cluster.answered(s, i, Some(("internal".into(), why)));
            }
        }
    }
    Ok(())
}

pub(super) fn not_found_error() -> (String, String) {
    ("peer-not-found".into(), "the peer left the room".into())
}

pub(super) fn value_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}
