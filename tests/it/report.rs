//! `adps report`: one self-contained page for a finished run, written under the
//! output's `__adps/` folder (or where `--html` says), that shows what the run did.

use std::path::Path;

use crate::common::*;

/// Counts of a substring.
fn count(page: &str, what: &str) -> usize {
    page.matches(what).count()
}

#[test]
fn report_of_a_run_shows_settings_counts_residuals_metrics_errors_and_examples() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 2, 6, [1, 8, 8]);
    // A third shard with one unreadable image among good ones: an error row.
    let good = adps::io::image::encode_png([1, 8, 8], &synthetic_image(99, [1, 8, 8])).unwrap();
    let rows = vec![
        ("ok-a".to_string(), good.clone()),
        ("broken-record".to_string(), b"not a png".to_vec()),
        ("ok-b".to_string(), good),
    ];
    let bytes = adps::io::parquet_out::encode_image_shard(&rows).unwrap();
    std::fs::write(input.join("shard-00002.parquet"), bytes).unwrap();
    let out = tmp.path().join("out");
    let run = adps_owned(&gaussian_restore_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        3,
        &["--progress", "never"],
    ));
    assert_eq!(run.status.code(), Some(3), "one record fails: exit 3");

    let rep = adps(&["report", out.to_str().unwrap(), "--examples", "4"]);
    assert_ok(&rep);
    let page_path = out.join("__adps/report.html");
    let stdout = String::from_utf8_lossy(&rep.stdout);
    assert!(stdout.contains("__adps/report.html"), "{stdout}");
    let page = std::fs::read_to_string(&page_path).unwrap();

    // Self-contained: no external resources.
    assert!(!page.contains("src=\"http") && !page.contains("<script src"));
    // Counts: 14 restored, 1 failed, 3 shards committed; the run is not complete.
    assert!(
        page.contains("records restored</td><td class=\"num\">14<"),
        "counts"
    );
    assert!(page.contains("records failed</td><td class=\"num\">1<"));
    assert!(page.contains("shards committed</td><td class=\"num\">3<"));
    assert!(page.contains(">incomplete<"));
    // Settings and provenance from the manifests.
    assert!(page.contains("task.operator") && page.contains("<code>cs:24</code>"));
    assert!(page.contains("sampler.steps") && page.contains("settings hash"));
    assert!(page.contains("NFE per image"));
    // One throughput line per shard.
    for s in [
        "shard-00000.parquet",
        "shard-00001.parquet",
        "shard-00002.parquet",
    ] {
        assert!(page.contains(&format!("<td><code>{s}</code></td>")), "{s}");
    }
    // The residual and, with ground truth, PSNR and MSE histograms (SSIM's window does
    // not fit 8×8 images, so it has no values and no plot).
    assert!(page.contains("Measurement residual"));
    assert_eq!(count(&page, "<svg"), 3, "residual + psnr + mse");
    let axis = |label: &str| page.contains(&format!("\n{label}\n</text>"));
    assert!(axis("PSNR (dB) ↑") && axis("MSE ↓") && !axis("SSIM ↑"));
    assert!(page.contains("(n = 14)"));
    // The error row, named with its reason.
    assert!(page.contains("<code>broken-record</code>"));
    assert!(page.contains("The first 1 of 1 failed record"));
    // Example grid: measurement, reconstruction, ground truth × 4 images.
    assert!(page.contains("<th>measurement</th>") && page.contains("<th>ground truth</th>"));
    assert_eq!(count(&page, "src=\"data:image/png;base64,iVBORw0KGgo"), 12);

    // --html writes elsewhere; the output prefix still opens as a dataset (the page
    // lives under __adps/, which readers skip).
    let other = tmp.path().join("page.html");
    assert_ok(&adps(&[
        "report",
        out.to_str().unwrap(),
        "--html",
        other.to_str().unwrap(),
    ]));
    assert!(std::fs::read_to_string(&other)
        .unwrap()
        .starts_with("<!DOCTYPE html>"));
}

#[test]
fn report_escapes_what_the_data_says() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let rows = vec![
        (
            "<b>id</b>".to_string(),
            b"<script>alert(1)</script>".to_vec(),
        ),
        (
            "fine".to_string(),
            adps::io::image::encode_png([1, 8, 8], &synthetic_image(1, [1, 8, 8])).unwrap(),
        ),
    ];
    let bytes = adps::io::parquet_out::encode_image_shard(&rows).unwrap();
    std::fs::write(input.join("s.parquet"), bytes).unwrap();
    let out = tmp.path().join("out");
    adps_owned(&gaussian_restore_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        2,
        &["--progress", "never"],
    ));
    assert_ok(&adps(&["report", out.to_str().unwrap()]));
    let page = std::fs::read_to_string(out.join("__adps/report.html")).unwrap();
    assert!(page.contains("&lt;b&gt;id&lt;&#x2f;b&gt;") || page.contains("&lt;b&gt;id&lt;/b&gt;"));
    assert!(!page.contains("<b>id</b>"));
}

