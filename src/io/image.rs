//! Image codecs at the edge: PNG/JPEG bytes ⇄ CHW float32 in the model range [-1, 1].

use std::io::Cursor;

use anyhow::{bail, Context, Result};
use image::{DynamicImage, ImageFormat};

/// A decoded image, CHW float32 in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    /// [C, H, W].
    pub shape: [usize; 3],
    /// C·H·W values in [-1, 1], channel-major.
    pub data: Vec<f32>,
}

/// An image's [height, width] from its header alone: no pixel is decoded, so callers
/// can refuse a wrong-sized (or huge) image before it costs any memory.
pub fn dimensions(bytes: &[u8]) -> Result<[usize; 2]> {
    let (w, h) = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .context("not a readable PNG or JPEG image")?
        .into_dimensions()
        .context("not a readable PNG or JPEG image")?;
    Ok([h as usize, w as usize])
}

/// Decodes PNG or JPEG bytes into `channels` channels (1 = grey, 3 = RGB).
pub fn decode(bytes: &[u8], channels: usize) -> Result<Pixels> {
    let img = image::load_from_memory(bytes).context("not a readable PNG or JPEG image")?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data: Vec<f32> = match channels {
        1 => img
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(|v| v as f32 / 127.5 - 1.0)
            .collect(),
        3 => {
            let rgb = img.to_rgb8().into_raw();
            let mut chw = vec![0f32; 3 * h * w];
            for (p, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    chw[c * h * w + p] = px[c] as f32 / 127.5 - 1.0;
                }
            }
            chw
        }
        other => bail!("images with {other} channels are not supported (1 or 3)"),
    };
    Ok(Pixels {
        shape: [channels, h, w],
        data,
    })
}

/// Encodes CHW values in [-1, 1] (clipped) as PNG: grey for C = 1, RGB for C = 3.
pub fn encode_png(shape: [usize; 3], data: &[f32]) -> Result<Vec<u8>> {
    let [c, h, w] = shape;
    if data.len() != c * h * w {
        bail!("{} values do not make a {c}×{h}×{w} image", data.len());
    }
    let to_u8 = |v: f32| (((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round()) as u8;
    let img = match c {
        1 => DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(
                w as u32,
                h as u32,
                data.iter().map(|&v| to_u8(v)).collect(),
            )
            .context("image buffer size")?,
        ),
        3 => {
            let mut hwc = vec![0u8; 3 * h * w];
            for p in 0..h * w {
                for ch in 0..3 {
                    hwc[3 * p + ch] = to_u8(data[ch * h * w + p]);
                }
            }
            DynamicImage::ImageRgb8(
                image::RgbImage::from_raw(w as u32, h as u32, hwc).context("image buffer size")?,
            )
        }
        other => bail!("cannot write a PNG with {other} channels"),
    };
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .context("PNG encoding failed")?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_png_round_trips_at_8_bits() {
        let data: Vec<f32> = (0..12).map(|i| i as f32 / 11.0 * 2.0 - 1.0).collect();
        let png = encode_png([1, 3, 4], &data).unwrap();
        let back = decode(&png, 1).unwrap();
        assert_eq!(back.shape, [1, 3, 4]);
        for (a, b) in data.iter().zip(&back.data) {
            assert!((a - b).abs() <= 1.0 / 127.5, "{a} vs {b}");
        }
    }

    #[test]
    fn rgb_channels_stay_apart() {
        let mut data = vec![-1.0f32; 3 * 2 * 2];
        data[4..8].fill(1.0); // green plane
        let png = encode_png([3, 2, 2], &data).unwrap();
        let back = decode(&png, 3).unwrap();
        assert_eq!(back.data, data);
    }

    #[test]
    fn dimensions_come_from_the_header() {
        let png = encode_png([1, 3, 5], &[0.0; 15]).unwrap();
        assert_eq!(dimensions(&png).unwrap(), [3, 5]);
        assert!(dimensions(b"not an image").is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"not an image", 1).is_err());
    }
}
