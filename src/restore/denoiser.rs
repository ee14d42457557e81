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

/// How many images one model call takes (`Chunked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRows {
    /// At most n: a larger batch is split into consecutive calls of n, the last shorter.
    AtMost(usize),
    /// Exactly n: as `AtMost`, and a shorter call is padded to n rows with copies of its
    /// last image, whose outputs are dropped.
    Exactly(usize),
}

impl CallRows {
    /// The most rows of one call; 0 is taken as 1.
    pub fn rows(self) -> usize {
        match self {
            CallRows::AtMost(n) | CallRows::Exactly(n) => n.max(1),
        }
    }
}

impl std::fmt::Display for CallRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallRows::AtMost(n) if *n == usize::MAX => f.write_str("the whole batch"),
            CallRows::AtMost(n) => write!(f, "at most {n}"),
            CallRows::Exactly(n) => write!(f, "exactly {n}"),
        }
    }
}

/// A [`Denoiser`] whose model calls take a set number of images ([`CallRows`]): a larger
/// batch is split into consecutive calls and the outputs are put back in order.
///
/// Why split: on a CPU, ONNX Runtime's cost per image of a gradient graph grows past a few
/// images per call (activations leave the cache), so a restore batch of 32 runs faster as
/// eight calls of 4 (`WorkerLayout::call_rows`; README, performance).
///
/// Why pad (`CallRows::Exactly`): ONNX Runtime's CPU kernels round differently for calls
/// of different row counts (a one-row call takes a matrix–vector path; other sizes differ
/// in the last bits too), while within one call shape an image's outputs do not depend on
/// its place or on the other images. The sampler amplifies those last bits with the step
/// count, and at 200 Euler steps an image restored alone or in a batch of 8 could end
/// as two different restorations (up to 1.0 per pixel on the clean model at `cs:256`).
/// With every call of one shape an image restores to the same bits in any batch, shard
/// or worker; the price is the padded rows of a batch that is not a multiple of n.
#[derive(Debug)]
pub struct Chunked<D> {
    inner: D,
    rows: CallRows,
}

/// Rows `rows` of `a`, padded to `to` rows with copies of the last one (a view when no
/// padding is needed).
fn rows_padded<'a, Dim: ndarray::RemoveAxis>(
    a: ndarray::ArrayView<'a, f32, Dim>,
    rows: &std::ops::Range<usize>,
    to: usize,
) -> anyhow::Result<ndarray::CowArray<'a, f32, Dim>> {
    let part = a
        .clone()
        .slice_axis_move(ndarray::Axis(0), ndarray::Slice::from(rows.clone()));
    if rows.len() >= to {
        return Ok(part.into());
    }
    let last = a.slice_axis_move(
        ndarray::Axis(0),
        ndarray::Slice::from(rows.end - 1..rows.end),
    );
    let mut parts = vec![part];
    parts.extend(std::iter::repeat_n(last, to - rows.len()));
    Ok(ndarray::concatenate(ndarray::Axis(0), &parts)?.into())
}

/// The first `n` rows of `a`.
fn first_rows<Dim: ndarray::RemoveAxis>(
    a: ndarray::Array<f32, Dim>,
    n: usize,
) -> ndarray::Array<f32, Dim> {
    if a.len_of(ndarray::Axis(0)) == n {
        a
    } else {
        a.slice_axis_move(ndarray::Axis(0), ndarray::Slice::from(0..n))
    }
}

impl<D: Denoiser> Chunked<D> {
    pub fn new(inner: D, rows: CallRows) -> Self {
        Self { inner, rows }
    }

    /// The wrapped denoiser, e.g. to read its counters.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Changes the call size, e.g. for a benchmark that runs several batch sizes.
    pub fn set_rows(&mut self, rows: CallRows) {
        self.rows = rows;
    }

    /// Whether a batch of `b` images is one model call as it stands (no split, no
    /// padding): then it goes to the inner denoiser without copies (a GPU's whole batch,
    /// a CPU batch of exactly the call size).
    fn one_call(&self, b: usize) -> bool {
        match self.rows {
            CallRows::AtMost(n) => b <= n.max(1),
            CallRows::Exactly(n) => b == n.max(1),
        }
    }

