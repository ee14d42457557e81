//! Operator files (`matrix:URL`, `blur-kernel:URL`, `fourier:URL`) at the edge: fetched
//! from any store adps reads (a local path, `file://`, `s3://`, `memory://`), hashed,
//! and decoded from `.npy` or PNG bytes into the [`FileArray`] the operators check and
//! use. The format is told by the file's first bytes, not its name.

use std::io::Cursor;

use anyhow::{Context, Result};
use image::{DynamicImage, ImageFormat};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement};
use sha2::{Digest, Sha256};

use super::store::{self, Retry};
use crate::restore::operators::{FileArray, FileType};

/// The first bytes of every `.npy` file.
const NPY_MAGIC: &[u8] = b"\x93NUMPY";
/// The first bytes of every PNG file.
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// One operator file, read and decoded.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub array: FileArray,
    /// SHA-256 of the file's bytes (hex); part of the run's settings hash.
    pub sha256: String,
}

/// The bytes of one file and their SHA-256.
pub fn fetch(rt: &tokio::runtime::Handle, url: &str, retry: Retry) -> Result<(Vec<u8>, String)> {
    let bytes = store::read_file(rt, url, retry)?;
    let sha = hex::encode(Sha256::digest(&bytes));
    Ok((bytes, sha))
}

/// Fetches and decodes every file in `urls`; every one that cannot be read or decoded is
/// a problem ("URL: what is wrong"), all of them listed.
pub fn load_all(
    rt: &tokio::runtime::Handle,
    urls: &[&str],
    retry: Retry,
) -> Result<Vec<LoadedFile>, Vec<String>> {
    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    for &url in urls {
        match fetch(rt, url, retry) {
            Ok((bytes, sha256)) => match decode(url, &bytes) {
                Ok(array) => loaded.push(LoadedFile { array, sha256 }),
                Err(e) => problems.push(format!("{url}: {e}")),
            },
            Err(e) => problems.push(format!("{url}: cannot read: {e:#}")),
        }
    }
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(problems)
    }
}

/// The SHA-256 of every file in `urls`, as `(url, hash)`; for the settings hash where
/// the contents are not needed (`adps status`).
pub fn hashes(
    rt: &tokio::runtime::Handle,
    urls: &[&str],
    retry: Retry,
) -> Result<Vec<(String, String)>> {
    urls.iter()
        .map(|&url| {
            let (_, sha) = fetch(rt, url, retry).with_context(|| format!("operator file {url}"))?;
            Ok((url.to_string(), sha))
        })
        .collect()
}

/// Decodes a `.npy` (any shape; bool, integer or float dtype; C or Fortran order) or a
/// grey PNG (8 or 16 bits) into row-major f32 values.
pub fn decode(url: &str, bytes: &[u8]) -> Result<FileArray, String> {
    let (file_type, shape, values) = if bytes.starts_with(NPY_MAGIC) {
        decode_npy(bytes)?
    } else if bytes.starts_with(PNG_MAGIC) {
        decode_png(bytes)?
    } else {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(format!(
            "not a .npy or PNG file (it starts with bytes {}, {} bytes in all)",
            head.join(" "),
            bytes.len()
        ));
    };
    Ok(FileArray {
        url: url.to_string(),
        file_type,
        shape,
        values,
    })
}

type Decoded = (FileType, Vec<usize>, Vec<f32>);

/// One dtype's attempt at a `.npy`: `None` when the file holds another dtype.
type NpyTry = fn(&[u8]) -> Option<Result<Decoded, String>>;

/// The array as `T` when the file's dtype is `T`'s; `None` when it is another dtype.
fn npy_as<T: ReadableElement + Copy>(
    bytes: &[u8],
    dtype: &'static str,
    to_f32: fn(T) -> f32,
) -> Option<Result<Decoded, String>> {
    match ArrayD::<T>::read_npy(bytes) {
        Ok(a) => Some(Ok((
            FileType::Npy(dtype),
            a.shape().to_vec(),
            a.iter().map(|&v| to_f32(v)).collect(),
        ))),
        Err(ReadNpyError::WrongDescriptor(_)) => None,
        Err(e) => Some(Err(format!("not a readable .npy file: {e}"))),
    }
}

