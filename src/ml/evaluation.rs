//! Classification metrics and stratified k-fold splits.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::core::stats::{mean_std, student_t_quantile};

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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The repetition of the cross-validation this fold belongs to (0-based; its split seed
    /// is the evaluation seed plus this number).
    #[serde(default)]
    pub repeat: usize,
}

impl FoldMetrics {
    pub fn compute(labels: &[bool], probabilities: &[f64], alpha: f64, repeat: usize) -> Self {
        Self {
            accuracy: accuracy(labels, probabilities),
            roc_auc: roc_auc(labels, probabilities),
            log_loss: log_loss(labels, probabilities),
            brier: brier(labels, probabilities),
            rows: labels.len(),
            alpha,
            repeat,
        }
    }
}

/// One metric over every fold of every repetition: the mean, the spread and a 95 %
/// confidence interval for the mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = MetricSummary)]
pub struct Summary {
    pub mean: f64,
    /// Population standard deviation of the fold scores (fold-to-fold spread).
    pub std: f64,
    /// The 95 % confidence interval of [`Summary::interval`].
    #[serde(default)]
    pub ci_low: f64,
    #[serde(default)]
    pub ci_high: f64,
}

/// Two-sided level of the confidence intervals.
pub const CONFIDENCE: f64 = 0.95;

impl Summary {
    /// Mean and spread of the fold scores, with the corrected resampled t interval of
    /// Nadeau and Bengio (2003): mean ± t(n−1) · √((1/n + n_test/n_train) · s²), where n is
    /// the number of fold scores, s² their sample variance and n_test/n_train the share of
    /// held-out to training rows of one fold (1/(k−1) for k folds). The second term accounts
    /// for the folds' training sets overlapping, which the naive s²/n ignores: with it the
    /// interval does not shrink to nothing as repetitions are added, since they reuse the
    /// same rows. With fewer than two scores the interval is the mean itself.
    pub fn interval(values: &[f64], test_to_train: f64) -> Self {
        let (mean, std) = mean_std(values);
        let n = values.len();
        if n < 2 {
            return Self {
                mean,
                std,
                ci_low: mean,
                ci_high: mean,
            };
        }
        let n_f = n as f64;
        let sample_var = std * std * n_f / (n_f - 1.0);
        let t = student_t_quantile(0.5 + CONFIDENCE / 2.0, n_f - 1.0);
        let half = t * ((1.0 / n_f + test_to_train) * sample_var).sqrt();
        Self {
            mean,
            std,
            ci_low: mean - half,
            ci_high: mean + half,
        }
    }
}

/// The mean metrics of one repetition of the k-fold cross-validation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RepeatMetrics {
    /// The seed of this repetition's split.
    pub seed: u64,
    pub accuracy: f64,
    pub roc_auc: f64,
    pub log_loss: f64,
    pub brier: f64,
}

/// Repeated stratified k-fold cross-validation results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CvMetrics {
    pub folds: usize,
    /// How many times the k-fold cross-validation was run, each with its own split.
    #[serde(default = "one")]
    pub repeats: usize,
    /// The seed of the first repetition's split (repetition r uses `seed + r`).
    pub seed: u64,
    /// Over the `folds × repeats` fold scores.
    pub accuracy: Summary,
    pub roc_auc: Summary,
    pub log_loss: Summary,
    /// Absent in artifacts trained before it was recorded.
    #[serde(default)]
    pub brier: Summary,
    /// The mean of each repetition, in order.
    #[serde(default)]
    pub per_repeat: Vec<RepeatMetrics>,
    /// Every fold of every repetition, in order.
    pub per_fold: Vec<FoldMetrics>,
    /// Calibration of the out-of-fold predictions of every repetition pooled (each row
    /// predicted once per repetition), in 10 bins.
    #[serde(default)]
    pub calibration: Vec<CalibrationBin>,
}

fn one() -> usize {
    1
}

