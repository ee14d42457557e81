//! 3×3 convolutions (stride 1, zero padding 1, one group) by Winograd's minimal filtering
//! F(2×2, 3×3): the math of the `adps.Conv3x3` kernel ([`super`]).
//!
//! Each 2×2 block of outputs (a *tile*) of output channel k is
//!
//!   Y = Aᵀ [ Σ_c U_kc ⊙ V_c ] A,   U_kc = G g_kc Gᵀ,   V_c = Bᵀ d_c B,
//!
//! with g_kc the 3×3 kernel and d_c the 4×4 input patch under the tile (Lavin & Gray 2016):
//! 16 multiplications per tile and channel pair instead of direct convolution's 36, 2.25×
//! fewer. For each of the 16 positions ξ of U and V the sum over c is a matrix product,
//! M_ξ (tiles × K) = V_ξ (tiles × C) · U_ξ (C × K), where the time goes: a register-blocked
//! micro-kernel (6 tiles × 16 output channels, module `avx2`) runs it. The weights are
//! transformed once per kernel ([`Weights::new`], in f64), the inputs and outputs per call,
//! a chunk of tile rows at a time so that a chunk's V and M stay in the core's L2 cache.
//! V and M hold channels innermost, so both transforms run on 8 channels per vector
//! whatever the image's width; 8×8 transposes move rows between that layout and NCHW.
//! A tile's outputs depend on its own patch only, never on the chunk or the call it is in.
//!
//! Why by hand: ONNX Runtime's CPU convolution (MLAS, NCHWc) is a direct convolution that
//! already runs at ≈ 92% of one core's SGEMM on these layers (README, Performance), so the
//! only way to convolve faster is fewer multiplications, and no maintained Rust crate does
//! Winograd convolution; NNPACK's (through torch) transforms the weights on every call and
//! runs these small layers at 63–75 GFLOP/s (models/bench/conv_engines.py).
//!
//! Accuracy: F(2×2, 3×3)'s transforms only add, subtract and halve (the ½ of G is exact),
//! so its float32 error stays within a small multiple of direct convolution's; the tests
//! check it against a float64 direct convolution.

/// Tiles per micro-kernel block (rows of M).
const TILE_BLOCK: usize = 6;
/// Output channels per micro-kernel block (columns of M), two AVX2 vectors.
const K_PANEL: usize = 16;
/// Tiles per chunk, about: V and M of a chunk of 48 tiles at 96 channels are 288 KiB each.
const CHUNK_TILES: usize = 48;
/// Positions of the 4×4 transformed tile.
const XI: usize = 16;
/// Floats between consecutive ξ blocks of V and M beyond their size: a block of 48 tiles ×
/// 64 channels is 12 KiB, and 16 streams 12 KiB apart all fall into one set of the L1
/// cache (4 KiB apart, 8 ways), which the transforms thrash reading or writing all ξ of a
/// tile; a cache line more moves each block to another set.
const XI_PAD: usize = 16;

/// Shape of one call: x is [batch, c_in, h, w], y is [batch, c_out, h, w], in C order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub h: usize,
    pub w: usize,
}

impl ConvShape {
    fn tiles_wide(&self) -> usize {
        self.w.div_ceil(2)
    }

    fn tiles_high(&self) -> usize {
        self.h.div_ceil(2)
    }
}

/// Transformed kernels U (laid out for the micro-kernel) and the bias.
#[derive(Debug, Clone)]
pub struct Weights {
    c_in: usize,
    c_out: usize,
    /// ⌈c_out / 16⌉.
    panels: usize,
    /// U[ξ][panel][c][16], output channels past c_out zero.
    u: Vec<f32>,
    /// c_out values (zeros when the node has no bias).
    bias: Vec<f32>,
}

