//! Building server frames: a tiny JSON object writer, and the per-receiver `seq` stamp.

use super::json::{needs_no_escape, Raw};

/// A text frame ready for the wire: cheap to clone (reference-counted), valid UTF-8.
pub type Frame = tokio_tungstenite::tungstenite::Utf8Bytes;

/// Writes one JSON object field by field into a `String`.
///
/// Server messages are built with this instead of a `serde_json::Value` tree: the
/// fields forwarded from a client are copied as raw slices, never re-parsed.
#[derive(Debug)]
pub struct ObjectWriter {
    buf: String,
    empty: bool,
}

impl ObjectWriter {
    /// Starts an object with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = String::with_capacity(capacity);
        buf.push('{');
        ObjectWriter { buf, empty: true }
    }

    /// Starts an object whose first field is `"type":ty`.
    pub fn typed(ty: &str, capacity: usize) -> Self {
        let mut w = ObjectWriter::with_capacity(capacity);
        w.str("type", ty);
        w
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.buf.push(',');
        }
        self.empty = false;
        push_json_str(&mut self.buf, key);
        self.buf.push(':');
    }

    /// Adds a string field.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        push_json_str(&mut self.buf, value);
        self
    }

    /// Adds an optional string field (nothing when `None`).
    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    /// Adds an unsigned integer field.
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        push_u64(&mut self.buf, value);
        self
    }

    /// Adds a boolean field.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.buf.push_str(if value { "true" } else { "false" });
        self
    }

    /// Adds a field whose value is already valid JSON text.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.buf.push_str(json);
        self
    }

    /// Adds a field with a raw JSON value taken from a parsed client message.
    pub fn raw_value(&mut self, key: &str, value: Raw<'_>) -> &mut Self {
        self.raw(key, value.get())
    }

    /// Adds an optional raw JSON field.
    pub fn opt_raw(&mut self, key: &str, json: Option<&str>) -> &mut Self {
        if let Some(v) = json {
            self.raw(key, v);
        }
        self
    }

    /// Adds a field serialized with serde (for the rare complex values).
    pub fn serialize<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) -> &mut Self {
        let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
        self.raw(key, &json)
    }

    /// Closes the object and returns its text.
    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// Appends `s` as a JSON string literal (quotes and escapes).
pub(crate) fn push_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    let bytes = s.as_bytes();
    // Ids, keys and types almost never need escaping.
    if needs_no_escape(s) {
        buf.push_str(s);
        buf.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        buf.push_str(&s[start..i]);
        match escape {
            Some(e) => buf.push_str(e),
            None => {
                use std::fmt::Write;
                let _ = write!(buf, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    buf.push_str(&s[start..]);
    buf.push('"');
}

/// Appends the decimal digits of `n` (without the formatting machinery: this
/// runs for every `seq` of every message).
pub(crate) fn push_u64(buf: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
}

/// The buffer size for a frame that carries a `seq`, which its session keeps
/// for replay until the client acknowledges it: `len` rounded up to a multiple
/// of [`REPLAY_FRAME_ALIGN`] bytes.
///
/// Why: such a frame outlives the burst that made it (a join's `room-info`, a
/// call's SDP) and is freed at the ack, after other connections' long-lived
/// objects were allocated beside it. In a size class it shares with them (the
/// allocator's 112, 128, 192 … bytes) it leaves a hole between live objects
/// that no idle connection fills; in classes of its own (512, 1024 …: no
/// per-connection object is that large) the frames of a burst leave whole
/// free pages, which the allocator returns to the system.
///
/// The price is memory while a frame waits for its ack (a 40-byte `ack`
/// takes 512), so the replay's byte bound and the away budget count this
/// size, not the text's (`SessionState::buffer`). Only with jemalloc (the
/// standalone server): a host's allocator (the bindings') has no such
/// classes, and there a frame is exactly as long as its text.
pub(crate) fn replay_frame_capacity(len: usize) -> usize {
    if cfg!(feature = "jemalloc") {
        len.next_multiple_of(REPLAY_FRAME_ALIGN)
    } else {
        len
    }
}

/// See [`replay_frame_capacity`].
pub(crate) const REPLAY_FRAME_ALIGN: usize = 512;

/// Gives back the part of `frame`'s buffer beyond [`replay_frame_capacity`]
/// of its length, where the length was estimated high: the memory a frame
/// is counted for is then the memory it holds.
pub(crate) fn fit_replay_frame(frame: &mut String) {
    let fit = replay_frame_capacity(frame.len());
    if frame.capacity() > fit {
        frame.shrink_to(fit);
    }
}

/// Stamps `"seq":N` as the first field of a finished object `body` (`{...}`).
///
/// The body is built once per message; each receiver gets its own copy with its
/// own sequence number (one allocation and one copy per receiver).
pub(crate) fn stamp_seq(body: &str, seq: u64) -> String {
    debug_assert!(body.starts_with('{') && body.len() >= 2);
    let digits = seq.checked_ilog10().unwrap_or(0) as usize + 1;
    let len = body.len() + "\"seq\":,".len() + digits - usize::from(body.len() == 2);
    let mut out = String::with_capacity(replay_frame_capacity(len));
    out.push_str("{\"seq\":");
    push_u64(&mut out, seq);
    if body.len() > 2 {
        out.push(',');
    }
    out.push_str(&body[1..]);
    debug_assert_eq!(out.len(), len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_escapes_and_parses_back() {
        let mut w = ObjectWriter::typed("chat", 64);
        w.str("content", "a \"quote\"\n\u{1}é")
            .u64("n", 42)
            .bool("ok", true)
            .raw("x", "[1,2]");
        let s = w.finish();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["type"], "chat");
        assert_eq!(v["content"], "a \"quote\"\n\u{1}é");
        assert_eq!(v["n"], 42);
        assert_eq!(v["ok"], true);
        assert_eq!(v["x"], serde_json::json!([1, 2]));
    }

    #[test]
    fn frames_kept_for_replay_are_in_size_classes_of_their_own() {
        for body in ["{}", r#"{"type":"user-joined","userId":"u1"}"#] {
            let frame = stamp_seq(body, 12);
            assert_eq!(frame.capacity() % REPLAY_FRAME_ALIGN, 0, "{frame}");
        }
        let big = format!(r#"{{"sdp":"{}"}}"#, "x".repeat(600));
        assert_eq!(stamp_seq(&big, 1).capacity(), 2 * REPLAY_FRAME_ALIGN);
    }

    #[test]
    fn stamp_puts_seq_first() {
        assert_eq!(
            stamp_seq(r#"{"type":"pong"}"#, 7),
            r#"{"seq":7,"type":"pong"}"#
        );
        assert_eq!(stamp_seq("{}", 1), r#"{"seq":1}"#);
        for n in [0, 9, 10, 1234567890, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }
}
