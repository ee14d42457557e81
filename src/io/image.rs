//! Image codecs at the edge: PNG/JPEG/TIFF bytes ⇄ CHW float32 in the model range [-1, 1].
//!
//! TIFF is read because Hugging Face `datasets` stores 16-bit and float32 arrays given
//! to an `Image` feature as TIFF (Pillow modes `I;16` and `F`). Integer images map
//! their levels onto [-1, 1]; float images hold values in [0, 1] (as the `pixels`
//! column does) and map as 2v − 1.

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
    if is_tiff(bytes) {
        let mut d = tiff::decoder::Decoder::new(Cursor::new(bytes)).context(UNREADABLE)?;
        let (w, h) = d.dimensions().context(UNREADABLE)?;
        return Ok([h as usize, w as usize]);
    }
    let (w, h) = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .context(UNREADABLE)?
        .into_dimensions()
        .context(UNREADABLE)?;
    Ok([h as usize, w as usize])
}

const UNREADABLE: &str = "not a readable PNG, JPEG or TIFF image";

/// TIFF's byte-order mark and magic number, little- or big-endian.
fn is_tiff(bytes: &[u8]) -> bool {
    bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*")
}

/// Decodes PNG, JPEG or TIFF bytes into `channels` channels (1 = grey, 3 = RGB).
pub fn decode(bytes: &[u8], channels: usize) -> Result<Pixels> {
    match load(bytes)? {
        Loaded::Image(img) => decode_image(img, channels),
        Loaded::GreyFloat(px) => convert_channels(px, channels),
    }
}

/// Decodes PNG, JPEG or TIFF bytes with the channels the image has: 1 for grey (alpha
/// dropped), 3 for colour (alpha dropped).
pub fn decode_native(bytes: &[u8]) -> Result<Pixels> {
    match load(bytes)? {
        Loaded::Image(img) => {
            let channels = if img.color().has_color() { 3 } else { 1 };
            decode_image(img, channels)
        }
        Loaded::GreyFloat(px) => Ok(px),
    }
}

enum Loaded {
    Image(DynamicImage),
    /// A grey float TIFF, already in the model's range.
    GreyFloat(Pixels),
}

fn load(bytes: &[u8]) -> Result<Loaded> {
    match image::load_from_memory(bytes) {
        Ok(img) => Ok(Loaded::Image(img)),
        // `image` reads integer and RGB float TIFFs, not grey float ones.
        Err(e) if is_tiff(bytes) => match grey_float_tiff(bytes)? {
            Some(px) => Ok(Loaded::GreyFloat(px)),
            None => Err(anyhow::Error::new(e).context(UNREADABLE)),
        },
        Err(e) => Err(anyhow::Error::new(e).context(UNREADABLE)),
    }
}

/// A one-channel float32/float64 TIFF as pixels, `None` for any other TIFF.
fn grey_float_tiff(bytes: &[u8]) -> Result<Option<Pixels>> {
    use tiff::decoder::{Decoder, DecodingResult};
    let mut d = Decoder::new(Cursor::new(bytes)).context(UNREADABLE)?;
    let (w, h) = d.dimensions().context(UNREADABLE)?;
    if !matches!(
        d.colortype().context(UNREADABLE)?,
        tiff::ColorType::Gray(32 | 64)
    ) {
        return Ok(None);
    }
    let values: Vec<f32> = match d.read_image().context(UNREADABLE)? {
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        _ => return Ok(None),
    };
    Ok(Some(Pixels {
        shape: [1, h as usize, w as usize],
        data: unit_floats(values)?,
    }))
}

/// Float pixel values in [0, 1] to the model's range, refusing others (as the `pixels`
/// column does: 0–255 or [−1, 1] data would otherwise restore as a wrong image).
fn unit_floats(values: Vec<f32>) -> Result<Vec<f32>> {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if values.iter().any(|v| !v.is_finite()) {
        bail!("a float image holds a non-finite value");
    }
    if lo < 0.0 || hi > 1.0 {
        bail!(
            "a float image's values must lie in [0, 1], found {lo}..{hi}: scale it (e.g. \
             v / 255), or store the values as list<float32>"
        );
    }
    Ok(values.into_iter().map(|v| 2.0 * v - 1.0).collect())
}

