//! The status file: what the running agent writes to `<state_dir>/status.json` every second,
//! and `netanom status` reads. A consumer of the telemetry snapshot.
use std::{fs, io::Write as _, path::Path};

use serde::{Deserialize, Serialize};

use crate::telemetry::{bgp::BgpState, fleet::FleetState};

/// The status file's name in the state directory.
pub const STATE_FILE: &str = "status.json";
/// The state directory unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/netanom";

/// What the agent writes to `<state_dir>/status.json` while it runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AgentState {
    pub pid: u32,
    pub version: String,
    pub started_unix: f64,
    pub updated_unix: f64,
    /// Configured mode, and the mode in force (observe while the circuit breaker is open).
    pub mode: String,
    pub effective_mode: String,
    pub config: Option<String>,
    pub interfaces: Vec<InterfaceState>,
    pub bundle: String,
    pub pin_dir: String,
    /// The stats snapshot (as `--stats-format json` prints it).
    pub counters: serde_json::Value,
    pub mitigation: serde_json::Value,
    /// The BGP announcer (what the speaker announces), when `[bgp]` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpState>,
    /// The fleet (connection, peers), when `[fleet]` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetState>,
    /// Set when the agent stopped cleanly.
    pub stopped: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InterfaceState {
    pub iface: String,
    /// native, skb, or down (the interface disappeared; reattached when it returns).
    pub xdp_mode: String,
    pub egress: bool,
}

impl AgentState {
    /// Writes the state atomically (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(self).unwrap_or_default().as_bytes())?;
        f.write_all(b"\n")?;
        drop(f);
        fs::rename(tmp, dir.join(STATE_FILE))
    }

    pub fn read(dir: &Path) -> Option<AgentState> {
        let text = fs::read_to_string(dir.join(STATE_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_round_trips_and_replaces_itself() {
        let dir = std::env::temp_dir().join(format!("netanom-status-{}", std::process::id()));
        let s = AgentState {
            pid: 42,
            mode: "mitigate".into(),
            interfaces: vec![InterfaceState {
                iface: "eth0".into(),
                xdp_mode: "native".into(),
                egress: true,
            }],
            ..AgentState::default()
        };
        s.write(&dir).unwrap();
        AgentState { pid: 43, ..s }.write(&dir).unwrap();
        let back = AgentState::read(&dir).unwrap();
        assert_eq!((back.pid, back.mode.as_str()), (43, "mitigate"));
        assert_eq!(back.interfaces[0].xdp_mode, "native");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
