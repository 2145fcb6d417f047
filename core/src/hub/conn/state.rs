//! The state of one connection (`ConnCore`, with its auth state and a pending
//! URL join) and the few
//! answers every handler sends (`reply`, `error`, `ack`): the floor the
//! message handlers of this folder stand on.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::task::AbortHandle;

use crate::auth::Identity;
use crate::error::ErrorCode;
use crate::hub::backplane::ClaimSlot;
use crate::hub::outbox::{Fate, Outbox};
use crate::hub::rate::RateLimiter;
use crate::hub::session::Session;
use crate::hub::HubInner;
use crate::protocol::json::Raw;
use crate::protocol::url::UrlJoin;
use crate::protocol::{close, outbound, Frame};

/// Frames queued while an auth hook checks an `auth` message. At either bound the
/// connection is closed with 1008: a client has no reason to send that much
/// before it knows whether it is admitted.
const PENDING_MESSAGES: usize = 32;
const PENDING_BYTES: usize = 256 * 1024;

/// What the transport knows about a new connection.
///
/// Authentication (when the hub's config turns it on), in order of preference:
/// - `identity`: the transport already checked the handshake's token with
///   [`Hub::authenticate_handshake`](crate::Hub::authenticate_handshake) (and answered HTTP 401 on failure);
/// - `token`: an unchecked handshake token; the hub checks it as if it were the
///   client's first `auth` message (failure: `error` + close 4401), for transports
///   that can not refuse an upgrade after awaiting;
/// - neither: the client must send `auth` within `auth_timeout` (else 4401).
///
/// `origin`, `ip` and `path` are handed to an auth hook with every later check.
#[derive(Clone, Default)]
pub struct ConnectInfo {
    /// The client IP (after trusted-proxy resolution).
    pub ip: Option<IpAddr>,
    /// The browser `Origin` header, if any.
    pub origin: Option<String>,
    /// The request path (without the query string).
    pub path: String,
    /// An unverified handshake token (see above).
    pub token: Option<String>,
    /// An identity the transport verified already (see above).
    pub identity: Option<Identity>,
    /// The room the upgrade URL joins at connect (after authentication when
    /// auth is on and no identity is known yet).
    pub join: Option<UrlJoin>,
}

impl std::fmt::Debug for ConnectInfo {
    // Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectInfo")
            .field("ip", &self.ip)
            .field("origin", &self.origin)
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("identity", &self.identity)
            .field("join", &self.join)
            .finish()
    }
}

pub(super) type Refusal = (ErrorCode, String);

pub(super) fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Refusal> {
    Err((code, message.into()))
}

/// The state of one connection (see [`Connection`]).
#[derive(Debug)]
pub(super) struct ConnCore {
    pub(super) hub: Arc<HubInner>,
    pub(super) id: u64,
    pub(super) outbox: Arc<Outbox>,
    pub(super) session: Arc<Session>,
    pub(super) rate: Option<RateLimiter>,
    /// True until the first message that changes state: only then may `resume` come.
    pub(super) pristine: bool,
    pub(super) finished: bool,
    /// `None` when auth is off (no cost then).
    pub(super) auth: Option<Box<ConnAuth>>,
    /// Cluster mode: a `resume` of a session held by another node, in progress.
    pub(super) claim: Option<Arc<ClaimSlot>>,
    /// The join the upgrade URL asked for, while not done yet.
    /// Boxed: rare (rooms in the URL), and every connection holds this field.
    pub(super) url_join: Option<Box<PendingJoin>>,
    /// The client's IP as the per-IP budgets count it (IPv6: its prefix).
    pub(super) ip_key: Option<IpAddr>,
}

/// A message was accepted now (`ack` at once), or handed to the cluster, which
/// answers once the peer's node accepted it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Accepted {
    Now,
    Later,
}

pub(super) fn lock_core(core: &Mutex<ConnCore>) -> MutexGuard<'_, ConnCore> {
    // A panic while handling a message is caught by the transport and closes the
    // connection (1011); the state is still usable for settling the session.
    core.lock().unwrap_or_else(|p| p.into_inner())
}

