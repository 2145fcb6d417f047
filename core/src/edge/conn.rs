//! One admitted connection as every transport drives it: text frames in,
//! violations the socket layer saw (binary, too big, protocol error) become the
//! protocol's close codes here, a panic in one message's handling costs only that
//! connection (1011), and the liveness rules (pings, silence, stuck writes) are
//! decided here; the transport only moves bytes.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::admit::{Admitted, Encoding, Slot};
use crate::config::ServerConfig;
use crate::hub::millis;
use crate::hub::{ConnectInfo, Connection, Hub, Outbox};
use crate::protocol::{close, msgpack, Frame};

/// Who keeps the connection alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The transport sends WebSocket pings when [`EdgeConnection::tick`] says so
    /// and reports every frame it hears (pongs included) with
    /// [`EdgeConnection::heard`]; silence past interval + timeout drops it.
    Pings,
    /// The host's WebSocket server pings and reports a dead peer as a
    /// disconnect (uvicorn, Spring, Jetty): the kit only watches stuck writes.
    Host,
}

/// A violation the socket layer detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A binary frame: 1003.
    Binary,
    /// A frame or message over `max_message_bytes`: 1009.
    TooBig,
    /// Bad framing or invalid UTF-8: 1002.
    Protocol,
}

impl Violation {
    /// The close code and reason the connection gets.
    pub fn close(self) -> (u16, &'static str) {
        match self {
            Violation::Binary => (close::UNSUPPORTED_DATA, "binary frames are not accepted"),
            Violation::TooBig => (close::TOO_BIG, "message too big"),
            Violation::Protocol => (close::PROTOCOL_ERROR, "protocol error"),
        }
    }

    /// The violation behind a close code (1002, 1003, 1009), for hosts that
    /// report violations by code.
    pub fn from_code(code: u16) -> Option<Violation> {
        match code {
            close::UNSUPPORTED_DATA => Some(Violation::Binary),
            close::TOO_BIG => Some(Violation::TooBig),
            close::PROTOCOL_ERROR => Some(Violation::Protocol),
            _ => None,
        }
    }
}

/// One frame to write, in the connection's encoding.
#[derive(Debug, Clone)]
pub enum Wire {
    /// A text frame (JSON).
    Text(Frame),
    /// A binary frame (MessagePack).
    Binary(Vec<u8>),
}

impl Encoding {
    /// The frame as this encoding writes it. The transcoding happens here, on
    /// the writer of the connection that chose MessagePack.
    pub fn wire(self, frame: Frame) -> Wire {
        match self {
            Encoding::Json => Wire::Text(frame),
            Encoding::MessagePack => Wire::Binary(msgpack::encode(frame.as_str())),
        }
    }
}

/// What the transport should do after [`EdgeConnection::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Nothing; call `tick` again by this time at the latest.
    Idle(Instant),
    /// Send a WebSocket ping now (then tick again by this time).
    Ping(Instant),
    /// Drop the socket without a close frame: the peer is silent or takes no
    /// frames. The session goes away and may resume, as after a network cut.
    Drop,
}

/// The heartbeat periods in milliseconds, from the configuration when a
/// decision is due: the clock that every connection holds keeps only times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Periods {
    interval_ms: u32,
    timeout_ms: u32,
}

impl Periods {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Periods {
        // Rounded up, at least 1 ms: a shorter period must not become 0 (a
        // zero timeout would drop every connection, a zero interval spin).
        let ms = |d: Duration| {
            let ms = d.as_nanos().div_ceil(1_000_000).max(1);
            u32::try_from(ms).map_or(MAX_PERIOD_MS, |ms| ms.min(MAX_PERIOD_MS))
        };
        Periods {
            interval_ms: ms(interval),
            timeout_ms: ms(timeout),
        }
    }

    /// How long the peer may stay silent (pings on) before it is dropped, and
    /// how long unacknowledged replay is worth keeping.
    fn silence_limit_ms(self) -> i64 {
        i64::from(self.interval_ms) + i64::from(self.timeout_ms)
    }
}

