//! What the evaluation reports show, chosen once for every output: the operator order,
//! each model's best setting per operator (the headline tables of `report.html` and
//! `summary.md`), the points of the Fig. 2/3 curves and of the Fig. 4 NFE curves. Pure
//! functions of the setting summaries; the renderers only lay them out.

use std::collections::{BTreeMap, BTreeSet};

use super::format::lower_is_better;
use super::{
    best_of, best_per_model_operator, candidate_steps, is_baseline, steps_of, SettingSummary,
};

/// Sort rank of an operator kind: compressed sensing, super-resolution, then the rest.
pub fn kind_rank(kind: &str) -> (u8, &str) {
    match kind {
        "cs" => (0, kind),
        "sr" => (1, kind),
        k => (2, k),
    }
}

/// Operators in display order: (operator, kind, level).
pub fn operators(rows: &[SettingSummary]) -> Vec<(String, String, f64)> {
    let mut ops: Vec<(String, String, f64)> = Vec::new();
    for r in rows {
        if !ops.iter().any(|(o, _, _)| o == &r.operator) {
            ops.push((r.operator.clone(), r.kind.clone(), r.level));
        }
    }
    ops.sort_by(|a, b| {
        kind_rank(&a.1)
            .cmp(&kind_rank(&b.1))
            .then(a.2.total_cmp(&b.2))
            .then(a.0.cmp(&b.0))
    });
    ops
}

/// Operator kinds in display order.
pub fn kinds(rows: &[SettingSummary]) -> Vec<String> {
    let mut kinds: Vec<String> = rows
        .iter()
        .map(|r| r.kind.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    kinds.sort_by(|a, b| kind_rank(a).cmp(&kind_rank(b)));
    kinds
}

/// One row of a headline table: an operator and, per model (in `models` order), the
/// index of that model's best setting for it ([`best_per_model_operator`]: the step count
/// with the lowest validation MSE among the figures' [`candidate_steps`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BestRow {
    pub operator: String,
    pub cells: Vec<Option<usize>>,
}

/// The headline table: operators × models, each model's best step count (chosen on the
/// validation images, among the step counts the Fig. 2/3 curves use).
pub fn best_table(rows: &[SettingSummary], models: &[(String, f64)]) -> Vec<BestRow> {
    let best = best_per_model_operator(rows);
    operators(rows)
        .into_iter()
        .map(|(op, _, _)| BestRow {
            cells: models
                .iter()
                .map(|(m, _)| best.get(&(m.clone(), op.clone())).copied())
                .collect(),
            operator: op,
        })
        .collect()
}

/// The winning setting among `cells` by `metric` (lower or higher is better as the
/// metric says); settings without a finite value never win.
pub fn winner(
    rows: &[SettingSummary],
    cells: impl IntoIterator<Item = usize>,
    metric: &str,
) -> Option<usize> {
    let value = |i: usize| {
        rows[i]
            .metrics
            .get(metric)
            .map(|s| s.mean)
            .filter(|v| v.is_finite())
    };
    let lower = lower_is_better(metric);
    cells
        .into_iter()
        .filter_map(|i| value(i).map(|v| (i, v)))
        .min_by(|a, b| {
            let by_value = if lower {
                a.1.total_cmp(&b.1)
            } else {
                b.1.total_cmp(&a.1)
            };
            by_value
                .then(rows[a.0].nfe.cmp(&rows[b.0].nfe))
                .then(a.0.cmp(&b.0))
        })
        .map(|(i, _)| i)
}

/// A Fig. 2/3 analogue: one operator kind's metrics against its level.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelFigure {
    /// The levels any model has a point at, ascending.
    pub levels: Vec<f64>,
    /// The step counts the points were chosen from ([`candidate_steps`]): those every
    /// operator of the kind was run at (so one curve compares equal budgets), or all of
    /// them when none is common.
    pub steps: BTreeSet<u32>,
    /// Every step count the kind was run at.
    pub all_steps: BTreeSet<u32>,
    /// Per model (display order, models without a point left out): level → best setting.
    pub curves: Vec<(String, Vec<(f64, usize)>)>,
}