fn decode_npy(bytes: &[u8]) -> Result<Decoded, String> {
    let tries: [NpyTry; 11] = [
        |b| npy_as::<f32>(b, "float32", |v| v),
        |b| npy_as::<f64>(b, "float64", |v| v as f32),
        |b| npy_as::<bool>(b, "bool", |v| v as u8 as f32),
        |b| npy_as::<u8>(b, "uint8", |v| v as f32),
        |b| npy_as::<i8>(b, "int8", |v| v as f32),
        |b| npy_as::<u16>(b, "uint16", |v| v as f32),
        |b| npy_as::<i16>(b, "int16", |v| v as f32),
        |b| npy_as::<u32>(b, "uint32", |v| v as f32),
        |b| npy_as::<i32>(b, "int32", |v| v as f32),
        |b| npy_as::<u64>(b, "uint64", |v| v as f32),
        |b| npy_as::<i64>(b, "int64", |v| v as f32),
    ];
    if let Some(found) = tries.iter().find_map(|t| t(bytes)) {
        return found;
    }
    let header = ndarray_npy::npy::header::Header::from_reader(&mut Cursor::new(bytes))
        .map_err(|e| format!("not a readable .npy file: {e}"))?;
    Err(format!(
        "a .npy of shape {:?} and dtype {} (expected bool, an integer or a float dtype)",
        header.shape, header.type_descriptor
    ))
}

fn decode_png(bytes: &[u8]) -> Result<Decoded, String> {
    let img = image::load_from_memory_with_format(bytes, ImageFormat::Png)
        .map_err(|e| format!("not a readable PNG: {e}"))?;
    let shape = vec![img.height() as usize, img.width() as usize];
    match img {
        DynamicImage::ImageLuma8(g) => Ok((
            FileType::GreyPng(8),
            shape,
            g.into_raw().into_iter().map(f32::from).collect(),
        )),
        DynamicImage::ImageLuma16(g) => Ok((
            FileType::GreyPng(16),
            shape,
            g.into_raw().into_iter().map(f32::from).collect(),
        )),
        other => Err(format!(
            "a {:?} PNG of {}×{}; expected a grey PNG (8 or 16 bits, no alpha)",
            other.color(),
            shape[0],
            shape[1]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2, ShapeBuilder};
    use ndarray_npy::WriteNpyExt;

    fn npy<T: ndarray_npy::WritableElement>(a: &Array2<T>) -> Vec<u8> {
        let mut out = Vec::new();
        a.write_npy(&mut out).unwrap();
        out
    }

    #[test]
    fn npy_of_every_common_dtype() {
        let f = decode("a.npy", &npy(&array![[1.5f32, 2.0], [3.0, 4.0]])).unwrap();
        assert_eq!(f.found(), "(2, 2) float32");
        assert_eq!(f.values, vec![1.5, 2.0, 3.0, 4.0]);
        let f = decode("a.npy", &npy(&array![[1.5f64, -2.0, 1e300]])).unwrap();
        assert_eq!(f.found(), "(1, 3) float64");
        assert_eq!(f.non_finite(), 1, "1e300 is beyond float32");
        let f = decode("m.npy", &npy(&array![[true, false]])).unwrap();
        assert_eq!(
            (f.file_type, f.values),
            (FileType::Npy("bool"), vec![1.0, 0.0])
        );
        let f = decode("m.npy", &npy(&array![[7i64, 0]])).unwrap();
        assert_eq!(f.found(), "(1, 2) int64");
    }

    #[test]
    fn fortran_order_is_read_row_major() {
        let a = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let f = decode("a.npy", &npy(&a.t().to_owned().reversed_axes())).unwrap();
        assert_eq!(f.values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let mut fortran = Array2::<f32>::zeros((2, 3).f());
        fortran.assign(&a);
        let f = decode("a.npy", &npy(&fortran)).unwrap();
        assert_eq!(
            (f.shape.clone(), f.values),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
    }

    #[test]
    fn grey_png_and_what_is_refused() {
        let mut png = Vec::new();
        image::GrayImage::from_raw(3, 2, vec![0, 10, 20, 30, 40, 255])
            .unwrap()
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let f = decode("k.png", &png).unwrap();
        assert_eq!(f.found(), "(2, 3) 8-bit grey PNG");
        assert_eq!(f.values, vec![0.0, 10.0, 20.0, 30.0, 40.0, 255.0]);

        let mut rgb = Vec::new();
        image::RgbImage::new(2, 2)
            .write_to(&mut Cursor::new(&mut rgb), ImageFormat::Png)
            .unwrap();
        assert!(decode("k.png", &rgb)
            .unwrap_err()
            .contains("expected a grey PNG"));
        let err = decode("k.txt", b"hello world").unwrap_err();
        assert!(err.contains("not a .npy or PNG file"), "{err}");
        let truncated = &npy(&Array2::from_elem((4, 4), 1.0f32))[..100];
        let err = decode("a.npy", truncated).unwrap_err();
        assert!(err.contains("not a readable .npy"), "{err}");
    }
}
