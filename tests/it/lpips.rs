//! LPIPS (AlexNet, v0.1) through ONNX Runtime: the committed graph against the official
//! values for the calibration pairs, and the metrics stage's small-image path.

use std::path::PathBuf;

use adps::model::lpips::{lpips_size, resize_bilinear, stack_rgb, OnnxLpips, MIN_SIDE};
use adps::model::runtime::{Device, SessionConfig};
use adps::stages::metrics::Perceptual;
use ndarray::Array4;

use crate::common::root;

/// Official LPIPS-Alex v0.1 distances (tests/fixtures/lpips-calibration/README.md).
const OFFICIAL: [(&str, f64); 5] = [
    ("I03", 0.7237),
    ("I04", 0.2572),
    ("I06", 0.05079),
    ("I08", 0.05205),
    ("I19", 0.4253),
];

fn graph() -> OnnxLpips {
    let path = root().join("models/lpips/lpips-alex.onnx");
    OnnxLpips::load(&path, &SessionConfig::new(Device::Cpu, 2)).unwrap()
}

fn calibration_dir() -> PathBuf {
    root().join("tests/fixtures/lpips-calibration")
}

/// One calibration image as [1, 3, H, W] in [-1, 1].
fn load(kind: &str, pair: &str) -> Array4<f32> {
    let path = calibration_dir().join(kind).join(format!("{pair}.png"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let px = adps::io::image::decode(&bytes, 3).unwrap();
    let [c, h, w] = px.shape;
    Array4::from_shape_vec((1, c, h, w), px.data).unwrap()
}

#[test]
fn lpips_matches_official_values_on_calibration_pairs() {
    let mut model = graph();
    let mut worst: f64 = 0.0;
    for (pair, official) in OFFICIAL {
        let (reference, distorted) = (load("ref", pair), load("dist", pair));
        let d = model.distances_rgb(&reference, &distorted).unwrap();
        assert_eq!(d.len(), 1);
        let diff = (d[0] - official).abs();
        eprintln!(
            "{pair}: {:.6} (official {official}, |diff| {diff:.2e})",
            d[0]
        );
        worst = worst.max(diff);
        assert!(
            diff <= 1e-3,
            "{pair}: LPIPS {} vs official {official}",
            d[0]
        );
    }
    eprintln!("worst |diff| {worst:.2e}");
}

#[test]
fn lpips_is_zero_for_identical_and_symmetric() {
    let mut model = graph();
    let (a, b) = (load("ref", "I04"), load("dist", "I04"));
    let same = model.distances_rgb(&a, &a).unwrap()[0];
    assert!(same.abs() < 1e-6, "identical images: {same}");
    let ab = model.distances_rgb(&a, &b).unwrap()[0];
    let ba = model.distances_rgb(&b, &a).unwrap()[0];
    assert!((ab - ba).abs() < 1e-5, "not symmetric: {ab} vs {ba}");
}

#[test]
fn lpips_batches_like_single_pairs() {
    let mut model = graph();
    let pairs = ["I06", "I19"];
    let stack = |kind: &str| {
        let views: Vec<Array4<f32>> = pairs.iter().map(|p| load(kind, p)).collect();
        let views: Vec<_> = views.iter().map(|v| v.view()).collect();
        ndarray::concatenate(ndarray::Axis(0), &views).unwrap()
    };
    let batched = model.distances_rgb(&stack("ref"), &stack("dist")).unwrap();
    assert_eq!(batched.len(), 2);
    for (p, d) in pairs.iter().zip(&batched) {
        let single = model
            .distances_rgb(&load("ref", p), &load("dist", p))
            .unwrap()[0];
        assert!(
            (single - d).abs() < 1e-5,
            "{p}: batched {d} vs single {single}"
        );
    }
}

#[test]
fn lpips_bilinear_resize_matches_pytorch() {
    // F.interpolate(torch.tensor([[1., 2.], [3., 4.]])[None, None], size=(4, 4),
    //               mode="bilinear", align_corners=False)
    let expected = [
        1.0, 1.25, 1.75, 2.0, //
        1.5, 1.75, 2.25, 2.5, //
        2.5, 2.75, 3.25, 3.5, //
        3.0, 3.25, 3.75, 4.0,
    ];
    let mut out = [0f32; 16];
    resize_bilinear(&[1.0, 2.0, 3.0, 4.0], (2, 2), (4, 4), &mut out);
    for (o, e) in out.iter().zip(expected) {
        assert!((o - e).abs() < 1e-6, "{out:?}");
    }
    // Same size: a copy.
    let plane: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let mut same = vec![0f32; 12];
    resize_bilinear(&plane, (3, 4), (3, 4), &mut same);
    assert_eq!(same, plane);

    assert_eq!(lpips_size(28, 28), (MIN_SIDE, MIN_SIDE));
    assert_eq!(lpips_size(32, 100), (64, 100));
    assert_eq!(lpips_size(384, 512), (384, 512));
}

#[test]
fn lpips_grey_small_images_are_upsampled() {
    let shape = [1, 32, 32];
    let a = crate::common::synthetic_image(1, shape);
    let b = crate::common::synthetic_image(2, shape);
    // Grey is repeated to three channels and 32×32 goes to 64×64.
    let stacked = stack_rgb(&[&a], shape).unwrap();
    assert_eq!(stacked.shape(), &[1, 3, 64, 64]);
    assert_eq!(
        stacked.slice(ndarray::s![0, 0, .., ..]),
        stacked.slice(ndarray::s![0, 2, .., ..])
    );

    let mut model = graph();
    let d = Perceptual::distances(&mut model, &[(&a, &b), (&b, &a), (&a, &a)], shape).unwrap();
    assert_eq!(d.len(), 3);
    assert!(d[0].is_finite() && d[0] > 0.0, "grey 32×32 pair: {}", d[0]);
    assert!((d[0] - d[1]).abs() < 1e-5, "not symmetric: {d:?}");
    assert!(d[2].abs() < 1e-6, "identical: {}", d[2]);
    assert!(Perceptual::distances(&mut model, &[], shape)
        .unwrap()
        .is_empty());
}
