//! Group norm + SiLU, forward and input gradient, each in one sweep over a group's memory:
//! the math of the `adps.GroupNormSiLU` / `adps.GroupNormSiLUGrad` kernels ([`super`]).
//!
//! For x of [B, C, H, W] in G groups of C/G channels, a and c of C or B·C values:
//!   z = (x − mean_g)·rstd_g·a + c,  out = z·σ(z),  rstd_g = 1/√(var_g + eps)
//! and for the gradient, with α = a·rstd_g, u = dout·σ'(z)·α where σ'(z) = s + out·(1 − s):
//!   dx = u − mean_g(u) − (x − mean_g)·rstd_g²·mean_g(u·(x − mean_g)).
//!
//! Why by hand: ONNX Runtime runs the same math written out in standard ops as ≈ 30 kernels
//! per instance, each a pass over the tensor (issue #14); here a group (C/G·H·W values,
//! 16 KiB for 4 channels of 32×32) stays in the core's L1 cache while it is read two or
//! three times. The loops are plain Rust that LLVM vectorizes; [`exp`] is a polynomial so
//! that the SiLU vectorizes too (libm's `expf` does not). On CPUs with AVX2 but not
//! AVX-512 the same math runs as AVX2 intrinsics instead (module `avx2`, which says why). Statistics are summed around a
//! shift (the group's first value) so that E[x²] − E[x]² does not cancel, in f32 lanes
//! and then f64.

/// Shape of one call: x is `batch × channels × hw` values in C order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub batch: usize,
    pub channels: usize,
    /// H·W.
    pub hw: usize,
    pub groups: usize,
}

impl Layout {
    /// Values per group: C/G·H·W.
    fn group_len(&self) -> usize {
        self.channels / self.groups * self.hw
    }

    /// Why the layout or the buffer lengths cannot be computed on, if they cannot.
    pub fn check(&self, x: usize, a: usize, c: usize) -> Result<(), String> {
        let n = self.batch * self.channels * self.hw;
        if self.groups == 0 || !self.channels.is_multiple_of(self.groups) {
            return Err(format!(
                "{} channels do not split into {} groups",
                self.channels, self.groups
            ));
        }
        if x != n {
            return Err(format!("x has {x} values, expected {n}"));
        }
        let affine_ok = |len: usize| len == self.channels || len == self.batch * self.channels;
        if !affine_ok(a) || !affine_ok(c) {
            return Err(format!(
                "scale and shift have {a} and {c} values, expected C = {} or B·C = {}",
                self.channels,
                self.batch * self.channels
            ));
        }
        Ok(())
    }
}

/// exp(x) to ≈ 2e-7 relative error on [−87, 88] (clamped outside), branch-free so that
/// loops calling it vectorize: x = i·ln 2 + f, |f| ≤ ln 2 / 2, exp(f) by its degree-6
/// Taylor polynomial, 2^i put into the exponent bits. NaN in, NaN-or-garbage out, never UB.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer in the low bits
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let i = t - ROUND;
    let f = x - i * 0.693_145_75 - i * 1.428_606_8e-6; // ln 2 in two parts (Cody–Waite)
    let mut p = 1.0 / 720.0;
    p = p * f + 1.0 / 120.0;
    p = p * f + 1.0 / 24.0;
    p = p * f + 1.0 / 6.0;
    p = p * f + 0.5;
    p = p * f + 1.0;
    p = p * f + 1.0;
    // i's two's-complement bits are the low bits of t's mantissa.
    let i_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    f32::from_bits(p.to_bits().wrapping_add(i_bits << 23))
}

/// σ(z) = 1/(1 + e^−z).
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// Independent accumulators per sum: one f32 vector of AVX-512, two of AVX2.
const LANES: usize = 16;

/// Mean and (population) variance of one group.
#[inline(always)]
fn stats(x: &[f32]) -> (f32, f32) {
    let shift = x[0];
    let (mut s, mut q) = ([0f32; LANES], [0f32; LANES]);
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            let d = chunk[l] - shift;
            s[l] += d;
            q[l] += d * d;
        }
    }
    let mut sum: f64 = s.iter().map(|&v| v as f64).sum();
    let mut sq: f64 = q.iter().map(|&v| v as f64).sum();
    for &v in rest {
        let d = (v - shift) as f64;
        sum += d;
        sq += d * d;
    }
    let n = x.len() as f64;
    let m = sum / n;
    ((m + shift as f64) as f32, (sq / n - m * m).max(0.0) as f32)
}

