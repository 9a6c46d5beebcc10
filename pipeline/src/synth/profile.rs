//! The statistical shape of the synthetic dump: the published figures it reproduces and how they are drawn.
//!
//! Targets (DESIGN.md, data README):
//! - star mix of the full Electronics file: 358,119 / 179,180 / 238,587 / 536,819 / 1,781,156 for ratings 1..5;
//! - 1,002,739 of those reviews (32.4%) have at least one helpful vote;
//! - mean review_body length in characters per rating, all reviews: 367 / 474 / 476 / 469 / 325;
//! - the same for helpful reviews: 499 / 690 / 763 / 818 / 612.
//!
//! The published figures do not say how the helpful share varies by rating. Critical reviews collect more votes on
//! Amazon, so [`HELPFUL_SHARE`] leans that way while keeping the overall share at 32.4%. The mean length of reviews
//! with no helpful vote then follows from the two published means:
//! `all = share * helpful + (1 - share) * unhelpful`.

/// Reviews per star rating (index 0 is one star) in the full Electronics file.
pub const STAR_COUNTS: [u64; 5] = [358_119, 179_180, 238_587, 536_819, 1_781_156];

/// Overall share of reviews with helpful_votes >= 1: 1,002,739 / 3,093,861.
pub const HELPFUL_OVERALL: f64 = 1_002_739.0 / 3_093_861.0;

/// Share of reviews with at least one helpful vote, per rating (chosen; see the module docs).
pub const HELPFUL_SHARE: [f64; 5] = [0.55, 0.50, 0.42, 0.33, 0.2465];

/// Mean review_body length in characters per rating, all reviews.
pub const MEAN_CHARS_ALL: [f64; 5] = [367.0, 474.0, 476.0, 469.0, 325.0];

/// Mean review_body length in characters per rating, reviews with helpful_votes >= 1.
pub const MEAN_CHARS_HELPFUL: [f64; 5] = [499.0, 690.0, 763.0, 818.0, 612.0];

/// Log-space spread of body lengths. Review lengths are strongly right-skewed; 0.85 puts the median near 70% of the
/// mean, as in the real files.
pub const LENGTH_SIGMA: f64 = 0.85;

/// Mean review_body length of reviews with no helpful vote, per rating.
pub fn mean_chars_unhelpful(rating: usize) -> f64 {
    let share = HELPFUL_SHARE[rating];
    (MEAN_CHARS_ALL[rating] - share * MEAN_CHARS_HELPFUL[rating]) / (1.0 - share)
}

/// Mean body length of one (rating, helpful) bucket.
pub fn mean_chars(rating: usize, helpful: bool) -> f64 {
    if helpful { MEAN_CHARS_HELPFUL[rating] } else { mean_chars_unhelpful(rating) }
}

/// The body length at quantile `u` of a log-normal with the given mean and [`LENGTH_SIGMA`].
pub fn length_at_quantile(mean: f64, u: f64) -> usize {
    let mu = mean.ln() - LENGTH_SIGMA * LENGTH_SIGMA / 2.0;
    let chars = (mu + LENGTH_SIGMA * normal_quantile(u)).exp().round();
    chars.clamp(1.0, 32_000.0) as usize
}

/// Inverse of the standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    const LOW: f64 = 0.024_25;

    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpful_shares_reproduce_the_overall_share() {
        let total: u64 = STAR_COUNTS.iter().sum();
        let overall: f64 =
            STAR_COUNTS.iter().zip(HELPFUL_SHARE).map(|(&n, share)| n as f64 * share).sum::<f64>() / total as f64;
        assert!((overall - HELPFUL_OVERALL).abs() < 0.001, "{overall} vs {HELPFUL_OVERALL}");
    }

    #[test]
    fn unhelpful_means_are_plausible() {
        for (rating, all) in MEAN_CHARS_ALL.iter().enumerate() {
            let m = mean_chars_unhelpful(rating);
            assert!((150.0..*all).contains(&m), "rating {}: {m}", rating + 1);
        }
    }

    #[test]
    fn quantiles() {
        assert!(normal_quantile(0.5).abs() < 1e-9);
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-6);
    }

    #[test]
    fn lengths_have_the_target_mean() {
        // Midpoint quantiles integrate the distribution: the mean must land on the target.
        let n = 100_000;
        let mean =
            (0..n).map(|i| length_at_quantile(612.0, (i as f64 + 0.5) / n as f64) as f64).sum::<f64>() / n as f64;
        assert!((mean - 612.0).abs() / 612.0 < 0.005, "{mean}");
    }
}
