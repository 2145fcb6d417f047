//! Parity host for the Rust `Server` API (tests/parity/HOSTS.md): the options
//! come from the JSON file named by `SWITCHBOARD_PARITY_CONFIG`, the server
//! binds 127.0.0.1 on a free port, prints its URL, and drains on SIGTERM.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use switchboard::{Server, ServerBuilder};

fn apply(b: ServerBuilder, key: &str, v: &Value) -> Result<ServerBuilder, String> {
    let n = || v.as_u64().ok_or(format!("{key}: a number"));
    let ms = || n().map(Duration::from_millis);
    let list = || -> Result<Vec<String>, String> {
        serde_json::from_value(v.clone()).map_err(|_| format!("{key}: a list of strings"))
    };
    Ok(match key {
        "path" => b.path(v.as_str().ok_or("path: a string")?),
        "max_message_bytes" => b.max_message_bytes(n()? as usize),
        "max_conns" => b.max_conns(n()? as usize),
        "max_conns_per_ip" => b.max_conns_per_ip(n()? as usize),
        "max_room_size" => b.max_room_size(n()? as usize),
        "max_rooms_per_session" => b.max_rooms_per_session(n()? as usize),
        "rate_limit_burst" => b.rate_limit_burst(n()? as u32),
        "rate_limit_rps" => b.rate_limit_rps(n()? as u32),
        "heartbeat_interval_ms" => b.heartbeat_interval(ms()?),
        "heartbeat_timeout_ms" => b.heartbeat_timeout(ms()?),
        "resume_window_ms" => b.resume_window(ms()?),
        "drain_timeout_ms" => b.drain_timeout(ms()?),
        "allowed_origins" => b.allowed_origins(list()?),
        "trusted_proxies" => b.trusted_proxies(list()?),
        "app_types" => b.app_types(list()?),
        "redis_url" => b.redis_url(v.as_str().ok_or("redis_url: a string")?),
        "auth_tokens" => {
            let table: HashMap<String, String> = serde_json::from_value(v.clone())
                .map_err(|_| "auth_tokens: an object token -> userId")?;
            b.auth_tokens(table)
        }
        other => return Err(format!("unknown config key {other:?}")),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("SWITCHBOARD_PARITY_CONFIG")?;
    let config: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut builder = Server::builder().listen("127.0.0.1:0");
    for (key, value) in &config {
        builder = apply(builder, key, value)?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let server = builder.build()?.start().await?;
    println!("listening on {}", server.url());
    term.recv().await;
    server.shutdown().await;
    Ok(())
}
