//! `adps report OUT`: what one run did, read back from its output prefix (or run spec):
//! settings and provenance from its manifests, counts from `adps status`, restore time
//! per shard, the measurement residual ‖y − A x̂‖ of every image (the check a
//! restoration without ground truth has), metrics where ground truth exists, the first
//! error rows, and an example grid (measurement, reconstruction, ground truth) rebuilt
//! from the input rows of the first shard with restored rows by the run's own protocol.
//!
//! This module reads (one part in memory at a time); `report::run_page` renders.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray};
use futures::StreamExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ParquetRecordBatchStreamBuilder;

use crate::io::image;
use crate::io::parquet_in::{self, ObjectReader};
use crate::report::ExampleGrid;
use crate::restore::operators::OperatorSpec;
use crate::restore::protocol::{image_problem, Given, Protocol};
use crate::stages::commit::Manifest;
use crate::status::RunStatus;

/// Error rows shown in the report (all of them are in `__adps/errors/`).
const ERRORS_SHOWN: usize = 20;

/// Restore time of one shard with committed parts.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardTime {
    pub shard: String,
    pub rows: usize,
    pub errors: usize,
    /// Sum over its images of their share of their batch's wall time.
    pub seconds: f64,
    /// Committed (with a manifest); otherwise its committed parts so far.
    pub finished: bool,
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
    /// The shard the examples are from.
    pub examples_shard: Option<String>,
    /// Why there is no example grid (or rows of it are missing), when so.
    pub examples_note: Option<String>,
}

/// Reads the run at `target` (output prefix or run spec) with `examples` example images.
///
/// Every section reads the same rows as the counts: the committed parts of the shards
/// `adps status` counts, finished (with a manifest) or not (with a progress record).
pub fn collect(target: &str, sets: &[String], examples: usize) -> Result<RunReport> {
    let status = crate::status::status_without_input(target, sets)?;
    let hash = status.settings_hash.clone().with_context(|| {
        format!(
            "{}: no committed shard yet, nothing to report",
            status.output
        )
    })?;
    let rt = crate::io::store::io_runtime()?;
    let rt = rt.handle();
    let loc = crate::io::store::open(&status.output)?;
    let manifests = crate::stages::commit::read_manifests(rt, &loc)?;
    let ours: Vec<&Manifest> = manifests
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.settings_hash == hash)
        .collect();
    let other_settings = manifests.len() - ours.len();
    // The shards with committed parts, in the input's order.
    let sources: Vec<&crate::status::ShardStatus> = status
        .shards
        .iter()
        .filter(|s| !s.files.is_empty())
        .collect();
    // The run's settings: a manifest's, or (a run killed before its first shard
    // committed) an unfinished shard's progress record's.
    let settings = match ours.first() {
        Some(m) => m.settings.clone(),
        None => progress_settings(rt, &loc, &sources, &hash)?.with_context(|| {
            let hint = if target.ends_with(".toml") {
                " (the spec's settings, with the --set given here, match no committed shard: \
                 pass the run's --set too, or report the output folder itself)"
            } else {
                ""
            };
            format!("{}: no manifest with settings {hash}{hint}", status.output)
        })?,
    };

    let mut provenance = vec![("settings hash".to_string(), hash.clone())];
    let mut versions: Vec<&str> = ours.iter().map(|m| m.adps_version.as_str()).collect();
    versions.sort();
    versions.dedup();
    let versions = if versions.is_empty() {
        "— (no shard committed yet)".to_string()
    } else {
        versions.join(", ")
    };
    provenance.push(("adps version".into(), versions));
    flatten("", &settings, &mut provenance);

    // Examples come from the first of them with restored rows.
    let example_at = sources.iter().position(|s| s.rows_done.0 > 0);
    let mut shards = Vec::with_capacity(sources.len());
    let mut residual = Vec::new();
    let mut metrics: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut recon: Vec<(String, Vec<u8>)> = Vec::new();
    let mut nfe = None;
    for (i, s) in sources.iter().enumerate() {
        let mut seconds = 0.0;
        for part in s.files.iter().filter(|f| f.starts_with("part-")) {
            crate::evaluate::collect::visit_part(rt, &loc, part, |row| {
                seconds += row.seconds.unwrap_or(0.0);
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
                if Some(i) == example_at && recon.len() < examples {
                    recon.push((row.id, row.png));
                }
            })
            .with_context(|| format!("the committed parts of shard {}", s.shard))?;
        }
        shards.push(ShardTime {
            shard: s.shard.clone(),
            rows: s.rows_done.0,
            errors: s.rows_done.1,
            seconds,
            finished: s.state == "committed",
        });
    }
    if let Some(nfe) = nfe {
        provenance.push(("NFE per image".into(), nfe.to_string()));
    }
    let error_tables: Vec<&str> = sources
        .iter()
        .filter(|s| s.rows_done.1 > 0)
        .flat_map(|s| s.files.iter())
        .filter(|f| f.contains("/errors/"))
        .map(String::as_str)
        .collect();
    let (errors, errors_total) = read_errors(rt, &loc, &error_tables, status.records_failed)?;
    let examples_shard = example_at.map(|i| sources[i].shard.clone());
    let (examples, examples_note) = match example_at {
        None => (None, None),
        Some(i) => {
            let source = ExampleSource {
                settings: &settings,
                shard: &sources[i].shard,
                input: match (&status.input, &sources[i].key, &status.input_unreachable) {
                    (Some(url), Some(key), None) => Ok((url.as_str(), key)),
                    (_, _, Some(why)) => Err(format!("the input cannot be read ({why})")),
                    _ => Err("the input is not known".to_string()),
                },
                model_shape: ours.iter().find_map(|m| m.model_shape),
            };
            match example_grid(rt, &source, &recon) {
                Ok((grid, note)) => (grid, note),
                Err(e) => (None, Some(format!("{e:#}"))),
            }
        }
    };
    let order = ["psnr", "ssim", "mse", "lpips"];
    let metrics = order
        .iter()
        .filter_map(|k| metrics.remove(k).map(|v| (k.to_string(), v)))
        .collect();
    Ok(RunReport {
        status,
        provenance,
        shards,
        residual,
        metrics,
        errors,
        errors_total,
        other_settings,
        examples,
        examples_shard,
        examples_note,
    })
}

