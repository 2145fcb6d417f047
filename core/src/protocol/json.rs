//! The one pass over a client frame: checks that it is JSON (RFC 8259) with no
//! lone UTF-16 surrogate and no deeper nesting than [`MAX_NESTING`], and cuts
//! its top-level object into decoded keys and raw values.
//!
//! Why not serde: the server decodes a few top-level strings and forwards
//! every other value as it came, so all it needs from the rest is "valid".
//! serde's generic scan of ignored values let lone surrogates through (a
//! second pass had to look for them and for the depth), and cost ~4 000
//! instructions per relayed candidate; this pass does all three checks in
//! about a third of that (docs/BENCHMARKS.md).

use std::borrow::Cow;
use std::fmt;

/// Deepest nesting of objects and arrays a client frame may have, the
/// top-level object included. The server's own messages wrap client values a
/// few levels deeper (`room-info` → `peers` → `metadata`), and every encoding
/// must still carry them (the MessagePack one stops at 128).
pub const MAX_NESTING: usize = 100;

/// A JSON object key or string value: borrowed from the frame unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<'a>(pub Cow<'a, str>);

/// One JSON value exactly as the client sent it: checked, never re-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    /// `text` when it is one JSON value (the whitespace around it left out).
    pub fn parse(text: &'a str) -> Result<Raw<'a>, JsonError> {
        let mut s = Scanner { text, at: 0 };
        s.ws();
        s.value(0)?;
        s.end()?;
        Ok(Raw(
            text.trim_matches(|c: char| c.is_ascii() && is_ws(c as u8))
        ))
    }

    /// The value's JSON text.
    pub fn get(self) -> &'a str {
        self.0
    }

    /// The decoded string, borrowed when it had no escape; `None` when the
    /// value is not a string.
    pub fn as_str(self) -> Option<Cow<'a, str>> {
        let inner = self.0.strip_prefix('"')?.strip_suffix('"')?;
        Some(if inner.as_bytes().contains(&b'\\') {
            Cow::Owned(unescape(inner))
        } else {
            Cow::Borrowed(inner)
        })
    }

    /// The value as a non-negative integer that fits in a `u64`.
    pub fn as_u64(self) -> Option<u64> {
        let digits = self.0.as_bytes();
        // JSON numbers have no leading zeros, so plain digits are an integer.
        if digits.iter().all(u8::is_ascii_digit) {
            self.0.parse().ok()
        } else {
            None
        }
    }

    /// A copy that outlives the frame.
    pub fn to_owned_raw(self) -> OwnedRaw {
        OwnedRaw(self.0.into())
    }
}

/// A [`Raw`] value kept past its frame (an `id` answered after an await).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRaw(Box<str>);

impl OwnedRaw {
    /// The value, borrowed.
    pub fn as_raw(&self) -> Raw<'_> {
        Raw(&self.0)
    }
}

/// Why a frame was not accepted as a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON: `expected` was needed at byte `at` (the frame's length: it ended early).
    Syntax {
        /// Byte offset of the problem.
        at: usize,
        /// What the grammar needed there.
        expected: &'static str,
    },
    /// A `\u` escape is a UTF-16 surrogate without its pair.
    LoneSurrogate {
        /// Byte offset of the escape.
        at: usize,
    },
    /// Objects and arrays nest deeper than [`MAX_NESTING`].
    TooDeep,
    /// Valid JSON, but not an object.
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax { at, expected } => {
                write!(
                    f,
                    "the frame is not valid JSON (expected {expected} at byte {at})"
                )
            }
            JsonError::LoneSurrogate { at } => write!(
                f,
                "the frame is not valid JSON (the \\u escape at byte {at} is a lone surrogate)"
            ),
            JsonError::TooDeep => write!(f, "the frame nests deeper than {MAX_NESTING} levels"),
            JsonError::NotAnObject => f.write_str("a message must be a JSON object"),
        }
    }
}

impl std::error::Error for JsonError {}

