//! Nothing lost or merged: shard identity is the path relative to the input prefix,
//! duplicate ids are refused or reported, huge images are refused from their header,
//! `--limit` lets an unreadable shard fail alone, and a failed shard leaves a record.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

const SHAPE: [usize; 3] = [1, 8, 8];

fn restore_args(input: &str, output: &str, extra: &[&str]) -> Vec<String> {
    gaussian_restore_args(input, output, 4, extra)
}

/// A temporary folder with an (empty) input folder and an output path in it.
fn workspace() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempdir();
    let (input, output) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    (tmp, input, output)
}

fn run(args: &[String]) -> std::process::Output {
    adps_owned(args)
}

/// A shard of `n` synthetic images with ids `<prefix>-<k>`.
fn shard(prefix: &str, n: usize) -> (Vec<String>, Vec<u8>) {
    let rows: Vec<(String, Vec<u8>)> = (0..n)
        .map(|k| {
            let png = adps::io::image::encode_png(SHAPE, &synthetic_image(k, SHAPE)).unwrap();
            (format!("{prefix}-{k}"), png)
        })
        .collect();
    let ids = rows.iter().map(|(id, _)| id.clone()).collect();
    (
        ids,
        adps::io::parquet_out::encode_image_shard(&rows).unwrap(),
    )
}

/// A shard whose rows carry no `id` column (ids default to `<shard path>:<row>`).
fn shard_without_ids(n: usize) -> Vec<u8> {
    let pngs: Vec<Vec<u8>> = (0..n)
        .map(|k| adps::io::image::encode_png(SHAPE, &synthetic_image(k, SHAPE)).unwrap())
        .collect();
    let batch = arrow::array::RecordBatch::try_from_iter([(
        "image",
        std::sync::Arc::new(arrow::array::BinaryArray::from_iter_values(pngs.iter()))
            as arrow::array::ArrayRef,
    )])
    .unwrap();
    adps::io::parquet_out::write_parquet(batch, &["image"]).unwrap()
}

#[test]
fn same_file_name_in_two_folders_stays_two_shards() {
    let (_tmp, input, output) = workspace();
    for split in ["train", "test"] {
        std::fs::create_dir_all(input.join(split)).unwrap();
        std::fs::write(input.join(split).join("0.parquet"), shard_without_ids(3)).unwrap();
    }
    let out = run(&restore_args(&s(&input), &s(&output), &[]));
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("records ok 6, failed 0"), "{stdout}");
    assert!(stdout.contains("shards committed 2"), "{stdout}");
    let rows = committed_rows(&output);
    let ids: Vec<&String> = rows.keys().collect();
    assert_eq!(
        ids,
        [
            "test/0.parquet:0",
            "test/0.parquet:1",
            "test/0.parquet:2",
            "train/0.parquet:0",
            "train/0.parquet:1",
            "train/0.parquet:2",
        ]
    );
    let m = manifests(&output);
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        ["test=2F0.json", "train=2F0.json"]
    );
    assert_eq!(m["train=2F0.json"]["shard"], "train/0.parquet");
    assert_eq!(
        m["train=2F0.json"]["files"][0]["name"],
        "part-train=2F0.parquet"
    );
    assert!(part_path(&output, "test=2F0").is_file());
    // A rerun recognises both as committed.
    let again = run(&restore_args(&s(&input), &s(&output), &[]));
    assert_ok(&again);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("skipped 2"), "{stdout}");
}

#[test]
fn a_non_ascii_shard_name_is_written_and_listed_one_way() {
    let (_tmp, input, output) = workspace();
    let (ids, bytes) = shard("b", 2);
    std::fs::write(input.join("bücher 1.parquet"), bytes).unwrap();
    let out = run(&restore_args(&s(&input), &s(&output), &[]));
    assert_ok(&out);
    let m = manifests(&output);
    let (name, manifest) = m.iter().next().expect("one manifest");
    assert_eq!(name, "b=C3=BCcher=201.json");
    assert_eq!(manifest["shard"], "bücher 1.parquet");
    let listed: Vec<String> = std::fs::read_dir(&output)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    // The manifest names the part exactly as it is stored.
    assert_eq!(listed, [manifest["files"][0]["name"].as_str().unwrap()]);
    assert_eq!(
        committed_rows(&output).keys().cloned().collect::<Vec<_>>(),
        ids
    );
}