impl Weights {
    /// From ONNX Conv weights [c_out, c_in, 3, 3] and an optional bias [c_out].
    pub fn new(w: &[f32], bias: Option<&[f32]>, c_out: usize, c_in: usize) -> Result<Self, String> {
        if c_out == 0 || c_in == 0 || w.len() != c_out * c_in * 9 {
            return Err(format!(
                "weights have {} values, expected c_out·c_in·9 = {c_out}·{c_in}·9",
                w.len()
            ));
        }
        if let Some(b) = bias {
            if b.len() != c_out {
                return Err(format!("bias has {} values, expected {c_out}", b.len()));
            }
        }
        const G: [[f64; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let panels = c_out.div_ceil(K_PANEL);
        let mut u = vec![0f32; XI * panels * c_in * K_PANEL];
        for k in 0..c_out {
            for c in 0..c_in {
                let g = &w[(k * c_in + c) * 9..][..9];
                // G g Gᵀ, in f64 and rounded once.
                let mut gg = [[0f64; 3]; 4];
                for (i, row) in gg.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|l| G[i][l] * g[l * 3 + j] as f64).sum();
                    }
                }
                for (i, gg_i) in gg.iter().enumerate() {
                    for (j, g_j) in G.iter().enumerate() {
                        let v: f64 = (0..3).map(|l| gg_i[l] * g_j[l]).sum();
                        let xi = i * 4 + j;
                        let (p, lane) = (k / K_PANEL, k % K_PANEL);
                        u[((xi * panels + p) * c_in + c) * K_PANEL + lane] = v as f32;
                    }
                }
            }
        }
        Ok(Self {
            c_in,
            c_out,
            panels,
            u,
            bias: bias.map_or_else(|| vec![0.0; c_out], <[f32]>::to_vec),
        })
    }

    pub fn c_out(&self) -> usize {
        self.c_out
    }
}

/// Buffers a kernel keeps between calls (a chunk's V and M, the staged input rows), so a
/// call allocates nothing once they have grown.
#[derive(Debug, Default)]
pub struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
    rows: Vec<f32>,
}

/// Why `x`, `y` and `weights` do not fit `shape`, if they do not.
pub fn check(x: usize, y: usize, weights: &Weights, shape: ConvShape) -> Result<(), String> {
    if shape.c_in != weights.c_in || shape.c_out != weights.c_out {
        return Err(format!(
            "x has {} channels and y {}, the weights are {}→{}",
            shape.c_in, shape.c_out, weights.c_in, weights.c_out
        ));
    }
    let plane = shape.h * shape.w;
    if x != shape.batch * shape.c_in * plane || y != shape.batch * shape.c_out * plane {
        return Err(format!("x has {x} values and y {y}, expected {shape:?}"));
    }
    Ok(())
}

/// y = conv3x3(x, w) + bias. The lengths must pass [`check`].
pub fn conv(x: &[f32], weights: &Weights, shape: ConvShape, y: &mut [f32], scratch: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx2::conv(x, weights, shape, y, scratch) };
        }
    }
    conv_portable(x, weights, shape, y, scratch)
}

/// [`conv`] with the portable micro-kernel (any CPU; the tests compare the two).
pub fn conv_portable(
    x: &[f32],
    weights: &Weights,
    shape: ConvShape,
    y: &mut [f32],
    scratch: &mut Scratch,
) {
    conv_with::<Portable>(x, weights, shape, y, scratch)
}

/// Channels per lane group of the transforms (one AVX2 vector).
const LANES: usize = 8;

/// The three inner loops that differ between the portable build and AVX2: the product's
/// micro-kernel and the two 8-channel transposes between NCHW and the transforms'
/// channel-last layout.
trait Simd {
    /// M[t][k] = Σ_c V[t][c]·U[c][k] for a block of 6 tiles and 16 output channels, with V
    /// at `v` (row stride `v_stride`), U at `u` (rows of 16) and M at `m` (row stride
    /// `m_stride`); `c_in` columns of V, rows of U.
    fn block(v: &[f32], v_stride: usize, u: &[f32], c_in: usize, m: &mut [f32], m_stride: usize);
    /// dst[col·8 + l] = src[l·stride + col] for 8 channels l and `w` columns.
    fn gather8(src: &[f32], stride: usize, w: usize, dst: &mut [f32]);
    /// dst[l·stride + col] = src[col·8 + l] for 8 channels l and `w` columns.
    fn scatter8(src: &[f32], w: usize, dst: &mut [f32], stride: usize);
}

struct Portable;

impl Simd for Portable {
    fn block(v: &[f32], v_stride: usize, u: &[f32], c_in: usize, m: &mut [f32], m_stride: usize) {
        block_portable(v, v_stride, u, c_in, m, m_stride)
    }

