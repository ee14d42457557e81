//! `summary.parquet`: one row per evaluated setting, flat columns that open as-is in
//! pyarrow, pandas and DuckDB.
//!
//! Columns, in order: `model`, `train_p`, `operator`, `kind`, `level`, `steps`,
//! `solver`, `nfe`, `seed`, `zeta`, `zeta_grid` (list<float64>), `zeta_val_mse`
//! (list<float64>), then for each metric `<m>_mean`, `<m>_std` (nullable float64) and
//! `<m>_count` (nullable int64) — always for `mse`, `psnr`, `ssim`, `lpips`, `residual`
//! (null where a setting lacks the metric), then any other metric keys found, sorted;
//! `<m>_std` is the population standard deviation (ddof = 0) —
//! `<m>_ci95` (half-width of the 95% confidence interval of the mean: Student's t with
//! n − 1 degrees of freedom times the sample standard deviation, ddof = 1, over √n; null
//! with fewer than two values) after each metric's three; `seconds`, and `best_over_steps` (bool: the
//! row with the lowest validation MSE at its chosen ζ (the minimum of `zeta_val_mse`)
//! among its model × operator × seed's step counts — of those every operator of its kind
//! was run at, the step counts the report's figures use ([`super::candidate_steps`]);
//! the number the paper reports; true for the baseline rows, which have no step count to
//! choose; filter on it for the best-over-steps table); then the
//! paired comparison with the clean model: `paired_with` (its model name; null for the
//! clean model itself) and, for `mse`, `ssim` and `lpips`, `paired_<m>_diff` (mean of this
//! setting's per-image value minus the clean one's, same images and seed),
//! `paired_<m>_lo` / `paired_<m>_hi` (percentile-bootstrap 95% interval) and
//! `paired_<m>_count` (images paired); then the comparison with the operator's
//! least-squares floor, for `mse` and `ssim`: `floor_<m>_diff` (this setting's per-image
//! value minus the floor's on the same images), `floor_<m>_lo` / `floor_<m>_hi`,
//! `floor_<m>_count` (null on the floor rows themselves). A difference whose images
//! include one that diverged is NaN, with NaN bounds. `steps`, `nfe` and `seed` are
//! int64 (`seed` bit-cast from u64, as in the reconstruction tables).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{PairedDiff, SettingSummary, Stat, FLOOR_METRICS, PAIRED_METRICS};

/// The metrics that always get columns, in column order.
pub const METRICS: [&str; 5] = ["mse", "psnr", "ssim", "lpips", "residual"];

/// The metric keys written for `rows`: [`METRICS`], then any others, sorted.
fn metric_keys(rows: &[SettingSummary]) -> Vec<String> {
    let extra: BTreeSet<&String> = rows
        .iter()
        .flat_map(|r| r.metrics.keys())
        .filter(|k| !METRICS.contains(&k.as_str()))
        .collect();
    METRICS
        .iter()
        .map(|s| s.to_string())
        .chain(extra.into_iter().cloned())
        .collect()
}

