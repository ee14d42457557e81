//! Killed runs: SIGKILL mid-run, rerun, and every id ends up committed exactly once; at
//! no point does a reader find a torn file.

use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn sigkill_mid_run_then_rerun_commits_every_id_exactly_once() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    let output = tmp.path().join("out");
    let shape = [1, 8, 8];
    let ids = write_image_shards(&input, 30, 4, shape);
    let model = gaussian_model().to_string_lossy().to_string();
    let (i, o) = (
        input.to_string_lossy().to_string(),
        output.to_string_lossy().to_string(),
    );
    let args = [
        "restore",
        "--model",
        &model,
        "--input",
        &i,
        "--output",
        &o,
        "--operator",
        "cs:24",
        "--steps",
        "300",
        "--zeta",
        "0.5",
        "--batch-size",
        "4",
        "--device",
        "cpu",
    ];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(args)
        .env("ADPS_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let manifests = || crate::common::manifests(&output).len();
    let started = Instant::now();
    while manifests() == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no shard committed in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let committed_before = manifests();
    assert!(
        committed_before < 30,
        "the run finished before the kill; make it longer"
    );

    // Whatever the kill left: every Parquet file there is whole, and committed rows are unique.
    for entry in std::fs::read_dir(&output).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            read_parquet(&path); // panics on a torn file
        }
    }
    let partial = committed_rows(&output);
    assert!(partial.len() <= ids.len());

    let out = adps(&args);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("skipped {committed_before}")),
        "committed shards are skipped: {stdout}"
    );
    let rows = committed_rows(&output);
    assert_eq!(rows.keys().cloned().collect::<Vec<_>>(), ids);
    for (id, before) in &partial {
        assert_eq!(&rows[id], before, "{id} changed across the rerun");
    }
}

#[test]
fn sigkill_inside_a_large_shard_resumes_after_its_last_committed_part() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    let output = tmp.path().join("out");
    let ids = write_image_shards(&input, 1, 40, [1, 8, 8]);
    let (i, o) = (
        input.to_string_lossy().to_string(),
        output.to_string_lossy().to_string(),
    );
    let extra = ["--batch-size", "4", "--part-rows", "4"];
    let args = gaussian_restore_args(&i, &o, 300, &extra);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(&args)
        .env("ADPS_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let progress = output.join(adps::io::layout::progress_name("shard-00000"));
    let started = Instant::now();
    while !progress.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no part committed in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        crate::common::manifests(&output).is_empty(),
        "the shard finished before the kill; make it longer"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&progress).unwrap()).unwrap();
    let rows_done = record["rows_done"].as_u64().unwrap() as usize;
    assert!(
        (4..40).contains(&rows_done) && rows_done.is_multiple_of(4),
        "{record}"
    );
    // Every part on disk is whole.
    for entry in std::fs::read_dir(&output).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            read_parquet(&path);
        }
    }
    let first_part = read_parquet(&part_path(&output, "shard-00000"));
    let st = adps(&["status", &o]);
    assert_eq!(st.status.code(), Some(3), "{st:?}");
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains(&format!(
            "rows 0–{} committed in {} part(s)",
            rows_done - 1,
            rows_done / 4
        )),
        "{text}"
    );

    let out = adps_owned(&args);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("records ok {}, failed 0", 40 - rows_done)),
        "only the rows after the committed parts are restored again: {stdout}"
    );
    assert!(
        !progress.exists(),
        "the progress record goes once the shard commits"
    );
    let rows = committed_rows(&output);
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        ids,
        "every id exactly once"
    );
    let m = crate::common::manifests(&output);
    let parts = m["shard-00000.json"]["files"].as_array().unwrap().len();
    assert_eq!(parts, 10, "40 rows in parts of 4");
    assert_eq!(
        read_parquet(&part_path(&output, "shard-00000")),
        first_part,
        "the parts committed before the kill are kept as they were"
    );
}

