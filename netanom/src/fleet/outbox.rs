//! The outbound queue: decisions and alerts waiting to be published, bounded.
//!
//! The scoring stage pushes without ever waiting: a full queue (NATS down long enough for
//! [`CAPACITY`] messages to pile up) drops the message, counts it and logs once until the queue
//! has room again. The fleet's thread takes messages only while it can publish them, so what
//! waits stays here, in order, and goes out on reconnect.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::mpsc;

use crate::telemetry::fleet::FleetCounters;

/// Messages the queue holds.
pub const CAPACITY: usize = 10_000;

/// What a message is, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Decision(super::message::Action),
    Alert,
}

/// One message to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Outbound {
    pub subject: String,
    pub payload: Vec<u8>,
    /// JetStream's de-duplication key, for messages that may be sent twice (a retry after a
    /// lost acknowledgement).
    pub msg_id: Option<String>,
    pub kind: Kind,
}

/// The producers' end (cheap to clone: the decision sink and the alert sink each hold one).
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Outbound>,
    counters: Arc<FleetCounters>,
    overflowing: Arc<AtomicBool>,
}

/// The fleet thread's end.
pub type Inbox = mpsc::Receiver<Outbound>;

/// A queue of `capacity` messages.
pub fn outbox(capacity: usize, counters: Arc<FleetCounters>) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(capacity);
    let o = Outbox {
        tx,
        counters,
        overflowing: Arc::new(AtomicBool::new(false)),
    };
    (o, rx)
}

impl Outbox {
    /// Queues `m`; never waits.
    pub fn push(&self, m: Outbound) {
        match self.tx.try_send(m) {
            Ok(()) => {
                if self.overflowing.swap(false, Ordering::Relaxed) {
                    log::info!("fleet: the outbound queue has room again");
                }
            }
            Err(mpsc::error::TrySendError::Full(m)) => {
                FleetCounters::bump(&self.counters.overflow);
                if !self.overflowing.swap(true, Ordering::Relaxed) {
                    log::error!(
                        "fleet: the outbound queue is full ({} messages wait for NATS): {} and what \
                         follows are dropped, and counted, until it has room; local detection and \
                         blocking go on",
                        self.tx.max_capacity(),
                        m.subject
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        self.show_len();
    }

    /// Messages waiting now.
    pub fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn show_len(&self) {
        self.counters.queued.store(self.len() as u64, Ordering::Relaxed);
    }
}
