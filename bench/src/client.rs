//! Load-client plumbing: connect, join a room, build candidate frames, and a
//! borrowed (allocation-free) parse of the frames the server sends; with the
//! MessagePack subprotocol, frames are transcoded to and from JSON here.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Time allowed for one connect, or for one expected reply.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The fields of a server frame the load clients look at; everything else is
/// skipped without allocating.
#[derive(Debug, Deserialize)]
pub(crate) struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) ty: &'a str,
    #[serde(borrow, default)]
    pub(crate) from: Option<&'a str>,
    #[serde(default)]
    pub(crate) seq: Option<u64>,
    #[serde(default)]
    pub(crate) candidate: Option<Candidate>,
    #[serde(borrow, default)]
    pub(crate) code: Option<&'a str>,
}

/// The benchmark's own fields inside the candidate object: the per-sender
/// counter `n` and the send time `t` (ns since the run's base instant).
#[derive(Debug, Deserialize)]
pub(crate) struct Candidate {
    #[serde(default)]
    pub(crate) n: Option<u64>,
    #[serde(default)]
    pub(crate) t: Option<u64>,
}

/// How the load clients encode their frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// JSON text frames.
    Json,
    /// MessagePack binary frames (`webrtc-signaling.msgpack`).
    MsgPack,
}

impl Wire {
    /// A frame carrying `json` in this encoding.
    pub(crate) fn message(self, json: String) -> Message {
        match self {
            Wire::Json => Message::text(json),
            Wire::MsgPack => {
                let mut out = Vec::with_capacity(json.len());
                let mut de = serde_json::Deserializer::from_str(&json);
                let mut ser = rmp_serde::Serializer::new(&mut out);
                serde_transcode::transcode(&mut de, &mut ser).expect("the client's own JSON");
                Message::binary(out)
            }
        }
    }
}

/// The JSON text of a binary (MessagePack) frame.
pub(crate) fn msgpack_to_json(bytes: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 4);
    let mut de = rmp_serde::Deserializer::new(bytes);
    serde_transcode::transcode(&mut de, &mut serde_json::Serializer::new(&mut out))
        .map_err(|e| format!("bad MessagePack frame: {e}"))?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// Client-side WebSocket settings: a small read buffer so that 10 000 idle
/// clients stay cheap in the load generator itself.
pub(crate) fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// Open a WebSocket to `url` (Nagle off), bounded by [`STEP_TIMEOUT`];
/// MessagePack offers its subprotocol.
pub(crate) async fn connect(url: &str, wire: Wire) -> Result<Ws, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url
        .into_client_request()
        .map_err(|e| format!("{url}: {e}"))?;
    if wire == Wire::MsgPack {
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "webrtc-signaling.msgpack".parse().expect("a valid header"),
        );
    }
    let fut = tokio_tungstenite::connect_async_with_config(req, Some(client_config()), true);
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(Ok((ws, _resp))) => Ok(ws),
        Ok(Err(e)) => Err(format!("connect {url}: {e}")),
        Err(_) => Err(format!("connect {url}: timed out")),
    }
}

/// Send `join` and wait for `room-info`; returns the highest `seq` seen.
pub(crate) async fn join(ws: &mut Ws, room: &str, user: &str, wire: Wire) -> Result<u64, String> {
    let frame = format!(r#"{{"type":"join","roomId":"{room}","userId":"{user}"}}"#);
    ws.send(wire.message(frame))
        .await
        .map_err(|e| format!("send join: {e}"))?;
    let mut last_seq = 0;
    wait_for(ws, "room-info", &mut last_seq).await?;
    Ok(last_seq)
}

/// Like [`join`], but returns only once `peer` is known to be in the room: in
/// `room-info`, or (on a cluster, when it joined on another node at the same
/// moment) by a later `user-joined`.
pub(crate) async fn join_seeing(
    ws: &mut Ws,
    room: &str,
    user: &str,
    peer: &str,
    wire: Wire,
) -> Result<u64, String> {
    let frame = format!(r#"{{"type":"join","roomId":"{room}","userId":"{user}"}}"#);
    ws.send(wire.message(frame))
        .await
        .map_err(|e| format!("send join: {e}"))?;
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    let mut last_seq = 0;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| format!("{user} never saw {peer} in {room}"))?;
        let text = match next {
            Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
            Some(Ok(Message::Binary(b))) => msgpack_to_json(&b)?,
            _ => continue,
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("bad frame {text}: {e}"))?;
        last_seq = last_seq.max(v["seq"].as_u64().unwrap_or(0));
        let seen = match v["type"].as_str() {
            Some("room-info") => v["users"]
                .as_array()
                .is_some_and(|u| u.iter().any(|u| u == peer)),
            Some("user-joined") => v["userId"] == peer,
            Some("error") => return Err(format!("server error while joining: {text}")),
            _ => false,
        };
        if seen {
            return Ok(last_seq);
        }
    }
}

