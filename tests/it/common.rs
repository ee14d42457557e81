//! Shared helpers: fixture paths, synthetic input shards, running the binary, reading
//! outputs back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use ndarray_npy::WriteNpyExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The repository root.
/// A path as a command-line argument.
pub fn s(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

/// Writes an array as a `.npy` file.
pub fn write_npy<A: WriteNpyExt>(path: &Path, a: &A) {
    let mut bytes = Vec::new();
    a.write_npy(&mut bytes).unwrap();
    std::fs::write(path, bytes).unwrap();
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The closed-form Gaussian test model (1×8×8).
pub fn gaussian_model() -> PathBuf {
    root().join("tests/fixtures/gaussian-model")
}

/// A deterministic smooth-ish image in [-1, 1] for record `i`.
pub fn synthetic_image(i: usize, shape: [usize; 3]) -> Vec<f32> {
    let [c, h, w] = shape;
    (0..c * h * w)
        .map(|k| {
            let (y, x) = ((k / w) % h, k % w);
            let v =
                ((x as f32 * 0.7 + i as f32 * 1.3).sin() * (y as f32 * 0.5 + i as f32).cos()) * 0.8;
            v.clamp(-1.0, 1.0)
        })
        .collect()
}

/// Writes `shards` input shards of `per_shard` synthetic images each under `dir`.
pub fn write_image_shards(
    dir: &Path,
    shards: usize,
    per_shard: usize,
    shape: [usize; 3],
) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut ids = Vec::new();
    for s in 0..shards {
        let rows: Vec<(String, Vec<u8>)> = (0..per_shard)
            .map(|r| {
                let i = s * per_shard + r;
                let id = format!("img-{i:05}");
                ids.push(id.clone());
                let png = adps::io::image::encode_png(shape, &synthetic_image(i, shape)).unwrap();
                (id, png)
            })
            .collect();
        let bytes = adps::io::parquet_out::encode_image_shard(&rows).unwrap();
        std::fs::write(dir.join(format!("shard-{s:05}.parquet")), bytes).unwrap();
    }
    ids
}

/// Runs the `adps` binary with arguments; returns its output.
pub fn adps(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(args)
        .current_dir(root())
        .env("ADPS_LOG", "warn")
        .output()
        .expect("cannot start adps")
}

/// `adps restore` of `input` into `output` with the Gaussian test model at cs:24,
/// ζ = 0.5 on CPU, `steps` sampler steps, then `extra` flags.
pub fn gaussian_restore_args(
    input: &str,
    output: &str,
    steps: usize,
    extra: &[&str],
) -> Vec<String> {
    gaussian_restore_args_for("cs:24", input, output, steps, extra)
}

/// The same with another `operator`.
pub fn gaussian_restore_args_for(
    operator: &str,
    input: &str,
    output: &str,
    steps: usize,
    extra: &[&str],
) -> Vec<String> {
    let model = gaussian_model().to_string_lossy().to_string();
    let steps = steps.to_string();
    let base = [
        "restore",
        "--model",
        &model,
        "--input",
        input,
        "--output",
        output,
        "--operator",
        operator,
        "--steps",
        &steps,
        "--zeta",
        "0.5",
        "--device",
        "cpu",
    ];
    base.iter().chain(extra).map(|a| a.to_string()).collect()
}

/// Runs the `adps` binary with owned arguments.
pub fn adps_owned(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    adps(&args)
}

/// Asserts a command succeeded, printing its output otherwise.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "adps failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads a Parquet file into one batch.
pub fn read_parquet(path: &Path) -> RecordBatch {
    let bytes = bytes::Bytes::from(std::fs::read(path).unwrap());
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The manifest of a shard under an output dir (`stem`: the shard's escaped name).
/// The `reason` column of an errors table, row by row.
pub fn error_reasons(path: &Path) -> Vec<String> {
    let errors = read_parquet(path);
    let reasons = errors.column_by_name("reason").unwrap().as_string::<i32>();
    (0..reasons.len())
        .map(|r| reasons.value(r).to_string())
        .collect()
}

pub fn manifest_path(out: &Path, stem: &str) -> std::path::PathBuf {
    out.join(adps::io::layout::manifest_name(stem))
}

/// The errors table of a shard under an output dir.
pub fn errors_path(out: &Path, stem: &str) -> std::path::PathBuf {
    out.join(adps::io::layout::errors_name(stem, 0))
}

/// The data part of a shard under an output dir.
pub fn part_path(out: &Path, stem: &str) -> std::path::PathBuf {
    out.join(adps::io::layout::part_name(stem, 0))
}

/// The manifests under an output dir, by file name.
pub fn manifests(out: &Path) -> BTreeMap<String, serde_json::Value> {
    let dir = out.join(adps::io::layout::manifests_dir());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let m = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().to_string(), m)
        })
        .collect()
}

/// Rows of the committed parts under an output dir (parts whose manifest exists),
/// keyed by id: (reconstruction PNG bytes, mse).
pub fn committed_rows(out: &Path) -> BTreeMap<String, (Vec<u8>, Option<f64>)> {
    let mut rows = BTreeMap::new();
    for (name, manifest) in manifests(out) {
        let parts: Vec<String> = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .filter(|n| n.starts_with("part-"))
            .collect();
        let batches: Vec<RecordBatch> = parts.iter().map(|p| read_parquet(&out.join(p))).collect();
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(
            batch.num_rows() as u64,
            manifest["rows"].as_u64().unwrap(),
            "{name}: the part's rows differ from its manifest"
        );
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let recon = batch
            .column_by_name("reconstruction")
            .unwrap()
            .as_struct()
            .clone();
        let png = recon
            .column_by_name("bytes")
            .unwrap()
            .as_binary::<i32>()
            .clone();
        let mse = batch
            .column_by_name("mse")
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone();
        for r in 0..batch.num_rows() {
            let m = (!mse.is_null(r)).then(|| mse.value(r));
            let prev = rows.insert(ids.value(r).to_string(), (png.value(r).to_vec(), m));
            assert!(prev.is_none(), "id {} committed twice", ids.value(r));
        }
    }
    rows
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Asserts two sets of committed rows hold the same ids and the same results, up to
/// float tolerance (ONNX Runtime may pick other kernels for other batch sizes): pixels
/// within one 8-bit level, MSE within 1e-6.
pub fn assert_same_rows(
    a: &BTreeMap<String, (Vec<u8>, Option<f64>)>,
    b: &BTreeMap<String, (Vec<u8>, Option<f64>)>,
) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "ids differ"
    );
    for (id, (png_a, mse_a)) in a {
        let (png_b, mse_b) = &b[id];
        let (pa, pb) = (
            adps::io::image::decode(png_a, 1).unwrap(),
            adps::io::image::decode(png_b, 1).unwrap(),
        );
        let worst = pa
            .data
            .iter()
            .zip(&pb.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            worst <= 1.0 / 127.0 + 1e-6,
            "{id}: pixels differ by {worst}"
        );
        match (mse_a, mse_b) {
            (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-6, "{id}: mse {x} vs {y}"),
            (x, y) => assert_eq!(x, y, "{id}: mse presence differs"),
        }
    }
}
