//! The writer's operation queue: in order, bounded in count and in bytes (what
//! the frames, bodies and payloads of the queued operations hold, allocated
//! capacity included), so a Redis that stalls can not make a node buffer
//! without limit. At either bound, and once the writer has closed it, the
//! operation is refused to its caller: a cross-node send is refused to its
//! sender (`internal`, "cluster unavailable"), a state write is dropped and a
//! full resync scheduled.
//!
//! A delivery is written into the queue in place: when the last queued
//! operation is a delivery to the same node, the new record is appended to it
//! (up to [`COALESCE_BYTES`]), so consecutive deliveries to one node cost no
//! allocation, no queue slot and no wake-up of the writer each, and reach it
//! as a ready part of their bundle. Only the tail is ever extended, so the
//! order of everything queued is kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::bundle::Record;
use super::{lock, Op};

/// Operations queued, at most.
pub(super) const OP_QUEUE: usize = 65_536;
/// Bytes of queued operations, at most (64 KiB frames would otherwise allow 4 GiB).
pub(super) const OP_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// What an operation weighs besides its payload (keys, ids, bookkeeping).
const OP_OVERHEAD: usize = 96;
/// A queued delivery takes more records while it holds less than this (then a
/// new one starts, so it ends at most one record past it): a bundle is
/// published at 256 KiB anyway, and one record set is re-read as a whole when
/// its node does not listen.
const COALESCE_BYTES: usize = 64 * 1024;

impl Op {
    /// What it counts for the writer's pace: its deliveries, or one.
    pub(super) fn count(&self) -> usize {
        match self {
            Op::Deliver { record, .. } => record.count(),
            _ => 1,
        }
    }

    /// The bytes this operation holds while queued (a delivery's records by
    /// their allocation, which grows by doubling as records join it).
    fn weight(&self) -> usize {
        OP_OVERHEAD
            + match self {
                Op::Deliver { record, .. } => record.capacity(),
                Op::Publish { payload, .. } => payload.len(),
                Op::Join(m) => m.m.as_ref().map_or(0, |m| m.get().len()),
                _ => 0,
            }
    }
}

#[derive(Debug, Default)]
struct Pending {
    ops: VecDeque<Op>,
    bytes: usize,
    /// The writer stopped for good: nothing more is queued.
    closed: bool,
}

impl Pending {
    /// Whether `weight` more bytes in one more operation fit.
    fn fits(&self, weight: usize) -> bool {
        !self.closed && self.ops.len() < OP_QUEUE && self.bytes + weight <= OP_QUEUE_BYTES
    }

    fn pop(&mut self) -> Option<Op> {
        let op = self.ops.pop_front()?;
        self.bytes -= op.weight();
        Some(op)
    }
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// The writer waits on it; one permit wakes it for everything queued.
    ready: Notify,
}

/// The senders' side.
#[derive(Debug)]
pub(super) struct OpQueue(Arc<Shared>);

/// The writer's side.
#[derive(Debug)]
pub(super) struct OpReceiver(Arc<Shared>);

impl OpQueue {
    pub(super) fn new() -> (OpQueue, OpReceiver) {
        let shared = Arc::new(Shared::default());
        (OpQueue(shared.clone()), OpReceiver(shared))
    }

    /// Queues `op`, or gives it back when the queue is full (by count or
    /// bytes) or closed.
    pub(super) fn try_send(&self, op: Op) -> Result<(), Op> {
        let weight = op.weight();
        let mut p = lock(&self.0.pending);
        if !p.fits(weight) {
            return Err(op);
        }
        p.bytes += weight;
        p.ops.push_back(op);
        drop(p);
        self.0.ready.notify_one();
        Ok(())
    }

    /// Queues a delivery to `node`, the record that `write` appends to a
    /// buffer; false when the queue is full (by count or bytes) or closed,
    /// nothing queued then.
    pub(super) fn deliver(&self, node: &Arc<str>, write: impl FnOnce(&mut String)) -> bool {
        let mut p = lock(&self.0.pending);
        let p = &mut *p;
        if p.closed {
            return false;
        }
        if let Some(Op::Deliver { node: to, record }) = p.ops.back_mut() {
            if *to == *node && record.len() < COALESCE_BYTES {
                let (len, held) = (record.len(), record.capacity());
                record.append_with(write);
                if p.bytes + (record.capacity() - held) > OP_QUEUE_BYTES {
                    // Over the bound: the record is taken back, and the room
                    // it grew by given back, so the count stays exact.
                    record.take_back(len, held);
                    p.bytes += record.capacity() - held;
                    return false;
                }
                p.bytes += record.capacity() - held;
                return true;
            }
        }
        let op = Op::Deliver {
            node: node.clone(),
            record: Record::written(write),
        };
        let weight = op.weight();
        if !p.fits(weight) {
            return false;
        }
        p.bytes += weight;
        p.ops.push_back(op);
        self.0.ready.notify_one();
        true
    }

    /// How many more operations fit by count.
    pub(super) fn capacity(&self) -> usize {
        OP_QUEUE.saturating_sub(lock(&self.0.pending).ops.len())
    }

    /// Bytes queued now.
    pub(super) fn bytes(&self) -> usize {
        lock(&self.0.pending).bytes
    }
}

