//! What `switchboard_conn_next` hands the host: the kind of output (frames, a
//! close, a ping, a drop) and its accessors. Frames are already in the
//! connection's encoding (JSON text, or MessagePack binary).

use std::ffi::{c_char, CString};

use sb::edge::{Encoding, Wire};
use sb::protocol::Frame;

use crate::guard;

/// What `switchboard_conn_next` asks the host to do.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum switchboard_output_kind {
    /// Write the frames in order (text frames, or binary ones when
    /// `switchboard_output_is_binary`), then call `switchboard_conn_written`.
    Frames = 0,
    /// Send a close frame with this code and reason; write nothing after it.
    Close = 1,
    /// Send a WebSocket ping.
    Ping = 2,
    /// Cut the socket without a close frame (a silent peer, or one that takes no frames).
    Drop = 3,
}

/// What to do next on a connection (see `switchboard_output_kind`). Freed with
/// `switchboard_output_free`.
#[derive(Debug)]
pub struct switchboard_output {
    pub(crate) kind: switchboard_output_kind,
    /// The frames, each followed by a NUL that its length leaves out (JSON
    /// text never holds a raw NUL; MessagePack may, hence the lengths).
    pub(crate) frames: Vec<Vec<u8>>,
    /// Binary frames (a MessagePack connection) rather than text.
    pub(crate) binary: bool,
    pub(crate) close_code: u16,
    pub(crate) close_reason: CString,
}

impl switchboard_output {
    pub(crate) fn of(kind: switchboard_output_kind) -> switchboard_output {
        switchboard_output {
            kind,
            frames: Vec::new(),
            binary: false,
            close_code: 0,
            close_reason: CString::default(),
        }
    }

    /// The frames of an outbox batch, as the connection's encoding writes them.
    pub(crate) fn frames(batch: Vec<Frame>, encoding: Encoding) -> switchboard_output {
        let mut o = switchboard_output::of(switchboard_output_kind::Frames);
        o.binary = encoding == Encoding::MessagePack;
        o.frames = batch
            .into_iter()
            .map(|f| {
                let mut bytes = match encoding.wire(f) {
                    Wire::Text(t) => t.as_str().as_bytes().to_vec(),
                    Wire::Binary(b) => b,
                };
                bytes.push(0);
                bytes
            })
            .collect();
        o
    }
}

/// What the output asks for.
///
/// # Safety
/// `output` is NULL (then `DROP`) or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_output_get_kind(
    output: *const switchboard_output,
) -> switchboard_output_kind {
    guard::read(output, "output", switchboard_output_kind::Drop, |o| o.kind)
}

/// How many frames a `FRAMES` output holds (0 otherwise).
///
/// # Safety
/// `output` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_output_count(output: *const switchboard_output) -> usize {
    guard::read(output, "output", 0, |o| o.frames.len())
}

/// Frame `index`, owned by `output`, with its length (without the NUL that
/// follows it) to `*len_out` when not NULL; NULL past the end. Text frames
/// are NUL-terminated UTF-8; binary frames (MessagePack) may hold NULs, so
/// use the length.
///
/// # Safety
/// `output` is NULL or live; `len_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_output_frame(
    output: *const switchboard_output,
    index: usize,
    len_out: *mut usize,
) -> *const c_char {
    guard::read(output, "output", std::ptr::null(), |o| {
        match o.frames.get(index) {
            Some(f) => {
                if !len_out.is_null() {
                    // SAFETY: not NULL; writable by the caller's contract.
                    unsafe { guard::write_out(len_out, f.len() - 1) };
                }
                f.as_ptr().cast::<c_char>()
            }
            None => std::ptr::null(),
        }
    })
}

/// Whether the frames of a `FRAMES` output are binary (the connection chose
/// the MessagePack subprotocol) rather than text.
///
/// # Safety
/// `output` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_output_is_binary(output: *const switchboard_output) -> bool {
    guard::read(output, "output", false, |o| o.binary)
}

/// The close code of a `CLOSE` output (0 otherwise).
///
/// # Safety
/// `output` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_output_close_code(output: *const switchboard_output) -> u16 {
    guard::read(output, "output", 0, |o| o.close_code)
}

/// The close reason of a `CLOSE` output ("" otherwise), owned by `output`.
///
/// # Safety
/// `output` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_output_close_reason(
    output: *const switchboard_output,
) -> *const c_char {
    guard::read(output, "output", std::ptr::null(), |o| {
        o.close_reason.as_ptr()
    })
}

/// Frees an output. NULL is ignored.
///
/// # Safety
/// `output` is NULL or live and not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn switchboard_output_free(output: *mut switchboard_output) {
    guard::guard_void(|| {
        if !output.is_null() {
            // SAFETY: made by `switchboard_conn_next`; freed once (header contract).
            drop(unsafe { Box::from_raw(output) });
        }
    })
}