/// Encodes the settings as one Parquet file (one row per setting, input order).
pub fn encode_summary(rows: &[SettingSummary]) -> Result<Vec<u8>> {
    let n = rows.len();
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut push = |name: &str, nullable: bool, col: ArrayRef| {
        fields.push(Field::new(name, col.data_type().clone(), nullable));
        columns.push(col);
    };
    let string_col = |f: &dyn Fn(&SettingSummary) -> &str| -> ArrayRef {
        let mut b = StringBuilder::new();
        rows.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish())
    };
    let f64_col = |f: &dyn Fn(&SettingSummary) -> f64| -> ArrayRef {
        let mut b = Float64Builder::with_capacity(n);
        rows.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish())
    };
    let i64_col = |f: &dyn Fn(&SettingSummary) -> i64| -> ArrayRef {
        let mut b = Int64Builder::with_capacity(n);
        rows.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish())
    };
    let list_col = |f: &dyn Fn(&SettingSummary) -> &[f64]| -> ArrayRef {
        let mut b = ListBuilder::new(Float64Builder::new());
        rows.iter()
            .for_each(|r| b.append_value(f(r).iter().map(|&v| Some(v))));
        Arc::new(b.finish())
    };

    push("model", false, string_col(&|r| &r.model));
    push("train_p", false, f64_col(&|r| r.train_p));
    push("operator", false, string_col(&|r| &r.operator));
    push("kind", false, string_col(&|r| &r.kind));
    push("level", false, f64_col(&|r| r.level));
    push("steps", false, i64_col(&|r| i64::from(r.steps)));
    push("solver", false, string_col(&|r| &r.solver));
    push("nfe", false, i64_col(&|r| i64::from(r.nfe)));
    push("seed", false, i64_col(&|r| r.seed as i64));
    push("zeta", false, f64_col(&|r| r.zeta));
    push("zeta_grid", false, list_col(&|r| &r.zeta_grid));
    push("zeta_val_mse", false, list_col(&|r| &r.zeta_val_mse));
    for key in metric_keys(rows) {
        let mut mean = Float64Builder::with_capacity(n);
        let mut std = Float64Builder::with_capacity(n);
        let mut count = Int64Builder::with_capacity(n);
        for r in rows {
            let s = r.metrics.get(&key);
            mean.append_option(s.map(|s| s.mean));
            std.append_option(s.map(|s| s.std));
            count.append_option(s.map(|s| s.count as i64));
        }
        push(&format!("{key}_mean"), true, Arc::new(mean.finish()));
        push(&format!("{key}_std"), true, Arc::new(std.finish()));
        push(&format!("{key}_count"), true, Arc::new(count.finish()));
        let mut ci = Float64Builder::with_capacity(n);
        rows.iter()
            .for_each(|r| ci.append_option(r.metrics.get(&key).and_then(Stat::ci95)));
        push(&format!("{key}_ci95"), true, Arc::new(ci.finish()));
    }
    push("seconds", false, f64_col(&|r| r.seconds));
    let best = super::best_over_steps(rows);
    push(
        "best_over_steps",
        false,
        Arc::new(BooleanArray::from_iter(
            (0..n).map(|i| Some(best.contains(&i))),
        )),
    );
    let mut with = StringBuilder::new();
    rows.iter()
        .for_each(|r| with.append_option((!r.paired_with.is_empty()).then_some(&r.paired_with)));
    push("paired_with", true, Arc::new(with.finish()));
    type Diffs = fn(&SettingSummary) -> &BTreeMap<String, PairedDiff>;
    let comparisons: [(&str, &[&str], Diffs); 2] = [
        ("paired", &PAIRED_METRICS, |r| &r.paired),
        ("floor", &FLOOR_METRICS, |r| &r.floor),
    ];
    for (prefix, metrics, diffs) in comparisons {
        for &m in metrics {
            let col = |f: fn(&PairedDiff) -> f64| -> ArrayRef {
                let mut b = Float64Builder::with_capacity(n);
                rows.iter()
                    .for_each(|r| b.append_option(diffs(r).get(m).map(f)));
                Arc::new(b.finish())
            };
            push(&format!("{prefix}_{m}_diff"), true, col(|d| d.mean));
            push(&format!("{prefix}_{m}_lo"), true, col(|d| d.lo));
            push(&format!("{prefix}_{m}_hi"), true, col(|d| d.hi));
            let mut count = Int64Builder::with_capacity(n);
            rows.iter()
                .for_each(|r| count.append_option(diffs(r).get(m).map(|d| d.count as i64)));
            push(
                &format!("{prefix}_{m}_count"),
                true,
                Arc::new(count.finish()),
            );
        }
    }

    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .context("building the summary table")?;
    crate::io::parquet_out::write_parquet(batch, &[])
}

/// Decodes a file written by [`encode_summary`] (or any table with those columns; numeric
/// columns of other widths are cast). Metrics are every `<m>_mean` with `<m>_std` and
/// `<m>_count` alongside; a null mean means the metric is absent.
pub fn decode_summary(bytes: &[u8]) -> Result<Vec<SettingSummary>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
        .context("opening the summary Parquet file")?
        .build()?;
    let mut out = Vec::new();
    for batch in reader {
        decode_batch(&batch?, &mut out)?;
    }
    Ok(out)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .with_context(|| format!("summary has no column {name:?}"))
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<String>> {
    let a = cast(column(batch, name)?, &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                bail!("null in column {name:?}, row {i}")
            }
            Ok(a.value(i).to_string())
        })
        .collect()
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let a = cast(column(batch, name)?, &DataType::Float64)?;
    let a = a.as_primitive::<Float64Type>();
    Ok((0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect())
}

