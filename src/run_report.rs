//! `adps report OUT`: what one run did, read back from its output prefix (or run spec):
//! settings and provenance from its manifests, counts from `adps status`, restore time
//! per shard, the measurement residual ‖y − A x̂‖ of every image (the check a
//! restoration without ground truth has), metrics where ground truth exists, the first
//! error rows, and an example grid (measurement, reconstruction, ground truth) rebuilt
//! from the first committed shard's input rows by the run's own protocol.
//!
//! This module reads (one part in memory at a time); `report::run_page` renders.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ParquetRecordBatchStreamBuilder;

use crate::io::image;
use crate::io::parquet_in::{self, ObjectReader, Payload};
use crate::report::ExampleGrid;
use crate::restore::operators::OperatorSpec;
use crate::restore::protocol::{image_problem, Given, Protocol};
use crate::stages::commit::Manifest;
use crate::status::RunStatus;

/// Error rows shown in the report (all of them are in `__adps/errors/`).
const ERRORS_SHOWN: usize = 20;

/// Restore time of one committed shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardTime {
    pub shard: String,
    pub rows: usize,
    pub errors: usize,
    /// Sum over its images of their share of their batch's wall time.
    pub seconds: f64,
}

/// One error row of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorLine {
    pub id: String,
    pub shard: String,
    pub stage: String,
    pub reason: String,
}

/// Everything the run report shows.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Where the run writes, and what `adps status` says of it.
    pub status: RunStatus,
    /// The run's settings flattened to `key = value` (`sampler.steps = 50`, …), with
    /// the adps versions that committed it and the settings hash.
    pub provenance: Vec<(String, String)>,
    pub shards: Vec<ShardTime>,
    /// ‖y − A x̂‖ per restored image.
    pub residual: Vec<f64>,
    /// Per-image metrics against ground truth (`psnr`, `ssim`, `mse`, `lpips`), only
    /// those the run computed.
    pub metrics: Vec<(String, Vec<f64>)>,
    /// The first error rows, and how many there are in all.
    pub errors: Vec<ErrorLine>,
    pub errors_total: u64,
    /// Manifests under the prefix with other settings (not in this report).
    pub other_settings: usize,
    pub examples: Option<ExampleGrid>,
    /// Why there is no example grid, when there is none.
    pub examples_note: Option<String>,
}

