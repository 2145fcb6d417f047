//! The replay mirror's write-behind: the frames a session buffers wait here,
//! grouped per session, and go to its stream as one `XADD` per session (fields
//! `{seq} frame …`) instead of one per frame.
//!
//! Why: one `XADD` per relayed message was the largest cost of a cross-node
//! message (Redis' stream append, a command and a reply on the writer). When the
//! writer is idle the group is written at once, as before; only while it is busy
//! (operations waiting behind a round trip) do groups gather, for at most
//! [`MIRROR_DELAY`] or [`MIRROR_BYTES`]. So after a crash the frames missing from
//! Redis are at most that old (a resume that needs them gets `resume-failed`,
//! never a silent gap). A session's group is written before anything that lets
//! another node read its stream (it goes away, or is handed over) and dropped
//! when the session ends (its stream is deleted).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::keys;
use crate::protocol::Frame;

/// How long frames may wait while the writer is busy.
pub(super) const MIRROR_DELAY: Duration = Duration::from_millis(20);
/// Bytes of frames waiting, at most: past it, every group is written with the
/// batch at hand (the relaying sessions pay with smaller groups, nobody waits).
pub(super) const MIRROR_BYTES: usize = 8 * 1024 * 1024;

/// One session's frames not yet in its stream.
#[derive(Debug, Default)]
struct Group {
    /// The oldest seq still in the session's buffer (the stream is trimmed to it).
    first_seq: u64,
    frames: Vec<(u64, Frame)>,
    bytes: usize,
}

/// The groups waiting to be written.
#[derive(Debug, Default)]
pub(super) struct Mirrors {
    groups: HashMap<Arc<str>, Group>,
    bytes: usize,
    /// When the oldest waiting frame came.
    since: Option<Instant>,
}

impl Mirrors {
    /// Adds a buffered frame; frames the session no longer buffers (acknowledged
    /// or past its bounds since) are not written at all.
    pub(super) fn add(&mut self, sid: Arc<str>, seq: u64, frame: Frame, first_seq: u64) {
        self.since.get_or_insert_with(Instant::now);
        let group = self.groups.entry(sid).or_default();
        group.first_seq = group.first_seq.max(first_seq);
        let before = group.bytes;
        group.frames.retain(|(s, f)| {
            let keep = *s >= first_seq;
            if !keep {
                group.bytes -= f.len();
            }
            keep
        });
        group.bytes += frame.len();
        group.frames.push((seq, frame));
        self.bytes = self.bytes + group.bytes - before;
    }

    /// Forgets a session's waiting frames (it ended: its stream is deleted).
    pub(super) fn forget(&mut self, sid: &str) {
        if let Some(g) = self.groups.remove(sid) {
            self.removed(g.bytes);
        }
    }

    fn removed(&mut self, bytes: usize) {
        self.bytes -= bytes;
        if self.groups.is_empty() {
            self.since = None;
        }
    }

    /// Writes one session's waiting frames into `pipe` (before its stream may be
    /// read elsewhere).
    pub(super) fn write_session(&mut self, sid: &str, pipe: &mut redis::Pipeline, n: &mut usize) {
        if let Some((sid, g)) = self.groups.remove_entry(sid) {
            self.removed(g.bytes);
            xadd(pipe, &sid, g);
            *n += 1;
        }
    }

    /// Writes every waiting group into `pipe`.
    pub(super) fn write_all(&mut self, pipe: &mut redis::Pipeline, n: &mut usize) {
        for (sid, g) in self.groups.drain() {
            xadd(pipe, &sid, g);
            *n += 1;
        }
        self.bytes = 0;
        self.since = None;
    }

    /// Drops everything waiting (a resync rewrites the streams from memory).
    pub(super) fn clear(&mut self) {
        *self = Mirrors::default();
    }

    /// When the waiting groups must be written at the latest.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + MIRROR_DELAY)
    }

    /// Whether the groups must be written with the batch at hand: the writer is
    /// idle (`busy` false), the oldest frame waited long enough, or too many bytes wait.
    pub(super) fn due(&self, busy: bool) -> bool {
        !self.groups.is_empty()
            && (!busy
                || self.bytes >= MIRROR_BYTES
                || self.deadline().is_some_and(|d| d <= Instant::now()))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// One entry for the whole group: id = the last seq, fields = each frame's seq
/// and text; trimmed to whole stream nodes below the buffer's first seq (`~`: an
/// exact trim made Redis walk entries on every add; what it keeps is older than
/// anything a resume can ask for).
fn xadd(pipe: &mut redis::Pipeline, sid: &str, g: Group) {
    let Some(&(last, _)) = g.frames.last() else {
        return;
    };
    let cmd = pipe
        .cmd("XADD")
        .arg(keys::session_replay(sid))
        .arg("MINID")
        .arg("~")
        .arg(g.first_seq)
        .arg(last);
    for (seq, frame) in &g.frames {
        cmd.arg(*seq).arg(frame.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_gather_per_session_and_acknowledged_ones_are_never_written() {
        let mut m = Mirrors::default();
        let f = |s: &str| Frame::from(s.to_owned());
        m.add("a".into(), 1, f("{\"seq\":1}"), 1);
        m.add("a".into(), 2, f("{\"seq\":2}"), 1);
        m.add("b".into(), 7, f("{\"seq\":7}"), 7);
        assert!(!m.due(true), "a busy writer lets them gather");
        assert!(m.due(false), "an idle writer writes at once");
        // Session a acknowledged 1 and 2 meanwhile: they are dropped.
        m.add("a".into(), 3, f("{\"seq\":3}"), 3);
        assert_eq!(m.groups["a"].frames.len(), 1);
        assert_eq!(m.bytes, 18);
        let mut pipe = redis::pipe();
        let mut n = 0;
        m.write_session("a", &mut pipe, &mut n);
        assert_eq!(n, 1);
        let written = String::from_utf8_lossy(&pipe.get_packed_pipeline()).into_owned();
        assert!(written.contains("sb:r:a") && written.contains("{\"seq\":3}"));
        assert!(!written.contains("{\"seq\":1}"));
        m.forget("b");
        assert!(m.is_empty());
        assert_eq!(m.bytes, 0);
    }
}
