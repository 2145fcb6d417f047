//! What the two built-in relays (reference and bare) share and do not measure
//! against each other: the accept loop that prints the URL the bench reads,
//! and the rooms (`join` → `room-info` + `user-joined`, end → `user-left`).

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A connection's writer queue.
pub(crate) type Tx = mpsc::UnboundedSender<Message>;

/// Rooms by id, members by user id.
#[derive(Default)]
pub(crate) struct Rooms {
    rooms: Mutex<HashMap<String, HashMap<String, Tx>>>,
    next_id: AtomicU64,
}

impl Rooms {
    /// Joins `tx` to `room` as `user` (a generated id when `None`): `room-info`
    /// to it, `user-joined` to the others. Returns (room, user).
    pub(crate) fn join(&self, room: Option<&str>, user: Option<&str>, tx: &Tx) -> (String, String) {
        let room = room.unwrap_or("default").to_owned();
        let user = match user {
            Some(u) => u.to_owned(),
            None => format!("u{}", self.next_id.fetch_add(1, Ordering::Relaxed)),
        };
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let peers = rooms.entry(room.clone()).or_default();
        let users: Vec<&String> = peers.keys().collect();
        let info = json!({"type": "room-info", "roomId": room, "users": users, "you": user});
        let joined = json!({"type": "user-joined", "roomId": room, "userId": user}).to_string();
        for peer in peers.values() {
            let _ = peer.send(Message::text(joined.clone()));
        }
        let _ = tx.send(Message::text(info.to_string()));
        peers.insert(user.clone(), tx.clone());
        (room, user)
    }

    /// Queues `msg` for `to` in `room`, if it is there.
    pub(crate) fn send(&self, room: &str, to: &str, msg: Message) {
        let rooms = self.rooms.lock().expect("rooms lock");
        if let Some(peer) = rooms.get(room).and_then(|r| r.get(to)) {
            let _ = peer.send(msg);
        }
    }

    /// `user` left `room`: `user-left` to the others; an empty room goes.
    pub(crate) fn leave(&self, room: &str, user: &str) {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        if let Some(peers) = rooms.get_mut(room) {
            peers.remove(user);
            let left =
                json!({"type": "user-left", "roomId": room, "userId": user, "reason": "closed"})
                    .to_string();
            for peer in peers.values() {
                let _ = peer.send(Message::text(left.clone()));
            }
            if peers.is_empty() {
                rooms.remove(room);
            }
        }
    }
}

/// Serves `listen` until killed, one `handle` task per connection.
pub(crate) fn serve<F, Fut>(listen: &str, nodelay: bool, handle: F) -> std::io::Result<()>
where
    F: Fn(TcpStream, Arc<Rooms>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    crate::sys::raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(listen).await?;
        let mut out = std::io::stdout();
        writeln!(out, "listening on ws://{}/ws", listener.local_addr()?)?;
        out.flush()?;
        let rooms = Arc::new(Rooms::default());
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
            tokio::spawn(handle(stream, Arc::clone(&rooms)));
        }
    })
}
