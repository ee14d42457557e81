//! Input layouts as users' data has them: Hugging Face `datasets` Parquet, mapped and
//! kept columns, images of other sizes and channel counts, measured y in [0, 1].

use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;

use crate::common::*;
use crate::python::python;

/// The closed-form Gaussian test model in colour (3×8×8).
fn rgb_model() -> String {
    s(&root().join("tests/fixtures/gaussian-rgb"))
}

/// The closed-form Gaussian test model at 1×32×32.
fn model_32() -> String {
    s(&root().join("tests/fixtures/gaussian-32"))
}

/// Runs a Python script with the test tools' Python, offline; panics with its output.
fn run_python(script: &str, args: &[&str], tmp: &Path) -> String {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .env("HF_HOME", tmp.join("hf"))
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{text}");
    text
}

#[test]
fn hugging_face_parquet_of_28px_images_is_padded_and_keeps_its_labels() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let shard = input.join("train-00000-of-00001.parquet");
    // Written by `datasets` itself: an image feature, a label, no id.
    let write = r#"
import sys
import numpy as np
from PIL import Image
import datasets
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:28, 0:28]
images = []
for i in range(5):
    blob = 255 * np.exp(-((xx - 10 - 2 * i) ** 2 + (yy - 14) ** 2) / 40.0)
    images.append(Image.fromarray(blob.astype(np.uint8), mode="L"))
d = datasets.Dataset.from_dict({"image": images, "label": [3, 1, 4, 1, 5]})
d = d.cast_column("image", datasets.Image())
d = d.cast_column("label", datasets.ClassLabel(names=[str(k) for k in range(10)]))
d.to_parquet(sys.argv[1])
"#;
    run_python(write, &[&s(&shard)], tmp.path());
    let output = tmp.path().join("out");
    let run = adps(&[
        "restore",
        "--model",
        &model_32(),
        "--input",
        &s(&input),
        "--output",
        &s(&output),
        "--operator",
        "sr:2",
        "--steps",
        "4",
        "--zeta",
        "2",
        "--device",
        "cpu",
        "--keep",
        "label",
        "--fit",
        "pad",
        "--write-f32",
    ]);
    assert_ok(&run);
    let check = r#"
import sys, io
import numpy as np
import pandas as pd, pyarrow.parquet as pq, datasets
from PIL import Image
out, shard = sys.argv[1], sys.argv[2]
src = pd.read_parquet(shard)
df = pd.read_parquet(out).sort_values("id")
want_ids = [f"train-00000-of-00001.parquet:{r}" for r in range(5)]
assert list(df["id"]) == want_ids, list(df["id"])
assert list(df["label"]) == [3, 1, 4, 1, 5], df["label"]
assert df["label"].dtype == np.int64, df["label"].dtype
for r, row in enumerate(df.itertuples()):
    rec = Image.open(io.BytesIO(row.reconstruction["bytes"]))
    assert rec.size == (28, 28) and rec.mode == "L", (rec.size, rec.mode)
    x = np.asarray(row.reconstruction_f32, np.float64)
    assert x.shape == (28 * 28,), x.shape
    truth = np.asarray(Image.open(io.BytesIO(src["image"][r]["bytes"])), np.float64) / 255
    # The metrics are taken at the input's size, against the input.
    mse = np.mean((np.clip((x.reshape(28, 28) + 1) / 2, 0, 1) - truth) ** 2)
    assert abs(mse - row.mse) < 1e-6, (mse, row.mse)
    assert pd.isna(row.y_range), ("y was simulated", row.y_range)
d = datasets.load_dataset("parquet", data_dir=out)["train"]
assert d.features["label"] == datasets.ClassLabel(names=[str(k) for k in range(10)]), d.features
assert d.features["reconstruction"] == datasets.Image()
assert d[0]["reconstruction"].size == (28, 28)
print("ok")
"#;
    run_python(check, &[&s(&output), &s(&shard)], tmp.path());
}

#[test]
fn every_column_mapping_problem_is_reported_before_any_compute() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 1, 2, [1, 8, 8]);
    let output = tmp.path().join("out");
    let run = adps_owned(&gaussian_restore_args(
        &s(&input),
        &s(&output),
        2,
        &[
            "--image-column",
            "picture",
            "--id-column",
            "image",
            "--keep",
            "label,id_",
            "--mask-column",
            "id",
        ],
    ));
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let err = String::from_utf8_lossy(&run.stderr);
    for want in [
        "5 problem(s)",
        "column `picture` (input.image_column) is not in the shard",
        "column `image` (input.id_column): expected a string or integer id, found Struct",
        "column `label` (input.keep_columns) is not in the shard",
        "column `id_` (input.keep_columns) is not in the shard",
        "input.mask_column `id`: the run's operator takes no per-record mask",
        "shard-00000.parquet",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    assert!(
        !output.join("__adps").exists() && !part_path(&output, "shard-00000").exists(),
        "nothing may be written"
    );
}

