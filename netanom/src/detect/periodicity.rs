//! The periodicity rule: a channel whose flows start at regular intervals and carry the same
//! amount of data is a beacon, whatever the sequence model says. This is the rule of
//! RITA-style beacon hunting, measured as the sequence report's periodicity-only baseline.
//! It is needed beside the model: the Stratosphere channels the model learned from label
//! strictly periodic large flows normal (their C&C channels are mostly small, weakly periodic
//! flows), so a plain HTTPS poll every few seconds scores near 0 there.
//!
//! Dispersion is robust: the median absolute deviation over the median, of the gaps between
//! flow starts and of the flows' sizes, over a channel's [`RECENT`] newest flows. Uniform
//! jitter of ±j around a period p gives a gap dispersion of j / (2 p): a 5 s beacon with
//! ±2.5 s of jitter is 0.25, a person's browsing is well above 0.5.
use std::collections::VecDeque;

/// Flows of a channel the rule looks at (the newest).
pub const RECENT: usize = 32;

/// The newest flows of a channel: (start, bytes).
#[derive(Clone, Debug, Default)]
pub struct Recent {
    flows: VecDeque<(u64, u64)>,
}

/// What the rule measured on a channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Regularity {
    /// Median gap between flow starts, seconds.
    pub period_s: f64,
    /// MAD / median of the gaps.
    pub gap_dispersion: f64,
    /// MAD / median of the sizes.
    pub size_dispersion: f64,
}

impl Recent {
    pub fn push(&mut self, start_ns: u64, bytes: u64) {
        if self.flows.len() == RECENT {
            self.flows.pop_front();
        }
        self.flows.push_back((start_ns, bytes));
    }

    /// The regularity of the kept flows (`None` with fewer than three).
    pub fn regularity(&self) -> Option<Regularity> {
        if self.flows.len() < 3 {
            return None;
        }
        let mut starts: Vec<u64> = self.flows.iter().map(|f| f.0).collect();
        starts.sort_unstable();
        let gaps: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9).collect();
        let sizes: Vec<f64> = self.flows.iter().map(|f| f.1 as f64).collect();
        let (period_s, gap_dispersion) = median_dispersion(gaps);
        let (_, size_dispersion) = median_dispersion(sizes);
        Some(Regularity {
            period_s,
            gap_dispersion,
            size_dispersion,
        })
    }
}

/// (median, MAD / median); the dispersion is infinite for a median of 0.
fn median_dispersion(mut v: Vec<f64>) -> (f64, f64) {
    let median = median_of(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
    let mad = median_of(&mut dev);
    let dispersion = if median > 0.0 { mad / median } else { f64::INFINITY };
    (median, dispersion)
}

fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn recent(starts_s: &[f64], sizes: &[u64]) -> Recent {
        let mut r = Recent::default();
        for (t, b) in starts_s.iter().zip(sizes) {
            r.push((t * 1e9) as u64, *b);
        }
        r
    }

    #[test]
    fn a_fixed_period_is_regular_and_jitter_shows_as_dispersion() {
        let starts: Vec<f64> = (0..20).map(|i| f64::from(i) * 2.0).collect();
        let r = recent(&starts, &[4800; 20]).regularity().unwrap();
        assert!((r.period_s - 2.0).abs() < 1e-9);
        assert_eq!((r.gap_dispersion, r.size_dispersion), (0.0, 0.0));
        // Gaps alternating 2.5 and 7.5 s: ±2.5 s around 5 s, the worst uniform jitter gives.
        let mut t = 0.0;
        let starts: Vec<f64> = (0..21)
            .map(|i| {
                let s = t;
                t += if i % 2 == 0 { 2.5 } else { 7.5 };
                s
            })
            .collect();
        let r = recent(&starts, &[4800; 21]).regularity().unwrap();
        assert!((r.gap_dispersion - 0.5).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn only_the_newest_flows_count_and_few_flows_say_nothing() {
        assert!(recent(&[0.0, 1.0], &[1, 1]).regularity().is_none());
        let mut r = Recent::default();
        for i in 0..100u64 {
            r.push(i * 3 * S, 100 + i % 2);
        }
        assert_eq!(r.flows.len(), RECENT);
        assert!((r.regularity().unwrap().period_s - 3.0).abs() < 1e-9);
        // A median size of 0 (empty flows) is not regular.
        let z = recent(&[0.0, 1.0, 2.0, 3.0], &[0, 0, 0, 0]).regularity().unwrap();
        assert!(z.size_dispersion.is_infinite());
    }
}
