//! How unusual a flow's features are: per-feature running mean and variance over flows judged
//! normal, and the features farthest from them.

/// Per-feature running mean and variance (Welford) over normal flows: how unusual a value is.
#[derive(Clone, Debug, Default)]
pub struct Moments {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    pub fn observe(&mut self, row: &[f64]) {
        if self.mean.len() != row.len() {
            *self = Moments {
                n: 0.0,
                mean: vec![0.0; row.len()],
                m2: vec![0.0; row.len()],
            };
        }
        self.n += 1.0;
        for (i, &x) in row.iter().enumerate() {
            if !x.is_finite() {
                continue;
            }
            let d = x - self.mean[i];
            self.mean[i] += d / self.n;
            self.m2[i] += d * (x - self.mean[i]);
        }
    }

    /// The `k` features of `row` farthest from normal, in standard deviations.
    pub fn top(&self, names: &[&str], row: &[f64], k: usize) -> Vec<(String, f64, f64)> {
        if self.n < 2.0 || self.mean.len() != row.len() {
            return Vec::new();
        }
        let mut z: Vec<(usize, f64)> = row
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let sd = (self.m2[i] / (self.n - 1.0)).sqrt();
                let d = (x - self.mean[i]).abs();
                (
                    i,
                    if sd > 1e-12 {
                        d / sd
                    } else if d > 1e-12 {
                        1e6
                    } else {
                        0.0
                    },
                )
            })
            .filter(|(_, z)| z.is_finite() && *z > 0.0)
            .collect();
        z.sort_by(|a, b| b.1.total_cmp(&a.1));
        z.into_iter()
            .take(k)
            .map(|(i, s)| (names.get(i).copied().unwrap_or("?").to_owned(), row[i], s))
            .collect()
    }
}
