//! The time every netanom component agrees on.
//!
//! The kernel stamps flows, blocks and rate limits with `CLOCK_MONOTONIC` nanoseconds
//! (`bpf_ktime_get_ns`): that is the clock of every `*_ns` field that crosses the kernel
//! boundary. People and alerts read Unix time. An [`Instant`] carries both readings of one
//! moment, so the stages that decide (detection, response) never read a clock themselves: the
//! pipeline hands them `now`, from the system clocks when live, from the capture's timestamps
//! when replaying a file, and from the test when testing.
//!
//! The formatting functions write Unix nanoseconds as the two civil forms netanom prints:
//! Suricata's EVE timestamp and the CIC-IDS2017 `Timestamp` column, both UTC with microseconds.
use core::fmt;

/// Nanoseconds in a second.
pub const NS_PER_S: u64 = 1_000_000_000;
const SECS_PER_DAY: u64 = 86_400;

/// One moment, on the kernel's monotonic clock and on the Unix clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    /// `CLOCK_MONOTONIC` nanoseconds: the clock of the kernel's timestamps and expiries.
    pub mono_ns: u64,
    /// Nanoseconds since the Unix epoch.
    pub unix_ns: u64,
}

impl Instant {
    /// A moment of a capture file: its timestamp serves as both clocks, so the flows, blocks
    /// and alerts of a replay all carry capture time.
    pub const fn capture(unix_ns: u64) -> Instant {
        Instant {
            mono_ns: unix_ns,
            unix_ns,
        }
    }

    /// This moment `ns` nanoseconds later (saturating).
    pub const fn plus_ns(self, ns: u64) -> Instant {
        Instant {
            mono_ns: self.mono_ns.saturating_add(ns),
            unix_ns: self.unix_ns.saturating_add(ns),
        }
    }

    /// Nanoseconds from `earlier` to this moment (0 if `earlier` is later).
    pub const fn since_ns(self, earlier: Instant) -> u64 {
        self.mono_ns.saturating_sub(earlier.mono_ns)
    }

    /// Seconds from `earlier` to this moment (0 if `earlier` is later).
    pub fn since_s(self, earlier: Instant) -> f64 {
        self.since_ns(earlier) as f64 / NS_PER_S as f64
    }

    /// The Unix time of a monotonic timestamp of the same clock pair (a kernel timestamp).
    pub const fn unix_of(self, mono_ns: u64) -> u64 {
        let offset = self.unix_ns as i128 - self.mono_ns as i128;
        let t = mono_ns as i128 + offset;
        if t < 0 { 0 } else { t as u64 }
    }
}

/// Seconds as nanoseconds (negative and NaN give 0, too large the maximum).
pub fn secs_to_ns(secs: f64) -> u64 {
    if secs.is_nan() || secs <= 0.0 {
        0
    } else if secs >= u64::MAX as f64 / NS_PER_S as f64 {
        u64::MAX
    } else {
        (secs * NS_PER_S as f64) as u64
    }
}

/// `(year, month 1..=12, day 1..=31)` of day `days` after 1970-01-01 (proleptic Gregorian,
/// Howard Hinnant's `civil_from_days`).
pub const fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + (month <= 2) as u64;
    (year, month, day)
}

/// Writes Unix nanoseconds as `YYYY-MM-DD<sep>HH:MM:SS.ffffff` in UTC (microseconds,
/// truncated). u64 nanoseconds end in the year 2554, so nothing overflows.
fn write_civil(out: &mut impl fmt::Write, unix_ns: u64, sep: char) -> fmt::Result {
    let secs = unix_ns / NS_PER_S;
    let micros = (unix_ns % NS_PER_S) / 1_000;
    let (y, m, d) = civil_from_days(secs / SECS_PER_DAY);
    let sod = secs % SECS_PER_DAY;
    write!(
        out,
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}.{micros:06}",
        sod / 3_600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Unix nanoseconds shown as Suricata's EVE `timestamp`: `2026-11-21T10:15:02.123456+0000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EveTime(pub u64);

impl fmt::Display for EveTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_civil(f, self.0, 'T')?;
        f.write_str("+0000")
    }
}