fn convert_channels(px: Pixels, channels: usize) -> Result<Pixels> {
    match (px.shape[0], channels) {
        (c, k) if c == k => Ok(px),
        (1, 3) => Ok(px.to_rgb()),
        (3, 1) => Ok(px.to_grey()),
        (_, other) => bail!("images with {other} channels are not supported (1 or 3)"),
    }
}

fn decode_image(img: DynamicImage, channels: usize) -> Result<Pixels> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if matches!(
        img.color(),
        image::ColorType::Rgb32F | image::ColorType::Rgba32F
    ) {
        let rgb = unit_floats(img.to_rgb32f().into_raw())?;
        let px = Pixels {
            shape: [3, h, w],
            data: hwc_to_chw(&rgb, 3, h, w),
        };
        return convert_channels(px, channels);
    }
    // 16-bit images (scientific PNGs, 16-bit masks) keep their 65,536 levels: read as
    // 8-bit they would lose them, and a 16-bit 0/1 mask would read as all black.
    let sixteen = matches!(
        img.color(),
        image::ColorType::L16
            | image::ColorType::La16
            | image::ColorType::Rgb16
            | image::ColorType::Rgba16
    );
    let interleaved: Vec<f32> = match (channels, sixteen) {
        (1, false) => to_model(img.to_luma8().into_raw(), 127.5),
        (1, true) => to_model(img.to_luma16().into_raw(), 32767.5),
        (3, false) => to_model(img.to_rgb8().into_raw(), 127.5),
        (3, true) => to_model(img.to_rgb16().into_raw(), 32767.5),
        (other, _) => bail!("images with {other} channels are not supported (1 or 3)"),
    };
    Ok(Pixels {
        shape: [channels, h, w],
        data: hwc_to_chw(&interleaved, channels, h, w),
    })
}

/// HWC (interleaved) to CHW.
fn hwc_to_chw(interleaved: &[f32], channels: usize, h: usize, w: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    let mut chw = vec![0f32; channels * h * w];
    for (p, px) in interleaved.chunks_exact(channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            chw[c * h * w + p] = v;
        }
    }
    chw
}

/// Integer pixel levels to the model's range: level / half − 1 (half = max / 2).
fn to_model<T: Into<f32>>(levels: Vec<T>, half: f32) -> Vec<f32> {
    levels.into_iter().map(|v| v.into() / half - 1.0).collect()
}

/// ITU-R 601 luma weights (Pillow's `convert("L")`, torchvision's `rgb_to_grayscale`).
pub const LUMA_601: [f32; 3] = [0.299, 0.587, 0.114];

impl Pixels {
    /// Whether a colour image's three channels are equal (a grey image stored as RGB).
    pub fn is_grey_rgb(&self) -> bool {
        let [c, h, w] = self.shape;
        let n = h * w;
        c == 3
            && (0..n)
                .all(|p| self.data[p] == self.data[n + p] && self.data[p] == self.data[2 * n + p])
    }

    /// The first channel alone (of a grey image stored as RGB).
    pub fn first_channel(self) -> Pixels {
        let [_, h, w] = self.shape;
        let mut data = self.data;
        data.truncate(h * w);
        Pixels {
            shape: [1, h, w],
            data,
        }
    }

    /// Colour → grey with [`LUMA_601`] weights (exact in [-1, 1] since they sum to 1).
    pub fn to_grey(&self) -> Pixels {
        let [_, h, w] = self.shape;
        let n = h * w;
        let data = (0..n)
            .map(|p| {
                LUMA_601[0] * self.data[p]
                    + LUMA_601[1] * self.data[n + p]
                    + LUMA_601[2] * self.data[2 * n + p]
            })
            .collect();
        Pixels {
            shape: [1, h, w],
            data,
        }
    }