#[test]
fn report_of_nothing_says_what_is_missing() {
    let tmp = tempdir();
    let out = adps(&["report", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no committed shard yet"), "{err}");
}

/// Whether the page's example grid has a row named `name`.
fn has_grid_row(page: &str, name: &str) -> bool {
    page.contains(&format!("<th>{name}</th>"))
}

#[test]
fn report_examples_of_a_shard_whose_name_needs_escaping() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 1, 3, [1, 8, 8]);
    // A non-ASCII character and a `%`: the input key must not be escaped again.
    std::fs::rename(
        input.join("shard-00000.parquet"),
        input.join("bücher 50%.parquet"),
    )
    .unwrap();
    let out = tmp.path().join("out");
    assert_ok(&adps_owned(&gaussian_restore_args(
        &s(&input),
        &s(&out),
        2,
        &["--progress", "never"],
    )));
    assert_ok(&adps(&["report", &s(&out), "--examples", "2"]));
    let page = std::fs::read_to_string(out.join("__adps/report.html")).unwrap();
    assert!(!page.contains("No example grid"), "{page}");
    assert!(!page.contains("only the reconstructions"), "{page}");
    assert!(has_grid_row(&page, "measurement") && has_grid_row(&page, "ground truth"));
    assert!(page.contains("The first restored images of <code>bücher 50%.parquet</code>"));
}

/// Restores `shards` shards of 6 images in parts of 2, then leaves the last one as a
/// kill after its first part would: no manifest, a progress record naming part 0 (2
/// rows). Returns the output folder.
fn killed_after_first_part(tmp: &Path, shards: usize) -> std::path::PathBuf {
    use adps::io::layout;
    let input = tmp.join("in");
    write_image_shards(&input, shards, 6, [1, 8, 8]);
    let out = tmp.join("out");
    assert_ok(&adps_owned(&gaussian_restore_args(
        &s(&input),
        &s(&out),
        2,
        &[
            "--progress",
            "never",
            "--batch-size",
            "2",
            "--part-rows",
            "2",
        ],
    )));
    let stem = format!("shard-{:05}", shards - 1);
    let manifest = manifests(&out).remove(&format!("{stem}.json")).unwrap();
    std::fs::remove_file(manifest_path(&out, &stem)).unwrap();
    let part0 = layout::part_name(&stem, 0);
    let size0 = std::fs::metadata(out.join(&part0)).unwrap().len();
    let record = adps::stages::commit::ProgressRecord {
        shard: format!("{stem}.parquet"),
        input: String::new(),
        settings_hash: manifest["settings_hash"].as_str().unwrap().into(),
        settings: manifest["settings"].clone(),
        take: None,
        input_version: None,
        progress: adps::stages::Resume {
            rows_done: 2,
            parts: 1,
            files: vec![(part0, size0)],
            rows_ok: 2,
            rows_failed: 0,
        },
    };
    let progress = out.join(layout::progress_name(&stem));
    std::fs::create_dir_all(progress.parent().unwrap()).unwrap();
    std::fs::write(&progress, serde_json::to_vec(&record).unwrap()).unwrap();
    out
}

#[test]
fn report_of_a_killed_run_reads_the_rows_its_counts_count() {
    let tmp = tempdir();
    let out = killed_after_first_part(tmp.path(), 2);

    assert_ok(&adps(&["report", &s(&out)]));
    let page = std::fs::read_to_string(out.join("__adps/report.html")).unwrap();
    // The counts, the histograms and the time table agree: 6 + 2 rows.
    assert!(
        page.contains("records restored</td><td class=\"num\">8<"),
        "counts"
    );
    assert!(page.contains("shards pending</td><td class=\"num\">1<"));
    assert_eq!(count(&page, "(n = 8)"), 3, "residual, psnr, mse: {page}");
    assert!(page.contains("In all: 8 image(s)"));
    assert!(page.contains("<code>shard-00001.parquet</code> (unfinished)</td><td class=\"num\">2<"));
}

#[test]
fn report_examples_show_the_runs_measurement_of_a_padded_input() {
    // 6×6 images padded into the 8×8 model; `sr:4` fits 8×8, not 6×6.
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 1, 2, [1, 6, 6]);
    let out = tmp.path().join("out");
    assert_ok(&adps_owned(&gaussian_restore_args_for(
        "sr:4",
        &s(&input),
        &s(&out),
        2,
        &["--progress", "never", "--fit", "pad"],
    )));
    assert_ok(&adps(&["report", &s(&out), "--examples", "2"]));
    let page = std::fs::read_to_string(out.join("__adps/report.html")).unwrap();
    assert!(!page.contains("No example grid"), "{page}");
    assert!(!page.contains("only the reconstructions"), "{page}");
    assert!(has_grid_row(&page, "measurement") && has_grid_row(&page, "ground truth"));
    assert_eq!(count(&page, "src=\"data:image/png;base64,iVBORw0KGgo"), 6);
    // Row by row: the measurement of the 8×8 model image (`sr:4` of the padded image,
    // shown enlarged back), the reconstruction and the truth at the input's 6×6.
    let sizes: Vec<[usize; 2]> = inline_pngs(&page)
        .iter()
        .map(|png| adps::io::image::dimensions(png).unwrap())
        .collect();
    assert_eq!(sizes, [[8, 8], [8, 8], [6, 6], [6, 6], [6, 6], [6, 6]]);
}

