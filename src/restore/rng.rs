//! Deterministic randomness keyed by (run seed, image id) (spec §1, "Determinism").
//!
//! Every random draw for an image comes from generators derived from its id, never from
//! its position, so a result does not depend on batch size, worker count or shard order.
//! The key is SHA-256 (stable across platforms and Rust versions, unlike std's hashers)
//! of a domain tag, the run seed and the id; it seeds ChaCha20, and each purpose reads its
//! own ChaCha stream, so adding draws to one purpose never shifts another.
//! Run-level draws (the `cs` matrix) use a key made from the run seed alone.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, StandardNormal};
use sha2::{Digest, Sha256};

/// Domain tag hashed into every key; bump it if the derivation ever changes.
const DOMAIN: &[u8] = b"adps/rng/v1";

/// The independent purposes an image draws randomness for, one ChaCha stream each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The model's sampling mask m (drawn once per image).
    SamplingMask = 1,
    /// The sampler's noise: ε_0, then the churn ε_i.
    SamplerNoise = 2,
    /// Measurement noise n in simulated `y = A x0 + σ_y·n`.
    Measurement = 3,
    /// Per-image operator data (inpainting masks and box positions).
    Operator = 4,
}

/// The run-level purposes, drawn from the run seed alone and shared by all images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStream {
    /// The Gaussian matrix of `cs:M`.
    CsMatrix = 1,
}

fn seed_bytes(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    for p in parts {
        // Length-prefix each part so that ("ab", "c") and ("a", "bc") differ.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The generator for one purpose of one image.
pub fn image_rng(run_seed: u64, id: &str, stream: Stream) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::from_seed(seed_bytes(&[
        b"image",
        &run_seed.to_le_bytes(),
        id.as_bytes(),
    ]));
    rng.set_stream(stream as u64);
    rng
}

/// The generator for a run-level purpose (independent of every image's generators).
pub fn run_rng(run_seed: u64, stream: RunStream) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::from_seed(seed_bytes(&[b"run", &run_seed.to_le_bytes()]));
    rng.set_stream(stream as u64);
    rng
}

/// All of one image's generators, built from its id.
#[derive(Debug, Clone)]
pub struct ImageRngs {
    /// For [`crate::restore::sampler::sampling_mask`].
    pub sampling_mask: ChaCha20Rng,
    /// The sampler's ε_0 and ε_i.
    pub noise: GaussianNoise,
    /// Measurement noise in simulation.
    pub measurement: ChaCha20Rng,
    /// Per-image operator data (`OperatorFamily::for_image`).
    pub operator: ChaCha20Rng,
}

impl ImageRngs {
    /// Derive every stream of image `id` in run `run_seed`.
    pub fn new(run_seed: u64, id: &str) -> Self {
        Self {
            sampling_mask: image_rng(run_seed, id, Stream::SamplingMask),
            noise: GaussianNoise(image_rng(run_seed, id, Stream::SamplerNoise)),
            measurement: image_rng(run_seed, id, Stream::Measurement),
            operator: image_rng(run_seed, id, Stream::Operator),
        }
    }
}

/// Fill `out` with independent N(0, 1) draws from `rng`.
pub fn fill_standard_normal<R: RngCore + ?Sized>(rng: &mut R, out: &mut [f32]) {
    for v in out {
        *v = StandardNormal.sample(rng);
    }
}

/// Where the sampler gets its Gaussian noise (ε_0, then ε_i), in draw order.
pub trait NoiseSource {
    /// Fill `out` with the next `out.len()` standard-normal values.
    fn fill_normal(&mut self, out: &mut [f32]);
}

/// Standard-normal noise from an image's ChaCha stream.
#[derive(Debug, Clone)]
pub struct GaussianNoise(pub ChaCha20Rng);

impl NoiseSource for GaussianNoise {
    fn fill_normal(&mut self, out: &mut [f32]) {
        fill_standard_normal(&mut self.0, out);
    }
}

/// Pre-recorded noise, handed out in order: parity tests replay noise made in Python.
///
/// One per image, holding exactly what the sampler asks that image for: ε_0 (C·H·W
/// values), then ε_i for each step i with γ_i > 0, in step order. Steps without churn
/// draw nothing, so a recording made as `[N, B, C, H, W]` must drop those steps.
#[derive(Debug, Clone)]
pub struct FixedNoise {
    values: Vec<f32>,
    next: usize,
}