/// RGB images, each channel different, for record `i`.
fn rgb_image(i: usize) -> Vec<f32> {
    let mut x = synthetic_image(i, [3, 8, 8]);
    for (k, v) in x.iter_mut().enumerate() {
        *v = (*v + [0.0, -0.3, 0.3][k / 64]).clamp(-1.0, 1.0);
    }
    x
}

#[test]
fn rgb_images_are_restored_in_colour_and_a_grey_model_refuses_them_unless_asked() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let rows: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            let png = adps::io::image::encode_png([3, 8, 8], &rgb_image(i)).unwrap();
            (format!("rgb-{i}"), png)
        })
        .collect();
    std::fs::write(
        input.join("rgb.parquet"),
        adps::io::parquet_out::encode_image_shard(&rows).unwrap(),
    )
    .unwrap();
    let restore = |model: &str, out: &str, operator: &str, extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--model",
            model,
            "--input",
            input.to_str().unwrap(),
            "--output",
            out,
            "--operator",
            operator,
            "--steps",
            "6",
            "--zeta",
            "1",
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        adps(&args)
    };
    // Every operator runs on three channels.
    for op in [
        "cs:48",
        "sr:2",
        "inpaint-random:0.3",
        "inpaint-box:4x4",
        "blur-gauss:1",
    ] {
        let out = tmp.path().join(format!("out-{}", op.replace(':', "_")));
        assert_ok(&restore(&rgb_model(), &s(&out), op, &[]));
        let part = read_parquet(&part_path(&out, "rgb"));
        assert_eq!(part.num_rows(), 3, "{op}");
        let recon = part.column_by_name("reconstruction").unwrap().as_struct();
        let png = recon.column_by_name("bytes").unwrap().as_binary::<i32>();
        let px = adps::io::image::decode_native(png.value(0)).unwrap();
        assert_eq!(px.shape, [3, 8, 8], "{op}: the output is in colour");
        let psnr = part
            .column_by_name("psnr")
            .unwrap()
            .as_primitive::<Float64Type>()
            .value(0);
        assert!(psnr.is_finite() && psnr > 5.0, "{op}: psnr {psnr}");
    }
    // A grey model: an error row naming each record, unless the run converts.
    let grey = s(&gaussian_model());
    let out = tmp.path().join("grey");
    let run = restore(&grey, &s(&out), "sr:2", &[]);
    assert_eq!(run.status.code(), Some(3), "{run:?}");
    let errors = read_parquet(&errors_path(&out, "rgb"));
    assert_eq!(errors.num_rows(), 3);
    let reason = errors.column_by_name("reason").unwrap().as_string::<i32>();
    assert!(
        reason.value(0).contains("colour image") && reason.value(0).contains("input.convert"),
        "{}",
        reason.value(0)
    );
    let ids = errors.column_by_name("id").unwrap().as_string::<i32>();
    assert_eq!(ids.value(0), "rgb-0");
    let out = tmp.path().join("grey-converted");
    assert_ok(&restore(&grey, &s(&out), "sr:2", &["--convert", "grey"]));
    assert_eq!(read_parquet(&part_path(&out, "rgb")).num_rows(), 3);
}

