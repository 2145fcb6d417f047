//! The bare relay: the floor a signaling relay on tokio-tungstenite can reach,
//! built from the transport facts in DESIGN.md and nothing else. A 4 KiB read
//! buffer, one task per connection that reads, and one writer task that feeds
//! every queued frame and flushes once; only the routing fields (`type`, `to`,
//! `roomId`, `userId`) are decoded, and a relayed frame is the client's own
//! bytes, shared, not copied: no `from` stamping, no `seq`, no replay, no acks,
//! no limits, no metrics. Switchboard's relay CPU is measured against it.

use std::borrow::Cow;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::relay_rooms::{serve, Rooms};

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
    serve(listen, false, handle)
}

async fn handle(stream: TcpStream, rooms: Arc<Rooms>) {
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
            me = Some(rooms.join(route.room_id.as_deref(), route.user_id.as_deref(), &tx));
        } else if let (Some(to), Some((room, _))) = (route.to.as_deref(), &me) {
            rooms.send(room, to, Message::Text(text.clone()));
        }
    }
    if let Some((room, user)) = me {
        rooms.leave(&room, &user);
    }
    drop(tx);
    writer.abort();
}
