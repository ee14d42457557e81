//! Operator strings (`cs:256`, `sr:4`, `sr-bicubic:4`, `inpaint-random:0.5`,
//! `inpaint-box:16x16`, `blur-gauss:1.5`, and from files `matrix:URL`, `blur-kernel:URL[:reflect]`,
//! `fourier:URL`): parsing, validation against an image shape, and the run's
//! [`OperatorFamily`].
//!
//! Two phases, as for every configuration: [`OperatorSpec::parse`] checks the string
//! alone (no I/O; a file operator keeps its URL); [`OperatorSpec::build_with`] checks it
//! against the model's `[C, H, W]` and the contents of the files [`OperatorSpec::files`]
//! names (fetched and decoded by the plan), and draws the run-level data (the `cs`
//! matrix).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rand::Rng;

use super::blur::{gaussian_kernel, GaussianBlur};
use super::blur_kernel::{KernelBlur, Padding};
use super::cs;
use super::file::FileArray;
use super::fourier::SubsampledFourier;
use super::inpaint::PixelMask;
use super::matrix::DenseMatrix;
use super::sr::AvgPool;
use super::sr_bicubic::BicubicDown;
use super::LinearOperator;
use crate::restore::rng::{run_rng, RunStream};

/// A parsed operator string.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorSpec {
    /// `cs:M`: M Gaussian measurements.
    Cs { m: usize },
    /// `sr:f`: f×f average pooling (`sr:1` is the identity: pure denoising).
    Sr { f: usize },
    /// `sr-bicubic:f`: antialiased bicubic downsampling by f, as Pillow's
    /// `resize(…, BICUBIC)` ([`super::sr_bicubic`]).
    SrBicubic { f: usize },
    /// `inpaint-random:p`: each pixel erased with probability p ∈ [0, 1).
    InpaintRandom { p: f64 },
    /// `inpaint-box:h×w` (or `hxw`): an h×w box erased at a random position.
    InpaintBox { h: usize, w: usize },
    /// `blur-gauss:σ`: Gaussian blur, σ > 0 pixels.
    BlurGauss { sigma: f64 },
    /// `matrix:URL`: y = A·vec(x), A an M×(C·H·W) `.npy` ([`super::matrix`]).
    Matrix { url: String },
    /// `blur-kernel:URL[:reflect]`: convolution with the kernel of a `.npy` or grey PNG
    /// ([`super::blur_kernel`]).
    BlurKernel { url: String, padding: Padding },
    /// `fourier:URL`: subsampled orthonormal 2-D DFT per channel, k-space mask from the
    /// file ([`super::fourier`]).
    Fourier { url: String },
}

