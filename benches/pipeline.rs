//! Pipeline benchmark (not a test), for the README's performance section:
//! 1. throughput of the whole pipeline (list → … → commit, as a subprocess) over the
//!    restore stage alone on the same images: ≥ 0.9 means fetch, decode, encode and
//!    upload overlap the compute;
//! 2. peak RSS of `adps run` for 1,000 and for 10,000 images: memory must not grow with
//!    the dataset;
//! 3. peak RSS for ONE shard of 1,000 and of 100,000 images (the tiny Gaussian test model,
//!    8×8, so that 100k images take a minute): memory must not grow with the shard
//!    either (inputs stream by row group, outputs go out in parts).
//!
//!   cargo bench --bench pipeline
//!   ADPS_BENCH_MODEL=models/fmnist-p0.0 ADPS_BENCH_STEPS=4 cargo bench --bench pipeline

use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adps::io::parquet_in::{read_shard, Payload};
use adps::model::{Device, OnnxDenoiser, SessionConfig};
use adps::restore::guidance::GradientPath;
use adps::restore::operators::OperatorSpec;
use adps::restore::sampler::{Clip, SamplerConfig, Solver};
use adps::stages::restore::{AdpsRestorer, RestoreSettings, Restorer};
use adps::stages::{Record, Shard};

const OPERATOR: &str = "cs:256";
const PER_SHARD: usize = 250;

/// Demo images, repeated under new ids into `n` images in shards of 250.
fn make_input(dir: &Path, n: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = std::fs::read("models/data/demo/shard-00000.parquet")?;
    let pngs: Vec<Vec<u8>> = read_shard(bytes.into(), "demo")?
        .into_iter()
        .filter_map(|r| match r.payload {
            Ok(Payload::Image(p)) => Some(p),
            _ => None,
        })
        .collect();
    for s in 0..n.div_ceil(PER_SHARD) {
        let rows: Vec<(String, Vec<u8>)> = (s * PER_SHARD..((s + 1) * PER_SHARD).min(n))
            .map(|i| (format!("bench-{i:06}"), pngs[i % pngs.len()].clone()))
            .collect();
        let shard = adps::io::parquet_out::encode_image_shard(&rows)?;
        std::fs::write(dir.join(format!("shard-{s:05}.parquet")), shard)?;
    }
    Ok(())
}

