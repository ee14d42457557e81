//! Operators whose parameters come from files (`matrix:`, `fourier:`, `blur-kernel:`):
//! end-to-end restores, bad files refused before any compute, and the `fourier` and
//! `blur-kernel` conventions against NumPy (the test tools' Python).

use std::path::Path;

use adps::restore::operators::LinearOperator;
use ndarray::{Array2, Array3};
use ndarray_npy::ReadNpyExt;

use crate::common::*;

const SHAPE: [usize; 3] = [1, 8, 8];

/// `adps restore` of `input` into `output` with the Gaussian test model and `operator`.
fn restore(input: &str, output: &str, operator: &str, extra: &[&str]) -> std::process::Output {
    adps_owned(&gaussian_restore_args_for(
        operator, input, output, 4, extra,
    ))
}

/// The operator file loaded as the plan loads it.
fn load(path: &Path) -> adps::restore::operators::FileArray {
    adps::io::operator_file::decode(&s(path), &std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_matrix_file_restores_exactly_like_the_cs_matrix_it_holds() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 1, 3, SHAPE);
    // The run's cs:24 matrix (run seed 0), written as a float64 .npy: matrix: must take
    // vec(x) in the same C,H,W order, reach the same dense path and give the same rows.
    let cs = adps::restore::operators::cs::gaussian(
        24,
        64,
        &mut adps::restore::rng::run_rng(0, adps::restore::rng::RunStream::CsMatrix),
    );
    let a = cs.dense_matrix().unwrap().mapv(f64::from);
    let a_path = tmp.path().join("A.npy");
    write_npy(&a_path, &a);
    let (o_cs, o_m) = (tmp.path().join("out-cs"), tmp.path().join("out-matrix"));
    // Without clipping before the residual (the default), which the fused graph cannot do.
    let dense = ["--gradient", "dense", "--clip", "none"];
    assert_ok(&restore(&s(&input), &s(&o_cs), "cs:24", &dense[2..]));
    let operator = format!("matrix:{}", a_path.display());
    assert_ok(&restore(&s(&input), &s(&o_m), &operator, &dense));
    let (rows_cs, rows_m) = (committed_rows(&o_cs), committed_rows(&o_m));
    assert_eq!(rows_m.len(), 3);
    assert_same_rows(&rows_cs, &rows_m);
    let part = read_parquet(&part_path(&o_m, "shard-00000"));
    let ops = part.column_by_name("operator").unwrap();
    let ops = arrow::array::AsArray::as_string::<i32>(ops);
    assert!(ops.iter().all(|v| v == Some(operator.as_str())));

    // The same file skips the shard; a changed file redoes it.
    let manifest = |o: &Path| manifests(o).into_values().next().unwrap()["settings_hash"].clone();
    let before = manifest(&o_m);
    assert_ok(&restore(&s(&input), &s(&o_m), &operator, &dense));
    assert_eq!(manifest(&o_m), before);
    write_npy(&a_path, &(a * 0.5));
    let redo = restore(&s(&input), &s(&o_m), &operator, &dense);
    assert_ok(&redo);
    // The log says the shard is restored again and which setting changed.
    let log = String::from_utf8_lossy(&redo.stderr);
    assert!(
        log.contains("restoring again: an earlier run committed it with other settings")
            && log.contains("operator_files"),
        "{log}"
    );
    assert_ne!(
        manifest(&o_m),
        before,
        "a changed matrix file redoes the shard"
    );

    // `dense` with the default clip (before the residual) would run denoise + VJP under a
    // manifest saying dense: refused, naming both settings.
    let out = restore(
        &s(&input),
        &s(&tmp.path().join("o3")),
        &operator,
        &["--gradient", "dense"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sampler.gradient = \"dense\" cannot clip x0 before the residual")
            && err.contains("--clip none"),
        "{err}"
    );
}

