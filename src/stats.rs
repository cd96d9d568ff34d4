//! Robust statistics for short, noisy series: a trend that a few outliers cannot move, its
//! confidence interval, and rank tests. Everything here is pure and works on plain slices.

/// A fitted straight line with a 95% confidence interval for its slope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    pub slope: f64,
    pub intercept: f64,
    pub slope_low: f64,
    pub slope_high: f64,
    pub points: usize,
    /// One-sided confidence that the series grows (1 − p of the Mann–Kendall test).
    pub growth_confidence: f64,
}

/// Above this many points a series is reduced to this many bin medians first: the pairwise
/// slopes grow with n², and 300 bins keep the interval honest while bounding the cost.
pub const MAX_POINTS: usize = 300;

/// z for a two-sided 95% interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// Theil–Sen slope (the median of all pairwise slopes; Sen 1968) with the distribution-free
/// interval of Hollander & Wolfe (1999, §9.4): the order statistics of the pairwise slopes at
/// (N ∓ z·√Var(S))/2, where S is Kendall's statistic. Returns `None` below 3 points or when
/// every x is equal.
pub fn theil_sen(x: &[f64], y: &[f64]) -> Option<Trend> {
    debug_assert_eq!(x.len(), y.len());
    let (x, y) = reduce(x, y);
    let n = x.len();
    if n < 3 {
        return None;
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    let mut s_statistic: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            let dx = x[j] - x[i];
            let dy = y[j] - y[i];
            if dx != 0.0 {
                slopes.push(dy / dx);
            }
            s_statistic += (dy * dx.signum()).partial_cmp(&0.0).map_or(0, |o| o as i64);
        }
    }
    if slopes.is_empty() {
        return None;
    }
    let big_n = slopes.len() as f64;
    let n_f = n as f64;
    let variance = n_f * (n_f - 1.0) * (2.0 * n_f + 5.0) / 18.0;
    let c = Z_95 * variance.sqrt();
    let low_rank = ((big_n - c) / 2.0).round().max(1.0) as usize;
    let high_rank = ((big_n + c) / 2.0).round() as usize + 1;
    // Four order statistics of up to 45,000 slopes: selecting them is linear, a sort is not.
    let len = slopes.len();
    let (middle_low, middle_high) = ((len - 1) / 2, len / 2);
    let [slope_low, median_low, median_high, slope_high] = order_statistics(
        &mut slopes,
        [
            low_rank.min(len) - 1,
            middle_low,
            middle_high,
            high_rank.clamp(1, len) - 1,
        ],
    );
    let slope = (median_low + median_high) / 2.0;
    let intercepts: Vec<f64> = x.iter().zip(&y).map(|(x, y)| y - slope * x).collect();
    // Mann–Kendall with continuity correction: z = (S − 1)/√Var(S) for S > 0.
    let z = if s_statistic > 0 {
        (s_statistic as f64 - 1.0) / variance.sqrt()
    } else if s_statistic < 0 {
        (s_statistic as f64 + 1.0) / variance.sqrt()
    } else {
        0.0
    };
    Some(Trend {
        slope,
        intercept: median(&intercepts),
        slope_low,
        slope_high,
        points: n,
        growth_confidence: normal_cdf(z),
    })
}

/// Bins long series into `MAX_POINTS` groups of consecutive points (median x, median y).
fn reduce(x: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
    if x.len() <= MAX_POINTS {
        return (x.to_vec(), y.to_vec());
    }
    let per_bin = x.len().div_ceil(MAX_POINTS);
    x.chunks(per_bin)
        .zip(y.chunks(per_bin))
        .map(|(xs, ys)| (median(xs), median(ys)))
        .unzip()
}

/// The best single change point in level, by least absolute deviation from each side's median.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Index of the first point after the step.
    pub at: usize,
    pub before: f64,
    pub after: f64,
    /// Mean absolute deviation of the points from their side's median.
    pub residual: f64,
}

/// Each side keeps at least `min_side` points.
pub fn best_step(y: &[f64], min_side: usize) -> Option<Step> {
    let min_side = min_side.max(1);
    if y.len() < 2 * min_side {
        return None;
    }
    let mut best: Option<Step> = None;
    for at in min_side..=y.len() - min_side {
        let (left, right) = y.split_at(at);
        let (before, after) = (median(left), median(right));
        let residual = (left.iter().map(|v| (v - before).abs()).sum::<f64>()
            + right.iter().map(|v| (v - after).abs()).sum::<f64>())
            / y.len() as f64;
        if best.is_none_or(|b| residual < b.residual) {
            best = Some(Step {
                at,
                before,
                after,
                residual,
            });
        }
    }
    best
}

/// Mean absolute deviation of `y` from a line.
pub fn line_residual(x: &[f64], y: &[f64], trend: &Trend) -> f64 {
    if y.is_empty() {
        return 0.0;
    }
    x.iter()
        .zip(y)
        .map(|(x, y)| (y - trend.intercept - trend.slope * x).abs())
        .sum::<f64>()
        / y.len() as f64
}

