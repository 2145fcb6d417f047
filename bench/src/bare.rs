//! The bare relay: the floor a signaling relay on tokio-tungstenite can reach,
//! built from the transport facts in DESIGN.md and nothing else. A 4 KiB read
//! buffer, one task per connection that reads, and one writer task that feeds
//! every queued frame and flushes once; only the routing fields (`type`, `to`,
//! `roomId`, `userId`) are decoded, and a relayed frame is the client's own
//! bytes, shared, not copied: no `from` stamping, no `seq`, no replay, no acks,
//! no limits, no metrics. Switchboard's relay CPU is measured against it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

type Tx = mpsc::UnboundedSender<Message>;

#[derive(Default)]
struct State {
    rooms: Mutex<HashMap<String, HashMap<String, Tx>>>,
    next_id: AtomicU64,
}

/// The routing fields; serde skips (and validates) the rest.
#[derive(Deserialize)]
struct Route<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(rename = "roomId", borrow)]
    room_id: Option<Cow<'a, str>>,
    #[serde(rename = "userId", borrow)]
    user_id: Option<Cow<'a, str>>,
}

/// Run the bare relay on `listen` until killed.
pub(crate) fn run(listen: &str) -> std::io::Result<()> {
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
            tokio::spawn(handle(stream, Arc::clone(&state)));
        }
    })
}

async fn handle(stream: TcpStream, state: Arc<State>) {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.feed(msg).await.is_err() {
                return;
            }
            while let Ok(msg) = rx.try_recv() {
                if sink.feed(msg).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
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
        let Ok(route) = serde_json::from_str::<Route<'_>>(text.as_str()) else {
            continue;
        };
        if route.kind == "join" {
            let room = route.room_id.as_deref().unwrap_or("default").to_owned();
            let user = match route.user_id {
                Some(u) => u.into_owned(),
                None => format!("u{}", state.next_id.fetch_add(1, Ordering::Relaxed)),
            };
            let mut rooms = state.rooms.lock().expect("rooms lock");
            let peers = rooms.entry(room.clone()).or_default();
            let users: Vec<&String> = peers.keys().collect();
            let info = serde_json::json!({"type": "room-info", "roomId": room, "users": users, "you": user});
            let joined = serde_json::json!({"type": "user-joined", "roomId": room, "userId": user})
                .to_string();
            for peer in peers.values() {
                let _ = peer.send(Message::text(joined.clone()));
            }
            let _ = tx.send(Message::text(info.to_string()));
            peers.insert(user.clone(), tx.clone());
            me = Some((room, user));
        } else if let (Some(to), Some((room, _))) = (route.to.as_deref(), &me) {
            let rooms = state.rooms.lock().expect("rooms lock");
            if let Some(peer) = rooms.get(room).and_then(|r| r.get(to)) {
                let _ = peer.send(Message::Text(text.clone()));
            }
        }
    }
    if let Some((room, user)) = me {
        let mut rooms = state.rooms.lock().expect("rooms lock");
        if let Some(peers) = rooms.get_mut(&room) {
            peers.remove(&user);
            let left = serde_json::json!({"type": "user-left", "roomId": room, "userId": user, "reason": "closed"})
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