/// The settings of the first of `sources` whose progress record has settings `hash`.
fn progress_settings(
    rt: &tokio::runtime::Handle,
    loc: &crate::io::store::Location,
    sources: &[&crate::status::ShardStatus],
    hash: &str,
) -> Result<Option<serde_json::Value>> {
    for s in sources.iter().filter(|s| s.state != "committed") {
        let name = crate::io::layout::progress_name(&crate::io::layout::shard_stem(&s.shard));
        let Ok(bytes) = loc.read(rt, &name) else {
            continue;
        };
        let record: crate::stages::commit::ProgressRecord = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an adps progress record", loc.child_url(&name)))?;
        if record.settings_hash == hash && !record.settings.is_null() {
            return Ok(Some(record.settings));
        }
    }
    Ok(None)
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

/// The first error rows of the run's errors tables `tables` (names under `loc`), and the
/// total (from the counts, so that only the tables read for the first rows are fetched).
fn read_errors(
    rt: &tokio::runtime::Handle,
    loc: &crate::io::store::Location,
    tables: &[&str],
    total: u64,
) -> Result<(Vec<ErrorLine>, u64)> {
    let mut out = Vec::new();
    for table in tables {
        if out.len() >= ERRORS_SHOWN {
            break;
        }
        let bytes = loc.read(rt, table)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .with_context(|| loc.child_url(table))?
            .build()?;
        for batch in reader {
            let batch = batch.with_context(|| loc.child_url(table))?;
            let col = |name: &str| -> Result<arrow::array::StringArray> {
                Ok(batch
                    .column_by_name(name)
                    .with_context(|| format!("{}: no column `{name}`", loc.child_url(table)))?
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

/// Where the example images come from.
struct ExampleSource<'a> {
    /// The run's settings (a manifest's).
    settings: &'a serde_json::Value,
    /// The shard's path relative to the input prefix.
    shard: &'a str,
    /// The input prefix's URL and the shard's key in it as the status listing gave it,
    /// or why the input cannot be read.
    input: std::result::Result<(&'a str, &'a object_store::path::Path), String>,
    /// The model's image shape, where the manifests record it.
    model_shape: Option<[usize; 3]>,
}

/// Measurement, reconstruction and (for clean inputs) ground truth of a shard's first
/// restored images, with a note on the rows left out. The input rows are read with a row
/// limit through ranged requests, never the whole shard, and decoded as the run decoded
/// them (its `input` settings and the model's shape), so the measurement is the run's.
fn example_grid(
    rt: &tokio::runtime::Handle,
    source: &ExampleSource,
    recon: &[(String, Vec<u8>)],
) -> Result<(Option<ExampleGrid>, Option<String>)> {
    let Some((_, png0)) = recon.first() else {
        return Ok((None, None));
    };
    let settings = source.settings;
    let op_str = settings["task"]["operator"]
        .as_str()
        .context("the manifest names no operator")?;
    let ids: Vec<String> = recon.iter().map(|(id, _)| id.clone()).collect();
    let recon_row = (
        "reconstruction".to_string(),
        recon.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
    );
    let (rows, note) = match input_rows(rt, source, recon, png0) {
        Ok(mut rows) => {
            let after = rows.first().is_some_and(|(name, _)| name == "measurement");
            rows.insert(usize::from(after), recon_row);
            (rows, None)
        }
        Err(why) => (
            vec![recon_row],
            Some(format!("only the reconstructions are shown: {why:#}")),
        ),
    };
    Ok((
        Some(ExampleGrid {
            operator: op_str.to_string(),
            ids,
            rows,
        }),
        note,
    ))
}

/// The grid's measurement row and (for clean inputs) ground-truth row, each only when
/// every image has one.
fn input_rows(
    rt: &tokio::runtime::Handle,
    source: &ExampleSource,
    recon: &[(String, Vec<u8>)],
    png0: &[u8],
) -> Result<Vec<(String, Vec<Vec<u8>>)>> {
    let (input_url, key) = source.input.clone().map_err(|e| anyhow::anyhow!(e))?;
    let settings = source.settings;
    let input: crate::pipeline::config::InputSpec =
        serde_json::from_value(settings["input"].clone())
            .context("the manifest's `input` settings do not read")?;
    let shape = match source.model_shape {
        Some(shape) => shape,
        // Older manifests do not record it; a reconstruction is stored at the model's
        // size unless a padded input cropped it back.
        None if input.fit == crate::pipeline::config::Fit::Pad => anyhow::bail!(
            "the manifests do not record the model's image size, which input.fit = \"pad\" \
             needs (they predate it)"
        ),
        None => {
            let [h, w] = image::dimensions(png0)?;
            [png_channels(png0)?, h, w]
        }
    };
    let op_str = settings["task"]["operator"]
        .as_str()
        .context("the manifest names no operator")?;
    let op = OperatorSpec::from_str(op_str)?;
    let seed = settings["sampler"]["seed"].as_u64().unwrap_or(0);
    let sigma_y = settings["task"]["sigma_y"].as_f64().unwrap_or(0.0) as f32;
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
    // The run's column mapping; kept columns are not needed here.
    let names = parquet_in::ColumnNames {
        image: input.image_column.clone(),
        id: input.id_column.clone(),
        y: input.y_column.clone(),
        mask: input.mask_column.clone(),
        // Masks are read where there are; the operator decides what they are.
        no_mask: false,
        keep: Vec::new(),
    };
    let spec = crate::stages::decode::DecodeSpec {
        shape,
        y_len: family
            .measurements_for(None)
            .unwrap_or_else(|_| shape.iter().product()),
        y_image_shape: op.y_image_shape(shape),
        record_mask: family.record_mask(),
        fit: input.fit,
        convert: input.convert,
        y_range: input.y_range,
    };

    // The input rows of these ids: they are the shard's first restored rows, so a
    // limited read of the shard's head finds them unless many rows before them failed.
    let wanted: BTreeMap<&str, usize> = recon
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    // The shard's key as the run listed it (its name is not escaped again).
    let store = crate::io::store::open(input_url)?;
    let records = rt
        .block_on(async {
            let reader = ObjectReader::open(store.store.clone(), key.clone()).await?;
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
                out.extend(parquet_in::records_of(&batch, &columns, source.shard, row)?);
            }
            anyhow::Ok(out)
        })
        .with_context(|| format!("reading the input rows of {}", source.shard))?;

    let mut truth_row: Vec<Option<Vec<u8>>> = vec![None; recon.len()];
    let mut meas_row: Vec<Option<Vec<u8>>> = vec![None; recon.len()];
    for raw in records {
        let Some(&i) = wanted.get(raw.id.as_str()) else {
            continue;
        };
        let Ok(record) = crate::stages::decode::decode_one(raw, &spec) else {
            continue;
        };
        let given = match (&record.truth, &record.y) {
            (Some(x0), _) => Given::Clean(x0),
            // y as the restore stage takes it: in [0, 1] (the default) or the model's range.
            (None, Some(y)) => match input.y_range {
                crate::pipeline::config::YRange::Model => Given::MeasuredModel(y),
                crate::pipeline::config::YRange::Unit => Given::MeasuredUnit(y),
            },
            (None, None) => continue,
        };
        let protocol = Protocol {
            family: &family,
            shape,
            seed,
            sigma_y,
            // The sampling mask is not shown; all ones draws nothing.
            keep_prob: 1.0,
        };
        if let Ok(p) = image_problem(&protocol, &record.id, record.mask.as_deref(), given) {
            let m =
                crate::evaluate::examples::measurement_view(&op, p.operator.as_ref(), &p.y, shape);
            meas_row[i] = Some(image::encode_png(shape, &m)?);
        }
        if let Some(x0) = &record.truth {
            // At the input's size, as the reconstruction is stored (a padded input's
            // frame cropped back).
            let px = image::Pixels {
                shape,
                data: x0.clone(),
            };
            let px = match record.frame {
                Some(f) => px.crop([f.top, f.left], [f.height, f.width])?,
                None => px,
            };
            truth_row[i] = Some(image::encode_png(px.shape, &px.data)?);
        }
    }
    let mut rows = Vec::new();
    if meas_row.iter().all(Option::is_some) {
        rows.push((
            "measurement".to_string(),
            meas_row.into_iter().flatten().collect(),
        ));
    }
    if truth_row.iter().all(Option::is_some) {
        rows.push((
            "ground truth".to_string(),
            truth_row.into_iter().flatten().collect(),
        ));
    }
    Ok(rows)
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
    let rt = crate::io::store::io_runtime()?;
    let out = crate::io::store::open_output(&report.status.output)?;
    let name = crate::io::layout::report_name();
    crate::stages::write::upload(rt.handle(), &out, &name, page.into_bytes())
        .with_context(|| format!("writing {}", out.child_url(&name)))?;
    Ok(out.child_url(&name))
}