/// Unix nanoseconds shown as the CIC-IDS2017 `Timestamp` column: `2017-07-07 18:56:33.850928`
/// (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CicTime(pub u64);

impl fmt::Display for CicTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_civil(f, self.0, ' ')
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{format, string::String};

    use super::*;

    const NS: u64 = NS_PER_S;

    fn format_timestamp(ns: u64) -> String {
        format!("{}", EveTime(ns))
    }

    #[test]
    fn timestamp_epoch() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000+0000");
    }

    #[test]
    fn timestamp_leap_day() {
        // date -u -d 2024-02-29T23:59:59 +%s
        let ns = 1_709_251_199 * NS + 999_999_999;
        assert_eq!(format_timestamp(ns), "2024-02-29T23:59:59.999999+0000");
        assert_eq!(format_timestamp(ns + 1), "2024-03-01T00:00:00.000000+0000");
    }

    #[test]
    fn timestamp_known_dates() {
        assert_eq!(
            format_timestamp(1_795_256_102 * NS + 123_456_789),
            "2026-11-21T10:15:02.123456+0000"
        );
        assert_eq!(
            format_timestamp(951_868_800 * NS),
            "2000-03-01T00:00:00.000000+0000"
        );
        assert_eq!(
            format_timestamp(951_868_800 * NS - 1),
            "2000-02-29T23:59:59.999999+0000"
        );
        assert_eq!(
            format_timestamp(4_107_542_400 * NS),
            "2100-03-01T00:00:00.000000+0000"
        );
        assert_eq!(
            format_timestamp(4_107_542_400 * NS - 1),
            "2100-02-28T23:59:59.999999+0000"
        );
        assert_eq!(format_timestamp(u64::MAX), "2554-07-21T23:34:33.709551+0000");
    }

    #[test]
    fn civil_from_days_round_trip() {
        // Walk day by day from 1970 to 2200, checking each date follows the last.
        let (mut y, mut m, mut d) = civil_from_days(0);
        assert_eq!((y, m, d), (1970, 1, 1));
        for day in 1..(230 * 366) {
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let next = if d < len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(civil_from_days(day), next, "day {day}");
            (y, m, d) = next;
        }
    }

    #[test]
    fn cic_timestamps_are_utc_with_microseconds() {
        let cic = |ns: u64| format!("{}", CicTime(ns));
        assert_eq!(cic(0), "1970-01-01 00:00:00.000000");
        // 2017-07-07 18:56:33.850928 UTC, the first DDoS flow of the CIC sample.
        assert_eq!(cic(1_499_453_793_850_928_999), "2017-07-07 18:56:33.850928");
        assert_eq!(cic(951_782_400_000_000_000), "2000-02-29 00:00:00.000000");
        assert_eq!(cic(4_102_444_799_000_000_000), "2099-12-31 23:59:59.000000");
    }

    #[test]
    fn instants_convert_between_clocks() {
        let now = Instant {
            mono_ns: 5 * NS,
            unix_ns: 1_700_000_000 * NS,
        };
        assert_eq!(now.unix_of(6 * NS), 1_700_000_001 * NS);
        assert_eq!(now.plus_ns(NS).since_ns(now), NS);
        assert_eq!(now.since_ns(now.plus_ns(1)), 0);
        let c = Instant::capture(42);
        assert_eq!((c.mono_ns, c.unix_ns, c.unix_of(40)), (42, 42, 40));
        assert_eq!(secs_to_ns(1.5), 1_500_000_000);
        assert_eq!((secs_to_ns(-1.0), secs_to_ns(f64::NAN)), (0, 0));
    }
}