#[test]
fn a_fourier_mask_restores_on_the_vjp_path() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 1, 2, SHAPE);
    // Low frequencies plus every other column: a grey PNG (non-zero = kept).
    let mut mask = vec![0u8; 64];
    for (k, m) in mask.iter_mut().enumerate() {
        let (u, v) = (k / 8, k % 8);
        if (u.min(8 - u) <= 1 && v.min(8 - v) <= 1) || v % 2 == 0 {
            *m = 255;
        }
    }
    let mask_path = tmp.path().join("mask.png");
    image::GrayImage::from_raw(8, 8, mask)
        .unwrap()
        .save(&mask_path)
        .unwrap();
    let o = tmp.path().join("out");
    let operator = format!("fourier:{}", mask_path.display());
    assert_ok(&restore(&s(&input), &s(&o), &operator, &[]));
    let rows = committed_rows(&o);
    assert_eq!(rows.len(), 2);
    assert!(rows
        .values()
        .all(|(_, mse)| mse.is_some_and(f64::is_finite)));
    // The fused dense path is refused by name: fourier has no dense matrix.
    let out = restore(
        &s(&input),
        &s(&tmp.path().join("o2")),
        &operator,
        &["--gradient", "dense", "--clip", "none"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs one operator shared by every image")
    );
}

#[test]
fn bad_operator_files_fail_before_any_compute_naming_the_file() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 1, 2, SHAPE);
    let o = tmp.path().join("out");

    // Wrong shape and non-finite values, with another problem of the spec: all listed.
    let bad = tmp.path().join("bad A.npy");
    let mut a = Array2::<f64>::zeros((3, 10));
    a[[1, 2]] = f64::NAN;
    write_npy(&bad, &a);
    let out = restore(
        &s(&input),
        &s(&o),
        &format!("matrix:{}", bad.display()),
        &["--batch-size", "0"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        format!(
            "{}: expected an M×64 float32 or float64 .npy",
            bad.display()
        ),
        "found (3, 10) float64".to_string(),
        format!("{}: 1 of 30 values are not finite", bad.display()),
        "workers.batch_size".to_string(),
    ] {
        assert!(stderr.contains(&want), "{want:?} not in:\n{stderr}");
    }
    assert!(!part_path(&o, "shard-00000").exists());

    // Unreadable, and not an array at all: exit 1, naming the file and what is wrong.
    let fails_naming = |operator: String, want: String| {
        let out = restore(&s(&input), &s(&o), &operator, &[]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&want), "{want:?} not in:\n{stderr}");
    };
    let missing = tmp.path().join("missing.npy");
    fails_naming(
        format!("fourier:{}", missing.display()),
        format!("{}: cannot read", missing.display()),
    );
    let text = tmp.path().join("kernel.npy");
    std::fs::write(&text, "not numpy").unwrap();
    fails_naming(
        format!("blur-kernel:{}", text.display()),
        format!("{}: not a .npy or PNG file", text.display()),
    );
    assert!(!part_path(&o, "shard-00000").exists());
}

