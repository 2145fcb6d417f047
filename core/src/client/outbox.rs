//! The outbox: every client message that the server has not acknowledged yet,
//! whether it was never written (offline queue) or written on a connection that
//! may have lost it (in flight). Bounded by count and bytes.
//!
//! One structure for both, because both must survive a reconnect in order: after a
//! resume the whole outbox is written again, oldest first; the server acknowledges
//! ids it already has without delivering them twice (PROTOCOL.md §3.1).

use std::collections::VecDeque;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::error::{Error, ErrorCode, Result};
use crate::protocol::Frame;

/// Where the outcome of one message goes: `Ok(reply)` (the `room-info` of a join,
/// `null` for an `ack`) or the error.
pub(crate) type ReplyTx = oneshot::Sender<Result<Value>>;

/// What the driver must know about a message beyond its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A `join`: answered by `room-info` for that room.
    Join { room: String, rejoin: bool },
    /// A `leave` of one room, or of every room (`None`).
    Leave(Option<String>),
    /// Anything else: answered by `ack`.
    Other,
}

/// One unacknowledged message.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) kind: Kind,
    pub(crate) text: Frame,
    /// `None` once answered (a join whose `ack` came before its `room-info`), or
    /// for the client's own re-joins.
    pub(crate) reply: Option<ReplyTx>,
    /// Written on the current connection (and not since found dropped by the
    /// server's rate limit).
    pub(crate) written: bool,
    /// Written at least once in the current server session (on this connection or
    /// an earlier one that was resumed): the server may have acted on it.
    pub(crate) sent: bool,
}

impl Entry {
    /// Answers the caller, if it still listens.
    pub(crate) fn answer(&mut self, result: Result<Value>) {
        if let Some(tx) = self.reply.take() {
            // The caller may have dropped its `Reply`; the message was sent anyway.
            let _ = tx.send(result);
        }
    }
}

/// The bounded outbox.
#[derive(Debug)]
pub(crate) struct Outbox {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    max_message_bytes: usize,
    next_id: u64,
}

impl Outbox {
    pub(crate) fn new(max_messages: usize, max_bytes: usize, max_message_bytes: usize) -> Self {
        Outbox {
            entries: VecDeque::new(),
            bytes: 0,
            max_messages,
            max_bytes,
            max_message_bytes,
            next_id: 1,
        }
    }

    /// Number of unacknowledged messages.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of unacknowledged message text.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds a message (its `id` is assigned here) and returns the receiver of its
    /// outcome.
    ///
    /// At the bound the message is refused with [`Error::QueueFull`] and nothing is
    /// queued: the caller decides whether to drop it, wait for earlier replies and
    /// retry, or give up. Dropping the oldest queued message instead would break the
    /// ordering and exactly-once promises for a message the caller believes sent.
    /// A message longer than the server's frame limit is refused with
    /// `message-too-big`: the server would close the connection (1009) and the
    /// retransmission after the reconnect would do it again, forever.
    pub(crate) fn push(
        &mut self,
        kind: Kind,
        mut fields: Map<String, Value>,
    ) -> Result<(u64, oneshot::Receiver<Result<Value>>)> {
        let id = self.next_id;
        fields.insert("id".to_owned(), Value::from(id));
        let text = serde_json::to_string(&fields)
            .map_err(|e| Error::protocol(ErrorCode::InvalidMessage, e.to_string()))?;
        if text.len() > self.max_message_bytes {
            return Err(Error::protocol(
                ErrorCode::MessageTooBig,
                format!(
                    "the message is {} bytes, the limit is {}",
                    text.len(),
                    self.max_message_bytes
                ),
            ));
        }
        if self.entries.len() >= self.max_messages {
            return Err(Error::QueueFull(format!(
                "{} messages are waiting for the server's acknowledgement (limit {})",
                self.entries.len(),
                self.max_messages
            )));
        }
        if self.bytes + text.len() > self.max_bytes {
            return Err(Error::QueueFull(format!(
                "{} bytes are waiting for the server's acknowledgement; {} more would pass the limit of {}",
                self.bytes,
                text.len(),
                self.max_bytes
            )));
        }
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        self.bytes += text.len();
        self.entries.push_back(Entry {
            id,
            kind,
            text: Frame::from(text),
            reply: Some(tx),
            written: false,
            sent: false,
        });
        Ok((id, rx))
    }

