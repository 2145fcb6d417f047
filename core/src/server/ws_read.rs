//! The read side of a server connection: frames come out of one read buffer per
//! worker thread; a connection keeps bytes only for a frame split across reads
//! (or a fragmented message), and frees them as soon as it is complete.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::framing::{close_code, parse_header, unmask, Opcode};
use crate::edge::Violation;

/// The shared read buffer of a worker thread. One read takes every frame a
/// client has sent, up to this size; signaling frames are ~0.4 KiB.
const SCRATCH_BYTES: usize = 16 * 1024;
/// The longest frame header (2 + 8 length bytes + 4 mask bytes).
const MAX_HEADER: usize = 14;

thread_local! {
    static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

/// What a read delivered, frame by frame.
#[derive(Debug)]
pub(crate) enum Inbound<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    /// A ping: answer with a pong carrying this payload.
    Ping(&'a [u8]),
    Pong,
    /// The client's close frame, with its code (1005: none given).
    Close(u16),
    /// Bad framing, bad UTF-8 or an oversized frame: nothing more is read.
    Violation(Violation),
}

/// Whether to go on with the frames of this read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Go,
    /// Drop the rest (the connection is closing).
    Stop,
}

/// Frame assembly of one connection.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    /// A frame split across reads: `partial[..filled]` holds its first bytes.
    /// Empty, with no allocation, between frames.
    partial: Vec<u8>,
    filled: usize,
    /// A fragmented message being assembled (rare in signaling): its opcode
    /// and payload so far.
    /// Boxed: it is rare, and every connection's task holds this field.
    message: Option<Box<(Opcode, Vec<u8>)>>,
    /// After a violation the stream cannot be framed again: input is dropped.
    broken: bool,
    max_message: usize,
}

impl Reader {
    /// `rest`: bytes the client sent after its upgrade request, read with it.
    pub(crate) fn new(max_message: usize, rest: Vec<u8>) -> Reader {
        Reader {
            filled: rest.len(),
            partial: rest,
            max_message,
            ..Reader::default()
        }
    }

    /// Reads once and hands every complete frame to `on`. `Ready(Ok(true))`:
    /// bytes came in; `Ready(Ok(false))`: the stream ended.
    pub(crate) fn poll_read<S>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        on: &mut impl FnMut(Inbound<'_>) -> Flow,
    ) -> Poll<io::Result<bool>>
    where
        S: AsyncRead + Unpin,
    {
        if self.filled > 0 {
            return self.poll_partial(io, cx, on);
        }
        let mut scratch = SCRATCH
            .take()
            .unwrap_or_else(|| vec![0; SCRATCH_BYTES].into_boxed_slice());
        let mut buf = ReadBuf::new(&mut scratch);
        let read = Pin::new(io).poll_read(cx, &mut buf);
        let n = buf.filled().len();
        let result = match read {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if n == 0 => Poll::Ready(Ok(false)),
            Poll::Ready(Ok(())) => {
                let used = self.dispatch(&mut scratch[..n], on);
                if used < n {
                    self.partial = scratch[used..n].to_vec();
                    self.filled = n - used;
                }
                Poll::Ready(Ok(true))
            }
        };
        SCRATCH.set(Some(scratch));
        result
    }

