//! Switchboard's Node.js addon (napi-rs): the native half of the npm package in
//! `node/`. It is deliberately thin and JSON-shaped — the handwritten TypeScript
//! layer (`node/src/`) owns the public API (EventEmitter, typed events, option
//! checks, the attach mode's `ws` sockets).
//!
//! Conventions shared by every export:
//! - Errors reject/throw with a message `"[code] text"`, `code` being the core's
//!   `Error::code()` (the protocol code, or `config`, `io`, `closed`, …); the
//!   TypeScript layer turns that into `err.code`.
//! - Messages and events cross the boundary as JSON text (one `JSON.parse` per
//!   batch on the JS side is cheaper than building objects through napi calls).
//! - Events are pulled (`nextEvents()` resolves with every queued event at once),
//!   so a busy JS thread gets larger batches instead of an unbounded queue.
//! - Calls that queue something (sends) do so synchronously, before returning
//!   their promise, so JS call order is wire order.
//! - The only threadsafe functions are the user's auth hook and token provider;
//!   both are weak (never keep the process alive) and released on `stop()` /
//!   `close()`. Pending promises (`nextEvents`, `waitReleased`) are what keeps
//!   the process alive while a server or client runs, like an open socket.

pub mod attach;
pub mod auth;
pub mod client;
pub mod errors;
pub mod events;
pub mod options;
pub mod server;

/// The crate version (the npm package's too).
#[napi_derive::napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// Logs of the core go to stderr through `tracing`; `SWITCHBOARD_LOG` (or
/// `RUST_LOG`) sets the filter, default `warn`.
#[napi_derive::module_init]
fn init() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("SWITCHBOARD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}
