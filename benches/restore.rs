//! Restore-engine benchmark (not a test): per-step time, the share of wall time spent
//! inside ONNX Runtime, and NFE/s at batch 1, 8 and 32, for the dense (cs) and the VJP
//! (sr) gradient paths, on a committed model.
//!
//!   cargo bench --bench restore                      # models/fmnist-p0.4, 32 images
//!   ADPS_BENCH_MODEL=models/fmnist-p0.0 ADPS_BENCH_STEPS=10 cargo bench --bench restore
//!
//! Prints a Markdown table for the README's performance section.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use adps::model::{Device, OnnxDenoiser, SessionConfig};
use adps::restore::guidance::GradientPath;
use adps::restore::operators::{simulate_measurement, LinearOperator, OperatorSpec};
use adps::restore::rng::ImageRngs;
use adps::restore::sampler::{ambient_dps, sampling_mask, ImageTask, SamplerConfig};

fn main() -> anyhow::Result<()> {
    let model_dir =
        std::env::var("ADPS_BENCH_MODEL").unwrap_or_else(|_| "models/fmnist-p0.4".into());
    let steps: usize = std::env::var("ADPS_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let images = 32;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut model = OnnxDenoiser::load(&model_dir, &SessionConfig::new(Device::Auto, 0))?;
    let card = model.card().clone();
    let shape = card.shape;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "model {} ({}), device {}, {threads} threads, {cpu}",
        card.name,
        model_dir,
        model.device()
    );
    println!("Euler, {steps} steps, {images} images per setting\n");
    println!(
        "| path | operator | batch | ms / step (batch) | ms / step / image | inside ORT | NFE/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (op_str, path) in [
        ("cs:256", GradientPath::Dense),
        ("cs:256", GradientPath::Vjp),
        ("sr:4", GradientPath::Vjp),
    ] {
        let op_spec = OperatorSpec::from_str(op_str)?;
        let family = op_spec.build(shape, 0)?;
        for batch in [1usize, 8, 32] {
            let cfg = SamplerConfig {
                steps,
                zeta: 1.0,
                solver: adps::restore::sampler::Solver::Euler,
                ..Default::default()
            }
            .clamped_to_model(card.sigma_min, card.sigma_max);
            model.reset_counters();
            let started = Instant::now();
            let mut done = 0;
            while done < images {
                let n = batch.min(images - done);
                let (mut ops, mut ys, mut masks, mut noises) = (vec![], vec![], vec![], vec![]);
                for k in 0..n {
                    let id = format!("bench-{}", done + k);
                    let mut rngs = ImageRngs::new(0, &id);
                    let op: Arc<dyn LinearOperator> = family.for_image(&mut rngs.operator);
                    let x0: Vec<f32> = (0..shape.iter().product::<usize>())
                        .map(|i| ((i % 7) as f32 / 3.5) - 1.0)
                        .collect();
                    let y = simulate_measurement(op.as_ref(), &x0, 0.0, &mut rngs.measurement);
                    let mask =
                        sampling_mask(shape, card.keep_probability(), &mut rngs.sampling_mask);
                    ops.push(op);
                    ys.push(y);
                    masks.push(mask);
                    noises.push(rngs.noise);
                }
                let mut tasks: Vec<ImageTask> = ops
                    .iter()
                    .zip(&ys)
                    .zip(&masks)
                    .zip(noises.iter_mut())
                    .map(|(((op, y), mask), noise)| ImageTask {
                        y,
                        operator: op.as_ref(),
                        mask: mask.view(),
                        noise,
                    })
                    .collect();
                ambient_dps(&mut model, &mut tasks, &cfg, path, |_| {})?;
                done += n;
            }
            let wall = started.elapsed().as_secs_f64();
            let ort = model.counters().seconds();
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
                (images * cfg.nfe()) as f64 / wall
            );
        }
    }
    Ok(())
}