/// The auth state of one connection (only present while auth is on).
#[derive(Debug)]
pub(super) struct ConnAuth {
    /// The connection itself, for the hub's tasks (never keeps it alive).
    pub(super) me: Weak<Mutex<ConnCore>>,
    pub(super) origin: Option<String>,
    pub(super) ip: Option<IpAddr>,
    pub(super) path: String,
    pub(super) identity: Option<Identity>,
    /// Bumped whenever `identity` changes, so a timer that fires for an older one
    /// (aborted, but already past its last await) does nothing.
    pub(super) generation: u64,
    /// Set while an auth hook checks an `auth`: later frames wait here, in order.
    pub(super) pending: Option<Pending>,
    /// The auth-timeout timer, then the expiry timer.
    pub(super) timer: Option<AbortHandle>,
    pub(super) hook: Option<AbortHandle>,
}

/// A join the upgrade URL asked for, not done yet (see `url_join.rs`).
#[derive(Debug)]
pub(super) struct PendingJoin {
    pub(super) join: UrlJoin,
    /// The connection itself, for the hold timer (never keeps it alive).
    pub(super) me: Weak<Mutex<ConnCore>>,
    /// The timer of a join held for a `resume`.
    pub(super) hold: Option<AbortHandle>,
}

#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) frames: VecDeque<Box<str>>,
    pub(super) bytes: usize,
}

impl ConnAuth {
    /// Queues `text` while a hook check is pending; `false` when it should be
    /// handled now.
    pub(super) fn defer(&mut self, text: &str, outbox: &Outbox) -> bool {
        let Some(p) = &mut self.pending else {
            return false;
        };
        if p.frames.len() >= PENDING_MESSAGES || p.bytes + text.len() > PENDING_BYTES {
            outbox.close(
                close::POLICY,
                "too many messages while authenticating",
                Fate::End,
            );
            return true;
        }
        p.bytes += text.len();
        p.frames.push_back(text.into());
        true
    }

    /// The connection ended: no timer or hook answer may act on it any more.
    pub(super) fn stop_tasks(&mut self) {
        for task in [self.timer.take(), self.hook.take()].into_iter().flatten() {
            task.abort();
        }
        self.pending = None;
    }
}

impl ConnCore {
    /// This connection's `clientId`.
    pub(super) fn client_id(&self) -> String {
        super::client_id_of(self.id)
    }

    /// The identity of an authenticated connection.
    pub(super) fn identity(&self) -> Option<&Identity> {
        self.auth.as_ref().and_then(|a| a.identity.as_ref())
    }

    /// Sends a reply. Before a possible `resume` (while pristine) replies belong to
    /// the connection, not to a session: they carry no `seq`, so they can not
    /// collide with the `seq`s a resume is about to replay.
    pub(super) fn reply(&self, body: String) {
        if self.pristine {
            self.outbox.push(Frame::from(body));
        } else {
            self.session.deliver(&body);
        }
    }

    pub(super) fn send_error(&self, code: ErrorCode, message: &str, reference: Option<Raw<'_>>) {
        self.hub.metrics.error_sent(code);
        self.reply(outbound::error(code.as_str(), message, reference));
    }

    pub(super) fn send_ack(&self, id: Raw<'_>) {
        self.reply(outbound::ack(id));
    }
}

#[cfg(test)]
mod tests {
    /// Every connection holds its state behind `Arc<Mutex<_>>` (16 bytes of
    /// counts, 8 of lock): keep it in jemalloc's 128-byte class (rare parts
    /// are boxed: auth, the URL join).
    #[test]
    fn connection_state_stays_in_its_size_class() {
        // The `clientId` is derived from the connection's number, not kept;
        // the rate limiter keeps 4-byte times and not the limit (192 before).
        let size = std::mem::size_of::<std::sync::Mutex<super::ConnCore>>() + 16;
        assert!(size <= 128, "{size} bytes per connection");
    }
}
