//! Evaluation metrics: ROC-AUC and average precision from a continuous score (sort-based,
//! ties handled as scikit-learn does), and threshold metrics from decisions. Positive = attack.

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the Mann–Whitney statistic, equal to the trapezoidal
/// area scikit-learn computes). `None` unless both classes are present. Scores must not be
/// NaN.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    assert_eq!(labels.len(), scores.len());
    let pos = labels.iter().filter(|l| **l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let order = ascending(scores);
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_group = order[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum += avg_rank * pos_in_group as f64;
        i = j + 1;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (the area under the precision–recall curve as scikit-learn's
/// `average_precision_score` defines it): Σ_k (R_k − R_{k−1}) · P_k over the distinct score
/// thresholds, highest first, rows with equal scores entering together. `None` without
/// positives.
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Option<f64> {
    assert_eq!(labels.len(), scores.len());
    let pos = labels.iter().filter(|l| **l).count();
    if pos == 0 {
        return None;
    }
    let mut order = ascending(scores);
    order.reverse();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

fn ascending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order
}

/// Counts of decisions against labels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    pub fn_: u64,
}

impl Confusion {
    pub fn of(labels: &[bool], flagged: &[bool]) -> Confusion {
        assert_eq!(labels.len(), flagged.len());
        let mut c = Confusion::default();
        for (&y, &f) in labels.iter().zip(flagged) {
            match (y, f) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
                (true, false) => c.fn_ += 1,
            }
        }
        c
    }
    fn ratio(a: u64, b: u64) -> f64 {
        if b == 0 { 0.0 } else { a as f64 / b as f64 }
    }
    /// TP / (TP + FP); 0 when nothing is flagged.
    pub fn precision(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fp)
    }
    /// TP / (TP + FN); 0 without positives.
    pub fn recall(&self) -> f64 {
        Self::ratio(self.tp, self.tp + self.fn_)
    }
    /// Harmonic mean of precision and recall; 0 when both are 0.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
    /// FP / (FP + TN); 0 without negatives.
    pub fn fpr(&self) -> f64 {
        Self::ratio(self.fp, self.fp + self.tn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn roc_auc_hand_computed() {
        // scikit-learn's documentation example: 0.75.
        let y = [false, false, true, true];
        let s = [0.1, 0.4, 0.35, 0.8];
        assert!(close(roc_auc(&y, &s).unwrap(), 0.75));
        // Perfect and inverted rankings.
        assert!(close(roc_auc(&y, &[0.1, 0.2, 0.3, 0.4]).unwrap(), 1.0));
        assert!(close(roc_auc(&y, &[0.4, 0.3, 0.2, 0.1]).unwrap(), 0.0));
        // All tied: 0.5.
        assert!(close(roc_auc(&y, &[1.0; 4]).unwrap(), 0.5));
        // One positive scoring 1; negatives 1 and 0: pairs (tie 0.5, win 1) -> 0.75.
        assert!(close(
            roc_auc(&[true, false, false], &[1.0, 1.0, 0.0]).unwrap(),
            0.75
        ));
        // Positives {3, 2, 2}, negatives {2, 1}: wins 3>2, 3>1, 2>1, 2>1 = 4, ties 2=2 twice
        // = 1 -> 5/6.
        let y = [true, true, true, false, false];
        let s = [3.0, 2.0, 2.0, 2.0, 1.0];
        assert!(close(roc_auc(&y, &s).unwrap(), 5.0 / 6.0));
        // One class only: undefined.
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&[false], &[0.1]), None);
    }

    #[test]
    fn average_precision_hand_computed() {
        // scikit-learn's documentation example: 0.8333...
        let y = [false, false, true, true];
        let s = [0.1, 0.4, 0.35, 0.8];
        // thresholds 0.8: P 1, R .5; 0.4: P .5, R .5; 0.35: P 2/3, R 1 -> .5 + .5*2/3.
        assert!(close(average_precision(&y, &s).unwrap(), 0.5 + 0.5 * 2.0 / 3.0));
        // All tied: one threshold, P = base rate, R = 1.
        assert!(close(
            average_precision(&[true, false, true, false], &[0.5; 4]).unwrap(),
            0.5
        ));
        // Tie at the top: {pos 1, neg 1} then neg 0: P .5 at R 1.
        assert!(close(
            average_precision(&[true, false, false], &[1.0, 1.0, 0.0]).unwrap(),
            0.5
        ));
        // Positives {3, 2, 2}, negatives {2, 1}: 3 -> P 1, R 1/3; 2 -> P 3/4, R 1.
        let y = [true, true, true, false, false];
        let s = [3.0, 2.0, 2.0, 2.0, 1.0];
        assert!(close(
            average_precision(&y, &s).unwrap(),
            1.0 / 3.0 + 2.0 / 3.0 * 0.75
        ));
        assert_eq!(average_precision(&[false, false], &[0.1, 0.2]), None);
        // Perfect ranking: 1.
        assert!(close(
            average_precision(&[false, true], &[0.0, 1.0]).unwrap(),
            1.0
        ));
    }

    #[test]
    fn confusion_metrics() {
        let y = [true, true, false, false, true];
        let f = [true, false, true, false, true];
        let c = Confusion::of(&y, &f);
        assert_eq!(
            c,
            Confusion {
                tp: 2,
                fp: 1,
                tn: 1,
                fn_: 1
            }
        );
        assert!(close(c.precision(), 2.0 / 3.0));
        assert!(close(c.recall(), 2.0 / 3.0));
        assert!(close(c.f1(), 2.0 / 3.0));
        assert!(close(c.fpr(), 0.5));
        let none = Confusion::of(&[false], &[false]);
        assert_eq!((none.precision(), none.recall(), none.f1()), (0.0, 0.0, 0.0));
    }
}
