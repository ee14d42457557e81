//! `sr-bicubic:f` against Pillow's own `Image.resize(…, BICUBIC)` (the definition), and
//! low-resolution images measured in [0, 1] restored like their model-range twins.

use std::path::Path;

use adps::restore::operators::sr_bicubic::BicubicDown;
use adps::restore::operators::{apply, LinearOperator};
use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use ndarray::{Array2, Array3, ArrayD};
use ndarray_npy::ReadNpyExt;

use crate::common::*;

fn read_npy(path: &Path) -> ArrayD<f32> {
    ArrayD::<f32>::read_npy(std::fs::File::open(path).unwrap()).unwrap()
}

fn run_python(script: &str, dir: &Path) {
    let out = std::process::Command::new(crate::python::python())
        .args(["-c", script, &s(dir)])
        .output()
        .unwrap();
    assert_ok(&out);
}

/// Largest absolute difference.
fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Sizes (H, W, f) compared: square and not, every factor the models use, and one
/// where the stretched kernel is wider than the low-resolution image.
const CASES: [(usize, usize, usize); 5] = [
    (32, 32, 2),
    (32, 32, 4),
    (24, 36, 3),
    (16, 40, 8),
    (12, 8, 4),
];

#[test]
fn sr_bicubic_is_pillow_resize_bicubic_on_float_and_8_bit_images() {
    let tmp = tempdir();
    let d = tmp.path();
    // Inputs made here, so that both sides resize the same values: a float image in
    // [0, 1] per case, and an 8-bit RGB one.
    for (k, &(h, w, _)) in CASES.iter().enumerate() {
        let x = Array2::from_shape_fn((h, w), |(i, j)| {
            (((i * 13 + j * 7 + k * 5) as f32 * 0.731).sin() * 0.5 + 0.5).clamp(0.0, 1.0)
        });
        write_npy(&d.join(format!("f{k}.npy")), &x);
        let rgb = Array3::from_shape_fn((h, w, 3), |(i, j, c)| {
            ((i * 37 + j * 101 + c * 59 + k * 11) % 256) as u8
        });
        write_npy(&d.join(format!("u{k}.npy")), &rgb);
    }
    let cases: Vec<String> = CASES
        .iter()
        .map(|(h, w, f)| format!("({h}, {w}, {f})"))
        .collect();
    let script = format!(
        r#"
import sys, numpy as np
from PIL import Image
BICUBIC = getattr(Image, "Resampling", Image).BICUBIC
d = sys.argv[1]
for k, (h, w, f) in enumerate([{}]):
    x = np.load(f"{{d}}/f{{k}}.npy")
    im = Image.fromarray(x.astype(np.float32))
    assert im.mode == "F", im.mode
    np.save(f"{{d}}/f{{k}}_pil.npy", np.asarray(im.resize((w // f, h // f), BICUBIC), np.float32))
    u = np.load(f"{{d}}/u{{k}}.npy")
    rgb = Image.fromarray(u)
    assert rgb.mode == "RGB", rgb.mode
    np.save(f"{{d}}/u{{k}}_pil.npy", np.asarray(rgb.resize((w // f, h // f), BICUBIC), np.float32))
"#,
        cases.join(", ")
    );
    run_python(&script, d);
    for (k, &(h, w, f)) in CASES.iter().enumerate() {
        // Float ('F' mode): the definition, to 1e-4.
        let x = read_npy(&d.join(format!("f{k}.npy")));
        let ours = apply(&BicubicDown::new([1, h, w], f), x.as_slice().unwrap());
        let pil = read_npy(&d.join(format!("f{k}_pil.npy")));
        assert_eq!(pil.shape(), [h / f, w / f]);
        let diff = worst(&ours, pil.as_slice().unwrap());
        assert!(diff <= 1e-4, "{h}×{w} by {f}, float: differs by {diff}");

        // 8-bit RGB: ours on the same pixels as floats, per channel, rounded to 8 bits,
        // is within one grey level of Pillow's (fixed-point weights, 8-bit rows).
        let u = ArrayD::<u8>::read_npy(std::fs::File::open(d.join(format!("u{k}.npy"))).unwrap())
            .unwrap(); // [H, W, 3] HWC
        let chw: Vec<f32> = (0..3)
            .flat_map(|c| (0..h * w).map(move |p| (c, p)))
            .map(|(c, p)| u.as_slice().unwrap()[p * 3 + c] as f32)
            .collect();
        let op = BicubicDown::new([3, h, w], f);
        let ours: Vec<f32> = apply(&op, &chw)
            .iter()
            .map(|v| v.round().clamp(0.0, 255.0))
            .collect();
        let pil = read_npy(&d.join(format!("u{k}_pil.npy")));
        let (ho, wo) = (h / f, w / f);
        let pil_chw: Vec<f32> = (0..3)
            .flat_map(|c| (0..ho * wo).map(move |p| (c, p)))
            .map(|(c, p)| pil.as_slice().unwrap()[p * 3 + c])
            .collect();
        let diff = worst(&ours, &pil_chw);
        assert!(
            diff <= 1.0,
            "{h}×{w} by {f}, 8-bit RGB: differs by {diff} levels"
        );
    }
}

/// One shard of `y` vectors (list<float32>) under `dir`.
fn write_y_shard(dir: &Path, ys: &[Vec<f32>]) {
    use arrow::array::{ArrayRef, Float32Builder, ListBuilder, StringBuilder};
    use std::sync::Arc;
    std::fs::create_dir_all(dir).unwrap();
    let (mut ids, mut col) = (
        StringBuilder::new(),
        ListBuilder::new(Float32Builder::new()),
    );
    for (i, y) in ys.iter().enumerate() {
        ids.append_value(format!("lr-{i}"));
        col.append_value(y.iter().copied().map(Some));
    }
    let batch = arrow::array::RecordBatch::try_from_iter(vec![
        ("id", Arc::new(ids.finish()) as ArrayRef),
        ("y", Arc::new(col.finish()) as ArrayRef),
    ])
    .unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    std::fs::write(dir.join("lr.parquet"), buf).unwrap();
}

#[test]
fn pillow_low_resolution_images_in_unit_range_restore_as_their_model_range_twins() {
    // Low-resolution images made by Pillow from images in [0, 1] (y_range = "unit", the
    // default), and the same images measured by adps's own operator in the model's
    // [-1, 1] (y_range = "model"): since the weights sum to 1, y_model = 2·y − A·1 =
    // 2·y − 1, and both restore to the same rows.
    let tmp = tempdir();
    let d = tmp.path();
    let shape = [1, 8, 8];
    let n = 3;
    for i in 0..n {
        let u: Vec<f32> = synthetic_image(i, shape)
            .iter()
            .map(|v| (v + 1.0) / 2.0)
            .collect();
        write_npy(
            &d.join(format!("u{i}.npy")),
            &Array2::from_shape_vec((8, 8), u).unwrap(),
        );
    }
    run_python(
        &format!(
            r#"
import sys, numpy as np
from PIL import Image
BICUBIC = getattr(Image, "Resampling", Image).BICUBIC
d = sys.argv[1]
for i in range({n}):
    im = Image.fromarray(np.load(f"{{d}}/u{{i}}.npy").astype(np.float32))
    np.save(f"{{d}}/y{{i}}.npy", np.asarray(im.resize((4, 4), BICUBIC), np.float32))
"#
        ),
        d,
    );
    let op = BicubicDown::new(shape, 2);
    assert_eq!(op.measurements(), 16);
    let unit: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            read_npy(&d.join(format!("y{i}.npy")))
                .iter()
                .copied()
                .collect()
        })
        .collect();
    let model: Vec<Vec<f32>> = (0..n)
        .map(|i| apply(&op, &synthetic_image(i, shape)))
        .collect();
    for (u, m) in unit.iter().zip(&model) {
        let converted: Vec<f32> = u.iter().map(|v| 2.0 * v - 1.0).collect();
        assert!(worst(&converted, m) < 1e-5);
    }
    let (unit_in, model_in) = (d.join("unit"), d.join("model"));
    write_y_shard(&unit_in, &unit);
    write_y_shard(&model_in, &model);
    let run = |input: &Path, out: &Path, range: &str, zeta: &str| {
        let args: Vec<String> =
            gaussian_restore_args_for("sr-bicubic:2", &s(input), &s(out), 20, &[])
                .into_iter()
                .map(|a| if a == "0.5" { zeta.to_string() } else { a })
                .chain(["--y-range".to_string(), range.to_string()])
                .collect();
        assert_ok(&adps_owned(&args));
        let part = read_parquet(&part_path(out, "lr"));
        let ops = part.column_by_name("operator").unwrap().as_string::<i32>();
        assert!((0..n).all(|k| ops.value(k) == "sr-bicubic:2"));
        let r = part.column_by_name("residual").unwrap();
        let r = r.as_primitive::<Float64Type>();
        (0..n).map(|k| r.value(k)).collect::<Vec<f64>>()
    };
    let (unit_out, model_out) = (d.join("o-unit"), d.join("o-model"));
    let ru = run(&unit_in, &unit_out, "unit", "2");
    let rm = run(&model_in, &model_out, "model", "2");
    for (a, b) in ru.iter().zip(&rm) {
        assert!((a - b).abs() < 1e-3, "residual {a} (unit) vs {b} (model)");
    }
    assert_same_rows(&committed_rows(&unit_out), &committed_rows(&model_out));
    // Guidance drives ‖y − A x̂‖ down: the measurement is used, not just the prior.
    let unguided = run(&unit_in, &d.join("o-0"), "unit", "0");
    for (g, u) in ru.iter().zip(&unguided) {
        assert!(*g < 0.5 * u, "residual {g} guided vs {u} unguided");
    }
}