/// Mann–Whitney U test of `a` against `b` (normal approximation with tie correction; Mann &
/// Whitney 1947). Returns the two-sided p-value, or `None` when a side is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|v| (*v, true))
        .chain(b.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|l, r| l.0.total_cmp(&r.0));
    let ranks = average_ranks(&all.iter().map(|v| v.0).collect::<Vec<_>>());
    let rank_sum_a: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|(v, _)| v.1)
        .map(|(_, r)| r)
        .sum();
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let tie_term: f64 = tie_groups(&all.iter().map(|v| v.0).collect::<Vec<_>>())
        .map(|t| t * t * t - t)
        .sum();
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)).max(1.0));
    if variance <= 0.0 {
        return Some(1.0);
    }
    let z = ((u - n1 * n2 / 2.0).abs() - 0.5).max(0.0) / variance.sqrt();
    Some((2.0 * (1.0 - normal_cdf(z))).min(1.0))
}

/// Hodges–Lehmann estimate of the shift of `a` over `b` (the median of all pairwise
/// differences) with the Moses 95% interval (Hollander & Wolfe 1999, §4.3).
///
/// All pairwise differences cost n1·n2 (two groups of 50,000 trials: 20 GB). Past
/// [`HL_SAMPLE`] points a group is replaced by that many of its quantiles, each standing for
/// an equal share of it, and the interval's ranks are scaled to the reduced differences: the
/// estimate moves by less than the spacing of those quantiles, far inside the interval at
/// such sizes.
pub fn hodges_lehmann(a: &[f64], b: &[f64]) -> Option<(f64, f64, f64)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (reduced_a, reduced_b) = (quantiles(a, HL_SAMPLE), quantiles(b, HL_SAMPLE));
    let mut differences: Vec<f64> = reduced_a
        .iter()
        .flat_map(|x| reduced_b.iter().map(move |y| x - y))
        .collect();
    differences.sort_by(f64::total_cmp);
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let big_n = differences.len();
    let c = (n1 * n2 / 2.0 - Z_95 * (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt()).floor();
    let c = c.max(0.0);
    // Reduced: the rank among all n1·n2 differences, as a share, applied to the reduced ones.
    let c = match big_n == a.len() * b.len() {
        true => c as usize,
        false => (c / (n1 * n2) * big_n as f64).floor() as usize,
    };
    let c = c.min(big_n - 1);
    Some((
        median_sorted(&differences),
        differences[c],
        differences[big_n - 1 - c],
    ))
}

/// Points per group beyond which [`hodges_lehmann`] works on quantiles.
pub const HL_SAMPLE: usize = 1000;

/// `values` itself when it has at most `k` points, else `k` of its quantiles (the midpoints of
/// `k` equal shares).
fn quantiles(values: &[f64], k: usize) -> Vec<f64> {
    if values.len() <= k {
        return values.to_vec();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    (0..k)
        .map(|i| sorted[((2 * i + 1) * n / (2 * k)).min(n - 1)])
        .collect()
}

/// Spearman's rank correlation with the t approximation for its p-value (two-sided).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = x.len();
    if n < 4 || n != y.len() {
        return None;
    }
    let rank_of = |v: &[f64]| {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
        let sorted: Vec<f64> = order.iter().map(|i| v[*i]).collect();
        let sorted_ranks = average_ranks(&sorted);
        let mut ranks = vec![0.0; v.len()];
        for (position, index) in order.iter().enumerate() {
            ranks[*index] = sorted_ranks[position];
        }
        ranks
    };
    let (rx, ry) = (rank_of(x), rank_of(y));
    let mean = (n as f64 + 1.0) / 2.0;
    let (mut covariance, mut var_x, mut var_y) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        covariance += (a - mean) * (b - mean);
        var_x += (a - mean).powi(2);
        var_y += (b - mean).powi(2);
    }
    if var_x == 0.0 || var_y == 0.0 {
        return None;
    }
    let rho = covariance / (var_x * var_y).sqrt();
    let t = rho * ((n as f64 - 2.0) / (1.0 - rho * rho).max(1e-12)).sqrt();
    // For the sample sizes here a normal tail is close enough to Student's t.
    Some((rho, (2.0 * (1.0 - normal_cdf(t.abs()))).min(1.0)))
}

/// Ranks (1-based) of sorted values, ties sharing their average rank.
fn average_ranks(sorted: &[f64]) -> Vec<f64> {
    let mut ranks = vec![0.0; sorted.len()];
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[i] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        ranks[i..=j].iter_mut().for_each(|r| *r = rank);
        i = j + 1;
    }
    ranks
}

fn tie_groups(sorted: &[f64]) -> impl Iterator<Item = f64> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= sorted.len() {
            return None;
        }
        let start = i;
        while i < sorted.len() && sorted[i] == sorted[start] {
            i += 1;
        }
        Some((i - start) as f64)
    })
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    median_sorted(&sorted)
}

