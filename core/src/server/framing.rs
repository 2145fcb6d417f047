//! RFC 6455 framing for the server side: frame headers in and out, unmasking,
//! close payloads. No buffers live here; the connection task owns them.
//!
//! The server frames its hot path itself rather than through tungstenite's
//! stream: tungstenite keeps a read buffer and a write buffer in every
//! connection, each as large as the largest frame it has seen, for the life of
//! the connection. Here, reads go into one buffer per worker thread and writes
//! are encoded into another; a connection holds bytes only while a frame is
//! split across reads or a write is blocked, and gives them back after.

use crate::edge::Violation;

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub(crate) fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A parsed client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) opcode: Opcode,
    pub(crate) mask: [u8; 4],
    /// Bytes of header (2 to 14).
    pub(crate) header_len: usize,
    pub(crate) payload_len: usize,
}

impl Header {
    pub(crate) fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` while it is incomplete.
/// A payload over `max_payload` is refused from its header (1009), before any
/// of it is read or buffered. Client frames must be masked, carry no reserved
/// bits (no extension is negotiated) and use a known opcode; control frames are
/// final and at most 125 bytes (1002 otherwise).
pub(crate) fn parse_header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, Violation> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
        return Err(Violation::Protocol);
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(Violation::Protocol)?;
    let (len, at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(Violation::Protocol);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(Violation::Protocol);
    }
    if len > max_payload as u64 {
        return Err(Violation::TooBig);
    }
    let Some(mask) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask: mask.try_into().expect("4 bytes"),
        header_len: at + 4,
        payload_len: len as usize,
    }))
}

/// XORs `payload` with the client's masking key, eight bytes at a time.
pub(crate) fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Appends one final, unmasked server frame.
pub(crate) fn encode(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    let b0 = 0x80 | opcode.bits();
    let len = payload.len();
    if len < 126 {
        out.extend_from_slice(&[b0, len as u8]);
    } else if len <= usize::from(u16::MAX) {
        out.extend_from_slice(&[b0, 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[b0, 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit 125 bytes).
pub(crate) fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    encode(out, Opcode::Close, &payload[..2 + cut]);
}

/// The status code of a client's close payload: 1005 when it has none; an
/// error for a one-byte payload, a code no endpoint may send, or a reason
/// that is not UTF-8 (RFC 6455 §5.5.1, §7.4).
pub(crate) fn close_code(payload: &[u8]) -> Result<u16, Violation> {
    match payload {
        [] => Ok(1005),
        [_] => Err(Violation::Protocol),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid || std::str::from_utf8(reason).is_err() {
                return Err(Violation::Protocol);
            }
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        let len = payload.len();
        if len < 126 {
            out.extend_from_slice(&[b0, 0x80 | len as u8]);
        } else if len <= 0xFFFF {
            out.extend_from_slice(&[b0, 0x80 | 126]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.extend_from_slice(&[b0, 0x80 | 127]);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn headers_of_every_length_form_parse_and_unmask() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in [0usize, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frame = client_frame(0x81, &payload, mask);
            let header_len = 6 + [0, 2, 8][usize::from(len >= 126) + usize::from(len > 65_535)];
            for cut in 0..header_len {
                assert_eq!(
                    parse_header(&frame[..cut], usize::MAX),
                    Ok(None),
                    "{len} {cut}"
                );
            }
            let h = parse_header(&frame, usize::MAX).unwrap().unwrap();
            assert_eq!((h.fin, h.opcode, h.payload_len), (true, Opcode::Text, len));
            assert_eq!(h.frame_len(), frame.len());
            let mut body = frame[h.header_len..].to_vec();
            unmask(&mut body, h.mask);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn bad_frames_are_violations() {
        let m = [1, 2, 3, 4];
        let cases: [(Vec<u8>, Violation); 7] = [
            (vec![0x81, 0x05, 0, 0, 0, 0], Violation::Protocol), // unmasked
            (client_frame(0xC1, b"x", m), Violation::Protocol),  // RSV1
            (client_frame(0x83, b"x", m), Violation::Protocol),  // reserved opcode
            (client_frame(0x09, b"", m), Violation::Protocol),   // fragmented ping
            (client_frame(0x89, &[0; 126], m), Violation::Protocol), // long control
            (client_frame(0x81, &[b'a'; 200], m), Violation::TooBig),
            (
                [&[0x81, 0xFF][..], &[0x80, 0, 0, 0, 0, 0, 0, 0]].concat(),
                Violation::Protocol,
            ), // 64-bit length with the top bit set
        ];
        for (frame, want) in cases {
            assert_eq!(parse_header(&frame, 100), Err(want), "{frame:02x?}");
        }
    }

    #[test]
    fn server_frames_are_final_and_unmasked() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let mut out = Vec::new();
            encode(&mut out, Opcode::Binary, &vec![7; len]);
            assert_eq!(out[0], 0x82);
            assert_eq!(out[1] & 0x80, 0);
            let header = out.len() - len;
            assert_eq!(
                header,
                [2, 4, 10][usize::from(len >= 126) + usize::from(len > 65_535)]
            );
        }
        let mut out = Vec::new();
        encode_close(&mut out, 4409, &"é".repeat(100));
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= 125);
        assert!(
            std::str::from_utf8(&out[4..]).is_ok(),
            "cut on a char boundary"
        );
    }

    #[test]
    fn close_payloads() {
        assert_eq!(close_code(&[]), Ok(1005));
        assert_eq!(close_code(&[0x03]), Err(Violation::Protocol));
        assert_eq!(close_code(&[0x03, 0xE8]), Ok(1000));
        assert_eq!(close_code(&[0x0F, 0xA0, b'o', b'k']), Ok(4000));
        for bad in [999u16, 1004, 1005, 1006, 1015, 2000, 5000] {
            assert_eq!(
                close_code(&bad.to_be_bytes()),
                Err(Violation::Protocol),
                "{bad}"
            );
        }
        assert_eq!(close_code(&[0x03, 0xE8, 0xFF]), Err(Violation::Protocol));
    }
}