impl CvMetrics {
    /// Summaries of `folds`-fold cross-validation repeated over the repetitions that
    /// `per_fold` names (the first split with `seed`), and calibration of the pooled
    /// out-of-fold predictions.
    pub fn new(
        folds: usize,
        seed: u64,
        per_fold: Vec<FoldMetrics>,
        out_of_fold: (&[bool], &[f64]),
    ) -> Self {
        let repeats = per_fold.iter().map(|f| f.repeat + 1).max().unwrap_or(0);
        let test_to_train = 1.0 / (folds.max(2) - 1) as f64;
        let summary = |metric: fn(&FoldMetrics) -> f64| -> Summary {
            Summary::interval(
                &per_fold.iter().map(metric).collect::<Vec<_>>(),
                test_to_train,
            )
        };
        let per_repeat = (0..repeats)
            .map(|r| {
                let of: Vec<&FoldMetrics> = per_fold.iter().filter(|f| f.repeat == r).collect();
                let mean = |metric: fn(&FoldMetrics) -> f64| {
                    of.iter().map(|f| metric(f)).sum::<f64>() / of.len().max(1) as f64
                };
                RepeatMetrics {
                    seed: seed.wrapping_add(r as u64),
                    accuracy: mean(|f| f.accuracy),
                    roc_auc: mean(|f| f.roc_auc),
                    log_loss: mean(|f| f.log_loss),
                    brier: mean(|f| f.brier),
                }
            })
            .collect();
        Self {
            folds,
            repeats,
            seed,
            accuracy: summary(|f| f.accuracy),
            roc_auc: summary(|f| f.roc_auc),
            log_loss: summary(|f| f.log_loss),
            brier: summary(|f| f.brier),
            per_repeat,
            calibration: calibration(out_of_fold.0, out_of_fold.1, 10),
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
    fn summary_is_population_mean_and_std_with_a_corrected_interval() {
        let s = Summary::interval(&[1.0, 3.0], 0.25);
        assert!(close(s.mean, 2.0) && close(s.std, 1.0));
        // Sample variance 2; half width t(0.975, 1) * sqrt((1/2 + 1/4) * 2).
        let half = 12.706_204_736_174_696 * 1.5f64.sqrt();
        assert!((s.ci_low - (2.0 - half)).abs() < 1e-9, "{s:?}");
        assert!((s.ci_high - (2.0 + half)).abs() < 1e-9, "{s:?}");
        let empty = Summary::interval(&[], 0.25);
        assert_eq!(
            (empty.mean, empty.std, empty.ci_low, empty.ci_high),
            (0.0, 0.0, 0.0, 0.0)
        );
        let single = Summary::interval(&[0.8], 0.25);
        assert_eq!((single.ci_low, single.ci_high), (0.8, 0.8));
        // More repetitions of the same spread narrow the interval only down to the
        // overlap term: sqrt(1/250 + 1/4) against sqrt(1/50 + 1/4).
        let scores = |n: usize| {
            (0..n)
                .map(|i| 0.8 + 0.01 * (i % 5) as f64)
                .collect::<Vec<_>>()
        };
        let (w50, w250) = (
            Summary::interval(&scores(50), 0.25),
            Summary::interval(&scores(250), 0.25),
        );
        let width = |s: Summary| s.ci_high - s.ci_low;
        assert!(width(w250) < width(w50) && width(w250) > 0.9 * width(w50));
    }

    #[test]
    fn repeated_metrics_summarise_every_fold_and_each_repetition() {
        let fold = |accuracy: f64, repeat: usize| FoldMetrics {
            accuracy,
            roc_auc: 0.9,
            log_loss: 0.4,
            brier: 0.12,
            rows: 10,
            alpha: 1.0,
            repeat,
        };
        let m = CvMetrics::new(
            2,
            42,
            vec![fold(0.8, 0), fold(0.9, 0), fold(0.7, 1), fold(0.8, 1)],
            (&[true, false], &[0.9, 0.2]),
        );
        assert_eq!((m.folds, m.repeats, m.seed), (2, 2, 42));
        assert!(close(m.accuracy.mean, 0.8));
        assert_eq!(m.per_repeat.len(), 2);
        assert_eq!((m.per_repeat[0].seed, m.per_repeat[1].seed), (42, 43));
        assert!(close(m.per_repeat[0].accuracy, 0.85) && close(m.per_repeat[1].accuracy, 0.75));
        assert!(m.accuracy.ci_low < 0.8 && m.accuracy.ci_high > 0.8);
        assert!(close(m.roc_auc.ci_low, 0.9) && close(m.roc_auc.ci_high, 0.9));
        let back: CvMetrics = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
