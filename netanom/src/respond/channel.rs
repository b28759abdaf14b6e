//! Acting on a beacon. The channel's inside host is the likely infected machine: it is never
//! blocked (it is the victim, and blocking it would cut its user off); the alert names it and
//! the remote peer. With `detection.block_beacon_peers`, the peer is blocked as a source (in
//! observe mode: would be), through the same rails as any offender, which cuts the channel at
//! the gateway.
use netanom_common::time::Instant;

use super::{alert::Action, enforcer::EnforceError, responder::Responder};
use crate::detect::{Finding, Subject};

impl Responder {
    pub(super) fn on_channel(&mut self, f: &Finding, now: Instant) -> Result<(), EnforceError> {
        let Subject::Channel {
            inside,
            peer,
            port,
            proto,
            block_peer,
        } = f.subject
        else {
            return Ok(());
        };
        if block_peer {
            return self.on_source(peer, f, now);
        }
        if self.quiet(
            format!("beacon {inside} {peer} {port} {proto}"),
            now,
            self.cfg.block_ttl,
        ) {
            return Ok(());
        }
        let a = self
            .base_alert(f, Action::Allowed, inside, peer, proto, now)
            .with_reason(format!(
                "{} (detection.block_beacon_peers is off: alert only)",
                f.reason
            ));
        self.write(&a);
        Ok(())
    }
}