    fn gather8(src: &[f32], stride: usize, w: usize, dst: &mut [f32]) {
        for l in 0..LANES {
            gather_lane(src, stride, w, dst, l);
        }
    }

    fn scatter8(src: &[f32], w: usize, dst: &mut [f32], stride: usize) {
        for l in 0..LANES {
            scatter_lane(src, w, dst, stride, l);
        }
    }
}

/// One channel of [`Simd::gather8`] (also the partial last group of channels).
#[inline(always)]
fn gather_lane(src: &[f32], stride: usize, w: usize, dst: &mut [f32], l: usize) {
    for (col, &val) in src[l * stride..][..w].iter().enumerate() {
        dst[col * LANES + l] = val;
    }
}

/// One channel of [`Simd::scatter8`].
#[inline(always)]
fn scatter_lane(src: &[f32], w: usize, dst: &mut [f32], stride: usize, l: usize) {
    for (col, d) in dst[l * stride..][..w].iter_mut().enumerate() {
        *d = src[col * LANES + l];
    }
}

#[inline(always)]
fn block_portable(
    v: &[f32],
    v_stride: usize,
    u: &[f32],
    c_in: usize,
    m: &mut [f32],
    m_stride: usize,
) {
    let mut acc = [[0f32; K_PANEL]; TILE_BLOCK];
    for c in 0..c_in {
        let uc = &u[c * K_PANEL..][..K_PANEL];
        for (t, row) in acc.iter_mut().enumerate() {
            let a = v[t * v_stride + c];
            for (r, &b) in row.iter_mut().zip(uc) {
                *r += a * b;
            }
        }
    }
    for (t, row) in acc.iter().enumerate() {
        m[t * m_stride..][..K_PANEL].copy_from_slice(row);
    }
}

/// The driver: per chunk of tile rows, input transform, 16 products, output transform.
/// V is laid out [ξ][t][c] and M [ξ][t][k], channels contiguous, so that both transforms
/// run on 8 channels at once whatever the image's width.
#[inline(always)]
fn conv_with<S: Simd>(
    x: &[f32],
    weights: &Weights,
    shape: ConvShape,
    y: &mut [f32],
    scratch: &mut Scratch,
) {
    let (tw, th) = (shape.tiles_wide(), shape.tiles_high());
    let rows_total = shape.batch * th;
    let rows_per_chunk = (CHUNK_TILES / tw).max(1);
    let tcp_max = (rows_per_chunk * tw).next_multiple_of(TILE_BLOCK);
    let (c_in, panels) = (weights.c_in, weights.panels);
    let cp = c_in.next_multiple_of(LANES);
    let kp = panels * K_PANEL;
    grow(&mut scratch.v, XI * (tcp_max * cp + XI_PAD));
    grow(&mut scratch.m, XI * (tcp_max * kp + XI_PAD));
    grow(
        &mut scratch.rows,
        (2 * rows_per_chunk.min(th) + 2) * (2 * tw + 2) * LANES,
    );
    let mut first_row = 0;
    while first_row < rows_total {
        let rows = rows_per_chunk.min(rows_total - first_row);
        let tc = rows * tw;
        let tcp = tc.next_multiple_of(TILE_BLOCK);
        let (v_stride, m_stride) = (tcp * cp + XI_PAD, tcp * kp + XI_PAD);
        let v = &mut scratch.v[..XI * v_stride];
        // Rows tc..tcp of V are padding: their products land in rows of M nobody reads,
        // but keep them finite.
        if tcp > tc {
            for v_xi in v.chunks_exact_mut(v_stride) {
                v_xi[tc * cp..tcp * cp].fill(0.0);
            }
        }
        for seg in segments(first_row, rows, th, tw) {
            input_transform::<S>(x, shape, seg, v_stride, cp, v, &mut scratch.rows);
        }
        let m = &mut scratch.m[..XI * m_stride];
        for xi in 0..XI {
            let v_xi = &v[xi * v_stride..][..tcp * cp];
            let m_xi = &mut m[xi * m_stride..][..tcp * kp];
            for p in 0..panels {
                let u = &weights.u[(xi * panels + p) * c_in * K_PANEL..][..c_in * K_PANEL];
                for t0 in (0..tcp).step_by(TILE_BLOCK) {
                    S::block(
                        &v_xi[t0 * cp..],
                        cp,
                        u,
                        c_in,
                        &mut m_xi[t0 * kp + p * K_PANEL..],
                        kp,
                    );
                }
            }
        }
        for seg in segments(first_row, rows, th, tw) {
            output_transform::<S>(m, m_stride, kp, weights, shape, seg, y, &mut scratch.rows);
        }
        first_row += rows;
    }
}

