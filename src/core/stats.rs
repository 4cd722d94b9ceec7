//! Small numerical helpers shared by the feature pipeline and model evaluation.

/// Population mean and standard deviation (0 and 0 for no values).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Median (mean of the two middle values for an even count); `None` for no values.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// 64-bit FNV-1a hash: stable across builds and platforms (unlike std's hasher), for
/// values that are stored or must agree between processes.
pub fn fnv1a(text: &str) -> u64 {
    fnv1a_bytes(text.bytes())
}

/// [`fnv1a`] of a byte sequence, so a hash of several parts needs no joined copy.
pub fn fnv1a_bytes(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, n = 9; about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1-x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a), for a > 0, x ≥ 0:
/// the series for x < a + 1, the continued fraction (modified Lentz) otherwise.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * log_prefix.exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// P(X ≥ x) for a chi-squared variable with `dof` degrees of freedom.
pub fn chi_squared_sf(x: f64, dof: f64) -> f64 {
    gamma_q(dof / 2.0, x / 2.0)
}

/// Two-sided p-value of a standard normal statistic: P(|Z| ≥ |z|) = erfc(|z| / √2).
pub fn normal_two_sided_p(z: f64) -> f64 {
    // erfc(t) = Q(1/2, t²) for t ≥ 0.
    gamma_q(0.5, z * z / 2.0)
}

/// P(K ≥ λ) for the Kolmogorov distribution: 2 Σ (-1)^(k-1) exp(-2 k² λ²).
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as u32 % 2 == 1 { term } else { -term };
        if term < 1e-17 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Asymptotic p-value of the two-sample Kolmogorov-Smirnov statistic `d` for samples of
/// sizes `n` and `m` (with Stephens' small-sample correction).
pub fn ks_two_sample_p(d: f64, n: u64, m: u64) -> f64 {
    if n == 0 || m == 0 {
        return 1.0;
    }
    let en = (n as f64 * m as f64 / (n + m) as f64).sqrt();
    kolmogorov_sf((en + 0.12 + 0.11 / en) * d)
}

/// Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1 (continued
/// fraction, modified Lentz, on the side where it converges fast).
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let log_prefix = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - beta_inc(b, a, 1.0 - x);
    }
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..1000 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            d = 1.0 + aa * d;
            if d.abs() < tiny {
                d = tiny;
            }
            c = 1.0 + aa / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (log_prefix.exp() * h / a).clamp(0.0, 1.0)
}

/// P(T ≤ t) for Student's t distribution with `dof` degrees of freedom.
pub fn student_t_cdf(t: f64, dof: f64) -> f64 {
    let tail = 0.5 * beta_inc(dof / 2.0, 0.5, dof / (dof + t * t));
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The `p` quantile of Student's t distribution with `dof` degrees of freedom (0 < p < 1),
/// by bisection on the distribution function (to about 1e-12).
pub fn student_t_quantile(p: f64, dof: f64) -> f64 {
    if !(p > 0.0 && p < 1.0 && dof > 0.0) {
        return f64::NAN;
    }
    if p < 0.5 {
        return -student_t_quantile(1.0 - p, dof);
    }
    let (mut low, mut high) = (0.0, 1.0);
    while student_t_cdf(high, dof) < p {
        low = high;
        high *= 2.0;
        if high > 1e12 {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (low + high);
        if student_t_cdf(mid, dof) < p {
            low = mid;
        } else {
            high = mid;
        }
        if high - low < 1e-13 * high.max(1.0) {
            break;
        }
    }
    0.5 * (low + high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn gamma_functions_match_known_values() {
        assert!(close(ln_gamma(1.0), 0.0, 1e-13));
        assert!(close(ln_gamma(5.0), 24f64.ln(), 1e-13));
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-13
        ));
        // Q(1, x) = e^-x on both branches.
        for x in [0.1, 1.0, 2.5, 10.0] {
            assert!(close(gamma_q(1.0, x), (-x).exp(), 1e-13), "{x}");
        }
    }

    #[test]
    fn distribution_tails_match_tables() {
        // Critical values at 0.05 (scipy: chi2.isf(0.05, k), norm.isf(0.025)).
        assert!(close(
            chi_squared_sf(3.841_458_820_694_124, 1.0),
            0.05,
            1e-9
        ));
        assert!(close(
            chi_squared_sf(5.991_464_547_107_979, 2.0),
            0.05,
            1e-9
        ));
        assert!(close(
            chi_squared_sf(9.487_729_036_781_154, 4.0),
            0.05,
            1e-9
        ));
        assert!(close(normal_two_sided_p(1.959_963_984_540_054), 0.05, 1e-9));
        assert!(close(normal_two_sided_p(0.0), 1.0, 1e-12));
        // Kolmogorov: P(K >= 1.358099) = 0.05, P(K >= 1.627624) = 0.01.
        assert!(close(kolmogorov_sf(1.358_099), 0.05, 1e-5));
        assert!(close(kolmogorov_sf(1.627_624), 0.01, 1e-5));
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert_eq!(ks_two_sample_p(0.5, 0, 10), 1.0);
    }

    #[test]
    fn mean_std_is_the_population_form() {
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 1.0));
        let (m, s) = mean_std(&[20.0, 40.0, 30.0]);
        assert_eq!(m, 30.0);
        assert!((s - (200.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[]), (0.0, 0.0));
    }

    #[test]
    fn median_matches_hand_values() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn student_t_matches_tables() {
        // t(0.975, df) for df = 1, 4, 9, 49, 1000: tan(0.475π) for df = 1, else found by
        // integrating the density numerically (agreeing with printed tables).
        for (dof, want) in [
            (1.0, 12.706_204_736_174_696),
            (4.0, 2.776_445_105_197_931),
            (9.0, 2.262_157_162_797_923),
            (49.0, 2.009_575_237_129_219),
            (1000.0, 1.962_339_080_825_753),
        ] {
            let got = student_t_quantile(0.975, dof);
            assert!(close(got, want, 1e-9), "df {dof}: {got} vs {want}");
            assert!(close(student_t_quantile(0.025, dof), -want, 1e-9));
            assert!(close(student_t_cdf(want, dof), 0.975, 1e-12));
        }
        assert_eq!(student_t_cdf(0.0, 7.0), 0.5);
        // I_x(1, 1) = x; I_x(a, b) = 1 - I_(1-x)(b, a).
        assert!(close(beta_inc(1.0, 1.0, 0.3), 0.3, 1e-14));
        assert!(close(
            beta_inc(2.5, 0.5, 0.8),
            1.0 - beta_inc(0.5, 2.5, 0.2),
            1e-14
        ));
        assert!(student_t_quantile(1.0, 5.0).is_nan());
    }
}
