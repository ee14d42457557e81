//! The pipeline end to end on local files with the closed-form test model: outputs,
//! resume, changed settings, several workers, bad data.

use std::path::Path;

use arrow::array::{Array, AsArray};

use crate::common::*;

const SHAPE: [usize; 3] = [1, 8, 8];

fn restore_args<'a>(input: &'a str, output: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let model = Box::leak(
        gaussian_model()
            .to_string_lossy()
            .to_string()
            .into_boxed_str(),
    );
    let mut args = vec![
        "restore",
        "--model",
        model,
        "--input",
        input,
        "--output",
        output,
        "--operator",
        "cs:24",
        "--steps",
        "6",
        "--zeta",
        "0.5",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn restores_every_record_once_with_finite_metrics() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    let output = tmp.path().join("out");
    let ids = write_image_shards(&input, 3, 5, SHAPE);
    let (i, o) = (s(&input), s(&output));
    let out = adps(&restore_args(&i, &o, &[]));
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("records ok 15, failed 0"), "{stdout}");
    assert!(stdout.contains("mean PSNR"), "{stdout}");
    let rows = committed_rows(&output);
    assert_eq!(rows.keys().cloned().collect::<Vec<_>>(), ids);
    for (id, (png, mse)) in &rows {
        let mse = mse.unwrap_or_else(|| panic!("{id}: no mse"));
        assert!(mse.is_finite() && mse >= 0.0, "{id}: mse {mse}");
        let decoded = adps::io::image::decode(png, 1).unwrap();
        assert_eq!(decoded.shape, SHAPE);
    }
    // Every row carries the settings that produced it.
    let part = read_parquet(&output.join("part-shard-00000.parquet"));
    for col in [
        "model", "train_p", "operator", "level", "sigma_y", "nfe", "zeta", "seed", "sampler",
        "seconds", "residual", "ssim", "psnr", "lpips",
    ] {
        assert!(part.column_by_name(col).is_some(), "column {col} missing");
    }
}

#[test]
fn rerun_skips_committed_shards_and_new_settings_redo_them() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    let output = tmp.path().join("out");
    write_image_shards(&input, 2, 4, SHAPE);
    let (i, o) = (s(&input), s(&output));
    assert_ok(&adps(&restore_args(&i, &o, &[])));
    let first = committed_rows(&output);

    let again = adps(&restore_args(&i, &o, &[]));
    assert_ok(&again);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("skipped 2"), "{stdout}");
    assert_eq!(committed_rows(&output), first);

    let changed = adps(&restore_args(&i, &o, &["--seed", "7"]));
    assert_ok(&changed);
    let stdout = String::from_utf8_lossy(&changed.stdout);
    assert!(
        stdout.contains("committed 2") && stdout.contains("skipped 0"),
        "{stdout}"
    );
    assert_ne!(
        committed_rows(&output),
        first,
        "new seed must not reuse stale parts"
    );
    // The log says why committed shards are restored again, and what changed.
    let log = String::from_utf8_lossy(&changed.stderr);
    assert!(
        log.contains("restoring again: an earlier run committed it with other settings")
            && log.contains("sampler.seed: 0 → 7"),
        "{log}"
    );
}

#[test]
fn three_workers_together_equal_one() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 5, 3, SHAPE);
    let i = s(&input);
    let single = tmp.path().join("single");
    let so = s(&single);
    assert_ok(&adps(&restore_args(&i, &so, &["--batch-size", "4"])));
    let split = tmp.path().join("split");
    let sp = s(&split);
    for w in ["0", "1", "2"] {
        assert_ok(&adps(&restore_args(
            &i,
            &sp,
            &[
                "--worker-index",
                w,
                "--worker-count",
                "3",
                "--batch-size",
                "2",
            ],
        )));
    }
    assert_same_rows(&committed_rows(&split), &committed_rows(&single));
}