/// The per-image or shared scale/shift index of channel `ch` of image `b`.
#[inline(always)]
fn affine_index(len: usize, channels: usize, b: usize, ch: usize) -> usize {
    if len == channels {
        ch
    } else {
        b * channels + ch
    }
}

/// One group's statistics, with each of its channels' normalization folded into the
/// affine: z = x·α + β with α = a·rstd, β = c − mean·α.
#[derive(Debug, Clone, Copy)]
struct Group {
    image: usize,
    first_channel: usize,
    mean: f32,
    rstd: f32,
}

impl Group {
    /// Group `t` of the batch (image t / G, group t % G), of mean and variance `stats`.
    #[inline(always)]
    fn new(l: Layout, t: usize, (mean, var): (f32, f32), eps: f32) -> Self {
        Group {
            image: t / l.groups,
            first_channel: t % l.groups * (l.channels / l.groups),
            mean,
            rstd: 1.0 / (var + eps).sqrt(),
        }
    }

    /// (α, β) of the group's `k`-th channel.
    #[inline(always)]
    fn affine(&self, a: &[f32], c: &[f32], channels: usize, k: usize) -> (f32, f32) {
        let ch = self.first_channel + k;
        let alpha = a[affine_index(a.len(), channels, self.image, ch)] * self.rstd;
        let beta = c[affine_index(c.len(), channels, self.image, ch)] - self.mean * alpha;
        (alpha, beta)
    }
}

/// out = z·σ(z) at one value of a channel of affine (α, β), with z = v·α + β.
#[inline(always)]
fn silu_value(v: f32, alpha: f32, beta: f32) -> f32 {
    let z = v * alpha + beta;
    z / (1.0 + exp(-z)) // z·σ(z) with one division
}

/// u = dout·σ'(z)·α at one value (the gradient's first sweep), σ'(z) = s + z·s·(1 − s).
#[inline(always)]
fn u_value(v: f32, d: f32, alpha: f32, beta: f32) -> f32 {
    let z = v * alpha + beta;
    let s = sigmoid(z);
    d * (s + z * s * (1.0 - s)) * alpha
}

/// [`forward`] as portable loops, the version for CPUs without AVX2 (also timed beside it
/// by `cargo bench --bench fused_kernels`).
#[inline(always)]
pub fn forward_portable(x: &[f32], a: &[f32], c: &[f32], l: Layout, eps: f32, out: &mut [f32]) {
    let n = l.group_len();
    for (t, (xg, og)) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)).enumerate() {
        let group = Group::new(l, t, stats(xg), eps);
        for (k, (xc, oc)) in xg
            .chunks_exact(l.hw)
            .zip(og.chunks_exact_mut(l.hw))
            .enumerate()
        {
            let (alpha, beta) = group.affine(a, c, l.channels, k);
            for (o, &v) in oc.iter_mut().zip(xc) {
                *o = silu_value(v, alpha, beta);
            }
        }
    }
}