/// The curves of one operator kind: per model and level, the setting the headline table
/// shows for that model and operator ([`best_per_model_operator`]: the best step count
/// by validation MSE among [`candidate_steps`]); where operators share a level, the
/// one with the lower validation MSE.
pub fn level_figure(rows: &[SettingSummary], models: &[(String, f64)], kind: &str) -> LevelFigure {
    let all_steps: BTreeSet<u32> = rows
        .iter()
        .filter(|r| r.kind == kind && !is_baseline(r))
        .map(|r| r.steps)
        .collect();
    let best = best_per_model_operator(rows);
    let ops = operators(rows);
    let mut curves = Vec::new();
    let mut levels: BTreeSet<u64> = BTreeSet::new();
    for (m, _) in models {
        let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (op, k, level) in &ops {
            if k != kind {
                continue;
            }
            if let Some(&i) = best.get(&(m.clone(), op.clone())) {
                groups.entry(level.to_bits()).or_default().push(i);
            }
        }
        let mut points: Vec<(f64, usize)> = groups
            .into_iter()
            .filter_map(|(level, idx)| best_of(rows, idx).map(|b| (f64::from_bits(level), b)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !points.is_empty() {
            levels.extend(points.iter().map(|(l, _)| l.to_bits()));
            curves.push((m.clone(), points));
        }
    }
    let mut levels: Vec<f64> = levels.into_iter().map(f64::from_bits).collect();
    levels.sort_by(f64::total_cmp);
    LevelFigure {
        levels,
        steps: candidate_steps(rows, kind),
        all_steps,
        curves,
    }
}

/// The operators that get a Fig. 4 (quality against NFE) plot: those with three or more
/// step counts when any has, otherwise every operator with two; widest sweeps first,
/// display order within.
pub fn nfe_operators(rows: &[SettingSummary]) -> Vec<String> {
    let ops = operators(rows);
    let n_steps = |op: &str| steps_of(rows, op).len();
    let widest = ops.iter().map(|(op, _, _)| n_steps(op)).max().unwrap_or(0);
    let min_steps = if widest >= 3 { 3 } else { 2 };
    let mut chosen: Vec<String> = ops
        .into_iter()
        .map(|(op, _, _)| op)
        .filter(|op| n_steps(op) >= min_steps)
        .collect();
    chosen.sort_by_key(|op| std::cmp::Reverse(n_steps(op)));
    chosen
}

/// One model's Fig. 4 curve for `op`: per NFE (ascending), its best setting at that NFE
/// (the baseline, which has no NFE, has none).
pub fn nfe_curve(rows: &[SettingSummary], op: &str, model: &str) -> Vec<(u32, usize)> {
    let mut by_nfe: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.model == model && r.operator == op && !is_baseline(r) {
            by_nfe.entry(r.nfe).or_default().push(i);
        }
    }
    by_nfe
        .into_iter()
        .filter_map(|(nfe, idx)| best_of(rows, idx).map(|b| (nfe, b)))
        .collect()
}

/// One row of the table of quality against NFE: an operator at one step count, and per
/// model its best setting there (over seeds and solvers, by the same rule as the curves).
#[derive(Debug, Clone, PartialEq)]
pub struct NfeRow {
    pub operator: String,
    pub steps: u32,
    pub nfe: u32,
    pub cells: Vec<Option<usize>>,
}

/// Every operator run at more than one step count (display order), a row per (steps, NFE)
/// of the diffusion models (the baseline has no steps: it is no row).
pub fn nfe_table(rows: &[SettingSummary], models: &[(String, f64)]) -> Vec<NfeRow> {
    let mut out = Vec::new();
    for (op, _, _) in operators(rows) {
        if steps_of(rows, &op).len() < 2 {
            continue;
        }
        let mut by_steps: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            if r.operator == op && !is_baseline(r) {
                by_steps.entry((r.steps, r.nfe)).or_default().push(i);
            }
        }
        for ((steps, nfe), idx) in by_steps {
            let cells = models
                .iter()
                .map(|(m, _)| best_of(rows, idx.iter().copied().filter(|&i| &rows[i].model == m)))
                .collect();
            out.push(NfeRow {
                operator: op.clone(),
                steps,
                nfe,
                cells,
            });
        }
    }
    out
}

