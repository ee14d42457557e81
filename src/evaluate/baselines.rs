//! The plain baseline of every task: the minimum-norm least-squares reconstruction A⁺y
//! ([`least_squares`]: the pseudo-inverse for `cs`, nearest-neighbour upsampling for box
//! `sr`, zero filling for inpainting, A⁺y by CGLS for `fourier`) of the same test images, measured by
//! the same per-image protocol ([`image_problem`]) and scored with the same metrics (LPIPS aside) as the
//! restorations. The report shows it as a row on every table and plot, so a reader sees
//! at a glance whether a setting restores anything.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, Result};

use super::config::SweepSpec;
use super::examples::{family_of, truths};
use super::Setting;
use crate::pipeline::plan;
use crate::report::{SettingSummary, BASELINE_MODEL, BASELINE_SOLVER, FLOOR_METRICS};
use crate::restore::metrics::{image_metrics, measurement_residual};
use crate::restore::operators::{least_squares, OperatorSpec};
use crate::restore::protocol::{image_problem, Given, Protocol};

/// CGLS steps per unknown: a Gaussian `cs` matrix of M = n (1,024 on 32×32) is
/// ill-conditioned enough to need about n steps (measured: 299 steps left a 6% error
/// against numpy's pinv; M = 512 converges in 35). The one-step cases (`sr`,
/// inpainting) stop at once, so the cap costs nothing there.
fn max_iter(n: usize) -> usize {
    (2 * n).max(300)
}

/// Per metric of [`FLOOR_METRICS`]: image id → the floor's value.
pub type PerImage = BTreeMap<&'static str, BTreeMap<String, f64>>;

/// One baseline row per operator of the sweep, on the test images its first setting was
/// restored on, with that setting's seed, and its per-image values for the paired
/// comparison of every setting with it.
pub fn summarize(
    spec: &SweepSpec,
    settings: &[Setting],
    test_dirs: &[super::RunDir],
) -> Result<Vec<(SettingSummary, PerImage)>> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for (i, s) in settings.iter().enumerate() {
        if seen.contains(&s.operator.as_str()) {
            continue;
        }
        seen.push(&s.operator);
        let started = std::time::Instant::now();
        let ids: Vec<String> = super::rows_of(&test_dirs[i])?
            .into_iter()
            .map(|r| r.id)
            .collect();
        let shape = crate::model::ModelFolder::open(&s.model_dir)?.card().shape;
        let truth = truths(&spec.images.test.url, &ids, shape)?;
        let op = OperatorSpec::from_str(&s.operator)?;
        let family = family_of(&op, shape, s.seed)?;
        let mut per_metric: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
        let mut per_image = PerImage::new();
        for id in &ids {
            let x0 = truth.get(id).with_context(|| {
                format!("baseline for {}: test image {id} not found", s.operator)
            })?;
            let protocol = Protocol {
                family: &family,
                shape,
                seed: s.seed,
                sigma_y: spec.defaults.sigma_y as f32,
                // No sampling mask: the baseline uses no model.
                keep_prob: 1.0,
            };
            let problem = image_problem(&protocol, id, None, Given::Clean(x0))
                .map_err(|e| anyhow::anyhow!("baseline for {}, image {id}: {e}", s.operator))?;
            let (a, y) = (problem.operator, problem.y);
            let x_hat: Vec<f32> = least_squares(a.as_ref(), &y, max_iter(a.input_len()))
                .into_iter()
                .map(|v| v.clamp(-1.0, 1.0))
                .collect();
            let m = image_metrics(&x_hat, x0, shape);
            let residual = f64::from(measurement_residual(a.as_ref(), &x_hat, &y));
            for (name, v) in [
                ("mse", Some(m.mse)),
                ("psnr", Some(m.psnr)),
                ("ssim", m.ssim),
                ("residual", Some(residual)),
            ] {
                per_metric.entry(name).or_default().push(v);
                if let (Some(&m), Some(v)) = (FLOOR_METRICS.iter().find(|&&m| m == name), v) {
                    per_image.entry(m).or_default().insert(id.clone(), v);
                }
            }
        }
        let metrics = per_metric
            .into_iter()
            .filter_map(|(name, v)| {
                super::collect::stat(name, v.into_iter()).map(|s| (name.to_string(), s))
            })
            .collect();
        let (kind, level) = plan::kind_and_level(&op);
        let row = SettingSummary {
            model: BASELINE_MODEL.into(),
            train_p: f64::NAN,
            operator: s.operator.clone(),
            kind,
            level,
            steps: 0,
            solver: BASELINE_SOLVER.into(),
            nfe: 0,
            seed: s.seed,
            zeta: f64::NAN,
            metrics,
            seconds: started.elapsed().as_secs_f64(),
            ..Default::default()
        };
        out.push((row, per_image));
    }
    Ok(out)
}
