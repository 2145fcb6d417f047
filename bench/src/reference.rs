//! The reference server: a plain, default-configured tokio-tungstenite relay,
//! the way most Rust signaling examples are written. Default
//! `WebSocketConfig` (128 KiB read buffer), one writer task per connection
//! fed by an unbounded channel that sends (and flushes) each frame on its
//! own, a full `serde_json::Value` parse of every frame, rooms in a
//! `HashMap` behind a `Mutex`, relay by `to` with `from` added, no
//! `seq`/`ack`/resume. It answers `join` with `room-info` and tells the
//! others `user-joined`, so the load clients drive it exactly like
//! Switchboard.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

type Tx = mpsc::UnboundedSender<Message>;

#[derive(Default)]
struct State {
    rooms: Mutex<HashMap<String, HashMap<String, Tx>>>,
    next_id: AtomicU64,
}

/// Run the reference server on `listen` until killed.
pub(crate) fn run(listen: &str, nodelay: bool) -> std::io::Result<()> {
    crate::sys::raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(listen).await?;
        let mut out = std::io::stdout();
        writeln!(out, "listening on ws://{}/ws", listener.local_addr()?)?;
        out.flush()?;
        let state = Arc::new(State::default());
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            if nodelay {
                let _ = stream.set_nodelay(true);
            }
            tokio::spawn(handle(stream, Arc::clone(&state)));
        }
    })
}

async fn handle(stream: TcpStream, state: Arc<State>) {
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
                let room = v["roomId"].as_str().unwrap_or("default").to_string();
                let user = match v["userId"].as_str() {
                    Some(u) => u.to_string(),
                    None => format!("u{}", state.next_id.fetch_add(1, Ordering::Relaxed)),
                };
                let mut rooms = state.rooms.lock().expect("rooms lock");
                let peers = rooms.entry(room.clone()).or_default();
                let users: Vec<&String> = peers.keys().collect();
                let info =
                    json!({"type": "room-info", "roomId": room, "users": users, "you": user});
                let joined =
                    json!({"type": "user-joined", "roomId": room, "userId": user}).to_string();
                for peer in peers.values() {
                    let _ = peer.send(Message::text(joined.clone()));
                }
                let _ = tx.send(Message::text(info.to_string()));
                peers.insert(user.clone(), tx.clone());
                me = Some((room, user));
            }
            Some(_) if v.get("to").is_some() => {
                let Some((room, user)) = &me else { continue };
                let to = v["to"].as_str().unwrap_or_default().to_string();
                v["from"] = Value::String(user.clone());
                let out = v.to_string();
                let rooms = state.rooms.lock().expect("rooms lock");
                if let Some(peer) = rooms.get(room).and_then(|r| r.get(&to)) {
                    let _ = peer.send(Message::text(out));
                }
            }
            _ => {}
        }
    }
    if let Some((room, user)) = me {
        let mut rooms = state.rooms.lock().expect("rooms lock");
        if let Some(peers) = rooms.get_mut(&room) {
            peers.remove(&user);
            let left =
                json!({"type": "user-left", "roomId": room, "userId": user, "reason": "closed"})
                    .to_string();
            for peer in peers.values() {
                let _ = peer.send(Message::text(left.clone()));
            }
            if peers.is_empty() {
                rooms.remove(&room);
            }
        }
    }
    drop(tx);
    writer.abort();
}
