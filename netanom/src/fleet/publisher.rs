//! Publishing: the decision sink on the scoring stage's side, which turns each block and rate
//! limit into a [`DecisionMsg`] and queues it ([`super::outbox`]), and the fleet thread's task
//! that publishes what is queued into JetStream, in order, retrying until it is acknowledged.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, message::PublishMessage};
use netanom_common::{mitigate::BlockEntry, time::Instant};

use super::{
    config::Subjects,
    message::{Action, DecisionMsg, Pattern, VERSION, secs},
    outbox::{Inbox, Kind, Outbound, Outbox},
};
use crate::{
    respond::{Cidr, Decision, DecisionSink, Mode},
    telemetry::fleet::FleetCounters,
};

/// Messages published before their acknowledgements are awaited.
const BATCH: usize = 64;
/// How long an acknowledgement is awaited before the batch is sent again.
const ACK_WAIT: Duration = Duration::from_secs(3);
/// Pause after a failed publish.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// What a decision message says besides the decision: who decided, with what bundle.
#[derive(Clone, Debug)]
pub struct Origin {
    pub gateway: String,
    pub bundle: String,
    pub subjects: Subjects,
    /// Unix ns of this agent's start: with the sequence number, a unique message id.
    pub boot_ns: u64,
}

/// The decision sink: queues this gateway's decisions for the fleet, and tells the fleet's
/// thread the mode in force (remote decisions are applied only while mitigating).
pub struct Publisher {
    origin: Origin,
    outbox: Outbox,
    share: bool,
    seq: u64,
    mitigating: Arc<AtomicBool>,
}

impl Publisher {
    pub fn new(origin: Origin, outbox: Outbox, share: bool, mitigating: Arc<AtomicBool>) -> Publisher {
        Publisher {
            origin,
            outbox,
            share,
            seq: 0,
            mitigating,
        }
    }

    fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("{}-{}-{}", self.origin.gateway, self.origin.boot_ns, self.seq)
    }
}

impl DecisionSink for Publisher {
    fn decided(&mut self, d: &Decision, now: Instant) {
        if !self.share {
            return;
        }
        let id = self.next_id();
        let m = decision_msg(&self.origin, id, d, now);
        self.outbox.push(outbound(&self.origin.subjects, &m));
    }

    fn modes(&mut self, _configured: Mode, effective: Mode) {
        self.mitigating
            .store(effective == Mode::Mitigate, Ordering::Relaxed);
    }
}

/// The queued form of `m`.
pub fn outbound(subjects: &Subjects, m: &DecisionMsg) -> Outbound {
    Outbound {
        subject: subjects.decisions(&m.gateway),
        payload: m.encode(),
        msg_id: Some(m.id.clone()),
        kind: Kind::Decision(m.action),
    }
}

/// The absolute expiry (Unix seconds) of a monotonic one; `None` for 0 (never).
fn expiry(expires_ns: u64, now: Instant) -> Option<f64> {
    (expires_ns != 0).then(|| secs(now.unix_ns + expires_ns.saturating_sub(now.mono_ns)))
}

/// The message for decision `d`, taken at `now`.
pub fn decision_msg(o: &Origin, id: String, d: &Decision, now: Instant) -> DecisionMsg {
    let mut m = DecisionMsg {
        v: VERSION,
        id,
        gateway: o.gateway.clone(),
        action: Action::Block,
        decided_at: secs(now.unix_ns),
        prefix: None,
        rate_limit: None,
        expires_at: None,
        ttl_s: 0,
        reason: String::new(),
        signature: String::new(),
        strikes: 0,
        bundle: o.bundle.clone(),
    };
    match d {
        Decision::Block {
            prefix,
            entry,
            kind,
            reason,
        } => {
            m.prefix = Some(*prefix);
            m.expires_at = expiry(entry.expires_ns, now);
            m.ttl_s = entry.ttl_s;
            m.strikes = entry.strikes;
            m.reason = reason.clone();
            m.signature = kind.signature().into();
        }
        Decision::RateLimit {
            key,
            limit,
            kind,
            reason,
        } => {
            m.action = Action::RateLimit;
            m.rate_limit = Some(pattern(key, limit));
            m.expires_at = expiry(limit.expires_ns, now);
            m.ttl_s = (limit.expires_ns.saturating_sub(now.mono_ns) / 1_000_000_000) as u32;
            m.reason = reason.clone();
            m.signature = kind.signature().into();
        }
    }
    m
}

