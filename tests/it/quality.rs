//! Restoration quality on a committed trained model and 16 demo test images: Ambient DPS
//! beats the plain baselines (minimum-norm least squares for cs, nearest-neighbour
//! upsampling for sr) by a clear margin, and the guidance is what fits the measurements.
//! Also: an image's result does not depend on the batch it is restored in.

use std::str::FromStr;
use std::sync::Arc;

use adps::model::{Device, OnnxDenoiser, SessionConfig};
use adps::pipeline::plan::WorkerLayout;
use adps::restore::denoiser::Chunked;
use adps::restore::guidance::{GradientPath, DENSE_MAX_ENTRIES};
use adps::restore::metrics::psnr;
use adps::restore::operators::cs::MinNormSolver;
use adps::restore::operators::sr::nearest_upsample;
use adps::restore::operators::{simulate_measurement, OperatorFamily, OperatorSpec};
use adps::restore::rng::ImageRngs;
use adps::restore::sampler::{Clip, SamplerConfig, Solver};
use adps::stages::restore::{AdpsRestorer, RestoreSettings, Restorer};
use adps::stages::{Record, Shard};

use crate::common::*;

/// The model the quality tests use, and the sampler settings and ζ per task (chosen on
/// validation images, never on these test images).
const MODEL: &str = "fmnist-p0.0";
const CS_ZETA: f64 = 4.0;
const CS_SAMPLER: (usize, Solver) = (20, Solver::Heun);
const SR_ZETA: f64 = 10.0;
const SR_SAMPLER: (usize, Solver) = (40, Solver::Euler);

/// The first `n` demo test images, with their ids.
fn demo_images(n: usize) -> Vec<(String, Vec<f32>)> {
    let path = root().join("models/data/demo/shard-00000.parquet");
    let bytes = bytes::Bytes::from(std::fs::read(&path).unwrap());
    adps::io::parquet_in::read_shard(bytes, "shard-00000.parquet")
        .unwrap()
        .into_iter()
        .take(n)
        .map(|r| match r.payload.unwrap() {
            adps::io::parquet_in::Payload::Image(png) => {
                (r.id, adps::io::image::decode(&png, 1).unwrap().data)
            }
            other => panic!("unexpected payload {other:?}"),
        })
        .collect()
}

fn restorer(
    op: &str,
    zeta: f64,
    (steps, solver): (usize, Solver),
    path: Option<GradientPath>,
) -> AdpsRestorer<Chunked<OnnxDenoiser>> {
    let model = OnnxDenoiser::load(
        root().join("models").join(MODEL),
        &SessionConfig::new(Device::Cpu, 0),
    )
    .unwrap();
    let card = model.card().clone();
    let family = OperatorSpec::from_str(op)
        .unwrap()
        .build(card.shape, 0)
        .unwrap();
    restorer_of(model, family, zeta, (steps, solver), path)
}

/// [`restorer`] on an already built operator family.
fn restorer_of(
    model: OnnxDenoiser,
    family: OperatorFamily,
    zeta: f64,
    (steps, solver): (usize, Solver),
    path: Option<GradientPath>,
) -> AdpsRestorer<Chunked<OnnxDenoiser>> {
    let card = model.card().clone();
    let settings = RestoreSettings {
        shape: card.shape,
        path: path.unwrap_or_else(|| GradientPath::auto(&family)),
        family: Arc::new(family),
        sampler: SamplerConfig {
            steps,
            zeta,
            solver,
            clip: Clip::None,
            ..SamplerConfig::default()
        }
        .clamped_to_model(card.sigma_min, card.sigma_max),
        keep_prob: card.keep_probability(),
        seed: 0,
        sigma_y: 0.0,
        y_range: adps::pipeline::config::YRange::Model,
    };
    // As a run of batch size 8 (the default) calls the model: on a CPU in calls of
    // exactly 4 images.
    let rows = WorkerLayout::call_rows(model.device(), 8);
    AdpsRestorer::new(Chunked::new(model, rows), settings)
}

