//! The normal-quantile transform of a numeric column: a value's position
//! among the training values (its empirical CDF, read off stored
//! quantiles), mapped through the standard normal quantile function. Heavy
//! tails, skew and zero-inflated counts all come out on the same bounded,
//! roughly normal scale, which the network learns from more easily than
//! from standardised raw values (Holzmüller et al. 2024 and Gorishniy et
//! al. 2022 both preprocess numbers this way for tabular MLPs).
//!
//! The stored quantiles are linearly interpolated order statistics (as
//! NumPy's default percentile and scikit-learn's QuantileTransformer store
//! them), at evenly spaced probabilities: aggregates, like the median, not
//! training rows.

/// Probabilities are kept inside [`U_BOUND`, 1 − `U_BOUND`] before the
/// normal quantile, so encoded values lie within about ±3.72.
const U_BOUND: f64 = 1e-4;

/// `count` quantiles of `sorted` (ascending, non-empty) at probabilities
/// `t / (count − 1)`, linearly interpolated between order statistics.
pub(super) fn quantiles(sorted: &[f64], count: usize) -> Vec<f64> {
    let count = count.max(2);
    let last = (sorted.len() - 1) as f64;
    (0..count)
        .map(|t| {
            let position = last * t as f64 / (count - 1) as f64;
            let below = position.floor() as usize;
            let above = position.ceil() as usize;
            sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
        })
        .collect()
}

/// Where `x` falls among the training values, in (0, 1): linear between
/// neighbouring quantiles; a value equal to several quantiles (a tie, such
/// as the zeros of a zero-inflated count) gets the middle of their
/// probabilities.
pub(super) fn probability(x: f64, quantiles: &[f64]) -> f64 {
    let q = quantiles;
    let steps = (q.len() - 1) as f64;
    // From the last quantile at or below x: q[i] <= x < q[i + 1].
    let at_or_below = q.partition_point(|&v| v <= x);
    let forward = match at_or_below {
        0 => 0.0,
        n if n == q.len() => 1.0,
        n => {
            let i = n - 1;
            (i as f64 + (x - q[i]) / (q[i + 1] - q[i])) / steps
        }
    };
    // From the first quantile at or above x: q[j - 1] < x <= q[j].
    let below = q.partition_point(|&v| v < x);
    let backward = match below {
        0 => 0.0,
        n if n == q.len() => 1.0,
        j => ((j - 1) as f64 + (x - q[j - 1]) / (q[j] - q[j - 1])) / steps,
    };
    0.5 * (forward + backward)
}

/// The encoded value of `x`: the standard normal quantile of its
/// probability.
pub(super) fn transform(x: f64, quantiles: &[f64]) -> f64 {
    normal_quantile(probability(x, quantiles).clamp(U_BOUND, 1.0 - U_BOUND))
}

/// The standard normal quantile function (Acklam's rational approximation,
/// relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    const LOW: f64 = 0.02425;
    if p < LOW {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_order_statistics() {
        let sorted = [0.0, 10.0, 20.0, 30.0, 40.0];
        assert_eq!(quantiles(&sorted, 5), vec![0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(quantiles(&sorted, 3), vec![0.0, 20.0, 40.0]);
        assert_eq!(quantiles(&sorted, 9)[1], 5.0);
        assert_eq!(quantiles(&[7.0], 4), vec![7.0; 4]);
    }

    #[test]
    fn probabilities_are_linear_between_quantiles_and_clamped_outside() {
        let q = [0.0, 10.0, 20.0, 30.0, 40.0];
        assert_eq!(probability(20.0, &q), 0.5);
        assert_eq!(probability(25.0, &q), 0.625);
        assert_eq!(probability(-5.0, &q), 0.0);
        assert_eq!(probability(45.0, &q), 1.0);
        assert_eq!(probability(0.0, &q), 0.0);
        assert_eq!(probability(40.0, &q), 1.0);
    }

    #[test]
    fn a_tied_value_gets_the_middle_of_its_run() {
        // Half the training values are 0: quantiles 0, 0, 0, 5, 10.
        let q = [0.0, 0.0, 0.0, 5.0, 10.0];
        assert_eq!(probability(0.0, &q), 0.25);
        assert_eq!(probability(2.5, &q), 0.625);
        assert!(probability(-1.0, &q) < probability(0.0, &q));
    }

    #[test]
    fn the_transform_is_monotone_bounded_and_symmetric() {
        let q: Vec<f64> = (0..=100).map(f64::from).collect();
        let mut last = f64::NEG_INFINITY;
        for i in -20..=120 {
            let z = transform(f64::from(i), &q);
            assert!(z >= last, "{i}");
            assert!(z.abs() <= 3.72, "{i}: {z}");
            last = z;
        }
        assert!((transform(50.0, &q)).abs() < 1e-12);
        assert!((transform(20.0, &q) + transform(80.0, &q)).abs() < 1e-9);
    }

    #[test]
    fn the_normal_quantile_matches_known_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959963984540054),
            (0.8413447460685429, 1.0),
            (1e-4, -3.719016485455709),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-8,
                "{p}: {}",
                normal_quantile(p)
            );
        }
    }
}
