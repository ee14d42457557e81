//! The README's worked example, small: an archive "measured elsewhere" by
//! models/examples/measured_elsewhere.py (its own matrix A.npy, Pillow bicubic
//! low-resolution images, k-space at a variable-density mask PNG) restored by adps with
//! `matrix:`, `sr-bicubic:` and `fourier:` on the committed clean model, each beating
//! its plain baseline (minimum-norm least squares, Pillow bicubic upsampling, zero-filled
//! inverse DFT) in mean PSNR against the held-back originals.

use crate::common::*;

#[test]
fn an_archive_measured_elsewhere_restores_better_than_its_baselines() {
    let tmp = tempdir();
    let out = tmp.path().join("elsewhere");
    let script = root().join("models/examples/measured_elsewhere.py");
    let python = |args: &[&str]| {
        let done = std::process::Command::new(crate::python::python())
            .arg(&script)
            .args(args)
            .current_dir(root())
            .env("ADPS_LOG", "warn")
            .output()
            .unwrap();
        assert_ok(&done);
        String::from_utf8_lossy(&done.stdout).to_string()
    };
    let o = out.to_string_lossy().to_string();
    // 1 validation and 4 test images of the demo data; the ζ of each operator is the one
    // the README's run chose on 8 validation images (a grid of one here, for time).
    python(&["make", &o, "--val", "1", "--test", "4"]);
    let table = python(&[
        "run",
        &o,
        "--adps",
        env!("CARGO_BIN_EXE_adps"),
        "--zetas-matrix",
        "2",
        "--zetas-sr",
        "5",
        "--zetas-fourier",
        "2",
    ]);
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    for op in ["matrix", "sr", "fourier"] {
        let r = &results["operators"][op];
        let (ours, base) = (
            r["adps_psnr"].as_f64().unwrap(),
            r["baseline_psnr"].as_f64().unwrap(),
        );
        assert_eq!(r["test_images"], 4, "{op}");
        assert!(
            ours >= base + 1.0,
            "{op}: adps {ours:.2} dB does not beat {} {base:.2} dB by 1 dB\n{table}",
            r["baseline"]
        );
    }
    assert_eq!(
        results["operators"]["sr"]["operator"].as_str(),
        Some("sr-bicubic:2")
    );
}