#[test]
fn duplicate_ids_are_an_error_row_in_a_shard_and_reported_across_shards() {
    let (_tmp, input, output) = workspace();
    let png = |k| adps::io::image::encode_png(SHAPE, &synthetic_image(k, SHAPE)).unwrap();
    // Shard a: ids x, y, x (rows 0 and 2 share an id). Shard b: y again, z.
    let a = vec![
        ("x".into(), png(0)),
        ("y".into(), png(1)),
        ("x".into(), png(2)),
    ];
    let b = vec![("y".into(), png(3)), ("z".into(), png(4))];
    for (name, rows) in [("a.parquet", a), ("b.parquet", b)] {
        let bytes = adps::io::parquet_out::encode_image_shard(&rows).unwrap();
        std::fs::write(input.join(name), bytes).unwrap();
    }
    let out = run(&restore_args(&s(&input), &s(&output), &[]));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("records ok 4, failed 1"), "{stdout}");
    assert!(
        stdout.contains("1 id(s) committed in more than one shard: y (in a.parquet, b.parquet)"),
        "{stdout}"
    );
    let reasons = error_reasons(&errors_path(&output, "a"));
    assert_eq!(reasons.len(), 1);
    let reason = &reasons[0];
    assert!(
        reason.contains("row 2") && reason.contains("row 0") && reason.contains("`x`"),
        "{reason}"
    );
    // Row 0 of shard a is restored once; the repeat is not.
    let part = read_parquet(&part_path(&output, "a"));
    assert_eq!(part.num_rows(), 2);
}