/// An operator string that cannot be used; displays as "operator `sr:3`: reason".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("operator `{spec}`: {reason}")]
pub struct OperatorError {
    /// The string as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

const KINDS: &str =
    "cs:M, sr:f, sr-bicubic:f, inpaint-random:p, inpaint-box:h×w, blur-gauss:σ, matrix:URL, \
                     blur-kernel:URL[:reflect], fourier:URL";

impl OperatorSpec {
    /// Parse an operator string; checks everything that does not depend on the image shape.
    pub fn parse(s: &str) -> Result<Self, OperatorError> {
        let err = |reason: String| OperatorError {
            spec: s.to_string(),
            reason,
        };
        let (kind, level) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| err(format!("expected `kind:level`, one of {KINDS}")))?;
        let level = level.trim();
        let int = |what: &str| {
            level
                .parse::<usize>()
                .map_err(|_| err(format!("{what} must be a positive integer, got `{level}`")))
        };
        let real = |what: &str| {
            level
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| err(format!("{what} must be a number, got `{level}`")))
        };
        let spec = match kind.trim() {
            "cs" => Self::Cs {
                m: int("the measurement count M")?,
            },
            "sr" => Self::Sr {
                f: int("the factor f")?,
            },
            "sr-bicubic" => Self::SrBicubic {
                f: int("the factor f")?,
            },
            "inpaint-random" => Self::InpaintRandom {
                p: real("the erasure probability p")?,
            },
            "inpaint-box" => {
                let (h, w) = level
                    .split_once(['x', '×', 'X'])
                    .and_then(|(h, w)| Some((h.trim().parse().ok()?, w.trim().parse().ok()?)))
                    .ok_or_else(|| err(format!("expected `h×w` or `hxw`, got `{level}`")))?;
                Self::InpaintBox { h, w }
            }
            "blur-gauss" => Self::BlurGauss { sigma: real("σ")? },
            "matrix" => Self::Matrix {
                url: level.to_string(),
            },
            "fourier" => Self::Fourier {
                url: level.to_string(),
            },
            "blur-kernel" => {
                let (url, padding) = match level.rsplit_once(':') {
                    Some((url, "reflect")) => (url, Padding::Reflect),
                    Some((url, "zero")) => (url, Padding::Zero),
                    _ => (level, Padding::Zero),
                };
                Self::BlurKernel {
                    url: url.to_string(),
                    padding,
                }
            }
            other => {
                return Err(err(format!(
                    "unknown kind `{other}`, expected one of {KINDS}"
                )))
            }
        };
        match spec {
            Self::Cs { m: 0 } => Err(err("M must be at least 1".into())),
            Self::Sr { f: 0 } | Self::SrBicubic { f: 0 } => Err(err("f must be at least 1".into())),
            Self::InpaintRandom { p } if !(0.0..1.0).contains(&p) => {
                Err(err(format!("p = {p} is not in [0, 1)")))
            }
            Self::InpaintBox { h, w } if h == 0 || w == 0 => {
                Err(err("the box must not be empty".into()))
            }
            Self::BlurGauss { sigma } if sigma <= 0.0 => {
                Err(err(format!("σ = {sigma} must be positive")))
            }
            ref spec if spec.files().iter().any(|u| u.is_empty()) => {
                Err(err("names no file (expected `kind:URL`)".into()))
            }
            spec => Ok(spec),
        }
    }

    /// Check the operator against an image shape `[C, H, W]`.
    pub fn validate(&self, shape: [usize; 3]) -> Result<(), OperatorError> {
        let [c, h, w] = shape;
        let n = c * h * w;
        let reason = match *self {
            Self::Cs { m } if m > n => Some(format!("M = {m} exceeds n = C·H·W = {n}")),
            Self::Sr { f } | Self::SrBicubic { f }
                if !h.is_multiple_of(f) || !w.is_multiple_of(f) =>
            {
                Some(format!("{h}×{w} is not divisible by {f}"))
            }
            Self::InpaintBox { h: bh, w: bw } if bh > h || bw > w => {
                Some(format!("a {bh}×{bw} box does not fit {h}×{w}"))
            }
            Self::InpaintBox { h: bh, w: bw } if bh == h && bw == w => {
                Some("the box erases the whole image".into())
            }
            Self::BlurGauss { sigma } if gaussian_kernel(sigma).len() > 2 * h.max(w) + 1 => {
                Some(format!(
                    "kernel size {} exceeds 2·max(H, W)+1 = {} (σ too large for {h}×{w})",
                    gaussian_kernel(sigma).len(),
                    2 * h.max(w) + 1
                ))
            }
            _ => None,
        };
        match reason {
            Some(reason) => Err(OperatorError {
                spec: self.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The files (URLs or local paths) the operator reads; none for the simulated kinds.
    pub fn files(&self) -> Vec<&str> {
        match self {
            Self::Matrix { url } | Self::BlurKernel { url, .. } | Self::Fourier { url } => {
                vec![url.as_str()]
            }
            _ => Vec::new(),
        }
    }

    /// [`Self::build_with`] for the operators that read no file.
    pub fn build(&self, shape: [usize; 3], run_seed: u64) -> Result<OperatorFamily, OperatorError> {
        self.build_with(shape, run_seed, &[])
    }

    /// Validate against `shape` and build the run's family; `cs` draws its matrix from
    /// the run generator of `run_seed`, so every image and worker of a run shares it.
    /// `files` holds the decoded content of every file [`Self::files`] names; what is
    /// wrong with one is reported all together, naming the file.
    pub fn build_with(
        &self,
        shape: [usize; 3],
        run_seed: u64,
        files: &[FileArray],
    ) -> Result<OperatorFamily, OperatorError> {
        self.validate(shape)?;
        let n = shape.iter().product();
        let shared = |op: Arc<dyn LinearOperator>| OperatorFamily::Shared(op);
        let fail = |problems: Vec<String>| OperatorError {
            spec: self.to_string(),
            reason: problems.join("; "),
        };
        let file = |url: &str| {
            files
                .iter()
                .find(|f| f.url == url)
                .ok_or_else(|| fail(vec![format!("{url} was not loaded")]))
        };
        Ok(match *self {
            Self::Cs { m } => shared(Arc::new(cs::gaussian(
                m,
                n,
                &mut run_rng(run_seed, RunStream::CsMatrix),
            ))),
            Self::Sr { f } => shared(Arc::new(AvgPool::new(shape, f))),
            Self::SrBicubic { f } => shared(Arc::new(BicubicDown::new(shape, f))),
            Self::BlurGauss { sigma } => shared(Arc::new(GaussianBlur::new(shape, sigma))),
            Self::InpaintRandom { p } => OperatorFamily::InpaintRandom { shape, p },
            Self::InpaintBox { h, w } => OperatorFamily::InpaintBox { shape, h, w },
            Self::Matrix { ref url } => shared(Arc::new(
                DenseMatrix::from_file(file(url)?, n).map_err(fail)?,
            )),
            Self::BlurKernel { ref url, padding } => shared(Arc::new(
                KernelBlur::from_file(file(url)?, shape, padding).map_err(fail)?,
            )),
            Self::Fourier { ref url } => {
                let fourier =
                    Arc::new(SubsampledFourier::from_file(file(url)?, shape).map_err(fail)?);
                OperatorFamily::Fourier {
                    shared: fourier.clone(),
                    fourier,
                }
            }
        })
    }

    /// The operator's level for the output columns: M, f, p, box area, σ; NaN for the
    /// operators given by a file (the `operator` column names the file).
    pub fn level(&self) -> f64 {
        match *self {
            Self::Cs { m } => m as f64,
            Self::Sr { f } | Self::SrBicubic { f } => f as f64,
            Self::InpaintRandom { p } => p,
            Self::InpaintBox { h, w } => (h * w) as f64,
            Self::BlurGauss { sigma } => sigma,
            Self::Matrix { .. } | Self::BlurKernel { .. } | Self::Fourier { .. } => f64::NAN,
        }
    }

    /// The shape of y when it is given as an image (`y_image`): the low-resolution image
    /// for `sr:f` and `sr-bicubic:f`, the full image for the operators that keep the image grid; none for
    /// `cs`, `matrix` and `fourier`, whose y is a vector.
    pub fn y_image_shape(&self, [c, h, w]: [usize; 3]) -> Option<[usize; 3]> {
        match *self {
            Self::Cs { .. } | Self::Matrix { .. } | Self::Fourier { .. } => None,
            Self::Sr { f } | Self::SrBicubic { f } => Some([c, h / f, w / f]),
            Self::InpaintRandom { .. }
            | Self::InpaintBox { .. }
            | Self::BlurGauss { .. }
            | Self::BlurKernel { .. } => Some([c, h, w]),
        }
    }

    /// The kind alone (`cs`, `sr`, …), for output columns.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cs { .. } => "cs",
            Self::Sr { .. } => "sr",
            Self::SrBicubic { .. } => "sr-bicubic",
            Self::InpaintRandom { .. } => "inpaint-random",
            Self::InpaintBox { .. } => "inpaint-box",
            Self::BlurGauss { .. } => "blur-gauss",
            Self::Matrix { .. } => "matrix",
            Self::BlurKernel { .. } => "blur-kernel",
            Self::Fourier { .. } => "fourier",
        }
    }
}

/// The canonical string (`inpaint-box` written with `x`); parses back to the same spec.
impl fmt::Display for OperatorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cs { m } => write!(f, "cs:{m}"),
            Self::Sr { f: k } => write!(f, "sr:{k}"),
            Self::SrBicubic { f: k } => write!(f, "sr-bicubic:{k}"),
            Self::InpaintRandom { p } => write!(f, "inpaint-random:{p}"),
            Self::InpaintBox { h, w } => write!(f, "inpaint-box:{h}x{w}"),
            Self::BlurGauss { sigma } => write!(f, "blur-gauss:{sigma}"),
            Self::Matrix { url } => write!(f, "matrix:{url}"),
            Self::Fourier { url } => write!(f, "fourier:{url}"),
            Self::BlurKernel { url, padding } => match padding {
                Padding::Zero => write!(f, "blur-kernel:{url}"),
                Padding::Reflect => write!(f, "blur-kernel:{url}:reflect"),
            },
        }
    }
}

