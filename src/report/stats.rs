//! The statistics the reports state: the 95% confidence interval of a setting's mean, and
//! the paired comparison of two settings on the same images (per-image differences,
//! percentile bootstrap of their mean). Pure; deterministic (the bootstrap's generator
//! has a fixed seed, so a re-rendered report prints the same interval).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::Stat;

/// Bootstrap resamples: enough for the 2.5% and 97.5% percentiles to be stable to about
/// a hundredth of the interval's width.
pub const RESAMPLES: usize = 4000;

/// z for a two-sided 95% interval under the normal approximation.
const Z95: f64 = 1.959_963_984_540_054;

/// Student's t quantile 0.975 for 1 … 30 degrees of freedom (standard tables).
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Student's t quantile 0.975 with `df` degrees of freedom: the table to 30, then the
/// Cornish–Fisher expansion around z (within 1e-4 of the exact value from 31 on). By
/// hand: a crate for one quantile would be the only statistics dependency.
pub fn t975(df: u64) -> f64 {
    if let Some(&t) = usize::try_from(df)
        .ok()
        .and_then(|d| T975.get(d.wrapping_sub(1)))
    {
        return t;
    }
    let (z, v) = (Z95, df as f64);
    z + (z.powi(3) + z) / (4.0 * v)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
        + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / (384.0 * v.powi(3))
}

impl Stat {
    /// Half-width of the 95% confidence interval of the mean: Student's t with n − 1
    /// degrees of freedom times the sample standard deviation (ddof = 1, from the
    /// population one `std` holds) over √n, so a handful of images gets the wide interval
    /// it has; `None` for fewer than two values, where there is no interval.
    pub fn ci95(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        Some(t975(self.count - 1) * self.std * (n / (n - 1.0)).sqrt() / n.sqrt())
    }
}

/// The mean per-image difference `a − b` over the images both settings have, with its
/// percentile-bootstrap 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PairedDiff {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    /// Images in the comparison.
    pub count: u64,
}

impl PairedDiff {
    /// Whether the interval excludes zero: the data support a difference in either
    /// direction.
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }

    /// What the interval says about the first setting of the pair, for a metric where
    /// lower is better or not.
    pub fn verdict(&self, lower_is_better: bool) -> Verdict {
        if !self.excludes_zero() {
            Verdict::Unclear
        } else if (self.mean < 0.0) == lower_is_better {
            Verdict::Better
        } else {
            Verdict::Worse
        }
    }
}

/// The outcome of a paired comparison for its first setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Better,
    Worse,
    /// The interval includes zero (or an image diverged, so there is none): the data do
    /// not tell the two apart.
    Unclear,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Unclear => "unclear",
        }
    }
}

