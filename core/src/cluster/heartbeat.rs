//! Liveness of the cluster: this node's heartbeat (fenced: a node that finds
//! its liveness key gone may have been reaped, so it registers again and
//! resyncs), reaping the nodes that stopped beating (their peers leave with
//! `timeout` unless they resumed) in a task of its own so a slow reap never
//! delays a heartbeat, and the TTLs of this node's session keys.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::wire::{self, encode, Membership};
use super::{keys, Cluster};
use crate::protocol::{now_millis, LeaveReason};

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Which of `nodes` have their liveness key.
pub(super) async fn alive_nodes(
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

/// Every heartbeat: refresh this node's liveness, time out answers; beside it,
/// in tasks of their own (one of each at a time, ended with the ticker): reap
/// dead nodes, and refresh the TTLs of this node's session keys.
pub(super) async fn ticker(
    cluster: Arc<Cluster>,
    conn: MultiplexedConnection,
    fail: mpsc::Sender<String>,
) {
    let settings = cluster.settings.clone();
    let mut interval = tokio::time::interval(settings.heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let connected_at = Instant::now();
    let mut reaping: JoinSet<()> = JoinSet::new();
    let mut refreshing: JoinSet<()> = JoinSet::new();
    let mut refreshed_at: Option<Instant> = None;
    let mut beat_conn = conn.clone();
    loop {
        interval.tick().await;
        while reaping.try_join_next().is_some() {}
        while refreshing.try_join_next().is_some() {}
        if let Err(e) = beat(&cluster, &mut beat_conn).await {
            let _ = fail.send(format!("heartbeat failed: {e}")).await;
            return;
        }
        cluster.expire_pending();
        // After a reconnect (Redis restarted empty) the others need time to
        // reconnect and register again before their absence means anything.
        if connected_at.elapsed() >= settings.node_ttl + MAX_BACKOFF * 2 && reaping.is_empty() {
            let (cluster, mut conn) = (cluster.clone(), conn.clone());
            reaping.spawn(async move {
                if let Err(e) = reap(&cluster, &mut conn).await {
                    debug!(error = %e, "cluster: reaping failed; retried next heartbeat");
                }
            });
        }
        let due = refreshed_at.is_none_or(|t| t.elapsed() >= settings.session_ttl / 4);
        if due && refreshing.is_empty() {
            refreshed_at = Some(Instant::now());
            let (cluster, mut conn) = (cluster.clone(), conn.clone());
            refreshing.spawn(async move {
                if let Err(e) = refresh_session_ttls(&cluster, &mut conn).await {
                    debug!(error = %e, "cluster: refreshing session TTLs failed; retried");
                }
            });
        }
    }
}

/// Refreshes this node's liveness key. Fenced: it must still exist (`XX`); if
/// it expired the others may have reaped this node (its sessions ended there,
/// its members removed), so the node registers again and resyncs everything it
/// holds before anyone relies on the stale view.
async fn beat(cluster: &Cluster, conn: &mut MultiplexedConnection) -> RedisResult<()> {
    let ttl = cluster.settings.node_ttl.as_millis() as u64;
    let key = keys::node_alive(&cluster.node);
    let kept: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(1)
        .arg("PX")
        .arg(ttl)
        .arg("XX")
        .query_async(conn)
        .await?;
    if kept.is_none() {
        register(cluster, conn).await?;
        cluster.request_resync();
    }
    Ok(())
}

/// Sets this node's liveness key. Found gone while this node had registered
/// before: the others may have reaped it (or Redis lost it), so it counts as
/// fenced, whichever path noticed first — the heartbeat, or a reconnect's
/// resync after a stall longer than a request's timeout.
pub(super) async fn register(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
) -> RedisResult<()> {
    let ttl = cluster.settings.node_ttl.as_millis() as u64;
    let previous: Option<String> = redis::cmd("SET")
        .arg(keys::node_alive(&cluster.node))
        .arg(1)
        .arg("PX")
        .arg(ttl)
        .arg("GET")
        .query_async(conn)
        .await?;
    let was_registered = cluster.registered.swap(true, Ordering::Relaxed);
    if previous.is_none() && was_registered {
        warn!(node = %cluster.node, "cluster: this node's liveness key had expired (it may have been reaped); registering again and resyncing");
        cluster.stats.fenced.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Session keys carry a TTL (`Settings::session_ttl`), refreshed here for every
/// session this node holds: keys whose node and reaper both vanished (a whole
/// cluster stopped) do not stay in Redis for ever.
async fn refresh_session_ttls(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
) -> RedisResult<()> {
    let Some(hub) = cluster.hub.upgrade() else {
        return Ok(());
    };
    let ttl = cluster.settings.session_ttl.as_millis() as u64;
    for chunk in hub.local_session_ids().chunks(512) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for sid in chunk {
            pipe.cmd("PEXPIRE").arg(keys::session_meta(sid)).arg(ttl);
            pipe.cmd("PEXPIRE").arg(keys::session_replay(sid)).arg(ttl);
        }
        let _: Vec<RedisResult<Value>> = pipe.query_async(conn).await?;
    }
    Ok(())
}

/// Finds nodes whose liveness key expired and reaps each (one survivor does it).
pub(super) async fn reap(cluster: &Cluster, conn: &mut MultiplexedConnection) -> RedisResult<()> {
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
        .store(alive.len() as i64 + 1, Ordering::Relaxed);
    cluster.set_peer_nodes(&alive);
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
pub(super) async fn reap_node(
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