#[test]
fn limit_stops_at_an_unreadable_footer_instead_of_moving_its_window() {
    let (_tmp, input, output) = workspace();
    let (a, bytes_a) = shard("a", 3);
    std::fs::write(input.join("s0.parquet"), bytes_a).unwrap();
    std::fs::write(input.join("s1.parquet"), b"PAR1 not parquet at all").unwrap();
    let (_, bytes_c) = shard("c", 3);
    std::fs::write(input.join("s2.parquet"), bytes_c).unwrap();
    // Without s1's row count the window (5 records) is unknown: nothing runs, s1 named.
    // (A window that skipped s1 would take 2 rows of s2 now and 2 of s1 once it reads,
    // leaving 7 committed rows for a limit of 5.)
    let out = run(&restore_args(&s(&input), &s(&output), &["--limit", "5"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("input.limit 5") && stderr.contains("s1.parquet"),
        "the bad shard is named: {stderr}"
    );
    assert!(committed_rows(&output).is_empty(), "nothing is committed");
    let (b, fixed) = shard("b", 2);
    std::fs::write(input.join("s1.parquet"), fixed).unwrap();
    let again = run(&restore_args(&s(&input), &s(&output), &["--limit", "5"]));
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    // With s1 readable the window is s0 (3) + s1 (2); s2 is not touched.
    let rows = committed_rows(&output);
    let want: Vec<String> = a.iter().chain(&b).cloned().collect();
    assert_eq!(rows.keys().cloned().collect::<Vec<_>>(), want);
}

#[test]
fn an_output_in_the_old_layout_is_refused_with_what_to_do() {
    let (_tmp, input, output) = workspace();
    write_image_shards(&input, 1, 2, SHAPE);
    std::fs::create_dir_all(&output).unwrap();
    std::fs::write(output.join("part-shard-00000.manifest.json"), b"{}").unwrap();
    let out = run(&restore_args(&s(&input), &s(&output), &[]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("part-shard-00000.manifest.json") && stderr.contains("new output"),
        "{stderr}"
    );
}

/// A 16384×16384 grey PNG written row by row (a few hundred KB, 256 MiB of pixels).
fn huge_png(dir: &Path) -> Vec<u8> {
    let side = 16384u32;
    let path = dir.join("huge.png");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut enc = png::Encoder::new(file, side, side);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header().unwrap().into_stream_writer().unwrap();
    let row = vec![0u8; side as usize];
    for _ in 0..side {
        std::io::Write::write_all(&mut w, &row).unwrap();
    }
    w.finish().unwrap();
    std::fs::read(&path).unwrap()
}

/// Runs the binary and returns (exit code, peak RSS in bytes, stdout).
fn run_measuring_rss(args: &[String], dir: &Path) -> (Option<i32>, u64, String) {
    let stdout_path = dir.join("stdout.txt");
    let child = Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(args)
        .env("ADPS_LOG", "warn")
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain FFI call with valid out-pointers; the child is reaped here, and
    // `child` is never waited on again.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    std::mem::forget(child);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    (code, usage.ru_maxrss as u64 * 1024, stdout)
}

#[test]
fn a_huge_image_is_refused_from_its_header_at_no_memory_cost() {
    let tmp = tempdir();
    let png = |k| adps::io::image::encode_png(SHAPE, &synthetic_image(k, SHAPE)).unwrap();
    let mut peaks = Vec::new();
    for (case, third) in [("normal", png(2)), ("huge", huge_png(tmp.path()))] {
        let input = tmp.path().join(case).join("in");
        let output = tmp.path().join(case).join("out");
        std::fs::create_dir_all(&input).unwrap();
        let rows = vec![
            ("a".into(), png(0)),
            ("b".into(), png(1)),
            ("c".into(), third),
        ];
        let bytes = adps::io::parquet_out::encode_image_shard(&rows).unwrap();
        std::fs::write(input.join("s.parquet"), bytes).unwrap();
        let (code, peak, stdout) =
            run_measuring_rss(&restore_args(&s(&input), &s(&output), &[]), tmp.path());
        let want_code = if case == "huge" { 3 } else { 0 };
        assert_eq!(code, Some(want_code), "{case}: {stdout}");
        peaks.push(peak);
        if case == "huge" {
            let reasons = error_reasons(&errors_path(&output, "s"));
            let reason = &reasons[0];
            assert!(reason.contains("16384×16384"), "{reason}");
        }
    }
    let (normal, huge) = (peaks[0], peaks[1]);
    // Decoding the image would cost at least its 256 MiB of pixels; a header costs nothing.
    assert!(
        huge <= normal + (32 << 20),
        "peak RSS {} MiB with the huge image vs {} MiB without",
        huge >> 20,
        normal >> 20
    );
}

#[test]
fn json_logs_have_one_info_event_per_shard_and_a_final_event_with_fields() {
    let (_tmp, input, output) = workspace();
    write_image_shards(&input, 2, 3, SHAPE);
    let mut args = vec!["--log-format".to_string(), "json".to_string()];
    args.extend(restore_args(&s(&input), &s(&output), &[]));
    let out = Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(&args)
        .env_remove("ADPS_LOG")
        .output()
        .unwrap();
    assert_ok(&out);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        events.iter().all(|e| !e.to_string().contains("\\u001b[")),
        "no colour codes off a terminal"
    );
    let committed: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["fields"]["message"] == "committed")
        .collect();
    assert_eq!(committed.len(), 2, "{events:?}");
    for e in &committed {
        assert_eq!(e["level"], "INFO");
        let f = &e["fields"];
        assert_eq!(f["rows"], 3);
        assert_eq!(f["errors"], 0);
        assert!(f["images_per_s"].as_f64().unwrap() > 0.0, "{f}");
        assert!(f["mean_psnr"].as_f64().unwrap().is_finite(), "{f}");
        assert!(
            f["shard"].as_str().unwrap().starts_with("shard-0000"),
            "{f}"
        );
    }
    let last = events.last().unwrap();
    assert_eq!(last["fields"]["message"], "run finished", "{last}");
    assert_eq!(last["fields"]["records_ok"], 6);
    assert_eq!(last["fields"]["shards_committed"], 2);
    assert_eq!(last["fields"]["records_failed"], 0);
}

#[test]
fn status_tells_what_is_committed_pending_and_failed_and_what_to_resubmit() {
    let (_tmp, input, output) = workspace();
    for k in [0, 2, 3] {
        std::fs::write(
            input.join(format!("s{k}.parquet")),
            shard(&format!("r{k}"), 2).1,
        )
        .unwrap();
    }
    std::fs::write(input.join("s1.parquet"), b"PAR1 broken").unwrap();
    let worker = |i: &str| {
        let mut a = restore_args(&s(&input), &s(&output), &[]);
        a.extend(["--worker-index", i, "--worker-count", "2"].map(String::from));
        run(&a)
    };
    let status = |extra: &[&str]| {
        let mut a = vec!["status", output.to_str().unwrap()];
        a.extend_from_slice(extra);
        adps(&a)
    };
    assert_ok(&worker("0"));
    let st = status(&["--worker-count", "2"]);
    assert_eq!(st.status.code(), Some(3), "{st:?}");
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("committed 2, pending 2, failed 0"), "{text}");
    assert!(text.contains("resubmit  worker indices 1 of 2"), "{text}");

    assert_eq!(worker("1").status.code(), Some(3));
    let st = status(&["--json", "--worker-count", "2"]);
    assert_eq!(st.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["shards_committed"], 3);
    assert_eq!(v["shards_failed"], 1);
    assert_eq!(v["records_ok"], 6);
    assert_eq!(v["complete"], false);
    assert_eq!(v["resubmit_indices"], serde_json::json!([1]));
    let failed: Vec<&serde_json::Value> = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["shard"], "s1.parquet");
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("Parquet"),
        "{v}"
    );

    std::fs::write(input.join("s1.parquet"), shard("r1", 2).1).unwrap();
    assert_ok(&worker("1"));
    let st = status(&[]);
    assert_ok(&st);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("committed 4, pending 0, failed 0") && !text.contains("not complete"),
        "{text}"
    );
}