/// The part of a chunk in one image: tile rows `ty0..ty0 + rows` of image `n`, whose
/// first tile is tile `t0` of the chunk.
#[derive(Debug, Clone, Copy)]
struct Segment {
    n: usize,
    ty0: usize,
    rows: usize,
    t0: usize,
}

/// The chunk of global tile rows `first_row..first_row + rows` split at image boundaries.
fn segments(first_row: usize, rows: usize, th: usize, tw: usize) -> impl Iterator<Item = Segment> {
    let end = first_row + rows;
    let mut at = first_row;
    std::iter::from_fn(move || {
        (at < end).then(|| {
            let (n, ty0) = (at / th, at % th);
            let rows = (th - ty0).min(end - at);
            let seg = Segment {
                n,
                ty0,
                rows,
                t0: (at - first_row) * tw,
            };
            at += rows;
            seg
        })
    })
}

fn grow(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

/// V[ξ][t][c] = (Bᵀ d B)[ξ] for a segment's tiles t and every input channel c, 8 channels
/// at a time, at `v[ξ·v_stride + t·cp + c]`. A tile's patch d spans input rows 2ty−1 …
/// 2ty+2 and columns 2tx−1 … 2tx+2, zero outside the image; the chunk's band of input rows
/// is first staged channel-last, [row][column + 1][8 channels], zero-padded.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_transform<S: Simd>(
    x: &[f32],
    shape: ConvShape,
    seg: Segment,
    v_stride: usize,
    cp: usize,
    v: &mut [f32],
    staged: &mut [f32],
) {
    let tw = shape.tiles_wide();
    let (h, w, c_in) = (shape.h, shape.w, shape.c_in);
    let Segment { n, ty0, rows, t0 } = seg;
    let band = 2 * rows + 2; // input rows 2·ty0 − 1 … 2·(ty0 + rows) staged
    let row_len = (2 * tw + 2) * LANES; // columns −1 … 2·tw, 8 channels each
    let staged = &mut staged[..band * row_len];
    for c0 in (0..c_in).step_by(LANES) {
        let lanes = LANES.min(c_in - c0);
        for r in 0..band {
            let yy = (2 * ty0 + r).wrapping_sub(1);
            let dst = &mut staged[r * row_len..][..row_len];
            if yy >= h {
                dst.fill(0.0);
                continue;
            }
            // Column −1 and the columns past the image are zero; a partial group of
            // channels has zero lanes.
            dst[..LANES].fill(0.0);
            dst[(w + 1) * LANES..].fill(0.0);
            let src = &x[((n * c_in + c0) * h + yy) * w..];
            if lanes == LANES {
                S::gather8(src, h * w, w, &mut dst[LANES..]);
            } else {
                dst[LANES..(w + 1) * LANES].fill(0.0);
                for l in 0..lanes {
                    gather_lane(src, h * w, w, &mut dst[LANES..], l);
                }
            }
        }
        for tr in 0..rows {
            for tx in 0..tw {
                let t = t0 + tr * tw + tx;
                // Row combination i of Bᵀ d (r0 = d0 − d2, r1 = d1 + d2, r2 = d2 − d1,
                // r3 = d1 − d3), then the same combinations over its 4 columns: ξ = 4i + j.
                // One combination at a time keeps 8 vectors live, not the patch's 16.
                let patch = &staged[2 * tr * row_len + 2 * tx * LANES..];
                let d = |i: usize| &patch[i * row_len..][..4 * LANES];
                let at = (t * cp + c0, v_stride);
                transform_row(d(0), d(2), -1.0, &mut v[at.0..], at.1, 0);
                transform_row(d(1), d(2), 1.0, &mut v[at.0..], at.1, 1);
                transform_row(d(2), d(1), -1.0, &mut v[at.0..], at.1, 2);
                transform_row(d(1), d(3), -1.0, &mut v[at.0..], at.1, 3);
            }
        }
    }
}