/// The Ambient models' columns of a paired table: indices into `models` of every model
/// with train p > 0.
pub fn ambient_columns(models: &[(String, f64)]) -> Vec<usize> {
    (0..models.len()).filter(|&k| models[k].1 > 0.0).collect()
}

/// A paired table for `metric`: per operator (display order) and Ambient model (the
/// columns of [`ambient_columns`]), the paired difference with the clean model at that
/// model's best step count — the setting the headline table shows.
pub fn paired_table<'a>(
    rows: &'a [SettingSummary],
    models: &[(String, f64)],
    metric: &str,
) -> Vec<(String, Vec<Option<&'a super::PairedDiff>>)> {
    differences(rows, models, &ambient_columns(models), |r| {
        r.paired.get(metric)
    })
}

/// The trained models' columns (every model but the baseline rows).
pub fn model_columns(models: &[(String, f64)]) -> Vec<usize> {
    (0..models.len())
        .filter(|&k| !models[k].1.is_nan())
        .collect()
}

/// Like [`paired_table`], against the operator's least-squares floor: per operator and
/// trained model (the columns of [`model_columns`]), the paired difference model − A⁺y
/// at the model's best step count.
pub fn floor_table<'a>(
    rows: &'a [SettingSummary],
    models: &[(String, f64)],
    metric: &str,
) -> Vec<(String, Vec<Option<&'a super::PairedDiff>>)> {
    differences(rows, models, &model_columns(models), |r| {
        r.floor.get(metric)
    })
}

