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

impl Session {
    /// The buffered frames the mirror has not copied yet, with the buffer's
    /// first seq (the mirror trims below it); they count as copied from now on.
    pub(crate) fn take_unmirrored(&self) -> (u64, Vec<(u64, Frame)>) {
        let mut st = self.lock();
        let (first, next) = (st.first_seq, st.next_seq);
        let Some(link) = st.mirror.as_mut() else {
            return (first, Vec::new());
        };
        link.told = false;
        let from = link.copied_to.max(first.saturating_sub(1));
        link.copied_to = next - 1;
        let skip = (from + 1 - first) as usize;
        let frames = (from + 1..)
            .zip(st.replay.iter().skip(skip).cloned())
            .collect();
        (first, frames)
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
