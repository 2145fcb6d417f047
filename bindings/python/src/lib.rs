//! `switchboard._native`: the Rust core exposed to Python. The pure-Python
//! package `switchboard` (in `python/`) is the public API; this module holds the
//! parts that must be native: the server and hub, route-mode connections, the
//! client, event feeds, and the asyncio bridge.
//!
//! GIL discipline: every Rust operation runs without the GIL (on the tokio
//! runtime, or inside `py.detach`). Rust touches Python only on the blocking pool
//! with `Python::try_attach`, and only to schedule work on the asyncio loop with
//! `call_soon_threadsafe` (results, event wake-ups, auth and token hooks), never
//! from a tokio worker, which must not wait for the GIL.

mod auth;
mod client;
mod convert;
mod feed;
mod route;
mod runtime;
mod server;
mod server_options;

use pyo3::prelude::*;

/// Logs of the core go to stderr through `tracing`, at `warn` unless the
/// `SWITCHBOARD_LOG` environment variable sets a filter (e.g. `switchboard=debug`).
/// Writing them into Python's `logging` would take the GIL on tokio threads.
fn init_logging() {
    let filter = std::env::var("SWITCHBOARD_LOG").unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("EVENT_TYPES", feed::KINDS.to_vec())?;
    m.add_class::<feed::PyEvent>()?;
    m.add_class::<feed::EventFeed>()?;
    m.add_class::<server::ServerOptions>()?;
    m.add_class::<server::NativeHub>()?;
    m.add_class::<route::RouteConnection>()?;
    m.add_class::<client::NativeClient>()?;
    m.add_class::<client::TokenReply>()?;
    m.add_class::<auth::AuthReply>()?;
    m.add_function(wrap_pyfunction!(feed::kinds_mask, m)?)?;
    m.add_function(wrap_pyfunction!(server::start_server, m)?)?;
    m.add_function(wrap_pyfunction!(server::create_hub, m)?)?;
    m.add_function(wrap_pyfunction!(route::open_route, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::shutdown, m)?)?;
    // Before the interpreter finalizes, no runtime thread may still touch it.
    let shutdown = m.getattr("shutdown")?;
    m.py()
        .import("atexit")?
        .call_method1("register", (shutdown,))?;
    m.add_function(wrap_pyfunction!(client::connect_client, m)?)?;
    Ok(())
}
