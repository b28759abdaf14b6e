//! Waiting, bounded: for a condition, and for an attack to be blocked.
use std::time::{Duration, Instant};

use crate::{
    StateDirs, Topology,
    agent::{assert_innocents_not_blocked, block_list},
};

/// Runs `attack` on a thread while polling `done` every 50 ms (for at most 5 s); returns how
/// long after the attack's start `done` first held.
pub fn time_until(attack: impl FnOnce() + Send, mut done: impl FnMut() -> bool) -> Option<Duration> {
    std::thread::scope(|s| {
        let t0 = Instant::now();
        s.spawn(attack);
        let deadline = t0 + Duration::from_secs(5);
        while Instant::now() < deadline {
            if done() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
pub fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How long after `attack` starts `prefix` is in the blocklist; checks at every poll that no
/// host the topology calls innocent is blocked.
pub fn time_to_block(
    lab: &impl Topology,
    dirs: &StateDirs,
    prefix: &str,
    attack: impl FnOnce() + Send,
) -> Option<Duration> {
    time_until(attack, || {
        let list = block_list(lab, dirs, false);
        assert_innocents_not_blocked(lab, &list);
        list.iter().any(|b| b["prefix"] == prefix)
    })
}
