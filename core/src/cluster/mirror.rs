//! The replay mirror's write-behind: sessions with frames not yet in their
//! stream wait here, and each gets one `XADD` for all of them (one field `g`,
//! the frames with their seqs) instead of one per frame.
//!
//! Why: one `XADD` per relayed message, queued with a copy of the frame, was
//! the largest cost of a cross-node message (Redis' stream append, a command and
//! a reply on the writer, an operation per frame on the queue). Now a session
//! queues one operation when it first has frames to copy, and the frames are
//! taken from its replay buffer when written (so frames acknowledged meanwhile
//! are never written; what waits here is a pointer to the session, one per
//! session while it has frames to copy, and the bytes stay counted in the
//! session's own bounded buffer). When the writer has nothing else to
//! write and operations come slowly, the frames go at once, as before; only
//! while operations come fast (over [`BUSY_OPS`] per 10 ms) do they wait, for at
//! most [`MIRROR_DELAY`]: a pass every half of it marks each waiting session's
//! frames, and the next pass writes the marked ones still unacknowledged (a
//! client that acknowledges within a pass has none of its frames written;
//! taking every frame at the first pass wrote about half of a busy session's
//! frames, acknowledged a few milliseconds later). So after a crash the frames
//! missing from Redis are at most that old (what that means for a resume:
//! `docs/CLUSTER.md`, "Known limits"). A session's frames are all written
//! before anything that lets another node read its stream (it goes away, or is
//! handed over).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::keys;
use crate::hub::Session;
use crate::protocol::frame::push_u64;
use crate::protocol::Frame;

/// How long frames may wait while the writer is busy.
pub(super) const MIRROR_DELAY: Duration = Duration::from_millis(50);
/// While busy, the sessions' frames are marked, then written at the next pass
/// if still unacknowledged: two passes make [`MIRROR_DELAY`].
const PASS: Duration = Duration::from_millis(MIRROR_DELAY.as_millis() as u64 / 2);

/// The writer counts as busy from this many operations per [`PACE_WINDOW`]
/// (6 400 a second): below it, writing the frames at once costs little.
const BUSY_OPS: usize = 64;
const PACE_WINDOW: Duration = Duration::from_millis(10);

/// The sessions whose frames wait to be written.
#[derive(Debug, Default)]
pub(super) struct Mirrors {
    /// Per session: its mark while busy (its frames below it are written at
    /// the next pass; `None` until a pass has seen it).
    due: HashMap<Arc<str>, (Arc<Session>, Option<u64>)>,
    /// When the oldest of them came, or the last pass (which marked the rest).
    since: Option<Instant>,
    /// Operations the writer took in the current window, and in the one before.
    pace: Option<(Instant, usize, usize)>,
}

impl Mirrors {
    /// `session` has frames to write.
    pub(super) fn add(&mut self, session: Arc<Session>) {
        self.since.get_or_insert_with(Instant::now);
        // Still waiting from before: it keeps its mark.
        self.due
            .entry(session.id.clone())
            .or_insert_with(|| (session, None));
    }

    /// Forgets a session's frames: it ended and its stream is deleted (a write
    /// after that would create the stream again, with nothing to delete it).
    pub(super) fn forget(&mut self, sid: &str) {
        self.take(sid);
    }

    fn take(&mut self, sid: &str) -> Option<Arc<Session>> {
        let session = self.due.remove(sid).map(|(s, _)| s);
        if self.due.is_empty() {
            self.since = None;
        }
        session
    }

    /// The writer took operations that count `n` (each delivery counts one).
    pub(super) fn note_ops(&mut self, n: usize) {
        let now = Instant::now();
        let (start, current, previous) = self.pace.get_or_insert((now, 0, 0));
        if now >= *start + PACE_WINDOW * 2 {
            (*start, *current, *previous) = (now, 0, 0);
        } else if now >= *start + PACE_WINDOW {
            (*start, *current, *previous) = (*start + PACE_WINDOW, 0, *current);
        }
        *current += n;
    }

    /// Whether operations come fast enough that the frames should gather.
    pub(super) fn busy(&self) -> bool {
        self.pace
            .is_some_and(|(_, current, previous)| current.max(previous) >= BUSY_OPS)
    }

    /// Writes one session's frames into `pipe` now (before its stream may be
    /// read elsewhere).
    pub(super) fn write_session(&mut self, sid: &str, pipe: &mut redis::Pipeline, n: &mut usize) {
        if let Some(session) = self.take(sid) {
            *n += write(pipe, &session, u64::MAX).0;
        }
    }

