//! The model contract of spec §2, as the sampler sees it.
//!
//! The ONNX implementation lives in `crate::model`; tests use closed-form denoisers.
//! All arrays are NCHW float32; every output row depends only on the same input row,
//! which is what lets a batch be split or reordered without changing any image.

use ndarray::{Array1, Array4, ArrayView1, ArrayView2, ArrayView4};

/// Outputs of the fused dense-operator graph (`dps_dense.onnx`).
#[derive(Debug, Clone)]
pub struct DenseOutput {
    /// D(x_t, σ, m), [B, C, H, W].
    pub x0_hat: Array4<f32>,
    /// ‖y − A·vec(x0_hat)‖² per image, [B].
    pub residual_sq: Array1<f32>,
    /// ∇_{x_t} residual_sq per image, [B, C, H, W].
    pub grad: Array4<f32>,
}

/// How the VJP path gets a cotangent from x0_hat between the two halves of
/// [`Denoiser::vjp_of`]: called with the index of the first row and x0_hat of those rows,
/// it returns the cotangent of the same rows (every image's depends only on its own x0_hat).
pub type CotangentOf<'a> = dyn FnMut(usize, ArrayView4<f32>) -> anyhow::Result<Array4<f32>> + 'a;

/// A denoiser `D(x, σ, m) ≈ E[x0 | m⊙(x0 + σ·η), m]` with the two DPS gradient graphs.
pub trait Denoiser {
    /// Image shape [C, H, W] the model was trained on.
    fn shape(&self) -> [usize; 3];

    /// `denoiser.onnx`: x0_hat for a batch.
    fn denoise(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
    ) -> anyhow::Result<Array4<f32>>;

    /// `dps_vjp.onnx`: (x0_hat, Jᵀ·cotangent) with J = ∂x0_hat/∂x_t, per image.
    fn vjp(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        cotangent: ArrayView4<f32>,
    ) -> anyhow::Result<(Array4<f32>, Array4<f32>)>;

    /// `dps_dense.onnx`: x0_hat, ‖y − A x0_hat‖² and its gradient, A [M, C·H·W] shared.
    fn dense(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        y: ArrayView2<f32>,
        a: ArrayView2<f32>,
    ) -> anyhow::Result<DenseOutput>;

    /// The VJP path's step: x0_hat, then Jᵀ·c with c = `cotangent_of(x0_hat)`. By default
    /// [`denoise`](Self::denoise) then [`vjp`](Self::vjp), two network evaluations; a
    /// model with the split VJP pair (`card::SPLIT_VJP`) does it in one.
    fn vjp_of(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        cotangent_of: &mut CotangentOf<'_>,
    ) -> anyhow::Result<(Array4<f32>, Array4<f32>)> {
        denoise_then_vjp(self, x_t, sigma, mask, cotangent_of)
    }
}

/// [`Denoiser::vjp_of`] in two network evaluations: `denoise`, the cotangent, `vjp`.
pub fn denoise_then_vjp<D: Denoiser + ?Sized>(
    den: &mut D,
    x_t: ArrayView4<f32>,
    sigma: ArrayView1<f32>,
    mask: ArrayView4<f32>,
    cotangent_of: &mut CotangentOf<'_>,
) -> anyhow::Result<(Array4<f32>, Array4<f32>)> {
    let x0_hat = den.denoise(x_t, sigma, mask)?;
    let cotangent = cotangent_of(0, x0_hat.view())?;
    let (_, vjp) = den.vjp(x_t, sigma, mask, cotangent.view())?;
    Ok((x0_hat, vjp))
}

/// A [`Denoiser`] whose model calls never exceed `max_rows` images: a larger batch is
/// split into consecutive chunks and the outputs are put back in order.
///
/// Why: on a CPU, ONNX Runtime's cost per image of a gradient graph grows past a few
/// images per call (activations leave the cache), so a restore batch of 32 runs faster as
/// eight calls of 4 (`WorkerLayout::call_rows`; README, performance). Exact, because every output row depends only
/// on its own input row (the model contract, spec §2).
#[derive(Debug)]
pub struct Chunked<D> {
    inner: D,
    max_rows: usize,
}

impl<D: Denoiser> Chunked<D> {
    /// `max_rows` 0 is taken as 1.
    pub fn new(inner: D, max_rows: usize) -> Self {
        Self {
            inner,
            max_rows: max_rows.max(1),
        }
    }

    /// The wrapped denoiser, e.g. to read its counters.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// The row ranges of a batch of `b` images, one per model call.
    fn chunks(&self, b: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        let step = self.max_rows;
        (0..b)
            .step_by(step)
            .map(move |start| start..(start + step).min(b))
    }
}