impl FromStr for OperatorSpec {
    type Err = OperatorError;
    fn from_str(s: &str) -> Result<Self, OperatorError> {
        Self::parse(s)
    }
}

/// What a record's own `mask` (the input's mask column) means for a run's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordMask {
    /// Inpainting: the pixels the record kept (H×W, shared by the channels).
    Pixels,
    /// `fourier`: the k-space positions the record measured (H×W, in place of the
    /// file's mask); its y has 2·C·|kept| values.
    KSpace,
}

/// The operators of one run: one shared operator, or a rule for drawing one per image.
#[derive(Debug, Clone)]
pub enum OperatorFamily {
    /// `cs`, `sr`, `sr-bicubic`, `blur-gauss`, `matrix`, `blur-kernel`: the same A for
    /// every image.
    Shared(Arc<dyn LinearOperator>),
    /// `fourier`: the file's k-space mask for every image, unless a record brings its
    /// own. `shared` is `fourier` as a [`LinearOperator`].
    Fourier {
        shared: Arc<dyn LinearOperator>,
        fourier: Arc<SubsampledFourier>,
    },
    /// Random inpainting with erasure probability `p`, a fresh mask per image.
    InpaintRandom { shape: [usize; 3], p: f64 },
    /// An h×w box at a random position per image.
    InpaintBox {
        shape: [usize; 3],
        h: usize,
        w: usize,
    },
}