#[test]
fn limit_takes_the_same_first_records_on_rerun_and_across_workers() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    let ids = write_image_shards(&input, 3, 4, SHAPE);
    let first6: Vec<String> = ids[..6].to_vec();
    let i = s(&input);
    let out = tmp.path().join("out");
    let o = s(&out);
    assert_ok(&adps(&restore_args(&i, &o, &["--limit", "6"])));
    assert_eq!(
        committed_rows(&out).keys().cloned().collect::<Vec<_>>(),
        first6
    );
    // A rerun finds both shards committed and restores nothing more: the window does not
    // move on to the records after it (it once did, skewing a resumed evaluation).
    let again = adps(&restore_args(&i, &o, &["--limit", "6"]));
    assert_ok(&again);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("records ok 0"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(
        committed_rows(&out).keys().cloned().collect::<Vec<_>>(),
        first6
    );
    // Two workers together restore the same first six records.
    let split = tmp.path().join("split");
    let sp = s(&split);
    for w in ["0", "1"] {
        assert_ok(&adps(&restore_args(
            &i,
            &sp,
            &["--limit", "6", "--worker-index", w, "--worker-count", "2"],
        )));
    }
    assert_same_rows(&committed_rows(&split), &committed_rows(&out));
}

#[test]
fn worker_index_comes_from_the_batch_system() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 3, 2, SHAPE);
    let (i, o) = (s(&input), s(&tmp.path().join("out")));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(restore_args(&i, &o, &["--worker-count", "3"]))
        .env("JOB_COMPLETION_INDEX", "1")
        .env("ADPS_LOG", "warn")
        .output()
        .unwrap();
    assert_ok(&out);
    let rows = committed_rows(&tmp.path().join("out"));
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        vec!["img-00002", "img-00003"]
    );
    // A spec's own worker_index that the array index contradicts would make every task
    // take the same shards: refused before any compute.
    let spec = tmp.path().join("spec.toml");
    let model = gaussian_model();
    std::fs::write(
        &spec,
        format!(
            "[input]\nurl = \"{i}\"\n[output]\nurl = \"{}\"\n[model]\ndir = \"{}\"\n\
             device = \"cpu\"\n[task]\noperator = \"cs:8\"\n[workers]\nworker_index = 0\n\
             worker_count = 3\n",
            s(&tmp.path().join("out-spec")),
            s(&model)
        ),
    )
    .unwrap();
    let run = |index: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_adps"))
            .args(["run", &s(&spec), "--set", "sampler.steps=2"])
            .env("SLURM_ARRAY_TASK_ID", index)
            .env("ADPS_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run("1");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("workers.worker_index = 0, but SLURM_ARRAY_TASK_ID=1"),
        "{stderr}"
    );
    assert!(!tmp.path().join("out-spec").join("__adps").exists());
    assert_ok(&run("0"));

    // An array numbered from 1 names the variable and the range to use.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(restore_args(&i, &o, &["--worker-count", "3"]))
        .env("SLURM_ARRAY_TASK_ID", "3")
        .env("ADPS_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SLURM_ARRAY_TASK_ID=3 is not below --worker-count 3")
            && stderr.contains("--array=0-2"),
        "{stderr}"
    );
}

#[test]
fn bad_records_go_to_the_errors_table_and_a_corrupt_shard_fails_alone() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    let output = tmp.path().join("out");
    write_image_shards(&input, 2, 3, SHAPE);
    // A shard with one good image, one undecodable and one of the wrong size.
    let good = adps::io::image::encode_png(SHAPE, &synthetic_image(0, SHAPE)).unwrap();
    let big = adps::io::image::encode_png([1, 16, 16], &vec![0.0; 256]).unwrap();
    let rows = vec![
        ("ok-1".to_string(), good),
        ("garbage".to_string(), b"not a png".to_vec()),
        ("too-big".to_string(), big),
    ];
    std::fs::write(
        input.join("shard-00002.parquet"),
        adps::io::parquet_out::encode_image_shard(&rows).unwrap(),
    )
    .unwrap();
    std::fs::write(
        input.join("shard-00003.parquet"),
        b"PAR1 this is not parquet",
    )
    .unwrap();
    let (i, o) = (s(&input), s(&output));
    let out = adps(&restore_args(&i, &o, &[]));
    assert_eq!(
        out.status.code(),
        Some(3),
        "partial runs exit with 3: {out:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("records ok 7, failed 2"), "{stdout}");
    assert!(stdout.contains("shards committed 3, failed 1"), "{stdout}");
    let errors = read_parquet(&errors_path(&output, "shard-00002"));
    assert_eq!(errors.num_rows(), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("shard-00003.parquet"),
        "the corrupt shard is named: {stderr}"
    );
    assert!(!output.join("part-shard-00003.parquet").exists());
    assert!(!manifest_path(&output, "shard-00003").exists());

    // Without the corrupt shard, a rerun (a retried job) skips every committed shard and
    // still exits 3: two of its records failed, for good.
    std::fs::remove_file(input.join("shard-00003.parquet")).unwrap();
    let again = adps(&restore_args(&i, &o, &[]));
    assert_eq!(again.status.code(), Some(3), "{again:?}");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        stdout.contains("skipped 3")
            && stdout.contains("2 record(s) failed earlier, in skipped shards"),
        "{stdout}"
    );
}

