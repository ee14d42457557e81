//! The per-image protocol (spec §1, determinism): from an image's id and what its record
//! holds to what its restoration starts from — its operator (from the record's own mask,
//! or shared, or drawn from the id), its y in the model's range (measured and converted,
//! or simulated with noise drawn from the id), its sampling mask and its sampler noise.
//!
//! One function, [`image_problem`], used by the restore stage and by the reports'
//! example grids, so that a grid shows the measurement the image was restored from.

use std::sync::Arc;

use ndarray::Array3;

use super::measurement::unit_to_model;
use super::operators::{simulate_measurement, LinearOperator, OperatorFamily};
use super::rng::{GaussianNoise, ImageRngs};
use super::sampler::sampling_mask;

/// What a record gives of its image.
#[derive(Debug, Clone, Copy)]
pub enum Given<'a> {
    /// The clean image (C·H·W in the model's range): y is simulated from it.
    Clean(&'a [f32]),
    /// Measured y in [0, 1] units (`y_range = "unit"`), converted exactly.
    MeasuredUnit(&'a [f32]),
    /// Measured y in the model's range (`y_range = "model"`), used as it is.
    MeasuredModel(&'a [f32]),
}

/// The run-level settings of the protocol.
#[derive(Debug, Clone, Copy)]
pub struct Protocol<'a> {
    /// The run's operators.
    pub family: &'a OperatorFamily,
    /// The image shape [C, H, W].
    pub shape: [usize; 3],
    /// The run seed every image's generators are keyed by (with its id).
    pub seed: u64,
    /// Measurement noise of simulated y.
    pub sigma_y: f32,
    /// Probability that the sampling mask keeps a pixel (1: all ones, nothing drawn).
    pub keep_prob: f64,
}

/// What one image's restoration starts from.
#[derive(Debug)]
pub struct ImageProblem {
    /// Its operator.
    pub operator: Arc<dyn LinearOperator>,
    /// Its y in the model's range, length M of `operator`.
    pub y: Vec<f32>,
    /// Its sampling mask m, [C, H, W].
    pub sampling_mask: Array3<f32>,
    /// Its sampler noise (ε_0, then ε_i).
    pub noise: GaussianNoise,
}

/// The problem of image `id`: every random draw comes from (`p.seed`, `id`), never from
/// its position in a batch. `record_mask` is the record's own mask (H·W, > 0.5 kept),
/// where it has one. Why not, when the mask or y do not fit the operator.
pub fn image_problem(
    p: &Protocol,
    id: &str,
    record_mask: Option<&[f32]>,
    given: Given,
) -> Result<ImageProblem, String> {
    let mut rngs = ImageRngs::new(p.seed, id);
    let operator = p.family.for_record(record_mask, &mut rngs.operator)?;
    let measured = |y: &[f32]| {
        if y.len() == operator.measurements() {
            Ok(())
        } else {
            Err(format!(
                "y has {} values, the operator measures {}",
                y.len(),
                operator.measurements()
            ))
        }
    };
    let y = match given {
        Given::Clean(x0) => {
            simulate_measurement(operator.as_ref(), x0, p.sigma_y, &mut rngs.measurement)
        }
        Given::MeasuredUnit(y) => {
            measured(y)?;
            unit_to_model(operator.as_ref(), y)
        }
        Given::MeasuredModel(y) => {
            measured(y)?;
            // Entries the operator does not measure (erased pixels) hold whatever the
            // file had there (often −1, black); they are no measurement, and as anything
            // but 0 they would enter ‖y − A x̂0‖ as a constant.
            let mut y = y.to_vec();
            operator.mask_noise(&mut y);
            y
        }
    };
    let sampling_mask = sampling_mask(p.shape, p.keep_prob, &mut rngs.sampling_mask);
    Ok(ImageProblem {
        operator,
        y,
        sampling_mask,
        noise: rngs.noise,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::{apply, OperatorSpec};

    #[test]
    fn the_same_id_gives_the_same_problem_and_another_id_another() {
        let family = OperatorSpec::parse("inpaint-random:0.5")
            .unwrap()
            .build([1, 4, 4], 0)
            .unwrap();
        let p = Protocol {
            family: &family,
            shape: [1, 4, 4],
            seed: 7,
            sigma_y: 0.1,
            keep_prob: 0.5,
        };
        let x0 = [0.25; 16];
        let a = image_problem(&p, "a", None, Given::Clean(&x0)).unwrap();
        let again = image_problem(&p, "a", None, Given::Clean(&x0)).unwrap();
        let b = image_problem(&p, "b", None, Given::Clean(&x0)).unwrap();
        assert_eq!(a.y, again.y);
        assert_eq!(a.sampling_mask, again.sampling_mask);
        assert_ne!(a.y, b.y);
        // A record's own mask makes its operator; measured y is converted from [0, 1].
        let mask: Vec<f32> = (0..16).map(|k| (k % 2) as f32).collect();
        let u = [0.75; 16];
        let m = image_problem(&p, "m", Some(&mask), Given::MeasuredUnit(&u)).unwrap();
        assert_eq!(m.y, apply(m.operator.as_ref(), &[0.5; 16]));
        assert_eq!(m.y[0], 0.0);
        // Measured in the model's range, erased entries are 0 whatever the file held.
        let black = [-1.0; 16];
        let m = image_problem(&p, "m", Some(&mask), Given::MeasuredModel(&black)).unwrap();
        let want: Vec<f32> = mask.iter().map(|&k| -k).collect();
        assert_eq!(m.y, want);
        // y of the wrong length says so.
        let err = image_problem(&p, "m", None, Given::MeasuredModel(&[0.0; 3])).unwrap_err();
        assert_eq!(err, "y has 3 values, the operator measures 16");
    }
}