fn differences<'a>(
    rows: &'a [SettingSummary],
    models: &[(String, f64)],
    columns: &[usize],
    diff: impl Fn(&'a SettingSummary) -> Option<&'a super::PairedDiff>,
) -> Vec<(String, Vec<Option<&'a super::PairedDiff>>)> {
    best_table(rows, models)
        .into_iter()
        .map(|row| {
            let cells = columns
                .iter()
                .map(|&k| row.cells[k].and_then(|i| diff(&rows[i])))
                .collect();
            (row.operator, cells)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{best_over_steps, best_per_seed, models, test_setting};

    fn setting(model: &str, p: f64, op: &str, steps: u32, mse: f64) -> SettingSummary {
        test_setting(model, p, op, steps, &[("mse", mse), ("ssim", 1.0 - mse)])
    }

    #[test]
    fn operators_go_cs_then_sr_by_level() {
        let rows = vec![
            setting("a", 0.0, "sr:4", 5, 0.1),
            setting("a", 0.0, "cs:64", 5, 0.1),
            setting("a", 0.0, "blur:2", 5, 0.1),
            setting("a", 0.0, "cs:16", 5, 0.1),
        ];
        let ops: Vec<String> = operators(&rows).into_iter().map(|o| o.0).collect();
        assert_eq!(ops, ["cs:16", "cs:64", "sr:4", "blur:2"]);
        assert_eq!(kinds(&rows), ["cs", "sr", "blur"]);
    }

    #[test]
    fn best_table_takes_each_models_best_step_count_and_winner_follows_the_metric() {
        let rows = vec![
            setting("clean", 0.0, "cs:64", 5, 0.2),
            setting("clean", 0.0, "cs:64", 10, 0.1),
            setting("amb", 0.8, "cs:64", 5, 0.15),
            setting("amb", 0.8, "cs:64", 10, 0.12),
        ];
        let models = models(&rows);
        let table = best_table(&rows, &models);
        assert_eq!(table.len(), 1);
        assert_eq!(table[0].cells, vec![Some(1), Some(3)]);
        let cells = table[0].cells.iter().flatten().copied();
        assert_eq!(winner(&rows, cells.clone(), "mse"), Some(1));
        // SSIM here is 1 − MSE: higher is better, the same winner.
        assert_eq!(winner(&rows, cells, "ssim"), Some(1));
        assert_eq!(winner(&rows, [0, 2], "lpips"), None);
    }

    /// `setting` with its validation curve's minimum (the MSE at the chosen ζ) at `val`.
    fn with_val(mut r: SettingSummary, val: f64) -> SettingSummary {
        r.zeta_val_mse = vec![3.0 * val, val, 2.0 * val];
        r.zeta_grid = vec![0.3, 1.0, 3.0];
        r
    }

    #[test]
    fn the_best_step_count_is_chosen_on_validation_images_not_test_ones() {
        // N = 10 has the lower test MSE, N = 50 the lower validation MSE: N = 50 is chosen.
        let rows = vec![
            with_val(setting("clean", 0.0, "cs:64", 10, 0.05), 0.09),
            with_val(setting("clean", 0.0, "cs:64", 50, 0.07), 0.06),
        ];
        let models = models(&rows);
        assert_eq!(best_table(&rows, &models)[0].cells, vec![Some(1)]);
        assert_eq!(best_over_steps(&rows), BTreeSet::from([1]));
        let fig = level_figure(&rows, &models, "cs");
        assert_eq!(fig.curves, vec![("clean".into(), vec![(64.0, 1)])]);
        // A validation curve that diverged everywhere ranks last.
        let mut rows = rows;
        rows[1].zeta_val_mse = vec![f64::INFINITY, f64::NAN, f64::INFINITY];
        assert_eq!(best_table(&rows, &models)[0].cells, vec![Some(0)]);
    }

    #[test]
    fn each_seed_gets_its_own_best_step_count_and_the_baseline_is_no_candidate() {
        let mut rows = vec![
            with_val(setting("m", 0.0, "cs:64", 10, 0.05), 0.04),
            with_val(setting("m", 0.0, "cs:64", 50, 0.05), 0.03),
            with_val(setting("m", 0.0, "cs:64", 10, 0.05), 0.02),
            with_val(setting("m", 0.0, "cs:64", 50, 0.05), 0.05),
        ];
        rows[2].seed = 1;
        rows[3].seed = 1;
        let mut base = setting("x", 0.0, "cs:64", 1, 0.5);
        base.model = crate::report::BASELINE_MODEL.into();
        base.train_p = f64::NAN;
        base.solver = crate::report::BASELINE_SOLVER.into();
        (base.steps, base.nfe, base.zeta) = (0, 0, f64::NAN);
        // Even with a validation curve, the baseline never takes part in the choice.
        base.zeta_val_mse = vec![1e-9];
        rows.push(base);
        let per_seed = best_per_seed(&rows);
        assert_eq!(
            per_seed,
            BTreeMap::from([
                (("m".to_string(), "cs:64".to_string(), 0), 1),
                (("m".to_string(), "cs:64".to_string(), 1), 2),
            ])
        );
        // ★ per seed, and the baseline's row (nothing to choose).
        assert_eq!(best_over_steps(&rows), BTreeSet::from([1, 2, 4]));
        // The headline cell: the seed whose choice validated best.
        let models = models(&rows);
        assert_eq!(best_table(&rows, &models)[0].cells, vec![Some(2), Some(4)]);
    }

    #[test]
    fn tables_figures_and_paired_tables_choose_among_the_same_step_counts() {
        // cs:64 also ran at N = 100, cs:16 did not: N = 100 is no candidate anywhere,
        // though it has the lowest validation and test MSE.
        let mut rows = vec![
            setting("clean", 0.0, "cs:16", 10, 0.08),
            setting("clean", 0.0, "cs:16", 50, 0.06),
            setting("clean", 0.0, "cs:64", 10, 0.04),
            setting("clean", 0.0, "cs:64", 50, 0.03),
            setting("clean", 0.0, "cs:64", 100, 0.001),
            setting("amb", 0.4, "cs:64", 50, 0.035),
            setting("amb", 0.4, "cs:64", 100, 0.0001),
        ];
        for r in rows.iter_mut().filter(|r| r.model == "amb") {
            let d = crate::report::PairedDiff {
                mean: r.steps as f64,
                lo: 0.0,
                hi: 1.0,
                count: 16,
            };
            r.paired.insert("mse".into(), d);
        }
        let models = models(&rows);
        assert_eq!(candidate_steps(&rows, "cs"), BTreeSet::from([10, 50]));
        let table = best_table(&rows, &models);
        assert_eq!(table[1].operator, "cs:64");
        assert_eq!(table[1].cells, vec![Some(3), Some(5)]);
        assert_eq!(best_over_steps(&rows), BTreeSet::from([1, 3, 5]));
        let fig = level_figure(&rows, &models, "cs");
        assert_eq!(
            fig.curves,
            vec![
                ("clean".into(), vec![(16.0, 1), (64.0, 3)]),
                ("amb".into(), vec![(64.0, 5)])
            ]
        );
        let paired = paired_table(&rows, &models, "mse");
        assert_eq!(paired[1].1[0].map(|d| d.mean), Some(50.0));
        // With no step count common to the kind, every one is a candidate.
        rows.retain(|r| r.operator == "cs:64");
        rows.push(setting("clean", 0.0, "cs:16", 25, 0.5));
        assert_eq!(
            candidate_steps(&rows, "cs"),
            BTreeSet::from([10, 25, 50, 100])
        );
        assert_eq!(best_table(&rows, &models)[1].cells, vec![Some(2), Some(4)]);
    }

    #[test]
    fn level_curves_use_the_step_counts_every_level_ran_at() {
        let mut rows = vec![
            setting("clean", 0.0, "cs:16", 10, 0.08),
            setting("clean", 0.0, "cs:16", 50, 0.06),
            setting("clean", 0.0, "cs:64", 10, 0.04),
            setting("clean", 0.0, "cs:64", 50, 0.03),
            setting("clean", 0.0, "sr:2", 10, 0.01),
        ];
        rows.push(setting("clean", 0.0, "cs:64", 100, 0.001));
        let fig = level_figure(&rows, &models(&rows), "cs");
        assert_eq!(fig.levels, vec![16.0, 64.0]);
        assert_eq!(fig.steps, BTreeSet::from([10, 50]));
        assert_eq!(fig.all_steps, BTreeSet::from([10, 50, 100]));
        // cs:64's point is N = 50 (0.03), not the N = 100 run cs:16 never had.
        assert_eq!(
            fig.curves,
            vec![("clean".into(), vec![(16.0, 1), (64.0, 3)])]
        );
    }

    #[test]
    fn nfe_plots_are_for_the_widest_step_count_sweeps() {
        let mut rows = vec![
            setting("a", 0.0, "cs:16", 5, 0.1),
            setting("a", 0.0, "cs:16", 10, 0.1),
            setting("a", 0.0, "sr:2", 5, 0.1),
            setting("a", 0.0, "sr:2", 10, 0.1),
        ];
        assert_eq!(nfe_operators(&rows), ["cs:16", "sr:2"]);
        rows.push(setting("a", 0.0, "sr:2", 25, 0.05));
        assert_eq!(nfe_operators(&rows), ["sr:2"]);
        assert_eq!(
            nfe_curve(&rows, "sr:2", "a"),
            vec![(9, 2), (19, 3), (49, 4)]
        );
    }
}
