//! The content of an operator file (`matrix:URL`, `blur-kernel:URL`, `fourier:URL`), as
//! the operators receive it: already fetched and decoded by the plan
//! (`crate::io::operator_file`), so nothing here does I/O.
//!
//! Every check of a file's content lives beside the operator that reads it; the helpers
//! here state what was found (shape, type) in the words the checks use, so that a
//! message reads "expected 16×3072 float32 or float64, found (16, 1024) int64".

use std::fmt;

/// What a file held before its values were converted to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A `.npy` array of this NumPy dtype name (`float32`, `float64`, `bool`, `uint8`, …).
    Npy(&'static str),
    /// A grey PNG of this many bits per sample (8 or 16).
    GreyPng(u8),
}

impl FileType {
    /// A `.npy` of float32 or float64.
    pub fn is_float(self) -> bool {
        matches!(self, Self::Npy("float32" | "float64"))
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Npy(dtype) => f.write_str(dtype),
            Self::GreyPng(bits) => write!(f, "{bits}-bit grey PNG"),
        }
    }
}

/// One decoded operator file: a row-major (C-order) array of any rank, values as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct FileArray {
    /// The URL or path as written in the operator string (the key the operator looks it
    /// up by, and the name every message gives).
    pub url: String,
    pub file_type: FileType,
    /// The array's shape; `[H, W]` for a PNG.
    pub shape: Vec<usize>,
    /// The values in row-major order (float64 converted to float32; PNG grey levels as
    /// they are, 0–255 or 0–65535).
    pub values: Vec<f32>,
}

impl FileArray {
    /// `(3, 4) float32`: what a message says was found.
    pub fn found(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(usize::to_string).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        format!("{shape} {}", self.file_type)
    }

    /// The number of values that are NaN or ±∞ (a float64 beyond the float32 range
    /// counts as one: it became ∞ when converted).
    pub fn non_finite(&self) -> usize {
        self.values.iter().filter(|v| !v.is_finite()).count()
    }

    /// The `[rows, cols]` of a 2-D array.
    pub fn dims2(&self) -> Option<[usize; 2]> {
        match self.shape[..] {
            [r, c] => Some([r, c]),
            _ => None,
        }
    }

    /// A "{url}: …" problem for each way the file breaks a rule: `shape_ok` on its
    /// shape, `type_ok` on its type, and finite values; `expected` says what would do.
    pub fn check(&self, expected: &str, shape_ok: bool, type_ok: bool) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if !shape_ok || !type_ok {
            problems.push(format!(
                "{}: expected {expected}, found {}",
                self.url,
                self.found()
            ));
        }
        let bad = self.non_finite();
        if bad > 0 {
            problems.push(format!(
                "{}: {bad} of {} values are not finite (NaN or ±∞)",
                self.url,
                self.values.len()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// A small float32 array for tests.
    #[cfg(test)]
    pub fn npy_f32(url: &str, shape: &[usize], values: Vec<f32>) -> Self {
        assert_eq!(shape.iter().product::<usize>(), values.len());
        Self {
            url: url.into(),
            file_type: FileType::Npy("float32"),
            shape: shape.to_vec(),
            values,
        }
    }
}
