//! Operator benchmark (not a test): forward + adjoint time of the operators that scale
//! to large images without a dense matrix, on one 3×256×256 image.
//!
//!   cargo bench --bench operators
//!
//! Prints a Markdown table for the README's performance section.

use std::time::Instant;

use adps::restore::operators::blur::GaussianBlur;
use adps::restore::operators::blur_kernel::{KernelBlur, Padding};
use adps::restore::operators::fourier::SubsampledFourier;
use adps::restore::operators::sr_bicubic::BicubicDown;
use adps::restore::operators::LinearOperator;

/// Forward + adjoint pairs timed per operator, after one warm-up pair.
const REPEATS: usize = 20;

fn time(op: &dyn LinearOperator) -> (f64, f64) {
    let x: Vec<f32> = (0..op.input_len())
        .map(|k| ((k * 7919) % 255) as f32 / 127.5 - 1.0)
        .collect();
    let mut y = vec![0.0; op.measurements()];
    let mut back = vec![0.0; op.input_len()];
    op.forward(&x, &mut y);
    op.adjoint(&y, &mut back);
    let (mut fwd, mut adj) = (0.0, 0.0);
    for _ in 0..REPEATS {
        let t = Instant::now();
        op.forward(&x, &mut y);
        fwd += t.elapsed().as_secs_f64();
        let t = Instant::now();
        op.adjoint(&y, &mut back);
        adj += t.elapsed().as_secs_f64();
    }
    (fwd * 1e3 / REPEATS as f64, adj * 1e3 / REPEATS as f64)
}

fn main() {
    let shape = [3, 256, 256];
    let [_, h, w] = shape;
    // A 4× accelerated Cartesian MRI mask: every 4th k-space row plus the 16 central rows.
    let mask: Vec<bool> = (0..h * w)
        .map(|k| {
            let u = k / w;
            u % 4 == 0 || u.min(h - u) < 8
        })
        .collect();
    let fourier = SubsampledFourier::new(shape, &mask);
    let psf = vec![1.0 / 81.0; 81];
    let ops: [(String, Box<dyn LinearOperator>); 4] = [
        (
            format!("fourier (mask keeps {} of {})", fourier.kept(), h * w),
            Box::new(fourier),
        ),
        (
            "blur-kernel 9×9, reflect".into(),
            Box::new(KernelBlur::new(shape, psf, [9, 9], Padding::Reflect)),
        ),
        (
            "blur-gauss:1.5 (separable)".into(),
            Box::new(GaussianBlur::new(shape, 1.5)),
        ),
        (
            "sr-bicubic:4 (separable, 16 taps per axis)".into(),
            Box::new(BicubicDown::new(shape, 4)),
        ),
    ];
    println!("3×256×256, mean of {REPEATS} runs\n");
    println!("| operator | M | forward ms | adjoint ms |");
    println!("|---|---|---|---|");
    for (name, op) in &ops {
        let (f, a) = time(op.as_ref());
        println!("| {name} | {} | {f:.2} | {a:.2} |", op.measurements());
    }
}
