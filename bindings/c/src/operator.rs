//! The plain HTTP answers of the kit for a host that owns its port
//! (host-socket mode): the operator API (`/api/v1/…`, docs/API.md), and the
//! endpoints `/health`, `/ready`, `/metrics`, `/admin`. The host passes the
//! request's facts and writes back the status, content type and body.

use std::ffi::{c_char, CStr};

use sb::edge::{ApiRequest, HttpReply};

use crate::guard::{self, with_ref};
use crate::server::switchboard_server;
use crate::switchboard_result;

/// The content types of the kit's answers, as static C strings.
fn content_type(reply: &HttpReply) -> *const c_char {
    let s: &'static CStr = match reply.content_type {
        "application/json" => c"application/json",
        "text/plain" => c"text/plain",
        "text/html; charset=utf-8" => c"text/html; charset=utf-8",
        "text/javascript; charset=utf-8" => c"text/javascript; charset=utf-8",
        _ => c"application/openmetrics-text; version=1.0.0; charset=utf-8",
    };
    s.as_ptr()
}

/// Writes a reply to the out-parameters.
///
/// # Safety
/// The pointers are NULL or writable (checked by the callers with `out_arg`).
unsafe fn write_reply(
    reply: HttpReply,
    status_out: *mut u16,
    content_type_out: *mut *const c_char,
    body_out: *mut *mut c_char,
) {
    // SAFETY: the callers checked every pointer; writable by their contract.
    unsafe {
        guard::write_out(status_out, reply.status);
        if !content_type_out.is_null() {
            guard::write_out(content_type_out, content_type(&reply));
        }
        guard::write_out(body_out, guard::owned_c_string(reply.body));
    }
}

/// Answers one operator API request (`path` under `/api/v1`, without the
/// query): `method` (`GET`, `POST`), `query` (after `?`, or NULL),
/// `authorization` (the header, or NULL) and the body (`body_len` bytes; a host
/// refuses a longer body than `switchboard_server_api_body_limit` with 413
/// before reading it, or passes it here to be refused). Writes the HTTP status,
/// the content type (a static string, or skipped when `content_type_out` is
/// NULL) and a new JSON body string that the caller frees with
/// `switchboard_string_free`.
///
/// # Safety
/// `server` is NULL or live; the strings are NULL or NUL-terminated; `body`
/// points to `body_len` readable bytes; the out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_api(
    server: *const switchboard_server,
    method: *const c_char,
    path: *const c_char,
    query: *const c_char,
    authorization: *const c_char,
    body: *const u8,
    body_len: usize,
    status_out: *mut u16,
    content_type_out: *mut *const c_char,
    body_out: *mut *mut c_char,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        let status_out = guard::out_arg(status_out, "status_out")?;
        let body_out = guard::out_arg(body_out, "body_out")?;
        // SAFETY: header contract.
        let (method, path, query, authorization) = unsafe {
            (
                guard::str_arg(method, "method")?,
                guard::str_arg(path, "path")?,
                guard::opt_str_arg(query, "query")?,
                guard::opt_str_arg(authorization, "authorization")?,
            )
        };
        // SAFETY: header contract.
        let body = unsafe { guard::bytes_arg(body, body_len, "body") }?;
        let _entered = s.runtime().enter();
        let reply = s.edge.api(&ApiRequest {
            method,
            path,
            query,
            authorization,
            body,
        });
        // SAFETY: checked above; writable by the caller's contract.
        unsafe { write_reply(reply, status_out, content_type_out, body_out) };
        Ok(())
    })
}

/// The largest API request body the server takes.
///
/// # Safety
/// `server` is NULL (then 0) or live.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_api_body_limit(
    server: *const switchboard_server,
) -> usize {
    guard::read(server, "server", 0, |s| s.edge.api_body_limit())
}

/// A plain `GET` endpoint of the kit at `path`: `/health`, `/ready`,
/// `/metrics`, and with the API on `/admin` and `/admin.js`. Writes the
/// status, the content type (static) and a new body string (free it with
/// `switchboard_string_free`). Another path is not an error: status 404 with
/// an empty body.
///
/// # Safety
/// `server` is NULL or live; `path` is NULL or NUL-terminated; the
/// out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn switchboard_server_endpoint(
    server: *const switchboard_server,
    path: *const c_char,
    status_out: *mut u16,
    content_type_out: *mut *const c_char,
    body_out: *mut *mut c_char,
) -> switchboard_result {
    with_ref(server, "server", |s| {
        let status_out = guard::out_arg(status_out, "status_out")?;
        let body_out = guard::out_arg(body_out, "body_out")?;
        // SAFETY: header contract.
        let path = unsafe { guard::str_arg(path, "path") }?;
        let reply = s.edge.endpoint(path).unwrap_or(HttpReply {
            status: 404,
            content_type: "text/plain",
            body: String::new(),
        });
        // SAFETY: checked above; writable by the caller's contract.
        unsafe { write_reply(reply, status_out, content_type_out, body_out) };
        Ok(())
    })
}