/// Copy `part` (the output of one chunk) into rows `rows` of `whole`.
fn put_rows(
    whole: &mut Array4<f32>,
    rows: &std::ops::Range<usize>,
    part: &Array4<f32>,
    what: &str,
) -> anyhow::Result<()> {
    let want = (rows.len(), whole.dim().1, whole.dim().2, whole.dim().3);
    anyhow::ensure!(
        part.dim() == want,
        "{what} for images {}..{} is {:?}, expected {want:?}",
        rows.start,
        rows.end,
        part.dim()
    );
    whole
        .slice_mut(ndarray::s![rows.clone(), .., .., ..])
        .assign(part);
    Ok(())
}

impl<D: Denoiser> Denoiser for Chunked<D> {
    fn shape(&self) -> [usize; 3] {
        self.inner.shape()
    }

    fn denoise(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
    ) -> anyhow::Result<Array4<f32>> {
        let b = x_t.dim().0;
        if b <= self.max_rows {
            return self.inner.denoise(x_t, sigma, mask);
        }
        let mut x0_hat = Array4::zeros(x_t.raw_dim());
        for rows in self.chunks(b).collect::<Vec<_>>() {
            let r = ndarray::s![rows.clone(), .., .., ..];
            let part = self.inner.denoise(
                x_t.slice(r),
                sigma.slice(ndarray::s![rows.clone()]),
                mask.slice(r),
            )?;
            put_rows(&mut x0_hat, &rows, &part, "x0_hat")?;
        }
        Ok(x0_hat)
    }

    fn vjp(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        cotangent: ArrayView4<f32>,
    ) -> anyhow::Result<(Array4<f32>, Array4<f32>)> {
        let b = x_t.dim().0;
        if b <= self.max_rows {
            return self.inner.vjp(x_t, sigma, mask, cotangent);
        }
        let mut x0_hat = Array4::zeros(x_t.raw_dim());
        let mut vjp = Array4::zeros(x_t.raw_dim());
        for rows in self.chunks(b).collect::<Vec<_>>() {
            let r = ndarray::s![rows.clone(), .., .., ..];
            let (x0, v) = self.inner.vjp(
                x_t.slice(r),
                sigma.slice(ndarray::s![rows.clone()]),
                mask.slice(r),
                cotangent.slice(r),
            )?;
            put_rows(&mut x0_hat, &rows, &x0, "x0_hat")?;
            put_rows(&mut vjp, &rows, &v, "vjp")?;
        }
        Ok((x0_hat, vjp))
    }

    fn vjp_of(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        cotangent_of: &mut CotangentOf<'_>,
    ) -> anyhow::Result<(Array4<f32>, Array4<f32>)> {
        let b = x_t.dim().0;
        if b <= self.max_rows {
            return self.inner.vjp_of(x_t, sigma, mask, cotangent_of);
        }
        let mut x0_hat = Array4::zeros(x_t.raw_dim());
        let mut vjp = Array4::zeros(x_t.raw_dim());
        for rows in self.chunks(b).collect::<Vec<_>>() {
            let r = ndarray::s![rows.clone(), .., .., ..];
            let (x0, v) = self.inner.vjp_of(
                x_t.slice(r),
                sigma.slice(ndarray::s![rows.clone()]),
                mask.slice(r),
                &mut |first, x0| cotangent_of(rows.start + first, x0),
            )?;
            put_rows(&mut x0_hat, &rows, &x0, "x0_hat")?;
            put_rows(&mut vjp, &rows, &v, "vjp")?;
        }
        Ok((x0_hat, vjp))
    }