/// Pairs the per-image values of two settings by image id and bootstraps the mean of
/// their differences (`a − b`). `None` with fewer than two images in common. An image
/// that diverged on either side (a non-finite value) makes the difference and its
/// interval NaN, as it makes each setting's own mean non-finite: dropping it would
/// compare the two on the images both happened to restore, and could call a setting
/// better because its failures left the sample.
pub fn paired(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> Option<PairedDiff> {
    let diffs: Vec<f64> = a
        .iter()
        .filter_map(|(id, x)| b.get(id).map(|y| x - y))
        .collect();
    if diffs.len() >= 2 && diffs.iter().any(|d| !d.is_finite()) {
        return Some(PairedDiff {
            mean: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
            count: diffs.len() as u64,
        });
    }
    bootstrap_mean(&diffs, RESAMPLES)
}

/// The mean of `values` and the 2.5% and 97.5% percentiles of the means of `resamples`
/// resamples with replacement. `None` with fewer than two values.
pub fn bootstrap_mean(values: &[f64], resamples: usize) -> Option<PairedDiff> {
    let n = values.len();
    if n < 2 || resamples == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha20Rng::seed_from_u64(0x000a_db5b_0075);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((resamples - 1) as f64 * q).round() as usize];
    Some(PairedDiff {
        mean,
        lo: at(0.025),
        hi: at(0.975),
        count: n as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(values: &[f64]) -> BTreeMap<String, f64> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("img-{i:03}"), *v))
            .collect()
    }

    #[test]
    fn a_diverged_image_makes_the_paired_difference_undecided_not_dropped() {
        let mut ambient = ids(&[0.01, 0.02, 0.03]);
        ambient.insert("img-001".into(), f64::INFINITY);
        let clean = ids(&[0.02, 0.03, 0.04]);
        let d = paired(&ambient, &clean).expect("three images in common");
        assert_eq!(d.count, 3);
        assert!(d.mean.is_nan() && d.lo.is_nan() && d.hi.is_nan(), "{d:?}");
        assert_eq!(d.verdict(true), Verdict::Unclear);
        // Without the diverged image the same data is decided (ambient lower by 0.01).
        let d = paired(&ids(&[0.01, 0.02, 0.03]), &clean).expect("paired");
        assert_eq!(d.verdict(true), Verdict::Better);
    }

    #[test]
    fn t_quantiles_match_the_tables_past_the_table() {
        // Exact values: df 31 → 2.0395, 60 → 2.0003, 120 → 1.9799, 1000 → 1.9623.
        for (df, t) in [(31, 2.0395), (60, 2.0003), (120, 1.9799), (1000, 1.9623)] {
            assert!((t975(df) - t).abs() < 1e-4, "df {df}: {}", t975(df));
        }
        assert_eq!(t975(3), 3.182);
    }

    #[test]
    fn ci95_of_the_mean_shrinks_with_the_square_root_of_n() {
        let s = Stat {
            mean: 1.0,
            std: 0.5,
            count: 100,
        };
        let ci = s.ci95().unwrap();
        // t(0.975, 99) = 1.9842 · 0.5 · √(100/99) / 10
        assert!((ci - 0.099_71).abs() < 1e-4, "{ci}");
        let four_times = Stat { count: 400, ..s };
        assert!((ci / four_times.ci95().unwrap() - 2.0).abs() < 0.03);
        // Four images: t(0.975, 3) = 3.182, not 1.96.
        let four = Stat { count: 4, ..s }.ci95().unwrap();
        assert!((four - 3.182 * 0.5 * (4.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-9);
        // One value: no interval (not one of width 0).
        assert_eq!(Stat { count: 1, ..s }.ci95(), None);
    }

    #[test]
    fn a_consistent_shift_excludes_zero_and_noise_does_not() {
        // b = a − 0.01 on every image, plus image-to-image spread common to both.
        let base: Vec<f64> = (0..200)
            .map(|i| 0.05 + 0.02 * ((i * 37 % 17) as f64 / 17.0))
            .collect();
        let a = ids(&base);
        let b = ids(&base.iter().map(|v| v - 0.01).collect::<Vec<_>>());
        let d = paired(&a, &b).unwrap();
        assert!((d.mean - 0.01).abs() < 1e-12 && d.excludes_zero(), "{d:?}");
        assert!((d.lo - 0.01).abs() < 1e-12 && (d.hi - 0.01).abs() < 1e-12);
        // Differences that alternate ± around zero: the interval covers zero.
        let c = ids(&base
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 2 == 0 { 0.003 } else { -0.003 })
            .collect::<Vec<_>>());
        let d = paired(&c, &a).unwrap();
        assert!(d.lo < 0.0 && d.hi > 0.0 && !d.excludes_zero(), "{d:?}");
        assert_eq!(d.count, 200);
    }

    #[test]
    fn pairs_by_id_and_is_deterministic() {
        let mut a = ids(&[1.0, 2.0, 3.0, 4.0]);
        let b = ids(&[0.5, 1.0, 2.0]);
        a.insert("only-in-a".into(), 100.0);
        let d = paired(&a, &b).unwrap();
        assert_eq!(d.count, 3);
        assert!((d.mean - (0.5 + 1.0 + 1.0) / 3.0).abs() < 1e-12);
        assert!(d.lo <= d.mean && d.mean <= d.hi);
        assert_eq!(paired(&a, &b), Some(d));
        assert_eq!(paired(&ids(&[1.0]), &ids(&[2.0])), None);
    }
}
