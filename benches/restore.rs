//! Restore-engine benchmark (not a test): per-step time, the share of wall time spent
//! inside ONNX Runtime, and NFE/s at batch 1, 8 and 32, for the dense and the VJP
//! gradient paths (cs, sr), on a committed model — as one restore worker runs it: one
//! intra-op thread (adps runs one worker per core) and model calls of
//! `WorkerLayout::call_rows` images for each batch size (on a CPU exactly min(batch, 4)).
//!
//!   cargo bench --bench restore                      # models/fmnist-p0.4, 32 images
//!   ADPS_BENCH_MODEL=models/fmnist-p0.0 ADPS_BENCH_STEPS=10 cargo bench --bench restore
//!   ADPS_BENCH_CALL_ROWS=2 cargo bench --bench restore # another call size than adps's
//!
//! Prints a Markdown table for the README's performance section.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use adps::model::{Device, OnnxDenoiser, SessionConfig};
use adps::pipeline::plan::WorkerLayout;
use adps::restore::denoiser::{CallRows, Chunked};
use adps::restore::guidance::{GradientPath, DENSE_MAX_ENTRIES};
use adps::restore::operators::OperatorSpec;
use adps::restore::sampler::{Clip, SamplerConfig, Solver};
use adps::stages::restore::{AdpsRestorer, RestoreSettings, Restorer};
use adps::stages::{Record, Shard};

fn main() -> anyhow::Result<()> {
    let model_dir =
        std::env::var("ADPS_BENCH_MODEL").unwrap_or_else(|_| "models/fmnist-p0.4".into());
    let steps: usize = std::env::var("ADPS_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let images = 32;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let shard = Arc::new(Shard::new(
        0,
        "bench".into(),
        "bench".into(),
        "bench".into(),
    ));
    let mut header = false;
    for (op_str, path) in [
        ("cs:256", GradientPath::Dense),
        ("cs:256", GradientPath::Vjp),
        ("sr:4", GradientPath::Dense),
        ("sr:4", GradientPath::Vjp),
    ] {
        let model = OnnxDenoiser::load(&model_dir, &SessionConfig::new(Device::Auto, 1))?;
        let card = model.card().clone();
        // ADPS_BENCH_CALL_ROWS=n: calls of exactly n images at every batch size.
        let call_rows_override: Option<usize> = std::env::var("ADPS_BENCH_CALL_ROWS")
            .ok()
            .and_then(|s| s.parse().ok());
        let model_device = model.device();
        let call_rows = |batch: usize| {
            call_rows_override
                .map(CallRows::Exactly)
                .unwrap_or_else(|| WorkerLayout::call_rows(model_device, batch))
        };
        if !header {
            println!(
                "model {} ({model_dir}), device {}, one worker of 1 thread ({cores} cores), {cpu}",
                card.name,
                model.device()
            );
            println!(
                "Euler, {steps} steps, {images} images per row, model calls of {} / {} images at batch 1 / 8\n",
                call_rows(1),
                call_rows(8)
            );
            println!("| path | operator | batch | ms / step (batch) | ms / step / image | inside ORT | NFE/s |");
            println!("|---|---|---|---|---|---|---|");
            header = true;
        }
        let family = OperatorSpec::from_str(op_str)?.build(card.shape, 0)?;
        // As a run builds it: a structured operator gets its matrix for the dense graph.
        let family = match path {
            GradientPath::Dense => family.densified(DENSE_MAX_ENTRIES),
            GradientPath::Vjp => family,
        };
        let settings = RestoreSettings {
            shape: card.shape,
            family: Arc::new(family),
            sampler: SamplerConfig {
                steps,
                zeta: 1.0,
                solver: Solver::Euler,
                // Timed on the fused dense path, as the README's numbers were.
                clip: Clip::None,
                ..SamplerConfig::default()
            }
            .clamped_to_model(card.sigma_min, card.sigma_max),
            path,
            keep_prob: card.keep_probability(),
            seed: 0,
            sigma_y: 0.0,
            y_range: adps::pipeline::config::YRange::Model,
        };
        let mut restorer = AdpsRestorer::new(Chunked::new(model, call_rows(1)), settings);
        let n: usize = card.shape.iter().product();
        let records: Vec<(Arc<Shard>, Record)> = (0..images)
            .map(|i| {
                let truth = (0..n)
                    .map(|k| ((k * 7 + i) % 13) as f32 / 6.5 - 1.0)
                    .collect();
                let record = Record {
                    id: format!("bench-{i}"),
                    row: i,
                    truth: Some(truth),
                    y: None,
                    mask: None,
                    ..Default::default()
                };
                (shard.clone(), record)
            })
            .collect();
        for batch in [1usize, 8, 32] {
            restorer.model_mut().set_rows(call_rows(batch));
            restorer.model_mut().inner_mut().reset_counters();
            let started = Instant::now();
            for chunk in records.chunks(batch) {
                restorer.restore(chunk)?;
            }
            let wall = started.elapsed().as_secs_f64();
            let ort = restorer.model_mut().inner_mut().counters().seconds();
            let calls = images.div_ceil(batch) * steps;
            println!(
                "| {} | {op_str} | {batch} | {:.2} | {:.2} | {:.0}% | {:.1} |",
                if path == GradientPath::Dense {
                    "dense"
                } else {
                    "vjp"
                },
                wall * 1e3 / calls as f64,
                wall * 1e3 / (images * steps) as f64,
                100.0 * ort / wall,
                (images * restorer.nfe()) as f64 / wall
            );
        }
    }
    println!(
        "\nfused kernel nodes created (adps.GroupNormSiLU*): {}",
        adps::model::fused::kernels_created()
    );
    Ok(())
}