/// [`backward`] as portable loops (see [`forward_portable`]).
#[inline(always)]
pub fn backward_portable(
    x: &[f32],
    a: &[f32],
    c: &[f32],
    dout: &[f32],
    l: Layout,
    eps: f32,
    dx: &mut [f32],
) {
    let n = l.group_len();
    let groups = x.chunks_exact(n).zip(dout.chunks_exact(n));
    for (t, ((xg, dg), ug)) in groups.zip(dx.chunks_exact_mut(n)).enumerate() {
        let group = Group::new(l, t, stats(xg), eps);
        let (mean, rstd) = (group.mean, group.rstd);
        // Sweep 1: u = dout·σ'(z)·α into dx (the group stays in cache), with Σu, Σu·(x−mean).
        let (mut sum_u, mut sum_ux) = (0f64, 0f64);
        let channels = xg.chunks_exact(l.hw).zip(dg.chunks_exact(l.hw));
        for (k, ((xc, dc), uc)) in channels.zip(ug.chunks_exact_mut(l.hw)).enumerate() {
            let (alpha, beta) = group.affine(a, c, l.channels, k);
            // Sums in LANES independent lanes: a single f32 accumulator is a serial chain
            // LLVM may not reorder, which would keep the whole loop scalar.
            let (mut su, mut sux) = ([0f32; LANES], [0f32; LANES]);
            let u_at = |u: &mut f32, v: f32, d: f32| -> (f32, f32) {
                let ui = u_value(v, d, alpha, beta);
                *u = ui;
                (ui, ui * (v - mean))
            };
            let mut uc_chunks = uc.chunks_exact_mut(LANES);
            let (xs, ds) = (xc.chunks_exact(LANES), dc.chunks_exact(LANES));
            let (x_rest, d_rest) = (xs.remainder(), ds.remainder());
            for ((u, x), d) in (&mut uc_chunks).zip(xs).zip(ds) {
                for l in 0..LANES {
                    let (a1, a2) = u_at(&mut u[l], x[l], d[l]);
                    su[l] += a1;
                    sux[l] += a2;
                }
            }
            for ((u, &v), &d) in uc_chunks
                .into_remainder()
                .iter_mut()
                .zip(x_rest)
                .zip(d_rest)
            {
                let (a1, a2) = u_at(u, v, d);
                su[0] += a1;
                sux[0] += a2;
            }
            sum_u += su.iter().map(|&v| v as f64).sum::<f64>();
            sum_ux += sux.iter().map(|&v| v as f64).sum::<f64>();
        }
        // Sweep 2: dx = u − mean(u) − (x − mean)·k.
        let mean_u = (sum_u / n as f64) as f32;
        let k = rstd * rstd * (sum_ux / n as f64) as f32;
        for (u, &v) in ug.iter_mut().zip(xg) {
            *u = *u - mean_u - (v - mean) * k;
        }
    }
}

/// Call the fastest version of a kernel this CPU runs: the release build targets baseline
/// x86-64 (SSE2), so the generic loops are also compiled with AVX-512 ([`x86`]), and on
/// CPUs with AVX2 + FMA but no AVX-512 the kernels written with AVX2 intrinsics
/// ([`avx2`]) run instead; all picked at run time.
macro_rules! dispatch {
    ($avx512:ident, $avx2:ident, $generic:ident($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the features the function is compiled for.
                return unsafe { x86::$avx512($($arg),*) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                return unsafe { avx2::$avx2($($arg),*) };
            }
        }
        $generic($($arg),*)
    }};
}

/// `out = silu(group_norm(x)·a + c)`; the lengths must pass [`Layout::check`].
pub fn forward(x: &[f32], a: &[f32], c: &[f32], l: Layout, eps: f32, out: &mut [f32]) {
    dispatch!(
        forward_avx512,
        forward,
        forward_portable(x, a, c, l, eps, out)
    )
}

/// `dx`, the gradient of ⟨dout, forward(x)⟩ with respect to x (a and c held fixed).
pub fn backward(
    x: &[f32],
    a: &[f32],
    c: &[f32],
    dout: &[f32],
    l: Layout,
    eps: f32,
    dx: &mut [f32],
) {
    dispatch!(
        backward_avx512,
        backward,
        backward_portable(x, a, c, dout, l, eps, dx)
    )
}

/// The generic loops compiled for AVX-512 (see `dispatch!`).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{backward_portable, forward_portable, Layout};

    #[target_feature(enable = "avx512f")]
    pub unsafe fn forward_avx512(
        x: &[f32],
        a: &[f32],
        c: &[f32],
        l: Layout,
        eps: f32,
        out: &mut [f32],
    ) {
        forward_portable(x, a, c, l, eps, out)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn backward_avx512(
        x: &[f32],
        a: &[f32],
        c: &[f32],
        dout: &[f32],
        l: Layout,
        eps: f32,
        dx: &mut [f32],
    ) {
        backward_portable(x, a, c, dout, l, eps, dx)
    }
}

