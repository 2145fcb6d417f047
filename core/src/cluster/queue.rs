//! The writer's operation queue: bounded in count and in bytes (what the
//! frames, bodies and payloads of the queued operations weigh), so a Redis that
//! stalls can not make a node buffer without limit. At either bound the
//! operation is refused to its caller: a cross-node send is refused to its
//! sender (`internal`, "cluster unavailable"), a state write is dropped and a
//! full resync scheduled.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::Op;

/// Operations queued, at most.
pub(super) const OP_QUEUE: usize = 65_536;
/// Bytes of queued operations, at most (64 KiB frames would otherwise allow 4 GiB).
pub(super) const OP_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// What an operation weighs besides its payload (keys, ids, bookkeeping).
const OP_OVERHEAD: usize = 96;

#[derive(Debug)]
pub(super) struct OpQueue {
    tx: mpsc::Sender<Op>,
    bytes: AtomicUsize,
}

impl Op {
    /// The bytes this operation holds while queued.
    fn weight(&self) -> usize {
        OP_OVERHEAD
            + match self {
                Op::Deliver { record, .. } => record.len(),
                Op::Publish { payload, .. } => payload.len(),
                Op::Join(m) => m.m.as_ref().map_or(0, |m| m.get().len()),
                _ => 0,
            }
    }
}

impl OpQueue {
    pub(super) fn new() -> (OpQueue, mpsc::Receiver<Op>) {
        let (tx, rx) = mpsc::channel(OP_QUEUE);
        let queue = OpQueue {
            tx,
            bytes: AtomicUsize::new(0),
        };
        (queue, rx)
    }

    /// Queues `op`, or gives it back when the queue is full (by count or bytes).
    pub(super) fn try_send(&self, op: Op) -> Result<(), Op> {
        let weight = op.weight();
        if self.bytes.fetch_add(weight, Ordering::AcqRel) + weight > OP_QUEUE_BYTES {
            self.bytes.fetch_sub(weight, Ordering::AcqRel);
            return Err(op);
        }
        self.tx.try_send(op).map_err(|e| {
            self.bytes.fetch_sub(weight, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(op) | mpsc::error::TrySendError::Closed(op) => op,
            }
        })
    }

    /// The writer took `op` off the queue.
    pub(super) fn taken(&self, op: &Op) {
        self.bytes.fetch_sub(op.weight(), Ordering::AcqRel);
    }

    /// How many more operations fit by count.
    pub(super) fn capacity(&self) -> usize {
        self.tx.capacity()
    }

    /// Bytes queued now.
    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
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
        let op = rx.try_recv().unwrap();
        q.taken(&op);
        assert!(q.try_send(publish(big)).is_ok(), "taking one makes room");
        assert!(q.bytes() <= OP_QUEUE_BYTES);
    }
}