    /// Adds the client's own re-join of `room` in front of everything else, outside
    /// the bound (one per room the application had joined, which it already paid
    /// for): after a failed resume the rooms must be joined before queued messages
    /// addressed to them are sent.
    pub(crate) fn push_rejoin_front(&mut self, rooms: &[String], join_fields: &Map<String, Value>) {
        for room in rooms.iter().rev() {
            let id = self.next_id;
            self.next_id += 1;
            let mut fields = join_fields.clone();
            fields.insert("type".to_owned(), Value::from("join"));
            fields.insert("roomId".to_owned(), Value::from(room.as_str()));
            fields.insert("id".to_owned(), Value::from(id));
            let text = Value::Object(fields).to_string();
            self.bytes += text.len();
            let kind = Kind::Join {
                room: room.clone(),
                rejoin: true,
            };
            self.entries.push_front(Entry {
                id,
                kind,
                text: Frame::from(text),
                reply: None,
                written: false,
                sent: false,
            });
        }
    }

    /// The texts not yet written on this connection, oldest first, as many as keep
    /// at most `max_in_flight` messages written but unacknowledged; they count as
    /// written from now on. The rest wait for acknowledgements to free slots.
    pub(crate) fn take_unwritten(&mut self, max_in_flight: usize) -> Vec<Frame> {
        let mut room = max_in_flight.saturating_sub(self.in_flight());
        let mut out = Vec::new();
        for e in self.entries.iter_mut().filter(|e| !e.written) {
            if room == 0 {
                break;
            }
            room -= 1;
            e.written = true;
            e.sent = true;
            out.push(e.text.clone());
        }
        out
    }

    /// Messages written on this connection and not acknowledged yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.entries.iter().filter(|e| e.written).count()
    }

    /// A new connection, or the server dropped messages (rate limit): everything
    /// not acknowledged is to be written again, in order.
    pub(crate) fn mark_all_unwritten(&mut self) {
        for e in &mut self.entries {
            e.written = false;
        }
    }

    /// Removes and returns the message with this `id`.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Entry> {
        // Acknowledgements come in order, so this is almost always the front.
        let pos = self.entries.iter().position(|e| e.id == id)?;
        let entry = self.entries.remove(pos)?;
        self.bytes -= entry.text.len();
        Some(entry)
    }

    /// Removes and returns the oldest message matching `pred`.
    pub(crate) fn remove_first(&mut self, pred: impl FnMut(&Entry) -> bool) -> Option<Entry> {
        let pos = self.entries.iter().position(pred)?;
        let entry = self.entries.remove(pos)?;
        self.bytes -= entry.text.len();
        Some(entry)
    }

    /// Removes and returns every message matching `pred`.
    pub(crate) fn remove_where(&mut self, mut pred: impl FnMut(&Entry) -> bool) -> Vec<Entry> {
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            if pred(&e) {
                self.bytes -= e.text.len();
                removed.push(e);
            } else {
                kept.push_back(e);
            }
        }
        self.entries = kept;
        removed
    }

    /// Removes everything (the client is closed).
    pub(crate) fn drain(&mut self) -> Vec<Entry> {
        self.bytes = 0;
        self.entries.drain(..).collect()
    }
}