#[test]
fn bad_specs_fail_before_any_compute_naming_every_problem() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 1, 2, SHAPE);
    let (i, o) = (s(&input), s(&tmp.path().join("out")));
    let model = s(&gaussian_model());
    let out = adps(&[
        "restore",
        "--model",
        &model,
        "--input",
        &i,
        "--output",
        &o,
        "--operator",
        "sr:3",
        "--steps",
        "0",
        "--device",
        "cpu",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sr:3") && stderr.contains("steps"),
        "{stderr}"
    );
    assert!(!tmp
        .path()
        .join("out")
        .join("part-shard-00000.parquet")
        .exists());

    let out = adps(&[
        "restore",
        "--model",
        "no/such/model",
        "--input",
        &i,
        "--output",
        &o,
        "--operator",
        "cs:8",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/model"));

    let out = adps(&[
        "restore",
        "--model",
        &model,
        "--input",
        &i,
        "--output",
        &o,
        "--operator",
        "warp:3",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("warp:3"));

    // A bad name for a typed setting, in a spec or a flag, names the setting and every
    // value it takes.
    let spec = tmp.path().join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            "[input]\nurl = \"{i}\"\n[output]\nurl = \"{o}\"\n[model]\ndir = \"{model}\"\n\
             device = \"cpu\"\n[task]\noperator = \"cs:8\"\n[sampler]\ngradient = \"sparse\"\n"
        ),
    )
    .unwrap();
    for (set, field, allowed) in [
        (
            None,
            "sampler.gradient",
            &["sparse", "auto", "dense", "vjp"][..],
        ),
        (
            Some("sampler.mask=none"),
            "sampler.mask",
            &["none", "model", "ones"][..],
        ),
        (
            Some("model.device=tpu"),
            "model.device",
            &["tpu", "cpu", "cuda", "auto"][..],
        ),
    ] {
        let mut args = vec!["run", spec.to_str().unwrap()];
        if let Some(set) = set {
            args.extend(["--set", "sampler.gradient=vjp", "--set", set]);
        }
        let out = adps(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(field), "{stderr}");
        for a in allowed {
            assert!(stderr.contains(a), "{a}: {stderr}");
        }
    }
    for (flag, bad, allowed) in [
        ("--mask", "none", &["model", "ones"][..]),
        ("--gradient", "sparse", &["auto", "dense", "vjp"][..]),
        ("--device", "tpu", &["cpu", "cuda", "auto"][..]),
    ] {
        let out = adps(&[
            "restore",
            "--model",
            &model,
            "--input",
            &i,
            "--output",
            &o,
            "--operator",
            "cs:8",
            flag,
            bad,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(flag) && stderr.contains(bad), "{stderr}");
        for a in allowed {
            assert!(stderr.contains(a), "{a}: {stderr}");
        }
    }
    assert!(!tmp
        .path()
        .join("out")
        .join("part-shard-00000.parquet")
        .exists());

    // The two kinds of spec, given to the other command, say which command reads them.
    let out = adps(&["run", "pipelines/sweep-ci.toml"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a sweep spec") && stderr.contains("adps evaluate"),
        "{stderr}"
    );
    let out = adps(&["evaluate", "pipelines/demo.toml"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a pipeline spec") && stderr.contains("adps run"),
        "{stderr}"
    );
}

#[test]
fn pipeline_spec_and_flags_are_one_code_path() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 2, 3, SHAPE);
    let flags_out = tmp.path().join("flags");
    let (i, fo) = (s(&input), s(&flags_out));
    assert_ok(&adps(&restore_args(&i, &fo, &["--batch-size", "3"])));
    let spec = tmp.path().join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
[input]
url = "{i}"
[output]
url = "{o}"
[model]
dir = "{m}"
device = "cpu"
[task]
operator = "cs:24"
[sampler]
steps = 9
zeta = 0.5
[workers]
batch_size = 2
"#,
            o = s(&tmp.path().join("spec")),
            m = s(&gaussian_model())
        ),
    )
    .unwrap();
    let sp = s(&spec);
    assert_ok(&adps(&["run", &sp, "--set", "sampler.steps=6"]));
    assert_same_rows(
        &committed_rows(&tmp.path().join("spec")),
        &committed_rows(&flags_out),
    );
}

