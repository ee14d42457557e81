//! src/model against the closed-form Gaussian fixture (tests/fixtures/gaussian-model,
//! written by models/fixtures/make_gaussian_model.py).
//!
//! The session tests need the ONNX Runtime library and fail (not skip) without it:
//! run scripts/onnxruntime.sh first.

use std::path::{Path, PathBuf};

use adps::model::{self, runtime, Device, ModelFolder, OnnxDenoiser, SessionConfig};
use adps::restore::denoiser::Denoiser;
use ndarray::{Array1, Array2, Array4, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gaussian-model")
}

/// The same model with the optional split VJP pair (`--split-vjp`).
fn split_fixture() -> PathBuf {
    fixture().with_file_name("gaussian-split")
}

/// A writable copy of the fixture (committed fixtures are never modified).
fn fixture_copy() -> tempfile::TempDir {
    copy_of(&fixture())
}

fn copy_of(fixture: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn err_of<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

fn edit_card(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("card.json");
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut card);
    std::fs::write(&path, serde_json::to_string_pretty(&card).unwrap()).unwrap();
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

mod folder {
    use super::*;

    #[test]
    fn opens_the_fixture() {
        let folder = ModelFolder::open(fixture()).unwrap();
        let card = folder.card();
        assert_eq!(card.name, "gaussian-model");
        assert_eq!(card.shape, [1, 8, 8]);
        assert_eq!(card.train_p(), 0.5);
        assert!((card.keep_probability() - 0.5).abs() < 1e-12);
        let names: Vec<&str> = folder.graphs().iter().map(|g| g.name).collect();
        assert_eq!(names, ["denoiser.onnx", "dps_vjp.onnx", "dps_dense.onnx"]);
        assert!(!card.has_split_vjp(), "the pair is optional");
        assert!(folder
            .graphs()
            .iter()
            .all(|g| g.opset >= 17 && g.ir_version <= 13));
    }

    #[test]
    fn missing_file_is_named() {
        let dir = fixture_copy();
        std::fs::remove_file(dir.path().join("dps_vjp.onnx")).unwrap();
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(e.contains("missing dps_vjp.onnx"), "{e}");

        let dir = fixture_copy();
        std::fs::remove_file(dir.path().join("card.json")).unwrap();
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(e.contains("missing card.json"), "{e}");
    }

    #[test]
    fn split_vjp_pair_is_optional_but_whole_and_consistent() {
        let folder = ModelFolder::open(split_fixture()).unwrap();
        assert!(folder.card().has_split_vjp());
        let names: Vec<&str> = folder.graphs().iter().map(|g| g.name).collect();
        assert_eq!(
            names[3..],
            ["dps_vjp_forward.onnx", "dps_vjp_backward.onnx"]
        );

        // Half a pair.
        let dir = copy_of(&split_fixture());
        edit_card(dir.path(), |c| {
            c["graphs"]
                .as_object_mut()
                .unwrap()
                .remove("dps_vjp_backward.onnx");
        });
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(
            e.contains("dps_vjp_forward.onnx but not dps_vjp_backward.onnx"),
            "{e}"
        );

        // Listed but missing.
        let dir = copy_of(&split_fixture());
        std::fs::remove_file(dir.path().join("dps_vjp_backward.onnx")).unwrap();
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(
            e.contains("lists dps_vjp_backward.onnx but the file is missing"),
            "{e}"
        );

        // A backward input that the forward does not produce.
        let dir = copy_of(&split_fixture());
        edit_card(dir.path(), |c| {
            let ins = c["graphs"]["dps_vjp_backward.onnx"]["inputs"]
                .as_object_mut()
                .unwrap();
            let v = ins.remove("kept_mk").unwrap();
            ins.insert("kept_other".into(), v);
        });
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(
            e.contains("dps_vjp_backward.onnx")
                && e.contains("`kept_other` is neither the cotangent nor an input or kept output"),
            "{e}"
        );

        // A kept value without the batch as its first dimension.
        let dir = copy_of(&split_fixture());
        edit_card(dir.path(), |c| {
            c["graphs"]["dps_vjp_forward.onnx"]["outputs"]["kept_mk"] =
                serde_json::json!([1, 1, 8, 8]);
        });
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(
            e.contains("output `kept_mk` is [1, 1, 8, 8]") && e.contains("batch B"),
            "{e}"
        );
    }

    #[test]
    fn corrupt_graph_is_named() {
        let dir = fixture_copy();
        let path = dir.path().join("denoiser.onnx");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, &bytes).unwrap();
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(e.contains("denoiser.onnx") && e.contains("sha256"), "{e}");

        // Same corruption with the card's hash updated: the parser must still refuse it.
        let sha = sha256_hex(&path);
        edit_card(dir.path(), |c| {
            c["graphs"]["denoiser.onnx"]["sha256"] = sha.into()
        });
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(
            e.contains("denoiser.onnx") && e.contains("not a readable ONNX model"),
            "{e}"
        );
    }

    #[test]
    fn tampered_hash_names_file_and_both_hashes() {
        let dir = fixture_copy();
        let real = sha256_hex(&dir.path().join("dps_dense.onnx"));
        let fake = "0".repeat(64);
        edit_card(dir.path(), |c| {
            c["graphs"]["dps_dense.onnx"]["sha256"] = fake.clone().into()
        });
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(
            e.contains("dps_dense.onnx") && e.contains(&real) && e.contains(&fake),
            "{e}"
        );
    }

    #[test]
    fn wrong_input_name_is_named() {
        // Rename `cotangent` in the graph (same length keeps the protobuf valid), re-hash.
        let dir = fixture_copy();
        let path = dir.path().join("dps_vjp.onnx");
        let bytes = std::fs::read(&path).unwrap();
        let (from, to) = (b"cotangent", b"cotangenX");
        let mut out = bytes.clone();
        for i in 0..bytes.len() - from.len() {
            if &bytes[i..i + from.len()] == from {
                out[i..i + from.len()].copy_from_slice(to);
            }
        }
        std::fs::write(&path, &out).unwrap();
        let sha = sha256_hex(&path);
        edit_card(dir.path(), |c| {
            c["graphs"]["dps_vjp.onnx"]["sha256"] = sha.into()
        });
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(
            e.contains("dps_vjp.onnx") && e.contains("`cotangent`") && e.contains("cotangenX"),
            "{e}"
        );
    }

    #[test]
    fn card_errors_name_the_field() {
        let dir = fixture_copy();
        edit_card(dir.path(), |c| {
            c.as_object_mut().unwrap().remove("sigma_data");
        });
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(e.contains("card.json") && e.contains("sigma_data"), "{e}");

        let dir = fixture_copy();
        edit_card(dir.path(), |c| {
            c["training"]["corruption"]["delta"] = (-0.1).into()
        });
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(e.contains("training.corruption.delta"), "{e}");
    }

    #[test]
    fn card_disagreeing_with_embedded_card_is_named() {
        let dir = fixture_copy();
        edit_card(dir.path(), |c| c["name"] = "renamed".into());
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(
            e.contains("denoiser.onnx") && e.contains("adps.card") && e.contains("renamed"),
            "{e}"
        );

        let dir = fixture_copy();
        // A card consistent in itself (its keep probability follows p) that the graphs'
        // embedded card contradicts.
        edit_card(dir.path(), |c| {
            c["training"]["corruption"]["p"] = 0.25.into();
            c["sampling_mask"]["keep_prob"] = 0.75.into();
        });
        let e = err_of(ModelFolder::open(dir.path()));
        assert!(e.contains("adps.card") && e.contains("training"), "{e}");
    }

    #[test]
    fn inspect_lists_card_and_signatures() {
        let text = model::inspect(fixture()).unwrap();
        for want in [
            "gaussian-model",
            "1×8×8",
            "keep probability 0.5000",
            "dps_dense.onnx",
            "x_t          [B, 1, 8, 8]",
            "A            [M, 64]",
            "residual_sq  [B]",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}

/// The fixture's closed form: D = μ + m⊙k⊙(m⊙x − μ), k = s²/(s²+σ²).
struct Gaussian {
    mu: Array1<f32>,
    s2: Array1<f32>,
}

impl Gaussian {
    fn from_card(card: &model::Card) -> Self {
        let cf = &card.extra["closed_form"];
        let get = |k: &str| -> Array1<f32> {
            cf[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        let s = get("s");
        Self {
            mu: get("mu"),
            s2: &s * &s,
        }
    }

    /// Per-image k⊙m (the Jacobian's diagonal) and D.
    fn eval(
        &self,
        x: &Array4<f32>,
        sigma: &Array1<f32>,
        mask: &Array4<f32>,
    ) -> (Array4<f32>, Array4<f32>) {
        let mut d = x.clone();
        let mut jac = x.clone();
        for b in 0..x.dim().0 {
            let sig2 = sigma[b] * sigma[b];
            for (i, ((dv, jv), (&xv, &mv))) in d
                .index_axis_mut(Axis(0), b)
                .iter_mut()
                .zip(jac.index_axis_mut(Axis(0), b).iter_mut())
                .zip(
                    x.index_axis(Axis(0), b)
                        .iter()
                        .zip(mask.index_axis(Axis(0), b).iter()),
                )
                .enumerate()
            {
                let k = self.s2[i] / (self.s2[i] + sig2);
                *dv = self.mu[i] + mv * k * (mv * xv - self.mu[i]);
                *jv = mv * k * mv;
            }
        }
        (d, jac)
    }
}

fn randn(rng: &mut ChaCha8Rng, shape: (usize, usize, usize, usize)) -> Array4<f32> {
    Array4::from_shape_simple_fn(shape, || {
        // Box–Muller.
        let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    })
}

fn batch(b: usize, seed: u64) -> (Array4<f32>, Array1<f32>, Array4<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = randn(&mut rng, (b, 1, 8, 8));
    let sigma = Array1::from_iter((0..b).map(|i| [0.1f32, 1.0, 10.0, 0.5][i % 4]));
    let mask = Array4::from_shape_simple_fn((b, 1, 8, 8), || {
        if rng.random::<f32>() < 0.5 {
            1.0
        } else {
            0.0
        }
    });
    (x, sigma, mask)
}

fn assert_close(a: &ndarray::ArrayViewD<f32>, b: &ndarray::ArrayViewD<f32>, tol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(b.iter())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= tol * scale,
        "{what}: max abs error {err} (scale {scale})"
    );
}

/// Fails with the "run scripts/onnxruntime.sh" message when the library is missing.
fn cpu_denoiser() -> OnnxDenoiser {
    runtime::init().unwrap_or_else(|e| panic!("{e:#}"));
    OnnxDenoiser::load(fixture(), &SessionConfig::new(Device::Cpu, 1)).unwrap()
}

mod session {
    use super::*;

    #[test]
    fn denoiser_moves_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<OnnxDenoiser>();
        assert_send_sync::<ModelFolder>();
    }

    #[test]
    fn denoise_matches_closed_form() {
        let mut d = cpu_denoiser();
        assert_eq!(d.device(), Device::Cpu);
        assert_eq!(d.shape(), [1, 8, 8]);
        let g = Gaussian::from_card(d.card());
        let (x, sigma, mask) = batch(4, 1);
        let got = d.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        let (want, _) = g.eval(&x, &sigma, &mask);
        assert_close(
            &got.view().into_dyn(),
            &want.view().into_dyn(),
            1e-5,
            "x0_hat",
        );
    }

    #[test]
    fn vjp_is_the_transposed_jacobian() {
        let mut d = cpu_denoiser();
        let g = Gaussian::from_card(d.card());
        let (x, sigma, mask) = batch(3, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let cot = randn(&mut rng, (3, 1, 8, 8));
        let (x0, vjp) = d
            .vjp(x.view(), sigma.view(), mask.view(), cot.view())
            .unwrap();
        let (want_x0, jac) = g.eval(&x, &sigma, &mask);
        assert_close(
            &x0.view().into_dyn(),
            &want_x0.view().into_dyn(),
            1e-5,
            "x0_hat",
        );
        assert_close(
            &vjp.view().into_dyn(),
            &(&jac * &cot).view().into_dyn(),
            1e-5,
            "vjp",
        );

        // Finite differences through denoiser.onnx: <cot, J v> = <vjp, v> per image.
        let v = randn(&mut rng, (3, 1, 8, 8));
        let eps = 1e-2f32;
        let plus = d
            .denoise((&x + &(&v * eps)).view(), sigma.view(), mask.view())
            .unwrap();
        let minus = d
            .denoise((&x - &(&v * eps)).view(), sigma.view(), mask.view())
            .unwrap();
        let jv = (&plus - &minus) / (2.0 * eps);
        for b in 0..3 {
            let lhs = (&cot.index_axis(Axis(0), b) * &jv.index_axis(Axis(0), b)).sum();
            let rhs = (&vjp.index_axis(Axis(0), b) * &v.index_axis(Axis(0), b)).sum();
            assert!(
                (lhs - rhs).abs() <= 1e-3 * (1.0 + rhs.abs()),
                "image {b}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn dense_agrees_with_denoise_and_vjp() {
        let mut d = cpu_denoiser();
        let (x, sigma, mask) = batch(3, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let m = 5;
        let a = Array2::from_shape_simple_fn((m, 64), || rng.random::<f32>() - 0.5);
        let y = Array2::from_shape_simple_fn((3, m), || rng.random::<f32>() - 0.5);
        let out = d
            .dense(x.view(), sigma.view(), mask.view(), y.view(), a.view())
            .unwrap();

        let x0 = d.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        assert_close(
            &out.x0_hat.view().into_dyn(),
            &x0.view().into_dyn(),
            1e-5,
            "x0_hat",
        );
        // r = y − A vec(x0); residual_sq = ‖r‖²; grad = Jᵀ(−2 Aᵀ r) = vjp(cotangent = −2 Aᵀ r).
        let flat = x0.to_shape((3, 64)).unwrap().to_owned();
        let r = &y - &flat.dot(&a.t());
        let rsq = r.map_axis(Axis(1), |row| row.dot(&row));
        assert_close(
            &out.residual_sq.view().into_dyn(),
            &rsq.view().into_dyn(),
            1e-5,
            "residual_sq",
        );
        let cot = (r.dot(&a) * -2.0)
            .into_shape_with_order((3, 1, 8, 8))
            .unwrap();
        let (_, vjp) = d
            .vjp(x.view(), sigma.view(), mask.view(), cot.view())
            .unwrap();
        assert_close(
            &out.grad.view().into_dyn(),
            &vjp.view().into_dyn(),
            1e-4,
            "grad",
        );
    }

    #[test]
    fn rows_do_not_depend_on_the_batch() {
        let mut d = cpu_denoiser();
        let (x, sigma, mask) = batch(3, 6);
        let all = d.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        for b in 0..3 {
            let s = ndarray::s![b..b + 1, .., .., ..];
            let one = d
                .denoise(
                    x.slice(s),
                    sigma.slice(ndarray::s![b..b + 1]),
                    mask.slice(s),
                )
                .unwrap();
            assert_eq!(
                one.index_axis(Axis(0), 0),
                all.index_axis(Axis(0), b),
                "image {b}"
            );
        }
    }

    #[test]
    fn non_contiguous_views_are_accepted() {
        let mut d = cpu_denoiser();
        let (x, sigma, mask) = batch(2, 7);
        let xt = x
            .clone()
            .reversed_axes()
            .as_standard_layout()
            .to_owned()
            .reversed_axes();
        assert!(!xt.is_standard_layout());
        let a = d.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        let b = d.denoise(xt.view(), sigma.view(), mask.view()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn shape_errors_are_clear() {
        let mut d = cpu_denoiser();
        let x = Array4::<f32>::zeros((2, 3, 64, 64));
        let sigma = Array1::<f32>::ones(2);
        let e = err_of(d.denoise(x.view(), sigma.view(), x.view()));
        assert!(
            e.contains("model gaussian-model expects 1×8×8 images, got 3×64×64"),
            "{e}"
        );

        let (x, sigma, mask) = batch(2, 8);
        let e = err_of(d.denoise(x.view(), sigma.slice(ndarray::s![..1]), mask.view()));
        assert!(e.contains("sigma has 1 entries for a batch of 2"), "{e}");
        let a = Array2::<f32>::zeros((4, 63));
        let y = Array2::<f32>::zeros((2, 4));
        let e = err_of(d.dense(x.view(), sigma.view(), mask.view(), y.view(), a.view()));
        assert!(e.contains("A is 4×63, expected M×64"), "{e}");
    }

    #[test]
    fn split_vjp_is_one_evaluation_and_agrees_with_denoise_then_vjp() {
        assert!(!cpu_denoiser().has_split_vjp());
        let mut d =
            OnnxDenoiser::load(split_fixture(), &SessionConfig::new(Device::Cpu, 1)).unwrap();
        assert!(d.has_split_vjp());
        let (x, sigma, mask) = batch(5, 21);
        // A cotangent that depends on x0, as the DPS residual's does.
        let target = randn(&mut ChaCha8Rng::seed_from_u64(22), (5, 1, 8, 8));
        let mut seen = Vec::new();
        let (x0, vjp) = d
            .vjp_of(x.view(), sigma.view(), mask.view(), &mut |first, x0| {
                seen.push((first, x0.dim().0));
                Ok(&x0 - &target)
            })
            .unwrap();
        assert_eq!(seen, vec![(0, 5)]);
        let c = d.counters();
        assert_eq!(
            (
                c.denoiser.calls,
                c.vjp.calls,
                c.split_vjp.calls,
                c.split_vjp.images
            ),
            (0, 0, 1, 5),
            "the pair ran, counted as one call"
        );

        let want_x0 = d.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        let cot = &want_x0 - &target;
        let (_, want_vjp) = d
            .vjp(x.view(), sigma.view(), mask.view(), cot.view())
            .unwrap();
        assert_close(
            &x0.view().into_dyn(),
            &want_x0.view().into_dyn(),
            1e-6,
            "x0_hat",
        );
        assert_close(
            &vjp.view().into_dyn(),
            &want_vjp.view().into_dyn(),
            1e-6,
            "vjp",
        );
        assert!(vjp.iter().any(|&v| v.abs() > 1e-3), "a vjp worth comparing");
    }

    #[test]
    fn counters_count_runs() {
        let mut d = cpu_denoiser();
        let (x, sigma, mask) = batch(3, 9);
        for _ in 0..2 {
            d.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        }
        d.vjp(x.view(), sigma.view(), mask.view(), x.view())
            .unwrap();
        let c = d.counters();
        assert_eq!((c.denoiser.calls, c.vjp.calls, c.dense.calls), (2, 1, 0));
        assert_eq!(c.denoiser.images, 6);
        assert_eq!(c.calls(), 3);
        assert!(c.seconds() > 0.0 && c.seconds() == c.denoiser.seconds + c.vjp.seconds);
        d.reset_counters();
        assert_eq!(d.counters().calls(), 0);
    }
}

mod device {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn parses_and_prints() {
        for (s, d) in [
            ("cpu", Device::Cpu),
            ("cuda", Device::Cuda),
            ("auto", Device::Auto),
        ] {
            assert_eq!(s.parse::<Device>().unwrap(), d);
            assert_eq!(d.to_string(), s);
        }
        assert!("tpu".parse::<Device>().is_err());
    }

    #[test]
    fn explicit_cuda_without_cuda_is_a_clean_error() {
        runtime::init().unwrap_or_else(|e| panic!("{e:#}"));
        match OnnxDenoiser::load(fixture(), &SessionConfig::new(Device::Cuda, 1)) {
            Err(e) => {
                let e = format!("{e:#}");
                assert!(e.contains("--device cuda") && e.contains("CUDA"), "{e}");
            }
            // Only possible with the GPU build on a machine with a working GPU.
            Ok(d) => assert_eq!(d.device(), Device::Cuda),
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn auto_falls_back_to_cpu_and_says_so() {
        runtime::init().unwrap_or_else(|e| panic!("{e:#}"));
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let d = tracing::subscriber::with_default(subscriber, || {
            OnnxDenoiser::load(fixture(), &SessionConfig::new(Device::Auto, 1)).unwrap()
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        match d.device() {
            Device::Cpu => {
                assert!(text.contains("running on CPU"), "log: {text}");
                assert_eq!(
                    text.matches("running on CPU").count(),
                    1,
                    "said once: {text}"
                );
                assert!(runtime::auto_fallback_reason().is_some());
            }
            other => assert_eq!(other, Device::Cuda),
        }
    }
}
