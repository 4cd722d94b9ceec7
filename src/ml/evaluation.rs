//! Classification metrics and stratified k-fold splits.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::core::stats::mean_std;

/// Probabilities are clipped to [EPS, 1-EPS] for log loss, as scikit-learn does.
const EPS: f64 = 1e-15;

/// Share of predictions (probability >= 0.5 means survived) that match the labels.
pub fn accuracy(labels: &[bool], probabilities: &[f64]) -> f64 {
    if labels.is_empty() {
        return f64::NAN;
    }
    let hits = labels
        .iter()
        .zip(probabilities)
        .filter(|(y, p)| (**p >= 0.5) == **y)
        .count();
    hits as f64 / labels.len() as f64
}

/// Mean binary cross-entropy.
pub fn log_loss(labels: &[bool], probabilities: &[f64]) -> f64 {
    if labels.is_empty() {
        return f64::NAN;
    }
    let total: f64 = labels
        .iter()
        .zip(probabilities)
        .map(|(y, p)| {
            let p = p.clamp(EPS, 1.0 - EPS);
            if *y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / labels.len() as f64
}

/// Mean squared difference between probability and outcome (0 is perfect, 0.25 is a coin).
pub fn brier(labels: &[bool], probabilities: &[f64]) -> f64 {
    if labels.is_empty() {
        return f64::NAN;
    }
    let total: f64 = labels
        .iter()
        .zip(probabilities)
        .map(|(y, p)| (p - if *y { 1.0 } else { 0.0 }).powi(2))
        .sum();
    total / labels.len() as f64
}

/// One bin of a calibration table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// Mean predicted probability in the bin (NaN-free: 0 when empty).
    pub mean_predicted: f64,
    /// Share of positives in the bin (0 when empty).
    pub observed_rate: f64,
}

/// Calibration in `bins` equal-width probability bins (the last includes 1.0).
pub fn calibration(labels: &[bool], probabilities: &[f64], bins: usize) -> Vec<CalibrationBin> {
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for (y, p) in labels.iter().zip(probabilities) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += usize::from(*y);
    }
    sums.iter()
        .enumerate()
        .map(|(b, &(count, sum_p, positives))| CalibrationBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            count,
            mean_predicted: if count > 0 { sum_p / count as f64 } else { 0.0 },
            observed_rate: if count > 0 {
                positives as f64 / count as f64
            } else {
                0.0
            },
        })
        .collect()
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the Mann-Whitney U statistic with mid-ranks).
/// NaN when either class is absent.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> f64 {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|y| **y).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return f64::NAN;
    }
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += order[i..=j].iter().filter(|&&k| labels[k]).count() as f64 * mid_rank;
        i = j + 1;
    }
    let p = positives as f64;
    (rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64)
}

/// Test-set indices of `k` folds that keep each class's share: each class is shuffled with
/// `seed` and dealt round-robin, so fold sizes differ by at most one per class.
pub fn stratified_kfold(labels: &[bool], k: usize, seed: u64) -> Vec<Vec<usize>> {
    let k = k.max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut folds = vec![Vec::new(); k];
    let mut next = 0;
    for class in [false, true] {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        for i in members {
            folds[next % k].push(i);
            next += 1;
        }
    }
    for fold in &mut folds {
        fold.sort_unstable();
    }
    folds
}

/// Metrics of one held-out fold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FoldMetrics {
    pub accuracy: f64,
    pub roc_auc: f64,
    pub log_loss: f64,
    #[serde(default)]
    pub brier: f64,
    pub rows: usize,
    /// The regularization strength chosen for this fold by the inner cross-validation.
    #[serde(default)]
    pub alpha: f64,
}

impl FoldMetrics {
    pub fn compute(labels: &[bool], probabilities: &[f64], alpha: f64) -> Self {
        Self {
            accuracy: accuracy(labels, probabilities),
            roc_auc: roc_auc(labels, probabilities),
            log_loss: log_loss(labels, probabilities),
            brier: brier(labels, probabilities),
            rows: labels.len(),
            alpha,
        }
    }
}

/// Mean and standard deviation over folds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
}

impl Summary {
    fn of(values: impl Iterator<Item = f64>) -> Self {
        let (mean, std) = mean_std(&values.collect::<Vec<_>>());
        Self { mean, std }
    }
}

/// Stratified k-fold cross-validation results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvMetrics {
    pub folds: usize,
    pub seed: u64,
    pub accuracy: Summary,
    pub roc_auc: Summary,
    pub log_loss: Summary,
    /// Absent in artifacts trained before it was recorded.
    #[serde(default)]
    pub brier: Summary,
    pub per_fold: Vec<FoldMetrics>,
    /// Calibration of the pooled out-of-fold predictions, in 10 bins.
    #[serde(default)]
    pub calibration: Vec<CalibrationBin>,
}