/// Read frames until one of type `ty` arrives (others are skipped), bounded
/// by [`STEP_TIMEOUT`]. `last_seq` follows the server's `seq`.
pub(crate) async fn wait_for(ws: &mut Ws, ty: &str, last_seq: &mut u64) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| format!("no `{ty}` within {STEP_TIMEOUT:?}"))?;
        let text = match next {
            Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
            Some(Ok(Message::Binary(b))) => msgpack_to_json(&b)?,
            Some(Ok(Message::Close(c))) => {
                return Err(format!("closed while waiting for `{ty}`: {c:?}"))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("waiting for `{ty}`: {e}")),
            None => return Err(format!("closed while waiting for `{ty}`")),
        };
        let msg: Incoming<'_> =
            serde_json::from_str(&text).map_err(|e| format!("bad frame {text}: {e}"))?;
        if let Some(seq) = msg.seq {
            *last_seq = (*last_seq).max(seq);
        }
        if msg.ty == ty {
            return Ok(());
        }
        if msg.ty == "error" {
            return Err(format!("server error while waiting for `{ty}`: {text}"));
        }
    }
}

/// Builds ~`target`-byte candidate frames addressed to one peer.
#[derive(Debug, Clone)]
pub(crate) struct FrameBuilder {
    to: String,
    pad: String,
}

impl FrameBuilder {
    /// Frames to `to`, padded so a frame with a 6-digit counter and a
    /// 10-digit timestamp is `target` bytes long.
    pub(crate) fn new(to: &str, target: usize) -> Self {
        let mut b = FrameBuilder {
            to: to.to_string(),
            pad: String::from(
                "candidate:842163049 1 udp 1677729535 203.0.113.7 50123 typ srflx \
                 raddr 10.0.0.7 rport 50123 generation 0 ufrag bnch network-id 1 network-cost 10",
            ),
        };
        let len = b.build(100_000, 1_000_000_000).len();
        if len < target {
            let filler = " tcptype passive";
            while b.build(100_000, 1_000_000_000).len() + filler.len() <= target {
                b.pad.push_str(filler);
            }
            let missing = target - b.build(100_000, 1_000_000_000).len();
            b.pad.push_str(&"x".repeat(missing));
        }
        b
    }

    /// One candidate frame carrying counter `n` and send time `t`.
    pub(crate) fn build(&self, n: u64, t: u64) -> String {
        format!(
            r#"{{"type":"candidate","to":"{}","candidate":{{"candidate":"{}","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"bnch","n":{n},"t":{t}}}}}"#,
            self.to, self.pad
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_size_and_parse() {
        let b = FrameBuilder::new("b1", 350);
        let f = b.build(100_000, 1_000_000_000);
        assert_eq!(f.len(), 350);
        let relayed = f.replacen('{', r#"{"seq":7,"from":"a1","#, 1);
        let m: Incoming<'_> = serde_json::from_str(&relayed).unwrap();
        assert_eq!(m.ty, "candidate");
        assert_eq!(m.from, Some("a1"));
        assert_eq!(m.seq, Some(7));
        let c = m.candidate.unwrap();
        assert_eq!((c.n, c.t), (Some(100_000), Some(1_000_000_000)));
    }
}
