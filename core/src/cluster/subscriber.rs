//! The subscriber of a node: applies what other nodes publish (membership
//! changes, deliveries, claims of sessions held here) to the local hub.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use serde_json::value::RawValue;

use super::bundle::{self, DeliveryRef, Record};
use super::wire::{encode, Inbox, Membership};
use super::{keys, lock, Cluster, Op, HELD_PER_CLAIM};
use crate::hub::Hub;
use crate::protocol::LeaveReason;

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Applies what arrives on this node's channels, in order. When told to finish,
/// it unsubscribes and still handles everything published before that (Redis
/// sends it ahead of the unsubscribe confirmation), so a stopping node loses nothing.
pub(super) async fn subscriber(
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

pub(super) fn handle(cluster: &Cluster, msg: &redis::Msg) {
    let Some(hub) = cluster.hub.upgrade() else {
        return;
    };
    let payload = msg.get_payload_bytes();
    if bundle::is_bundle(payload) {
        deliver_bundle(cluster, &hub, payload);
    } else if msg.get_channel_name() == keys::MEMBERSHIP {
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

pub(super) fn membership(cluster: &Cluster, hub: &Hub, event: Membership) {
    match event {
        Membership::Joined { m } if m.n != cluster.node => hub.remote_joined(&m.r, m.to_remote()),
        Membership::Left { n, r, s, why } if n != cluster.node => hub.remote_left(&r, &s, why),
        Membership::Away { n, s, r, a } if n != cluster.node => hub.remote_away(&r, &s, a),
        Membership::Snapshot { n, ms, first, more } if n != cluster.node => {
            // The parts of one snapshot arrive in order (one publisher's
            // connection): gathered, then applied whole, so no member flickers.
            let ms = {
                let mut parts = lock(&cluster.snapshot_parts);
                if first {
                    parts.remove(&n);
                }
                let gathered = parts.entry(n.clone()).or_default();
                gathered.extend(ms);
                if more {
                    return;
                }
                parts.remove(&n).unwrap_or_default()
            };
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
            lock(&cluster.snapshot_parts).remove(&n);
            for (room, m) in hub.remote_members() {
                if m.node == n {
                    hub.remote_left(&room, &m.session_id, LeaveReason::Timeout);
                }
            }
        }
        _ => {}
    }
}

/// Delivers every message of a bundle, in order, under one lock of the claims
/// (a claim waits at most for the rest of one bundle: about 256 KiB from a
/// node of this version).
fn deliver_bundle(cluster: &Cluster, hub: &Hub, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else {
        warn!("cluster: a bundle of deliveries is not UTF-8; dropped");
        return;
    };
    // Counted once per bundle, not per message: one atomic add each.
    let mut claims = lock(&cluster.claims);
    let (mut received, mut relayed) = (0, 0);
    for d in bundle::read(text) {
        let Ok(d) = d else {
            warn!("cluster: unreadable bundle of deliveries; the rest of it is dropped");
            break;
        };
        received += 1;
        relayed += deliver(cluster, hub, &d, &mut claims);
    }
    drop(claims);
    cluster
        .stats
        .received
        .fetch_add(received, Ordering::Relaxed);
    hub.relayed(relayed);
}

pub(super) fn inbox(cluster: &Cluster, hub: &Hub, msg: Inbox) {
    match msg {
        Inbox::Answer { s, i, e } => {
            let error = e.map(|code| {
                let message = match code.as_str() {
                    "peer-not-found" => "the peer left the room".to_owned(),
                    _ => "the peer's node refused the message".to_owned(),
                };
                (code, message)
            });
            cluster.answered(&s, i.get(), error);
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
        Inbox::Kick { r, s } => hub.kick_session(&r, &s),
        Inbox::Replace { s } => hub.replaced_elsewhere(&s),
    }
}

/// Delivers a message from another node to its local receivers. Receivers being
/// claimed here hold it until they are installed; receivers handed over follow to
/// their new node. Runs under the claims lock (`claims` is what it guards), so
/// it can not slip past a claim. Returns how many local sessions took it (for
/// the caller to count as relayed, [`Hub::relayed`]).
pub(super) fn deliver(
    cluster: &Cluster,
    hub: &Hub,
    d: &DeliveryRef<'_>,
    claims: &mut HashMap<Arc<str>, Vec<Record>>,
) -> u64 {
    // The answer is given here unless a receiver of a unicast moved on (the
    // node it moved to answers).
    let mut answer_here = true;
    let mut taken = 0;
    for sid in d.t.iter() {
        let single = || d.record_for(std::iter::once(sid), d.u);
        if let Some(held) = claims.get_mut(sid) {
            if held.len() < HELD_PER_CLAIM {
                held.push(single());
                answer_here &= !d.u;
                continue;
            }
        }
        match hub.deliver_remote(d.r, sid, d.b) {
            Some(t) => taken += u64::from(t),
            None => {
                let moved = lock(&cluster.tombstones).get(sid).map(|(n, _)| n.clone());
                if let Some(node) = moved {
                    let _ = cluster.ops.try_send(Op::Deliver {
                        node,
                        record: single(),
                    });
                    answer_here &= !d.u;
                }
            }
        }
    }
    if let (true, Some(s), Some(i)) = (answer_here, d.s, d.i) {
        if let Ok(i) = RawValue::from_string(i.to_owned()) {
            let e = (d.u && taken == 0).then(|| "peer-not-found".to_owned());
            cluster.queue(Op::Publish {
                channel: keys::inbox(d.o),
                payload: encode(&Inbox::Answer { s: s.into(), i, e }),
            });
        }
    }
    taken
}