/// The top-level fields of `text`, a JSON object, in frame order (duplicates
/// kept: the caller decides), or why it is not one.
pub fn object(text: &str) -> Result<Vec<(Key<'_>, Raw<'_>)>, JsonError> {
    let mut s = Scanner { text, at: 0 };
    s.ws();
    if s.peek() != Some(b'{') {
        // Valid JSON of another kind gets its own answer.
        s.value(0)?;
        s.end()?;
        return Err(JsonError::NotAnObject);
    }
    s.at += 1;
    let mut entries = Vec::with_capacity(8);
    s.ws();
    if s.peek() == Some(b'}') {
        s.at += 1;
        s.end()?;
        return Ok(entries);
    }
    loop {
        s.ws();
        let key = s.key()?;
        s.ws();
        s.expect(b':', "`:`")?;
        s.ws();
        let start = s.at;
        s.value(1)?;
        entries.push((key, Raw(s.slice(start, s.at)?)));
        s.ws();
        match s.peek() {
            Some(b',') => s.at += 1,
            Some(b'}') => {
                s.at += 1;
                s.end()?;
                return Ok(entries);
            }
            _ => return Err(s.syntax("`,` or `}`")),
        }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags (bit 7 of its byte) the bytes of `w` that end a plain run inside a
/// string: `"`, `\` and control characters. Only the lowest flag is exact
/// (a borrow can flag bytes above a hit), and only the lowest is used.
fn string_stops(w: u64) -> u64 {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    zero(w ^ (ONES * u64::from(b'"')))
        | zero(w ^ (ONES * u64::from(b'\\')))
        | (w.wrapping_sub(ONES * 0x20) & !w & HIGHS)
}

/// How many bytes at the start of `b` need no look inside a string: eight at
/// a time up to the first word with a quote, backslash or control byte (the
/// last partial word is left to the byte-wise walk).
fn plain_run(b: &[u8]) -> usize {
    let mut run = 0;
    for word in b.chunks_exact(8) {
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        let stops = string_stops(u64::from_le_bytes(word));
        if stops != 0 {
            return run + (stops.trailing_zeros() / 8) as usize;
        }
        run += 8;
    }
    run
}

/// Whether `s` can go into a JSON string as it is: no `"`, `\` or control
/// character (eight bytes at a time; ids and keys are the usual input).
pub(crate) fn needs_no_escape(s: &str) -> bool {
    let b = s.as_bytes();
    // Past the plain run: a stop, or the last partial word.
    b[plain_run(b)..]
        .iter()
        .all(|&c| c >= 0x20 && c != b'"' && c != b'\\')
}

/// JSON's whitespace (RFC 8259 §2).
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn syntax(&self, expected: &'static str) -> JsonError {
        JsonError::Syntax {
            at: self.at,
            expected,
        }
    }

    fn slice(&self, from: usize, to: usize) -> Result<&'a str, JsonError> {
        // Both ends sit next to ASCII delimiters, so always on char boundaries.
        self.text.get(from..to).ok_or(JsonError::Syntax {
            at: from,
            expected: "a value",
        })
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek() != Some(byte) {
            return Err(self.syntax(what));
        }
        self.at += 1;
        Ok(())
    }

    fn end(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.at != self.text.len() {
            return Err(self.syntax("the end of the frame"));
        }
        Ok(())
    }

    /// A top-level key, decoded.
    fn key(&mut self) -> Result<Key<'a>, JsonError> {
        self.expect(b'"', "a string key")?;
        let start = self.at;
        let escaped = self.string()?;
        let inner = self.slice(start, self.at - 1)?;
        Ok(Key(if escaped {
            Cow::Owned(unescape(inner))
        } else {
            Cow::Borrowed(inner)
        }))
    }

    /// The rest of a string whose opening quote was just read; whether it
    /// had an escape.
    fn string(&mut self) -> Result<bool, JsonError> {
        let mut escaped = false;
        loop {
            self.at += plain_run(self.bytes().get(self.at..).unwrap_or_default());
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(0..=0x1f) => return Err(self.syntax("no control character in a string")),
                Some(_) => self.at += 1,
                None => return Err(self.syntax("`\"`")),
            }
        }
    }

    /// One escape, at its backslash.
    fn escape(&mut self) -> Result<(), JsonError> {
        let start = self.at;
        self.at += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.at += 1;
                Ok(())
            }
            Some(b'u') => {
                self.at += 1;
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = if self.bytes().get(self.at..self.at + 2) == Some(b"\\u") {
                            self.at += 2;
                            self.hex4()?
                        } else {
                            0
                        };
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(JsonError::LoneSurrogate { at: start });
                        }
                        Ok(())
                    }
                    0xDC00..=0xDFFF => Err(JsonError::LoneSurrogate { at: start }),
                    _ => Ok(()),
                }
            }
            _ => Err(self.syntax("an escape character")),
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut unit = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.syntax("a hex digit"))?;
            unit = unit * 16 + digit;
            self.at += 1;
        }
        Ok(unit)
    }

    fn digits(&mut self) -> Result<(), JsonError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.syntax("a digit"));
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        Ok(())
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            _ => self.digits()?,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static str) -> Result<(), JsonError> {
        let rest = self.bytes().get(self.at..).unwrap_or_default();
        if !rest.starts_with(word.as_bytes()) {
            return Err(self.syntax(word));
        }
        self.at += word.len();
        Ok(())
    }

    /// One whole value inside `outer` open containers. Iterative: the open
    /// containers are bits of one integer (set for an object), which
    /// [`MAX_NESTING`] ≤ 128 lets fit.
    fn value(&mut self, outer: usize) -> Result<(), JsonError> {
        let (mut objects, mut open) = (0u128, 0usize);
        'value: loop {
            self.ws();
            match self.peek() {
                Some(open_byte @ (b'{' | b'[')) => {
                    if outer + open >= MAX_NESTING {
                        return Err(JsonError::TooDeep);
                    }
                    let is_object = open_byte == b'{';
                    self.at += 1;
                    objects = (objects & !(1 << open)) | (u128::from(is_object) << open);
                    open += 1;
                    self.ws();
                    let close = if is_object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.at += 1;
                        open -= 1;
                    } else {
                        if is_object {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    self.at += 1;
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal("true")?,
                Some(b'f') => self.literal("false")?,
                Some(b'n') => self.literal("null")?,
                _ => return Err(self.syntax("a value")),
            }
            // A value is complete: close what it completes, or go on after `,`.
            while open > 0 {
                self.ws();
                let in_object = (objects >> (open - 1)) & 1 == 1;
                match (self.peek(), in_object) {
                    (Some(b','), _) => {
                        self.at += 1;
                        if in_object {
                            self.ws();
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.at += 1;
                        open -= 1;
                    }
                    (_, true) => return Err(self.syntax("`,` or `}`")),
                    (_, false) => return Err(self.syntax("`,` or `]`")),
                }
            }
            return Ok(());
        }
    }

    /// A nested object's key and its `:`; nested keys are never decoded.
    fn member_key(&mut self) -> Result<(), JsonError> {
        self.expect(b'"', "a string key")?;
        self.string()?;
        self.ws();
        self.expect(b':', "`:`")
    }
}

/// Decodes the inside of a JSON string this module has checked.
fn unescape(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let esc = &rest[i + 1..];
        let (ch, used) = match esc.as_bytes().first() {
            Some(b'u') => {
                let unit = |s: &str| s.get(..4).and_then(|h| u32::from_str_radix(h, 16).ok());
                let high = unit(&esc[1..]).unwrap_or(0xFFFD);
                if (0xD800..=0xDBFF).contains(&high) {
                    let low = esc
                        .get(5..7)
                        .filter(|s| *s == "\\u")
                        .and(unit(esc.get(7..).unwrap_or("")));
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low.unwrap_or(0xDC00) - 0xDC00);
                    (char::from_u32(code), 11)
                } else {
                    (char::from_u32(high), 5)
                }
            }
            Some(b'b') => (Some('\u{8}'), 1),
            Some(b'f') => (Some('\u{c}'), 1),
            Some(b'n') => (Some('\n'), 1),
            Some(b'r') => (Some('\r'), 1),
            Some(b't') => (Some('\t'), 1),
            // `"`, `\` and `/` stand for themselves.
            Some(&c) => (Some(char::from(c)), 1),
            None => (None, 0),
        };
        out.push(ch.unwrap_or('\u{FFFD}'));
        rest = esc.get(used..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
