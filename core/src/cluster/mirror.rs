//! The replay mirror's write-behind: sessions with frames not yet in their
//! stream wait here, and each gets one `XADD` for all of them (fields
//! `{seq} frame …`) instead of one per frame.
//!
//! Why: one `XADD` per relayed message, queued with a copy of the frame, was
//! the largest cost of a cross-node message (Redis' stream append, a command and
//! a reply on the writer, an operation per frame on the queue). Now a session
//! queues one operation when it first has frames to copy, and the frames are
//! taken from its replay buffer when written (so frames acknowledged meanwhile
//! are never written; what waits here is a weak pointer, the bytes stay counted
//! in the session's own bounded buffer). When the writer is idle the frames are
//! written with the operation, as before; only while it is busy (a round trip
//! gathered many operations) do they wait, for at most [`MIRROR_DELAY`]. So
//! after a crash the frames missing from Redis are at most that old (a resume
//! that needs them gets `resume-failed`, never a silent gap). A session's frames
//! are written before anything that lets another node read its stream (it goes
//! away, or is handed over).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::keys;
use crate::hub::Session;
use crate::protocol::Frame;

/// How long frames may wait while the writer is busy.
pub(super) const MIRROR_DELAY: Duration = Duration::from_millis(20);

/// The sessions whose frames wait to be written.
#[derive(Debug, Default)]
pub(super) struct Mirrors {
    due: HashMap<Arc<str>, Weak<Session>>,
    /// When the oldest of them came.
    since: Option<Instant>,
}

impl Mirrors {
    /// `session` has frames to write.
    pub(super) fn add(&mut self, session: Weak<Session>) {
        let Some(s) = session.upgrade() else {
            return;
        };
        self.since.get_or_insert_with(Instant::now);
        self.due.insert(s.id.clone(), session);
    }

    /// Writes one session's frames into `pipe` now (before its stream may be
    /// read elsewhere).
    pub(super) fn write_session(&mut self, sid: &str, pipe: &mut redis::Pipeline, n: &mut usize) {
        if let Some(session) = self.due.remove(sid) {
            *n += write(pipe, &session);
            if self.due.is_empty() {
                self.since = None;
            }
        }
    }

    /// Writes every waiting session's frames into `pipe`.
    pub(super) fn write_all(&mut self, pipe: &mut redis::Pipeline, n: &mut usize) {
        for (_, session) in self.due.drain() {
            *n += write(pipe, &session);
        }
        self.since = None;
    }

    /// Forgets the waiting sessions (a resync writes every stream from memory).
    pub(super) fn clear(&mut self) {
        *self = Mirrors::default();
    }

    /// When the waiting frames must be written at the latest.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + MIRROR_DELAY)
    }

    /// Whether the frames must be written with the batch at hand: the writer is
    /// idle (`busy` false), or the oldest waited long enough.
    pub(super) fn due(&self, busy: bool) -> bool {
        !self.due.is_empty() && (!busy || self.deadline().is_some_and(|d| d <= Instant::now()))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

/// Takes a session's frames not yet written; returns the commands added (0 or 1).
fn write(pipe: &mut redis::Pipeline, session: &Weak<Session>) -> usize {
    let Some(session) = session.upgrade() else {
        return 0;
    };
    let (first_seq, frames) = session.take_unmirrored();
    xadd(pipe, &session.id, first_seq, &frames)
}

/// One entry for all of `frames`: id = the last seq, fields = each frame's seq
/// and text; trimmed to whole stream nodes below the buffer's first seq (`~`: an
/// exact trim made Redis walk entries on every add; what it keeps is older than
/// anything a resume can ask for).
fn xadd(pipe: &mut redis::Pipeline, sid: &str, first_seq: u64, frames: &[(u64, Frame)]) -> usize {
    let Some(&(last, _)) = frames.last() else {
        return 0;
    };
    let cmd = pipe
        .cmd("XADD")
        .arg(keys::session_replay(sid))
        .arg("MINID")
        .arg("~")
        .arg(first_seq)
        .arg(last);
    for (seq, frame) in frames {
        cmd.arg(*seq).arg(frame.as_str());
    }
    1
}
