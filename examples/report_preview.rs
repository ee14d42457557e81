//! Renders the evaluation report from synthetic but realistic numbers, for looking at
//! the layout without running a sweep:
//!
//! ```text
//! cargo run --example report_preview [OUT.html]   # default /tmp/report-preview.html
//! cargo run --example report_preview OUT.html reports/fmnist/summary.parquet
//! ```
//!
//! Also writes the matching `summary.parquet` next to it (and checks it round-trips).
//! Given a sweep's `summary.parquet`, renders its numbers instead (without the example
//! grids, which need the sweep's outputs): a quick look at a change to the report's
//! layout on real results.

use std::collections::BTreeMap;

use adps::report::{html, summary, ExampleGrid, SettingSummary, Stat};

const MODELS: [f64; 5] = [0.0, 0.2, 0.4, 0.6, 0.8];
const ZETA_GRID: [f64; 7] = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

/// Deterministic noise in [-1, 1].
fn noise(a: u64, b: u64) -> f64 {
    let mut x = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

fn stat(mean: f64, rel_std: f64) -> Stat {
    Stat {
        mean,
        std: mean.abs() * rel_std,
        count: 64,
    }
}

/// Test MSE of a model (train p) on an operator after `nfe` evaluations: clean models
/// win with many measurements / small factors / many NFE, Ambient ones otherwise.
fn mse(kind: &str, level: f64, p: f64, nfe: u32, salt: u64) -> f64 {
    let (base, hardness) = match kind {
        "cs" => (0.085 * (level / 16.0).powf(-0.5), (64.0 / level).log2()),
        _ => (0.006 * level.powf(1.3), 1.3 * (level / 3.0).log2()),
    };
    let quality = 1.0 - 0.22 * p * hardness.clamp(-3.0, 3.0) / 3.0 * 1.6;
    let speed = 1.0 + (6.0 * (1.0 - p) + 1.0) / (nfe as f64).powf(0.85);
    base * quality * speed * (1.0 + 0.02 * noise(salt, nfe as u64))
}

fn setting(model: &str, p: f64, kind: &str, level: f64, steps: u32, salt: u64) -> SettingSummary {
    let nfe = 2 * steps - 1;
    let m = mse(kind, level, p, nfe, salt);
    // ζ: validation MSE is a bowl in log ζ around a model- and task-dependent optimum.
    let opt = 10f64.powf(
        -0.2 + 0.9 * p - 0.15 * (level.log2() - 4.0) / 5.0 + if kind == "sr" { 0.5 } else { 0.0 },
    );
    let val: Vec<f64> = ZETA_GRID
        .iter()
        .map(|&z| {
            let d = z.log10() - opt.log10();
            if d > 1.1 {
                f64::INFINITY // diverged
            } else {
                m * 1.05 * (1.0 + 0.9 * d * d)
            }
        })
        .collect();
    let best = val
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap();
    let mut metrics = BTreeMap::new();
    metrics.insert("mse".into(), stat(m, 0.35));
    metrics.insert("psnr".into(), stat(-10.0 * m.log10(), 0.08));
    metrics.insert("ssim".into(), stat((1.0 - 5.5 * m).clamp(0.05, 0.99), 0.12));
    if !(kind == "sr" && level == 8.0 && p == 0.6) {
        metrics.insert("lpips".into(), stat(0.03 + 1.1 * m.sqrt(), 0.25));
    }
    metrics.insert("residual".into(), stat(0.05 * (level.sqrt()) + m, 0.2));
    SettingSummary {
        model: model.into(),
        train_p: p,
        operator: format!("{kind}:{level}"),
        kind: kind.into(),
        level,
        steps,
        solver: "heun".into(),
        nfe,
        seed: 0,
        zeta: ZETA_GRID[best],
        zeta_grid: ZETA_GRID.to_vec(),
        zeta_val_mse: val,
        metrics,
        seconds: 0.004 * nfe as f64 * 64.0 * (1.0 + 0.1 * noise(salt, 7)),
        ..Default::default()
    }
}

/// Paired differences against the clean model at the same operator and steps, made up
/// from the means (the preview has no per-image values): the difference of the means,
/// with an interval half as wide as the unpaired one.
fn pair_with_clean(rows: &mut [SettingSummary]) {
    let clean: Vec<SettingSummary> = rows.iter().filter(|r| r.train_p == 0.0).cloned().collect();
    for r in rows.iter_mut().filter(|r| r.train_p > 0.0) {
        let Some(c) = clean
            .iter()
            .find(|c| c.operator == r.operator && c.steps == r.steps)
        else {
            continue;
        };
        r.paired_with = c.model.clone();
        for m in adps::report::PAIRED_METRICS {
            let (Some(a), Some(b)) = (r.metrics.get(m), c.metrics.get(m)) else {
                continue;
            };
            // No interval with fewer than two images: no made-up pair either.
            let (Some(ca), Some(cb)) = (a.ci95(), b.ci95()) else {
                continue;
            };
            let half = 0.5 * (ca.powi(2) + cb.powi(2)).sqrt();
            let mean = a.mean - b.mean;
            r.paired.insert(
                m.to_string(),
                adps::report::PairedDiff {
                    mean,
                    lo: mean - half,
                    hi: mean + half,
                    count: a.count,
                },
            );
        }
    }
}

fn rows() -> Vec<SettingSummary> {
    let mut rows = Vec::new();
    for (mi, &p) in MODELS.iter().enumerate() {
        let model = format!("fmnist-p{p}");
        for &m in &[16.0, 32.0, 64.0, 128.0, 256.0, 512.0] {
            let steps: &[u32] = if m == 256.0 {
                &[5, 10, 25, 50, 100]
            } else {
                &[50, 100]
            };
            for &s in steps {
                rows.push(setting(&model, p, "cs", m, s, mi as u64 * 1000 + m as u64));
            }
        }
        for &f in &[2.0, 4.0, 8.0] {
            let steps: &[u32] = if f == 4.0 {
                &[5, 10, 25, 50, 100]
            } else {
                &[50, 100]
            };
            for &s in steps {
                rows.push(setting(
                    &model,
                    p,
                    "sr",
                    f,
                    s,
                    mi as u64 * 1000 + 900 + f as u64,
                ));
            }
        }
    }
    pair_with_clean(&mut rows);
    rows
}

/// A 32×32 test image: a ring, a bar and a gradient, varying with `id`.
fn ground_truth(id: usize) -> Vec<f32> {
    let mut v = vec![0f32; 32 * 32];
    let (cx, cy) = (12.0 + 3.0 * id as f32, 14.0 + 2.0 * (id % 2) as f32);
    for y in 0..32 {
        for x in 0..32 {
            let (dx, dy) = (x as f32 - cx, y as f32 - cy);
            let r = (dx * dx + dy * dy).sqrt();
            let ring = if (6.0..9.5).contains(&r) { 1.6 } else { 0.0 };
            let bar = if (22..27).contains(&x) && y > 4 + id * 2 {
                1.2
            } else {
                0.0
            };
            v[y * 32 + x] = -0.9 + ring + bar + 0.01 * y as f32;
        }
    }
    v
}

fn png(data: &[f32]) -> Vec<u8> {
    adps::io::image::encode_png([1, 32, 32], data).expect("encodes")
}

fn examples() -> Vec<ExampleGrid> {
    let ids: Vec<String> = (0..4).map(|i| format!("test-{i:04}")).collect();
    let truth: Vec<Vec<f32>> = (0..4).map(ground_truth).collect();
    let degrade = |op: &str, amount: f64, salt: u64| -> Vec<Vec<u8>> {
        truth
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let v: Vec<f32> = t
                    .iter()
                    .enumerate()
                    .map(|(k, &x)| {
                        let blur = if op.starts_with("sr") {
                            // Block average of the 4×4 cell as a crude blur.
                            let (y, xx) = (k / 32, k % 32);
                            let (by, bx) = (y / 4 * 4, xx / 4 * 4);
                            let mut s = 0.0;
                            for yy in by..by + 4 {
                                for xxx in bx..bx + 4 {
                                    s += t[yy * 32 + xxx];
                                }
                            }
                            s / 16.0
                        } else {
                            x
                        };
                        let mix = amount.min(1.0) as f32;
                        (1.0 - mix) * x
                            + mix * blur
                            + (amount * 0.6 * noise(salt + i as u64, k as u64)) as f32
                    })
                    .collect();
                png(&v)
            })
            .collect()
    };
    let mut grids = Vec::new();
    for op in ["cs:32", "sr:4"] {
        let mut rows = vec![(
            "ground truth".to_string(),
            truth.iter().map(|t| png(t)).collect(),
        )];
        let measurement = if op.starts_with("sr") {
            degrade(op, 1.0, 1)
        } else {
            // A^T y for Gaussian CS looks like noise.
            (0..4)
                .map(|i| {
                    png(&(0..1024)
                        .map(|k| 0.7 * noise(50 + i, k) as f32)
                        .collect::<Vec<_>>())
                })
                .collect()
        };
        rows.push(("measurement".to_string(), measurement));
        for (mi, &p) in MODELS.iter().enumerate() {
            let amount = 0.15 + 0.35 * (1.0 - p) * if op.starts_with("cs") { 1.0 } else { 0.6 };
            rows.push((
                format!("fmnist-p{p}"),
                degrade(op, amount, 100 * mi as u64 + 3),
            ));
        }
        grids.push(ExampleGrid {
            operator: op.to_string(),
            ids: ids.clone(),
            rows,
        });
    }
    grids
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/report-preview.html".into());
    if let Some(summary_path) = std::env::args().nth(2) {
        let bytes = std::fs::read(&summary_path)?;
        let rows = summary::decode_summary(&bytes)?;
        let intro = format!("<p>Rendered from <code>{summary_path}</code> (no example grids).</p>");
        let page = html::render_report("Ambient DPS evaluation (re-rendered)", &intro, &rows, &[])?;
        std::fs::write(&out, &page)?;
        println!(
            "wrote {out} ({} KiB, {} settings)",
            page.len() / 1024,
            rows.len()
        );
        return Ok(());
    }
    let rows = rows();
    let intro = "<p>Ambient DPS restorations of the Fashion-MNIST test split by five priors: one \
                 trained on clean images and four <em>Ambient Diffusion</em> models trained only on \
                 images with a fraction <em>p</em> of pixels erased. <strong>Synthetic numbers</strong> \
                 (layout preview).</p>";
    let page = html::render_report(
        "Ambient DPS evaluation — Fashion-MNIST (preview)",
        intro,
        &rows,
        &examples(),
    )?;
    std::fs::write(&out, &page)?;
    let parquet = summary::encode_summary(&rows)?;
    anyhow::ensure!(
        summary::decode_summary(&parquet)? == rows,
        "summary round trip"
    );
    let pq = std::path::Path::new(&out).with_extension("parquet");
    std::fs::write(&pq, &parquet)?;
    println!(
        "wrote {out} ({} KiB) and {} ({} rows)",
        page.len() / 1024,
        pq.display(),
        rows.len()
    );
    Ok(())
}