impl OperatorFamily {
    /// The family with its shared structured operator given a dense matrix
    /// ([`Densified`](super::matrix::Densified)) when that has at most `max_entries`
    /// entries, so that the fused dense gradient graph can take it. `fourier` keeps its
    /// operator (a record may bring its own k-space mask), as do the per-image families.
    pub fn densified(self, max_entries: usize) -> Self {
        match self {
            Self::Shared(op) if op.dense_matrix().is_none() => {
                match super::matrix::Densified::new(op.clone(), max_entries) {
                    Some(dense) => Self::Shared(Arc::new(dense)),
                    None => Self::Shared(op),
                }
            }
            other => other,
        }
    }

    /// The shared operator, when there is one (for `fourier`: the file's mask).
    pub fn shared(&self) -> Option<&Arc<dyn LinearOperator>> {
        match self {
            Self::Shared(op) | Self::Fourier { shared: op, .. } => Some(op),
            _ => None,
        }
    }

    /// What a record's `mask` is for this operator; `None`: the operator takes none.
    pub fn record_mask(&self) -> Option<RecordMask> {
        match self {
            Self::InpaintRandom { .. } | Self::InpaintBox { .. } => Some(RecordMask::Pixels),
            Self::Fourier { .. } => Some(RecordMask::KSpace),
            Self::Shared(_) => None,
        }
    }

    /// M, the length of y, for an image with the record mask `mask` (H·W values, > 0.5
    /// kept) or without one; why not, when the mask does not fit the operator.
    pub fn measurements_for(&self, mask: Option<&[f32]>) -> Result<usize, String> {
        let flags = |shape: [usize; 3], mask: &[f32]| {
            let [_, h, w] = shape;
            if mask.len() == h * w {
                Ok(mask.iter().filter(|&&v| v > 0.5).count())
            } else {
                Err(format!(
                    "the mask has {} values, a {h}×{w} image needs {}",
                    mask.len(),
                    h * w
                ))
            }
        };
        match (self, mask) {
            (Self::Shared(op), None) | (Self::Fourier { shared: op, .. }, None) => {
                Ok(op.measurements())
            }
            (Self::InpaintRandom { shape, .. } | Self::InpaintBox { shape, .. }, m) => {
                if let Some(m) = m {
                    flags(*shape, m)?;
                }
                Ok(shape.iter().product())
            }
            (Self::Fourier { fourier, .. }, Some(m)) => match flags(fourier.shape(), m)? {
                0 => Err("the k-space mask keeps no position".into()),
                kept => Ok(2 * fourier.shape()[0] * kept),
            },
            (Self::Shared(_), Some(_)) => Err(NO_RECORD_MASK.into()),
        }
    }

