//! A session's side of the cluster's replay mirror: what it told the mirror
//! and what the mirror took from its replay buffer.

use std::sync::{Arc, Weak};

use super::{ReplayMirror, Session, SessionState};
use crate::protocol::Frame;

/// A session's link to the mirror.
#[derive(Debug)]
pub(super) struct MirrorLink {
    pub(super) session: Weak<Session>,
    pub(super) mirror: Arc<dyn ReplayMirror>,
    /// Every frame up to this seq was copied (or never needs to be).
    pub(super) copied_to: u64,
    /// The mirror was told of frames it has not taken yet.
    pub(super) told: bool,
}

/// What the mirror took from a session's buffer.
#[derive(Debug)]
pub(crate) struct Unmirrored {
    /// The buffer's first seq (the mirror trims below it).
    pub first_seq: u64,
    /// The frames taken, with their seqs; they count as copied from now on.
    pub frames: Vec<(u64, Frame)>,
    /// The seq the next buffered frame gets; `None` once every buffered frame
    /// is copied (the session tells the mirror again about the next one).
    pub more_from: Option<u64>,
}

impl Session {
    /// The buffered frames the mirror has not copied yet and whose seq is
    /// below `below` (`u64::MAX`: all of them).
    pub(crate) fn take_unmirrored(&self, below: u64) -> Unmirrored {
        let mut st = self.lock();
        let (first, next) = (st.first_seq, st.next_seq);
        let Some(link) = st.mirror.as_mut() else {
            return Unmirrored {
                first_seq: first,
                frames: Vec::new(),
                more_from: None,
            };
        };
        let from = link.copied_to.max(first.saturating_sub(1));
        let to = from.max(below.min(next).saturating_sub(1));
        link.copied_to = to;
        // Frames left to copy: the mirror keeps the session and is not told again.
        let more_from = (to < next - 1).then_some(next);
        link.told = more_from.is_some();
        let skip = (from + 1 - first) as usize;
        let frames = (from + 1..=to)
            .zip(st.replay.iter().skip(skip).cloned())
            .collect();
        Unmirrored {
            first_seq: first,
            frames,
            more_from,
        }
    }
}

impl SessionState {
    /// Mirrors every frame buffered from now on to the cluster (those buffered
    /// before are there already, or were never to be).
    pub(crate) fn set_mirror(&mut self, session: Weak<Session>, mirror: Arc<dyn ReplayMirror>) {
        // Boxed: cluster mode only, and every session holds this field.
        self.mirror = Some(Box::new(MirrorLink {
            session,
            mirror,
            copied_to: self.next_seq - 1,
            told: false,
        }));
    }

    /// The buffered frames with their seqs, for a cluster resync that writes
    /// them all: the mirror has nothing left to copy.
    pub(crate) fn frames_for_resync(&mut self) -> Vec<(u64, Frame)> {
        if let Some(link) = &mut self.mirror {
            link.copied_to = self.next_seq - 1;
            link.told = false;
        }
        (self.first_seq..)
            .zip(self.replay.iter().cloned())
            .collect()
    }
}