fn batch_of(images: &[(String, Vec<f32>)]) -> Vec<(Arc<Shard>, Record)> {
    let shard = Arc::new(Shard::new(0, "t".into(), "t".into(), "t".into()));
    images
        .iter()
        .enumerate()
        .map(|(row, (id, x))| {
            (
                shard.clone(),
                Record {
                    id: id.clone(),
                    row,
                    truth: Some(x.clone()),
                    y: None,
                    mask: None,
                    ..Default::default()
                },
            )
        })
        .collect()
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

/// (mean PSNR of the restorations, mean PSNR of the baseline, mean residual).
fn compare(
    op: &str,
    zeta: f64,
    sampler: (usize, Solver),
    baseline: impl Fn(&[f32]) -> Vec<f32>,
) -> (f64, f64, f64) {
    let images = demo_images(16);
    let mut r = restorer(op, zeta, sampler, None);
    let out = r.restore(&batch_of(&images)).unwrap();
    let family = OperatorSpec::from_str(op)
        .unwrap()
        .build([1, 32, 32], 0)
        .unwrap();
    let restored = mean(images.iter().zip(&out).map(|((_, x0), (x, _))| psnr(x, x0)));
    let base = mean(images.iter().map(|(id, x0)| {
        let mut rngs = ImageRngs::new(0, id);
        let opi = family.for_image(&mut rngs.operator);
        let y = simulate_measurement(opi.as_ref(), x0, 0.0, &mut rngs.measurement);
        let xb: Vec<f32> = baseline(&y)
            .into_iter()
            .map(|v| v.clamp(-1.0, 1.0))
            .collect();
        psnr(&xb, x0)
    }));
    (restored, base, mean(out.iter().map(|(_, r)| *r)))
}

#[test]
fn cs_512_beats_minimum_norm_least_squares() {
    let family = OperatorSpec::from_str("cs:512")
        .unwrap()
        .build([1, 32, 32], 0)
        .unwrap();
    let a = family.shared().unwrap().dense_matrix().unwrap().to_owned();
    let solver = MinNormSolver::new(a.view()).unwrap();
    let (restored, base, residual) = compare("cs:512", CS_ZETA, CS_SAMPLER, |y| solver.solve(y));
    assert!(
        restored >= base + 3.0,
        "A-DPS {restored:.2} dB vs least squares {base:.2} dB"
    );
    let (_, _, residual_unguided) = compare("cs:512", 0.0, CS_SAMPLER, |y| solver.solve(y));
    // The DPS step has the fixed length ζ‖∇‖r‖‖ and its last one lands at σ = 0, so the
    // final residual cannot fall below about ζ·‖AAᵀ‖ (≈ 2ζ for cs:512): the ζ that is
    // best for MSE leaves a floor. Still, guidance must cut the residual by a third.
    assert!(
        residual_unguided >= 1.5 * residual,
        "ζ = 0 leaves ‖y − Ax̂‖ = {residual_unguided:.3}, guided {residual:.3}"
    );
}

#[test]
fn sr_2_beats_nearest_neighbour_upsampling() {
    let (restored, base, residual) = compare("sr:2", SR_ZETA, SR_SAMPLER, |y| {
        nearest_upsample(y, [1, 32, 32], 2)
    });
    assert!(
        restored >= base + 1.0,
        "A-DPS {restored:.2} dB vs nearest neighbour {base:.2} dB"
    );
    let (_, _, residual_unguided) = compare("sr:2", 0.0, SR_SAMPLER, |y| {
        nearest_upsample(y, [1, 32, 32], 2)
    });
    assert!(
        residual_unguided >= 5.0 * residual,
        "ζ = 0 leaves ‖y − Ax̂‖ = {residual_unguided:.3}, guided {residual:.3}"
    );
}

#[test]
fn super_resolution_takes_the_dense_graph_and_restores_as_the_vjp_path_does() {
    // sr's matrix is built (OperatorFamily::densified) so that one dps_dense evaluation
    // replaces denoise + vjp; the restorations are the same up to float summation order.
    let images = demo_images(8);
    let load = || {
        OnnxDenoiser::load(
            root().join("models").join(MODEL),
            &SessionConfig::new(Device::Cpu, 0),
        )
        .unwrap()
    };
    let family = || {
        OperatorSpec::from_str("sr:4")
            .unwrap()
            .build([1, 32, 32], 0)
            .unwrap()
    };
    let densified = family().densified(DENSE_MAX_ENTRIES);
    assert_eq!(GradientPath::auto(&densified), GradientPath::Dense);
    assert_eq!(GradientPath::auto(&family()), GradientPath::Vjp);
    let sampler = (10, Solver::Euler);
    let mut dense = restorer_of(load(), densified, 3.0, sampler, None);
    let mut vjp = restorer_of(load(), family(), 3.0, sampler, Some(GradientPath::Vjp));
    let (a, b) = (
        dense.restore(&batch_of(&images)).unwrap(),
        vjp.restore(&batch_of(&images)).unwrap(),
    );
    for (k, (a, b)) in a.iter().zip(&b).enumerate() {
        let worst =
            a.0.iter()
                .zip(&b.0)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-3,
            "image {k}: dense and vjp paths differ by {worst}"
        );
    }
}