#[test]
fn fourier_matches_numpy_fft2_ortho_on_the_same_mask() {
    let tmp = tempdir();
    let (c, h, w) = (3, 16, 12);
    let x = Array3::from_shape_fn((c, h, w), |(k, i, j)| {
        ((i * 7 + j * 3 + k * 11) as f32 * 0.37).sin()
    });
    let mask = Array2::from_shape_fn((h, w), |(i, j)| (i * 5 + j * 3) % 7 < 3 || i == 0);
    let y_in: Vec<f32> = (0..2 * c * mask.iter().filter(|&&m| m).count())
        .map(|k| (k as f32 * 0.61).cos())
        .collect();
    let (x_path, mask_path, y_path) = (
        tmp.path().join("x.npy"),
        tmp.path().join("mask.npy"),
        tmp.path().join("y.npy"),
    );
    write_npy(&x_path, &x);
    write_npy(&mask_path, &mask);
    write_npy(&y_path, &ndarray::Array1::from(y_in.clone()));
    let op = adps::restore::operators::fourier::SubsampledFourier::from_file(
        &load(&mask_path),
        [c, h, w],
    )
    .unwrap();
    let mut y = vec![0.0; op.measurements()];
    op.forward(x.as_slice().unwrap(), &mut y);
    let mut back = vec![0.0; c * h * w];
    op.adjoint(&y_in, &mut back);

    let script = r#"
import sys, numpy as np
d = sys.argv[1]
x, mask, y_in = np.load(d + "/x.npy"), np.load(d + "/mask.npy"), np.load(d + "/y.npy")
F = np.fft.fft2(x.astype(np.float64), norm="ortho")            # per channel (last two axes)
y = np.concatenate([np.concatenate([F[c][mask].real, F[c][mask].imag]) for c in range(len(x))])
k = int(mask.sum())
Z = np.zeros(x.shape, complex)
for c in range(len(x)):
    Z[c][mask] = y_in[2 * c * k:(2 * c + 1) * k] + 1j * y_in[(2 * c + 1) * k:(2 * c + 2) * k]
back = np.fft.ifft2(Z, norm="ortho").real
np.save(d + "/y_np.npy", y.astype(np.float32))
np.save(d + "/back_np.npy", back.astype(np.float32))
"#;
    let out = std::process::Command::new(crate::python::python())
        .args(["-c", script, &s(tmp.path())])
        .output()
        .unwrap();
    assert_ok(&out);
    let read = |name: &str| -> Vec<f32> {
        let f = std::fs::File::open(tmp.path().join(name)).unwrap();
        ndarray::ArrayD::<f32>::read_npy(f)
            .unwrap()
            .iter()
            .copied()
            .collect()
    };
    let worst = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    };
    let (y_np, back_np) = (read("y_np.npy"), read("back_np.npy"));
    assert!(
        worst(&y, &y_np) <= 1e-4,
        "forward differs by {}",
        worst(&y, &y_np)
    );
    assert!(
        worst(&back, &back_np) <= 1e-4,
        "adjoint differs by {}",
        worst(&back, &back_np)
    );
}

#[test]
fn blur_kernel_is_scipy_ndimage_convolve() {
    let tmp = tempdir();
    let (c, h, w) = (2, 9, 11);
    let x = Array3::from_shape_fn((c, h, w), |(k, i, j)| {
        ((i * 5 + j * 2 + k * 3) as f32 * 0.41).cos()
    });
    // Asymmetric, so that convolution and correlation differ.
    let kernel = Array2::from_shape_fn((3, 5), |(a, b)| (a * 5 + b) as f32 + 1.0);
    write_npy(&tmp.path().join("x.npy"), &x);
    let k_path = tmp.path().join("k.npy");
    write_npy(&k_path, &kernel);
    let mut ours = Vec::new();
    for padding in ["zero", "reflect"] {
        let spec = format!("blur-kernel:{}:{padding}", k_path.display());
        let op = adps::restore::operators::OperatorSpec::parse(&spec)
            .unwrap()
            .build_with([c, h, w], 0, &[load(&k_path)])
            .unwrap();
        ours.push(adps::restore::operators::apply(
            op.shared().unwrap().as_ref(),
            x.as_slice().unwrap(),
        ));
    }
    // scipy.ndimage.convolve itself (in the tools venv, scripts/tools.sh).
    let script = r#"
import sys, numpy as np
from scipy import ndimage
d = sys.argv[1]
x, k = np.load(d + "/x.npy").astype(np.float64), np.load(d + "/k.npy").astype(np.float64)
for mode in ["constant", "reflect"]:
    y = np.stack([ndimage.convolve(ch, k, mode=mode, cval=0.0) for ch in x])
    np.save(d + "/y_" + mode + ".npy", y.astype(np.float32))
"#;
    let out = std::process::Command::new(crate::python::python())
        .args(["-c", script, &s(tmp.path())])
        .output()
        .unwrap();
    assert_ok(&out);
    for (mine, mode) in ours.iter().zip(["constant", "reflect"]) {
        let f = std::fs::File::open(tmp.path().join(format!("y_{mode}.npy"))).unwrap();
        let theirs: Vec<f32> = ndarray::ArrayD::<f32>::read_npy(f)
            .unwrap()
            .iter()
            .copied()
            .collect();
        let worst = mine
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1e-4, "{mode}: differs by {worst}");
    }
}

