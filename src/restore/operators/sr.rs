//! `sr:f`: super-resolution by f×f average pooling per channel, and nearest-neighbour
//! upsampling (the baseline).

use super::LinearOperator;

/// f×f average pooling; y is C-order `[C, H/f, W/f]`.
#[derive(Debug, Clone)]
pub struct AvgPool {
    shape: [usize; 3],
    f: usize,
}

impl AvgPool {
    /// Pooling by `f` on `[C, H, W]`; H and W must be divisible by f (checked by the spec).
    pub fn new(shape: [usize; 3], f: usize) -> Self {
        assert!(
            f >= 1 && shape[1].is_multiple_of(f) && shape[2].is_multiple_of(f),
            "{shape:?} not divisible by {f}"
        );
        Self { shape, f }
    }
}

impl LinearOperator for AvgPool {
    fn input_len(&self) -> usize {
        self.shape.iter().product()
    }

    fn measurements(&self) -> usize {
        self.input_len() / (self.f * self.f)
    }

    fn forward(&self, x: &[f32], y: &mut [f32]) {
        let [c, h, w] = self.shape;
        let (f, ws) = (self.f, w / self.f);
        y.fill(0.0);
        for ci in 0..c {
            for i in 0..h {
                for j in 0..w {
                    y[(ci * (h / f) + i / f) * ws + j / f] += x[(ci * h + i) * w + j];
                }
            }
        }
        let inv = 1.0 / (f * f) as f32;
        y.iter_mut().for_each(|v| *v *= inv);
    }

    /// Spreads each y/f² back over its f×f block.
    fn adjoint(&self, y: &[f32], x: &mut [f32]) {
        let [c, h, w] = self.shape;
        let (f, ws) = (self.f, w / self.f);
        let inv = 1.0 / (f * f) as f32;
        for ci in 0..c {
            for i in 0..h {
                for j in 0..w {
                    x[(ci * h + i) * w + j] = y[(ci * (h / f) + i / f) * ws + j / f] * inv;
                }
            }
        }
    }
}

/// Nearest-neighbour upsampling of `y` ([C, H/f, W/f]) to `shape` ([C, H, W]): each
/// low-resolution pixel fills its f×f block. It is f²·Aᵀ, and A applied to it gives y back.
pub fn nearest_upsample(y: &[f32], shape: [usize; 3], f: usize) -> Vec<f32> {
    let op = AvgPool::new(shape, f);
    let mut x = vec![0.0; op.input_len()];
    op.adjoint(y, &mut x);
    let s = (f * f) as f32;
    x.iter_mut().for_each(|v| *v *= s);
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::apply;
    use crate::restore::operators::test_util::{assert_adjoint, randn};

    #[test]
    fn adjoint_identity() {
        assert_adjoint(&AvgPool::new([3, 8, 12], 2));
        assert_adjoint(&AvgPool::new([1, 16, 16], 4));
    }

    #[test]
    fn pools_a_4x4_by_2() {
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        // Blocks: {0,1,4,5}, {2,3,6,7}, {8,9,12,13}, {10,11,14,15}.
        assert_eq!(
            apply(&AvgPool::new([1, 4, 4], 2), &x),
            vec![2.5, 4.5, 10.5, 12.5]
        );
        let mut back = vec![0.0; 16];
        AvgPool::new([1, 4, 4], 2).adjoint(&[4.0, 0.0, 0.0, 8.0], &mut back);
        assert_eq!(&back[..4], &[1.0, 1.0, 0.0, 0.0]);
        assert_eq!(&back[12..], &[0.0, 0.0, 2.0, 2.0]);
    }

    #[test]
    fn channels_are_pooled_separately() {
        let x = [vec![1.0f32; 4], vec![-1.0; 4]].concat();
        assert_eq!(apply(&AvgPool::new([2, 2, 2], 2), &x), vec![1.0, -1.0]);
    }

    #[test]
    fn nearest_upsample_is_consistent_with_pooling() {
        let shape = [3, 8, 8];
        let y = randn(3 * 4 * 4, 1);
        let x = nearest_upsample(&y, shape, 2);
        assert_eq!(x[0], x[1]);
        assert_eq!(x[0], x[8]);
        let y2 = apply(&AvgPool::new(shape, 2), &x);
        assert!(y.iter().zip(&y2).all(|(a, b)| (a - b).abs() < 1e-6));
    }
}
