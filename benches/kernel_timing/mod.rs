//! The timing loop the kernel benchmarks share (`fused_kernels`, `conv3x3`).

use std::time::Instant;

/// Median seconds per call of `f` over `reps` calls in 7 rounds, after a warm-up of a
/// tenth of them.
pub fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..reps / 10 + 1 {
        f();
    }
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[3]
}