    /// The operator of one image; per-image kinds draw from `rng`, which must be the
    /// image's operator stream (`ImageRngs::operator`). Shared kinds draw nothing.
    pub fn for_image<R: Rng + ?Sized>(&self, rng: &mut R) -> Arc<dyn LinearOperator> {
        match *self {
            Self::Shared(ref op) | Self::Fourier { shared: ref op, .. } => Arc::clone(op),
            Self::InpaintRandom { shape, p } => Arc::new(PixelMask::random(shape, p, rng)),
            Self::InpaintBox { shape, h, w } => Arc::new(PixelMask::random_box(shape, h, w, rng)),
        }
    }

    /// The operator of one record: made from its own `mask` (H·W values, > 0.5 kept)
    /// where it has one — the kept pixels for inpainting, the kept k-space positions for
    /// `fourier` —, else [`Self::for_image`]. Why not, when the mask does not fit.
    pub fn for_record<R: Rng + ?Sized>(
        &self,
        mask: Option<&[f32]>,
        rng: &mut R,
    ) -> Result<Arc<dyn LinearOperator>, String> {
        let Some(mask) = mask else {
            return Ok(self.for_image(rng));
        };
        self.measurements_for(Some(mask))?;
        let flags: Vec<bool> = mask.iter().map(|&v| v > 0.5).collect();
        Ok(match self {
            Self::InpaintRandom { shape, .. } | Self::InpaintBox { shape, .. } => {
                Arc::new(PixelMask::new(*shape, flags))
            }
            Self::Fourier { fourier, .. } => Arc::new(fourier.with_mask(&flags)?),
            Self::Shared(_) => return Err(NO_RECORD_MASK.into()),
        })
    }
}

