//! Against a real S3 server (SeaweedFS, started by scripts/test.sh): inputs read from a
//! bucket, outputs written there, reruns skip committed shards, and credentials never
//! appear in logs.

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::common::*;

fn bucket() -> String {
    std::env::var("ADPS_TEST_S3_BUCKET").unwrap_or_else(|_| {
        panic!(
            "no S3 test server: run the suite with scripts/test.sh, which starts SeaweedFS \
             and sets AWS_ENDPOINT_URL and ADPS_TEST_S3_BUCKET"
        )
    })
}

#[test]
fn restores_from_and_to_a_real_s3_bucket() {
    let bucket = bucket();
    let run = format!("run-{}", std::process::id());
    let input_url = format!("s3://{bucket}/{run}/in");
    let output_url = format!("s3://{bucket}/{run}/out");
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Upload three shards.
    let local = tempdir();
    write_image_shards(local.path(), 3, 4, [1, 8, 8]);
    let input = adps::io::store::open(&input_url).unwrap();
    for entry in std::fs::read_dir(local.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        rt.block_on(
            input
                .store
                .put(&input.child(&name), PutPayload::from(bytes)),
        )
        .unwrap();
    }

    let model = gaussian_model().to_string_lossy().to_string();
    let args = [
        "--log-format",
        "json",
        "restore",
        "--model",
        &model,
        "--input",
        &input_url,
        "--output",
        &output_url,
        "--operator",
        "cs:24",
        "--steps",
        "5",
        "--zeta",
        "0.5",
        "--device",
        "cpu",
    ];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(args)
        .env("ADPS_LOG", "debug")
        .output()
        .unwrap();
    assert_ok(&out);
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(&secret),
            "the secret key appears in the output"
        );
    }

    let output = adps::io::store::open(&output_url).unwrap();
    let mut names: Vec<String> = rt
        .block_on(
            output
                .store
                .list(Some(&output.prefix))
                .try_collect::<Vec<_>>(),
        )
        .unwrap()
        .into_iter()
        .map(|m| output.relative(&m.location))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "__adps/manifests/shard-00000.json",
            "__adps/manifests/shard-00001.json",
            "__adps/manifests/shard-00002.json",
            "part-shard-00000.parquet",
            "part-shard-00001.parquet",
            "part-shard-00002.parquet",
        ]
    );
    let part = rt
        .block_on(async {
            output
                .store
                .get(&output.child("part-shard-00001.parquet"))
                .await?
                .bytes()
                .await
        })
        .unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(part).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 4);

    let again = std::process::Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(args)
        .output()
        .unwrap();
    assert_ok(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("skipped 3"));

    // The page about the run, from the bucket (its requests must be driven: a
    // current-thread runtime behind Handle::block_on waited for ever here).
    let page = local.path().join("page.html");
    let report = std::process::Command::new(env!("CARGO_BIN_EXE_adps"))
        .args(["report", &output_url, "--html", &s(&page)])
        .output()
        .unwrap();
    assert_ok(&report);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("shard-00001.parquet"),
        "the page names the shards"
    );
}

#[test]
fn a_sweep_reads_its_images_from_and_writes_its_runs_to_a_bucket() {
    let bucket = bucket();
    let prefix = format!("s3://{bucket}/sweep-{}", std::process::id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (set, shard) in [
        ("val", "shard-00000.parquet"),
        ("test", "shard-00001.parquet"),
    ] {
        let loc = adps::io::store::open(&format!("{prefix}/{set}")).unwrap();
        let bytes = std::fs::read(root().join("models/data/demo").join(shard)).unwrap();
        rt.block_on(loc.store.put(&loc.child(shard), PutPayload::from(bytes)))
            .unwrap();
    }
    let tmp = tempdir();
    let report = tmp.path().join("report");
    let sets = [
        format!("images.validation.url={prefix}/val"),
        format!("images.test.url={prefix}/test"),
        format!("report={}", report.display()),
        format!("runs={prefix}/runs"),
    ];
    let mut args = vec!["evaluate", "pipelines/sweep-ci.toml"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let out = adps(&args);
    assert_ok(&out);
    // 2 models × 2 operators × 2 step counts, and the least-squares row per operator.
    assert_eq!(read_parquet(&report.join("summary.parquet")).num_rows(), 10);
    assert!(report.join("report.html").is_file());
}

#[test]
fn wrong_credentials_fail_naming_the_url_not_the_secret() {
    let bucket = bucket();
    let model = gaussian_model().to_string_lossy().to_string();
    let url = format!("s3://{bucket}/nothing-here");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_adps"))
        .args([
            "restore",
            "--model",
            &model,
            "--input",
            &url,
            "--output",
            &url,
            "--operator",
            "cs:8",
            "--device",
            "cpu",
        ])
        .env("AWS_SECRET_ACCESS_KEY", "definitely-wrong-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&url), "{stderr}");
    assert!(!stderr.contains("definitely-wrong-secret"), "{stderr}");
}

#[test]
fn nested_and_non_ascii_shard_names_keep_their_identity_on_s3() {
    let bucket = bucket();
    let run = format!("names-{}", std::process::id());
    let input_url = format!("s3://{bucket}/{run}/in");
    let output_url = format!("s3://{bucket}/{run}/out");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let input = adps::io::store::open(&input_url).unwrap();
    let shape = [1, 8, 8];
    let mut want = Vec::new();
    for (k, name) in ["train/0.parquet", "test/0.parquet", "bücher 1.parquet"]
        .iter()
        .enumerate()
    {
        let rows: Vec<(String, Vec<u8>)> = (0..2)
            .map(|r| {
                let png =
                    adps::io::image::encode_png(shape, &synthetic_image(k * 2 + r, shape)).unwrap();
                (format!("{name}#{r}"), png)
            })
            .collect();
        want.extend(rows.iter().map(|(id, _)| id.clone()));
        let bytes = adps::io::parquet_out::encode_image_shard(&rows).unwrap();
        rt.block_on(input.store.put(&input.child(name), PutPayload::from(bytes)))
            .unwrap();
    }
    let args = gaussian_restore_args(&input_url, &output_url, 3, &[]);
    let out = adps_owned(&args);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("records ok 6, failed 0; shards committed 3"),
        "{out:?}"
    );
    let output = adps::io::store::open(&output_url).unwrap();
    let manifests = adps::stages::commit::read_manifests(rt.handle(), &output).unwrap();
    let mut shards: Vec<&str> = manifests.iter().map(|(_, m)| m.shard.as_str()).collect();
    shards.sort();
    assert_eq!(
        shards,
        ["bücher 1.parquet", "test/0.parquet", "train/0.parquet"]
    );
    // Every file a manifest names is stored under exactly that name.
    let stored: std::collections::BTreeSet<String> = output
        .list_names(rt.handle(), "")
        .unwrap()
        .into_iter()
        .collect();
    for (_, m) in &manifests {
        for f in &m.files {
            assert!(
                stored.contains(&f.name),
                "{} not stored: {stored:?}",
                f.name
            );
        }
    }
    assert!(stored.contains("part-train=2F0.parquet"), "{stored:?}");
    assert!(
        stored.contains("part-b=C3=BCcher=201.parquet"),
        "{stored:?}"
    );
    let mut got = Vec::new();
    for name in stored.iter().filter(|n| n.starts_with("part-")) {
        let bytes = rt
            .block_on(async { output.store.get(&output.child(name)).await?.bytes().await })
            .unwrap();
        got.extend(adps::io::parquet_in::read_string_column(bytes, "id").unwrap());
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "every id once");
    let again = adps_owned(&args);
    assert_ok(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("skipped 3"));
}