    /// Grey → RGB, the grey value in every channel.
    pub fn to_rgb(&self) -> Pixels {
        let [_, h, w] = self.shape;
        Pixels {
            shape: [3, h, w],
            data: self.data.repeat(3),
        }
    }

    /// Centred on a canvas of `[h, w]` filled with `fill`; the window it occupies is
    /// (top, left). Fails if the image is larger than the canvas either way.
    pub fn pad_to(&self, [h, w]: [usize; 2], fill: f32) -> Result<(Pixels, [usize; 2])> {
        let [c, ih, iw] = self.shape;
        if ih > h || iw > w {
            bail!("cannot pad a {ih}×{iw} image to {h}×{w}: it is larger");
        }
        let (top, left) = ((h - ih) / 2, (w - iw) / 2);
        let mut data = vec![fill; c * h * w];
        for ch in 0..c {
            for r in 0..ih {
                let src = &self.data[(ch * ih + r) * iw..][..iw];
                data[(ch * h + top + r) * w + left..][..iw].copy_from_slice(src);
            }
        }
        Ok((
            Pixels {
                shape: [c, h, w],
                data,
            },
            [top, left],
        ))
    }

    /// The `[h, w]` window at (top, left).
    pub fn crop(&self, [top, left]: [usize; 2], [h, w]: [usize; 2]) -> Result<Pixels> {
        let [c, ih, iw] = self.shape;
        if top + h > ih || left + w > iw {
            bail!("cannot crop {h}×{w} at ({top}, {left}) from a {ih}×{iw} image");
        }
        let mut data = Vec::with_capacity(c * h * w);
        for ch in 0..c {
            for r in 0..h {
                data.extend_from_slice(&self.data[(ch * ih + top + r) * iw + left..][..w]);
            }
        }
        Ok(Pixels {
            shape: [c, h, w],
            data,
        })
    }

    /// The centre `[h, w]` window. Fails if the image is smaller either way.
    pub fn center_crop(&self, [h, w]: [usize; 2]) -> Result<Pixels> {
        let [_, ih, iw] = self.shape;
        if ih < h || iw < w {
            bail!("cannot crop {h}×{w} from a {ih}×{iw} image: it is smaller");
        }
        self.crop([(ih - h) / 2, (iw - w) / 2], [h, w])
    }