/// The liveness clock of one connection. Every connection's task holds it,
/// so its times are milliseconds on a process-wide clock, modulo 2^32
/// ([`millis`]): 4 bytes each, not 16, and the periods are not repeated in
/// it ([`Periods`]). Every comparison is of times less than 12 days apart (a
/// period is capped there; a silence, a stuck write or a ping is due within
/// one), so wrapping differences are exact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    mode: Liveness,
    /// A write waits for the socket, since `write_started`.
    writing: bool,
    last_heard: u32,
    next_ping: u32,
    write_started: u32,
}

/// The longest period the clock keeps (~12 days): longer is as good as never.
/// Below 2^30, so that a silence limit (two periods) stays below 2^31, the
/// furthest apart two wrapping times can be told apart.
const MAX_PERIOD_MS: u32 = (1 << 30) - 1;

impl Clock {
    pub(crate) fn new(mode: Liveness, periods: Periods) -> Clock {
        Clock::new_at(mode, periods, Instant::now())
    }

    fn new_at(mode: Liveness, periods: Periods, now: Instant) -> Clock {
        let now = millis(now);
        Clock {
            mode,
            writing: false,
            last_heard: now,
            next_ping: now.wrapping_add(periods.interval_ms),
            write_started: 0,
        }
    }

    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = millis(now);
    }

    pub(crate) fn write_started(&mut self, now: Instant) {
        if !std::mem::replace(&mut self.writing, true) {
            self.write_started = millis(now);
        }
    }

    pub(crate) fn write_done(&mut self) {
        self.writing = false;
    }

    /// Whether the current write has waited for the whole timeout.
    pub(crate) fn write_stuck(&self, now: Instant, periods: Periods) -> bool {
        self.writing && ago(millis(now), self.write_started) >= i64::from(periods.timeout_ms)
    }

    pub(crate) fn tick(&mut self, now: Instant, periods: Periods) -> Tick {
        let now_ms = millis(now);
        let stuck = self.write_stuck(now, periods);
        let silent = self.mode == Liveness::Pings
            && ago(now_ms, self.last_heard) >= periods.silence_limit_ms();
        if stuck || silent {
            return Tick::Drop;
        }
        // Wake at least every timeout to check for a stuck write.
        let mut next_in = i64::from(periods.timeout_ms);
        let mut ping = false;
        if self.mode == Liveness::Pings {
            ping = ago(now_ms, self.next_ping) >= 0;
            if ping {
                self.next_ping = now_ms.wrapping_add(periods.interval_ms);
            }
            next_in = next_in
                .min(-ago(now_ms, self.next_ping))
                .min(periods.silence_limit_ms() - ago(now_ms, self.last_heard));
        }
        let next = now + Duration::from_millis(next_in.max(0) as u64);
        if ping {
            Tick::Ping(next)
        } else {
            Tick::Idle(next)
        }
    }
}

/// How long before `now` the time `then` was (negative: it is ahead).
fn ago(now: u32, then: u32) -> i64 {
    i64::from(now.wrapping_sub(then) as i32)
}

/// An open connection: the hub's [`Connection`], its admission slot and its
/// liveness clock. Frames to write come out of [`EdgeConnection::outbox`]
/// (every reply, relayed message and close request, the kit's own included).
/// Call [`EdgeConnection::finish`] when the socket is gone; dropping it counts
/// as an end without a close frame.
#[derive(Debug)]
pub struct EdgeConnection {
    conn: Connection,
    /// The configured `max_message_bytes`, saturated at 4 GiB: kept beside the
    /// clock in the 64 bytes that every connection's task holds.
    max_message_bytes: u32,
    encoding: Encoding,
    clock: Clock,
    /// The connection's place in the admission counts; through it, the
    /// configuration (the heartbeat periods).
    slot: Slot,
}