#[test]
fn a_shard_streams_in_chunks_with_limits_and_duplicates_across_chunks() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let png = |k| adps::io::image::encode_png(SHAPE, &synthetic_image(k, SHAPE)).unwrap();
    // 20 rows; row 17 repeats the id of row 1, three chunks apart at 3 rows a chunk.
    let rows: Vec<(String, Vec<u8>)> = (0..20)
        .map(|k| {
            (
                if k == 17 {
                    "r-1".into()
                } else {
                    format!("r-{k}")
                },
                png(k),
            )
        })
        .collect();
    let bytes = adps::io::parquet_out::encode_image_shard(&rows).unwrap();
    std::fs::write(input.join("big.parquet"), bytes).unwrap();
    let spec = tmp.path().join("spec.toml");
    let write_spec = |out: &Path, limit: &str| {
        std::fs::write(
            &spec,
            format!(
                "[input]\nurl = {:?}\n{limit}\n[output]\nurl = {:?}\n[model]\ndir = {:?}\ndevice = \"cpu\"\n\
                 [task]\noperator = \"cs:24\"\n[sampler]\nsteps = 3\nzeta = 0.5\n\
                 [workers]\nbatch_size = 4\nchunk_rows = 3\n",
                s(&input),
                s(out),
                s(&gaussian_model())
            ),
        )
        .unwrap()
    };
    let all = tmp.path().join("all");
    write_spec(&all, "");
    let out = adps(&["run", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("records ok 19, failed 1"), "{stdout}");
    let rows = committed_rows(&all);
    assert_eq!(rows.len(), 19);
    let reasons = error_reasons(&errors_path(&all, "big"));
    let reason = &reasons[0];
    assert!(
        reason.contains("row 17") && reason.contains("row 1 "),
        "{reason}"
    );
    // A limit that ends inside a chunk.
    let some = tmp.path().join("some");
    write_spec(&some, "limit = 8");
    let out = adps(&["run", spec.to_str().unwrap()]);
    assert_ok(&out);
    let got: Vec<String> = committed_rows(&some).into_keys().collect();
    let mut want: Vec<String> = (0..8).map(|k| format!("r-{k}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_bad_record_in_the_middle_of_a_batch_fails_alone() {
    use adps::model::{Device, OnnxDenoiser, SessionConfig};
    use adps::restore::guidance::GradientPath;
    use adps::restore::operators::OperatorSpec;
    use adps::restore::sampler::SamplerConfig;
    use adps::stages::restore::{AdpsRestorer, RestoreSettings};
    use adps::stages::{Counters, Flow, Record, Shard};
    use std::str::FromStr;
    use std::sync::Arc;

    let model = OnnxDenoiser::load(gaussian_model(), &SessionConfig::new(Device::Cpu, 1)).unwrap();
    let card = model.card().clone();
    let family = OperatorSpec::from_str("cs:24")
        .unwrap()
        .build(card.shape, 0)
        .unwrap();
    let settings = RestoreSettings {
        shape: card.shape,
        path: GradientPath::auto(&family),
        family: Arc::new(family),
        sampler: SamplerConfig {
            steps: 3,
            zeta: 0.5,
            ..SamplerConfig::default()
        }
        .clamped_to_model(card.sigma_min, card.sigma_max),
        keep_prob: card.keep_probability(),
        seed: 0,
        sigma_y: 0.0,
        y_range: adps::pipeline::config::YRange::Model,
    };
    let mut restorer = AdpsRestorer::new(model, settings);
    let shard = Arc::new(Shard::new(0, "s".into(), "s".into(), "s".into()));
    let batch: Vec<(Arc<Shard>, Record)> = (0..8)
        .map(|row| {
            let len = if row == 4 { 5 } else { 24 };
            let mut y = vec![0.1f32; len];
            if row == 6 {
                y[3] = f32::NAN;
            }
            let record = Record {
                id: format!("r{row}"),
                row,
                truth: None,
                y: Some(y),
                mask: None,
                ..Default::default()
            };
            (shard.clone(), record)
        })
        .collect();
    let (tx, rx) = crossbeam_channel::unbounded();
    let (otx, orx) = crossbeam_channel::unbounded();
    tx.send(Flow::Data(batch)).unwrap();
    drop(tx);
    let counters = Counters::default();
    adps::stages::restore::run(&mut restorer, rx, otx, &counters);
    let Some(Flow::Data(out)) = orx.iter().next() else {
        panic!("no restored batch")
    };
    let ids: Vec<&str> = out.iter().map(|r| r.record.id.as_str()).collect();
    assert_eq!(
        ids,
        ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"],
        "batch order kept"
    );
    for r in &out {
        match r.record.row {
            4 => {
                let e = r.result.as_ref().unwrap_err();
                assert!(
                    e.contains("y has 5 values, the operator measures 24"),
                    "{e}"
                );
            }
            6 => assert!(r.result.as_ref().unwrap_err().contains("non-finite")),
            _ => assert!(r.result.is_ok(), "{}: {:?}", r.record.id, r.result),
        }
    }
}

#[test]
fn a_shard_is_written_in_parts_and_a_rerun_with_other_settings_leaves_no_stale_part() {
    let (_tmp, input, output) = workspace();
    let (ids, bytes) = shard("p", 10);
    std::fs::write(input.join("s.parquet"), bytes).unwrap();
    let out = run(&restore_args(
        &s(&input),
        &s(&output),
        &["--part-rows", "4"],
    ));
    assert_ok(&out);
    let sizes: Vec<usize> = (0..3)
        .map(|k| read_parquet(&output.join(adps::io::layout::part_name("s", k))).num_rows())
        .collect();
    assert_eq!(sizes, [4, 4, 2]);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        committed_rows(&output).into_keys().collect::<Vec<_>>(),
        sorted
    );
    // Other settings, bigger parts: the three old parts go, one new part stays.
    let out = run(&restore_args(
        &s(&input),
        &s(&output),
        &["--part-rows", "100", "--seed", "7"],
    ));
    assert_ok(&out);
    let parts: Vec<String> = std::fs::read_dir(&output)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert_eq!(parts, ["part-s.parquet"]);
    assert_eq!(committed_rows(&output).len(), 10);
}

#[test]
fn an_output_inside_the_input_is_refused_before_anything_is_written() {
    let (_tmp, input, _) = workspace();
    let (_, bytes) = shard("a", 2);
    std::fs::write(input.join("s0.parquet"), bytes).unwrap();
    let output = input.join("restored");
    let out = run(&restore_args(&s(&input), &s(&output), &[]));
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is inside the input"), "{stderr}");
    assert!(!output.exists(), "no folder is left under the input");
    // Nor the other way round: readers of the output would take the input's shards.
    let above = input.parent().unwrap();
    let out = run(&restore_args(&s(&input), &s(above), &[]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is inside the output"));

    // Input and output that are files, and an input without shards: refused by name,
    // leaving no empty output folder behind.
    let file = input.join("s0.parquet");
    let elsewhere = input.parent().unwrap().join("fresh-out");
    for (i, o, says) in [
        (s(&file), s(&elsewhere), "s0.parquet is a file"),
        (s(&input), s(&file), "s0.parquet is a file"),
    ] {
        let out = run(&restore_args(&i, &o, &[]));
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(says) && stderr.contains("folders"),
            "{stderr}"
        );
    }
    let empty = input.parent().unwrap().join("empty-in");
    std::fs::create_dir(&empty).unwrap();
    let out = run(&restore_args(&s(&empty), &s(&elsewhere), &[]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no .parquet shards"));
    assert!(
        !elsewhere.exists(),
        "a refused run leaves no empty output folder"
    );
}

#[test]
fn status_finds_a_relative_input_from_any_directory() {
    let (tmp, input, output) = workspace();
    std::fs::write(input.join("s0.parquet"), shard("r0", 2).1).unwrap();
    // The run names its input relative to its own directory.
    let args = restore_args("in", &s(&output), &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(&args)
        .current_dir(tmp.path())
        .env("ADPS_LOG", "warn")
        .output()
        .unwrap();
    assert_ok(&out);
    // Status runs from the repository root, where `in` means something else (or nothing).
    let st = adps(&["status", output.to_str().unwrap()]);
    assert_ok(&st);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("committed 1, pending 0, failed 0") && text.contains(&s(&input)),
        "{text}"
    );
}

#[test]
fn status_of_a_spec_not_run_yet_lists_every_shard_pending() {
    let (tmp, input, output) = workspace();
    std::fs::write(input.join("s0.parquet"), shard("r0", 2).1).unwrap();
    let spec = tmp.path().join("run.toml");
    std::fs::write(
        &spec,
        format!(
            "[input]\nurl = \"{}\"\n[output]\nurl = \"{}\"\n[model]\ndir = \"{}\"\n\
             [task]\noperator = \"cs:24\"\n",
            s(&input),
            s(&output),
            s(&gaussian_model())
        ),
    )
    .unwrap();
    let st = adps(&["status", spec.to_str().unwrap()]);
    assert_eq!(st.status.code(), Some(3), "{st:?}");
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("committed 0, pending 1, failed 0"), "{text}");
    assert!(!output.exists(), "status writes nothing");
    // An output folder that holds no run says so, and what to pass instead.
    std::fs::create_dir(&output).unwrap();
    let st = adps(&["status", output.to_str().unwrap()]);
    assert_eq!(st.status.code(), Some(3), "{st:?}");
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("no run has committed or started a shard here"),
        "{text}"
    );
    let missing = adps(&["status", "no-such-run.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("cannot read the run spec no-such-run.toml"),
        "{missing:?}"
    );
}

#[test]
fn shard_names_that_differ_only_in_the_case_of_their_suffix_are_refused() {
    let (_tmp, input, output) = workspace();
    // `a.PARQUET` keeps its suffix in its output name, `a.PARQUET.parquet` drops it:
    // both would write `part-a.PARQUET.parquet`.
    std::fs::write(input.join("a.PARQUET"), shard("x", 2).1).unwrap();
    std::fs::write(input.join("a.PARQUET.parquet"), shard("y", 2).1).unwrap();
    let out = run(&restore_args(&s(&input), &s(&output), &[]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`a.PARQUET`")
            && stderr.contains("`a.PARQUET.parquet`")
            && stderr.contains("rename one"),
        "{stderr}"
    );
    assert!(!part_path(&output, "a.PARQUET").exists());
}

#[test]
fn a_shard_replaced_after_it_committed_is_restored_again() {
    let (_tmp, input, output) = workspace();
    let file = input.join("s.parquet");
    std::fs::write(&file, shard("old", 2).1).unwrap();
    let args = restore_args(&s(&input), &s(&output), &[]);
    assert_ok(&run(&args));
    // A copy that keeps content and modification time (`cp -p`, `rsync -a`: a new
    // inode) is the same input: skipped.
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let out = run(&args);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("skipped 1"),
        "{out:?}"
    );
    // The instrument's archive is fixed in place, same size, later time: `status` and
    // the rerun notice, and the rerun redoes the shard.
    let new = shard("new", 2).1;
    assert_eq!(new.len(), bytes.len(), "a replacement of the same size");
    std::fs::write(&file, new).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(modified + std::time::Duration::from_secs(60))
        .unwrap();
    let st = adps(&["status", output.to_str().unwrap()]);
    assert_eq!(st.status.code(), Some(3), "{st:?}");
    assert!(
        String::from_utf8_lossy(&st.stdout)
            .contains("committed from another version of the input file"),
        "{st:?}"
    );
    let out = run(&args);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the input shard changed since an earlier run committed it"),
        "{stderr}"
    );
    let ids: Vec<String> = committed_rows(&output).into_keys().collect();
    assert_eq!(ids, ["new-0", "new-1"]);
    // Unchanged since: skipped.
    let out = run(&args);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("skipped 1"));
}

#[test]
fn status_checks_the_files_a_manifest_names_as_a_rerun_does() {
    let (_tmp, input, output) = workspace();
    std::fs::write(input.join("s.parquet"), shard("r", 3).1).unwrap();
    assert_ok(&run(&restore_args(&s(&input), &s(&output), &[])));
    assert_ok(&adps(&["status", output.to_str().unwrap()]));
    // A part rewritten with fewer rows (another tool, a bad copy): readers would see 1
    // row where the manifest promises 3.
    let part = part_path(&output, "s");
    std::fs::write(&part, shard("r", 1).1).unwrap();
    let st = adps(&["status", output.to_str().unwrap()]);
    assert_eq!(st.status.code(), Some(3), "{st:?}");
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("committed 0, pending 1")
            && text.contains("a file its manifest names is missing or has another size"),
        "{text}"
    );
}