/// Row combination `i` of Bᵀ d, q = da + sign·db (sign ±1, a constant once inlined), then
/// (q) B: V[4i + j] for j = 0..4, written at `v[(4i + j)·xi_stride ..]`, 8 channels each.
#[inline(always)]
fn transform_row(da: &[f32], db: &[f32], sign: f32, v: &mut [f32], xi_stride: usize, i: usize) {
    let mut q = [[0f32; LANES]; 4];
    for (j, qj) in q.iter_mut().enumerate() {
        let (a, b) = (&da[j * LANES..][..LANES], &db[j * LANES..][..LANES]);
        for l in 0..LANES {
            qj[l] = if sign > 0.0 { a[l] + b[l] } else { a[l] - b[l] };
        }
    }
    for j in 0..4 {
        let out = &mut v[(4 * i + j) * xi_stride..][..LANES];
        for l in 0..LANES {
            let (q0, q1, q2, q3) = (q[0][l], q[1][l], q[2][l], q[3][l]);
            out[l] = match j {
                0 => q0 - q2,
                1 => q1 + q2,
                2 => q2 - q1,
                _ => q1 - q3,
            };
        }
    }
}

/// y's tiles = Aᵀ M A + bias, Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]], for the chunk's tiles,
/// 8 output channels at a time (M[ξ][t][k] at `m[ξ·m_stride + t·kp + k]`, contiguous in
/// k), then written to y's planes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn output_transform<S: Simd>(
    m: &[f32],
    m_stride: usize,
    kp: usize,
    weights: &Weights,
    shape: ConvShape,
    seg: Segment,
    y: &mut [f32],
    staged: &mut [f32],
) {
    let tw = shape.tiles_wide();
    let (h, w, c_out) = (shape.h, shape.w, shape.c_out);
    let Segment { n, ty0, rows, t0 } = seg;
    for k0 in (0..c_out).step_by(LANES) {
        let lanes = LANES.min(c_out - k0);
        let mut bias = [0f32; LANES];
        bias[..lanes].copy_from_slice(&weights.bias[k0..k0 + lanes]);
        for tr in 0..rows {
            // The tile row's two output rows, channel-last, then written plane by plane:
            // contiguous stores instead of one scattered store per value.
            let staged = &mut staged[..2 * 2 * tw * LANES];
            for tx in 0..tw {
                let t = t0 + tr * tw + tx;
                let mut mm = [[0f32; LANES]; XI];
                for (xi, row) in mm.iter_mut().enumerate() {
                    row.copy_from_slice(&m[xi * m_stride + t * kp + k0..][..LANES]);
                }
                let mut out = [[0f32; LANES]; 4];
                for l in 0..LANES {
                    let mut s0 = [0f32; 4];
                    let mut s1 = [0f32; 4];
                    for j in 0..4 {
                        s0[j] = mm[j][l] + mm[4 + j][l] + mm[8 + j][l];
                        s1[j] = mm[4 + j][l] - mm[8 + j][l] - mm[12 + j][l];
                    }
                    out[0][l] = s0[0] + s0[1] + s0[2] + bias[l];
                    out[1][l] = s0[1] - s0[2] - s0[3] + bias[l];
                    out[2][l] = s1[0] + s1[1] + s1[2] + bias[l];
                    out[3][l] = s1[1] - s1[2] - s1[3] + bias[l];
                }
                for (q, o) in out.iter().enumerate() {
                    let (dy, xx) = (q / 2, 2 * tx + q % 2);
                    staged[(dy * 2 * tw + xx) * LANES..][..LANES].copy_from_slice(o);
                }
            }
            let y0 = 2 * (ty0 + tr);
            for dy in 0..2.min(h - y0) {
                let src = &staged[dy * 2 * tw * LANES..][..w * LANES];
                let dst = &mut y[((n * c_out + k0) * h + y0 + dy) * w..];
                if lanes == LANES {
                    S::scatter8(src, w, dst, h * w);
                } else {
                    for l in 0..lanes {
                        scatter_lane(src, w, dst, h * w, l);
                    }
                }
            }
        }
    }
}