/// The PNGs inlined in a page, in page order.
fn inline_pngs(page: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    page.split("src=\"data:image/png;base64,")
        .skip(1)
        .map(|rest| {
            let b64 = &rest[..rest.find('"').unwrap()];
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
        })
        .collect()
}

#[test]
fn report_examples_come_from_the_first_shard_with_restored_rows() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 2, 3, [1, 8, 8]);
    // The first shard's rows all fail.
    let rows = vec![
        ("bad-0".to_string(), b"not a png".to_vec()),
        ("bad-1".to_string(), b"nor this".to_vec()),
    ];
    let bytes = adps::io::parquet_out::encode_image_shard(&rows).unwrap();
    std::fs::write(input.join("shard-00000.parquet"), bytes).unwrap();
    let out = tmp.path().join("out");
    let run = adps_owned(&gaussian_restore_args(
        &s(&input),
        &s(&out),
        2,
        &["--progress", "never"],
    ));
    assert_eq!(run.status.code(), Some(3), "records fail: exit 3");
    assert_ok(&adps(&["report", &s(&out), "--examples", "2"]));
    let page = std::fs::read_to_string(out.join("__adps/report.html")).unwrap();
    assert!(page.contains("The first restored images of <code>shard-00001.parquet</code>"));
    assert!(has_grid_row(&page, "measurement") && has_grid_row(&page, "reconstruction"));
}

#[test]
fn report_of_a_run_whose_input_moved_away_reads_the_manifests() {
    let tmp = tempdir();
    let input = tmp.path().join("in");
    write_image_shards(&input, 2, 3, [1, 8, 8]);
    let out = tmp.path().join("out");
    assert_ok(&adps_owned(&gaussian_restore_args(
        &s(&input),
        &s(&out),
        2,
        &["--progress", "never"],
    )));
    std::fs::rename(&input, tmp.path().join("moved")).unwrap();
    let rep = adps(&["report", &s(&out), "--examples", "2"]);
    assert_ok(&rep);
    let page = std::fs::read_to_string(out.join("__adps/report.html")).unwrap();
    assert!(
        page.contains("records restored</td><td class=\"num\">6<"),
        "counts"
    );
    assert!(page.contains("shards committed</td><td class=\"num\">2<"));
    assert!(page.contains("The input cannot be read"), "{page}");
    // The grid: reconstructions only, with a note.
    assert!(has_grid_row(&page, "reconstruction") && !has_grid_row(&page, "measurement"));
    assert!(page.contains("only the reconstructions are shown"));
}

#[test]
fn report_of_a_run_killed_before_its_first_shard_committed() {
    let tmp = tempdir();
    let out = killed_after_first_part(tmp.path(), 1);

    let rep = adps(&["report", &s(&out), "--examples", "2"]);
    assert_ok(&rep);
    let page = std::fs::read_to_string(out.join("__adps/report.html")).unwrap();
    assert!(page.contains("records restored</td><td class=\"num\">2<"));
    assert!(page.contains("task.operator") && page.contains("<code>cs:24</code>"));
    assert!(page.contains("(n = 2)"));
    assert!(page.contains("The first restored images of <code>shard-00000.parquet</code>"));
    assert!(has_grid_row(&page, "measurement"));
}

#[test]
fn report_of_a_spec_takes_the_runs_overrides() {
    let tmp = tempdir();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write_image_shards(&input, 1, 2, [1, 8, 8]);
    let spec = tmp.path().join("run.toml");
    std::fs::write(
        &spec,
        format!(
            "[input]\nurl = \"{}\"\n[output]\nurl = \"{}\"\n[model]\ndir = \"{}\"\ndevice = \"cpu\"\n\
             [task]\noperator = \"cs:24\"\n[sampler]\nsteps = 2\n",
            s(&input),
            s(&out),
            s(&gaussian_model())
        ),
    )
    .unwrap();
    let spec = s(&spec);
    let set = ["--set", "sampler.zeta=0.7"];
    assert_ok(&adps(&[&["run", spec.as_str()][..], &set].concat()));
    // Without the run's --set the spec names other settings: said so, with what to do.
    let bare = adps(&["report", &spec]);
    assert_eq!(bare.status.code(), Some(1), "{bare:?}");
    let err = String::from_utf8_lossy(&bare.stderr);
    assert!(err.contains("pass the run's --set too"), "{err}");
    // Status names the setting that differs.
    let st = adps(&["status", &spec]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("committed with other settings (sampler.zeta: 0.7 → "),
        "{text}"
    );
    assert_ok(&adps(&[&["report", spec.as_str()][..], &set].concat()));
    assert!(std::fs::read_to_string(out.join("__adps/report.html"))
        .unwrap()
        .contains("0.7"));
}