    /// A frame is split across reads: complete it in the connection's own
    /// buffer, read no further than its end, then free the buffer.
    fn poll_partial<S>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        on: &mut impl FnMut(Inbound<'_>) -> Flow,
    ) -> Poll<io::Result<bool>>
    where
        S: AsyncRead + Unpin,
    {
        let need = match parse_header(&self.partial[..self.filled], self.max_message) {
            Ok(Some(h)) => h.frame_len(),
            Ok(None) => self.filled + MAX_HEADER,
            Err(v) => {
                self.release();
                self.violation(v, on);
                return Poll::Ready(Ok(true));
            }
        };
        if self.filled >= need {
            // Whole frames are here already (bytes read with the upgrade request).
            return Poll::Ready(Ok(self.consume_partial(on)));
        }
        // Grow with what arrives, not with what the header announces: a header
        // alone must not make the connection hold its whole frame.
        let target = need.min(self.filled + SCRATCH_BYTES);
        if self.partial.len() < target {
            self.partial.resize(target, 0);
        }
        let mut buf = ReadBuf::new(&mut self.partial[self.filled..target]);
        match Pin::new(io).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                if n == 0 {
                    return Poll::Ready(Ok(false));
                }
                self.filled += n;
                self.consume_partial(on);
                Poll::Ready(Ok(true))
            }
        }
    }

    /// Dispatches the complete frames of `partial`, keeps the rest at its start.
    fn consume_partial(&mut self, on: &mut impl FnMut(Inbound<'_>) -> Flow) -> bool {
        let mut partial = std::mem::take(&mut self.partial);
        let filled = self.filled;
        let used = self.dispatch(&mut partial[..filled], on);
        if used == filled {
            self.filled = 0;
        } else {
            partial.copy_within(used..filled, 0);
            self.filled = filled - used;
            self.partial = partial;
        }
        true
    }

    fn release(&mut self) {
        self.partial = Vec::new();
        self.filled = 0;
    }

    fn violation(&mut self, v: Violation, on: &mut impl FnMut(Inbound<'_>) -> Flow) {
        self.broken = true;
        self.message = None;
        on(Inbound::Violation(v));
    }

    /// Hands every complete frame of `buf` to `on`; returns how many bytes
    /// were used (the rest starts an incomplete frame).
    fn dispatch(&mut self, buf: &mut [u8], on: &mut impl FnMut(Inbound<'_>) -> Flow) -> usize {
        let mut at = 0;
        while !self.broken {
            let header = match parse_header(&buf[at..], self.max_message) {
                Ok(Some(h)) if buf.len() - at >= h.frame_len() => h,
                Ok(_) => return at,
                Err(v) => {
                    self.violation(v, on);
                    break;
                }
            };
            let payload = &mut buf[at + header.header_len..at + header.frame_len()];
            at += header.frame_len();
            unmask(payload, header.mask);
            if self.frame(header.opcode, header.fin, payload, on) == Flow::Stop {
                break;
            }
        }
        buf.len()
    }

    fn frame(
        &mut self,
        opcode: Opcode,
        fin: bool,
        payload: &[u8],
        on: &mut impl FnMut(Inbound<'_>) -> Flow,
    ) -> Flow {
        match opcode {
            Opcode::Text | Opcode::Binary if self.message.is_some() => {
                self.violation(Violation::Protocol, on);
                Flow::Stop
            }
            Opcode::Text | Opcode::Binary if fin => self.deliver(opcode, payload, on),
            Opcode::Text | Opcode::Binary => {
                self.message = Some(Box::new((opcode, payload.to_vec())));
                Flow::Go
            }
            Opcode::Continuation => {
                let Some(mut message) = self.message.take() else {
                    self.violation(Violation::Protocol, on);
                    return Flow::Stop;
                };
                let (first, data) = &mut *message;
                if data.len() + payload.len() > self.max_message {
                    self.violation(Violation::TooBig, on);
                    return Flow::Stop;
                }
                data.extend_from_slice(payload);
                if fin {
                    self.deliver(*first, data, on)
                } else {
                    self.message = Some(message);
                    Flow::Go
                }
            }
            Opcode::Ping => on(Inbound::Ping(payload)),
            Opcode::Pong => on(Inbound::Pong),
            Opcode::Close => match close_code(payload) {
                Ok(code) => on(Inbound::Close(code)),
                Err(v) => {
                    self.violation(v, on);
                    Flow::Stop
                }
            },
        }
    }

    fn deliver(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        on: &mut impl FnMut(Inbound<'_>) -> Flow,
    ) -> Flow {
        if opcode == Opcode::Binary {
            return on(Inbound::Binary(payload));
        }
        match std::str::from_utf8(payload) {
            Ok(text) => on(Inbound::Text(text)),
            Err(_) => {
                self.violation(Violation::Protocol, on);
                Flow::Stop
            }
        }
    }
}
