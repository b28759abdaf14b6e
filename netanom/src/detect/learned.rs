//! Learned normal levels: a running quantile of what normal entities did, which decays so it
//! follows recent traffic, and a rate that must exceed both its floor and a margin over it.

/// Learned aggregate levels need this many normal observations before they count.
const MIN_AGG_SAMPLES: f64 = 200.0;

/// A running quantile over a log-binned histogram whose counts decay, so it follows recent
/// traffic. Bins: 16 per decade from 1e-6 to 1e10; values at or below 1e-6 share bin 0.
#[derive(Clone, Debug)]
pub struct Learned {
    counts: Vec<f64>,
    total: f64,
}

const BINS_PER_DECADE: f64 = 16.0;
const LOG_LO: f64 = -6.0;
const BINS: usize = 256;

impl Default for Learned {
    fn default() -> Self {
        Learned {
            counts: vec![0.0; BINS],
            total: 0.0,
        }
    }
}

impl Learned {
    fn bin(x: f64) -> usize {
        if x.is_nan() || x <= 1e-6 {
            return 0;
        }
        (((x.log10() - LOG_LO) * BINS_PER_DECADE).floor() as usize).min(BINS - 1)
    }

    pub fn observe(&mut self, x: f64) {
        if x.is_finite() {
            self.counts[Self::bin(x)] += 1.0;
            self.total += 1.0;
        }
    }

    /// Multiplies every count by `f` (0 < f ≤ 1): older observations weigh less.
    pub fn decay(&mut self, f: f64) {
        for c in &mut self.counts {
            *c *= f;
        }
        self.total *= f;
    }

    pub fn total(&self) -> f64 {
        self.total
    }

    /// The `q` quantile (the upper edge of its bin), or `None` below `min` observations.
    pub fn quantile(&self, q: f64, min: f64) -> Option<f64> {
        if self.total < min || self.total <= 0.0 {
            return None;
        }
        let target = q * self.total;
        let mut acc = 0.0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target {
                return Some(10f64.powf(LOG_LO + (i as f64 + 1.0) / BINS_PER_DECADE));
            }
        }
        Some(10f64.powf(LOG_LO + BINS as f64 / BINS_PER_DECADE))
    }
}

/// One rate with a learned normal level and a floor.
#[derive(Clone, Debug)]
pub struct Rate {
    pub name: &'static str,
    pub floor: f64,
    pub learned: Learned,
}

impl Rate {
    pub fn new(name: &'static str, floor: f64) -> Rate {
        Rate {
            name,
            floor,
            learned: Learned::default(),
        }
    }

    /// The level above which a value is abnormal, with `floor` in place of the rate's own.
    pub fn threshold_over(&self, floor: f64, margin: f64) -> f64 {
        match self.learned.quantile(0.999, MIN_AGG_SAMPLES) {
            Some(q) => floor.max(margin * q),
            None => floor,
        }
    }

    /// The level above which a value is abnormal.
    pub fn threshold(&self, margin: f64) -> f64 {
        match self.learned.quantile(0.999, MIN_AGG_SAMPLES) {
            Some(q) => self.floor.max(margin * q),
            None => self.floor,
        }
    }
}
