//! Winograd 3×3 convolution benchmark (not a test): ms per call and GFLOP/s of
//! `adps.Conv3x3` (src/model/fused/conv3x3.rs) on every 3×3 convolution of one `fmnist`
//! model call (channels 16 / 48 / 96 at 32² / 16² / 8², in forward order; the gradient
//! graphs run the same shapes with input and output channels swapped), one thread, beside
//! the portable micro-kernel. GFLOP/s counts direct convolution's FLOPs (2·9·Cin·Cout·H·W
//! per image), so that it compares with `models/bench/conv_engines.py`'s ONNX Runtime
//! column for the same layers (`--threads 1`).
//!
//!   cargo bench --bench conv3x3 [-- BATCH] [CINxCOUT (only that layer, e.g. 64x16)]
//!
//! Prints a Markdown table.

use std::hint::black_box;

use adps::model::fused::conv3x3::{conv, conv_portable, ConvShape, Scratch, Weights};

mod kernel_timing;

use kernel_timing::time;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batch: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(4);
    let only = args.iter().find(|a| a.contains('x'));
    // (c_in, c_out, side): the U-Net's 3×3 convolutions in forward order, then the
    // input-gradient convolutions the gradient graphs add (channels swapped; the shapes
    // the forward already has are not repeated).
    let layers: [(usize, usize, usize); 22] = [
        (2, 16, 32),
        (16, 16, 32),
        (16, 16, 32),
        (16, 48, 16),
        (48, 48, 16),
        (48, 96, 8),
        (96, 96, 8),
        (96, 96, 8),
        (96, 96, 8),
        (192, 96, 8),
        (96, 96, 8),
        (144, 48, 16),
        (48, 48, 16),
        (64, 16, 32),
        (16, 16, 32),
        (16, 2, 32),
        (48, 16, 16),
        (96, 48, 8),
        (96, 192, 8),
        (48, 144, 16),
        (16, 64, 32),
        (1, 16, 32),
    ];
    println!("batch {batch}, one thread; median of 7 rounds\n");
    println!("| Cin → Cout | H×W | ms | GFLOP/s | portable ms | portable GFLOP/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (mut total, mut total_portable, mut flops_total) = (0f64, 0f64, 0f64);
    for (c_in, c_out, side) in layers {
        if only.is_some_and(|o| *o != format!("{c_in}x{c_out}")) {
            continue;
        }
        let shape = ConvShape {
            batch,
            c_in,
            c_out,
            h: side,
            w: side,
        };
        let x: Vec<f32> = (0..batch * c_in * side * side)
            .map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..c_out * c_in * 9)
            .map(|i| (i * 104_729 % 1000) as f32 / 5000.0 - 0.1)
            .collect();
        let b = vec![0.1f32; c_out];
        let weights = Weights::new(&w, Some(&b), c_out, c_in).expect("weights");
        let mut y = vec![0f32; batch * c_out * side * side];
        let mut scratch = Scratch::default();
        let flops = 2.0 * 9.0 * (c_in * c_out * side * side * batch) as f64;
        let reps = ((2e8 / flops) as usize).max(5);
        let t = time(reps, || {
            conv(black_box(&x), &weights, shape, &mut y, &mut scratch);
            black_box(&y);
        });
        let tp = time(reps / 4 + 1, || {
            conv_portable(black_box(&x), &weights, shape, &mut y, &mut scratch);
            black_box(&y);
        });
        total += t;
        total_portable += tp;
        flops_total += flops;
        println!(
            "| {c_in} → {c_out} | {side}×{side} | {:.3} | {:.1} | {:.3} | {:.1} |",
            t * 1e3,
            flops / t / 1e9,
            tp * 1e3,
            flops / tp / 1e9
        );
    }
    println!(
        "| all | | {:.3} | {:.1} | {:.3} | {:.1} |",
        total * 1e3,
        flops_total / total / 1e9,
        total_portable * 1e3,
        flops_total / total_portable / 1e9
    );
}