/// Reads a message id echoed by the server (`ack.id`, `error.ref`): ours are
/// integers, but a server may echo them as strings.
pub(crate) fn parse_id(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(n: usize) -> Map<String, Value> {
        let Value::Object(m) = json!({"type":"message","data": "x".repeat(n)}) else {
            unreachable!()
        };
        m
    }

    #[test]
    fn ids_increase_and_are_in_the_text() {
        let mut o = Outbox::new(10, 10_000, 1000);
        let (a, _) = o.push(Kind::Other, msg(1)).unwrap();
        let (b, _) = o.push(Kind::Other, msg(1)).unwrap();
        assert_eq!((a, b), (1, 2));
        let texts = o.take_unwritten(usize::MAX);
        let v: Value = serde_json::from_str(texts[1].as_str()).unwrap();
        assert_eq!(v["id"], 2);
        assert_eq!(v["type"], "message");
        assert!(
            o.take_unwritten(usize::MAX).is_empty(),
            "written once per connection"
        );
        o.mark_all_unwritten();
        assert_eq!(
            o.take_unwritten(usize::MAX).len(),
            2,
            "a new connection writes everything again"
        );
    }

    #[test]
    fn in_flight_cap_writes_oldest_first_and_waits_for_acks() {
        let mut o = Outbox::new(10, 10_000, 1000);
        for _ in 0..5 {
            o.push(Kind::Other, msg(1)).unwrap();
        }
        let ids = |texts: Vec<Frame>| -> Vec<u64> {
            texts
                .iter()
                .map(|t| {
                    serde_json::from_str::<Value>(t.as_str()).unwrap()["id"]
                        .as_u64()
                        .unwrap()
                })
                .collect()
        };
        assert_eq!(ids(o.take_unwritten(2)), [1, 2]);
        assert_eq!(o.in_flight(), 2);
        assert!(o.take_unwritten(2).is_empty(), "the cap is reached");
        o.remove(1).unwrap();
        assert_eq!(ids(o.take_unwritten(2)), [3]);
        // Dropped by the server: written again, in order, still under the cap.
        o.mark_all_unwritten();
        assert_eq!(ids(o.take_unwritten(2)), [2, 3]);
        assert!(o.entries.iter().take(2).all(|e| e.sent));
        assert!(!o.entries[2].sent, "never written");
    }

    #[test]
    fn remove_first_takes_only_the_oldest_match() {
        let mut o = Outbox::new(10, 10_000, 1000);
        o.push(Kind::Other, msg(1)).unwrap();
        o.push(Kind::Other, msg(1)).unwrap();
        assert_eq!(o.remove_first(|e| e.kind == Kind::Other).unwrap().id, 1);
        assert_eq!(o.len(), 1);
        assert!(o.remove_first(|e| e.id == 7).is_none());
    }

    #[test]
    fn count_bound_refuses_with_queue_full_and_keeps_the_rest() {
        let mut o = Outbox::new(3, 10_000, 1000);
        for _ in 0..3 {
            o.push(Kind::Other, msg(1)).unwrap();
        }
        let err = o.push(Kind::Other, msg(1)).unwrap_err();
        assert_eq!(err.code(), "queue-full");
        assert_eq!(o.len(), 3);
        // An acknowledgement frees a slot; the refused message took no id.
        assert!(o.remove(1).is_some());
        let (id, _) = o.push(Kind::Other, msg(1)).unwrap();
        assert_eq!(id, 4);
    }

    #[test]
    fn byte_bound_counts_the_serialized_text() {
        let mut o = Outbox::new(100, 200, 1000);
        o.push(Kind::Other, msg(100)).unwrap();
        let used = o.bytes();
        assert!(used > 100 && used < 200);
        assert_eq!(
            o.push(Kind::Other, msg(100)).unwrap_err().code(),
            "queue-full"
        );
        o.push(Kind::Other, msg(1)).unwrap();
        o.remove(1).unwrap();
        o.remove(2).unwrap();
        assert_eq!(o.bytes(), 0);
        assert_eq!(
            o.push(Kind::Other, msg(2000)).unwrap_err().protocol_code(),
            Some(ErrorCode::MessageTooBig)
        );
    }

    #[test]
    fn rejoins_go_first_and_outside_the_bound() {
        let mut o = Outbox::new(1, 10_000, 1000);
        o.push(Kind::Other, msg(1)).unwrap();
        o.push_rejoin_front(&["a".into(), "b".into()], &Map::new());
        let texts: Vec<Value> = o
            .take_unwritten(usize::MAX)
            .iter()
            .map(|t| serde_json::from_str(t.as_str()).unwrap())
            .collect();
        assert_eq!(texts[0]["roomId"], "a");
        assert_eq!(texts[1]["roomId"], "b");
        assert_eq!(texts[2]["type"], "message");
        let joins = o.remove_where(|e| matches!(e.kind, Kind::Join { .. }));
        assert_eq!(joins.len(), 2);
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn answering_a_dropped_reply_is_harmless() {
        let mut o = Outbox::new(10, 10_000, 1000);
        let (id, rx) = o.push(Kind::Other, msg(1)).unwrap();
        drop(rx);
        o.remove(id).unwrap().answer(Ok(Value::Null));
        let (id, mut rx) = o.push(Kind::Other, msg(1)).unwrap();
        o.remove(id).unwrap().answer(Ok(Value::Null));
        assert_eq!(rx.try_recv().unwrap().unwrap(), Value::Null);
    }

    #[test]
    fn ids_are_parsed_from_numbers_and_strings() {
        assert_eq!(parse_id(&json!(7)), Some(7));
        assert_eq!(parse_id(&json!("7")), Some(7));
        assert_eq!(parse_id(&json!("x")), None);
        assert_eq!(parse_id(&json!(null)), None);
    }
}
