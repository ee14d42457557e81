//! The EDM noise-level discretization (Karras et al. 2022, eq. 5; spec §1).
//!
//! Responsible for the σ_i a sampler visits and for keeping them inside the range a
//! model was trained on. Computed in f64, as NVlabs/edm does, so the schedule itself
//! adds no rounding to the comparison with the Python reference.

/// Clamp the requested σ range to the model card's `[sigma_min, sigma_max]`.
///
/// Returns `(max(σ_min, model_min), min(σ_max, model_max))`: the sampler never asks the
/// denoiser for a noise level it did not see in training (edm `generate.py` does the same).
pub fn clamp_to_model(
    sigma_min: f64,
    sigma_max: f64,
    model_min: f64,
    model_max: f64,
) -> (f64, f64) {
    (sigma_min.max(model_min), sigma_max.min(model_max))
}

/// `σ_0 … σ_N` of the EDM discretization with `n` steps, `σ_N = 0` appended (length N+1).
///
/// `σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ` for i < N. With `n = 1`
/// the formula divides by zero; the single step then starts at σ_max (a one-step
/// denoise). Panics when `n == 0`, `ρ ≤ 0` or the range is not `0 < σ_min ≤ σ_max`:
/// configurations are validated before a sampler runs.
pub fn edm_sigmas(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    assert!(n >= 1, "the EDM schedule needs at least one step");
    assert!(rho > 0.0, "ρ must be positive, got {rho}");
    assert!(
        0.0 < sigma_min && sigma_min <= sigma_max,
        "need 0 < σ_min ≤ σ_max, got {sigma_min}, {sigma_max}"
    );
    let (lo, hi) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    let mut sigmas: Vec<f64> = (0..n)
        .map(|i| {
            let t = if n == 1 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            };
            (hi + t * (lo - hi)).powf(rho)
        })
        .collect();
    sigmas.push(0.0);
    sigmas
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn endpoints_and_length() {
        let s = edm_sigmas(18, 0.002, 80.0, 7.0);
        assert_eq!(s.len(), 19);
        assert_relative_eq!(s[0], 80.0, max_relative = 1e-12);
        assert_relative_eq!(s[17], 0.002, max_relative = 1e-12);
        assert_eq!(s[18], 0.0);
    }

    #[test]
    fn strictly_decreasing() {
        let s = edm_sigmas(50, 0.002, 80.0, 7.0);
        assert!(s.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn known_midpoint() {
        // N = 3: σ_1 = ((80^(1/7) + 0.002^(1/7)) / 2)^7.
        let s = edm_sigmas(3, 0.002, 80.0, 7.0);
        let mid = ((80f64.powf(1.0 / 7.0) + 0.002f64.powf(1.0 / 7.0)) / 2.0).powi(7);
        assert_relative_eq!(s[1], mid, max_relative = 1e-12);
    }

    #[test]
    fn single_step_starts_at_sigma_max() {
        assert_eq!(edm_sigmas(1, 0.002, 80.0, 7.0), vec![80.0, 0.0]);
    }

    #[test]
    fn clamps_to_model_range() {
        assert_eq!(clamp_to_model(0.002, 80.0, 0.01, 50.0), (0.01, 50.0));
        assert_eq!(
            clamp_to_model(0.002, 80.0, 0.0, f64::INFINITY),
            (0.002, 80.0)
        );
    }
}
