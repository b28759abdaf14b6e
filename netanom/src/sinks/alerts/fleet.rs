//! The fleet's alert destination: every alert also goes to the fleet's outbound queue, as the
//! EVE JSON object with `host` set to this gateway, for `<prefix>.alerts.<gateway_id>` (the
//! alerts stream), besides wherever `agent.alerts` sends it. Queuing never waits: with NATS
//! down the alerts wait in the queue, and what does not fit is counted.
use crate::{
    fleet::outbox::{Kind, Outbound, Outbox},
    respond::{Alert, AlertError, AlertSink},
};

/// Writes to `inner`, and queues each alert for the fleet.
pub struct FleetAlerts {
    inner: Box<dyn AlertSink>,
    outbox: Outbox,
    subject: String,
    gateway: String,
    /// With the agent's start, a unique message id per alert (a retried publish is stored once).
    boot_ns: u64,
    seq: u64,
}

impl FleetAlerts {
    pub fn new(
        inner: Box<dyn AlertSink>,
        outbox: Outbox,
        subject: String,
        gateway: String,
        boot_ns: u64,
    ) -> Self {
        FleetAlerts {
            inner,
            outbox,
            subject,
            gateway,
            boot_ns,
            seq: 0,
        }
    }
}

/// `alert`'s EVE JSON with `"host"` (Suricata's sensor name) first.
pub fn with_host(alert: &Alert, gateway: &str) -> String {
    let json = alert.to_json();
    let host = serde_json::to_string(gateway).unwrap_or_default();
    match json.strip_prefix('{') {
        Some(rest) if rest != "}" => format!("{{\"host\":{host},{rest}"),
        _ => format!("{{\"host\":{host}}}"),
    }
}

impl AlertSink for FleetAlerts {
    fn write(&mut self, alert: &Alert) -> Result<(), AlertError> {
        self.seq += 1;
        self.outbox.push(Outbound {
            subject: self.subject.clone(),
            payload: with_host(alert, &self.gateway).into_bytes(),
            msg_id: Some(format!("{}-a-{}-{}", self.gateway, self.boot_ns, self.seq)),
            kind: Kind::Alert,
        });
        self.inner.write(alert)
    }

    fn flush(&mut self) -> Result<(), AlertError> {
        self.inner.flush()
    }
}
