//! What every exported function shares: the panic guard, the per-thread last
//! error, argument checks (NULL, UTF-8, JSON), out-parameters, and the mapping
//! of core errors to `switchboard_result`.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use sb::{Error, ErrorCode};
use serde_json::Value;

use crate::switchboard_result;

/// A failure on its way to C: the result code and the last-error message.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub(crate) code: switchboard_result,
    pub(crate) message: String,
}

/// Result of the internal halves of exported functions.
pub(crate) type FfiResult<T> = Result<T, FfiError>;

impl FfiError {
    pub(crate) fn new(code: switchboard_result, message: impl Into<String>) -> Self {
        FfiError {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn closed(what: &str) -> Self {
        FfiError::new(switchboard_result::Closed, what)
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        FfiError::new(switchboard_result::Config, message)
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Protocol { code, .. } => protocol_result(*code),
            Error::Config(_) => switchboard_result::Config,
            Error::Io(_) => switchboard_result::Io,
            Error::WebSocket(_) => switchboard_result::Websocket,
            Error::Closed(_) => switchboard_result::Closed,
            Error::QueueFull(_) => switchboard_result::QueueFull,
            Error::Timeout(_) => switchboard_result::Timeout,
            // The core may grow kinds; they are failures all the same.
            _ => switchboard_result::Internal,
        };
        FfiError::new(code, e.to_string())
    }
}

fn protocol_result(code: ErrorCode) -> switchboard_result {
    match code {
        ErrorCode::InvalidJson => switchboard_result::InvalidJson,
        ErrorCode::InvalidMessage => switchboard_result::InvalidMessage,
        ErrorCode::UnknownType => switchboard_result::UnknownType,
        ErrorCode::Unauthorized => switchboard_result::Unauthorized,
        ErrorCode::Forbidden => switchboard_result::Forbidden,
        ErrorCode::NotInRoom => switchboard_result::NotInRoom,
        ErrorCode::PeerNotFound => switchboard_result::PeerNotFound,
        ErrorCode::RoomFull => switchboard_result::RoomFull,
        ErrorCode::UserIdTaken => switchboard_result::UserIdTaken,
        ErrorCode::RateLimited => switchboard_result::RateLimited,
        ErrorCode::MessageTooBig => switchboard_result::MessageTooBig,
        ErrorCode::ResumeFailed => switchboard_result::ResumeFailed,
        _ => switchboard_result::Internal,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // An interior NUL (from a peer's string) would cut the message: replace it.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

pub(crate) fn last_error_ptr() -> *const c_char {
    // The CString's buffer stays put until the next `set_last_error` on this
    // thread replaces it, which is the lifetime the header documents.
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("panic in switchboard (a bug, please report it): {what}")
}

/// Runs the body of an exported function: `Err(code)` for an error (recorded as
/// the thread's last error) or a panic (`SWITCHBOARD_RESULT_PANIC`, caught here
/// instead of unwinding into C).
fn run<T>(body: impl FnOnce() -> FfiResult<T>) -> Result<T, switchboard_result> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            set_last_error(&e.message);
            Err(e.code)
        }
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            Err(switchboard_result::Panic)
        }
    }
}

/// The guard of a function that returns a result code.
pub(crate) fn guard(body: impl FnOnce() -> FfiResult<()>) -> switchboard_result {
    match run(body) {
        Ok(()) => switchboard_result::Ok,
        Err(code) => code,
    }
}

/// The guard of a function that returns a value: `on_failure` when it fails.
pub(crate) fn guard_or<T>(on_failure: T, body: impl FnOnce() -> FfiResult<T>) -> T {
    run(body).unwrap_or(on_failure)
}

/// The guard of a function that returns nothing (the `_free` functions).
pub(crate) fn guard_void(body: impl FnOnce()) {
    let _ = run(|| {
        body();
        Ok(())
    });
}

/// A `(pointer, length)` byte argument: NULL is an error unless `len` is 0.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn bytes_arg<'a>(p: *const u8, len: usize, name: &str) -> FfiResult<&'a [u8]> {
    match (p.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(null_arg(name)),
        // SAFETY: `len` readable bytes (the caller's contract).
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(p, len) }),
    }
}

/// A required `const char *` argument: NULL and invalid UTF-8 are errors.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> FfiResult<&'a str> {
    // SAFETY: forwarded to the caller's contract.
    unsafe { opt_str_arg(p, name) }?.ok_or_else(|| null_arg(name))
}

/// An optional `const char *` argument: NULL is `None`, invalid UTF-8 an error.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> FfiResult<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: not NULL, and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map(Some).map_err(|e| {
        FfiError::new(
            switchboard_result::InvalidUtf8,
            format!("{name} is not valid UTF-8 ({e})"),
        )
    })
}

/// A JSON text argument, parsed.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn json_arg(p: *const c_char, name: &str) -> FfiResult<Value> {
    // SAFETY: forwarded to the caller's contract.
    let text = unsafe { str_arg(p, name) }?;
    serde_json::from_str(text).map_err(|e| {
        FfiError::new(
            switchboard_result::InvalidJson,
            format!("{name} is not valid JSON: {e}"),
        )
    })
}

pub(crate) fn null_arg(name: &str) -> FfiError {
    FfiError::new(switchboard_result::NullArgument, format!("{name} is NULL"))
}

/// A handle argument, borrowed.
///
/// # Safety
/// `p` is NULL or a live handle of type `T` made by this library, not used
/// mutably elsewhere during `'a`.
pub(crate) unsafe fn handle<'a, T>(p: *const T, name: &str) -> FfiResult<&'a T> {
    // SAFETY: the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| null_arg(name))
}