/// The driver compiled for AVX2 + FMA (the transforms' 8-channel lanes become vector
/// instructions) with the micro-kernel written in intrinsics.
///
/// Why by hand: the product's inner loop must keep the 6 × 16 block of M in 12 vector
/// registers for the whole sum over c, with two loads of U and six broadcasts of V per 12
/// FMAs; LLVM does not find that blocking from the portable loops.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{
        conv_with, gather_lane, scatter_lane, ConvShape, Scratch, Simd, Weights, K_PANEL, LANES,
        TILE_BLOCK,
    };

    #[target_feature(enable = "avx2,fma")]
    pub fn conv(
        x: &[f32],
        weights: &Weights,
        shape: ConvShape,
        y: &mut [f32],
        scratch: &mut Scratch,
    ) {
        conv_with::<Avx2>(x, weights, shape, y, scratch)
    }

    struct Avx2;

    // SAFETY (all three): only reached through `conv` above, which the dispatcher calls on
    // CPUs with AVX2 and FMA.
    impl Simd for Avx2 {
        fn block(
            v: &[f32],
            v_stride: usize,
            u: &[f32],
            c_in: usize,
            m: &mut [f32],
            m_stride: usize,
        ) {
            unsafe { block(v, v_stride, u, c_in, m, m_stride) }
        }

        fn gather8(src: &[f32], stride: usize, w: usize, dst: &mut [f32]) {
            unsafe { gather8(src, stride, w, dst) }
        }

        fn scatter8(src: &[f32], w: usize, dst: &mut [f32], stride: usize) {
            unsafe { scatter8(src, w, dst, stride) }
        }
    }

    /// Rows r[l] (channel l's 8 columns) to columns (each column's 8 channels).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    #[target_feature(enable = "avx2,fma")]
    fn gather8(src: &[f32], stride: usize, w: usize, dst: &mut [f32]) {
        assert!(src.len() >= 7 * stride + w && dst.len() >= w * LANES);
        let full = w / LANES * LANES;
        for col in (0..full).step_by(LANES) {
            let mut rows = [_mm256_setzero_ps(); LANES];
            for (l, r) in rows.iter_mut().enumerate() {
                // SAFETY: bounded by the assert.
                *r = unsafe { _mm256_loadu_ps(src.as_ptr().add(l * stride + col)) };
            }
            for (p, v) in transpose8(rows).into_iter().enumerate() {
                // SAFETY: bounded by the assert.
                unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add((col + p) * LANES), v) };
            }
        }
        for l in 0..LANES {
            gather_lane(&src[full..], stride, w - full, &mut dst[full * LANES..], l);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn scatter8(src: &[f32], w: usize, dst: &mut [f32], stride: usize) {
        assert!(dst.len() >= 7 * stride + w && src.len() >= w * LANES);
        let full = w / LANES * LANES;
        for col in (0..full).step_by(LANES) {
            let mut cols = [_mm256_setzero_ps(); LANES];
            for (p, c) in cols.iter_mut().enumerate() {
                // SAFETY: bounded by the assert.
                *c = unsafe { _mm256_loadu_ps(src.as_ptr().add((col + p) * LANES)) };
            }
            for (l, v) in transpose8(cols).into_iter().enumerate() {
                // SAFETY: bounded by the assert.
                unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(l * stride + col), v) };
            }
        }
        for l in 0..LANES {
            scatter_lane(&src[full * LANES..], w - full, &mut dst[full..], stride, l);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn block(v: &[f32], v_stride: usize, u: &[f32], c_in: usize, m: &mut [f32], m_stride: usize) {
        assert!(c_in >= 1 && v.len() >= (TILE_BLOCK - 1) * v_stride + c_in);
        assert!(u.len() >= c_in * K_PANEL);
        assert!(m.len() >= (TILE_BLOCK - 1) * m_stride + K_PANEL);
        let mut acc = [[_mm256_setzero_ps(); 2]; TILE_BLOCK];
        let (vp, up) = (v.as_ptr(), u.as_ptr());
        for c in 0..c_in {
            // SAFETY: the asserts above bound every offset read here.
            unsafe {
                let b0 = _mm256_loadu_ps(up.add(c * K_PANEL));
                let b1 = _mm256_loadu_ps(up.add(c * K_PANEL + 8));
                for (t, row) in acc.iter_mut().enumerate() {
                    let a = _mm256_broadcast_ss(&*vp.add(t * v_stride + c));
                    row[0] = _mm256_fmadd_ps(a, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(a, b1, row[1]);
                }
            }
        }
        let mp = m.as_mut_ptr();
        for (t, row) in acc.iter().enumerate() {
            // SAFETY: bounded by the assert on m.
            unsafe {
                _mm256_storeu_ps(mp.add(t * m_stride), row[0]);
                _mm256_storeu_ps(mp.add(t * m_stride + 8), row[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Direct convolution in f64: the reference.
    fn direct(x: &[f32], w: &[f32], b: &[f32], s: ConvShape) -> Vec<f64> {
        let (h, wd) = (s.h as isize, s.w as isize);
        let mut y = vec![0f64; s.batch * s.c_out * s.h * s.w];
        for n in 0..s.batch {
            for k in 0..s.c_out {
                for i in 0..h {
                    for j in 0..wd {
                        let mut acc = b[k] as f64;
                        for c in 0..s.c_in {
                            for di in 0..3isize {
                                for dj in 0..3isize {
                                    let (yy, xx) = (i + di - 1, j + dj - 1);
                                    if yy < 0 || xx < 0 || yy >= h || xx >= wd {
                                        continue;
                                    }
                                    let xv = x[((n * s.c_in + c) * s.h + yy as usize) * s.w
                                        + xx as usize];
                                    let wv =
                                        w[((k * s.c_in + c) * 3 + di as usize) * 3 + dj as usize];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((n * s.c_out + k) * s.h + i as usize) * s.w + j as usize] = acc;
                    }
                }
            }
        }
        y
    }

    fn random(len: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Largest |winograd − direct| over the largest |direct|.
    fn relative_error(s: ConvShape, portable: bool) -> f64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let x = random(s.batch * s.c_in * s.h * s.w, &mut rng);
        let w = random(s.c_out * s.c_in * 9, &mut rng);
        let b = random(s.c_out, &mut rng);
        let weights = Weights::new(&w, Some(&b), s.c_out, s.c_in).unwrap();
        let mut y = vec![f32::NAN; s.batch * s.c_out * s.h * s.w];
        check(x.len(), y.len(), &weights, s).unwrap();
        let mut scratch = Scratch::default();
        // Twice with one scratch: a second call must not depend on what the first left.
        for _ in 0..2 {
            if portable {
                conv_portable(&x, &weights, s, &mut y, &mut scratch);
            } else {
                conv(&x, &weights, s, &mut y, &mut scratch);
            }
        }
        let reference = direct(&x, &w, &b, s);
        let scale = reference.iter().fold(0f64, |a, &v| a.max(v.abs()));
        let err = y
            .iter()
            .zip(&reference)
            .fold(0f64, |a, (&v, &r)| a.max((v as f64 - r).abs()));
        err / scale
    }

    fn shape(batch: usize, c_in: usize, c_out: usize, h: usize, w: usize) -> ConvShape {
        ConvShape {
            batch,
            c_in,
            c_out,
            h,
            w,
        }
    }

    #[test]
    fn matches_a_float64_direct_convolution_on_the_networks_shapes_and_odd_ones() {
        let shapes = [
            shape(4, 96, 96, 8, 8),
            shape(4, 144, 48, 16, 16),
            shape(3, 48, 96, 8, 8),
            shape(2, 64, 16, 32, 32),
            // Odd sizes, channel counts that are not multiples of the blocks, 1 image.
            shape(1, 5, 17, 7, 9),
            shape(3, 33, 3, 5, 1),
            shape(2, 1, 2, 1, 6),
        ];
        for s in shapes {
            for portable in [false, true] {
                let e = relative_error(s, portable);
                assert!(
                    e < 2e-6,
                    "{s:?} (portable: {portable}): relative error {e:e}"
                );
            }
        }
    }

    #[test]
    fn rejects_buffers_that_do_not_fit_the_shape() {
        let w = vec![0.0; 4 * 2 * 9];
        assert!(Weights::new(&w, None, 4, 3).is_err());
        assert!(Weights::new(&w, Some(&[0.0; 3]), 4, 2).is_err());
        let weights = Weights::new(&w, None, 4, 2).unwrap();
        let s = shape(1, 2, 4, 3, 3);
        assert!(check(18, 36, &weights, s).is_ok());
        assert!(check(18, 35, &weights, s).is_err());
        assert!(check(18, 36, &weights, shape(1, 3, 4, 3, 3)).is_err());
    }
}