fn ints(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let a = cast(column(batch, name)?, &DataType::Int64)?;
    let a = a.as_primitive::<Int64Type>();
    Ok((0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect())
}

fn lists(batch: &RecordBatch, name: &str) -> Result<Vec<Vec<f64>>> {
    let target = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
    let a = cast(column(batch, name)?, &target)?;
    let a = a.as_list::<i32>();
    (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                return Ok(Vec::new());
            }
            let v = a.value(i);
            let v = v.as_primitive::<Float64Type>();
            Ok((0..v.len())
                .map(|j| if v.is_valid(j) { v.value(j) } else { f64::NAN })
                .collect())
        })
        .collect()
}

fn required<T>(v: Vec<Option<T>>, name: &str) -> Result<Vec<T>> {
    v.into_iter()
        .enumerate()
        .map(|(i, x)| x.with_context(|| format!("null in column {name:?}, row {i}")))
        .collect()
}

/// A metric's key and its mean, std and count columns.
type MetricColumns = (String, Vec<Option<f64>>, Vec<Option<f64>>, Vec<Option<i64>>);

fn decode_batch(batch: &RecordBatch, out: &mut Vec<SettingSummary>) -> Result<()> {
    let f = |name: &str| -> Result<Vec<f64>> { required(floats(batch, name)?, name) };
    let i = |name: &str| -> Result<Vec<i64>> { required(ints(batch, name)?, name) };
    let (model, operator, kind, solver) = (
        strings(batch, "model")?,
        strings(batch, "operator")?,
        strings(batch, "kind")?,
        strings(batch, "solver")?,
    );
    let (train_p, level, zeta, seconds) = (f("train_p")?, f("level")?, f("zeta")?, f("seconds")?);
    let (steps, nfe, seed) = (i("steps")?, i("nfe")?, i("seed")?);
    let (grid, val) = (lists(batch, "zeta_grid")?, lists(batch, "zeta_val_mse")?);

    let schema = batch.schema();
    let mut metrics: Vec<MetricColumns> = Vec::new();
    for field in schema.fields() {
        let Some(key) = field.name().strip_suffix("_mean") else {
            continue;
        };
        let (std_name, count_name) = (format!("{key}_std"), format!("{key}_count"));
        if batch.column_by_name(&std_name).is_none() || batch.column_by_name(&count_name).is_none()
        {
            continue;
        }
        metrics.push((
            key.to_string(),
            floats(batch, field.name())?,
            floats(batch, &std_name)?,
            ints(batch, &count_name)?,
        ));
    }

    // The paired comparison, where the file has it (summaries before adps 0.3 do not).
    let paired_with: Vec<Option<String>> = match batch.column_by_name("paired_with") {
        Some(c) => {
            let c = cast(c, &DataType::Utf8)?;
            let c = c.as_string::<i32>();
            (0..c.len())
                .map(|i| c.is_valid(i).then(|| c.value(i).to_string()))
                .collect()
        }
        None => vec![None; batch.num_rows()],
    };
    let paired = paired_columns(batch, "paired", &PAIRED_METRICS)?;
    // The floor comparison, where the file has it (summaries before adps 0.4 do not).
    let floor = paired_columns(batch, "floor", &FLOOR_METRICS)?;

    for r in 0..batch.num_rows() {
        let mut m = BTreeMap::new();
        for (key, mean, std, count) in &metrics {
            if let Some(mean) = mean[r] {
                m.insert(
                    key.clone(),
                    Stat {
                        mean,
                        std: std[r].unwrap_or(f64::NAN),
                        count: count[r].unwrap_or(0).max(0) as u64,
                    },
                );
            }
        }
        let to_u32 = |v: i64, name: &str| {
            u32::try_from(v).with_context(|| format!("{name} {v} out of range, row {r}"))
        };
        out.push(SettingSummary {
            model: model[r].clone(),
            train_p: train_p[r],
            operator: operator[r].clone(),
            kind: kind[r].clone(),
            level: level[r],
            steps: to_u32(steps[r], "steps")?,
            solver: solver[r].clone(),
            nfe: to_u32(nfe[r], "nfe")?,
            seed: seed[r] as u64,
            zeta: zeta[r],
            zeta_grid: grid[r].clone(),
            zeta_val_mse: val[r].clone(),
            metrics: m,
            seconds: seconds[r],
            paired_with: paired_with[r].clone().unwrap_or_default(),
            paired: paired_row(&paired, r),
            floor: paired_row(&floor, r),
        });
    }
    Ok(())
}