    /// Writes the frames due into `pipe`: all of them when the writer has
    /// nothing else to do (`idle`) or is no longer busy; while it is busy, at
    /// each [`PASS`] the frames marked at the pass before (so a frame is
    /// written only if it stayed unacknowledged for at least one pass, and at
    /// most two passes, [`MIRROR_DELAY`], after it was buffered).
    pub(super) fn write_due(&mut self, idle: bool, pipe: &mut redis::Pipeline, n: &mut usize) {
        let passed = self.deadline().is_some_and(|d| d <= Instant::now());
        if self.due.is_empty() || !(idle || passed) {
            return;
        }
        let all = idle || !self.busy();
        self.due.retain(|_, (session, mark)| {
            let below = if all { u64::MAX } else { mark.unwrap_or(0) };
            let (added, more_from) = write(pipe, session, below);
            *n += added;
            *mark = more_from;
            more_from.is_some()
        });
        self.since = (!self.due.is_empty()).then(Instant::now);
    }

    /// When the waiting frames must be written (or marked) at the latest.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + PASS)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

/// Takes a session's frames not yet written with a seq below `below`; returns
/// the commands added (0 or 1) and, while frames are left to write, its next
/// mark (the seq its next frame gets: everything left is below it).
fn write(pipe: &mut redis::Pipeline, session: &Session, below: u64) -> (usize, Option<u64>) {
    let taken = session.take_unmirrored(below);
    let added = xadd(pipe, &session.id, taken.first_seq, &taken.frames);
    (added, taken.more_from)
}

/// One entry for all of `frames`: id = the last seq, one field `g` holding them
/// all ([`encode_group`]: Redis stores one value, instead of a pair per frame);
/// trimmed to whole stream nodes below the buffer's first seq (`~`: an exact
/// trim made Redis walk entries on every add; what it keeps is older than
/// anything a resume can ask for).
fn xadd(pipe: &mut redis::Pipeline, sid: &str, first_seq: u64, frames: &[(u64, Frame)]) -> usize {
    let Some(&(last, _)) = frames.last() else {
        return 0;
    };
    pipe.cmd("XADD")
        .arg(keys::session_replay(sid))
        .arg("MINID")
        .arg("~")
        .arg(first_seq)
        .arg(last)
        .arg("g")
        .arg(encode_group(frames));
    1
}

/// Frames as one value: for each, `{seq}:{length in bytes}:{frame}`.
pub(super) fn encode_group(frames: &[(u64, Frame)]) -> String {
    let size: usize = frames.iter().map(|(_, f)| f.len() + 24).sum();
    let mut out = String::with_capacity(size);
    for (seq, frame) in frames {
        push_u64(&mut out, *seq);
        out.push(':');
        push_u64(&mut out, frame.len() as u64);
        out.push(':');
        out.push_str(frame.as_str());
    }
    out
}

/// The frames of a group value, or `None` if it does not parse.
pub(super) fn decode_group(mut group: &str) -> Option<Vec<(u64, Frame)>> {
    let mut frames = Vec::new();
    let number = |rest: &mut &str| -> Option<u64> {
        let (n, tail) = rest.split_once(':')?;
        *rest = tail;
        n.parse().ok()
    };
    let mut last = 0;
    while !group.is_empty() {
        // Seqs start at 1 and increase: anything else is not a group of ours.
        let seq = number(&mut group).filter(|&s| s > last)?;
        last = seq;
        let len = usize::try_from(number(&mut group)?).ok()?;
        let frame = group.get(..len)?;
        group = &group[len..];
        frames.push((seq, Frame::from(frame.to_owned())));
    }
    Some(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn frames_gather_only_while_operations_come_fast() {
        let mut m = Mirrors::default();
        assert!(!m.busy());
        m.note_ops(BUSY_OPS - 1);
        assert!(!m.busy(), "a slow writer writes frames at once");
        m.note_ops(1);
        assert!(m.busy());
        tokio::time::advance(PACE_WINDOW).await;
        m.note_ops(1);
        assert!(m.busy(), "the last full window still counts");
        tokio::time::advance(PACE_WINDOW * 2).await;
        m.note_ops(1);
        assert!(!m.busy(), "a quiet spell ends it");
    }

    #[test]
    fn a_group_comes_back_as_it_went_and_garbage_is_refused() {
        let frames: Vec<(u64, Frame)> =
            [(7, "{\"seq\":7,\"a\":\"x:y\"}"), (8, "{\"seq\":8,\"é\":1}")]
                .into_iter()
                .map(|(s, f)| (s, Frame::from(f.to_owned())))
                .collect();
        let group = encode_group(&frames);
        let back = decode_group(&group).unwrap();
        assert_eq!(back.len(), 2);
        for ((s1, f1), (s2, f2)) in back.iter().zip(&frames) {
            assert_eq!((s1, f1.as_str()), (s2, f2.as_str()));
        }
        for cut in 1..group.len() {
            if let Some(part) = group.get(..cut) {
                assert!(
                    decode_group(part).is_none_or(|f| f.len() < 2),
                    "cut at {cut}"
                );
            }
        }
        assert!(decode_group("1:99:{}").is_none());
        assert!(decode_group("x:2:{}").is_none());
        assert!(decode_group("0:2:{}").is_none(), "seqs start at 1");
        assert!(decode_group("5:2:{}5:2:{}").is_none(), "seqs increase");
    }
}
