//! Outputs open as they are in pyarrow (the test tools' Python, see scripts/tools.sh).

use crate::common::*;

pub(crate) fn python() -> String {
    std::env::var("ADPS_TOOLS_PYTHON").unwrap_or_else(|_| {
        let venv = root().join(".tools-venv/bin/python");
        assert!(
            venv.exists(),
            "no Python with pyarrow: run scripts/tools.sh (scripts/test.sh does) or set ADPS_TOOLS_PYTHON"
        );
        venv.to_string_lossy().to_string()
    })
}

/// Input of 7 good images and 1 undecodable one (shards of 3, 3 and 2) under `tmp`.
fn input_with_one_bad_record(tmp: &std::path::Path) -> String {
    let input = tmp.join("in");
    write_image_shards(&input, 2, 3, [1, 8, 8]);
    // The bad record puts an errors table in the metadata folder, which dataset readers
    // must skip.
    let good = adps::io::image::encode_png([1, 8, 8], &synthetic_image(9, [1, 8, 8])).unwrap();
    let rows = vec![
        ("z-ok".to_string(), good),
        ("z-bad".to_string(), b"no png".to_vec()),
    ];
    std::fs::write(
        input.join("z.parquet"),
        adps::io::parquet_out::encode_image_shard(&rows).unwrap(),
    )
    .unwrap();
    input.to_string_lossy().to_string()
}

#[test]
fn the_output_folder_opens_as_one_dataset_in_pyarrow_with_image_features() {
    let tmp = tempdir();
    let i = input_with_one_bad_record(tmp.path());
    let o = tmp.path().join("out").to_string_lossy().to_string();
    let model = gaussian_model().to_string_lossy().to_string();
    let run = adps(&[
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
        "4",
        "--zeta",
        "2",
        "--device",
        "cpu",
        "--write-f32",
    ]);
    assert_eq!(run.status.code(), Some(3), "{run:?}");
    let script = r#"
import json, sys, glob
import pyarrow.parquet as pq, pyarrow.dataset as ds
out = sys.argv[1]
# The folder itself, as the README reads it: the __adps/ metadata is skipped.
t = ds.dataset(out, format="parquet").to_table().sort_by("id")
assert t.num_rows == 7, t.num_rows
assert pq.read_table(out).num_rows == 7  # what pandas.read_parquet(out) uses
errors = ds.dataset(out + "/__adps/errors", format="parquet").to_table()
assert errors.column("id").to_pylist() == ["z-bad"], errors
assert str(t.schema.field("reconstruction").type) == "struct<bytes: binary, path: string>", t.schema
assert t.schema.field("reconstruction_f32").type.value_type == "float"
meta = json.loads(pq.read_schema(glob.glob(out + "/part-*.parquet")[0]).metadata[b"huggingface"])
assert meta["info"]["features"]["reconstruction"] == {"_type": "Image"}, meta
ids = t.column("id").to_pylist()
assert ids == sorted(ids) and len(set(ids)) == 7, ids
png = t.column("reconstruction").combine_chunks().field("bytes")[0].as_py()
assert png[:8] == b"\x89PNG\r\n\x1a\n"
assert all(v == "sr:2" for v in t.column("operator").to_pylist())
assert all(v is None for v in t.column("lpips").to_pylist())
print("ok", t.num_rows)
"#;
    let out = std::process::Command::new(python())
        .args(["-c", script, &o])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_readme_readers_open_the_output_folder_with_exactly_the_restored_rows() {
    let tmp = tempdir();
    let i = input_with_one_bad_record(tmp.path());
    let o = tmp.path().join("out").to_string_lossy().to_string();
    let run = adps_owned(&gaussian_restore_args(&i, &o, 3, &["--part-rows", "2"]));
    assert_eq!(run.status.code(), Some(3), "{run:?}");
    // Exactly as the README and the demo's closing hint read it.
    let script = r#"
import sys
out = sys.argv[1]
want = sorted(["img-00000", "img-00001", "img-00002", "img-00003", "img-00004", "img-00005", "z-ok"])
import pandas as pd
df = pd.read_parquet(out)
assert sorted(df["id"]) == want, list(df["id"])
assert df["reconstruction"].iloc[0]["bytes"][1:4] == b"PNG"
import pyarrow.dataset as ds
assert sorted(ds.dataset(out, format="parquet").to_table().column("id").to_pylist()) == want
import duckdb
ids = [r[0] for r in duckdb.sql(f"select id from read_parquet('{out}/*.parquet') order by id").fetchall()]
assert ids == want, ids
import datasets
for d in (datasets.load_dataset("parquet", data_dir=out)["train"], datasets.load_dataset(out)["train"]):
    assert sorted(d["id"]) == want, d
    assert d.features["reconstruction"] == datasets.Image(), d.features
    assert d[0]["reconstruction"].size == (8, 8)
errors = pd.read_parquet(out + "/__adps/errors")
assert list(errors["id"]) == ["z-bad"], errors
print("ok")
"#;
    let hf_home = tmp.path().join("hf");
    let out = std::process::Command::new(python())
        .args(["-c", script, &o])
        .env("HF_HOME", &hf_home)
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a reader failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubernetes_manifest_matches_the_schema() {
    let validator = std::path::Path::new(&python())
        .parent()
        .unwrap()
        .join("kubernetes-validate");
    let out = std::process::Command::new(validator)
        .args(["--strict", "-k", "1.32.0"])
        .arg(root().join("deploy/k8s/indexed-job.yaml"))
        .output()
        .expect("kubernetes-validate (scripts/tools.sh installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("passed").count(), 2, "{text}");
}
