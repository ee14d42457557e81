//! Reads a finished run back: the rows of every committed part (parts whose manifest
//! exists) under an output location, for `adps evaluate` and `adps report`.

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::io::store::Location;
use crate::stages::commit::Manifest;

/// One restored image as written by the pipeline.
#[derive(Debug, Clone)]
pub struct PartRow {
    pub id: String,
    /// PNG of the reconstruction.
    pub png: Vec<u8>,
    pub mse: Option<f64>,
    pub psnr: Option<f64>,
    pub ssim: Option<f64>,
    pub lpips: Option<f64>,
    pub residual: Option<f64>,
    /// The image's share of its batch's restore wall time.
    pub seconds: Option<f64>,
    /// Denoiser evaluations the image took (absent in outputs that lack the column).
    pub nfe: Option<i64>,
}

/// Every row of the parts under `loc` committed with these settings (manifests with
/// `settings_hash`), sorted by id: shards an earlier run committed there with other
/// settings (another `limit`, say), which this run did not list and so left in place,
/// are not its rows.
pub fn committed_rows(
    rt: &tokio::runtime::Handle,
    loc: &Location,
    settings_hash: &str,
) -> Result<Vec<PartRow>> {
    let mut rows = Vec::new();
    visit_committed_rows(
        rt,
        loc,
        |_, m| m.settings_hash == settings_hash,
        |_, row| rows.push(row),
    )?;
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

/// Calls `visit` with every row of the committed parts under `loc` whose manifest
/// `keep` accepts, one part in memory at a time (manifests in name order, rows in part
/// order), so that a report over a large run holds only what it keeps.
pub fn visit_committed_rows(
    rt: &tokio::runtime::Handle,
    loc: &Location,
    keep: impl Fn(&str, &Manifest) -> bool,
    mut visit: impl FnMut(&Manifest, PartRow),
) -> Result<()> {
    let manifests = crate::stages::commit::read_manifests(rt, loc)?;
    for (name, m) in manifests.iter().filter(|(name, m)| keep(name, m)) {
        for f in m.files.iter().filter(|f| f.name.starts_with("part-")) {
            visit_part(rt, loc, &f.name, |r| visit(m, r))
                .with_context(|| format!("listed by {name}"))?;
        }
    }
    Ok(())
}

/// Calls `visit` with every row of the data part `part` (a name relative to `loc`).
pub fn visit_part(
    rt: &tokio::runtime::Handle,
    loc: &Location,
    part: &str,
    mut visit: impl FnMut(PartRow),
) -> Result<()> {
    let bytes = loc.read(rt, part)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .with_context(|| loc.child_url(part))?
        .build()?;
    for batch in reader {
        let mut rows = Vec::new();
        read_batch(&batch?, &mut rows).with_context(|| loc.child_url(part))?;
        rows.into_iter().for_each(&mut visit);
    }
    Ok(())
}

fn read_batch(batch: &RecordBatch, rows: &mut Vec<PartRow>) -> Result<()> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .with_context(|| format!("no column `{name}`"))
    };
    let ids = col("id")?.as_string::<i32>().clone();
    let recon = col("reconstruction")?.as_struct().clone();
    let png = recon
        .column_by_name("bytes")
        .context("reconstruction has no bytes")?
        .as_binary::<i32>()
        .clone();
    let float = |name: &str| -> Result<arrow::array::Float64Array> {
        Ok(col(name)?.as_primitive::<Float64Type>().clone())
    };
    let (mse, psnr, ssim, lpips, residual, seconds) = (
        float("mse")?,
        float("psnr")?,
        float("ssim")?,
        float("lpips")?,
        float("residual")?,
        float("seconds")?,
    );
    let nfe = batch
        .column_by_name("nfe")
        .and_then(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).ok());
    let nfe = nfe
        .as_ref()
        .map(|c| c.as_primitive::<arrow::datatypes::Int64Type>());
    let get = |a: &arrow::array::Float64Array, r: usize| (!a.is_null(r)).then(|| a.value(r));
    for r in 0..batch.num_rows() {
        rows.push(PartRow {
            id: ids.value(r).to_string(),
            png: png.value(r).to_vec(),
            mse: get(&mse, r),
            psnr: get(&psnr, r),
            ssim: get(&ssim, r),
            lpips: get(&lpips, r),
            residual: get(&residual, r),
            seconds: get(&seconds, r),
            nfe: nfe.filter(|a| !a.is_null(r)).map(|a| a.value(r)),
        });
    }
    Ok(())
}

/// Mean, population std (ddof = 0) and count of the present values of `metric`. For
/// `psnr`, +∞ (an exact reconstruction) is left out, which the count shows; any other
/// non-finite value is kept, so a diverged image makes the mean non-finite instead of
/// vanishing from it.
pub fn stat(
    metric: &str,
    values: impl Iterator<Item = Option<f64>>,
) -> Option<crate::report::Stat> {
    let v: Vec<f64> = values
        .flatten()
        .filter(|x| !(metric == "psnr" && *x == f64::INFINITY))
        .collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    Some(crate::report::Stat {
        mean,
        std: var.sqrt(),
        count: v.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_skips_missing_values_and_only_an_exact_images_psnr() {
        let values = [Some(1.0), None, Some(3.0), Some(f64::INFINITY)];
        let s = stat("psnr", values.into_iter()).unwrap();
        assert_eq!((s.mean, s.std, s.count), (2.0, 1.0, 2));
        assert!(stat("mse", [None].into_iter()).is_none());
        // A diverged image is not dropped from the MSE: the mean says it diverged.
        let s = stat("mse", values.into_iter()).unwrap();
        assert_eq!((s.mean, s.count), (f64::INFINITY, 3));
        let s = stat("mse", [Some(1.0), Some(f64::NAN)].into_iter()).unwrap();
        assert!(s.mean.is_nan() && s.count == 2);
        let s = stat("psnr", [Some(20.0), Some(f64::NAN)].into_iter()).unwrap();
        assert!(s.mean.is_nan() && s.count == 2);
    }
}
