//! Sessions and rooms, which point at each other: a session is one client
//! identity with its outbound sequence numbers, replay buffer, acknowledged-id
//! window, rooms, and the connection it is attached to (if any); a room is the
//! ordered member list (join order gives the polite flag) behind one lock per
//! room, so routing never takes a global lock. In cluster mode a room also lists
//! its peers on other nodes (`remote`), and a session mirrors its replay buffer
//! through a [`ReplayMirror`] (the backplane) so another node can resume it.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::outbox::Outbox;
use super::resume_token::ResumeToken;
use crate::protocol::frame::{replay_frame_capacity, stamp_seq, REPLAY_FRAME_ALIGN};
use crate::protocol::Frame;

use super::away::{AwayBudget, AwayKey};

/// Where a session's replay buffer is copied in cluster mode (the backplane).
/// The copy is pulled, not pushed: a session says once that it has frames to
/// copy, and the mirror takes them with [`Session::take_unmirrored`] when it
/// writes (so a relayed frame costs the mirror nothing until then, and frames
/// acknowledged meanwhile are never copied).
pub(crate) trait ReplayMirror: Send + Sync + std::fmt::Debug {
    /// `session` buffered frames not copied yet; not called again until they are taken.
    fn frames_buffered(&self, session: &Weak<Session>);
}

#[path = "session_mirror.rs"]
mod mirror;
#[path = "session_room.rs"]
mod room;
use mirror::MirrorLink;
pub(crate) use room::{Member, RemoteMember, Room};

/// Bounds of the replay buffer. 32-bit (a bound past 4 GiB is 4 GiB): every
/// session holds a copy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplayBounds {
    messages: u32,
    bytes: u32,
}

impl ReplayBounds {
    pub(crate) fn new(messages: usize, bytes: usize) -> ReplayBounds {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        ReplayBounds {
            messages: clamp(messages),
            bytes: clamp(bytes),
        }
    }
}

/// What a kept frame holds in memory, which the replay's byte bound and the
/// away budget count: its buffer ([`replay_frame_capacity`]), not its text.
fn held_bytes(frame: &Frame) -> usize {
    replay_frame_capacity(frame.len())
}

/// Slots of a replay buffer's first allocation: [`REPLAY_FRAME_ALIGN`] bytes.
/// With a host's allocator (no jemalloc, see `replay_frame_capacity`): one.
const REPLAY_FIRST_SLOTS: usize = if cfg!(feature = "jemalloc") {
    REPLAY_FRAME_ALIGN / std::mem::size_of::<Frame>()
} else {
    1
};

/// How many recent client message ids are remembered for de-duplication. A client
/// retransmits only unacknowledged ids, which are always among the most recent.
const ID_WINDOW: usize = 512;

#[derive(Debug)]
pub(crate) struct Session {
    pub id: Arc<str>,
    pub resume_token: ResumeToken,
    state: Mutex<SessionState>,
}

/// The last [`ID_WINDOW`] client message ids, for de-duplication.
#[derive(Debug, Default)]
struct SeenIds {
    ids: HashSet<Box<str>>,
    order: VecDeque<Box<str>>,
}

/// The connection a session is attached to.
#[derive(Debug, Clone)]
pub(crate) struct Attached {
    pub conn_id: u64,
    pub outbox: Arc<Outbox>,
}

#[derive(Debug)]
pub(crate) struct SessionState {
    pub user_id: Option<Arc<str>>,
    /// A boxed slice, not a `Vec`: rooms are few and change rarely, and every
    /// session holds this field (8 bytes less).
    pub rooms: Box<[Arc<Room>]>,
    pub attached: Option<Attached>,
    /// Bumped (wrapping) on every detach/attach so a stale resume-window
    /// timer does nothing.
    pub away_generation: u32,
    pub ended: bool,
    next_seq: u64,
    /// Seq of `replay[0]`; equals `next_seq` when the buffer is empty.
    first_seq: u64,
    replay: VecDeque<Frame>,
    replay_bytes: usize,
    bounds: ReplayBounds,
    /// The recent client message ids; boxed on the first one, since many
    /// clients send none and every session holds this field.
    seen: Option<Box<SeenIds>>,
    /// Cluster mode: buffered frames are copied there, so another node can
    /// resume this session.
    mirror: Option<Box<MirrorLink>>,
    /// While away: its ticket in the hub's away budget, which counts its bytes.
    away: Option<(u64, Arc<AwayBudget<Session>>)>,
    age_mark: Option<AgeMark>,
}