#[test]
fn measured_colour_y_images_with_per_record_rgb_masks_are_restored() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let (mut ids, mut ys, mut masks) = (vec![], vec![], vec![]);
    for i in 0..2 {
        let x = rgb_image(i);
        // Keep the left half of image 0 and the top half of image 1; the mask is an
        // RGB image (white = kept), one flag per pixel.
        let kept: Vec<bool> = (0..64)
            .map(|p| if i == 0 { p % 8 < 4 } else { p < 32 })
            .collect();
        let mask: Vec<f32> = (0..3 * 64)
            .map(|k| if kept[k % 64] { 1.0 } else { -1.0 })
            .collect();
        // y in [0, 1] (the default y_range): the kept pixels of the image, black elsewhere.
        let y: Vec<f32> = (0..3 * 64)
            .map(|k| if kept[k % 64] { x[k] } else { -1.0 })
            .collect();
        ids.push(format!("inp-{i}"));
        ys.push(adps::io::image::encode_png([3, 8, 8], &y).unwrap());
        masks.push(adps::io::image::encode_png([3, 8, 8], &mask).unwrap());
    }
    let bytes =
        adps::io::parquet_out::encode_image_columns(&ids, &[("y_image", &ys), ("mask", &masks)])
            .unwrap();
    std::fs::write(input.join("inpaint.parquet"), bytes).unwrap();
    let residuals = |zeta: &str| -> Vec<f64> {
        let o = tmp.path().join(format!("out-{zeta}"));
        let run = adps(&[
            "restore",
            "--model",
            &rgb_model(),
            "--input",
            &s(&input),
            "--output",
            &s(&o),
            "--operator",
            "inpaint-random:0.5",
            "--steps",
            "30",
            "--zeta",
            zeta,
            "--mask",
            "ones",
            "--device",
            "cpu",
        ]);
        assert_ok(&run);
        let part = read_parquet(&part_path(&o, "inpaint"));
        let y_range = part.column_by_name("y_range").unwrap().as_string::<i32>();
        assert_eq!(y_range.value(0), "unit");
        let png = part
            .column_by_name("reconstruction")
            .unwrap()
            .as_struct()
            .column_by_name("bytes")
            .unwrap()
            .as_binary::<i32>()
            .value(0)
            .to_vec();
        assert_eq!(adps::io::image::decode_native(&png).unwrap().shape[0], 3);
        let r = part.column_by_name("residual").unwrap();
        let r = r.as_primitive::<Float64Type>();
        (0..part.num_rows()).map(|k| r.value(k)).collect()
    };
    // Guidance drives ‖y − A x̂‖ down with each record's own mask, in every channel.
    let (unguided, guided) = (residuals("0"), residuals("1"));
    for r in 0..2 {
        assert!(
            guided[r] < 0.25 * unguided[r],
            "record {r}: residual {} guided vs {} unguided",
            guided[r],
            unguided[r]
        );
    }
}

#[test]
fn measured_y_in_unit_range_restores_as_its_model_range_twin() {
    use adps::restore::operators::blur::GaussianBlur;
    use adps::restore::operators::{apply, LinearOperator};
    use arrow::array::{ArrayRef, Float32Builder, ListBuilder, StringBuilder};
    use std::sync::Arc;
    // blur-gauss:1 with zero padding: A·1 is below 1 near the border, so the conversion
    // y_model = 2·y_unit − A·1 is not the plain 2·y − 1.
    let op = GaussianBlur::new([1, 8, 8], 1.0);
    let write = |dir: &Path, unit: bool| {
        std::fs::create_dir_all(dir).unwrap();
        let (mut ids, mut ys) = (
            StringBuilder::new(),
            ListBuilder::new(Float32Builder::new()),
        );
        for i in 0..2 {
            let x = synthetic_image(i, [1, 8, 8]);
            let x: Vec<f32> = if unit {
                x.iter().map(|v| (v + 1.0) / 2.0).collect()
            } else {
                x
            };
            ids.append_value(format!("m-{i}"));
            ys.append_value(apply(&op, &x).into_iter().map(Some));
        }
        let batch = arrow::array::RecordBatch::try_from_iter(vec![
            ("id", Arc::new(ids.finish()) as ArrayRef),
            ("y", Arc::new(ys.finish()) as ArrayRef),
        ])
        .unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        std::fs::write(dir.join("m.parquet"), buf).unwrap();
    };
    assert_eq!(op.measurements(), 64);
    let tmp = tempdir();
    let (unit_in, model_in) = (tmp.path().join("unit"), tmp.path().join("model"));
    write(&unit_in, true);
    write(&model_in, false);
    let run = |input: &Path, out: &Path, range: &str| {
        let args: Vec<String> = gaussian_restore_args(&s(input), &s(out), 10, &[])
            .into_iter()
            .map(|a| {
                if a == "cs:24" {
                    "blur-gauss:1".into()
                } else {
                    a
                }
            })
            .chain(["--y-range".to_string(), range.to_string()])
            .collect();
        assert_ok(&adps_owned(&args));
    };
    let (unit_out, model_out) = (tmp.path().join("o-unit"), tmp.path().join("o-model"));
    run(&unit_in, &unit_out, "unit");
    run(&model_in, &model_out, "model");
    let (a, b) = (
        read_parquet(&part_path(&unit_out, "m")),
        read_parquet(&part_path(&model_out, "m")),
    );
    let residual = |t: &arrow::array::RecordBatch| {
        let r = t.column_by_name("residual").unwrap();
        let r = r.as_primitive::<Float64Type>();
        (0..t.num_rows()).map(|k| r.value(k)).collect::<Vec<_>>()
    };
    for (ra, rb) in residual(&a).iter().zip(residual(&b)) {
        assert!((ra - rb).abs() < 1e-4, "residual {ra} vs {rb}");
    }
    assert_same_rows(&committed_rows(&unit_out), &committed_rows(&model_out));
    for (t, want) in [(&a, "unit"), (&b, "model")] {
        let col = t.column_by_name("y_range").unwrap().as_string::<i32>();
        assert!((0..t.num_rows()).all(|k| col.value(k) == want));
    }
    // The two settings differ, so their manifests carry different hashes.
    let hash = |out: &Path| manifests(out).into_values().next().unwrap()["settings_hash"].clone();
    assert_ne!(hash(&unit_out), hash(&model_out));
}

