//! Byte-level checks of a client frame that is valid JSON: what serde's scan of
//! the values the server does not decode lets through (lone UTF-16
//! surrogates, nesting beyond what every encoding of the server's messages
//! can carry).

/// Deepest nesting of objects and arrays a client frame may have. The server's
/// own messages wrap client values a few levels deeper (`room-info` →
/// `peers` → `metadata`), and every encoding must still carry them (the
/// MessagePack one stops at 128).
pub(crate) const MAX_NESTING: usize = 100;

/// What one of the checks found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flaw {
    /// A `\\u` escape is a UTF-16 surrogate without its pair.
    LoneSurrogate,
    /// Objects and arrays nest deeper than [`MAX_NESTING`].
    TooDeep,
}

/// Both checks of a client frame that is valid JSON. One pass that the
/// compiler vectorises (it runs on every frame) counts the opening brackets
/// and looks for a backslash; the exact walks run only when those say they
/// might find something: more than [`MAX_NESTING`] brackets, an escape.
pub(crate) fn flaw(text: &str) -> Option<Flaw> {
    let (mut opening, mut backslash) = (0usize, false);
    // `{` and `[` differ only in bit 0x20; byte-wide counters per 255 bytes.
    for chunk in text.as_bytes().chunks(255) {
        let (n, b) = chunk.iter().fold((0u8, 0u8), |(n, bs), &b| {
            (n + u8::from((b | 0x20) == b'{'), bs | u8::from(b == b'\\'))
        });
        opening += usize::from(n);
        backslash |= b != 0;
    }
    if backslash && has_lone_surrogate(text) {
        return Some(Flaw::LoneSurrogate);
    }
    if opening > MAX_NESTING && too_deep(text) {
        return Some(Flaw::TooDeep);
    }
    None
}

/// Whether `text` (a valid JSON document) nests deeper than [`MAX_NESTING`].
/// Values the server does not decode are only scanned, without a depth limit.
fn too_deep(text: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether a `\\uXXXX` escape of `text` (a valid JSON document) is a surrogate
/// without its pair. In valid JSON every backslash starts an escape inside a
/// string, so the escapes can be walked without tracking strings.
fn has_lone_surrogate(text: &str) -> bool {
    let b = text.as_bytes();
    let hex = |at: usize| -> Option<u32> {
        let digits = b.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        if b.get(i + 1) != Some(&b'u') {
            i += 2; // a one-character escape, `\\\\` included
            continue;
        }
        match hex(i + 2) {
            Some(0xD800..=0xDBFF) => {
                let low = (b.get(i + 6..i + 8) == Some(b"\\u"))
                    .then(|| hex(i + 8))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return true;
                }
                i += 12;
            }
            Some(0xDC00..=0xDFFF) => return true,
            _ => i += 6,
        }
    }
    false
}
