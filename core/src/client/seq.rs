//! The inbound side of the session: which server `seq` the application has
//! already seen (replays after a resume may repeat some), and when to send the
//! cumulative `ack` that lets the server free its resume buffer.

/// What to do with an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not seen before: handle it and deliver it.
    New,
    /// Already delivered (a replay overlapping what this client had): drop it.
    Duplicate,
}

/// Tracks the highest `seq` delivered and the acknowledgements owed.
#[derive(Debug)]
pub(crate) struct SeqTracker {
    last_seq: u64,
    /// Messages accepted since the last `ack` was sent.
    unacked: u32,
    /// Send an `ack` once this many messages are unacknowledged.
    ack_every: u32,
}

impl SeqTracker {
    pub(crate) fn new(ack_every: u32) -> Self {
        SeqTracker {
            last_seq: 0,
            unacked: 0,
            ack_every: ack_every.max(1),
        }
    }

    /// The `lastSeq` to put in a `resume`.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// A new session (first connection, or after `resume-failed`): its `seq`s
    /// start again at 1.
    pub(crate) fn reset(&mut self) {
        self.last_seq = 0;
        self.unacked = 0;
    }

    /// Classifies a message by its `seq` (`None` for `connected`/`resumed`, which
    /// are connection-level and never repeated).
    pub(crate) fn accept(&mut self, seq: Option<u64>) -> Verdict {
        let Some(seq) = seq else { return Verdict::New };
        if seq <= self.last_seq {
            return Verdict::Duplicate;
        }
        if seq != self.last_seq + 1 {
            // The server promises no silent gaps (it fails the resume instead); if
            // one shows up anyway, deliver what we have rather than stall forever.
            tracing::warn!(expected = self.last_seq + 1, got = seq, "gap in server seq");
        }
        self.last_seq = seq;
        self.unacked += 1;
        Verdict::New
    }

    /// Whether enough messages are unacknowledged to send an `ack` now.
    pub(crate) fn ack_due(&self) -> bool {
        self.unacked >= self.ack_every
    }

    /// Whether any message is unacknowledged (an `ack` is owed eventually).
    pub(crate) fn ack_owed(&self) -> bool {
        self.unacked > 0
    }

    /// The `seq` to acknowledge, if any is owed; the debt is cleared.
    pub(crate) fn take_ack(&mut self) -> Option<u64> {
        if self.unacked == 0 {
            return None;
        }
        self.unacked = 0;
        Some(self.last_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_from_a_replay_are_dropped() {
        let mut t = SeqTracker::new(16);
        for s in 1..=5 {
            assert_eq!(t.accept(Some(s)), Verdict::New);
        }
        // A replay starting before what we have (e.g. our last ack was lost).
        let verdicts: Vec<Verdict> = (3..=7).map(|s| t.accept(Some(s))).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Duplicate, Duplicate, Duplicate, New, New]);
        assert_eq!(t.last_seq(), 7);
        assert_eq!(t.accept(None), New, "connection-level messages have no seq");
        assert_eq!(t.last_seq(), 7);
    }

    #[test]
    fn acks_are_cumulative_and_batched() {
        let mut t = SeqTracker::new(4);
        assert_eq!(t.take_ack(), None);
        for s in 1..=3 {
            t.accept(Some(s));
        }
        assert!(!t.ack_due());
        assert!(t.ack_owed());
        t.accept(Some(4));
        assert!(t.ack_due());
        assert_eq!(t.take_ack(), Some(4));
        assert!(!t.ack_owed());
        // Duplicates owe nothing.
        t.accept(Some(2));
        assert_eq!(t.take_ack(), None);
    }

    #[test]
    fn a_gap_is_delivered_not_stalled_and_reset_starts_over() {
        let mut t = SeqTracker::new(16);
        t.accept(Some(1));
        assert_eq!(t.accept(Some(5)), Verdict::New);
        assert_eq!(t.last_seq(), 5);
        t.reset();
        assert_eq!(t.last_seq(), 0);
        assert_eq!(
            t.accept(Some(1)),
            Verdict::New,
            "a fresh session's seq 1 is new"
        );
    }
}