/// Per metric whose `<prefix>_<m>_diff` column the batch has: (metric, diff, lo, hi,
/// count) columns.
type PairedColumns = Vec<(
    &'static str,
    Vec<Option<f64>>,
    Vec<Option<f64>>,
    Vec<Option<f64>>,
    Vec<Option<i64>>,
)>;

fn paired_columns(
    batch: &RecordBatch,
    prefix: &str,
    metrics: &[&'static str],
) -> Result<PairedColumns> {
    let mut out = Vec::new();
    for &m in metrics {
        let name = |part: &str| format!("{prefix}_{m}_{part}");
        if batch.column_by_name(&name("diff")).is_none() {
            continue;
        }
        out.push((
            m,
            floats(batch, &name("diff"))?,
            floats(batch, &name("lo"))?,
            floats(batch, &name("hi"))?,
            ints(batch, &name("count"))?,
        ));
    }
    Ok(out)
}

/// Row `r` of [`paired_columns`]: the metrics with a difference there.
fn paired_row(columns: &PairedColumns, r: usize) -> BTreeMap<String, PairedDiff> {
    let mut out = BTreeMap::new();
    for (m, diff, lo, hi, count) in columns {
        if let (Some(mean), Some(lo), Some(hi)) = (diff[r], lo[r], hi[r]) {
            let count = count[r].unwrap_or(0).max(0) as u64;
            out.insert(
                m.to_string(),
                PairedDiff {
                    mean,
                    lo,
                    hi,
                    count,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mean: f64, std: f64, count: u64) -> Stat {
        Stat { mean, std, count }
    }

    fn rows() -> Vec<SettingSummary> {
        let full = BTreeMap::from([
            ("mse".to_string(), stat(0.012, 0.004, 64)),
            ("psnr".to_string(), stat(21.3, 1.7, 64)),
            ("ssim".to_string(), stat(0.71, 0.08, 64)),
            ("lpips".to_string(), stat(0.19, 0.05, 64)),
            ("residual".to_string(), stat(3.2, 0.9, 64)),
        ]);
        let partial = BTreeMap::from([
            ("mse".to_string(), stat(0.03, 0.0, 1)),
            ("residual".to_string(), stat(1.0, 0.5, 1)),
            ("fid".to_string(), stat(42.0, 0.0, 1000)),
        ]);
        vec![
            SettingSummary {
                model: "fmnist-p0.4".into(),
                train_p: 0.4,
                operator: "cs:256".into(),
                kind: "cs".into(),
                level: 256.0,
                steps: 100,
                solver: "heun".into(),
                nfe: 199,
                seed: u64::MAX - 3,
                zeta: 1.0,
                zeta_grid: vec![0.1, 0.3, 1.0, 3.0, 10.0],
                zeta_val_mse: vec![0.05, 0.02, 0.012, 0.015, f64::INFINITY],
                metrics: full,
                seconds: 12.5,
                paired_with: "fmnist-p0".into(),
                paired: BTreeMap::from([(
                    "mse".to_string(),
                    PairedDiff {
                        mean: -0.002,
                        lo: -0.003,
                        hi: -0.0012,
                        count: 64,
                    },
                )]),
                floor: BTreeMap::from([(
                    "ssim".to_string(),
                    PairedDiff {
                        mean: 0.21,
                        lo: 0.18,
                        hi: 0.24,
                        count: 64,
                    },
                )]),
            },
            SettingSummary {
                model: "fmnist-p0".into(),
                train_p: 0.0,
                operator: "sr:4".into(),
                kind: "sr".into(),
                level: 4.0,
                steps: 10,
                solver: "euler".into(),
                nfe: 10,
                seed: 7,
                zeta: 0.3,
                zeta_grid: vec![],
                zeta_val_mse: vec![],
                metrics: partial,
                seconds: 0.25,
                ..Default::default()
            },
        ]
    }

    #[test]
    fn round_trips() {
        let rows = rows();
        let bytes = encode_summary(&rows).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        let back = decode_summary(&bytes).unwrap();
        assert_eq!(back, rows);
        assert!(decode_summary(&encode_summary(&[]).unwrap())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn schema_is_flat_with_nullable_metrics() {
        let bytes = encode_summary(&rows()).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        let schema = builder.schema().clone();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            &names[..12],
            &[
                "model",
                "train_p",
                "operator",
                "kind",
                "level",
                "steps",
                "solver",
                "nfe",
                "seed",
                "zeta",
                "zeta_grid",
                "zeta_val_mse"
            ]
        );
        assert_eq!(
            names[12..16],
            ["mse_mean", "mse_std", "mse_count", "mse_ci95"]
        );
        assert!(names.contains(&"fid_mean"));
        let seconds = names.iter().position(|n| *n == "seconds").unwrap();
        assert_eq!(
            names[seconds..seconds + 7],
            [
                "seconds",
                "best_over_steps",
                "paired_with",
                "paired_mse_diff",
                "paired_mse_lo",
                "paired_mse_hi",
                "paired_mse_count"
            ]
        );
        // Then the floor comparison, for MSE and SSIM.
        assert_eq!(
            names[seconds + 3 + 4 * 3..],
            [
                "floor_mse_diff",
                "floor_mse_lo",
                "floor_mse_hi",
                "floor_mse_count",
                "floor_ssim_diff",
                "floor_ssim_lo",
                "floor_ssim_hi",
                "floor_ssim_count"
            ]
        );
        let lp = schema.field_with_name("lpips_mean").unwrap();
        assert!(lp.is_nullable());
        assert_eq!(lp.data_type(), &DataType::Float64);
        assert_eq!(
            schema.field_with_name("lpips_count").unwrap().data_type(),
            &DataType::Int64
        );
        let batch = builder.build().unwrap().next().unwrap().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert!(batch.column_by_name("lpips_mean").unwrap().is_null(1));
        // The clean row has no reference; the Ambient row names it, with its interval.
        let with = batch.column_by_name("paired_with").unwrap();
        assert!(with.is_valid(0) && with.is_null(1));
        let lo = batch.column_by_name("paired_mse_lo").unwrap();
        assert_eq!(lo.as_primitive::<Float64Type>().value(0), -0.003);
        assert!(batch.column_by_name("paired_ssim_diff").unwrap().is_null(0));
        // t(0.975, 63) = 1.9983 · 0.004 · √(64/63) / 8
        let ci = batch.column_by_name("mse_ci95").unwrap();
        assert!((ci.as_primitive::<Float64Type>().value(0) - 1.0070e-3).abs() < 1e-6);
        // One image (row 1's MSE): no interval, null rather than 0.
        assert!(ci.is_null(1));
    }

    #[test]
    fn marks_the_best_step_count_per_model_and_operator() {
        let mut rows = rows();
        // A second step count for the first setting, with a lower validation MSE (but a
        // higher test MSE): it becomes the best.
        let mut better = rows[0].clone();
        better.steps = 50;
        better.nfe = 99;
        better.zeta_val_mse[2] = 0.011;
        better.metrics.get_mut("mse").unwrap().mean = 0.02;
        rows.push(better);
        let bytes = encode_summary(&rows).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let best = batch
            .column_by_name("best_over_steps")
            .unwrap()
            .as_boolean();
        let flags: Vec<bool> = (0..best.len()).map(|i| best.value(i)).collect();
        // Row 0 (cs:256, N=100) lost to row 2 (N=50); row 1 is alone for its operator.
        assert_eq!(flags, [false, true, true]);
        // Decoding ignores the derived column.
        assert_eq!(
            decode_summary(&encode_summary(&rows).unwrap()).unwrap(),
            rows
        );
    }
}
