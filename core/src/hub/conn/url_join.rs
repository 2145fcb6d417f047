//! Joining the room the upgrade URL names (`?room=`, `/signaling/{roomId}/…`):
//! at connect, or as soon as the client authenticated, so the session is in
//! its room before its first frame is read. Held back only while the user's own
//! away session sits in that room: a `resume` sent first takes that session
//! back (with its rooms); anything else, or the hold running out, joins.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::join::{join_session, JoinArgs};
use super::state::{lock_core, ConnCore, PendingJoin};
use crate::hub::outbox::Fate;
use crate::protocol::close;
use crate::protocol::url::UrlJoin;

/// How long a URL join waits for a `resume` when an away session of the same
/// user is in the room. A resuming client sends `resume` as its first frame,
/// one round trip after the upgrade; a client that does not resume (a reloaded
/// page) gets its `room-info` after at most this.
const RESUME_HOLD: Duration = Duration::from_secs(2);

impl ConnCore {
    /// At connect: the URL join, now or once the client authenticated.
    pub(super) fn open_url_join(core: &Arc<Mutex<ConnCore>>, join: UrlJoin) {
        let mut c = lock_core(core);
        c.url_join = Some(Box::new(PendingJoin {
            join,
            me: Arc::downgrade(core),
            hold: None,
        }));
        c.try_url_join();
    }

    /// Does the pending URL join, unless auth is still pending (it runs once the
    /// client authenticated) or the user's away session must be given a chance
    /// to resume first.
    pub(super) fn try_url_join(&mut self) {
        let Some(pending) = &self.url_join else {
            return;
        };
        if self.auth.as_ref().is_some_and(|a| a.identity.is_none()) {
            return;
        }
        if pending.hold.is_none() && self.away_session_in_room(&pending.join) {
            let me = pending.me.clone();
            let task = self.hub.spawn(async move {
                tokio::time::sleep(RESUME_HOLD).await;
                if let Some(core) = me.upgrade() {
                    let mut c = lock_core(&core);
                    if !c.finished && c.claim.is_none() {
                        c.url_join_now();
                    }
                }
            });
            if let Some(p) = &mut self.url_join {
                p.hold = Some(task);
            }
            return;
        }
        if pending.hold.is_none() {
            self.url_join_now();
        }
    }

    /// Whether the user this URL join is for has an away session in its room.
    fn away_session_in_room(&self, join: &UrlJoin) -> bool {
        let user = match self.identity() {
            Some(identity) => identity.user_id.as_str(),
            None => match &join.user_id {
                Some(u) => u.as_str(),
                None => return false,
            },
        };
        let Some(room) = self.hub.rooms.get(&join.room_id) else {
            return false;
        };
        let holder = room.lock().find(user).map(|m| m.session.clone());
        holder.is_some_and(|s| s.lock().is_away())
    }

    /// The URL join, now. A refusal is an `error` and then a close with 4400
    /// (its reason is the error code): the URL promised a room, and a client
    /// that never sends `join` would otherwise sit outside it unaware.
    pub(super) fn url_join_now(&mut self) {
        let Some(pending) = self.url_join.take() else {
            return;
        };
        if let Some(hold) = pending.hold {
            hold.abort();
        }
        let UrlJoin {
            room_id,
            user_id,
            display_name,
        } = pending.join;
        self.pristine = false;
        let args = JoinArgs {
            room_id: &room_id,
            user_id: user_id.map(Cow::Owned),
            display_name: display_name.map(Cow::Owned),
            metadata: None,
        };
        if let Err((code, message)) = join_session(&self.hub, &self.session, self.identity(), args)
        {
            self.send_error(code, &message, None);
            self.outbox
                .close(close::JOIN_REFUSED, code.as_str(), Fate::End);
        }
    }

    /// After a `resume` on a connection with a held URL join: a resumed session
    /// has its rooms already; a refused one joins now.
    pub(super) fn settle_url_join(&mut self, resumed: bool) {
        if resumed {
            if let Some(hold) = self.url_join.take().and_then(|p| p.hold) {
                hold.abort();
            }
        } else {
            self.url_join_now();
        }
    }

    /// The connection ended: the hold timer has nothing left to do.
    pub(super) fn drop_url_join(&mut self) {
        if let Some(hold) = self.url_join.take().and_then(|p| p.hold) {
            hold.abort();
        }
    }
}