#[test]
fn ids_in_two_shards_leave_restore_and_status_agreeing_on_complete() {
    let (_tmp, input, output) = workspace();
    // The same records in two shards of the input (a copied file): nothing fails, and
    // no rerun can change it, so neither command asks for one.
    for name in ["a.parquet", "b.parquet"] {
        std::fs::write(input.join(name), shard("x", 2).1).unwrap();
    }
    let out = run(&restore_args(&s(&input), &s(&output), &[]));
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("committed in more than one shard"));
    let st = adps(&["status", output.to_str().unwrap()]);
    assert_ok(&st);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("duplicate x-0: in a.parquet, b.parquet")
            && text.contains("complete, but 2 id(s) are in more than one shard"),
        "{text}"
    );
}

#[test]
fn status_of_an_output_holding_only_failure_records_lists_the_input() {
    let (_tmp, input, output) = workspace();
    std::fs::write(input.join("s0.parquet"), b"PAR1 broken").unwrap();
    std::fs::write(input.join("s1.parquet"), shard("r", 2).1).unwrap();
    // Worker 0 of 2 takes s0 only, which fails as a whole: the output holds nothing but
    // its failure record.
    let mut a = restore_args(&s(&input), &s(&output), &[]);
    a.extend(["--worker-index", "0", "--worker-count", "2"].map(String::from));
    assert_eq!(run(&a).status.code(), Some(3));
    let st = adps(&[
        "status",
        output.to_str().unwrap(),
        "--json",
        "--worker-count",
        "2",
    ]);
    assert_eq!(st.status.code(), Some(3), "{st:?}");
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["shards_failed"], 1, "{v}");
    assert_eq!(v["shards_pending"], 1, "{v}");
    assert_eq!(v["resubmit_indices"], serde_json::json!([0, 1]), "{v}");
    assert!(v["input"].as_str().unwrap().ends_with("/in"), "{v}");
}

