//! Fused group norm + SiLU kernels benchmark (not a test): ns per value of
//! `adps.GroupNormSiLU` and `adps.GroupNormSiLUGrad` as adps runs them (the fastest version
//! this CPU has) beside the portable loops as the release build compiles them (baseline
//! x86-64, SSE2: the version for CPUs without AVX2), on the
//! shapes of one `fmnist` model call of 4 images (channels 16 / 48 / 96 at 32² / 16² / 8²,
//! the decoder's concatenations included), one thread.
//!
//!   cargo bench --bench fused_kernels
//!
//! Prints a Markdown table for the README's performance section.

use std::hint::black_box;

use adps::model::fused::group_norm_silu::{
    backward, backward_portable, forward, forward_portable, Layout,
};

mod kernel_timing;

use kernel_timing::time;

fn main() {
    let batch = 4;
    // (channels, H·W, instances in one dps_dense call): the U-Net's group norms.
    let shapes: [(usize, usize, usize); 9] = [
        (16, 1024, 4),
        (16, 256, 1),
        (48, 256, 3),
        (48, 64, 1),
        (96, 64, 6),
        (192, 64, 1),
        (144, 256, 1),
        (64, 1024, 1),
        (16, 1024, 1),
    ];
    println!("batch {batch}, one thread; ns per value (median of 7 rounds)\n");
    println!(
        "| C | H·W | forward | forward, portable (SSE2) | gradient | gradient, portable (SSE2) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut totals = [0f64; 4];
    for (channels, hw, count) in shapes {
        let l = Layout {
            batch,
            channels,
            hw,
            groups: (channels / 4).min(8),
        };
        let n = batch * channels * hw;
        // Deterministic values of a trained network's range; their exact values do not matter.
        let x: Vec<f32> = (0..n)
            .map(|i| (i * 7919 % 1000) as f32 / 300.0 - 1.5)
            .collect();
        let dy: Vec<f32> = (0..n)
            .map(|i| (i * 104_729 % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let a: Vec<f32> = (0..batch * channels)
            .map(|i| 1.0 + (i % 7) as f32 * 0.1)
            .collect();
        let c: Vec<f32> = (0..batch * channels)
            .map(|i| (i % 5) as f32 * 0.1)
            .collect();
        let mut out = vec![0f32; n];
        let reps = (4_000_000 / n).max(10);
        let t = [
            time(reps, || forward(&x, &a, &c, l, 1e-5, black_box(&mut out))),
            time(reps, || {
                forward_portable(&x, &a, &c, l, 1e-5, black_box(&mut out))
            }),
            time(reps, || {
                backward(&x, &a, &c, &dy, l, 1e-5, black_box(&mut out))
            }),
            time(reps, || {
                backward_portable(&x, &a, &c, &dy, l, 1e-5, black_box(&mut out))
            }),
        ];
        let ns = t.map(|s| s * 1e9 / n as f64);
        println!(
            "| {channels} | {hw} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ns[0], ns[1], ns[2], ns[3]
        );
        for (total, s) in totals.iter_mut().zip(t) {
            *total += s * count as f64;
        }
    }
    let ms = totals.map(|s| s * 1e3);
    println!(
        "\nall group norms of one call: forward {:.2} ms (portable {:.2}), gradient {:.2} ms (portable {:.2})",
        ms[0], ms[1], ms[2], ms[3]
    );
}
