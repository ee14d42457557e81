//! The Rust engine against the Python reference (models/reference/adps_reference.py):
//! each graph's outputs on golden inputs, and whole A-DPS trajectories given the same
//! noise, for one cs and one sr case, Euler and Heun, on both gradient paths.

use std::path::{Path, PathBuf};

use adps::model::{Device, OnnxDenoiser, SessionConfig};
use adps::restore::denoiser::Denoiser;
use adps::restore::guidance::GradientPath;
use adps::restore::operators::cs::GaussianCs;
use adps::restore::operators::sr::AvgPool;
use adps::restore::operators::LinearOperator;
use adps::restore::rng::FixedNoise;
use adps::restore::sampler::{ambient_dps, Clip, HeunGuidance, ImageTask, SamplerConfig, Solver};
use ndarray::{Array1, Array2, Array4, ArrayD};
use ndarray_npy::read_npy;

use crate::common::*;

/// Golden folders present (one per model the goldens were made for).
fn golden_models() -> Vec<(String, PathBuf)> {
    let dir = root().join("tests/fixtures/golden");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), p))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no golden tensors under {}", dir.display());
    out
}

fn npy<D: ndarray::Dimension>(dir: &Path, name: &str) -> ndarray::Array<f32, D> {
    let a: ArrayD<f32> = read_npy(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    a.into_dimensionality::<D>().unwrap()
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn load(model: &str) -> OnnxDenoiser {
    OnnxDenoiser::load(
        root().join("models").join(model),
        &SessionConfig::new(Device::Cpu, 0),
    )
    .unwrap_or_else(|e| panic!("model {model}: {e:#}"))
}

/// Goldens must have been made with the graphs now committed.
fn assert_goldens_current(model: &OnnxDenoiser, graph: &str, sha: &str) {
    let have = &model.card().graphs[graph].sha256;
    assert_eq!(
        have,
        sha,
        "tests/fixtures/golden/{}: made with another {graph}; rerun models/make_goldens.py",
        model.card().name
    );
}

#[test]
fn graphs_match_their_golden_outputs() {
    for (name, dir) in golden_models() {
        let g = dir.join("graphs");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(g.join("graphs.json")).unwrap()).unwrap();
        let fused_before = adps::model::fused::kernels_created();
        let conv_before = adps::model::fused::conv_kernels_created();
        let mut model = load(&name);
        // The exported graphs' adps.GroupNormSiLU(Grad) and adps.Conv3x3 nodes run as
        // adps's fused kernels on CPU (the goldens come from onnxruntime running their
        // ONNX functions: the Winograd convolutions are checked against direct ones).
        assert!(
            adps::model::fused::kernels_created() > fused_before,
            "{name}: no fused kernel was created"
        );
        assert!(
            adps::model::fused::conv_kernels_created() > conv_before,
            "{name}: no Winograd convolution kernel was created"
        );
        for (graph, sha) in meta["graph_sha256"].as_object().unwrap() {
            assert_goldens_current(&model, graph, sha.as_str().unwrap());
        }
        let x_t: Array4<f32> = npy(&g, "x_t.npy");
        let sigma: Array1<f32> = npy(&g, "sigma.npy");
        let mask: Array4<f32> = npy(&g, "mask.npy");
        let cot: Array4<f32> = npy(&g, "cotangent.npy");
        let a: Array2<f32> = npy(&g, "A.npy");
        let y: Array2<f32> = npy(&g, "y.npy");
        let check = |what: &str, got: &[f32], file: &str| {
            let want: ArrayD<f32> = read_npy(g.join(file)).unwrap();
            let e = rel_err(got, want.as_slice().unwrap());
            assert!(e <= 1e-4, "{name} {what}: relative error {e:.2e}");
        };
        let x0 = model
            .denoise(x_t.view(), sigma.view(), mask.view())
            .unwrap();
        check(
            "denoiser x0_hat",
            x0.as_slice().unwrap(),
            "denoiser.x0_hat.npy",
        );
        let (x0, vjp) = model
            .vjp(x_t.view(), sigma.view(), mask.view(), cot.view())
            .unwrap();
        check(
            "dps_vjp x0_hat",
            x0.as_slice().unwrap(),
            "dps_vjp.x0_hat.npy",
        );
        check("dps_vjp vjp", vjp.as_slice().unwrap(), "dps_vjp.vjp.npy");
        // The committed exports carry the split VJP pair; chained, it gives dps_vjp's outputs.
        assert!(
            model.has_split_vjp(),
            "{name}: no dps_vjp_forward/backward pair"
        );
        let split_before = model.counters().split_vjp.calls;
        let (x0, vjp) = model
            .vjp_of(x_t.view(), sigma.view(), mask.view(), &mut |_, _| {
                Ok(cot.clone())
            })
            .unwrap();
        assert_eq!(model.counters().split_vjp.calls, split_before + 1);
        check(
            "split pair x0_hat",
            x0.as_slice().unwrap(),
            "dps_vjp.x0_hat.npy",
        );
        check("split pair vjp", vjp.as_slice().unwrap(), "dps_vjp.vjp.npy");
        let d = model
            .dense(x_t.view(), sigma.view(), mask.view(), y.view(), a.view())
            .unwrap();
        check(
            "dps_dense x0_hat",
            d.x0_hat.as_slice().unwrap(),
            "dps_dense.x0_hat.npy",
        );
        check(
            "dps_dense residual_sq",
            d.residual_sq.as_slice().unwrap(),
            "dps_dense.residual_sq.npy",
        );
        check(
            "dps_dense grad",
            d.grad.as_slice().unwrap(),
            "dps_dense.grad.npy",
        );
    }
}

/// With several intra-op threads the Winograd kernels split a call's images into groups on
/// ONNX Runtime's thread pool: the outputs must not depend on that, to the bit.
#[test]
fn graph_outputs_do_not_depend_on_intra_op_threads() {
    let (name, dir) = golden_models().remove(0);
    let g = dir.join("graphs");
    let x_t: Array4<f32> = npy(&g, "x_t.npy");
    let sigma: Array1<f32> = npy(&g, "sigma.npy");
    let mask: Array4<f32> = npy(&g, "mask.npy");
    let a: Array2<f32> = npy(&g, "A.npy");
    let y: Array2<f32> = npy(&g, "y.npy");
    let run = |threads: usize| {
        let mut model = OnnxDenoiser::load(
            root().join("models").join(&name),
            &SessionConfig::new(Device::Cpu, threads),
        )
        .unwrap_or_else(|e| panic!("model {name}: {e:#}"));
        model
            .dense(x_t.view(), sigma.view(), mask.view(), y.view(), a.view())
            .unwrap()
    };
    let (one, three) = (run(1), run(3));
    assert_eq!(
        one.grad, three.grad,
        "{name}: dps_dense grad, 1 vs 3 threads"
    );
    assert_eq!(
        one.x0_hat, three.x0_hat,
        "{name}: dps_dense x0_hat, 1 vs 3 threads"
    );
}

/// Runs one golden case with the Rust sampler; returns (x_N, reference x_N) per solver.
fn run_case(
    model: &mut OnnxDenoiser,
    dir: &Path,
    solver: Solver,
    path: GradientPath,
) -> (Vec<f32>, Vec<f32>) {
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    assert_goldens_current(
        model,
        case["graph"].as_str().unwrap(),
        case["graph_sha256"].as_str().unwrap(),
    );
    let eps0: Array4<f32> = npy(dir, "eps0.npy");
    let mask: Array4<f32> = npy(dir, "mask.npy");
    let a: Array2<f32> = npy(dir, "A.npy");
    let y: Array2<f32> = npy(dir, "y.npy");
    let shape = model.shape();
    let op: Box<dyn LinearOperator> = match (case["operator"].as_str().unwrap(), path) {
        (op, GradientPath::Vjp) if op.starts_with("sr:") => {
            let f: usize = op[3..].parse().unwrap();
            Box::new(AvgPool::new(shape, f))
        }
        _ => Box::new(GaussianCs::from_matrix(a.clone())),
    };
    if let Some(dense) = op.dense_matrix() {
        assert_eq!(dense, a.view());
    }
    let key = if solver == Solver::Heun {
        "heun"
    } else {
        "euler"
    };
    let cfg = SamplerConfig {
        steps: case["n_steps"].as_u64().unwrap() as usize,
        sigma_min: case["sigma_min"].as_f64().unwrap(),
        sigma_max: case["sigma_max"].as_f64().unwrap(),
        rho: case["rho"].as_f64().unwrap(),
        zeta: case["zeta"].as_f64().unwrap(),
        solver,
        // The goldens are the spec's update: no clipping (case.json's clip_x0 = false).
        clip: Clip::None,
        heun_guidance: HeunGuidance::Averaged,
        ..SamplerConfig::default()
    };
    let ys: Vec<Vec<f32>> = y.outer_iter().map(|r| r.to_vec()).collect();
    let mut noises: Vec<FixedNoise> = eps0
        .outer_iter()
        .map(|e| FixedNoise::new(e.iter().copied().collect()))
        .collect();
    let masks: Vec<_> = mask.outer_iter().map(|m| m.to_owned()).collect();
    let mut tasks: Vec<ImageTask> = ys
        .iter()
        .zip(&masks)
        .zip(noises.iter_mut())
        .map(|((y, m), noise)| ImageTask {
            y,
            operator: op.as_ref(),
            mask: m.view(),
            noise,
        })
        .collect();
    let out = ambient_dps(model, &mut tasks, &cfg, path, |_| {}).unwrap();
    assert_eq!(
        out.nfe as u64,
        case["solvers"][key]["nfe"].as_u64().unwrap()
    );
    let want: Array4<f32> = npy(dir, case["solvers"][key]["x_N"].as_str().unwrap());
    (
        out.x.iter().copied().collect(),
        want.iter().copied().collect(),
    )
}

#[test]
fn sampler_matches_the_reference_given_the_same_noise() {
    for (name, dir) in golden_models() {
        let mut model = load(&name);
        for case in ["cs", "sr"] {
            let case_dir = dir.join("cases").join(case);
            for solver in [Solver::Euler, Solver::Heun] {
                for path in [GradientPath::Dense, GradientPath::Vjp] {
                    let (got, want) = run_case(&mut model, &case_dir, solver, path);
                    let e = rel_err(&got, &want);
                    assert!(
                        e <= 1e-4,
                        "{name} {case} {solver:?} {path:?}: relative error {e:.2e}"
                    );
                }
            }
        }
    }
}
