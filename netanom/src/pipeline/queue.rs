//! The hand-off from the drain stage to the scoring stage: a lock-free single-producer,
//! single-consumer queue (the `ringbuf` crate) of batches, with counted back-pressure.
//!
//! The drain (on the async runtime) pushes; the consumer (its own thread) pops. When the
//! queue is full the producer waits and counts every wait: nothing is dropped here, and if the
//! consumer falls behind for long, the kernel's export ring buffer fills and the kernel counts
//! the records it could not queue (`export_lost`). So every loss is visible.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use super::batch::Batch;
use ringbuf::{
    HeapCons, HeapProd, HeapRb,
    traits::{Consumer as _, Observer as _, Producer as _, Split as _},
};

/// Counters of the queue, shared by both ends.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub batches_in: AtomicU64,
    pub vectors_in: AtomicU64,
    pub batches_out: AtomicU64,
    pub vectors_out: AtomicU64,
    /// Times the producer found the queue full and had to wait.
    pub full_waits: AtomicU64,
}

/// The producer end.
pub struct Sender {
    prod: HeapProd<Batch>,
    stats: Arc<QueueStats>,
    closed: Arc<AtomicBool>,
}

impl Sender {
    /// Queues `batch`, waiting (asynchronously, counted) while the queue is full.
    pub async fn send(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let mut b = batch;
        loop {
            match self.prod.try_push(b) {
                Ok(()) => break,
                Err(back) => {
                    b = back;
                    self.stats.full_waits.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        self.stats.batches_in.fetch_add(1, Ordering::Relaxed);
        self.stats.vectors_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Batches waiting in the queue.
    pub fn queued(&self) -> usize {
        self.prod.occupied_len()
    }

    pub fn stats(&self) -> &Arc<QueueStats> {
        &self.stats
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// The consumer thread; joining it waits until everything queued was consumed.
pub struct Worker {
    handle: Option<thread::JoinHandle<()>>,
}

impl Worker {
    pub fn join(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Creates a queue of `capacity` batches and starts `consume` on its own thread. The
/// thread drains the queue until the [`Sender`] is dropped and the queue is empty.
pub fn start(capacity: usize, mut consume: impl FnMut(Batch) + Send + 'static) -> (Sender, Worker) {
    let (prod, cons): (HeapProd<Batch>, HeapCons<Batch>) = HeapRb::new(capacity.max(1)).split();
    let stats = Arc::new(QueueStats::default());
    let closed = Arc::new(AtomicBool::new(false));
    let (st, cl) = (stats.clone(), closed.clone());
    let handle = thread::Builder::new()
        .name("netanom-consumer".into())
        .spawn(move || {
            let mut cons = cons;
            loop {
                match cons.try_pop() {
                    Some(b) => {
                        let n = b.len() as u64;
                        consume(b);
                        st.batches_out.fetch_add(1, Ordering::Relaxed);
                        st.vectors_out.fetch_add(n, Ordering::Relaxed);
                    }
                    None if cl.load(Ordering::Acquire) && cons.is_empty() => break,
                    None => thread::sleep(Duration::from_micros(500)),
                }
            }
        })
        .ok();
    (Sender { prod, stats, closed }, Worker { handle })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use netanom_common::flow::FlowRecord;

    use super::*;

    fn flows(n: usize) -> Batch {
        Batch::Flows {
            records: vec![FlowRecord::default(); n],
            features: vec![0.0; n],
            dim: 1,
        }
    }

    #[tokio::test]
    async fn everything_sent_is_consumed_and_counted() {
        let seen = Arc::new(Mutex::new(0usize));
        let s2 = seen.clone();
        let (mut tx, worker) = start(2, move |b| {
            thread::sleep(Duration::from_millis(2)); // a slow consumer forces waits
            *s2.lock().unwrap() += b.len();
        });
        for _ in 0..20 {
            tx.send(flows(3)).await;
        }
        tx.send(flows(0)).await; // empty batches are not queued
        let stats = tx.stats().clone();
        drop(tx);
        worker.join();
        assert_eq!(*seen.lock().unwrap(), 60);
        assert_eq!(stats.batches_in.load(Ordering::Relaxed), 20);
        assert_eq!(stats.vectors_out.load(Ordering::Relaxed), 60);
        assert!(
            stats.full_waits.load(Ordering::Relaxed) > 0,
            "back-pressure was counted"
        );
    }
}