/// Reads the run at `target` (output prefix or run spec) with `examples` example images.
pub fn collect(target: &str, examples: usize) -> Result<RunReport> {
    let status = crate::status::status(target, &[])?;
    let hash = status.settings_hash.clone().with_context(|| {
        format!(
            "{}: no committed shard yet, nothing to report",
            status.output
        )
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    let rt = rt.handle();
    let loc = crate::io::store::open(&status.output)?;
    let manifests = crate::stages::commit::read_manifests(rt, &loc)?;
    let ours: Vec<&Manifest> = manifests
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.settings_hash == hash)
        .collect();
    let other_settings = manifests.len() - ours.len();
    let first = *ours
        .first()
        .with_context(|| format!("{}: no manifest with settings {hash}", status.output))?;

    let mut provenance = vec![("settings hash".to_string(), hash.clone())];
    let mut versions: Vec<&str> = ours.iter().map(|m| m.adps_version.as_str()).collect();
    versions.sort();
    versions.dedup();
    provenance.push(("adps version".into(), versions.join(", ")));
    flatten("", &first.settings, &mut provenance);

    let mut shards: BTreeMap<String, ShardTime> = ours
        .iter()
        .map(|m| {
            let t = ShardTime {
                shard: m.shard.clone(),
                rows: m.rows,
                errors: m.errors,
                seconds: 0.0,
            };
            (m.shard.clone(), t)
        })
        .collect();
    let mut residual = Vec::new();
    let mut metrics: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut recon: Vec<(String, Vec<u8>)> = Vec::new();
    let mut nfe = None;
    let first_shard = first.shard.clone();
    crate::evaluate::collect::visit_committed_rows(
        rt,
        &loc,
        |_, m| m.settings_hash == hash,
        |m, row| {
            if let Some(t) = shards.get_mut(&m.shard) {
                t.seconds += row.seconds.unwrap_or(0.0);
            }
            residual.extend(row.residual.filter(|v| v.is_finite()));
            for (k, v) in [
                ("psnr", row.psnr),
                ("ssim", row.ssim),
                ("mse", row.mse),
                ("lpips", row.lpips),
            ] {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    metrics.entry(k).or_default().push(v);
                }
            }
            nfe = nfe.or(row.nfe);
            if m.shard == first_shard && recon.len() < examples {
                recon.push((row.id, row.png));
            }
        },
    )?;
    if let Some(nfe) = nfe {
        provenance.push(("NFE per image".into(), nfe.to_string()));
    }
    let (errors, errors_total) = read_errors(rt, &loc, &ours, status.records_failed)?;
    let (examples, examples_note) = match example_grid(rt, first, &recon) {
        Ok(grid) => (grid, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let order = ["psnr", "ssim", "mse", "lpips"];
    let metrics = order
        .iter()
        .filter_map(|k| metrics.remove(k).map(|v| (k.to_string(), v)))
        .collect();
    Ok(RunReport {
        status,
        provenance,
        shards: shards.into_values().collect(),
        residual,
        metrics,
        errors,
        errors_total,
        other_settings,
        examples,
        examples_note,
    })
}

/// `settings` as `a.b = value` lines, in key order (objects are sorted maps).
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Array(items)
            if items
                .iter()
                .all(|i| matches!(i, serde_json::Value::Array(p) if p.len() == 2)) =>
        {
            // Pairs, e.g. the model's graphs and their SHA-256.
            for item in items {
                let (k, v) = (&item[0], &item[1]);
                let k = k.as_str().map_or_else(|| k.to_string(), str::to_string);
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                out.push((format!("{prefix}.{k}"), v));
            }
        }
        serde_json::Value::Null => out.push((prefix.to_string(), "—".into())),
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The first error rows of the run's errors tables, and the total (from the manifests'
/// counts, so that only the tables read for the first rows are fetched).
fn read_errors(
    rt: &tokio::runtime::Handle,
    loc: &crate::io::store::Location,
    manifests: &[&Manifest],
    total: u64,
) -> Result<(Vec<ErrorLine>, u64)> {
    let mut out = Vec::new();
    let tables = manifests
        .iter()
        .filter(|m| m.errors > 0)
        .flat_map(|m| m.files.iter())
        .filter(|f| f.name.contains("/errors/"));
    for f in tables {
        if out.len() >= ERRORS_SHOWN {
            break;
        }
        let (store, key) = (loc.store.clone(), loc.child(&f.name));
        let bytes = rt
            .block_on(async move { store.get(&key).await?.bytes().await })
            .with_context(|| format!("reading {}", loc.child_url(&f.name)))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .with_context(|| loc.child_url(&f.name))?
            .build()?;
        for batch in reader {
            let batch = batch.with_context(|| loc.child_url(&f.name))?;
            let col = |name: &str| -> Result<arrow::array::StringArray> {
                Ok(batch
                    .column_by_name(name)
                    .with_context(|| format!("{}: no column `{name}`", loc.child_url(&f.name)))?
                    .as_string::<i32>()
                    .clone())
            };
            let (id, shard, stage, reason) =
                (col("id")?, col("shard")?, col("stage")?, col("reason")?);
            for r in 0..batch.num_rows() {
                if out.len() >= ERRORS_SHOWN {
                    break;
                }
                let s = |a: &arrow::array::StringArray| {
                    if a.is_null(r) {
                        String::new()
                    } else {
                        a.value(r).to_string()
                    }
                };
                out.push(ErrorLine {
                    id: s(&id),
                    shard: s(&shard),
                    stage: s(&stage),
                    reason: s(&reason),
                });
            }
        }
    }
    Ok((out, total))
}

/// Measurement, reconstruction and (for clean inputs) ground truth of the first
/// committed shard's first restored images. The input rows are read with a row limit
/// through ranged requests, never the whole shard.
fn example_grid(
    rt: &tokio::runtime::Handle,
    manifest: &Manifest,
    recon: &[(String, Vec<u8>)],
) -> Result<Option<ExampleGrid>> {
    let Some((_, png0)) = recon.first() else {
        return Ok(None);
    };
    let channels = png_channels(png0)?;
    let [h, w] = image::dimensions(png0)?;
    let shape = [channels, h, w];
    let settings = &manifest.settings;
    let op_str = settings["task"]["operator"]
        .as_str()
        .context("the manifest names no operator")?;
    let op = OperatorSpec::from_str(op_str)?;
    let seed = settings["sampler"]["seed"].as_u64().unwrap_or(0);
    let sigma_y = settings["task"]["sigma_y"].as_f64().unwrap_or(0.0) as f32;
    // The run's column mapping (`[input]` settings); kept columns are not needed here.
    let column = |key: &str| settings["input"][key].as_str().map(str::to_string);
    let names = parquet_in::ColumnNames {
        image: column("image_column"),
        id: column("id_column"),
        y: column("y_column"),
        mask: column("mask_column"),
        // Masks are read where there are; the operator decides below what they are.
        no_mask: false,
        keep: Vec::new(),
    };

    // The input rows of these ids: they are the shard's first restored rows, so a
    // limited read of the shard's head finds them unless many rows before them failed.
    let wanted: BTreeMap<&str, usize> = recon
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    // The shard's URL names a file: open its folder, then the file under it (a local
    // store is rooted at a directory).
    let (folder, file) = manifest
        .input
        .rsplit_once('/')
        .with_context(|| format!("input shard URL `{}` has no folder", manifest.input))?;
    let input = crate::io::store::open(folder)?;
    let key = input.child(file);
    let records = rt
        .block_on(async {
            let reader = ObjectReader::open(input.store.clone(), key).await?;
            let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
            let columns = parquet_in::resolve_columns(builder.schema(), &names)
                .map_err(|problems| anyhow::anyhow!("{}", problems.join("; ")))?;
            let mut stream = builder
                .with_limit(recon.len() + ERRORS_SHOWN + 64)
                .build()?;
            let mut out = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let row = out.len();
                out.extend(parquet_in::records_of(
                    &batch,
                    &columns,
                    &manifest.shard,
                    row,
                )?);
            }
            anyhow::Ok(out)
        })
        .with_context(|| format!("reading the input rows of {}", manifest.input))?;

    // The run's operator, its files (if any) fetched and checked as the plan does.
    let family = crate::pipeline::plan::operator_setup(
        rt,
        &op,
        shape,
        seed,
        crate::io::store::Retry::default(),
    )
    .map_err(|problems| anyhow::anyhow!("{}", problems.join("; ")))?
    .family;
    let mut truth_row: Vec<Option<Vec<u8>>> = vec![None; recon.len()];
    let mut meas_row: Vec<Option<Vec<u8>>> = vec![None; recon.len()];
    for r in records {
        let Some(&i) = wanted.get(r.id.as_str()) else {
            continue;
        };
        let measured = match r.payload {
            Ok(Payload::Image(png)) => {
                let x0 = image::decode(&png, channels)?.data;
                truth_row[i] = Some(image::encode_png(shape, &x0)?);
                Some(crate::evaluate::examples::measurement_image(
                    &op, &family, shape, seed, sigma_y, &r.id, &x0,
                )?)
            }
            Ok(Payload::YImage(png)) => {
                let y = image::decode(&png, channels)?;
                meas_row[i] = Some(image::encode_png(y.shape, &y.data)?);
                None
            }
            Ok(Payload::Y(y)) => {
                // The record's operator and y as the restore stage made them (its own
                // mask, if any; y converted from [0, 1], the default, to the model's range).
                let given = match settings["input"]["y_range"].as_str() {
                    Some("model") => Given::MeasuredModel(&y),
                    _ => Given::MeasuredUnit(&y),
                };
                let mask = match (&r.mask, family.record_mask()) {
                    (Some(bytes), Some(kind)) => {
                        crate::stages::decode::measured_record_mask(bytes, kind, shape).ok()
                    }
                    _ => None,
                };
                let protocol = Protocol {
                    family: &family,
                    shape,
                    seed,
                    sigma_y,
                    keep_prob: 1.0,
                };
                image_problem(&protocol, &r.id, mask.as_deref(), given)
                    .ok()
                    .map(|p| {
                        crate::evaluate::examples::measurement_view(
                            &op,
                            p.operator.as_ref(),
                            &p.y,
                            shape,
                        )
                    })
            }
            _ => None,
        };
        if let Some(m) = measured {
            meas_row[i] = Some(image::encode_png(shape, &m)?);
        }
    }
    let ids: Vec<String> = recon.iter().map(|(id, _)| id.clone()).collect();
    let mut rows = Vec::new();
    if meas_row.iter().all(Option::is_some) {
        rows.push((
            "measurement".to_string(),
            meas_row.into_iter().flatten().collect(),
        ));
    }
    rows.push((
        "reconstruction".to_string(),
        recon.iter().map(|(_, p)| p.clone()).collect(),
    ));
    if truth_row.iter().all(Option::is_some) {
        rows.push((
            "ground truth".to_string(),
            truth_row.into_iter().flatten().collect(),
        ));
    }
    Ok(Some(ExampleGrid {
        operator: op_str.to_string(),
        ids,
        rows,
    }))
}

/// 1 for a grey PNG, 3 for colour.
fn png_channels(png: &[u8]) -> Result<usize> {
    let img = ::image::load_from_memory(png).context("reconstruction is not a readable PNG")?;
    Ok(if img.color().has_color() { 3 } else { 1 })
}

/// Writes the page to `file`, or to `__adps/report.html` under the run's output prefix;
/// returns where it went.
pub fn write(
    report: &RunReport,
    file: &Option<std::path::PathBuf>,
    page: String,
) -> Result<String> {
    if let Some(file) = file {
        std::fs::write(file, page).with_context(|| format!("writing {}", file.display()))?;
        return Ok(file.display().to_string());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    let out = crate::io::store::open_output(&report.status.output)?;
    let name = crate::io::layout::report_name();
    crate::stages::write::upload(rt.handle(), &out, &name, page.into_bytes())
        .with_context(|| format!("writing {}", out.child_url(&name)))?;
    Ok(out.child_url(&name))
}
