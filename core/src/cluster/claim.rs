//! Claiming a session held by another node (or orphaned) for a resume here:
//! the atomic claim, then reading its replay buffer back from the stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::{Script, Value};
use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tracing::warn;

use super::wire::{self, encode, Inbox};
use super::{keys, lock, Cluster, Op, RELEASE_TIMEOUT};
use crate::hub::backplane::{ClaimRequest, SessionParts};
use crate::hub::Hub;
use crate::protocol::Frame;

use super::mirror::decode_group;
use super::subscriber::deliver;
use super::write::value_str;

/// How long one claim may take in all.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);

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
            let mut relayed = 0;
            for record in held {
                if let Some(d) = record.view() {
                    relayed += deliver(&cluster, &hub, &d, &mut claims);
                }
            }
            hub.relayed(relayed);
            drop(claims);
            cluster.stats.claims.fetch_add(1, Ordering::Relaxed);
            // Its memberships now live here.
            for r in records {
                cluster.queue(Op::Join(wire::Member::from_local(&cluster.node, r)));
            }
        }
        Err(why) => {
            let held = lock(&cluster.claims).remove(&sid).unwrap_or_default();
            for record in held {
                let Some(d) = record.view() else { continue };
                if let (Some(s), Some(Ok(i))) = (d.s, d.i.map(|i| RawValue::from_string(i.into())))
                {
                    cluster.queue(Op::Publish {
                        channel: keys::inbox(d.o),
                        payload: encode(&Inbox::Answer {
                            s: s.into(),
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
pub(super) async fn read_claimed(
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
            // `f`: one frame, seq = the id; `g`: the mirror's group of frames.
            let (name, value) = (value_str(fields.first()), value_str(fields.get(1)));
            match (name.as_deref(), value) {
                (Some("f"), Some(text)) => frames.push((seq, Frame::from(text))),
                // A group ends at its entry's id, or it is not one of ours.
                (Some("g"), Some(group)) => match decode_group(&group) {
                    Some(group) if group.last().is_some_and(|(s, _)| *s == seq) => {
                        frames.extend(group)
                    }
                    _ => warn!(session = %sid, "cluster: unreadable replay group; skipped"),
                },
                _ => {}
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
pub(super) fn entry_seq(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}