#[test]
fn an_image_restores_the_same_alone_in_a_batch_and_reordered() {
    let images = demo_images(8);
    for (op, path) in [("cs:256", GradientPath::Dense), ("sr:4", GradientPath::Vjp)] {
        let mut r = restorer(op, 3.0, (6, Solver::Heun), Some(path));
        let batch = r.restore(&batch_of(&images)).unwrap();
        let alone = r.restore(&batch_of(&images[3..4])).unwrap();
        let mut reversed: Vec<_> = images.clone();
        reversed.reverse();
        let rev = r.restore(&batch_of(&reversed)).unwrap();
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        assert!(
            diff(&alone[0].0, &batch[3].0) == 0.0,
            "{op}: alone vs batch {}",
            diff(&alone[0].0, &batch[3].0)
        );
        for k in 0..8 {
            let d = diff(&rev[7 - k].0, &batch[k].0);
            assert!(d == 0.0, "{op}: image {k} reordered differs by {d}");
        }
    }
}

/// At the step counts where restorations work, the sampler amplifies the last bits of
/// every model call: with calls of different sizes (one image alone against the batch of
/// 8) an image differed by up to 3e-2 per pixel at 100 Euler steps and ended as another
/// restoration at 200 (1.0 per pixel, 0.7 dB). A run calls the model in one shape
/// (`WorkerLayout::call_rows`: exactly 4 images on a CPU at batch size 8, padded), and within one shape an
/// image's outputs depend on nothing else, so it restores to the same bits alone, in a
/// batch of 8, of 5 or reordered. Random draws are keyed by (seed, id).
#[test]
fn an_image_restores_to_the_same_bits_in_any_batch_at_working_step_counts() {
    let images = demo_images(8);
    let mut r = restorer(
        "cs:256",
        3.0,
        (100, Solver::Euler),
        Some(GradientPath::Dense),
    );
    let batch = r.restore(&batch_of(&images)).unwrap();
    let five = r.restore(&batch_of(&images[3..8])).unwrap();
    for k in 0..images.len() {
        let alone = r.restore(&batch_of(&images[k..k + 1])).unwrap();
        assert_eq!(
            alone[0].0, batch[k].0,
            "image {k} alone and in a batch of 8 differ"
        );
        if k >= 3 {
            assert_eq!(
                five[k - 3].0,
                batch[k].0,
                "image {k} in a batch of 5 and of 8 differ"
            );
        }
    }
}