impl FixedNoise {
    /// Replay `values` (e.g. ε_0 then each ε_i, flattened) from the start.
    pub fn new(values: Vec<f32>) -> Self {
        Self { values, next: 0 }
    }

    /// How many values have not been handed out yet.
    pub fn remaining(&self) -> usize {
        self.values.len() - self.next
    }
}

impl NoiseSource for FixedNoise {
    /// Panics when the recording is exhausted: a parity test that asks for more noise
    /// than was recorded is wrong, and silently inventing values would hide that.
    fn fill_normal(&mut self, out: &mut [f32]) {
        let end = self.next + out.len();
        assert!(
            end <= self.values.len(),
            "FixedNoise exhausted: asked for {} values, {} left",
            out.len(),
            self.remaining()
        );
        out.copy_from_slice(&self.values[self.next..end]);
        self.next = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(n: &mut impl NoiseSource, k: usize) -> Vec<f32> {
        let mut v = vec![0.0; k];
        n.fill_normal(&mut v);
        v
    }

    #[test]
    fn same_key_same_draws() {
        let a = draws(&mut ImageRngs::new(7, "shard-0:12").noise, 64);
        let b = draws(&mut ImageRngs::new(7, "shard-0:12").noise, 64);
        assert_eq!(a, b);
    }

    #[test]
    fn different_id_seed_or_stream_differ() {
        let base = draws(&mut ImageRngs::new(7, "img-a").noise, 16);
        assert_ne!(base, draws(&mut ImageRngs::new(7, "img-b").noise, 16));
        assert_ne!(base, draws(&mut ImageRngs::new(8, "img-a").noise, 16));
        let mut other = image_rng(7, "img-a", Stream::Measurement);
        let mut v = vec![0.0; 16];
        fill_standard_normal(&mut other, &mut v);
        assert_ne!(base, v);
        // Length prefixes keep concatenations apart.
        assert_ne!(seed_bytes(&[b"ab", b"c"]), seed_bytes(&[b"a", b"bc"]));
    }

    #[test]
    fn independent_of_call_order_across_images() {
        let ids = ["x", "y", "z"];
        let forward: Vec<Vec<f32>> = ids
            .iter()
            .map(|id| draws(&mut ImageRngs::new(1, id).noise, 8))
            .collect();
        let mut backward: Vec<Vec<f32>> = ids
            .iter()
            .rev()
            .map(|id| draws(&mut ImageRngs::new(1, id).noise, 8))
            .collect();
        backward.reverse();
        assert_eq!(forward, backward);
        // Interleaved consumption of two images' streams changes nothing either.
        let (mut p, mut q) = (ImageRngs::new(1, "x").noise, ImageRngs::new(1, "y").noise);
        let mut inter = vec![];
        for _ in 0..2 {
            inter.push(draws(&mut p, 4));
            inter.push(draws(&mut q, 4));
        }
        assert_eq!([inter[0].clone(), inter[2].clone()].concat(), forward[0]);
        assert_eq!([inter[1].clone(), inter[3].clone()].concat(), forward[1]);
    }

    #[test]
    fn run_rng_is_deterministic_and_distinct_from_images() {
        let a = run_rng(3, RunStream::CsMatrix).next_u64();
        assert_eq!(a, run_rng(3, RunStream::CsMatrix).next_u64());
        assert_ne!(a, run_rng(4, RunStream::CsMatrix).next_u64());
        assert_ne!(a, image_rng(3, "", Stream::SamplingMask).next_u64());
    }

    #[test]
    fn draws_look_standard_normal() {
        let v = draws(&mut ImageRngs::new(0, "stats").noise, 20_000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }

    #[test]
    fn fixed_noise_replays_in_order() {
        let mut f = FixedNoise::new(vec![1.0, 2.0, 3.0]);
        assert_eq!(draws(&mut f, 2), vec![1.0, 2.0]);
        assert_eq!(f.remaining(), 1);
        assert_eq!(draws(&mut f, 1), vec![3.0]);
    }

    #[test]
    #[should_panic(expected = "FixedNoise exhausted")]
    fn fixed_noise_refuses_to_invent() {
        draws(&mut FixedNoise::new(vec![1.0]), 2);
    }
}
