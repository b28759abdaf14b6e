//! The one clock of the pipeline. Live, [`SystemClock`] reads `CLOCK_MONOTONIC` (the kernel's
//! clock) and maps it to Unix time with the offset measured at start; on a capture, time is
//! the last frame's timestamp, never going back (`sources::capture::FrameStream`), handed on
//! as `Instant::capture` by `super::capture::driver`. The stages that decide are handed `now`
//! and never read a clock themselves.
use std::time::{SystemTime, UNIX_EPOCH};

use netanom_common::time::Instant;

/// Where the pipeline takes the time from.
pub trait Clock {
    fn now(&self) -> Instant;
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of the kernel's timestamps.
pub fn mono_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The host's clocks: monotonic time, and Unix time as monotonic time plus the offset measured
/// when the clock was made (so that the two never disagree about an interval, and a kernel
/// timestamp converts the same way every time).
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    /// Unix time minus monotonic time, nanoseconds.
    offset_ns: i128,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        SystemClock {
            offset_ns: wall - i128::from(mono_now_ns()),
        }
    }

    /// Unix nanoseconds of a monotonic (kernel) timestamp.
    pub fn unix_ns(&self, mono_ns: u64) -> u64 {
        (i128::from(mono_ns) + self.offset_ns).max(0) as u64
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        let mono_ns = mono_now_ns();
        Instant {
            mono_ns,
            unix_ns: self.unix_ns(mono_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_agrees_with_the_wall_clock_and_runs_forward() {
        let c = SystemClock::new();
        let a = c.now();
        // After 2024-01-01.
        assert!(a.unix_ns > 1_704_067_200 * 1_000_000_000);
        let b = c.now();
        assert!(b.mono_ns >= a.mono_ns);
        assert_eq!(b.unix_ns - a.unix_ns, b.mono_ns - a.mono_ns);
        assert_eq!(c.unix_ns(a.mono_ns), a.unix_ns);
    }
}