    /// The row ranges of a batch of `b` images, one per model call, and the number of
    /// rows each call is given (padded or not).
    fn calls(&self, b: usize) -> Vec<(std::ops::Range<usize>, usize)> {
        let step = self.rows.rows();
        (0..b)
            .step_by(step)
            .map(|start| {
                let rows = start..(start + step).min(b);
                let given = match self.rows {
                    CallRows::Exactly(n) => n.max(1),
                    CallRows::AtMost(_) => rows.len(),
                };
                (rows, given)
            })
            .collect()
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
        if self.one_call(x_t.dim().0) {
            return self.inner.denoise(x_t, sigma, mask);
        }
        let mut x0_hat = Array4::zeros(x_t.raw_dim());
        for (rows, given) in self.calls(x_t.dim().0) {
            let part = self.inner.denoise(
                rows_padded(x_t, &rows, given)?.view(),
                rows_padded(sigma, &rows, given)?.view(),
                rows_padded(mask, &rows, given)?.view(),
            )?;
            put_rows(&mut x0_hat, &rows, &first_rows(part, rows.len()), "x0_hat")?;
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
        if self.one_call(x_t.dim().0) {
            return self.inner.vjp(x_t, sigma, mask, cotangent);
        }
        let mut x0_hat = Array4::zeros(x_t.raw_dim());
        let mut vjp = Array4::zeros(x_t.raw_dim());
        for (rows, given) in self.calls(x_t.dim().0) {
            let (x0, v) = self.inner.vjp(
                rows_padded(x_t, &rows, given)?.view(),
                rows_padded(sigma, &rows, given)?.view(),
                rows_padded(mask, &rows, given)?.view(),
                rows_padded(cotangent, &rows, given)?.view(),
            )?;
            put_rows(&mut x0_hat, &rows, &first_rows(x0, rows.len()), "x0_hat")?;
            put_rows(&mut vjp, &rows, &first_rows(v, rows.len()), "vjp")?;
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
        if self.one_call(x_t.dim().0) {
            return self.inner.vjp_of(x_t, sigma, mask, cotangent_of);
        }
        let mut x0_hat = Array4::zeros(x_t.raw_dim());
        let mut vjp = Array4::zeros(x_t.raw_dim());
        for (rows, given) in self.calls(x_t.dim().0) {
            // The cotangent of the real rows; a padding row gets zeros (its output is
            // dropped, and rows are independent).
            let mut of_call = |first: usize, x0: ArrayView4<f32>| -> anyhow::Result<Array4<f32>> {
                let real = rows.len().saturating_sub(first).min(x0.dim().0);
                let mut c = Array4::zeros(x0.raw_dim());
                if real > 0 {
                    let part = cotangent_of(
                        rows.start + first,
                        x0.slice(ndarray::s![..real, .., .., ..]),
                    )?;
                    c.slice_mut(ndarray::s![..real, .., .., ..]).assign(&part);
                }
                Ok(c)
            };
            let (x0, v) = self.inner.vjp_of(
                rows_padded(x_t, &rows, given)?.view(),
                rows_padded(sigma, &rows, given)?.view(),
                rows_padded(mask, &rows, given)?.view(),
                &mut of_call,
            )?;
            put_rows(&mut x0_hat, &rows, &first_rows(x0, rows.len()), "x0_hat")?;
            put_rows(&mut vjp, &rows, &first_rows(v, rows.len()), "vjp")?;
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
        if self.one_call(b) {
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
        for (rows, given) in self.calls(b) {
            let part = self.inner.dense(
                rows_padded(x_t, &rows, given)?.view(),
                rows_padded(sigma, &rows, given)?.view(),
                rows_padded(mask, &rows, given)?.view(),
                rows_padded(y, &rows, given)?.view(),
                a,
            )?;
            let n = rows.len();
            put_rows(&mut x0_hat, &rows, &first_rows(part.x0_hat, n), "x0_hat")?;
            put_rows(&mut grad, &rows, &first_rows(part.grad, n), "grad")?;
            anyhow::ensure!(
                part.residual_sq.len() == given,
                "residual_sq for images {}..{} has {} entries",
                rows.start,
                rows.end,
                part.residual_sq.len()
            );
            residual_sq
                .slice_mut(ndarray::s![rows.clone()])
                .assign(&part.residual_sq.slice(ndarray::s![..n]));
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

    /// Runs every method on `b` images through `Chunked` with `rows` and unsplit, asserts
    /// the outputs are the same, and returns both denoisers (with their counters) and
    /// the (first row, rows) the cotangent of `vjp_of` was asked for through `Chunked`.
    fn same_as_one_call(
        rows: CallRows,
        b: usize,
    ) -> (
        Chunked<GaussianDenoiser>,
        GaussianDenoiser,
        Vec<(usize, usize)>,
    ) {
        let (x, sigma, mask) = batch(b);
        let a = Array2::from_shape_fn((4, 6), |(m, n)| ((m * 6 + n) as f32 * 0.7).cos());
        let y = Array2::from_shape_fn((b, 4), |(i, m)| (i as f32 - m as f32) * 0.1);
        let cot = x.mapv(|v| 1.0 - v);
        let mut whole = GaussianDenoiser::new([1, 3, 2], 0.1, 0.8);
        let mut split = Chunked::new(GaussianDenoiser::new([1, 3, 2], 0.1, 0.8), rows);
        let (x, s, m) = (x.view(), sigma.view(), mask.view());

        let d1 = whole.denoise(x, s, m).unwrap();
        assert_eq!(d1, split.denoise(x, s, m).unwrap());
        let v1 = whole.vjp(x, s, m, cot.view()).unwrap();
        assert_eq!(v1, split.vjp(x, s, m, cot.view()).unwrap());
        let g1 = whole.dense(x, s, m, y.view(), a.view()).unwrap();
        let g2 = split.dense(x, s, m, y.view(), a.view()).unwrap();
        assert_eq!((g1.x0_hat, g1.grad), (g2.x0_hat, g2.grad));
        assert_eq!(g1.residual_sq, g2.residual_sq);
        // vjp_of hands each call's rows to the cotangent with their place in the batch.
        let asked = std::cell::RefCell::new(Vec::new());
        let mut of = |first: usize, x0: ArrayView4<f32>| {
            asked.borrow_mut().push((first, x0.dim().0));
            let rows = ndarray::s![first..first + x0.dim().0, .., .., ..];
            Ok(x0.mapv(|v| v * 2.0) - cot.slice(rows))
        };
        let w1 = whole.vjp_of(x, s, m, &mut of).unwrap();
        asked.borrow_mut().clear();
        assert_eq!(w1, split.vjp_of(x, s, m, &mut of).unwrap());
        // … and is the VJP of that cotangent.
        let c = d1.mapv(|v| v * 2.0) - &cot;
        assert_eq!(w1.1, whole.vjp(x, s, m, c.view()).unwrap().1);
        (split, whole, asked.into_inner())
    }

    #[test]
    fn chunked_calls_match_one_call_row_for_row() {
        let (mut split, whole, asked) = same_as_one_call(CallRows::AtMost(4), 11);
        assert_eq!(asked, vec![(0, 4), (4, 4), (8, 3)]);
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
        assert_eq!(inner.call_sizes[..3], [4, 4, 3]);
    }

    #[test]
    fn small_batches_pass_through_in_one_call() {
        let (x, sigma, mask) = batch(4);
        let mut split = Chunked::new(
            GaussianDenoiser::new([1, 3, 2], 0.0, 1.0),
            CallRows::AtMost(4),
        );
        split.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        assert_eq!(split.inner_mut().denoise_calls, 1);
        // max_rows 0 means one image per call rather than a division by zero.
        let mut single = Chunked::new(
            GaussianDenoiser::new([1, 3, 2], 0.0, 1.0),
            CallRows::AtMost(0),
        );
        single.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        assert_eq!(single.inner_mut().denoise_calls, 4);
    }

    #[test]
    fn exact_calls_pad_the_last_call_and_drop_the_padding() {
        // 6 images: a call of 4 and one of 2 padded to 4; the cotangent is asked for real
        // rows only, and every call the model sees has 4 rows.
        let (mut padded, mut whole, asked) = same_as_one_call(CallRows::Exactly(4), 6);
        assert_eq!(asked, vec![(0, 4), (4, 2)]);
        let sizes = &padded.inner_mut().call_sizes;
        assert!(sizes.iter().all(|&n| n == 4), "{sizes:?}");
        // One image alone is one call of 4 too, with the same output as in the batch.
        let (x, sigma, mask) = batch(6);
        let alone = padded
            .denoise(
                x.slice(ndarray::s![5..6, .., .., ..]),
                sigma.slice(ndarray::s![5..6]),
                mask.slice(ndarray::s![5..6, .., .., ..]),
            )
            .unwrap();
        assert_eq!(padded.inner_mut().call_sizes.last(), Some(&4));
        let all = whole.denoise(x.view(), sigma.view(), mask.view()).unwrap();
        assert_eq!(alone, all.slice(ndarray::s![5..6, .., .., ..]));
    }
}
