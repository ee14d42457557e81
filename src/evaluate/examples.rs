//! The report's example grids (ground truth, measurement, each model's reconstruction for
//! a few test images per task) and its introduction.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, Result};

use super::config::SweepSpec;
use super::Setting;
use crate::io::image;
use crate::io::parquet_in::read_shard;
use crate::report::{ExampleGrid, SettingSummary};
use crate::restore::operators::sr::nearest_upsample;
use crate::restore::operators::{LinearOperator, OperatorFamily, OperatorSpec};
use crate::restore::protocol::{image_problem, Given, Protocol};
use crate::restore::sampler::{Clip, MaskMode};

/// Ground-truth images (CHW in [-1, 1], `shape`) for the given ids, read from an image
/// set and decoded as the runs decoded them (encoded images or `pixels` + `shape`).
pub(super) fn truths(
    url: &str,
    ids: &[String],
    shape: [usize; 3],
) -> Result<BTreeMap<String, Vec<f32>>> {
    let rt = crate::io::store::io_runtime()?;
    let loc = crate::io::store::open(url)?;
    let mut found = BTreeMap::new();
    for shard in crate::stages::list::list_shards(rt.handle(), &loc)? {
        let store = loc.store.clone();
        let bytes = rt
            .block_on(async move {
                use object_store::ObjectStoreExt;
                store.get(&shard.key).await?.bytes().await
            })
            .with_context(|| shard.url.clone())?;
        // An unreadable shard already failed (and was named) in the test run.
        let records = match read_shard(bytes, &shard.path) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(shard = %shard.url, "no example images from it: {e:#}");
                continue;
            }
        };
        for r in records {
            if ids.contains(&r.id) {
                let id = r.id.clone();
                let truth = crate::stages::decode::clean_image(r, shape)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", shard.url))?;
                found.insert(id, truth);
            }
        }
        if found.len() == ids.len() {
            break;
        }
    }
    Ok(found)
}

/// The operator family of a run, its files (if any) fetched as the plan does.
pub(super) fn family_of(op: &OperatorSpec, shape: [usize; 3], seed: u64) -> Result<OperatorFamily> {
    if op.files().is_empty() {
        return Ok(op.build(shape, seed)?);
    }
    let rt = crate::io::store::io_runtime()?;
    Ok(
        crate::pipeline::plan::operator_setup(rt.handle(), op, shape, seed, Default::default())
            .map_err(|p| anyhow::anyhow!(p.join("; ")))?
            .family,
    )
}

/// A measurement simulated from a clean image by the run's protocol
/// ([`image_problem`], as the restore stage makes it: the image's operator and noise drawn
/// from its id and the run seed), shown as an image.
pub fn measurement_image(
    op: &OperatorSpec,
    family: &OperatorFamily,
    shape: [usize; 3],
    seed: u64,
    sigma_y: f32,
    id: &str,
    x0: &[f32],
) -> Result<Vec<f32>> {
    let protocol = Protocol {
        family,
        shape,
        seed,
        sigma_y,
        // The sampling mask is not shown; all ones draws nothing.
        keep_prob: 1.0,
    };
    let p = image_problem(&protocol, id, None, Given::Clean(x0))
        .map_err(|e| anyhow::anyhow!("image {id}: {e}"))?;
    Ok(measurement_view(op, p.operator.as_ref(), &p.y, shape))
}

/// What a measurement y looks like as an image of `shape`: the low-resolution image for
/// `sr` and `sr-bicubic` (nearest upsampling, so its pixels show as they are), y itself for the operators on the image grid (inpainting,
/// blur), Aᵀy rescaled to the image range for the operators whose y is a vector (`cs`,
/// `matrix`, `fourier`: the back-projection, zero-filled for `fourier`).
pub fn measurement_view(
    op: &OperatorSpec,
    a: &dyn LinearOperator,
    y: &[f32],
    shape: [usize; 3],
) -> Vec<f32> {
    match op.y_image_shape(shape) {
        Some(s) if s == shape => y.to_vec(),
        Some([_, h, _]) => nearest_upsample(y, shape, shape[1] / h),
        None => {
            let mut back = vec![0.0; shape.iter().product()];
            a.adjoint(y, &mut back);
            let (lo, hi) = back
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            back.iter()
                .map(|v| (v - lo) / (hi - lo).max(1e-12) * 2.0 - 1.0)
                .collect()
        }
    }
}

