//! Dataset-level evaluation outputs: `summary.parquet` (one row per setting) and
//! `report.html` (one self-contained file: tables, plots, example grids). Pure
//! rendering from the structs below; running the sweep lives in `crate::evaluate`.

use std::collections::{BTreeMap, BTreeSet};

pub mod figures;
pub mod format;
pub mod html;
pub mod markdown;
pub mod plot;
pub mod run_page;
pub mod stats;
pub mod summary;
pub mod templates;

/// Mean, standard deviation (population) and count of one metric over a setting's images.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub count: u64,
}

pub use stats::PairedDiff;

/// The model name and solver of the plain baseline rows (least squares, A⁺y): no prior,
/// no steps; `adps evaluate` adds one per operator.
pub const BASELINE_MODEL: &str = "least squares (A⁺y)";
pub const BASELINE_SOLVER: &str = "least-squares";

/// Whether a row is the plain baseline rather than a diffusion model's setting.
pub fn is_baseline(r: &SettingSummary) -> bool {
    r.solver == BASELINE_SOLVER
}

/// The number of test images a setting's metrics were computed over: the largest count
/// of its metrics. A metric with a lower count lacks values on some images (PSNR leaves
/// out exact reconstructions, +∞); the reports say so.
pub fn image_count(r: &SettingSummary) -> u64 {
    r.metrics.values().map(|s| s.count).max().unwrap_or(0)
}

/// The metrics compared image by image between each Ambient model and the clean one.
pub const PAIRED_METRICS: [&str; 3] = ["mse", "ssim", "lpips"];

/// The metrics every setting is compared on with its operator's least-squares floor,
/// image by image (the floor has no LPIPS).
pub const FLOOR_METRICS: [&str; 2] = ["mse", "ssim"];

/// One evaluated setting (model × operator × step count × seed) on the test images.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SettingSummary {
    /// Model name from its card, e.g. `fmnist-p0.4`.
    pub model: String,
    /// The model's training erasure probability p.
    pub train_p: f64,
    /// Operator string, e.g. `cs:256`.
    pub operator: String,
    /// Operator kind (`cs`, `sr`, …) and level (M, f, …).
    pub kind: String,
    pub level: f64,
    /// Sampler steps N, solver, and denoiser evaluations per image (NFE).
    pub steps: u32,
    pub solver: String,
    pub nfe: u32,
    pub seed: u64,
    /// The ζ chosen on the validation images.
    pub zeta: f64,
    /// The ζ grid searched (after any widening) and the validation mean MSE at each.
    pub zeta_grid: Vec<f64>,
    pub zeta_val_mse: Vec<f64>,
    /// Metrics on the test images: keys `mse`, `psnr`, `ssim`, `lpips`, `residual`.
    pub metrics: BTreeMap<String, Stat>,
    /// Restore seconds of the test run: the sum over its images of each image's share of
    /// its batch's wall time, as recorded in the committed parts.
    pub seconds: f64,
    /// The clean-trained model (train p = 0) this setting is compared with, image by
    /// image, at the same operator, step count and seed; empty for the clean model itself
    /// and where there is none.
    pub paired_with: String,
    /// Per metric of [`PAIRED_METRICS`]: this setting's per-image values minus the
    /// reference's, their mean with a bootstrap 95% confidence interval.
    pub paired: BTreeMap<String, PairedDiff>,
    /// Per metric of [`FLOOR_METRICS`]: this setting's per-image values minus the
    /// least-squares floor's on the same images (the baseline row of its operator), with
    /// a bootstrap 95% interval; empty for the baseline rows and sweeps without one.
    pub floor: BTreeMap<String, PairedDiff>,
}

/// Example reconstructions for one task (operator) on a few test images.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleGrid {
    /// Operator string, e.g. `sr:4`.
    pub operator: String,
    /// The image ids (columns).
    pub ids: Vec<String>,
    /// Rows: a label (`ground truth`, `measurement`, then one per model) and one PNG per id.
    pub rows: Vec<(String, Vec<Vec<u8>>)>,
}

/// The models of a sweep in display order: by training erasure probability p, then
/// name; each with its p; the baseline (p NaN) last. The HTML and Markdown reports both
/// list models this way.
pub fn models(rows: &[SettingSummary]) -> Vec<(String, f64)> {
    let mut list: Vec<(String, f64)> = Vec::new();
    for r in rows {
        if !list.iter().any(|(m, _)| m == &r.model) {
            list.push((r.model.clone(), r.train_p));
        }
    }
    list.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    list
}

/// The step counts N an operator was run at (by the diffusion models).
pub fn steps_of(rows: &[SettingSummary], op: &str) -> BTreeSet<u32> {
    rows.iter()
        .filter(|r| r.operator == op && !is_baseline(r))
        .map(|r| r.steps)
        .collect()
}

/// The validation MSE a setting was chosen by: its ζ curve's value at the chosen ζ (the
/// curve's minimum, since ζ is its argmin), the mean MSE over the validation images.
/// Settings without a finite one (the baseline, which has no ζ; a curve that diverged
/// everywhere) rank last.
pub fn val_key(r: &SettingSummary) -> f64 {
    if is_baseline(r) {
        return f64::INFINITY;
    }
    r.zeta_val_mse
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .min_by(f64::total_cmp)
        .unwrap_or(f64::INFINITY)
}

