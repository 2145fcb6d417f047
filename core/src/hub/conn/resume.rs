//! `resume`: taking a lost session back (locally or, in cluster mode, by
//! claiming it from another node) and replaying what it missed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::{refuse, ConnCore, Refusal};
use crate::error::ErrorCode;
use crate::event::{Event, Fields};
use crate::hub::backplane::{ClaimRequest, ClaimSlot, ClaimState};
use crate::hub::outbox::Fate;
use crate::hub::session::{queue_resumed, Attached, Session};
use crate::hub::HubInner;
use crate::protocol::{close, ClientMessage};

impl ConnCore {
    pub(super) fn resume(&mut self, msg: &ClientMessage<'_>) -> Result<(), Refusal> {
        // A fresh session the host already put into a room is no longer
        // disposable: resuming over it would leave it listed there.
        if !self.pristine || !self.session.lock().rooms.is_empty() {
            return refuse(
                ErrorCode::InvalidMessage,
                "`resume` must come before any other message",
            );
        }
        let field = |n| msg.str_field(n).ok().flatten().unwrap_or_default();
        let (session_id, token) = (field("sessionId"), field("resumeToken"));
        let last_seq = msg.seq.unwrap_or(0);
        let failed = |hub: &HubInner, why: &str| {
            hub.metrics.resume_failures.fetch_add(1, Ordering::Relaxed);
            refuse(ErrorCode::ResumeFailed, why.to_owned())
        };
        let target = match self.hub.sessions.get(&session_id) {
            Some(s) if s.resume_token.matches(&token) => s,
            // Cluster mode: the session may be held by another node, or orphaned.
            None if self.hub.backplane().is_some() => {
                return self.start_claim(session_id.into_owned(), token.into_owned(), last_seq);
            }
            _ => return failed(&self.hub, "unknown or expired session"),
        };
        // With auth on, only the same user may take a session back.
        if let Some(identity) = self.identity() {
            let owner = target.lock().user_id.clone();
            if owner.is_some_and(|u| *u != *identity.user_id) {
                return failed(&self.hub, "unknown or expired session");
            }
        }
        if Arc::ptr_eq(&target, &self.session) {
            return failed(&self.hub, "this is the session of this connection");
        }
        let replayed = {
            let mut st = target.lock();
            if st.ended {
                return failed(&self.hub, "unknown or expired session");
            }
            let Some(frames) = st.replay_after(last_seq) else {
                return failed(
                    &self.hub,
                    &format!("messages after seq {last_seq} are no longer buffered"),
                );
            };
            match st.attached.take() {
                Some(old) => {
                    old.outbox
                        .close(close::REPLACED, "session taken over", Fate::Detached);
                }
                None => {
                    self.hub
                        .metrics
                        .sessions_away
                        .fetch_sub(1, Ordering::Relaxed);
                }
            }
            st.attached = Some(Attached {
                conn_id: self.id,
                outbox: self.outbox.clone(),
            });
            st.away_generation = st.away_generation.wrapping_add(1);
            st.uncount_away();
            if let Some(bp) = self.hub.backplane() {
                bp.session_away(
                    &target.id,
                    false,
                    st.rooms.iter().map(|r| r.id.clone()).collect(),
                );
            }
            queue_resumed(&self.outbox, &target.id, frames)
        };
        self.took_over(target, replayed);
        Ok(())
    }

    /// Asks the cluster for a session this node does not have; the outcome (the
    /// `resumed` and the replay, or `resume-failed`) reaches the outbox directly and
    /// the connection picks the session up with its next message or at its end.
    pub(super) fn start_claim(
        &mut self,
        session_id: String,
        resume_token: String,
        last_seq: u64,
    ) -> Result<(), Refusal> {
        let bp = self
            .hub
            .backplane()
            .expect("claims only happen in a cluster");
        if let Err(u) = bp.available() {
            self.hub
                .metrics
                .resume_failures
                .fetch_add(1, Ordering::Relaxed);
            return refuse(ErrorCode::ResumeFailed, u.0);
        }
        let slot = Arc::new(ClaimSlot::default());
        self.claim = Some(slot.clone());
        bp.claim(ClaimRequest {
            session_id,
            resume_token,
            // With auth on, only the same user may take a session back.
            user_id: self.identity().map(|i| i.user_id.to_string()),
            last_seq,
            conn_id: self.id,
            outbox: self.outbox.clone(),
            slot,
        });
        Ok(())
    }

    /// Picks up the outcome of a cluster claim; `true` while it is still running.
    pub(super) fn take_claim(&mut self) -> bool {
        let Some(slot) = self.claim.clone() else {
            return false;
        };
        match slot.take() {
            ClaimState::Waiting => true,
            ClaimState::Resumed(session, replayed) => {
                self.claim = None;
                self.took_over(session, replayed);
                self.settle_url_join(true);
                false
            }
            ClaimState::Over => {
                self.claim = None;
                self.settle_url_join(false);
                false
            }
        }
    }

    /// This connection now carries `target` (resumed); its fresh session is dropped.
    pub(super) fn took_over(&mut self, target: Arc<Session>, replayed: usize) {
        let fresh = std::mem::replace(&mut self.session, target);
        fresh.lock().ended = true;
        self.hub.unlist_session(&fresh);
        self.pristine = false;
        self.hub.metrics.resumes.fetch_add(1, Ordering::Relaxed);
        self.hub.emit(|| {
            let mut f = Fields::new();
            f.insert("clientId".into(), self.client_id().into());
            f.insert("sessionId".into(), self.session.id.to_string().into());
            f.insert("replayed".into(), replayed.into());
            Event::Resumed(f)
        });
    }
}