    /// Resampled to `[h, w]` per channel with a Catmull-Rom (bicubic) filter, which
    /// `image` widens when shrinking (antialiased), then clipped to [-1, 1].
    pub fn resize(&self, [h, w]: [usize; 2]) -> Result<Pixels> {
        let [c, ih, iw] = self.shape;
        let mut data = Vec::with_capacity(c * h * w);
        for ch in 0..c {
            let plane = self.data[ch * ih * iw..][..ih * iw].to_vec();
            let img = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(
                iw as u32, ih as u32, plane,
            )
            .context("image buffer size")?;
            let out = image::imageops::resize(
                &img,
                w as u32,
                h as u32,
                image::imageops::FilterType::CatmullRom,
            );
            data.extend(out.into_raw().into_iter().map(|v| v.clamp(-1.0, 1.0)));
        }
        Ok(Pixels {
            shape: [c, h, w],
            data,
        })
    }
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
    fn a_16_bit_png_keeps_its_levels() {
        // Levels 0, 1, 256 and 65535: 8 bits would merge the first two (and 256 with 255).
        let levels: Vec<u16> = vec![0, 1, 256, 65535];
        let img =
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 2, levels.clone()).unwrap();
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        for channels in [1, 3] {
            let px = decode(&png, channels).unwrap();
            let want: Vec<f32> = levels.iter().map(|&v| v as f32 / 32767.5 - 1.0).collect();
            assert_eq!(&px.data[..4], &want[..], "{channels} channel(s)");
            assert!(px.data[1] > -1.0, "level 1 of 65535 is not black");
        }
    }

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
    fn pad_then_crop_is_the_identity() {
        let img = Pixels {
            shape: [2, 2, 3],
            data: (0..12).map(|v| v as f32 / 12.0).collect(),
        };
        let (padded, [top, left]) = img.pad_to([5, 6], -1.0).unwrap();
        assert_eq!(padded.shape, [2, 5, 6]);
        assert_eq!([top, left], [1, 1]);
        assert_eq!(padded.data[0], -1.0);
        assert_eq!(padded.data[6 + 1], img.data[0]);
        assert_eq!(padded.crop([top, left], [2, 3]).unwrap(), img);
        assert!(img.pad_to([1, 6], -1.0).is_err());
        assert_eq!(padded.center_crop([2, 3]).unwrap().shape, [2, 2, 3]);
        assert!(img.center_crop([3, 3]).is_err());
    }

    #[test]
    fn resize_keeps_a_constant_image_constant() {
        let img = Pixels {
            shape: [1, 7, 5],
            data: vec![0.25; 35],
        };
        let out = img.resize([4, 4]).unwrap();
        assert_eq!(out.shape, [1, 4, 4]);
        assert!(
            out.data.iter().all(|v| (v - 0.25).abs() < 1e-5),
            "{:?}",
            out.data
        );
    }

    #[test]
    fn colour_is_told_from_grey_stored_as_rgb() {
        let mut data = vec![0.5f32; 12];
        let grey_rgb = encode_png([3, 2, 2], &data).unwrap();
        let px = decode_native(&grey_rgb).unwrap();
        assert_eq!(px.shape, [3, 2, 2]);
        assert!(px.is_grey_rgb());
        data[4] = -0.5; // green differs at one pixel
        let colour = decode_native(&encode_png([3, 2, 2], &data).unwrap()).unwrap();
        assert!(!colour.is_grey_rgb());
        let grey = colour.to_grey();
        assert_eq!(grey.shape, [1, 2, 2]);
        let want = 0.299 * colour.data[0] + 0.587 * colour.data[4] + 0.114 * colour.data[8];
        assert!((grey.data[0] - want).abs() < 1e-6);
        let grey_png = encode_png([1, 2, 2], &[0.0; 4]).unwrap();
        assert_eq!(decode_native(&grey_png).unwrap().shape, [1, 2, 2]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"not an image", 1).is_err());
    }

    /// A one-channel float32 TIFF, as Pillow writes mode "F" (and so Hugging Face
    /// `datasets` writes a float32 array given to an `Image` feature).
    fn grey_float_tiff(w: u32, h: u32, values: &[f32]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        tiff::encoder::TiffEncoder::new(&mut out)
            .unwrap()
            .write_image::<tiff::encoder::colortype::Gray32Float>(w, h, values)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn tiffs_read_like_pngs_16_bit_and_float_included() {
        // 16-bit grey: the same levels as the 16-bit PNG.
        let levels: Vec<u16> = (0..6).map(|v| v * 13_107).collect();
        let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 2, levels).unwrap();
        let (mut png, mut tif) = (Vec::new(), Vec::new());
        DynamicImage::ImageLuma16(img.clone())
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        DynamicImage::ImageLuma16(img)
            .write_to(&mut Cursor::new(&mut tif), ImageFormat::Tiff)
            .unwrap();
        assert_eq!(dimensions(&tif).unwrap(), [2, 3]);
        assert_eq!(decode_native(&tif).unwrap(), decode_native(&png).unwrap());
        // Grey float32 in [0, 1]: 2v − 1, exactly.
        let values = [0.0, 0.25, 0.5, 0.75, 1.0, 0.1];
        let tif = grey_float_tiff(3, 2, &values);
        assert_eq!(dimensions(&tif).unwrap(), [2, 3]);
        let px = decode_native(&tif).unwrap();
        assert_eq!(px.shape, [1, 2, 3]);
        let want: Vec<f32> = values.iter().map(|v| 2.0 * v - 1.0).collect();
        assert_eq!(px.data, want);
        assert_eq!(decode(&tif, 3).unwrap().shape, [3, 2, 3]);
        // 0–255 floats are refused, saying what to do.
        let e = decode_native(&grey_float_tiff(1, 1, &[200.0])).unwrap_err();
        assert!(format!("{e:#}").contains("must lie in [0, 1]"), "{e:#}");
    }
}