/// The index in `idx` of the best setting by validation MSE ([`val_key`]; ties: fewer
/// NFE, then first). Never by a test metric: the test images only report.
pub fn best_of(rows: &[SettingSummary], idx: impl IntoIterator<Item = usize>) -> Option<usize> {
    idx.into_iter().min_by(|&a, &b| {
        val_key(&rows[a])
            .total_cmp(&val_key(&rows[b]))
            .then(rows[a].nfe.cmp(&rows[b].nfe))
            .then(a.cmp(&b))
    })
}

/// The step counts a best step count of operator kind `kind` is chosen among: those every
/// operator of the kind was run at (so the Fig. 2/3 curves compare equal budgets), or all
/// of them when none is common. The figures, the headline tables, ★ and
/// `best_over_steps`, the paired tables and the example grids all use these.
pub fn candidate_steps(rows: &[SettingSummary], kind: &str) -> BTreeSet<u32> {
    let mut ops: Vec<&str> = rows
        .iter()
        .filter(|r| r.kind == kind && !is_baseline(r))
        .map(|r| r.operator.as_str())
        .collect();
    ops.sort_unstable();
    ops.dedup();
    let mut common: Option<BTreeSet<u32>> = None;
    for op in ops {
        let these = steps_of(rows, op);
        common = Some(match common {
            Some(c) => c.intersection(&these).copied().collect(),
            None => these,
        });
    }
    let common = common.unwrap_or_default();
    if common.is_empty() {
        rows.iter()
            .filter(|r| r.kind == kind && !is_baseline(r))
            .map(|r| r.steps)
            .collect()
    } else {
        common
    }
}

/// Each diffusion model's best step count per operator and seed: among the settings of
/// that model × operator × seed at the kind's [`candidate_steps`], the one with the
/// lowest validation MSE ([`best_of`]). Baseline rows (no steps, no ζ) are left out.
pub fn best_per_seed(rows: &[SettingSummary]) -> BTreeMap<(String, String, u64), usize> {
    let mut candidates: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut groups: BTreeMap<(String, String, u64), Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if is_baseline(r) {
            continue;
        }
        let steps = candidates
            .entry(r.kind.clone())
            .or_insert_with(|| candidate_steps(rows, &r.kind));
        if steps.contains(&r.steps) {
            groups
                .entry((r.model.clone(), r.operator.clone(), r.seed))
                .or_default()
                .push(i);
        }
    }
    groups
        .into_iter()
        .filter_map(|(k, v)| best_of(rows, v).map(|b| (k, b)))
        .collect()
}

/// The rows `best_over_steps` and ★ mark: every [`best_per_seed`] choice, and the
/// baseline rows (nothing to choose; they are rows of every headline table).
pub fn best_over_steps(rows: &[SettingSummary]) -> BTreeSet<usize> {
    best_per_seed(rows)
        .into_values()
        .chain((0..rows.len()).filter(|&i| is_baseline(&rows[i])))
        .collect()
}

/// The setting each headline cell (model × operator) shows: the [`best_per_seed`] choice,
/// of the seed whose choice has the lowest validation MSE when there are several seeds;
/// for the baseline, its row (the first, if several).
pub fn best_per_model_operator(rows: &[SettingSummary]) -> BTreeMap<(String, String), usize> {
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for ((model, op, _), i) in best_per_seed(rows) {
        groups.entry((model, op)).or_default().push(i);
    }
    let mut best: BTreeMap<(String, String), usize> = groups
        .into_iter()
        .filter_map(|(k, v)| best_of(rows, v).map(|b| (k, b)))
        .collect();
    for (i, r) in rows.iter().enumerate() {
        if is_baseline(r) {
            best.entry((r.model.clone(), r.operator.clone()))
                .or_insert(i);
        }
    }
    best
}

/// A Heun setting `op` = `kind:level` with the given metric means (std = mean / 4,
/// count 16), for the renderers' tests. Its validation curve's minimum (at ζ = 1) is the
/// test MSE when one is given, so validation and test agree unless a test sets
/// `zeta_val_mse` itself.
#[cfg(test)]
pub(crate) fn test_setting(
    model: &str,
    p: f64,
    op: &str,
    steps: u32,
    metrics: &[(&str, f64)],
) -> SettingSummary {
    let (kind, level) = op.split_once(':').expect("op is kind:level");
    SettingSummary {
        model: model.into(),
        train_p: p,
        operator: op.into(),
        kind: kind.into(),
        level: level.parse().expect("numeric level"),
        steps,
        solver: "heun".into(),
        nfe: 2 * steps - 1,
        seed: 0,
        zeta: 1.0,
        zeta_grid: vec![0.1, 0.3, 1.0, 3.0],
        zeta_val_mse: match metrics.iter().find(|(k, _)| *k == "mse") {
            Some(&(_, m)) => vec![6.0 * m, 2.0 * m, m, 4.0 * m],
            None => vec![0.3, 0.1, 0.05, 0.2],
        },
        metrics: metrics
            .iter()
            .map(|&(k, mean)| {
                let st = Stat {
                    mean,
                    std: mean / 4.0,
                    count: 16,
                };
                (k.to_string(), st)
            })
            .collect(),
        seconds: 3.0,
        paired_with: String::new(),
        paired: BTreeMap::new(),
        floor: BTreeMap::new(),
    }
}
