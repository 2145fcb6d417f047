//! The messages nodes exchange through Redis pub/sub: membership events on the
//! shared channel, answers and hand-over requests on each node's inbox. JSON,
//! with client payloads embedded raw (never re-encoded as strings); the enums are
//! adjacently tagged (`{"k":…,"v":…}`), which serde reads without buffering, as
//! raw values require. Deliveries, the bulk of the traffic, travel in bundles
//! (`bundle.rs`), not as JSON.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::hub::backplane::MemberRecord;
use crate::hub::RemoteMember;

/// One membership as the cluster stores and announces it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Member {
    /// Room.
    pub r: Arc<str>,
    /// User id.
    pub u: Arc<str>,
    /// Session id.
    pub s: Arc<str>,
    /// Node holding the session.
    pub n: Arc<str>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<Arc<str>>,
    /// Metadata, raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<Box<RawValue>>,
    /// Cluster-wide join order.
    pub o: u64,
    /// The session has no connection now (resumable).
    #[serde(default, skip_serializing_if = "is_false")]
    pub a: bool,
}

impl Member {
    pub(crate) fn from_local(node: &Arc<str>, rec: MemberRecord) -> Member {
        Member {
            r: rec.room_id,
            u: rec.user_id,
            s: rec.session_id,
            n: node.clone(),
            d: rec.display_name,
            m: rec
                .metadata
                .and_then(|m| RawValue::from_string(m.to_string()).ok()),
            o: rec.order,
            a: rec.away,
        }
    }

    pub(crate) fn to_remote(&self) -> RemoteMember {
        RemoteMember {
            user_id: self.u.clone(),
            session_id: self.s.clone(),
            node: self.n.clone(),
            display_name: self.d.clone(),
            metadata: self.m.as_ref().map(|m| Arc::from(m.get())),
            order: self.o,
            away: self.a,
        }
    }

    pub(crate) fn field(&self) -> String {
        super::keys::member_field(&self.r, &self.u, &self.s)
    }
}

/// On the membership channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", content = "v")]
pub(crate) enum Membership {
    /// A peer joined (or, after a hand-over, its session now lives on `m.n`).
    #[serde(rename = "j")]
    Joined { m: Member },
    /// A peer left.
    #[serde(rename = "l")]
    Left {
        n: Arc<str>,
        r: Arc<str>,
        s: Arc<str>,
        why: crate::protocol::LeaveReason,
    },
    /// Everything node `n` holds (after it (re)connected): replaces what the others
    /// knew about it. Sent in parts of at most `SNAPSHOT_PART` members (far below
    /// Redis' pub/sub output limits): the first has `first`, all but the last
    /// `more`; a receiver applies the whole once the last arrived.
    #[serde(rename = "snap")]
    Snapshot {
        n: Arc<str>,
        ms: Vec<Member>,
        #[serde(default = "yes")]
        first: bool,
        #[serde(default)]
        more: bool,
    },
    /// Session `s` of node `n`, a member of rooms `r`, lost its connection
    /// (`a`) or got one back.
    #[serde(rename = "away")]
    Away {
        n: Arc<str>,
        s: Arc<str>,
        r: Vec<Arc<str>>,
        a: bool,
    },
    /// Node `n` is gone and every session it held has ended.
    #[serde(rename = "gone")]
    Gone { n: Arc<str> },
}

/// On a node's inbox, besides the bundles of deliveries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", content = "v")]
pub(crate) enum Inbox {
    /// The answer to a delivery that asked for one: the sender's session `s` gets
    /// `ack` for its message `i`, or an `error` with code `e`.
    #[serde(rename = "a")]
    Answer {
        s: Arc<str>,
        i: Box<RawValue>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        e: Option<String>,
    },
    /// Node `by` resumes session `s`: let it go.
    #[serde(rename = "rel")]
    Release { s: Arc<str>, by: Arc<str> },
    /// Session `s` was let go (its last frames are in Redis).
    #[serde(rename = "reld")]
    Released { s: Arc<str> },
    /// The host application kicked session `s` (in room `r`) from another node.
    #[serde(rename = "kick")]
    Kick { r: Arc<str>, s: Arc<str> },
    /// A join on another node took the user id of session `s` over: end it.
    #[serde(rename = "repl")]
    Replace { s: Arc<str> },
}

/// Serializes a message (only fails on non-string map keys, which these have none of).
pub(crate) fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_owned())
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !b
}