/// Runs `adps run` on the input; returns (wall seconds, peak RSS in MiB).
fn run_pipeline(
    adps: &Path,
    model: &str,
    input: &Path,
    output: &Path,
    steps: usize,
    batch: usize,
) -> anyhow::Result<(f64, f64)> {
    let _ = std::fs::remove_dir_all(output);
    let started = Instant::now();
    let child = Command::new(adps)
        .args([
            "restore",
            "--model",
            model,
            "--operator",
            OPERATOR,
            "--zeta",
            "3",
            "--sampler",
            "euler",
            "--device",
            "cpu",
        ])
        .arg("--steps")
        .arg(steps.to_string())
        .arg("--batch-size")
        .arg(batch.to_string())
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(["--progress", "never"])
        .env("ADPS_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let peak = watch_peak_rss(child)?;
    Ok((started.elapsed().as_secs_f64(), peak))
}

/// One shard of `n` synthetic 8×8 images.
fn make_single_shard(dir: &Path, n: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let rows: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let px: Vec<f32> = (0..64)
                .map(|k| (((k * 7 + i * 13) % 64) as f32 / 32.0 - 1.0) * 0.8)
                .collect();
            Ok((
                format!("one-{i:06}"),
                adps::io::image::encode_png([1, 8, 8], &px)?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let shard = adps::io::parquet_out::encode_image_shard(&rows)?;
    std::fs::write(dir.join("single.parquet"), shard)?;
    Ok(())
}

/// Peak RSS (MiB) of restoring one shard of `n` images with the Gaussian test model.
fn single_shard_rss(adps: &Path, tmp: &Path, n: usize) -> anyhow::Result<(f64, f64)> {
    let input = tmp.join(format!("single-{n}"));
    make_single_shard(&input, n)?;
    let output = tmp.join(format!("single-out-{n}"));
    let started = Instant::now();
    let child = Command::new(adps)
        .args([
            "restore",
            "--model",
            "tests/fixtures/gaussian-model",
            "--operator",
            "cs:24",
            "--zeta",
            "0.5",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--batch-size",
            "64",
            "--progress",
            "never",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .env("ADPS_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let peak = watch_peak_rss(child)?;
    Ok((started.elapsed().as_secs_f64(), peak))
}

/// Waits for a child, sampling its peak RSS (VmHWM); MiB.
fn watch_peak_rss(mut child: std::process::Child) -> anyhow::Result<f64> {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                let kib: u64 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "adps failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(peak_kib as f64 / 1024.0)
}

/// The restore stage alone: the same images, already decoded, through one restorer.
fn restore_alone(
    model_dir: &str,
    input: &Path,
    steps: usize,
    batch: usize,
) -> anyhow::Result<(usize, f64)> {
    let model = OnnxDenoiser::load(model_dir, &SessionConfig::new(Device::Cpu, 0))?;
    let card = model.card().clone();
    let family = OperatorSpec::from_str(OPERATOR)?.build(card.shape, 0)?;
    let settings = RestoreSettings {
        shape: card.shape,
        path: GradientPath::auto(&family),
        family: Arc::new(family),
        sampler: SamplerConfig {
            steps,
            zeta: 3.0,
            solver: Solver::Euler,
            // Timed on the fused dense path, as the README's numbers were.
            clip: Clip::None,
            ..SamplerConfig::default()
        }
        .clamped_to_model(card.sigma_min, card.sigma_max),
        keep_prob: card.keep_probability(),
        seed: 0,
        sigma_y: 0.0,
        y_range: adps::pipeline::config::YRange::Model,
    };
    let mut restorer = AdpsRestorer::new(model, settings);
    let shard = Arc::new(Shard::new(
        0,
        "bench".into(),
        "bench".into(),
        "bench".into(),
    ));
    let mut records = Vec::new();
    for entry in std::fs::read_dir(input)? {
        let path = entry?.path();
        for r in read_shard(std::fs::read(&path)?.into(), "bench")? {
            if let Ok(Payload::Image(png)) = r.payload {
                let x = adps::io::image::decode(&png, 1)?.data;
                records.push((
                    shard.clone(),
                    Record {
                        id: r.id,
                        row: r.row,
                        truth: Some(x),
                        y: None,
                        mask: None,
                        ..Default::default()
                    },
                ));
            }
        }
    }
    let started = Instant::now();
    for chunk in records.chunks(batch) {
        restorer.restore(chunk)?;
    }
    Ok((records.len(), started.elapsed().as_secs_f64()))
}

fn main() -> anyhow::Result<()> {
    let model = std::env::var("ADPS_BENCH_MODEL").unwrap_or_else(|_| "models/fmnist-p0.4".into());
    let steps: usize = std::env::var("ADPS_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let batch = 16;
    let adps = Path::new(env!("CARGO_BIN_EXE_adps"));
    let tmp = std::env::temp_dir().join(format!("adps-bench-{}", std::process::id()));
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("model {model}, {OPERATOR}, Euler {steps} steps, batch {batch}, {cpus} CPUs\n");
    if std::env::var("ADPS_BENCH_SINGLE_SHARD_ONLY").is_ok() {
        println!("| measurement | value |");
        println!("|---|---|");
        single_shard_lines(adps, &tmp)?;
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(());
    }

    let small = tmp.join("in-1000");
    make_input(&small, 1000)?;
    let (n, alone) = restore_alone(&model, &small, steps, batch)?;
    let (wall_1k, rss_1k) =
        run_pipeline(adps, &model, &small, &tmp.join("out-1000"), steps, batch)?;
    println!("| measurement | value |");
    println!("|---|---|");
    println!(
        "| restore stage alone, {n} images | {:.1} images/s |",
        n as f64 / alone
    );
    println!(
        "| whole pipeline, 1,000 images | {:.1} images/s |",
        1000.0 / wall_1k
    );
    println!(
        "| pipeline / restore alone | {:.2} |",
        (1000.0 / wall_1k) / (n as f64 / alone)
    );
    let large = tmp.join("in-10000");
    make_input(&large, 10_000)?;
    let (wall_10k, rss_10k) =
        run_pipeline(adps, &model, &large, &tmp.join("out-10000"), steps, batch)?;
    println!("| peak RSS, 1,000 images | {rss_1k:.0} MiB |");
    println!(
        "| peak RSS, 10,000 images | {rss_10k:.0} MiB ({:+.0}%) |",
        100.0 * (rss_10k / rss_1k - 1.0)
    );
    println!(
        "| whole pipeline, 10,000 images | {:.1} images/s |",
        10_000.0 / wall_10k
    );
    single_shard_lines(adps, &tmp)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Part 3: one shard of 1,000 vs 100,000 images.
fn single_shard_lines(adps: &Path, tmp: &Path) -> anyhow::Result<()> {
    let (t1, one_1k) = single_shard_rss(adps, tmp, 1000)?;
    let (t2, one_100k) = single_shard_rss(adps, tmp, 100_000)?;
    println!("| peak RSS, one shard of 1,000 images (8×8) | {one_1k:.0} MiB ({t1:.0} s) |");
    println!(
        "| peak RSS, one shard of 100,000 images (8×8) | {one_100k:.0} MiB ({:+.0}%, {t2:.0} s) |",
        100.0 * (one_100k / one_1k - 1.0)
    );
    Ok(())
}
