//! The reference server: a plain, default-configured tokio-tungstenite relay,
//! the way most Rust signaling examples are written. Default
//! `WebSocketConfig` (128 KiB read buffer), one writer task per connection
//! fed by an unbounded channel that sends (and flushes) each frame on its
//! own, a full `serde_json::Value` parse of every frame, rooms in a
//! `HashMap` behind a `Mutex`, relay by `to` with `from` added, no
//! `seq`/`ack`/resume. It answers `join` with `room-info` and tells the
//! others `user-joined`, so the load clients drive it exactly like
//! Switchboard.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::relay_rooms::{serve, Rooms};

/// Run the reference server on `listen` until killed.
pub(crate) fn run(listen: &str, nodelay: bool) -> std::io::Result<()> {
    serve(listen, nodelay, handle)
}

async fn handle(stream: TcpStream, rooms: Arc<Rooms>) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut me: Option<(String, String)> = None;
    while let Some(Ok(msg)) = source.next().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(mut v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("join") => {
                me = Some(rooms.join(v["roomId"].as_str(), v["userId"].as_str(), &tx));
            }
            Some(_) if v.get("to").is_some() => {
                let Some((room, user)) = &me else { continue };
                let to = v["to"].as_str().unwrap_or_default().to_string();
                v["from"] = Value::String(user.clone());
                rooms.send(room, &to, Message::text(v.to_string()));
            }
            _ => {}
        }
    }
    if let Some((room, user)) = me {
        rooms.leave(&room, &user);
    }
    drop(tx);
    writer.abort();
}