/// A handle argument, borrowed mutably (the config and options builders).
///
/// # Safety
/// As [`handle`], and no other reference to it exists during `'a`.
pub(crate) unsafe fn handle_mut<'a, T>(p: *mut T, name: &str) -> FfiResult<&'a mut T> {
    // SAFETY: the caller's contract.
    unsafe { p.as_mut() }.ok_or_else(|| null_arg(name))
}

/// Checks an out-parameter before any work is done, so a NULL one fails early
/// and a successful call can always write it.
pub(crate) fn out_arg<T>(p: *mut T, name: &str) -> FfiResult<*mut T> {
    if p.is_null() {
        Err(null_arg(name))
    } else {
        Ok(p)
    }
}

/// Writes an out-parameter (only ever on success).
///
/// # Safety
/// `out` came from [`out_arg`] and points to writable memory for a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: checked non-NULL by `out_arg`; writable by the caller's contract.
    unsafe { out.write(value) }
}

/// A string handed to C through a `char **`, freed by `switchboard_string_free`.
pub(crate) fn owned_c_string(s: String) -> *mut c_char {
    // JSON text from serde never holds a raw NUL (it escapes control characters).
    CString::new(s).unwrap_or_default().into_raw()
}

/// A string for C when the Rust string may hold NUL bytes (a peer's ids): such a
/// string can not be a C string, so it is left out (the event JSON still has it).
pub(crate) fn c_string(s: &str) -> Option<CString> {
    CString::new(s).ok()
}

/// Milliseconds from C as a duration.
pub(crate) fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A count from C (`uint64_t`) as `usize`.
pub(crate) fn count(value: u64, name: &str) -> FfiResult<usize> {
    usize::try_from(value).map_err(|_| FfiError::config(format!("{name} is too large")))
}

/// Runs `f` on a borrowed handle under the guard; NULL is `NULL_ARGUMENT`.
/// The caller's own contract (a live handle or NULL) makes the borrow sound.
pub(crate) fn with_ref<T>(
    p: *const T,
    name: &str,
    f: impl FnOnce(&T) -> FfiResult<()>,
) -> switchboard_result {
    guard(|| {
        // SAFETY: NULL or a live handle of type `T` (header contract of every caller).
        f(unsafe { handle(p, name) }?)
    })
}

/// [`with_ref`] for the builders (configs, options), used by one thread at a time.
pub(crate) fn with_mut<T>(
    p: *mut T,
    name: &str,
    f: impl FnOnce(&mut T) -> FfiResult<()>,
) -> switchboard_result {
    guard(|| {
        // SAFETY: NULL or a live builder used by one thread at a time (header contract).
        f(unsafe { handle_mut(p, name) }?)
    })
}

/// A value read from a borrowed handle; `on_failure` when it is NULL.
pub(crate) fn read<T, R>(p: *const T, name: &str, on_failure: R, f: impl FnOnce(&T) -> R) -> R {
    guard_or(on_failure, || {
        // SAFETY: NULL or a live handle of type `T` (header contract of every caller).
        Ok(f(unsafe { handle(p, name) }?))
    })
}

/// An optional string owned by a handle, as C sees it (NULL for none).
pub(crate) fn c_ptr(s: Option<&CString>) -> *const c_char {
    s.map_or(std::ptr::null(), |s| s.as_ptr())
}

/// A setter's assignment, as the `Ok(())` every setter returns.
pub(crate) fn set<T>(slot: &mut T, value: T) -> FfiResult<()> {
    *slot = value;
    Ok(())
}

/// A required string argument, owned.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn string(p: *const c_char, name: &str) -> FfiResult<String> {
    // SAFETY: forwarded contract.
    unsafe { str_arg(p, name) }.map(str::to_owned)
}

/// A raw pointer that may cross threads: the C side promises its thread safety
/// (documented on every function that takes a `userdata`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut std::ffi::c_void);

// SAFETY: the library never dereferences it; it only hands it back to the C
// callback, whose thread safety the header makes the caller's responsibility.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_result_code_and_a_message() {
        let r = guard(|| panic!("boom"));
        assert_eq!(r, switchboard_result::Panic);
        // SAFETY: the pointer is the thread's own last-error string.
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_str()
            .unwrap();
        assert!(msg.contains("boom"), "{msg}");
        let v: *mut u8 = guard_or(std::ptr::null_mut(), || panic!("again"));
        assert!(v.is_null());
        guard_void(|| panic!("void"));
        // SAFETY: as above.
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_str()
            .unwrap();
        assert!(msg.contains("void"), "{msg}");
    }

    #[test]
    fn errors_map_to_their_codes() {
        let r = guard(|| Err(Error::protocol(ErrorCode::PeerNotFound, "nobody").into()));
        assert_eq!(r, switchboard_result::PeerNotFound);
        let r = guard(|| Err(Error::Config("bad".into()).into()));
        assert_eq!(r, switchboard_result::Config);
        assert_eq!(guard(|| Ok(())), switchboard_result::Ok);
    }

    #[test]
    fn bad_utf8_and_null_are_refused() {
        let bad = b"\xff\xfe\0";
        // SAFETY: a NUL-terminated byte string.
        let e = unsafe { str_arg(bad.as_ptr().cast(), "room") }.unwrap_err();
        assert_eq!(e.code, switchboard_result::InvalidUtf8);
        // SAFETY: NULL is allowed.
        let e = unsafe { str_arg(std::ptr::null(), "room") }.unwrap_err();
        assert_eq!(e.code, switchboard_result::NullArgument);
    }
}