/// The values at the given 0-based ranks of `values` as if sorted by `f64::total_cmp` (each
/// rank below `values.len()`). Taken in ascending rank, each selection leaves everything after
/// its rank no smaller, so the next one searches only that part.
fn order_statistics<const K: usize>(values: &mut [f64], ranks: [usize; K]) -> [f64; K] {
    let mut order: [usize; K] = std::array::from_fn(|i| i);
    order.sort_by_key(|&i| ranks[i]);
    let mut found = [f64::NAN; K];
    let mut from = 0;
    for i in order {
        let rank = ranks[i];
        if rank >= from {
            values[from..].select_nth_unstable_by(rank - from, f64::total_cmp);
            from = rank + 1;
        }
        found[i] = values[rank];
    }
    found
}

fn median_sorted(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Standard normal CDF via the complementary error function (Numerical Recipes' erfc
/// Chebyshev fit, relative error < 1.2e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let tau = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erfc = if x >= 0.0 { tau } else { 2.0 - tau };
    0.5 * erfc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics_match_a_sort() {
        let mut state = 11u64;
        for len in 1..60usize {
            let values: Vec<f64> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Few distinct values: ties must not move an order statistic.
                    (state % 7) as f64 - 3.0
                })
                .collect();
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let ranks = [len - 1, 0, len / 2, len / 2, (len - 1) / 3];
            let mut scratch = values.clone();
            let found = order_statistics(&mut scratch, ranks);
            assert_eq!(found, ranks.map(|r| sorted[r]), "len {len}");
        }
    }

    #[test]
    fn theil_sen_ignores_outliers() {
        let x: Vec<f64> = (0..30).map(f64::from).collect();
        let mut y: Vec<f64> = x.iter().map(|x| 100.0 + 4.0 * x).collect();
        y[7] += 500.0;
        y[20] -= 300.0;
        let fit = theil_sen(&x, &y).expect("fit");
        assert!((fit.slope - 4.0).abs() < 1e-9, "{fit:?}");
        assert!(fit.slope_low <= 4.0 && fit.slope_high >= 4.0);
        assert!(fit.growth_confidence > 0.999);
    }

    #[test]
    fn interval_covers_the_true_slope_about_95_percent_of_the_time() {
        let mut state = 7u64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let x: Vec<f64> = (0..30).map(f64::from).collect();
        let mut covered = 0;
        for _ in 0..400 {
            let y: Vec<f64> = x.iter().map(|x| 2.0 * x + 40.0 * uniform()).collect();
            let fit = theil_sen(&x, &y).expect("fit");
            covered += usize::from(fit.slope_low <= 2.0 && 2.0 <= fit.slope_high);
        }
        assert!((360..=396).contains(&covered), "covered {covered}/400");
    }

    #[test]
    fn flat_series_has_no_growth_confidence() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let fit = theil_sen(&x, &[5.0; 10]).expect("fit");
        assert_eq!(fit.slope, 0.0);
        assert!((fit.growth_confidence - 0.5).abs() < 1e-6);
        assert!(theil_sen(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
    }

    #[test]
    fn step_is_found() {
        let y: Vec<f64> = (0..20).map(|i| if i < 12 { 10.0 } else { 210.0 }).collect();
        let step = best_step(&y, 3).expect("step");
        assert_eq!((step.at, step.before, step.after), (12, 10.0, 210.0));
        assert_eq!(step.residual, 0.0);
    }

    #[test]
    fn rank_tests() {
        let a: Vec<f64> = (0..10).map(|i| 16.0 + f64::from(i % 3)).collect();
        let b: Vec<f64> = (0..20).map(|i| f64::from(i % 4)).collect();
        assert!(mann_whitney(&a, &b).expect("p") < 0.001);
        assert!(mann_whitney(&b[..8], &b[8..16]).expect("p") > 0.5);
        let (rho, p) =
            spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 4.0, 5.0, 9.0, 20.0]).expect("rho");
        assert!((rho - 1.0).abs() < 1e-9 && p < 0.01);
    }

    #[test]
    fn hodges_lehmann_on_large_groups_works_on_quantiles_and_stays_right() {
        // Two groups of 20,000 (400 million differences whole: 3.2 GB), shifted by 3.
        let noise = |i: usize| ((i * 7919) % 1000) as f64 / 100.0;
        let a: Vec<f64> = (0..20_000).map(|i| 3.0 + noise(i)).collect();
        let b: Vec<f64> = (0..20_000).map(|i| noise(i + 13)).collect();
        let (shift, low, high) = hodges_lehmann(&a, &b).expect("an estimate");
        assert!((shift - 3.0).abs() < 0.05, "{shift}");
        assert!(
            low <= 3.0 && 3.0 <= high && high - low < 0.5,
            "{low}..{high}"
        );
        // Small groups are not reduced: the exact estimate.
        let (exact, ..) = hodges_lehmann(&[5.0, 6.0, 7.0], &[1.0, 2.0]).expect("an estimate");
        assert_eq!(exact, 4.5);
    }

    #[test]
    fn normal_cdf_matches_tables() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-2.326_348) - 0.01).abs() < 1e-6);
    }
}