#[test]
fn an_output_that_cannot_be_written_stops_the_run_before_any_compute() {
    let (_tmp, input, output) = workspace();
    std::fs::write(input.join("s.parquet"), shard("r", 2).1).unwrap();
    // What a read-only or full output does to a write, made so that root cannot write
    // either: a file where adps needs a folder.
    let blocked = output.join(adps::io::layout::META_DIR).join("write-check");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"").unwrap();
    let out = run(&restore_args(&s(&input), &s(&output), &[]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot write to the output"), "{stderr}");
    assert!(!part_path(&output, "s").exists());

    // An output holding a run with other settings: the probe comes before anything of
    // it is deleted, so what it holds survives a run that cannot write.
    std::fs::remove_file(&blocked).unwrap();
    assert_ok(&run(&restore_args(&s(&input), &s(&output), &[])));
    std::fs::remove_dir_all(&blocked).unwrap(); // the probe's folder
    std::fs::write(&blocked, b"").unwrap();
    let other = run(&restore_args(&s(&input), &s(&output), &["--seed", "7"]));
    assert_eq!(other.status.code(), Some(1), "{other:?}");
    assert!(manifest_path(&output, "s").exists() && part_path(&output, "s").exists());
}

#[test]
fn an_input_of_other_formats_is_refused_saying_what_it_holds() {
    let (_tmp, input, output) = workspace();
    std::fs::write(input.join("data.csv"), b"id,y\n").unwrap();
    std::fs::write(input.join("measurements.pq"), shard("r", 1).1).unwrap();
    let out = run(&restore_args(&s(&input), &s(&output), &[]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`data.csv`, `measurements.pq`")
            && stderr.contains("(`.pq`)")
            && stderr.contains("to_parquet"),
        "{stderr}"
    );
}