/// Why a record's mask is refused by an operator that takes none.
const NO_RECORD_MASK: &str =
    "has a `mask`, but the run's operator takes none (inpaint-random, inpaint-box and fourier do)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::operators::test_util::{self, assert_adjoint};
    use crate::restore::rng::ImageRngs;

    fn reason(s: &str, shape: [usize; 3]) -> String {
        match OperatorSpec::parse(s).and_then(|spec| spec.build(shape, 0)) {
            Ok(_) => panic!("`{s}` was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            OperatorSpec::parse("cs:256").unwrap(),
            OperatorSpec::Cs { m: 256 }
        );
        assert_eq!(
            OperatorSpec::parse("sr:4").unwrap(),
            OperatorSpec::Sr { f: 4 }
        );
        assert_eq!(
            OperatorSpec::parse("sr-bicubic:4").unwrap(),
            OperatorSpec::SrBicubic { f: 4 }
        );
        assert_eq!(
            OperatorSpec::parse("inpaint-random:0.5").unwrap(),
            OperatorSpec::InpaintRandom { p: 0.5 }
        );
        assert_eq!(
            OperatorSpec::parse("inpaint-box:16×8").unwrap(),
            OperatorSpec::InpaintBox { h: 16, w: 8 }
        );
        assert_eq!(
            OperatorSpec::parse("inpaint-box:16x8").unwrap(),
            OperatorSpec::InpaintBox { h: 16, w: 8 }
        );
        assert_eq!(
            OperatorSpec::parse("blur-gauss:1.5").unwrap(),
            OperatorSpec::BlurGauss { sigma: 1.5 }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "cs:256",
            "sr:4",
            "sr-bicubic:2",
            "inpaint-random:0.5",
            "inpaint-box:16x8",
            "blur-gauss:1.5",
        ] {
            assert_eq!(OperatorSpec::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            "inpaint-box:3×4"
                .parse::<OperatorSpec>()
                .unwrap()
                .to_string(),
            "inpaint-box:3x4"
        );
    }

    #[test]
    fn bad_strings_say_why() {
        let s = [3, 32, 32];
        assert_eq!(
            reason("sr:3", s),
            "operator `sr:3`: 32×32 is not divisible by 3"
        );
        assert_eq!(
            reason("sr-bicubic:5", s),
            "operator `sr-bicubic:5`: 32×32 is not divisible by 5"
        );
        assert!(reason("sr-bicubic:0", s).contains("at least 1"));
        assert!(reason("sr-bicubic:x", s).contains("positive integer"));
        assert!(reason("cs:5000", s).contains("M = 5000 exceeds n = C·H·W = 3072"));
        assert!(reason("cs:0", s).contains("at least 1"));
        assert!(reason("cs:-3", s).contains("positive integer"));
        assert!(reason("sr", s).contains("expected `kind:level`"));
        assert!(reason("denoise:1", s).contains("unknown kind `denoise`"));
        assert!(reason("inpaint-random:1", s).contains("not in [0, 1)"));
        assert!(reason("inpaint-random:-0.1", s).contains("not in [0, 1)"));
        assert!(reason("inpaint-random:nan", s).contains("must be a number"));
        assert!(reason("inpaint-box:40x4", s).contains("does not fit 32×32"));
        assert!(reason("inpaint-box:32x32", s).contains("whole image"));
        assert!(reason("inpaint-box:4by4", s).contains("expected `h×w`"));
        assert!(reason("blur-gauss:0", s).contains("must be positive"));
        assert!(reason("blur-gauss:100", s).contains("kernel size"));
    }

    #[test]
    fn file_operators_keep_their_url() {
        let m = OperatorSpec::parse("matrix:s3://bucket/ops/A.npy").unwrap();
        assert_eq!(
            m,
            OperatorSpec::Matrix {
                url: "s3://bucket/ops/A.npy".into()
            }
        );
        assert_eq!(m.files(), vec!["s3://bucket/ops/A.npy"]);
        assert_eq!(
            OperatorSpec::parse("blur-kernel:file:///k/psf.png:reflect").unwrap(),
            OperatorSpec::BlurKernel {
                url: "file:///k/psf.png".into(),
                padding: Padding::Reflect
            }
        );
        assert_eq!(
            OperatorSpec::parse("blur-kernel:psf.npy:zero").unwrap(),
            OperatorSpec::parse("blur-kernel:psf.npy").unwrap()
        );
        assert_eq!(
            OperatorSpec::parse("fourier:/data/mask.npy")
                .unwrap()
                .files(),
            vec!["/data/mask.npy"]
        );
        for s in [
            "matrix:s3://b/A.npy",
            "fourier:mask.png",
            "blur-kernel:file:///k.npy:reflect",
            "blur-kernel:k.npy",
        ] {
            assert_eq!(OperatorSpec::parse(s).unwrap().to_string(), s);
        }
        assert!(reason("matrix:", [1, 4, 4]).contains("names no file"));
        assert!(OperatorSpec::parse("cs:4").unwrap().files().is_empty());
        // The simulated kinds build without files; a file kind without its file says so.
        let err = OperatorSpec::parse("matrix:a.npy")
            .unwrap()
            .build([1, 2, 2], 0)
            .unwrap_err();
        assert!(err.to_string().contains("a.npy was not loaded"), "{err}");
    }

    #[test]
    fn file_operators_build_from_their_files() {
        let shape = [2, 4, 4];
        let a = FileArray::npy_f32("A.npy", &[5, 32], test_util::randn(5 * 32, 1));
        let mask = FileArray::npy_f32("m.npy", &[4, 4], [1.0, 0.0].repeat(8));
        let k = FileArray::npy_f32("k.npy", &[3, 3], vec![1.0 / 9.0; 9]);
        let files = [a, mask, k];
        let build = |s: &str| {
            OperatorSpec::parse(s)
                .unwrap()
                .build_with(shape, 0, &files)
                .unwrap()
        };
        let matrix = build("matrix:A.npy");
        let op = matrix.shared().unwrap();
        assert_eq!((op.measurements(), op.dense_matrix().is_some()), (5, true));
        let fourier = build("fourier:m.npy");
        let op = fourier.shared().unwrap();
        assert_eq!(
            (op.measurements(), op.dense_matrix().is_some()),
            (2 * 2 * 8, false)
        );
        assert_eq!(fourier.record_mask(), Some(RecordMask::KSpace));
        assert_eq!(matrix.record_mask(), None);
        for fam in [matrix, fourier, build("blur-kernel:k.npy:reflect")] {
            assert_adjoint(fam.shared().unwrap().as_ref());
        }
        // A file of the wrong shape: the operator, the file, expected and found.
        let err = OperatorSpec::parse("matrix:A.npy")
            .unwrap()
            .build_with([1, 4, 4], 0, &files)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("operator `matrix:A.npy`: A.npy: expected an M×16")
                && err.contains("found (5, 32) float32"),
            "{err}"
        );
    }

    #[test]
    fn shared_and_per_image_families() {
        let shape = [1, 8, 8];
        let cs = OperatorSpec::parse("cs:10")
            .unwrap()
            .build(shape, 3)
            .unwrap();
        let (a, b) = (
            cs.for_image(&mut ImageRngs::new(3, "a").operator),
            cs.for_image(&mut ImageRngs::new(3, "b").operator),
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.measurements(), 10);
        // The same run seed rebuilds the same matrix (workers agree without talking).
        let again = OperatorSpec::parse("cs:10")
            .unwrap()
            .build(shape, 3)
            .unwrap();
        assert_eq!(a.dense_matrix(), again.shared().unwrap().dense_matrix());

        let inp = OperatorSpec::parse("inpaint-random:0.5")
            .unwrap()
            .build(shape, 3)
            .unwrap();
        assert!(inp.shared().is_none());
        let mask = |id: &str| {
            let op = inp.for_image(&mut ImageRngs::new(3, id).operator);
            crate::restore::operators::apply(op.as_ref(), &[1.0; 64])
        };
        assert_eq!(mask("a"), mask("a"));
        assert_ne!(mask("a"), mask("b"));
    }

    #[test]
    fn a_record_mask_makes_the_records_operator() {
        let shape = [3, 4, 4];
        let rng = || ImageRngs::new(0, "r").operator;
        let mask: Vec<f32> = (0..16)
            .map(|k| if k % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        // Inpainting: the record's pixels, full-size y.
        let inp = OperatorSpec::parse("inpaint-random:0.5")
            .unwrap()
            .build(shape, 0)
            .unwrap();
        assert_eq!(inp.record_mask(), Some(RecordMask::Pixels));
        let op = inp.for_record(Some(&mask), &mut rng()).unwrap();
        let y = crate::restore::operators::apply(op.as_ref(), &[1.0; 48]);
        assert_eq!(y.iter().filter(|&&v| v == 1.0).count(), 3 * 4);
        assert_eq!(inp.measurements_for(Some(&mask)), Ok(48));
        // fourier: the record's k-space positions, 2·C·|kept| values.
        let file = FileArray::npy_f32("m.npy", &[4, 4], vec![1.0; 16]);
        let fourier = OperatorSpec::parse("fourier:m.npy")
            .unwrap()
            .build_with(shape, 0, &[file])
            .unwrap();
        assert_eq!(fourier.measurements_for(None), Ok(2 * 3 * 16));
        assert_eq!(fourier.measurements_for(Some(&mask)), Ok(2 * 3 * 4));
        let op = fourier.for_record(Some(&mask), &mut rng()).unwrap();
        assert_eq!(op.measurements(), 24);
        assert_adjoint(op.as_ref());
        assert_eq!(
            fourier.for_record(None, &mut rng()).unwrap().measurements(),
            96
        );
        // Masks that do not fit, and operators that take none, say why.
        assert!(fourier
            .for_record(Some(&[0.0; 16]), &mut rng())
            .unwrap_err()
            .contains("keeps no position"));
        assert!(fourier
            .measurements_for(Some(&[1.0; 9]))
            .unwrap_err()
            .contains("9 values, a 4×4 image needs 16"));
        let sr = OperatorSpec::parse("sr:2")
            .unwrap()
            .build(shape, 0)
            .unwrap();
        assert!(sr
            .for_record(Some(&mask), &mut rng())
            .unwrap_err()
            .contains("takes none"));
    }

    #[test]
    fn every_built_operator_satisfies_the_adjoint_identity() {
        let shape = [3, 16, 16];
        for s in [
            "cs:100",
            "sr:2",
            "sr:4",
            "sr-bicubic:2",
            "sr-bicubic:4",
            "inpaint-random:0.3",
            "inpaint-box:5x7",
            "blur-gauss:1.5",
        ] {
            let fam = OperatorSpec::parse(s).unwrap().build(shape, 1).unwrap();
            assert_adjoint(
                fam.for_image(&mut ImageRngs::new(1, "img").operator)
                    .as_ref(),
            );
        }
    }
}
