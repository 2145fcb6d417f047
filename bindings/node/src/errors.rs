//! Error mapping: every failure reaches JS as `"[code] message"`, which the
//! TypeScript layer splits into `err.code` and `err.message`.

use switchboard::Error;

/// A napi error carrying a Switchboard error code.
pub(crate) fn coded(code: &str, message: impl std::fmt::Display) -> napi::Error {
    napi::Error::from_reason(format!("[{code}] {message}"))
}

/// Maps a core error through its stable `code()`.
pub(crate) fn to_napi(e: Error) -> napi::Error {
    coded(e.code(), e)
}

/// A `config` error (invalid options, before any I/O).
pub(crate) fn config(message: impl std::fmt::Display) -> napi::Error {
    coded("config", message)
}

/// Parses JSON text handed over by the TypeScript layer.
pub(crate) fn parse_json(text: &str) -> napi::Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| coded("invalid-json", e))
}
