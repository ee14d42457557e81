//! Measured y in the model's range. Instruments and image files measure images in
//! [0, 1]; the model works in [-1, 1], x = 2·u − 1. For a linear A, y_unit = A·u gives
//! y_model = A·x = 2·A·u − A·1 = 2·y_unit − A·1, exactly, for every operator: A·1 is
//! the operator applied to an all-ones image (1 for pooling, less near a zero-padded
//! blur's border, the mask for inpainting, the row sums for CS). Noise σ in y_unit is
//! 2σ in y_model.

use super::operators::{apply, LinearOperator};

/// y_model = 2·y_unit − A·1 for one image's operator; entries the operator does not
/// measure (erased pixels, stored as 0) stay 0 whatever the input held there.
pub fn unit_to_model(op: &dyn LinearOperator, y_unit: &[f32]) -> Vec<f32> {
    let a_ones = apply(op, &vec![1.0; op.input_len()]);
    let mut y: Vec<f32> = y_unit
        .iter()
        .zip(&a_ones)
        .map(|(&y, &a1)| 2.0 * y - a1)
        .collect();
    op.mask_noise(&mut y);
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::blur::GaussianBlur;
    use crate::restore::operators::inpaint::PixelMask;
    use crate::restore::operators::sr::AvgPool;
    use crate::restore::operators::test_util::randn;
    use crate::restore::rng::{run_rng, RunStream};

    /// For every operator, converting A·u equals A·(2u − 1).
    #[test]
    fn unit_measurements_convert_exactly() {
        let shape = [3, 8, 8];
        let n = 3 * 64;
        let ops: Vec<Box<dyn LinearOperator>> = vec![
            Box::new(crate::restore::operators::cs::gaussian(
                20,
                n,
                &mut run_rng(3, RunStream::CsMatrix),
            )),
            Box::new(AvgPool::new(shape, 2)),
            Box::new(GaussianBlur::new(shape, 1.0)),
            Box::new(PixelMask::new(shape, (0..64).map(|p| p % 3 != 0).collect())),
        ];
        let u: Vec<f32> = randn(n, 9).iter().map(|v| (v.tanh() + 1.0) / 2.0).collect();
        let x: Vec<f32> = u.iter().map(|v| 2.0 * v - 1.0).collect();
        for op in &ops {
            let want = apply(op.as_ref(), &x);
            let got = unit_to_model(op.as_ref(), &apply(op.as_ref(), &u));
            let worst = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-4, "{op:?}: off by {worst}");
        }
    }

    #[test]
    fn unmeasured_entries_stay_zero() {
        let op = PixelMask::new([1, 1, 2], vec![true, false]);
        assert_eq!(unit_to_model(&op, &[0.75, 0.9]), vec![0.5, 0.0]);
    }
}