/// What a run killed right after a shard's first part leaves, made exactly (a SIGKILL's
/// timing is not): the progress record names part 0, while the parts and errors table
/// the run wrote after it, and a half-written local upload, are still there.
#[test]
fn a_resumed_shard_keeps_ids_unique_and_leaves_no_stray_parts() {
    use adps::io::layout;
    let tmp = tempdir();
    let (input, output) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    let shape = [1, 8, 8];
    // 12 rows; row 9 repeats row 1's id.
    let ids: Vec<String> = (0..12)
        .map(|r| format!("r{}", if r == 9 { 1 } else { r }))
        .collect();
    let rows: Vec<(String, Vec<u8>)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let png = adps::io::image::encode_png(shape, &synthetic_image(i, shape)).unwrap();
            (id.clone(), png)
        })
        .collect();
    let shard = adps::io::parquet_out::encode_image_shard(&rows).unwrap();
    std::fs::write(input.join("s.parquet"), shard).unwrap();
    let (i, o) = (s(&input), s(&output));
    let run = |part_rows: &str| {
        let extra = ["--batch-size", "4", "--part-rows", part_rows];
        let out = adps_owned(&gaussian_restore_args(&i, &o, 3, &extra));
        assert_eq!(out.status.code(), Some(3), "one error row: {out:?}");
        out
    };

    // The uninterrupted run: parts of 4 rows, the repeat an error row.
    run("4");
    let manifest = manifests(&output).remove("s.json").unwrap();
    let part0 = layout::part_name("s", 0);
    let size0 = std::fs::metadata(output.join(&part0)).unwrap().len();
    assert!(output.join(layout::part_name("s", 2)).exists());
    assert!(output.join(layout::errors_name("s", 2)).exists());

    // Killed after part 0: no manifest, a progress record naming part 0 only.
    std::fs::remove_file(manifest_path(&output, "s")).unwrap();
    let record = progress_record(
        &manifest,
        None,
        adps::stages::Resume {
            rows_done: 4,
            parts: 1,
            files: vec![(part0.clone(), size0)],
            rows_ok: 4,
            rows_failed: 0,
        },
    );
    let progress = output.join(layout::progress_name("s"));
    std::fs::create_dir_all(progress.parent().unwrap()).unwrap();
    std::fs::write(&progress, serde_json::to_vec(&record).unwrap()).unwrap();
    let staged = output.join(format!("{}#7", layout::part_name("s", 1)));
    std::fs::write(&staged, b"PAR1 half a part").unwrap();

    // The rerun, with parts of 8 rows: it goes on at row 4 and writes one more part.
    run("8");
    assert!(!progress.exists());
    assert!(!staged.exists(), "the half-written upload is gone");
    let manifest = manifests(&output).remove("s.json").unwrap();
    let named: std::collections::BTreeSet<String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&output)
        .unwrap()
        .chain(std::fs::read_dir(output.join(layout::META_DIR).join("errors")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            p.strip_prefix(&output)
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(
        on_disk, named,
        "every part and errors table there is one the manifest names"
    );
    assert_eq!(
        named.iter().filter(|n| n.starts_with("part-")).count(),
        2,
        "{named:?}"
    );
    assert_eq!(
        (manifest["rows"].as_u64(), manifest["errors"].as_u64()),
        (Some(11), Some(1))
    );
    let rows = committed_rows(&output);
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(rows.len(), 11);
    assert!(rows.keys().all(|id| unique.contains(id)));
    // The repeat at row 9 is refused as in the uninterrupted run, naming the committed row 1.
    let reason = error_reasons(&output.join(layout::errors_name("s", 1))).remove(0);
    assert!(
        reason.contains("row 9") && reason.contains("row 1 ") && reason.contains("`r1`"),
        "{reason}"
    );
}

/// The progress record of shard `s.parquet` that a run killed after `progress` would
/// have left, with the settings of its (removed) `manifest`.
fn progress_record(
    manifest: &serde_json::Value,
    input_version: Option<adps::stages::InputVersion>,
    progress: adps::stages::Resume,
) -> adps::stages::commit::ProgressRecord {
    adps::stages::commit::ProgressRecord {
        shard: "s.parquet".into(),
        input: String::new(),
        settings_hash: manifest["settings_hash"].as_str().unwrap().into(),
        settings: manifest["settings"].clone(),
        take: None,
        input_version,
        progress,
    }
}

/// A shard of 8 rows (`g-0` … `g-7`) whose row 0 is not an image, restored once in
/// parts of 4, then put back to "killed after part 0": the manifest removed, a progress
/// record naming part 0 and its errors table (3 rows restored, 1 failed). Returns the
/// workspace, the input and output paths, and the restore arguments.
fn killed_after_a_part_with_a_failed_row(
    input_version: Option<adps::stages::InputVersion>,
) -> (tempfile::TempDir, std::path::PathBuf, Vec<String>) {
    use adps::io::layout;
    let tmp = tempdir();
    let (input, output) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    let shape = [1, 8, 8];
    let rows: Vec<(String, Vec<u8>)> = (0..8)
        .map(|r| {
            let png = if r == 0 {
                b"not a png".to_vec()
            } else {
                adps::io::image::encode_png(shape, &synthetic_image(r, shape)).unwrap()
            };
            (format!("g-{r}"), png)
        })
        .collect();
    let shard = adps::io::parquet_out::encode_image_shard(&rows).unwrap();
    std::fs::write(input.join("s.parquet"), shard).unwrap();
    let extra = ["--batch-size", "4", "--part-rows", "4"];
    let args = gaussian_restore_args(&s(&input), &s(&output), 3, &extra);
    assert_eq!(adps_owned(&args).status.code(), Some(3), "row 0 fails");
    let manifest = manifests(&output).remove("s.json").unwrap();
    let (part0, errors0) = (layout::part_name("s", 0), layout::errors_name("s", 0));
    let size = |name: &str| std::fs::metadata(output.join(name)).unwrap().len();
    std::fs::remove_file(manifest_path(&output, "s")).unwrap();
    let record = progress_record(
        &manifest,
        input_version,
        adps::stages::Resume {
            rows_done: 4,
            parts: 1,
            files: vec![
                (part0.clone(), size(&part0)),
                (errors0.clone(), size(&errors0)),
            ],
            rows_ok: 3,
            rows_failed: 1,
        },
    );
    let progress = output.join(layout::progress_name("s"));
    std::fs::create_dir_all(progress.parent().unwrap()).unwrap();
    std::fs::write(&progress, serde_json::to_vec(&record).unwrap()).unwrap();
    (tmp, output, args)
}

#[test]
fn a_resumed_shard_whose_committed_parts_hold_a_failed_record_still_exits_3() {
    let (_tmp, output, args) = killed_after_a_part_with_a_failed_row(None);
    // Rows 4–7 restore cleanly; the failed row 0 of the committed part is final, so a
    // retried job must not report the shard complete.
    let out = adps_owned(&args);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("records ok 4, failed 0") && stdout.contains("1 record(s) failed earlier"),
        "{stdout}"
    );
    assert_eq!(committed_rows(&output).len(), 7);
}

#[test]
fn a_shard_replaced_after_a_killed_run_is_restored_from_the_start() {
    // The record says its parts came from another version of the input file.
    let other = adps::stages::InputVersion {
        size: 1,
        tag: Some("an-older-file".into()),
    };
    let (_tmp, output, args) = killed_after_a_part_with_a_failed_row(Some(other));
    let out = adps_owned(&args);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the input shard changed since an interrupted run"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("records ok 7, failed 1"),
        "every row restored again: {stdout}"
    );
    assert_eq!(committed_rows(&output).len(), 7);
}