/// A measured `fourier` record: id, y, and its k-space mask PNG (null where `None`).
type KSpaceRow = (String, Vec<f32>, Option<Vec<u8>>);

/// A shard of measured `fourier` records: `id`, `y` (list<float32>) and `mask` (image).
fn write_kspace_shard(path: &Path, rows: &[KSpaceRow]) {
    use arrow::array::{
        ArrayRef, BinaryBuilder, Float32Builder, ListBuilder, StringBuilder, StructArray,
    };
    use arrow::datatypes::{DataType, Field, Fields};
    use std::sync::Arc;
    let (mut ids, mut ys, mut bytes, mut paths) = (
        StringBuilder::new(),
        ListBuilder::new(Float32Builder::new()),
        BinaryBuilder::new(),
        StringBuilder::new(),
    );
    for (id, y, png) in rows {
        ids.append_value(id);
        ys.append_value(y.iter().copied().map(Some));
        match png {
            Some(png) => bytes.append_value(png),
            None => bytes.append_null(),
        }
        paths.append_null();
    }
    let fields = Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ]);
    let valid: Vec<bool> = rows.iter().map(|(_, _, png)| png.is_some()).collect();
    let mask = StructArray::new(
        fields,
        vec![
            Arc::new(bytes.finish()) as ArrayRef,
            Arc::new(paths.finish()) as ArrayRef,
        ],
        Some(valid.into()),
    );
    let batch = arrow::array::RecordBatch::try_from_iter(vec![
        ("id", Arc::new(ids.finish()) as ArrayRef),
        ("y", Arc::new(ys.finish()) as ArrayRef),
        ("mask", Arc::new(mask) as ArrayRef),
    ])
    .unwrap();
    let bytes = adps::io::parquet_out::write_parquet(batch, &["mask"]).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn per_record_kspace_masks_restore_each_record_and_a_bad_length_fails_alone() {
    use adps::restore::operators::fourier::SubsampledFourier;
    use arrow::array::AsArray;
    use arrow::datatypes::{Float32Type, Float64Type};
    let tmp = tempdir();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // The file's mask (the default for records without one): low frequencies only.
    let low: Vec<u8> = (0..64)
        .map(|k| {
            let (u, v) = (k / 8, k % 8);
            if u.min(8 - u) <= 1 && v.min(8 - v) <= 1 {
                255
            } else {
                0
            }
        })
        .collect();
    let file_mask = tmp.path().join("file-mask.png");
    image::GrayImage::from_raw(8, 8, low)
        .unwrap()
        .save(&file_mask)
        .unwrap();
    // Three records, three masks (every other row, every other column, a random half):
    // each y measured in [0, 1] (the default y_range) with its own mask.
    let masks: Vec<Vec<bool>> = vec![
        (0..64).map(|k| (k / 8) % 2 == 0 || k == 1).collect(),
        (0..64).map(|k| (k % 8) % 2 == 0 || k == 8).collect(),
        (0..64).map(|k| (k * 37 + 11) % 64 < 32 || k == 0).collect(),
    ];
    let png = |m: &[bool]| {
        let grey: Vec<u8> = m.iter().map(|&k| if k { 255 } else { 0 }).collect();
        let mut bytes = Vec::new();
        image::GrayImage::from_raw(8, 8, grey)
            .unwrap()
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        bytes
    };
    let mut rows = Vec::new();
    let mut ops = Vec::new();
    for (i, m) in masks.iter().enumerate() {
        let op = SubsampledFourier::new(SHAPE, m);
        let u: Vec<f32> = synthetic_image(i, SHAPE)
            .iter()
            .map(|v| (v + 1.0) / 2.0)
            .collect();
        let y = adps::restore::operators::apply(&op, &u);
        rows.push((format!("k-{i}"), y, Some(png(m))));
        ops.push(op);
    }
    // A fourth without a mask (null): measured with the file's.
    let file_op = SubsampledFourier::new(SHAPE, &masks_of_file(&file_mask));
    let u: Vec<f32> = synthetic_image(3, SHAPE)
        .iter()
        .map(|v| (v + 1.0) / 2.0)
        .collect();
    rows.push((
        "k-3".to_string(),
        adps::restore::operators::apply(&file_op, &u),
        None,
    ));
    ops.push(file_op);
    // A fourth record in the middle whose y is one value short of its mask's 2·|kept|.
    let bad_y = rows[0].1[1..].to_vec();
    rows.insert(1, ("k-bad".to_string(), bad_y, Some(png(&masks[0]))));
    write_kspace_shard(&input.join("kspace.parquet"), &rows);

    let operator = format!("fourier:{}", file_mask.display());
    // Plain DPS (the fixture model was trained at p = 0.5: its own sampling mask would
    // hide half the pixels from the measurement).
    let extra = ["--write-f32", "--mask", "ones"];
    let run = |zeta: &str| {
        let o = tmp.path().join(format!("out-{zeta}"));
        let args: Vec<String> =
            gaussian_restore_args_for(&operator, &s(&input), &s(&o), 20, &extra)
                .into_iter()
                .map(|a| if a == "0.5" { zeta.to_string() } else { a })
                .collect();
        let out = adps_owned(&args);
        assert_eq!(out.status.code(), Some(3), "one record fails: {out:?}");
        o
    };
    let (guided, unguided) = (run("1"), run("0"));
    // The bad record alone is in the errors table, named, with the lengths.
    let errors = read_parquet(&errors_path(&guided, "kspace"));
    assert_eq!(errors.num_rows(), 1);
    let ids = errors.column_by_name("id").unwrap().as_string::<i32>();
    let reasons = errors.column_by_name("reason").unwrap().as_string::<i32>();
    assert_eq!(ids.value(0), "k-bad");
    let kept = masks[0].iter().filter(|&&k| k).count();
    let want = format!(
        "y has {} values, but its mask keeps {kept} k-space positions",
        2 * kept - 1
    );
    assert!(reasons.value(0).contains(&want), "{}", reasons.value(0));

    let table = |o: &Path| read_parquet(&part_path(o, "kspace"));
    let residuals = |t: &arrow::array::RecordBatch| {
        let r = t.column_by_name("residual").unwrap();
        let r = r.as_primitive::<Float64Type>();
        (0..t.num_rows()).map(|k| r.value(k)).collect::<Vec<_>>()
    };
    let (g, u) = (table(&guided), table(&unguided));
    assert_eq!(g.num_rows(), 4);
    let (rg, ru) = (residuals(&g), residuals(&u));
    let xs = g
        .column_by_name("reconstruction_f32")
        .unwrap()
        .as_list::<i32>();
    let row_ids = g.column_by_name("id").unwrap().as_string::<i32>();
    for r in 0..4 {
        assert_eq!(row_ids.value(r), format!("k-{r}"));
        // Guidance with the record's own mask drives its residual down …
        assert!(
            rg[r] < 0.25 * ru[r],
            "record {r}: residual {} guided vs {} unguided",
            rg[r],
            ru[r]
        );
        // … and the residual column is ‖y − A_r x̂‖ with that mask (y in the model's
        // range: 2·y − A_r·1).
        let x: Vec<f32> = xs.value(r).as_primitive::<Float32Type>().values().to_vec();
        let y_model = adps::restore::measurement::unit_to_model(&ops[r], &rows[[0, 2, 3, 4][r]].1);
        let mine = adps::restore::operators::residual_norm(&ops[r], &x, &y_model) as f64;
        assert!(
            (mine - rg[r]).abs() < 1e-3,
            "record {r}: {mine} vs {}",
            rg[r]
        );
    }
}

/// The kept flags of a grey PNG mask file (non-zero = kept).
fn masks_of_file(path: &Path) -> Vec<bool> {
    image::open(path)
        .unwrap()
        .to_luma8()
        .into_raw()
        .iter()
        .map(|&v| v > 0)
        .collect()
}
