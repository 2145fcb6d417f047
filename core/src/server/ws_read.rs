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

/// Frame assembly of one connection: nothing at all between frames, which is
/// where every idle connection is.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    assembly: Option<Box<Assembly>>,
}

/// What a connection keeps between reads, only while a frame or a message
/// is split across them; freed once it is complete.
#[derive(Debug, Default)]
struct Assembly {
    /// A frame split across reads: `partial[..filled]` holds its first bytes.
    partial: Vec<u8>,
    filled: usize,
    /// A fragmented message being assembled (rare in signaling): its opcode
    /// and payload so far.
    message: Option<(Opcode, Vec<u8>)>,
}

impl Reader {
    /// `rest`: bytes the client sent after its upgrade request, read with it.
    pub(crate) fn new(rest: Vec<u8>) -> Reader {
        let mut reader = Reader::default();
        if !rest.is_empty() {
            reader.assembly().filled = rest.len();
            reader.assembly().partial = rest;
        }
        reader
    }

    fn assembly(&mut self) -> &mut Assembly {
        self.assembly.get_or_insert_with(Box::default)
    }

    fn filled(&self) -> usize {
        self.assembly.as_ref().map_or(0, |a| a.filled)
    }

    /// Frees the assembly once it holds nothing.
    fn settle(&mut self) {
        if self
            .assembly
            .as_ref()
            .is_some_and(|a| a.filled == 0 && a.message.is_none())
        {
            self.assembly = None;
        }
    }

    /// Reads once and hands every complete frame to `on`. `Ready(Ok(true))`:
    /// bytes came in; `Ready(Ok(false))`: the stream ended. Frames and
    /// messages over `max_message` bytes are a violation; after a violation
    /// the stream cannot be framed again, and the caller reads no more.
    pub(crate) fn poll_read<S>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        max_message: usize,
        on: &mut impl FnMut(Inbound<'_>) -> Flow,
    ) -> Poll<io::Result<bool>>
    where
        S: AsyncRead + Unpin,
    {
        if self.filled() > 0 {
            let read = self.poll_partial(io, cx, max_message, on);
            self.settle();
            return read;
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
                let used = self.dispatch(&mut scratch[..n], max_message, on);
                if used < n {
                    let assembly = self.assembly();
                    assembly.partial = scratch[used..n].to_vec();
                    assembly.filled = n - used;
                }
                self.settle();
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
        max_message: usize,
        on: &mut impl FnMut(Inbound<'_>) -> Flow,
    ) -> Poll<io::Result<bool>>
    where
        S: AsyncRead + Unpin,
    {
        let assembly = self.assembly();
        let need = match parse_header(&assembly.partial[..assembly.filled], max_message) {
            Ok(Some(h)) => h.frame_len(),
            Ok(None) => assembly.filled + MAX_HEADER,
            Err(v) => {
                self.violation(v, on);
                return Poll::Ready(Ok(true));
            }
        };
        if assembly.filled >= need {
            // Whole frames are here already (bytes read with the upgrade request).
            return Poll::Ready(Ok(self.consume_partial(max_message, on)));
        }
        // Grow with what arrives, not with what the header announces: a header
        // alone must not make the connection hold its whole frame.
        let target = need.min(assembly.filled + SCRATCH_BYTES);
        if assembly.partial.len() < target {
            assembly.partial.resize(target, 0);
        }
        let mut buf = ReadBuf::new(&mut assembly.partial[assembly.filled..target]);
        match Pin::new(io).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                if n == 0 {
                    return Poll::Ready(Ok(false));
                }
                assembly.filled += n;
                self.consume_partial(max_message, on);
                Poll::Ready(Ok(true))
            }
        }
    }

    /// Dispatches the complete frames of `partial`, keeps the rest at its start.
    fn consume_partial(
        &mut self,
        max_message: usize,
        on: &mut impl FnMut(Inbound<'_>) -> Flow,
    ) -> bool {
        let assembly = self.assembly();
        let mut partial = std::mem::take(&mut assembly.partial);
        let filled = std::mem::take(&mut assembly.filled);
        let used = self.dispatch(&mut partial[..filled], max_message, on);
        if used < filled {
            partial.copy_within(used..filled, 0);
            let assembly = self.assembly();
            assembly.filled = filled - used;
            assembly.partial = partial;
        }
        true
    }

    /// The stream cannot be framed any more: what is kept is dropped, and
    /// nothing more is dispatched.
    fn violation(&mut self, v: Violation, on: &mut impl FnMut(Inbound<'_>) -> Flow) -> Flow {
        self.assembly = None;
        on(Inbound::Violation(v));
        Flow::Stop
    }

    /// Hands every complete frame of `buf` to `on`; returns how many bytes
    /// were used (the rest starts an incomplete frame).
    fn dispatch(
        &mut self,
        buf: &mut [u8],
        max_message: usize,
        on: &mut impl FnMut(Inbound<'_>) -> Flow,
    ) -> usize {
        let mut at = 0;
        loop {
            let header = match parse_header(&buf[at..], max_message) {
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
            if self.frame(header.opcode, header.fin, payload, max_message, on) == Flow::Stop {
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
        max_message: usize,
        on: &mut impl FnMut(Inbound<'_>) -> Flow,
    ) -> Flow {
        match opcode {
            // Control frames may come between a message's fragments.
            Opcode::Ping => return on(Inbound::Ping(payload)),
            Opcode::Pong => return on(Inbound::Pong),
            Opcode::Close => {
                return match close_code(payload) {
                    Ok(code) => on(Inbound::Close(code)),
                    Err(v) => self.violation(v, on),
                }
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {}
        }
        let message = self.assembly.as_mut().and_then(|a| a.message.take());
        match (opcode, message) {
            (Opcode::Continuation, Some((first, mut data))) => {
                if data.len() + payload.len() > max_message {
                    return self.violation(Violation::TooBig, on);
                }
                data.extend_from_slice(payload);
                if fin {
                    self.deliver(first, &data, on)
                } else {
                    self.assembly().message = Some((first, data));
                    Flow::Go
                }
            }
            // A continuation with no message to continue, or a new message
            // before the last one ended.
            (Opcode::Continuation, None) | (_, Some(_)) => self.violation(Violation::Protocol, on),
            (_, None) if fin => self.deliver(opcode, payload, on),
            (_, None) => {
                self.assembly().message = Some((opcode, payload.to_vec()));
                Flow::Go
            }
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
            Err(_) => self.violation(Violation::Protocol, on),
        }
    }
}
