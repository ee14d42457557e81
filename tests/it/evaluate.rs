//! `adps evaluate` end to end on a reduced sweep (pipelines/sweep-ci.toml): two models,
//! two tasks, two step counts, a few images. The summary holds every setting with finite
//! metrics, the report names every setting, and bad sweeps fail before any compute.

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, UInt32Type};

use crate::common::*;

/// Splits the committed demo shards into a validation and a test set.
fn image_sets(dir: &std::path::Path) -> (String, String) {
    let (val, test) = (dir.join("val"), dir.join("test"));
    for (d, shard) in [
        (&val, "shard-00000.parquet"),
        (&test, "shard-00001.parquet"),
    ] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::copy(root().join("models/data/demo").join(shard), d.join(shard)).unwrap();
    }
    (
        val.to_string_lossy().to_string(),
        test.to_string_lossy().to_string(),
    )
}

#[test]
fn reduced_sweep_writes_a_summary_and_a_report_naming_every_setting() {
    let tmp = tempdir();
    let (val, test) = image_sets(tmp.path());
    let report = tmp.path().join("report");
    let sets = [
        format!("images.validation.url={val}"),
        format!("images.test.url={test}"),
        format!("report={}", report.display()),
        format!("runs={}", tmp.path().join("runs").display()),
    ];
    let mut args = vec!["evaluate", "pipelines/sweep-ci.toml"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let out = adps(&args);
    assert_ok(&out);

    let all = read_parquet(&report.join("summary.parquet"));
    // 2 models × 2 operators × 2 step counts, then one least-squares baseline per operator.
    assert_eq!(all.num_rows(), 8 + 2, "{all:?}");
    let solver = all
        .column_by_name("solver")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let baseline: Vec<usize> = (0..all.num_rows())
        .filter(|&r| solver.value(r) == "least-squares")
        .collect();
    assert_eq!(baseline, vec![8, 9]);
    let all_ops = all
        .column_by_name("operator")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let all_mse = all
        .column_by_name("mse_mean")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let all_nfe = all
        .column_by_name("nfe")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>()
        .clone();
    for &r in &baseline {
        assert!(
            all_mse.value(r).is_finite() && all_nfe.value(r) == 0,
            "row {r}"
        );
    }
    // Every setting is compared with its operator's floor on the same images: the mean
    // of the per-image differences is the difference of the means; the floor rows
    // themselves have none.
    let floor_diff = all
        .column_by_name("floor_mse_diff")
        .expect("floor_mse_diff column")
        .as_primitive::<Float64Type>()
        .clone();
    for r in 0..all.num_rows() {
        if baseline.contains(&r) {
            assert!(floor_diff.is_null(r), "row {r}");
            continue;
        }
        let floor = *baseline
            .iter()
            .find(|&&b| all_ops.value(b) == all_ops.value(r))
            .unwrap();
        let expected = all_mse.value(r) - all_mse.value(floor);
        assert!(
            (floor_diff.value(r) - expected).abs() < 1e-9,
            "row {r}: {} vs {expected}",
            floor_diff.value(r)
        );
    }
    assert_eq!(
        [all_ops.value(8), all_ops.value(9)],
        ["cs:128", "sr:4"],
        "one baseline per operator"
    );
    let summary = all.slice(0, 8);
    let models = summary
        .column_by_name("model")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let ops = summary
        .column_by_name("operator")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let steps = summary.column_by_name("steps").unwrap().clone();
    let mut settings = BTreeSet::new();
    for r in 0..summary.num_rows() {
        let n = match steps.data_type() {
            arrow::datatypes::DataType::UInt32 => {
                steps.as_primitive::<UInt32Type>().value(r) as u64
            }
            _ => steps.as_primitive::<arrow::datatypes::Int64Type>().value(r) as u64,
        };
        settings.insert((models.value(r).to_string(), ops.value(r).to_string(), n));
        for m in [
            "mse_mean",
            "psnr_mean",
            "ssim_mean",
            "residual_mean",
            "zeta",
        ] {
            let col = summary
                .column_by_name(m)
                .unwrap_or_else(|| panic!("no column {m}"));
            let v = col.as_primitive::<Float64Type>();
            assert!(
                !v.is_null(r) && v.value(r).is_finite(),
                "{m} of row {r} is not finite"
            );
        }
    }
    assert_eq!(settings.len(), 8);
    // Exactly one row per (model, operator) (one seed) is marked best over the step
    // counts, and it is the one with the lowest validation MSE at its chosen ζ (the
    // minimum of its ζ curve) — not the lowest test MSE. Both operators ran at both step
    // counts, so both are candidates. (Whether the two disagree depends on the run;
    // src/report/summary.rs and figures.rs test cases where they do.)
    let best = summary
        .column_by_name("best_over_steps")
        .expect("no best_over_steps column")
        .as_boolean()
        .clone();
    let mse = summary
        .column_by_name("mse_mean")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let curves = summary
        .column_by_name("zeta_val_mse")
        .unwrap()
        .as_list::<i32>()
        .clone();
    let val = |r: usize| {
        let c = curves.value(r);
        let c = c.as_primitive::<Float64Type>();
        (0..c.len())
            .map(|i| c.value(i))
            .filter(|v| v.is_finite())
            .fold(f64::INFINITY, f64::min)
    };
    let mut lowest: std::collections::BTreeMap<(String, String), (f64, usize)> =
        std::collections::BTreeMap::new();
    for r in 0..summary.num_rows() {
        let key = (models.value(r).to_string(), ops.value(r).to_string());
        let e = lowest.entry(key).or_insert((f64::INFINITY, r));
        if val(r) < e.0 {
            *e = (val(r), r);
        }
    }
    for (key, &(_, r)) in &lowest {
        assert!(
            best.value(r),
            "{key:?}: row {r} has the lowest validation MSE"
        );
    }
    assert_eq!(
        best.true_count(),
        lowest.len(),
        "one best row per model × operator"
    );
    // The Ambient model is compared with the clean one image by image at the same
    // operator and step count: on the same 4 images the mean difference is the
    // difference of the means, inside its bootstrap interval.
    let f64s = |name: &str| {
        summary
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_primitive::<Float64Type>()
            .clone()
    };
    let (diff, lo, hi) = (
        f64s("paired_mse_diff"),
        f64s("paired_mse_lo"),
        f64s("paired_mse_hi"),
    );
    let with = summary
        .column_by_name("paired_with")
        .unwrap()
        .as_string::<i32>()
        .clone();
    let step = |r: usize| match steps.data_type() {
        arrow::datatypes::DataType::UInt32 => steps.as_primitive::<UInt32Type>().value(r) as u64,
        _ => steps.as_primitive::<arrow::datatypes::Int64Type>().value(r) as u64,
    };
    let mut pairs = 0;
    for r in 0..summary.num_rows() {
        if models.value(r) == "fmnist-p0.0" {
            assert!(with.is_null(r) && diff.is_null(r), "row {r}");
            continue;
        }
        assert_eq!(with.value(r), "fmnist-p0.0");
        let clean = (0..summary.num_rows())
            .find(|&c| {
                models.value(c) == "fmnist-p0.0"
                    && ops.value(c) == ops.value(r)
                    && step(c) == step(r)
            })
            .unwrap();
        let expected = mse.value(r) - mse.value(clean);
        assert!((diff.value(r) - expected).abs() < 1e-9, "row {r}");
        assert!(lo.value(r) <= diff.value(r) && diff.value(r) <= hi.value(r));
        pairs += 1;
    }
    assert_eq!(pairs, 4);
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains(r#"id="paired""#), "no paired section");
    assert!(html.contains("least squares (A⁺y)"), "no baseline row");
    assert!(html.contains(r#"id="floor""#), "no floor comparison");
    // The spec's description, escaped, one paragraph per blank-line-separated block, and
    // the sampler stated in full.
    assert!(
        html.contains("<p>Checks that a sweep runs end to end: few images &amp; few steps, so the numbers say nothing.</p><p>Heun without clipping, as the older reports.</p>"),
        "description missing or not escaped"
    );
    assert!(html.contains("Sampler: heun, x0 clipped: no (the spec's update)"));
    for (model, op, _) in &settings {
        assert!(
            html.contains(model.as_str()) && html.contains(op.as_str()),
            "{model} {op} missing from the report"
        );
    }
    assert!(
        !html.contains("<script src") && !html.contains("<link "),
        "the report loads nothing"
    );
    assert!(html.matches("<table").count() == html.matches("</table>").count());
    let md = std::fs::read_to_string(report.join("summary.md")).unwrap();
    for (model, op, _) in &settings {
        assert!(
            md.contains(model.as_str()) && md.contains(&format!("`{op}`")),
            "{model} {op} missing from summary.md"
        );
    }

    // Rerunning reuses every committed run and rewrites the same summary — the restore
    // seconds included, which come from the committed parts, not the (skipping) rerun.
    let seconds = |s: &arrow::array::RecordBatch| {
        let c = s
            .column_by_name("seconds")
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone();
        (0..c.len()).map(|r| c.value(r)).collect::<Vec<f64>>()
    };
    let first = seconds(&summary);
    assert!(first.iter().all(|&t| t > 0.0 && t.is_finite()), "{first:?}");
    let again = adps(&args);
    assert_ok(&again);
    let rerun = read_parquet(&report.join("summary.parquet"));
    assert_eq!(rerun.num_rows(), 8 + 2);
    // The baselines are recomputed (cheap, and timed anew); the settings are not.
    assert_eq!(seconds(&rerun.slice(0, 8)), first);
}

#[test]
fn bad_sweeps_fail_before_any_compute_naming_the_entry() {
    let tmp = tempdir();
    let (val, test) = image_sets(tmp.path());
    let runs = tmp.path().join("runs");
    let common = [
        format!("images.validation.url={val}"),
        format!("images.test.url={test}"),
        format!("report={}", tmp.path().join("report").display()),
        format!("runs={}", runs.display()),
    ];
    let run = |extra: &[&str]| {
        let mut args = vec![
            "evaluate".to_string(),
            "pipelines/sweep-ci.toml".to_string(),
        ];
        for s in common
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
        {
            args.push("--set".into());
            args.push(s.into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        adps(&refs)
    };
    let out = run(&["sweep=[{name = \"bad\", models = [\"models/no-such-model\"], operators = [\"cs:8\"], steps = [2]}]"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad") && stderr.contains("no-such-model"),
        "{stderr}"
    );

    let out = run(&["sweep=[{name = \"odd\", models = [\"models/fmnist-p0.0\"], operators = [\"sr:3\"], steps = [2]}]"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("odd") && stderr.contains("sr:3"),
        "{stderr}"
    );

    let out = run(&["defaults.mask=none"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("defaults.mask")
            && stderr.contains("none")
            && stderr.contains("model")
            && stderr.contains("ones"),
        "{stderr}"
    );

    // Two model folders with one card name: their runs would share folders.
    let alias = tmp.path().join("alias");
    std::os::unix::fs::symlink(root().join("models/fmnist-p0.0"), &alias).unwrap();
    let out = run(&[&format!(
        "sweep=[{{name = \"twice\", models = [\"models/fmnist-p0.0\", \"{}\"], operators = [\"cs:8\"], steps = [2]}}]",
        alias.display()
    )]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("same card name `fmnist-p0.0`")
            && stderr.contains(&format!(
                "models {} and models/fmnist-p0.0",
                alias.display()
            )),
        "{stderr}"
    );

    // The validation folder spelled otherwise (a trailing slash, a symlink) is the same set.
    let link = tmp.path().join("val-link");
    std::os::unix::fs::symlink(&val, &link).unwrap();
    for other in [format!("{val}/"), link.display().to_string()] {
        let out = run(&[&format!("images.test.url={other}")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("are the same set"), "{other}: {stderr}");
    }

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&[&format!("images.test.url={}", empty.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("images.test") && stderr.contains("empty"),
        "{stderr}"
    );
    assert!(
        !runs.exists(),
        "nothing may run before the sweep is checked"
    );
}

#[test]
fn a_sweep_whose_runs_lose_records_exits_3_naming_them() {
    let tmp = tempdir();
    let (val, test) = image_sets(tmp.path());
    // A test shard whose images do not decode: every test run of the sweep fails its
    // records. (A shard that is not Parquet at all stops a run with a limit before it
    // starts: its row count is needed to place the window.)
    let garbage: Vec<(String, Vec<u8>)> = (0..2)
        .map(|k| (format!("bad-{k}"), b"not a png".to_vec()))
        .collect();
    std::fs::write(
        std::path::Path::new(&test).join("shard-00000.parquet"),
        adps::io::parquet_out::encode_image_shard(&garbage).unwrap(),
    )
    .unwrap();
    let report = tmp.path().join("report");
    let sets = [
        format!("images.validation.url={val}"),
        format!("images.test.url={test}"),
        format!("report={}", report.display()),
        format!("runs={}", tmp.path().join("runs").display()),
        "images.test.limit=2".to_string(),
        "images.validation.limit=2".to_string(),
        "defaults.zeta_grid=[1.0]".to_string(),
        "defaults.widen=0".to_string(),
    ];
    let mut args = vec!["evaluate", "pipelines/sweep-ci.toml"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let out = adps(&args);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("left records or shards failed") && stdout.contains("test-zeta-1"),
        "{stdout}"
    );
}

/// Runs `adps evaluate` on the CI sweep reduced to one setting (clean model, `cs:128`,
/// N = 2, ζ = 1), with `extra` overrides.
fn one_setting_sweep(
    tmp: &std::path::Path,
    val: &str,
    test: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "evaluate".to_string(),
        "pipelines/sweep-ci.toml".to_string(),
    ];
    let sets = [
        format!("images.validation.url={val}"),
        format!("images.test.url={test}"),
        format!("report={}", tmp.join("report").display()),
        format!("runs={}", tmp.join("runs").display()),
        "images.validation.limit=2".to_string(),
        "defaults.zeta_grid=[1.0]".to_string(),
        "defaults.widen=0".to_string(),
        "defaults.examples=1".to_string(),
        "sweep=[{name = \"one\", models = [\"models/fmnist-p0.0\"], operators = [\"cs:128\"], steps = [2]}]"
            .to_string(),
    ];
    for s in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
        args.push("--set".into());
        args.push(s.into());
    }
    adps_owned(&args)
}

#[test]
fn a_copy_of_the_validation_images_as_test_set_is_refused_by_their_ids() {
    let tmp = tempdir();
    let (val, _) = image_sets(tmp.path());
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&val).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
    }
    let out = one_setting_sweep(tmp.path(), &val, &s(&copy), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("images.validation and images.test share 2 image id(s)"),
        "{stderr}"
    );
    assert!(!tmp.path().join("report").join("summary.parquet").exists());
}

#[test]
fn a_sweep_reads_only_the_rows_its_own_settings_committed() {
    let tmp = tempdir();
    // Validation: the demo's images (ids fmnist-test-…), disjoint from the test set's.
    let (val, _) = image_sets(&tmp.path().join("demo"));
    let test = tmp.path().join("test");
    // Two test shards of two images each.
    write_image_shards(&test, 2, 2, [1, 32, 32]);
    let test = s(&test);
    let mse_count = || {
        let summary = read_parquet(&tmp.path().join("report/summary.parquet"));
        let c = summary
            .column_by_name("mse_count")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone();
        c.value(0)
    };
    assert_ok(&one_setting_sweep(
        tmp.path(),
        &val,
        &test,
        &["images.test.limit=4"],
    ));
    assert_eq!(mse_count(), 4);
    // The same runs folder with a limit that lists only the first shard: the second
    // shard's parts, committed by the first sweep with other settings, stay on disk but
    // are not this sweep's rows.
    assert_ok(&one_setting_sweep(
        tmp.path(),
        &val,
        &test,
        &["images.test.limit=2"],
    ));
    assert_eq!(mse_count(), 2);
    let md = std::fs::read_to_string(tmp.path().join("report/summary.md")).unwrap();
    assert!(md.contains("`cs:128`"), "{md}");
}