    fn dense(
        &mut self,
        x_t: ArrayView4<f32>,
        sigma: ArrayView1<f32>,
        mask: ArrayView4<f32>,
        y: ArrayView2<f32>,
        a: ArrayView2<f32>,
    ) -> anyhow::Result<DenseOutput> {
        let b = x_t.dim().0;
        if b <= self.max_rows {
            return self.inner.dense(x_t, sigma, mask, y, a);
        }
        anyhow::ensure!(
            y.dim().0 == b,
            "y has {} rows for a batch of {b} images",
            y.dim().0
        );
        let mut x0_hat = Array4::zeros(x_t.raw_dim());
        let mut grad = Array4::zeros(x_t.raw_dim());
        let mut residual_sq = Array1::zeros(b);
        for rows in self.chunks(b).collect::<Vec<_>>() {
            let r = ndarray::s![rows.clone(), .., .., ..];
            let part = self.inner.dense(
                x_t.slice(r),
                sigma.slice(ndarray::s![rows.clone()]),
                mask.slice(r),
                y.slice(ndarray::s![rows.clone(), ..]),
                a,
            )?;
            put_rows(&mut x0_hat, &rows, &part.x0_hat, "x0_hat")?;
            put_rows(&mut grad, &rows, &part.grad, "grad")?;
            anyhow::ensure!(
                part.residual_sq.len() == rows.len(),
                "residual_sq for images {}..{} has {} entries",
                rows.start,
                rows.end,
                part.residual_sq.len()
            );
            residual_sq
                .slice_mut(ndarray::s![rows.clone()])
                .assign(&part.residual_sq);
        }
        Ok(DenseOutput {
            x0_hat,
            residual_sq,
            grad,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::gaussian::GaussianDenoiser;
    use ndarray::{Array2, Array4};

    fn batch(b: usize) -> (Array4<f32>, Array1<f32>, Array4<f32>) {
        let x = Array4::from_shape_fn((b, 1, 3, 2), |(i, _, h, w)| {
            (i as f32 * 0.37 + h as f32 * 0.11 - w as f32 * 0.23).sin()
        });
        let sigma = Array1::from_shape_fn(b, |i| 0.2 + 0.3 * i as f32);
        let mask = Array4::from_shape_fn((b, 1, 3, 2), |(i, _, h, w)| {
            ((i + h + w) % 3 != 0) as u8 as f32
        });
        (x, sigma, mask)
    }

    #[test]
    fn chunked_calls_match_one_call_row_for_row() {
        let (x, sigma, mask) = batch(11);
        let a = Array2::from_shape_fn((4, 6), |(m, n)| ((m * 6 + n) as f32 * 0.7).cos());
        let y = Array2::from_shape_fn((11, 4), |(i, m)| (i as f32 - m as f32) * 0.1);
        let cot = x.mapv(|v| 1.0 - v);
        let mut whole = GaussianDenoiser::new([1, 3, 2], 0.1, 0.8);
        let mut split = Chunked::new(GaussianDenoiser::new([1, 3, 2], 0.1, 0.8), 4);

        let d1 = whole.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        let d2 = split.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        assert_eq!(d1, d2);
        let v1 = whole
            .vjp(x.view(), sigma.view(), mask.view(), cot.view())
            .unwrap();
        let v2 = split
            .vjp(x.view(), sigma.view(), mask.view(), cot.view())
            .unwrap();
        assert_eq!(v1, v2);
        let g1 = whole
            .dense(x.view(), sigma.view(), mask.view(), y.view(), a.view())
            .unwrap();
        let g2 = split
            .dense(x.view(), sigma.view(), mask.view(), y.view(), a.view())
            .unwrap();
        assert_eq!(g1.x0_hat, g2.x0_hat);
        assert_eq!(g1.grad, g2.grad);
        assert_eq!(g1.residual_sq, g2.residual_sq);
        // vjp_of hands each chunk's rows to the cotangent with their place in the batch.
        let mut firsts = Vec::new();
        let mut of = |first: usize, x0: ArrayView4<f32>| {
            firsts.push((first, x0.dim().0));
            let rows = ndarray::s![first..first + x0.dim().0, .., .., ..];
            Ok(x0.mapv(|v| v * 2.0) - cot.slice(rows))
        };
        let w1 = whole
            .vjp_of(x.view(), sigma.view(), mask.view(), &mut of)
            .unwrap();
        let w2 = split
            .vjp_of(x.view(), sigma.view(), mask.view(), &mut of)
            .unwrap();
        assert_eq!(w1, w2);
        assert_eq!(firsts, vec![(0, 11), (0, 4), (4, 4), (8, 3)]);
        let c = d1.mapv(|v| v * 2.0) - &cot;
        assert_eq!(
            w1.1,
            whole
                .vjp(x.view(), sigma.view(), mask.view(), c.view())
                .unwrap()
                .1
        );

        // 11 images in calls of at most 4: 3 calls per method, against 1 unsplit (vjp_of
        // denoises and takes the VJP once more each).
        let inner = split.inner_mut();
        assert_eq!(
            (inner.denoise_calls, inner.vjp_calls, inner.dense_calls),
            (6, 6, 3)
        );
        assert_eq!(
            (whole.denoise_calls, whole.vjp_calls, whole.dense_calls),
            (2, 3, 1)
        );
    }

    #[test]
    fn small_batches_pass_through_in_one_call() {
        let (x, sigma, mask) = batch(4);
        let mut split = Chunked::new(GaussianDenoiser::new([1, 3, 2], 0.0, 1.0), 4);
        split.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        assert_eq!(split.inner_mut().denoise_calls, 1);
        // max_rows 0 means one image per call rather than a division by zero.
        let mut single = Chunked::new(GaussianDenoiser::new([1, 3, 2], 0.0, 1.0), 0);
        single.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        assert_eq!(single.inner_mut().denoise_calls, 4);
    }
}