/// The two kernels written with AVX2 + FMA intrinsics, the same math as the generic loops.
///
/// Why by hand: compiled for AVX2, the generic loops leave two costs that no portable code
/// removes. LLVM keeps the statistics' 16 lanes as scalars spilled to the stack, and
/// σ(z) = 1/(1 + e^−z) is a full-precision `vdivps`, whose latency the profile
/// (`perf annotate`) showed stalling the loop. Here the sums are two vector accumulators
/// and the reciprocal is `vrcpps` refined by one Newton step (relative error ≈ 2^−22,
/// like the division's), FMAs throughout. AMD Zen 3, one call of 4 images:
/// forward 1.84 → 0.75 ns per value, gradient 2.62 → 1.17 ns (`cargo bench --bench
/// fused_kernels`).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{silu_value, u_value, Group, Layout};

    /// Values per vector.
    const W: usize = 8;

    /// [`super::exp`] on 8 lanes, with FMAs.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        let round = _mm256_set1_ps(12_582_912.0);
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
            _mm256_set1_ps(88.0),
        );
        let t = _mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), round);
        let i = _mm256_sub_ps(t, round);
        let f = _mm256_fnmadd_ps(i, _mm256_set1_ps(0.693_145_75), x);
        let f = _mm256_fnmadd_ps(i, _mm256_set1_ps(1.428_606_8e-6), f);
        let mut p = _mm256_set1_ps(1.0 / 720.0);
        for k in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(k));
        }
        let i_bits = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(round));
        _mm256_castsi256_ps(_mm256_add_epi32(
            _mm256_castps_si256(p),
            _mm256_slli_epi32::<23>(i_bits),
        ))
    }

    /// σ(z) = 1/(1 + e^−z): `vrcpps` (12 bits) and one Newton step r·(2 − d·r).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sigmoid8(z: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let d = _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), z)));
        let r = _mm256_rcp_ps(d);
        _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0)))
    }

    /// The lanes' sum, in f64.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sum8(v: __m256) -> f64 {
        let mut lanes = [0f32; W];
        // SAFETY: `lanes` holds W floats; unaligned store.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.iter().map(|&v| v as f64).sum()
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load(s: &[f32], i: usize) -> __m256 {
        assert!(i + W <= s.len());
        // SAFETY: bounds checked above; unaligned load.
        unsafe { _mm256_loadu_ps(s.as_ptr().add(i)) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn store(s: &mut [f32], i: usize, v: __m256) {
        assert!(i + W <= s.len());
        // SAFETY: bounds checked above; unaligned store.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr().add(i), v) }
    }

    /// [`super::stats`]: mean and variance around a shift, two vector accumulators each.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn stats(x: &[f32]) -> (f32, f32) {
        let shift = x[0];
        let vshift = _mm256_set1_ps(shift);
        let (mut s0, mut s1, mut q0, mut q1) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let body = x.len() / (2 * W) * (2 * W);
        for i in (0..body).step_by(2 * W) {
            let d0 = _mm256_sub_ps(load(x, i), vshift);
            let d1 = _mm256_sub_ps(load(x, i + W), vshift);
            s0 = _mm256_add_ps(s0, d0);
            s1 = _mm256_add_ps(s1, d1);
            q0 = _mm256_fmadd_ps(d0, d0, q0);
            q1 = _mm256_fmadd_ps(d1, d1, q1);
        }
        let mut sum = sum8(s0) + sum8(s1);
        let mut sq = sum8(q0) + sum8(q1);
        for &v in &x[body..] {
            let d = (v - shift) as f64;
            sum += d;
            sq += d * d;
        }
        let n = x.len() as f64;
        let m = sum / n;
        ((m + shift as f64) as f32, (sq / n - m * m).max(0.0) as f32)
    }

    /// [`super::forward`] for CPUs with AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    pub fn forward(x: &[f32], a: &[f32], c: &[f32], l: Layout, eps: f32, out: &mut [f32]) {
        let n = l.group_len();
        let body = l.hw / W * W;
        for (t, (xg, og)) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)).enumerate() {
            let group = Group::new(l, t, stats(xg), eps);
            for (k, (xc, oc)) in xg
                .chunks_exact(l.hw)
                .zip(og.chunks_exact_mut(l.hw))
                .enumerate()
            {
                let (alpha, beta) = group.affine(a, c, l.channels, k);
                let (va, vb) = (_mm256_set1_ps(alpha), _mm256_set1_ps(beta));
                for i in (0..body).step_by(W) {
                    let z = _mm256_fmadd_ps(load(xc, i), va, vb);
                    store(oc, i, _mm256_mul_ps(z, sigmoid8(z)));
                }
                for (o, &v) in oc[body..].iter_mut().zip(&xc[body..]) {
                    *o = silu_value(v, alpha, beta);
                }
            }
        }
    }

    /// [`super::backward`] for CPUs with AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    pub fn backward(
        x: &[f32],
        a: &[f32],
        c: &[f32],
        dout: &[f32],
        l: Layout,
        eps: f32,
        dx: &mut [f32],
    ) {
        let n = l.group_len();
        let body = l.hw / W * W;
        let one = _mm256_set1_ps(1.0);
        let groups = x.chunks_exact(n).zip(dout.chunks_exact(n));
        for (t, ((xg, dg), ug)) in groups.zip(dx.chunks_exact_mut(n)).enumerate() {
            let group = Group::new(l, t, stats(xg), eps);
            let (mean, rstd) = (group.mean, group.rstd);
            let vmean = _mm256_set1_ps(mean);
            // Sweep 1: u = dout·σ'(z)·α into dx, with Σu and Σu·(x − mean).
            let (mut sum_u, mut sum_ux) = (0f64, 0f64);
            let channels = xg.chunks_exact(l.hw).zip(dg.chunks_exact(l.hw));
            for (k, ((xc, dc), uc)) in channels.zip(ug.chunks_exact_mut(l.hw)).enumerate() {
                let (alpha, beta) = group.affine(a, c, l.channels, k);
                let (va, vb) = (_mm256_set1_ps(alpha), _mm256_set1_ps(beta));
                let (mut su, mut sux) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for i in (0..body).step_by(W) {
                    let v = load(xc, i);
                    let z = _mm256_fmadd_ps(v, va, vb);
                    let s = sigmoid8(z);
                    // σ'(silu) = s + z·s·(1 − s)
                    let zs = _mm256_mul_ps(z, s);
                    let grad = _mm256_fmadd_ps(zs, _mm256_sub_ps(one, s), s);
                    let u = _mm256_mul_ps(_mm256_mul_ps(load(dc, i), grad), va);
                    store(uc, i, u);
                    su = _mm256_add_ps(su, u);
                    sux = _mm256_fmadd_ps(u, _mm256_sub_ps(v, vmean), sux);
                }
                sum_u += sum8(su);
                sum_ux += sum8(sux);
                for ((u, &v), &d) in uc[body..].iter_mut().zip(&xc[body..]).zip(&dc[body..]) {
                    let ui = u_value(v, d, alpha, beta);
                    *u = ui;
                    sum_u += ui as f64;
                    sum_ux += (ui * (v - mean)) as f64;
                }
            }
            // Sweep 2: dx = u − mean(u) − (x − mean)·k.
            let mean_u = (sum_u / n as f64) as f32;
            let k = rstd * rstd * (sum_ux / n as f64) as f32;
            let (vk, vmean_u) = (_mm256_set1_ps(k), _mm256_set1_ps(mean_u));
            let body_g = n / W * W;
            for i in (0..body_g).step_by(W) {
                let centred = _mm256_sub_ps(load(xg, i), vmean);
                let u = _mm256_fnmadd_ps(centred, vk, load(ug, i));
                store(ug, i, _mm256_sub_ps(u, vmean_u));
            }
            for (u, &v) in ug[body_g..].iter_mut().zip(&xg[body_g..]) {
                *u = *u - mean_u - (v - mean) * k;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::test_util::randn;

    /// The textbook forward in f64, one value at a time.
    fn reference(x: &[f32], a: &[f32], c: &[f32], l: Layout, eps: f64) -> Vec<f64> {
        let n = l.group_len();
        let mut out = vec![0.0; x.len()];
        for t in 0..l.batch * l.groups {
            let (b, g) = (t / l.groups, t % l.groups);
            let xg: Vec<f64> = x[t * n..(t + 1) * n].iter().map(|&v| v as f64).collect();
            let mean = xg.iter().sum::<f64>() / n as f64;
            let var = xg.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            for (i, v) in xg.iter().enumerate() {
                let ch = g * (l.channels / l.groups) + i / l.hw;
                let ai = affine_index(a.len(), l.channels, b, ch);
                let z = (v - mean) / (var + eps).sqrt() * a[ai] as f64 + c[ai] as f64;
                out[t * n + i] = z / (1.0 + (-z).exp());
            }
        }
        out
    }

    fn layouts() -> [(Layout, bool); 3] {
        [
            // Odd H·W (a vector tail), shared affine.
            (
                Layout {
                    batch: 3,
                    channels: 8,
                    hw: 25,
                    groups: 2,
                },
                false,
            ),
            // Per-image affine (a noise-conditioned block).
            (
                Layout {
                    batch: 2,
                    channels: 16,
                    hw: 64,
                    groups: 4,
                },
                true,
            ),
            // One channel per group, H·W of one vector.
            (
                Layout {
                    batch: 1,
                    channels: 4,
                    hw: 16,
                    groups: 4,
                },
                true,
            ),
        ]
    }

    fn inputs(l: Layout, per_image: bool, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let n = l.batch * l.channels * l.hw;
        let affine = if per_image {
            l.batch * l.channels
        } else {
            l.channels
        };
        // Values away from 0 (a mean of 3) so that the statistics' shift matters.
        let x = randn(n, seed).iter().map(|v| 2.0 * v + 3.0).collect();
        (x, randn(affine, seed + 1), randn(affine, seed + 2))
    }

    #[test]
    fn exp_is_accurate_over_its_range() {
        let mut worst = 0.0f64;
        for k in 0..=35_000 {
            let x = -87.0 + k as f32 * 0.005;
            let rel = ((exp(x) as f64) - (x as f64).exp()).abs() / (x as f64).exp();
            worst = worst.max(rel);
        }
        assert!(worst < 1e-6, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(
            exp(-200.0) < 1e-37 && exp(200.0) > 1e38,
            "clamped, not wrapped"
        );
    }

    #[test]
    fn forward_matches_the_textbook_group_norm_and_silu() {
        for (i, (l, per_image)) in layouts().into_iter().enumerate() {
            let (x, a, c) = inputs(l, per_image, 10 * i as u64);
            l.check(x.len(), a.len(), c.len()).unwrap();
            let mut out = vec![0.0; x.len()];
            forward(&x, &a, &c, l, 1e-5, &mut out);
            let want = reference(&x, &a, &c, l, 1e-5);
            for (k, (&got, &want)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{l:?} value {k}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn backward_matches_central_differences_of_the_forward() {
        for (i, (l, per_image)) in layouts().into_iter().enumerate() {
            let (x, a, c) = inputs(l, per_image, 10 * i as u64 + 5);
            let dout = randn(x.len(), 99);
            let mut dx = vec![0.0; x.len()];
            backward(&x, &a, &c, &dout, l, 1e-5, &mut dx);
            // ⟨dout, f(x)⟩ in f64 at x ± h·e_k.
            let objective = |x: &[f32]| -> f64 {
                let y = reference(x, &a, &c, l, 1e-5);
                y.iter().zip(&dout).map(|(y, &d)| y * d as f64).sum()
            };
            let n = x.len();
            for k in [0, 1, n / 3, n / 2 + 1, n - 1] {
                let h = 1e-2f32;
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[k] += h;
                xm[k] -= h;
                let fd = (objective(&xp) - objective(&xm)) / (xp[k] - xm[k]) as f64;
                assert!(
                    (dx[k] as f64 - fd).abs() <= 2e-3 * (1.0 + fd.abs()),
                    "{l:?} value {k}: analytic {} vs central difference {fd}",
                    dx[k]
                );
            }
        }
    }

    /// The AVX2 kernels agree with the generic loops (run on every CPU with AVX2 + FMA,
    /// AVX-512 ones included, which `dispatch!` sends elsewhere).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernels_agree_with_the_generic_loops() {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            return;
        }
        for (i, (l, per_image)) in layouts().into_iter().enumerate() {
            let (x, a, c) = inputs(l, per_image, 10 * i as u64 + 7);
            let dout = randn(x.len(), 98);
            let (mut want, mut got) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            forward_portable(&x, &a, &c, l, 1e-5, &mut want);
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { avx2::forward(&x, &a, &c, l, 1e-5, &mut got) };
            let close = |g: f32, w: f32| (g - w).abs() <= 2e-6 * (1.0 + w.abs());
            for (k, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(close(g, w), "forward {l:?} value {k}: {g} vs {w}");
            }
            backward_portable(&x, &a, &c, &dout, l, 1e-5, &mut want);
            // SAFETY: as above.
            unsafe { avx2::backward(&x, &a, &c, &dout, l, 1e-5, &mut got) };
            for (k, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(close(g, w), "backward {l:?} value {k}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn bad_layouts_are_refused_with_the_reason() {
        let l = Layout {
            batch: 2,
            channels: 6,
            hw: 4,
            groups: 4,
        };
        assert!(l
            .check(48, 6, 6)
            .unwrap_err()
            .contains("6 channels do not split into 4 groups"));
        let l = Layout { groups: 3, ..l };
        assert!(l
            .check(47, 6, 6)
            .unwrap_err()
            .contains("x has 47 values, expected 48"));
        assert!(l
            .check(48, 5, 6)
            .unwrap_err()
            .contains("expected C = 6 or B·C = 12"));
        assert!(l.check(48, 12, 6).is_ok());
    }
}