/// The replay age rule's mark while connected: every frame below `seq` was
/// buffered before `at_ms`, on the attachment of `generation`. 16 bytes (a
/// wrapping millisecond, not an `Instant`): every session holds one.
#[derive(Debug, Clone, Copy)]
struct AgeMark {
    seq: NonZeroU64,
    at_ms: u32,
    generation: u32,
}

impl crate::hub::shards::Keyed for Session {
    fn key(&self) -> &str {
        &self.id
    }
}

impl Session {
    pub(crate) fn new(
        id: Arc<str>,
        resume_token: ResumeToken,
        bounds: ReplayBounds,
        attached: Attached,
    ) -> Self {
        Session {
            id,
            resume_token,
            state: Mutex::new(SessionState {
                user_id: None,
                rooms: Box::default(),
                attached: Some(attached),
                away_generation: 0,
                ended: false,
                next_seq: 1,
                first_seq: 1,
                replay: VecDeque::new(),
                replay_bytes: 0,
                bounds,
                seen: None,
                mirror: None,
                away: None,
                age_mark: None,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stamps, buffers and (when attached) queues one message. Returns its seq,
    /// or `None` when the session has ended.
    pub(crate) fn deliver(&self, body: &str) -> Option<u64> {
        self.lock().deliver(body)
    }
}

/// Queues `resumed` and then the replayed frames on `outbox`; returns how many
/// were replayed. Called under the session's lock, so no live message slips in
/// between.
pub(crate) fn queue_resumed(outbox: &Outbox, session_id: &str, frames: Vec<Frame>) -> usize {
    outbox.push(Frame::from(crate::protocol::outbound::resumed(
        session_id,
        frames.len(),
    )));
    let n = frames.len();
    for f in frames {
        outbox.push(f);
    }
    n
}

/// Why a relayed message was not delivered.
#[derive(Debug)]
pub(crate) enum RelayRefused {
    /// It would exceed the size limit.
    TooBig,
    /// The reader is too far behind (see `Outbox::accepts_relay`).
    Busy,
}

impl SessionState {
    /// Changes the room list as a `Vec`, kept as an exact boxed slice.
    pub(crate) fn edit_rooms<R>(&mut self, edit: impl FnOnce(&mut Vec<Arc<Room>>) -> R) -> R {
        let mut rooms = self.take_rooms();
        let out = edit(&mut rooms);
        self.rooms = rooms.into_boxed_slice();
        out
    }

    pub(crate) fn take_rooms(&mut self) -> Vec<Arc<Room>> {
        std::mem::take(&mut self.rooms).into_vec()
    }

    pub(crate) fn deliver(&mut self, body: &str) -> Option<u64> {
        if self.ended {
            return None;
        }
        let frame = Frame::from(stamp_seq(body, self.next_seq));
        if let Some(a) = &self.attached {
            a.outbox.push(frame.clone());
        }
        Some(self.buffer(frame))
    }

    /// Relays a peer's message: builds the frame for this session's next `seq`
    /// in one pass (one allocation, no re-copy to prefix the `seq`) once the
    /// reader has room for it, and checks and queues it under one lock of
    /// the outbox. `Ok(None)` when the session has ended.
    pub(crate) fn relay_built(
        &mut self,
        max_len: usize,
        build: impl FnOnce(u64) -> String,
    ) -> Result<Option<u64>, RelayRefused> {
        if self.ended {
            return Ok(None);
        }
        let seq = self.next_seq;
        let make = || {
            let text = build(seq);
            (text.len() <= max_len).then(|| Frame::from(text))
        };
        let frame = match &self.attached {
            Some(a) => a.outbox.push_relay(make).map_err(|_| RelayRefused::Busy)?,
            None => make(),
        };
        let frame = frame.ok_or(RelayRefused::TooBig)?;
        Ok(Some(self.buffer(frame)))
    }

    /// Keeps a frame stamped with `next_seq` for replay (the caller queued
    /// it); returns its seq.
    fn buffer(&mut self, frame: Frame) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        // Bound: the oldest unacknowledged frames are dropped; a later resume from
        // before them fails with `resume-failed` instead of leaving a silent gap.
        let before = self.replay_bytes;
        self.replay_bytes += held_bytes(&frame);
        if self.replay.capacity() == 0 {
            // Like the frames it holds (`replay_frame_capacity`), the buffer is
            // freed once everything is acknowledged, after a burst allocated
            // other connections' objects beside it: its first size is one of
            // the frames' own size classes, not a shared one (32 or 128 bytes).
            self.replay.reserve_exact(REPLAY_FIRST_SLOTS);
        }
        self.replay.push_back(frame);
        self.trim_to_bounds();
        if let Some((_, budget)) = &self.away {
            budget.resized(before, self.replay_bytes);
        }
        if let Some(link) = &mut self.mirror {
            if !link.told {
                link.told = true;
                link.mirror.frames_buffered(&link.session);
            }
        }
        seq
    }

    /// Drops the oldest buffered frames beyond the message and byte bounds.
    fn trim_to_bounds(&mut self) {
        while self.replay.len() > self.bounds.messages as usize
            || self.replay_bytes > self.bounds.bytes as usize
        {
            match self.replay.pop_front() {
                Some(f) => {
                    self.replay_bytes -= held_bytes(&f);
                    self.first_seq += 1;
                }
                None => break,
            }
        }
    }

    /// The state of a session read back from the cluster: the next seq, the
    /// buffered frames (oldest first, trimmed to the bounds) and the answered ids.
    pub(crate) fn restore(&mut self, next_seq: u64, frames: Vec<(u64, Frame)>, seen: &[String]) {
        self.next_seq = next_seq;
        self.replay.clear();
        self.replay_bytes = 0;
        self.first_seq = frames.first().map_or(next_seq, |(s, _)| *s);
        for (_, f) in frames {
            self.replay_bytes += held_bytes(&f);
            self.replay.push_back(f);
        }
        self.trim_to_bounds();
        for id in seen {
            self.remember_id(id);
        }
    }

    /// Cumulative acknowledgement: frees every buffered message up to `seq`.
    pub(crate) fn ack(&mut self, seq: u64) {
        while self.first_seq <= seq {
            match self.replay.pop_front() {
                Some(f) => {
                    self.replay_bytes -= held_bytes(&f);
                    self.first_seq += 1;
                }
                None => break,
            }
        }
        if self.replay.is_empty() {
            // A burst (an SDP exchange) must not leave its slots behind.
            self.replay = VecDeque::new();
        }
    }

    /// The replay age rule (docs/PROTOCOL.md): while the session is connected,
    /// a frame not acknowledged `age` after it was buffered is dropped, as if
    /// acknowledged. `age` is the heartbeat interval plus its timeout: a client
    /// that acknowledges does so within moments, and a connection that died
    /// with frames on the way is found dead (and the session goes away, keeping
    /// everything for its resume) before its frames are that old. What it
    /// bounds is the buffer of classic clients, which never acknowledge.
    ///
    /// Called on every liveness tick; one mark per session, no time per frame:
    /// frames go between `age` and twice `age` (plus a tick) after buffering.
    /// Times are wrapping milliseconds: ticks come far more often than the
    /// 49 days after which they repeat.
    pub(crate) fn expire_delivered(&mut self, now_ms: u32, age_ms: u32) {
        if self.attached.is_none() {
            self.age_mark = None;
            return;
        }
        let generation = self.away_generation;
        let Some(seq) = NonZeroU64::new(self.next_seq) else {
            return;
        };
        let mark = AgeMark {
            seq,
            at_ms: now_ms,
            generation,
        };
        match self.age_mark {
            // Frames buffered while away (or on an earlier connection) start
            // their age when this connection's first tick sees them.
            Some(m) if m.generation != generation => self.age_mark = Some(mark),
            Some(m) if now_ms.wrapping_sub(m.at_ms) >= age_ms => {
                self.ack(m.seq.get() - 1);
                self.age_mark = Some(mark);
            }
            Some(_) => {}
            None => self.age_mark = Some(mark),
        }
    }

    /// The buffered messages after `last_seq`, or `None` when some of them are gone
    /// (dropped at the bound or acknowledged) or `last_seq` is in the future.
    pub(crate) fn replay_after(&self, last_seq: u64) -> Option<Vec<Frame>> {
        if last_seq >= self.next_seq || last_seq + 1 < self.first_seq {
            return None;
        }
        let skip = (last_seq + 1 - self.first_seq) as usize;
        Some(self.replay.iter().skip(skip).cloned().collect())
    }

    /// Records a client message id; `false` when it was seen before (a retransmit).
    pub(crate) fn remember_id(&mut self, id: &str) -> bool {
        let seen = self.seen.get_or_insert_with(Box::default);
        if seen.ids.contains(id) {
            return false;
        }
        let id: Box<str> = id.into();
        if seen.order.len() >= ID_WINDOW {
            if let Some(old) = seen.order.pop_front() {
                seen.ids.remove(&old);
            }
        }
        seen.ids.insert(id.clone());
        seen.order.push_back(id);
        true
    }

    pub(crate) fn seen_id(&self, id: &str) -> bool {
        self.seen.as_ref().is_some_and(|s| s.ids.contains(id))
    }

    #[cfg(test)]
    pub(crate) fn buffered(&self) -> (usize, usize) {
        (self.replay.len(), self.replay_bytes)
    }

    /// Whether a peer's relayed message may be queued for this session now
    /// (an away session buffers it for its resume).
    pub(crate) fn accepts_relay(&self) -> bool {
        self.attached
            .as_ref()
            .is_none_or(|a| a.outbox.accepts_relay())
    }

    pub(crate) fn is_away(&self) -> bool {
        self.attached.is_none() && !self.ended
    }

    /// The session (this state's) lost its connection, which came from `keys`
    /// (its IP, its authenticated user): it counts in `budget` from now on.
    /// Returns the away sessions to end to stay within the caps (when `evict`).
    pub(crate) fn count_away(
        &mut self,
        session: &Arc<Session>,
        budget: &Arc<AwayBudget<Session>>,
        keys: Vec<AwayKey>,
        evict: bool,
    ) -> Vec<Arc<Session>> {
        self.uncount_away();
        let (ticket, victims) = budget.went_away(session, keys, self.replay_bytes, evict);
        self.away = Some((ticket, budget.clone()));
        victims
    }

    /// The session is back on a connection, or ended: it no longer counts as away.
    pub(crate) fn uncount_away(&mut self) {
        if let Some((ticket, budget)) = self.away.take() {
            budget.left(ticket, self.replay_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::outbox::Next;

    fn session(messages: usize, bytes: usize) -> (Session, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let s = Session::new(
            "s".into(),
            ResumeToken::random(),
            ReplayBounds::new(messages, bytes),
            Attached {
                conn_id: 1,
                outbox: outbox.clone(),
            },
        );
        (s, outbox)
    }

    #[tokio::test]
    async fn seq_is_stamped_and_increasing() {
        let (s, outbox) = session(8, 1 << 20);
        assert_eq!(s.deliver(r#"{"type":"a"}"#), Some(1));
        assert_eq!(s.deliver(r#"{"type":"b"}"#), Some(2));
        let mut batch = Vec::new();
        assert_eq!(outbox.next(&mut batch).await, Next::Frames);
        assert_eq!(batch[0].as_str(), r#"{"seq":1,"type":"a"}"#);
        assert_eq!(batch[1].as_str(), r#"{"seq":2,"type":"b"}"#);
    }

    #[test]
    fn ack_frees_and_replay_covers_the_rest() {
        let (s, _o) = session(8, 1 << 20);
        for _ in 0..5 {
            s.deliver(r#"{"type":"x"}"#);
        }
        let mut st = s.lock();
        st.ack(2);
        assert_eq!(st.buffered().0, 3);
        let r = st.replay_after(3).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[0].as_str().starts_with(r#"{"seq":4,"#));
        assert!(
            st.replay_after(1).is_none(),
            "acknowledged messages can not be replayed"
        );
        assert!(st.replay_after(6).is_none(), "a future lastSeq is refused");
        assert_eq!(st.replay_after(5).unwrap().len(), 0);
    }

    #[test]
    fn unacknowledged_frames_age_out_only_while_connected() {
        let (s, _o) = session(64, 1 << 20);
        // Wrapping milliseconds: the first mark is before 2^32, the time
        // that ages it out after.
        let age = 40_000u32;
        let t0 = u32::MAX - age / 2;
        s.deliver(r#"{"type":"x"}"#);
        let mut st = s.lock();
        st.expire_delivered(t0, age); // the mark: seq 1 buffered before t0
        drop(st);
        s.deliver(r#"{"type":"y"}"#);
        let mut st = s.lock();
        st.expire_delivered(t0.wrapping_add(age / 2), age);
        assert_eq!(st.buffered().0, 2, "nothing is that old yet");
        st.expire_delivered(t0.wrapping_add(age), age);
        assert_eq!(st.buffered().0, 1, "seq 1 aged out, seq 2 is younger");
        assert_eq!(
            st.replay_after(1).unwrap().len(),
            1,
            "resume after 1 stays exact"
        );
        st.expire_delivered(t0.wrapping_add(2 * age), age);
        assert_eq!(st.buffered().0, 0);
        assert_eq!(st.replay.capacity(), 0, "an empty buffer keeps no slots");
        drop(st);
        s.deliver(r#"{"type":"y"}"#);
        let slots = s.lock().replay.capacity();
        assert_eq!(
            slots * std::mem::size_of::<Frame>(),
            REPLAY_FRAME_ALIGN,
            "a buffer's first allocation is in the frames' size classes"
        );
        let mut st = s.lock();
        st.ack(u64::MAX);

        // Away: everything is kept for the resume, whatever its age.
        drop(st);
        s.deliver(r#"{"type":"z"}"#);
        let mut st = s.lock();
        st.attached = None;
        st.away_generation += 1;
        st.expire_delivered(t0.wrapping_add(10 * age), age);
        assert_eq!(st.buffered().0, 1);
        // Back on a new connection: its age starts at that connection's first tick.
        st.attached = Some(Attached {
            conn_id: 2,
            outbox: Arc::new(Outbox::new(1 << 20)),
        });
        st.away_generation += 1;
        st.expire_delivered(t0.wrapping_add(11 * age), age);
        assert_eq!(st.buffered().0, 1);
        st.expire_delivered(t0.wrapping_add(12 * age), age);
        assert_eq!(st.buffered().0, 0);
    }

    #[test]
    fn overflow_drops_oldest_and_resume_from_before_fails() {
        let (s, _o) = session(3, 1 << 20);
        for _ in 0..5 {
            s.deliver(r#"{"type":"x"}"#);
        }
        let st = s.lock();
        assert_eq!(st.buffered().0, 3);
        assert!(st.replay_after(0).is_none(), "never a silent gap");
        assert!(st.replay_after(1).is_none());
        assert_eq!(st.replay_after(2).unwrap().len(), 3);
    }

    #[test]
    fn byte_bound_holds() {
        let (s, _o) = session(1000, 100);
        for _ in 0..20 {
            s.deliver(r#"{"type":"0123456789"}"#);
        }
        assert!(s.lock().buffered().1 <= 100);
    }

    #[test]
    fn kept_frames_count_the_memory_they_hold() {
        let (s, _o) = session(1000, 1 << 20);
        s.deliver(r#"{"type":"ack","id":1}"#);
        let text = s.lock().replay_after(0).unwrap()[0].len();
        assert_eq!(s.lock().buffered(), (1, replay_frame_capacity(text)));
        s.lock().ack(1);
        assert_eq!(s.lock().buffered(), (0, 0));
    }

    #[test]
    fn id_window_dedups_and_is_bounded() {
        let (s, _o) = session(8, 1024);
        let mut st = s.lock();
        assert!(st.remember_id("1"));
        assert!(!st.remember_id("1"));
        for i in 0..ID_WINDOW {
            st.remember_id(&format!("x{i}"));
        }
        assert!(st.remember_id("1"), "the oldest id fell out of the window");
        assert!(st.seen.as_ref().unwrap().ids.len() <= ID_WINDOW);
    }

    #[test]
    fn ended_session_takes_nothing() {
        let (s, _o) = session(8, 1024);
        s.lock().ended = true;
        assert_eq!(s.deliver("{}"), None);
    }

    /// Every joined connection holds one session behind an `Arc` (16 bytes of
    /// counts): keep it in jemalloc's 224-byte class (rare parts are boxed:
    /// message ids, the cluster mirror; the age mark is in wrapping
    /// milliseconds, the rooms a boxed slice).
    #[test]
    fn a_session_stays_in_its_size_class() {
        let size = std::mem::size_of::<Session>() + 16;
        assert!(size <= 224, "{size} bytes per session");
    }
}