/// An operator's block or unblock (`netanom block add|del --fleet`).
pub fn manual_msg(
    o: &Origin,
    action: Action,
    prefix: Cidr,
    entry: Option<&BlockEntry>,
    now: Instant,
) -> DecisionMsg {
    let id = format!("{}-manual-{}", o.gateway, now.unix_ns);
    DecisionMsg {
        v: VERSION,
        id,
        gateway: o.gateway.clone(),
        action,
        decided_at: secs(now.unix_ns),
        prefix: Some(prefix),
        rate_limit: None,
        expires_at: entry.and_then(|e| expiry(e.expires_ns, now)),
        ttl_s: entry.map_or(0, |e| e.ttl_s),
        reason: entry.map(|e| reason_text(&e.reason)).unwrap_or_default(),
        signature: "netanom: operator block".into(),
        strikes: entry.map_or(0, |e| e.strikes),
        bundle: o.bundle.clone(),
    }
}

fn reason_text(r: &[u8]) -> String {
    let end = r.iter().position(|&b| b == 0).unwrap_or(r.len());
    String::from_utf8_lossy(&r[..end]).into_owned()
}

fn pattern(
    key: &netanom_common::mitigate::PatternKey,
    limit: &netanom_common::mitigate::RateLimit,
) -> Pattern {
    let dst = if key.family == 4 {
        std::net::IpAddr::from(key.addr[0].to_be_bytes())
    } else {
        let mut o = [0u8; 16];
        for (i, w) in key.addr.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        std::net::IpAddr::from(o)
    };
    let interval = limit.interval_ns.max(1);
    Pattern {
        dst,
        port: key.port,
        proto: key.proto,
        tcp_flags: key.tcp_flags,
        pps: 1e9 / interval as f64,
        burst: (limit.tolerance_ns / interval).max(1) as u32,
    }
}

/// The publishing task: takes queued messages only while it can publish them, a batch at a
/// time, and sends a batch again until JetStream acknowledges all of it (the stream drops the
/// duplicates by message id). Ends when every producer is gone and the queue is empty.
pub async fn publish_loop(js: jetstream::Context, mut inbox: Inbox, counters: Arc<FleetCounters>) {
    let mut batch: Vec<Outbound> = Vec::with_capacity(BATCH);
    let mut failing = false;
    loop {
        if batch.is_empty() && inbox.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        match publish_batch(&js, &batch).await {
            Ok(()) => {
                for m in batch.drain(..) {
                    count(&counters, m.kind);
                }
                if failing {
                    log::info!("fleet: publishing again; what waited has been published");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    log::error!(
                        "fleet: publishing {} failed: {e}. Messages wait in the outbound queue (at most {}) \
                         and are sent when NATS answers; local detection and blocking go on",
                        batch[0].subject,
                        super::outbox::CAPACITY
                    );
                    failing = true;
                }
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
        counters
            .queued
            .store((inbox.len() + batch.len()) as u64, Ordering::Relaxed);
    }
}

fn count(c: &FleetCounters, kind: Kind) {
    match kind {
        Kind::Decision(a) => FleetCounters::bump(&c.published[a.index()]),
        Kind::Alert => FleetCounters::bump(&c.alerts_published),
    }
}

async fn publish_batch(js: &jetstream::Context, batch: &[Outbound]) -> Result<(), String> {
    let mut acks = Vec::with_capacity(batch.len());
    for m in batch {
        let mut p = PublishMessage::build().payload(m.payload.clone().into());
        if let Some(id) = &m.msg_id {
            p = p.message_id(id);
        }
        let ack = js
            .send_publish(m.subject.clone(), p)
            .await
            .map_err(|e| e.to_string())?;
        acks.push(ack);
    }
    for ack in acks {
        match tokio::time::timeout(ACK_WAIT, ack.into_future()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no acknowledgement within {} s", ACK_WAIT.as_secs())),
        }
    }
    Ok(())
}