impl CvMetrics {
    /// Summaries of the folds, and calibration of the pooled out-of-fold predictions.
    pub fn from_folds(
        seed: u64,
        per_fold: Vec<FoldMetrics>,
        out_of_fold: (&[bool], &[f64]),
    ) -> Self {
        Self {
            brier: Summary::of(per_fold.iter().map(|f| f.brier)),
            calibration: calibration(out_of_fold.0, out_of_fold.1, 10),
            folds: per_fold.len(),
            seed,
            accuracy: Summary::of(per_fold.iter().map(|f| f.accuracy)),
            roc_auc: Summary::of(per_fold.iter().map(|f| f.roc_auc)),
            log_loss: Summary::of(per_fold.iter().map(|f| f.log_loss)),
            per_fold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn accuracy_counts_threshold_hits() {
        assert!(close(
            accuracy(&[true, false, true, false], &[0.9, 0.2, 0.4, 0.5]),
            0.5
        ));
    }

    #[test]
    fn log_loss_matches_hand_computation() {
        // -(ln 0.8 + ln 0.6) / 2 = (0.2231435513 + 0.5108256238) / 2
        assert!(close(
            log_loss(&[true, false], &[0.8, 0.4]),
            0.366_984_587_540_100_2
        ));
        // Clipping keeps certainty finite.
        assert!(log_loss(&[true], &[0.0]).is_finite());
    }

    #[test]
    fn auc_matches_pairwise_count() {
        // scikit-learn's roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        assert!(close(
            roc_auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]),
            0.75
        ));
        // Ties count one half: 1 positive, 2 negatives, one tie, one win -> 0.75.
        assert!(close(
            roc_auc(&[true, false, false], &[0.5, 0.5, 0.1]),
            0.75
        ));
        assert!(close(roc_auc(&[true, false], &[0.9, 0.1]), 1.0));
        assert!(close(roc_auc(&[true, false], &[0.1, 0.9]), 0.0));
        assert!(roc_auc(&[true, true], &[0.1, 0.9]).is_nan());
    }

    #[test]
    fn auc_agrees_with_brute_force() {
        let labels: Vec<bool> = (0..200).map(|i| (i * 7919) % 3 == 0).collect();
        let scores: Vec<f64> = (0..200)
            .map(|i| ((i * 104_729) % 37) as f64 / 37.0)
            .collect();
        let (mut wins, mut pairs) = (0.0, 0.0);
        for i in 0..200 {
            for j in 0..200 {
                if labels[i] && !labels[j] {
                    pairs += 1.0;
                    if scores[i] > scores[j] {
                        wins += 1.0;
                    } else if scores[i] == scores[j] {
                        wins += 0.5;
                    }
                }
            }
        }
        assert!(close(roc_auc(&labels, &scores), wins / pairs));
    }

    #[test]
    fn stratified_folds_partition_and_keep_class_shares() {
        let labels: Vec<bool> = (0..891).map(|i| i % 8 < 3).collect();
        let folds = stratified_kfold(&labels, 5, 7);
        let mut seen: Vec<usize> = folds.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..891).collect::<Vec<_>>(), "a partition");
        let total_pos = labels.iter().filter(|y| **y).count();
        for fold in &folds {
            let pos = fold.iter().filter(|&&i| labels[i]).count();
            assert!((fold.len() as i64 - 178).abs() <= 1, "size {}", fold.len());
            let expected = total_pos as f64 / 5.0;
            assert!((pos as f64 - expected).abs() <= 1.0, "{pos} vs {expected}");
        }
        assert_eq!(folds, stratified_kfold(&labels, 5, 7), "deterministic");
        assert_ne!(folds, stratified_kfold(&labels, 5, 8), "seed matters");
    }

    #[test]
    fn brier_and_calibration_match_hand_values() {
        // ((0.8-1)^2 + (0.4-0)^2) / 2 = (0.04 + 0.16) / 2
        assert!(close(brier(&[true, false], &[0.8, 0.4]), 0.1));
        let table = calibration(&[true, false, true, true], &[0.05, 0.08, 0.95, 1.0], 10);
        assert_eq!(table.len(), 10);
        assert_eq!((table[0].count, table[9].count), (2, 2));
        assert!(close(table[0].mean_predicted, 0.065) && close(table[0].observed_rate, 0.5));
        assert!(close(table[9].mean_predicted, 0.975) && close(table[9].observed_rate, 1.0));
        assert_eq!(table[5].count, 0);
        assert_eq!(table.iter().map(|b| b.count).sum::<usize>(), 4);
    }

    #[test]
    fn summary_is_population_mean_and_std() {
        let s = Summary::of([1.0, 3.0].into_iter());
        assert!(close(s.mean, 2.0) && close(s.std, 1.0));
        let empty = Summary::of(std::iter::empty());
        assert_eq!((empty.mean, empty.std), (0.0, 0.0));
    }
}