impl Admitted {
    /// Opens the hub connection (its `connected` message is queued already).
    pub fn open(self, hub: &Hub, liveness: Liveness) -> EdgeConnection {
        let config = hub.config();
        let ip = self.ip();
        let encoding = self.encoding();
        let conn = hub.connect(ConnectInfo {
            ip: Some(ip),
            origin: self.origin,
            path: self.path,
            token: None,
            identity: self.identity,
            join: self.join,
        });
        EdgeConnection {
            conn,
            max_message_bytes: u32::try_from(config.max_message_bytes).unwrap_or(u32::MAX),
            encoding,
            clock: Clock::new(liveness, periods(config)),
            slot: self.slot,
        }
    }
}

impl EdgeConnection {
    /// This connection's `clientId`.
    pub fn client_id(&self) -> String {
        self.conn.client_id()
    }

    /// The bounded queue of frames to write (and the close request at its end).
    pub fn outbox(&self) -> &Arc<Outbox> {
        self.conn.outbox()
    }

    /// How this connection's frames are encoded (the selected subprotocol):
    /// write every outbox frame as [`Encoding::wire`] gives it.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The largest message this connection accepts (`max_message_bytes`).
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes as usize
    }

    /// The hub connection underneath.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// One inbound text frame. Frames over `max_message_bytes` close with 1009
    /// (for hosts whose socket layer does not enforce it); a panic while handling
    /// it closes this connection with 1011 and nothing else.
    pub fn text(&mut self, text: &str) {
        self.clock.heard(Instant::now());
        self.text_in_read(text);
    }

    /// [`EdgeConnection::text`] for a transport that reports
    /// [`EdgeConnection::heard`] once per read rather than once per frame.
    pub(crate) fn text_in_read(&mut self, text: &str) {
        if text.len() > self.max_message_bytes() {
            self.violation(Violation::TooBig);
            return;
        }
        self.handle(text);
    }

    fn handle(&mut self, text: &str) {
        let conn = &mut self.conn;
        let handled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| conn.handle_text(text)));
        if handled.is_err() {
            tracing::error!("handling a message panicked; closing its connection (1011)");
            conn.close(close::INTERNAL, "internal error");
        }
    }

    /// One inbound binary frame: a message on the MessagePack subprotocol (bad
    /// MessagePack is answered `invalid-json`, like bad JSON); on JSON
    /// connections a binary frame closes with 1003.
    pub fn binary(&mut self, bytes: &[u8]) {
        self.clock.heard(Instant::now());
        self.binary_in_read(bytes);
    }

    /// [`EdgeConnection::binary`] for a transport that reports
    /// [`EdgeConnection::heard`] once per read.
    pub(crate) fn binary_in_read(&mut self, bytes: &[u8]) {
        if self.encoding != Encoding::MessagePack {
            self.violation(Violation::Binary);
            return;
        }
        if bytes.len() > self.max_message_bytes() {
            self.violation(Violation::TooBig);
            return;
        }
        match msgpack::decode(bytes) {
            // The JSON form of a message may be longer than its MessagePack
            // form; the size limit is the wire's, so it is not checked again.
            Ok(json) => self.handle(&json),
            Err(why) => self.conn.reject_frame(&why),
        }
    }

    /// A violation the socket layer saw: the connection closes with its code and
    /// its memberships end at once.
    pub fn violation(&self, violation: Violation) {
        let (code, reason) = violation.close();
        self.conn.close(code, reason);
    }

    /// The peer was heard (any frame, pongs included).
    pub fn heard(&mut self) {
        self.clock.heard(Instant::now());
    }

    /// A batch from the outbox is being written; [`EdgeConnection::written`]
    /// when it is flushed. A write stuck past the heartbeat timeout drops the socket.
    pub fn writing(&mut self) {
        self.clock.write_started(Instant::now());
    }

    /// The current batch was flushed.
    pub fn written(&mut self) {
        self.clock.write_done();
        self.conn.outbox().written();
    }

    /// The liveness decision for now. A write stuck for the heartbeat timeout
    /// is a reader that stopped: it counts (and ends) as a slow consumer.
    pub fn tick(&mut self) -> Tick {
        let now = Instant::now();
        let periods = periods(&self.slot.edge.config);
        let tick = self.clock.tick(now, periods);
        if matches!(tick, Tick::Drop) {
            if self.clock.write_stuck(now, periods) {
                self.conn.outbox().stalled();
            }
        } else {
            // Below 2^31 (each period is capped below 2^30).
            let age_ms = periods.silence_limit_ms() as u32;
            self.conn.expire_replay(millis(now), age_ms);
        }
        tick
    }

    /// The socket is gone: `client_close` is the code of the peer's close frame,
    /// `None` when it ended without one (a cut: the session waits for a resume).
    pub fn finish(self, client_close: Option<u16>) {
        self.conn.finish(client_close);
    }
}