/// One grid per operator, with each model's setting of the report's tables
/// ([`crate::report::best_per_model_operator`]).
pub fn build(
    spec: &SweepSpec,
    settings: &[Setting],
    summaries: &[SettingSummary],
    test_dirs: &[super::RunDir],
) -> Result<Vec<ExampleGrid>> {
    let mut operators: Vec<&str> = Vec::new();
    for s in settings {
        if !operators.contains(&s.operator.as_str()) {
            operators.push(&s.operator);
        }
    }
    let best = crate::report::best_per_model_operator(summaries);
    let mut grids = Vec::new();
    for op_str in operators {
        let idx: Vec<usize> = (0..settings.len())
            .filter(|&i| settings[i].operator == op_str)
            .collect();
        let Some(&first) = idx.first() else { continue };
        let rows = super::rows_of(&test_dirs[first])?;
        let ids: Vec<String> = rows
            .iter()
            .take(spec.defaults.examples)
            .map(|r| r.id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let folder = crate::model::ModelFolder::open(&settings[first].model_dir)?;
        let shape = folder.card().shape;
        let truth = truths(&spec.images.test.url, &ids, shape)?;
        let op = OperatorSpec::from_str(op_str)?;
        let family = family_of(&op, shape, settings[first].seed)?;
        let mut gt_row = Vec::new();
        let mut meas_row = Vec::new();
        for id in &ids {
            let x0 = truth
                .get(id)
                .with_context(|| format!("test image {id} not found"))?;
            gt_row.push(image::encode_png(shape, x0)?);
            let m = measurement_image(
                &op,
                &family,
                shape,
                settings[first].seed,
                spec.defaults.sigma_y as f32,
                id,
                x0,
            )?;
            meas_row.push(image::encode_png(shape, &m)?);
        }
        let mut grid_rows = vec![
            ("ground truth".to_string(), gt_row),
            ("measurement".to_string(), meas_row),
        ];
        let mut models: Vec<&str> = Vec::new();
        for &i in &idx {
            if !models.contains(&settings[i].model.as_str()) {
                models.push(&settings[i].model);
            }
        }
        for model in models {
            // The same choice as the report's tables and figures.
            let Some(&best) = best.get(&(model.to_string(), op_str.to_string())) else {
                continue;
            };
            let pngs = pngs_for(&ids, &super::rows_of(&test_dirs[best])?);
            let s = &summaries[best];
            grid_rows.push((
                format!(
                    "{} (N={}, ζ={})",
                    model,
                    s.steps,
                    crate::report::format::fmt_short(s.zeta, 3)
                ),
                pngs,
            ));
        }
        grids.push(ExampleGrid {
            operator: op_str.to_string(),
            ids,
            rows: grid_rows,
        });
    }
    Ok(grids)
}

/// One grid row: the reconstruction of each of `ids` (the columns), in their order; an
/// image the setting lacks (a record that failed) is an empty PNG, shown as —, so the
/// columns stay under their ids.
fn pngs_for(ids: &[String], rows: &[super::collect::PartRow]) -> Vec<Vec<u8>> {
    let by_id: BTreeMap<&str, &Vec<u8>> = rows.iter().map(|r| (r.id.as_str(), &r.png)).collect();
    ids.iter()
        .map(|id| {
            by_id
                .get(id.as_str())
                .map_or_else(Vec::new, |p| (*p).clone())
        })
        .collect()
}

/// The report's introduction: what was run, on what, and how ζ was chosen.
pub fn intro(spec: &SweepSpec, summaries: &[SettingSummary]) -> String {
    use crate::report::format::escape as esc;
    let n_test = summaries
        .iter()
        .filter_map(|s| s.metrics.get("mse").map(|m| m.count))
        .max()
        .unwrap_or(0);
    let description: String = spec
        .description
        .iter()
        .flat_map(|d| d.split("\n\n"))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>", esc(p)))
        .collect();
    format!(
        "{description}<p>{} settings. Test images: {} ({} per setting); ζ chosen per (model, \
         operator, steps) from a log-spaced grid by mean MSE on the validation images {} \
         (limit {}), widened when the best value lay on the grid's edge. Sampler: {}, x0 \
         clipped: {}, σ_y = {}, mask: {}. Metrics on the [0, 1] scale; LPIPS (AlexNet, v0.1) \
         {}.</p>",
        summaries
            .iter()
            .filter(|s| !crate::report::is_baseline(s))
            .count(),
        esc(&spec.images.test.url),
        n_test,
        esc(&spec.images.validation.url),
        spec.images
            .validation
            .limit
            .map_or("none".into(), |l| l.to_string()),
        esc(spec.defaults.solver.as_str()),
        match spec.defaults.clip {
            Clip::None => "no (the spec's update)",
            Clip::Direction => "in the ODE direction only",
            Clip::Residual => "before the residual",
        },
        spec.defaults.sigma_y,
        match spec.defaults.mask {
            MaskMode::Model => "each model's own sampling mask (Ambient DPS)",
            MaskMode::Ones => "all ones (DPS)",
        },
        if spec.defaults.lpips.is_some() {
            "on images upsampled to 64×64, grey repeated to three channels"
        } else {
            "not configured (column empty)"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::collect::PartRow;

    #[test]
    fn ground_truths_are_read_from_pixels_as_from_encoded_images() {
        use arrow::array::{ArrayRef, Float32Builder, Int32Builder, ListBuilder, StringArray};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let (mut pixels, mut shapes) = (
            ListBuilder::new(Float32Builder::new()),
            ListBuilder::new(Int32Builder::new()),
        );
        for k in 0..2 {
            pixels.append_value((0..4).map(|i| Some((i + k) as f32 / 4.0)));
            shapes.append_value([Some(1), Some(2), Some(2)]);
        }
        let batch = arrow::array::RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(StringArray::from(vec!["p0", "p1"])) as ArrayRef,
            ),
            ("pixels", Arc::new(pixels.finish()) as ArrayRef),
            ("shape", Arc::new(shapes.finish()) as ArrayRef),
        ])
        .unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        std::fs::write(dir.path().join("t.parquet"), buf).unwrap();
        let url = dir.path().to_string_lossy().to_string();
        let found = truths(&url, &["p1".to_string()], [1, 2, 2]).unwrap();
        assert_eq!(found["p1"], vec![-0.5, 0.0, 0.5, 1.0]);
    }

    #[test]
    fn a_missing_image_leaves_its_column_empty_instead_of_shifting_the_row() {
        let row = |id: &str, png: &[u8]| PartRow {
            id: id.into(),
            png: png.to_vec(),
            mse: None,
            psnr: None,
            ssim: None,
            lpips: None,
            residual: None,
            seconds: None,
            nfe: None,
        };
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let rows = [row("c", b"C"), row("a", b"A"), row("z", b"Z")];
        assert_eq!(
            pngs_for(&ids, &rows),
            vec![b"A".to_vec(), Vec::new(), b"C".to_vec()]
        );
    }
}
