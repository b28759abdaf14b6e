//! Interfaces that disappear and come back: a vanished interface is logged (blocks stay
//! pinned and in force), and the program is reattached when it returns, even when it was
//! deleted and recreated under the same name between two checks (a new index).
use std::time::Duration;

use crate::datapath::{Datapath, ModePreference, host};

/// How often the agent checks that its interfaces still exist.
pub const IFACE_CHECK: Duration = Duration::from_secs(1);

/// The interfaces the agent watches, and which of them are down.
pub struct Interfaces {
    pub names: Vec<String>,
    /// Interfaces that disappeared (reattached when they return).
    pub down: Vec<String>,
    /// The index of each interface the program is attached to: an interface deleted and
    /// recreated under the same name between two checks has a new one.
    ifindex: Vec<(String, u32)>,
}

impl Interfaces {
    pub fn new(names: Vec<String>) -> Interfaces {
        let ifindex = names
            .iter()
            .filter_map(|i| Some((i.clone(), host::check_interface(i).ok()?)))
            .collect();
        Interfaces {
            names,
            down: Vec::new(),
            ifindex,
        }
    }

    /// Notices interfaces that disappeared and reattaches to those that came back; returns
    /// whether any attachment changed.
    pub fn check(&mut self, dp: &mut Datapath, mode: ModePreference, egress: bool) -> bool {
        let mut changed = false;
        for i in self.names.clone() {
            let index = host::check_interface(&i).ok();
            if !self.down.contains(&i) {
                if !self.vanished(&i, index) {
                    continue;
                }
                dp.detach(&i);
                self.down.push(i.clone());
                changed = true;
            }
            if let Some(new) = index {
                match dp.attach(&i, mode, egress) {
                    Ok(m) => {
                        log::info!("interface {i} is back: reattached in {m} XDP mode");
                        self.down.retain(|d| *d != i);
                        self.ifindex.retain(|(n, _)| *n != i);
                        self.ifindex.push((i, new));
                        changed = true;
                    }
                    Err(e) => log::warn!("interface {i} is back but reattaching failed (retrying): {e}"),
                }
            }
        }
        changed
    }

    /// Whether the attached interface `i` (now at `index`, or gone) lost its program.
    fn vanished(&self, i: &str, index: Option<u32>) -> bool {
        let known = self.ifindex.iter().find(|(n, _)| n == i).map(|(_, k)| *k);
        match (index, known) {
            (None, _) => {
                log::warn!(
                    "interface {i} disappeared: its traffic is no longer watched; blocks stay pinned \
                     and in force, and netanom reattaches when {i} returns"
                );
                true
            }
            (Some(new), Some(old)) if new != old => {
                log::warn!(
                    "interface {i} was replaced by a new interface of the same name (index {old}, now \
                     {new}), which has no XDP program: reattaching"
                );
                true
            }
            _ => false,
        }
    }
}