/// Writes a one-row-group shard of `columns` to `path`.
fn write_shard(path: &Path, columns: Vec<(&str, arrow::array::ArrayRef)>) {
    let batch = arrow::array::RecordBatch::try_from_iter(columns).unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, buf).unwrap();
}

#[test]
fn a_measured_archive_is_never_restored_with_a_guessed_mask_or_kind() {
    use arrow::array::{ArrayRef, Float32Builder, ListBuilder, StringArray};
    use std::sync::Arc;
    // `n` measurements of `m` values each.
    let ys = |n: usize, m: usize| -> ArrayRef {
        let mut b = ListBuilder::new(Float32Builder::new());
        for _ in 0..n {
            b.append_value((0..m).map(|_| Some(0.5f32)));
        }
        Arc::new(b.finish())
    };
    let ids = |names: &[&str]| -> ArrayRef { Arc::new(StringArray::from(names.to_vec())) };
    let tmp = tempdir();

    // Inpainting measurements without the mask they were measured with: refused before
    // any compute (a mask drawn from the id would pair y with the wrong pixels).
    let input = tmp.path().join("no-mask");
    write_shard(
        &input.join("a.parquet"),
        vec![("id", ids(&["a0", "a1"])), ("y", ys(2, 64))],
    );
    let output = tmp.path().join("out-no-mask");
    let run = adps_owned(&gaussian_restore_args_for(
        "inpaint-random:0.5",
        &s(&input),
        &s(&output),
        2,
        &[],
    ));
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("measurements `y` (a y vector) are measured by an inpainting operator")
            && err.contains("no mask column"),
        "{err}"
    );
    assert!(!part_path(&output, "a").exists(), "nothing may be written");

    // A later shard that gives clean images where the first gave measurements, and has
    // no ids, fails alone, naming both; the first shard is restored.
    let input = tmp.path().join("mixed");
    write_shard(
        &input.join("a.parquet"),
        vec![("id", ids(&["a0", "a1"])), ("y", ys(2, 24))],
    );
    let png = adps::io::image::encode_png([1, 8, 8], &synthetic_image(0, [1, 8, 8])).unwrap();
    let image = adps::io::parquet_out::encode_image_shard(&[("b0".to_string(), png)]).unwrap();
    // encode_image_shard writes `id` and `image`: drop the ids by rewriting without them.
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(image),
    )
    .unwrap()
    .build()
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    write_shard(
        &input.join("b.parquet"),
        vec![("image", batch.column_by_name("image").unwrap().clone())],
    );
    let output = tmp.path().join("out-mixed");
    let run = adps_owned(&gaussian_restore_args(&s(&input), &s(&output), 2, &[]));
    assert_eq!(run.status.code(), Some(3), "{run:?}");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("b.parquet")
            && err.contains(
                "the first shard gives measurements `y` (a y vector), this one clean images `image`"
            )
            && err.contains("the first shard has an id column `id`, this one none"),
        "{err}"
    );
    assert_eq!(read_parquet(&part_path(&output, "a")).num_rows(), 2);
    assert!(!part_path(&output, "b").exists());
}

#[test]
fn measurements_the_operator_cannot_take_are_refused_before_any_compute() {
    let tmp = tempdir();
    let (input, output) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    // y as 8×8 images, for `cs:24` (a vector of 24 values) and with --fit pad.
    let ys: Vec<Vec<u8>> = (0..2)
        .map(|k| adps::io::image::encode_png([1, 8, 8], &synthetic_image(k, [1, 8, 8])).unwrap())
        .collect();
    let ids = vec!["a".to_string(), "b".to_string()];
    std::fs::write(
        input.join("s.parquet"),
        adps::io::parquet_out::encode_image_columns(&ids, &[("y_image", &ys)]).unwrap(),
    )
    .unwrap();
    let out = adps_owned(&gaussian_restore_args(
        &s(&input),
        &s(&output),
        2,
        &["--fit", "pad"],
    ));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 problem(s)")
            && err.contains("column `y_image` holds images, but `cs:24` measures a vector")
            && err.contains("input.fit = \"pad\" (--fit) applies to clean images"),
        "{err}"
    );
    assert!(!part_path(&output, "s").exists());
}