impl OpReceiver {
    /// The next operation, if one is queued.
    pub(super) fn try_recv(&mut self) -> Option<Op> {
        lock(&self.0.pending).pop()
    }

    /// Waits for operations, then moves them into `batch` until they count
    /// `limit` ([`Op::count`]: a delivery with several records counts each;
    /// the last one moved may pass it); returns what they count. Cancel-safe:
    /// what it did not move stays queued.
    pub(super) async fn recv_many(&mut self, batch: &mut Vec<Op>, limit: usize) -> usize {
        loop {
            // Registered before looking, so a send in between wakes it (a
            // permit left by `notify_one` would too; this does not rely on it).
            let ready = self.0.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut p = lock(&self.0.pending);
                let mut count = 0;
                while count < limit {
                    let Some(op) = p.pop() else { break };
                    count += op.count();
                    batch.push(op);
                }
                if count > 0 {
                    return count;
                }
            }
            ready.await;
        }
    }

    /// Closes the queue for good (later sends are refused to their callers)
    /// and returns what was still queued, for the writer to refuse.
    pub(super) fn close(&mut self) -> Vec<Op> {
        let mut p = lock(&self.0.pending);
        p.closed = true;
        std::iter::from_fn(|| p.pop()).collect()
    }

    /// The next operation, once one is queued.
    pub(super) async fn recv(&mut self) -> Op {
        let mut one = Vec::with_capacity(1);
        self.recv_many(&mut one, 1).await;
        one.pop().expect("recv_many moved one")
    }

    pub(super) fn is_empty(&self) -> bool {
        lock(&self.0.pending).ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(len: usize) -> Op {
        Op::Publish {
            channel: "c".into(),
            payload: "x".repeat(len),
        }
    }

    fn record(body: &str) -> impl FnOnce(&mut String) + '_ {
        move |out| Record::write(out, "n1", "r", ["s"].into_iter(), true, None, body)
    }

    #[test]
    fn bounded_by_bytes_and_given_back_when_full() {
        let (q, mut rx) = OpQueue::new();
        let big = OP_QUEUE_BYTES / 4;
        for _ in 0..3 {
            assert!(q.try_send(publish(big)).is_ok());
        }
        assert!(
            q.try_send(publish(big)).is_err(),
            "the fourth would pass the byte bound"
        );
        assert!(q.try_send(publish(10)).is_ok(), "small ones still fit");
        let node: Arc<str> = "n2".into();
        let huge = format!("{{\"a\":\"{}\"}}", "x".repeat(big));
        assert!(
            !q.deliver(&node, record(&huge)),
            "a delivery is bounded too"
        );
        assert!(rx.try_recv().is_some());
        assert!(q.try_send(publish(big)).is_ok(), "taking one makes room");
        assert!(q.bytes() <= OP_QUEUE_BYTES);
    }

    #[tokio::test]
    async fn deliveries_to_one_node_join_the_tail_and_keep_the_order() {
        let (q, mut rx) = OpQueue::new();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        assert!(q.deliver(&a, record("{\"n\":1}")));
        assert!(q.deliver(&a, record("{\"n\":2}")));
        assert!(q.try_send(publish(3)).is_ok());
        assert!(q.deliver(&a, record("{\"n\":3}")));
        assert!(q.deliver(&b, record("{\"n\":4}")));
        assert!(q.deliver(&a, record("{\"n\":5}")));
        let mut batch = Vec::new();
        assert_eq!(rx.recv_many(&mut batch, 100).await, 6);
        let seen: Vec<(String, Vec<&str>)> = batch
            .iter()
            .map(|op| match op {
                Op::Deliver { node, record } => (
                    node.to_string(),
                    record.split_views().iter().map(|d| d.b).collect(),
                ),
                _ => ("publish".into(), vec![]),
            })
            .collect();
        let want = [
            ("a", vec!["{\"n\":1}", "{\"n\":2}"]),
            ("publish", vec![]),
            ("a", vec!["{\"n\":3}"]),
            ("b", vec!["{\"n\":4}"]),
            ("a", vec!["{\"n\":5}"]),
        ];
        let want: Vec<(String, Vec<&str>)> =
            want.into_iter().map(|(n, b)| (n.to_owned(), b)).collect();
        assert_eq!(seen, want);
        assert_eq!(q.bytes(), 0, "every byte accounted for");
    }

    #[tokio::test]
    async fn a_batch_is_limited_by_deliveries_and_a_closed_queue_refuses() {
        let (q, mut rx) = OpQueue::new();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        for n in 0..5 {
            assert!(q.deliver(&a, record(&format!("{{\"n\":{n}}}"))));
        }
        assert!(q.deliver(&b, record("{}")));
        let mut batch = Vec::new();
        assert_eq!(
            rx.recv_many(&mut batch, 3).await,
            5,
            "one operation of five passes 3"
        );
        assert_eq!(batch.len(), 1, "and the next waits for the next batch");
        assert!(q.deliver(&b, record("{}")), "joins the one still queued");
        assert!(q.try_send(publish(1)).is_ok());
        let left = rx.close();
        assert_eq!(left.iter().map(Op::count).collect::<Vec<_>>(), vec![2, 1]);
        assert!(!q.deliver(&b, record("{}")), "closed: refused");
        assert!(q.try_send(publish(1)).is_err(), "closed: given back");
        assert_eq!(q.bytes(), 0);
    }
}