/// The heartbeat periods of `config`.
fn periods(config: &ServerConfig) -> Periods {
    Periods::new(config.heartbeat_interval, config.heartbeat_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_pings_drops_silence_and_stuck_writes() {
        let now = Instant::now();
        pings_drops_silence_and_stuck_writes(now);
        // The same across the 2^32 ms wrap of the process clock, and before
        // its epoch (a paused test clock can be behind it).
        let to_wrap = u64::from((u32::MAX - 12_000).wrapping_sub(millis(now)));
        pings_drops_silence_and_stuck_writes(now + Duration::from_millis(to_wrap));
        if let Some(before) = now.checked_sub(Duration::from_secs(3600)) {
            pings_drops_silence_and_stuck_writes(before);
        }
    }

    fn pings_drops_silence_and_stuck_writes(t0: Instant) {
        let s = Duration::from_secs(1);
        let p = Periods::new(10 * s, 5 * s);
        let mut c = Clock::new_at(Liveness::Pings, p, t0);
        assert_eq!(c.tick(t0, p), Tick::Idle(t0 + 5 * s));
        assert_eq!(c.tick(t0 + 10 * s, p), Tick::Ping(t0 + 15 * s));
        assert_eq!(
            c.tick(t0 + 15 * s, p),
            Tick::Drop,
            "silent past interval + timeout"
        );
        c.heard(t0 + 14 * s);
        assert!(matches!(c.tick(t0 + 15 * s, p), Tick::Idle(_)));
        c.write_started(t0 + 15 * s);
        c.write_started(t0 + 18 * s);
        assert!(matches!(c.tick(t0 + 19 * s, p), Tick::Idle(_)));
        assert_eq!(
            c.tick(t0 + 20 * s, p),
            Tick::Drop,
            "a write stuck for the timeout, counted from when it started"
        );
        c.write_done();
        c.heard(t0 + 20 * s);
        assert!(
            matches!(c.tick(t0 + 21 * s, p), Tick::Ping(_)),
            "a finished write is not stuck"
        );

        let mut host = Clock::new_at(Liveness::Host, p, t0);
        assert_eq!(
            host.tick(t0 + 60 * s, p),
            Tick::Idle(t0 + 65 * s),
            "no pings, no silence rule"
        );
        host.write_started(t0 + 60 * s);
        assert_eq!(host.tick(t0 + 65 * s, p), Tick::Drop);
    }

    #[test]
    fn periods_under_a_millisecond_round_up_not_to_zero() {
        let us = Duration::from_micros(500);
        let t0 = Instant::now();
        let p = Periods::new(us, us);
        assert_eq!((p.interval_ms, p.timeout_ms), (1, 1));
        let mut c = Clock::new_at(Liveness::Pings, p, t0);
        assert!(
            matches!(c.tick(t0, p), Tick::Idle(_)),
            "not dropped at once"
        );
        let p = Periods::new(Duration::from_micros(1500), us);
        assert_eq!(p.interval_ms, 2);
    }

    #[test]
    fn violations_map_to_close_codes() {
        for v in [Violation::Binary, Violation::TooBig, Violation::Protocol] {
            assert_eq!(Violation::from_code(v.close().0), Some(v));
        }
        assert_eq!(Violation::from_code(1000), None);
    }
}
