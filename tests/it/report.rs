//! `adps report`: one self-contained page for a finished run, written under the
//! output's `__adps/` folder (or where `--html` says), that shows what the run did.

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
