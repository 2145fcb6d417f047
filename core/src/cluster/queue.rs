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
/// Record buffers the writer gives back once their bundle is published, kept
/// for new deliveries to be written into (at most this many, each at most
/// [`SPARE_CAPACITY`]; more are freed): a record that starts in one does not
/// grow from a few hundred bytes to 64 KiB by reallocation and copying, and
/// its memory is still warm in the cache.
const SPARES: usize = 4;
const SPARE_CAPACITY: usize = 4 * COALESCE_BYTES;

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
    /// Emptied record buffers, for new deliveries (see [`SPARES`]).
    spares: Vec<String>,
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
        // A lent buffer counts at its capacity: near the bound, a fresh one.
        let lend = p
            .spares
            .last()
            .is_some_and(|b| p.fits(OP_OVERHEAD + b.capacity()));
        let buffer = if lend { p.spares.pop() } else { None };
        let op = Op::Deliver {
            node: node.clone(),
            record: Record::written_in(buffer.unwrap_or_default(), write),
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
    /// Moves queued operations into `batch` until they count `limit`
    /// ([`Op::count`]: a delivery with several records counts each; the last
    /// one moved may pass it); returns what they count (0: none queued).
    pub(super) fn take(&self, batch: &mut Vec<Op>, limit: usize) -> usize {
        let mut p = lock(&self.0.pending);
        let mut count = 0;
        while count < limit {
            let Some(op) = p.pop() else { break };
            count += op.count();
            batch.push(op);
        }
        count
    }

    /// Waits for operations, then [`take`](Self::take)s them. Cancel-safe:
    /// what it did not move stays queued.
    pub(super) async fn recv_many(&mut self, batch: &mut Vec<Op>, limit: usize) -> usize {
        loop {
            // Registered before looking, so a send in between wakes it (a
            // permit left by `notify_one` would too; this does not rely on it).
            let ready = self.0.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let count = self.take(batch, limit);
            if count > 0 {
                return count;
            }
            ready.await;
        }
    }

    /// Gives back the buffers of records written to Redis, for new deliveries.
    pub(super) fn recycle(&self, records: impl IntoIterator<Item = Record>) {
        let mut p = lock(&self.0.pending);
        for record in records {
            if p.spares.len() >= SPARES {
                break;
            }
            let buffer = record.into_buffer();
            if buffer.capacity() <= SPARE_CAPACITY {
                p.spares.push(buffer);
            }
        }
    }

    /// Closes the queue for good (later sends are refused to their callers)
    /// and returns what was still queued, for the writer to refuse.
    pub(super) fn close(&mut self) -> Vec<Op> {
        let mut p = lock(&self.0.pending);
        p.closed = true;
        p.spares = Vec::new();
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
        let (q, rx) = OpQueue::new();
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
        let mut one = Vec::new();
        assert_eq!(rx.take(&mut one, 1), 1, "one taken");
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

    /// Capacities of the records of new deliveries, one per delivery (they
    /// alternate between two nodes, so none joins another), each checked to
    /// hold its one delivery only.
    fn new_record_capacities(q: &OpQueue, rx: &OpReceiver, n: usize) -> Vec<usize> {
        let nodes: [Arc<str>; 2] = ["a".into(), "b".into()];
        for k in 0..n {
            assert!(q.deliver(&nodes[k % 2], record("{}")));
        }
        let mut batch = Vec::new();
        assert_eq!(rx.take(&mut batch, usize::MAX), n);
        batch
            .into_iter()
            .map(|op| match op {
                Op::Deliver { record, .. } => {
                    let views = record.split_views();
                    assert_eq!(views.len(), 1, "only its own delivery");
                    assert_eq!((views[0].b, record.count()), ("{}", 1));
                    record.capacity()
                }
                _ => unreachable!("only deliveries were queued"),
            })
            .collect()
    }

    #[test]
    fn written_records_lend_their_buffers_to_new_deliveries_within_bounds() {
        let (q, rx) = OpQueue::new();
        let sized = |capacity: usize| {
            Record::written_in(String::with_capacity(capacity), record("{\"old\":1}"))
        };
        // More than are kept, and one too large to keep.
        let given = (0..SPARES + 2).map(|_| sized(8192));
        rx.recycle(std::iter::once(sized(SPARE_CAPACITY + 1)).chain(given));
        let capacities = new_record_capacities(&q, &rx, SPARES + 1);
        let lent = capacities.iter().filter(|&&c| c >= 8192).count();
        assert_eq!(lent, SPARES, "{capacities:?}");
        assert!(
            capacities.iter().all(|&c| c <= SPARE_CAPACITY),
            "{capacities:?}"
        );
        assert_eq!(q.bytes(), 0, "what was taken is no longer counted");
        // Near the byte bound a buffer is not lent: it counts at its capacity.
        rx.recycle([sized(8192)]);
        let filler = OP_QUEUE_BYTES - 2 * OP_OVERHEAD - 4096;
        assert!(q.try_send(publish(filler)).is_ok());
        assert!(q.deliver(&"a".into(), record("{}")), "a fresh buffer fits");
        let mut batch = Vec::new();
        rx.take(&mut batch, 2);
        assert!(
            matches!(&batch[1], Op::Deliver { record, .. } if record.capacity() < 8192),
            "not the spare"
        );
        assert_eq!(new_record_capacities(&q, &rx, 1), vec![8192], "still kept");
    }
}