#[test]
fn measured_input_is_restored_and_not_scored() {
    // y given directly (sr:2 on 8×8 → 16 values per record), no ground truth.
    use arrow::array::{ArrayRef, Float32Builder, ListBuilder, StringBuilder};
    use std::sync::Arc;
    let tmp = tempdir();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut ids = StringBuilder::new();
    let mut ys = ListBuilder::new(Float32Builder::new());
    for i in 0..3 {
        ids.append_value(format!("meas-{i}"));
        ys.append_value((0..16).map(|k| Some(((k + i) as f32 * 0.37).sin() * 0.5)));
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
    std::fs::write(input.join("measured.parquet"), buf).unwrap();
    let output = tmp.path().join("out");
    let (i, o) = (s(&input), s(&output));
    let model = s(&gaussian_model());
    let out = adps(&[
        "restore",
        "--model",
        &model,
        "--input",
        &i,
        "--output",
        &o,
        "--operator",
        "sr:2",
        "--steps",
        "8",
        "--zeta",
        "1",
        "--device",
        "cpu",
        // These y were measured from images in the model's [-1, 1] range.
        "--y-range",
        "model",
    ]);
    assert_ok(&out);
    let part = read_parquet(&output.join("part-measured.parquet"));
    assert_eq!(part.num_rows(), 3);
    let mse = part.column_by_name("mse").unwrap();
    assert_eq!(mse.null_count(), 3, "no ground truth, no MSE");
    let residual = part
        .column_by_name("residual")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap()
        .clone();
    assert!(residual.iter().all(|r| r.is_some_and(f64::is_finite)));

    // A y of the wrong length is refused per record, naming it.
    let out = adps(&[
        "restore",
        "--model",
        &model,
        "--input",
        &i,
        "--output",
        &s(&tmp.path().join("o2")),
        "--operator",
        "sr:4",
        "--steps",
        "2",
        "--device",
        "cpu",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let errors = read_parquet(&errors_path(&tmp.path().join("o2"), "measured"));
    assert_eq!(errors.num_rows(), 3);
}

#[test]
fn memory_store_runs_in_process() {
    use object_store::{ObjectStoreExt, PutPayload};
    let tmp = tempdir();
    write_image_shards(tmp.path(), 2, 2, SHAPE);
    let input = adps::io::store::open("memory://inproc/in").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for name in ["shard-00000.parquet", "shard-00001.parquet"] {
        let bytes = std::fs::read(tmp.path().join(name)).unwrap();
        rt.block_on(input.store.put(&input.child(name), PutPayload::from(bytes)))
            .unwrap();
    }
    let spec = adps::pipeline::config::RunSpec::parse(
        &format!(
            "[input]\nurl = \"memory://inproc/in\"\n[output]\nurl = \"memory://inproc/out\"\n\
             [model]\ndir = \"{}\"\ndevice = \"cpu\"\n[task]\noperator = \"cs:16\"\n[sampler]\nsteps = 3\n",
            s(&gaussian_model())
        ),
        &[],
    )
    .unwrap();
    let (plan, engines) = adps::pipeline::plan::build(spec).unwrap();
    let report = adps::pipeline::topology::run(plan, engines, false).unwrap();
    assert_eq!((report.records_ok, report.shards_committed), (4, 2));
    let out = adps::io::store::open("memory://inproc/out").unwrap();
    let manifest = rt
        .block_on(async {
            out.store
                .get(&out.child(&adps::io::layout::manifest_name("shard-00001")))
                .await?
                .bytes()
                .await
        })
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(m["rows"], 2);
}

#[test]
fn measured_inpainting_uses_each_records_own_mask() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let n = 64;
    let (mut ids, mut ys, mut masks) = (vec![], vec![], vec![]);
    for i in 0..2 {
        let x = synthetic_image(i, SHAPE);
        // Keep the left half of image 0 and the top half of image 1.
        let kept: Vec<f32> = (0..n)
            .map(|k| {
                let keep = if i == 0 { k % 8 < 4 } else { k < 32 };
                if keep {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let y: Vec<f32> = x
            .iter()
            .zip(&kept)
            .map(|(v, m)| if *m > 0.0 { *v } else { 0.0 })
            .collect();
        ids.push(format!("inp-{i}"));
        ys.push(adps::io::image::encode_png(SHAPE, &y).unwrap());
        masks.push(adps::io::image::encode_png(SHAPE, &kept).unwrap());
    }
    let bytes =
        adps::io::parquet_out::encode_image_columns(&ids, &[("y_image", &ys), ("mask", &masks)])
            .unwrap();
    std::fs::write(input.join("inpaint.parquet"), bytes).unwrap();
    let i = s(&input);
    let model = s(&gaussian_model());
    // Plain DPS (mask = 1), so that guidance reaches every pixel of the closed-form model.
    let residuals = |zeta: &str| -> Vec<f64> {
        let o = s(&tmp.path().join(format!("out-{zeta}")));
        let out = adps(&[
            "restore",
            "--model",
            &model,
            "--input",
            &i,
            "--output",
            &o,
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
            // y_image holds model-range y as an image: (y + 1)/2, mid-grey where erased.
            "--y-range",
            "model",
        ]);
        assert_ok(&out);
        let part = read_parquet(&Path::new(&o).join("part-inpaint.parquet"));
        let r = part.column_by_name("residual").unwrap();
        let r = r.as_primitive::<arrow::datatypes::Float64Type>();
        (0..part.num_rows()).map(|k| r.value(k)).collect()
    };
    // ‖y − A x̂‖ is measured with each record's own mask: guidance drives it down, which
    // it could not do if another mask were used (y is zero wherever the file's mask erased).
    let (unguided, guided) = (residuals("0"), residuals("1"));
    for r in 0..2 {
        assert!(
            guided[r] < 0.25 * unguided[r],
            "record {r}: residual {} guided vs {} unguided",
            guided[r],
            unguided[r]
        );
    }

    let restore_with = |operator: &str, out: &str| {
        adps(&[
            "restore",
            "--model",
            &model,
            "--input",
            &i,
            "--output",
            &s(&tmp.path().join(out)),
            "--operator",
            operator,
            "--steps",
            "2",
            "--device",
            "cpu",
        ])
    };
    // An operator that takes no per-record mask leaves the default `mask` column alone
    // (a blur measures y images on the model's grid, as inpainting does).
    assert_ok(&restore_with("blur-gauss:1", "o2"));
    // `cs` measures a vector: its y images are refused before any compute.
    let out = restore_with("cs:8", "o3");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// A model folder with the optional split VJP pair restores exactly as the same model
/// without it: per-image inpainting masks and `--clip residual` take the VJP path, which
/// then runs one network evaluation per step instead of two.
#[test]
fn the_split_vjp_pair_restores_as_denoise_then_vjp() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 1, 5, [1, 8, 8]);
    let split = gaussian_model().with_file_name("gaussian-split");
    for (operator, extra) in [
        ("inpaint-random:0.4", &[][..]),
        ("cs:24", &["--gradient", "vjp", "--clip", "residual"][..]),
    ] {
        let mut committed = Vec::new();
        for (k, model) in [gaussian_model(), split.clone()].iter().enumerate() {
            let out = tmp.path().join(format!("out-{operator}-{k}"));
            let mut args = gaussian_restore_args_for(operator, &s(&input), &s(&out), 6, extra);
            let at = args.iter().position(|a| a == "--model").unwrap() + 1;
            args[at] = s(model);
            assert_ok(&adps_owned(&args));
            committed.push(committed_rows(&out));
        }
        assert_eq!(committed[0].len(), 5, "{operator}");
        assert_same_rows(&committed[0], &committed[1]);
        for (id, (_, mse)) in &committed[0] {
            let (a, b) = (mse.unwrap(), committed[1][id].1.unwrap());
            assert!(
                (a - b).abs() <= 1e-6 * a.max(1e-3),
                "{operator} {id}: mse {a} vs {b}"
            );
        }
    }
}
