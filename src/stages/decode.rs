//! Decode: Parquet bytes → records with CHW float tensors in the model's shape (images
//! decoded in parallel with rayon). Clean images are brought to the model's channels
//! (`input.convert`) and size (`input.fit`; a padded image keeps its frame, so the
//! reconstruction is cropped back); `y` images are read in their range (`input.y_range`).
//! A record that cannot be decoded, does not fit or holds NaN/∞ becomes an error row
//! naming it; a shard that is not readable Parquet fails as a whole.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;

use super::fetch::Fetched;
use super::Frame;
use super::{Counters, Flow, IdDigest, Record, Shard};
use crate::io::image::{self, Pixels};
use crate::io::parquet_in::{Payload, RawRecord};
use crate::io::parquet_out::ErrorRow;
use crate::pipeline::config::{Convert, Fit, YRange};
use crate::restore::operators::RecordMask;

/// What the records must look like, and how inputs are fitted to the model.
#[derive(Debug, Clone)]
pub struct DecodeSpec {
    /// The model's image shape [C, H, W].
    pub shape: [usize; 3],
    /// Length of a measurement vector y (of a record without its own k-space mask).
    pub y_len: usize,
    /// Shape of y when given as an image (`y_image`), e.g. [C, H/f, W/f] for `sr:f`.
    pub y_image_shape: Option<[usize; 3]>,
    /// What a per-record `mask` is for the operator (inpainting pixels, `fourier`
    /// k-space positions); `None`: the operator takes none.
    pub record_mask: Option<RecordMask>,
    /// What a clean image of another size than the model's becomes.
    pub fit: Fit,
    /// Channel conversion of clean and `y` images.
    pub convert: Convert,
    /// The range measured y is in; a `y` image is read as y in [0, 1] (`unit`) or as
    /// the usual image encoding of [-1, 1] (`model`).
    pub y_range: YRange,
}

impl DecodeSpec {
    /// A spec for `shape` with the default input settings (refuse other sizes and
    /// channel counts, y in [0, 1]).
    pub fn new(
        shape: [usize; 3],
        y_len: usize,
        y_image_shape: Option<[usize; 3]>,
        record_mask: Option<RecordMask>,
    ) -> Self {
        DecodeSpec {
            shape,
            y_len,
            y_image_shape,
            record_mask,
            fit: Fit::default(),
            convert: Convert::default(),
            y_range: YRange::default(),
        }
    }
}

/// What the canvas around a padded image holds, in the model's range: −1, black (0 in
/// the image's [0, 1]), the zero padding of image files and of MNIST-style datasets
/// padded to 32×32.
pub const PAD_VALUE: f32 = -1.0;

/// The largest image (height × width) that is fitted to the model: bigger ones are
/// refused from their header, before their pixels cost any memory.
pub const MAX_FIT_PIXELS: usize = 8192 * 8192;

/// A chunk of a shard's decoded records and the rows of it that failed; on the shard's
/// last chunk, the number of rows (records and failed rows) the whole shard sent.
pub type Decoded = (Arc<Shard>, Vec<Record>, Vec<ErrorRow>, Option<usize>);

/// What decode keeps of a shard between its chunks.
#[derive(Default)]
struct ShardState {
    /// The first row of each id seen so far, by id digest; sized from the shard's row
    /// count on its first chunk (growing would briefly hold the old and the new table).
    first_row: std::collections::HashMap<IdDigest, u32>,
    /// Rows (records and failed rows) sent so far.
    rows: usize,
}

/// Runs until `input` closes.
pub fn run(
    spec: &DecodeSpec,
    input: Receiver<Fetched>,
    out: Sender<Flow<Decoded>>,
    counters: &Counters,
) {
    let mut shards: std::collections::HashMap<String, ShardState> = Default::default();
    for fetched in input {
        let shard = fetched.shard;
        let msg = match fetched.chunk {
            Err(reason) => {
                shards.remove(&shard.path);
                Flow::Failed {
                    shard: shard.clone(),
                    reason: format!("cannot read: {reason}"),
                }
            }
            Ok(chunk) => {
                let state = shards.entry(shard.path.clone()).or_default();
                if let Some(rows) = chunk.rows_planned {
                    state.first_row.reserve(rows + chunk.earlier_ids.len());
                }
                // A resumed shard: its committed rows come first, as if streamed.
                for (row, id) in chunk.earlier_ids.iter().enumerate() {
                    if let Ok(row) = u32::try_from(row) {
                        state.first_row.entry(super::id_digest(id)).or_insert(row);
                    }
                }
                let duplicates = duplicate_rows(&chunk.records, &mut state.first_row);
                let decoded: Vec<Result<Record, Box<ErrorRow>>> = chunk
                    .records
                    .into_par_iter()
                    .map(|r| {
                        let (row, keep, path) = (r.row, r.keep.clone(), shard.path.clone());
                        let fail = move |(id, reason): (String, String)| {
                            Box::new(ErrorRow {
                                id,
                                row,
                                shard: path,
                                stage: "decode".into(),
                                reason,
                                keep,
                            })
                        };
                        match duplicates.get(&r.row) {
                            Some(first) => Err(fail((
                                r.id.clone(),
                                format!(
                                    "row {}: duplicate id `{}`, already at row {first} of this \
                                     shard (that row is restored, this one is not)",
                                    r.row, r.id
                                ),
                            ))),
                            None => decode_record(r, spec).map_err(fail),
                        }
                    })
                    .collect();
                let (mut records, mut errors) = (Vec::new(), Vec::new());
                for d in decoded {
                    match d {
                        Ok(r) => records.push(r),
                        Err(e) => errors.push(*e),
                    }
                }
                Counters::add(
                    &counters.records_expected,
                    (records.len() + errors.len()) as u64,
                );
                state.rows += records.len() + errors.len();
                let total = chunk.last.then_some(state.rows);
                if chunk.last {
                    shards.remove(&shard.path);
                }
                Flow::Data((shard, records, errors, total))
            }
        };
        if out.send(msg).is_err() {
            return;
        }
    }
}

/// Rows whose id an earlier row of the shard already has, mapped to that earlier row;
/// `first_row` carries the ids seen in the shard's earlier chunks. Ids seed each
/// record's randomness and key the outputs, so a repeated id is refused rather than
/// restored twice with the same draws.
fn duplicate_rows(
    raw: &[RawRecord],
    first_row: &mut std::collections::HashMap<IdDigest, u32>,
) -> std::collections::HashMap<usize, usize> {
    let mut duplicates = std::collections::HashMap::new();
    for r in raw {
        match first_row.entry(super::id_digest(&r.id)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                duplicates.insert(r.row, *e.get() as usize);
            }
            // A row beyond u32 (4·10⁹ rows in one shard) is not remembered: it can
            // still be found a duplicate of an earlier row, just not be named as first.
            std::collections::hash_map::Entry::Vacant(e) => {
                if let Ok(row) = u32::try_from(r.row) {
                    e.insert(row);
                }
            }
        }
    }
    duplicates
}

/// Decodes one input record as the decode stage does (fitted to the model's shape,
/// channels converted, y read in its range); a failure is its reason. For views of a
/// run outside the pipeline (the run report).
pub fn decode_one(raw: RawRecord, spec: &DecodeSpec) -> Result<Record, String> {
    decode_record(raw, spec).map_err(|(_, reason)| reason)
}

/// Decodes one row; a failure is (record id, reason).
fn decode_record(raw: RawRecord, spec: &DecodeSpec) -> Result<Record, (String, String)> {
    let id = raw.id.clone();
    let fail = |reason: String| (id.clone(), format!("row {}: {reason}", raw.row));
    let payload = raw.payload.clone().map_err(&fail)?;
    // Measured inpainting y means nothing without the pixels it measured: a mask drawn
    // from the id (what a clean image gets) would pair y with the wrong pixels.
    let measured = matches!(payload, Payload::Y(_) | Payload::YImage(_));
    if measured && raw.mask.is_none() && spec.record_mask == Some(RecordMask::Pixels) {
        return Err(fail(
            "a measured record for an inpainting operator needs its mask (which pixels \
             were measured), and its mask is null"
                .into(),
        ));
    }
    let [c, h, w] = spec.shape;
    let mut record = Record {
        id: raw.id.clone(),
        row: raw.row,
        keep: raw.keep,
        ..Record::default()
    };
    // The clean image's own size, for its mask.
    let mut native = [h, w];
    match payload {
        Payload::Image(bytes) => {
            let [ih, iw] = image::dimensions(&bytes).map_err(|e| fail(format!("{e:#}")))?;
            check_size([ih, iw], spec).map_err(&fail)?;
            let px = image::decode_native(&bytes).map_err(|e| fail(format!("{e:#}")))?;
            native = [ih, iw];
            let (truth, frame) = fit_clean(px, spec).map_err(&fail)?;
            (record.truth, record.frame) = (Some(truth), frame);
        }
        Payload::Pixels { data, shape } => {
            let &[pc, ph, pw] = shape.as_slice() else {
                return Err(fail(format!("pixels have shape {shape:?}, not [C, H, W]")));
            };
            if pc <= 0 || ph <= 0 || pw <= 0 {
                return Err(fail(format!("pixels have shape {shape:?}, not [C, H, W]")));
            }
            let [pc, ph, pw] = [pc, ph, pw].map(|d| d as usize);
            // Checked: the shape is the user's data, and a product past usize is no image.
            let values = pc.checked_mul(ph).and_then(|v| v.checked_mul(pw));
            if values != Some(data.len()) || !(pc == 1 || pc == 3) {
                return Err(fail(format!(
                    "pixels have shape {shape:?} ({} values); C must be 1 or 3 and the \
                     values C·H·W, the model expects [{c}, {h}, {w}]",
                    data.len()
                )));
            }
            check_size([ph, pw], spec).map_err(&fail)?;
            check_unit_range(&data).map_err(&fail)?;
            let px = Pixels {
                shape: [pc, ph, pw],
                data: data.iter().map(|v| v * 2.0 - 1.0).collect(),
            };
            native = [ph, pw];
            let (truth, frame) = fit_clean(px, spec).map_err(&fail)?;
            (record.truth, record.frame) = (Some(truth), frame);
        }
        Payload::Y(y) => {
            // With its own k-space mask, a record's y length is checked against that mask.
            let own_kspace = raw.mask.is_some() && spec.record_mask == Some(RecordMask::KSpace);
            if !own_kspace && y.len() != spec.y_len {
                // Inpainting y is the whole image with the erased pixels at 0; a y of
                // only the kept pixels is the usual mistake.
                let hint = if spec.record_mask == Some(RecordMask::Pixels) {
                    " (inpainting y is the whole image, C·H·W values, with the erased \
                     pixels set to 0 or NaN, not the kept pixels alone)"
                } else {
                    ""
                };
                return Err(fail(format!(
                    "y has {} values, the operator measures {}{hint}",
                    y.len(),
                    spec.y_len
                )));
            }
            record.y = Some(y);
        }
        Payload::YImage(bytes) => {
            let want = spec.y_image_shape.unwrap_or(spec.shape);
            let [ih, iw] =
                image::dimensions(&bytes).map_err(|e| fail(format!("y_image: {e:#}")))?;
            if [ih, iw] != [want[1], want[2]] {
                return Err(fail(format!(
                    "y_image is {ih}×{iw} pixels, the operator measures {}×{}",
                    want[1], want[2]
                )));
            }
            let px = image::decode_native(&bytes).map_err(|e| fail(format!("y_image: {e:#}")))?;
            let px = fit_channels(px, want[0], spec.convert)
                .map_err(|e| fail(format!("y_image: {e}")))?;
            record.y = Some(match spec.y_range {
                // The pixel's value in [0, 1]; restore converts it to the model's range.
                YRange::Unit => px.data.iter().map(|v| (v + 1.0) / 2.0).collect(),
                YRange::Model => px.data,
            });
        }
    }
    if let Some(m) = &raw.mask {
        match spec.record_mask {
            None => {
                return Err(fail(
                    "has a `mask`, but the run's operator takes none (inpaint-random, \
                     inpaint-box and fourier do)"
                        .into(),
                ))
            }
            Some(RecordMask::Pixels) => {
                record.mask = Some(decode_mask(m, native, record.frame, spec).map_err(&fail)?);
            }
            Some(RecordMask::KSpace) => {
                let mask = decode_kspace_mask(m, spec).map_err(&fail)?;
                let kept = mask.iter().filter(|&&v| v > 0.5).count();
                let want = 2 * c * kept;
                if let Some(y) = record.y.as_ref().filter(|y| y.len() != want) {
                    return Err(fail(format!(
                        "y has {} values, but its mask keeps {kept} k-space positions: the \
                         operator measures 2·C·{kept} = {want}",
                        y.len()
                    )));
                }
                record.mask = Some(mask);
            }
        }
    }
    // Pixels an inpainting mask erased were not measured: instruments and arrays often
    // mark them NaN. The operator reads none of them, so they become 0, as the spec's
    // y has them.
    if let (Some(y), Some(mask), Some(RecordMask::Pixels)) =
        (record.y.as_mut(), &record.mask, spec.record_mask)
    {
        let plane = mask.len().max(1);
        for (i, v) in y.iter_mut().enumerate() {
            if !v.is_finite() && mask[i % plane] < 0.5 {
                *v = 0.0;
            }
        }
    }
    if let Some(truth) = &record.truth {
        if let Some(i) = truth.iter().position(|v| !v.is_finite()) {
            return Err(fail(format!(
                "the clean image holds a non-finite value ({}) at {}",
                truth[i],
                position(i, spec.shape)
            )));
        }
    }
    if let Some(y) = &record.y {
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            let at = if y.len() == spec.shape.iter().product::<usize>() {
                position(i, spec.shape)
            } else {
                format!("index {i}")
            };
            return Err(fail(format!(
                "y holds a non-finite value ({}) at {at}{}",
                y[i],
                if spec.record_mask == Some(RecordMask::Pixels) {
                    ", a pixel its mask keeps"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(record)
}

/// Where flat index `i` of a [C, H, W] image lies, for messages.
fn position(i: usize, [_, h, w]: [usize; 3]) -> String {
    let plane = (h * w).max(1);
    format!(
        "channel {}, row {}, column {} (index {i})",
        i / plane,
        (i % plane) / w.max(1),
        i % w.max(1)
    )
}

/// Refuses float pixels outside [0, 1] (spec §3), e.g. 0–255 values or the model's
/// [−1, 1], which would otherwise be restored and scored as a wrong image. A little
/// rounding past the ends is allowed.
fn check_unit_range(data: &[f32]) -> Result<(), String> {
    const SLACK: f32 = 1e-3;
    let (lo, hi) = data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if lo < -SLACK || hi > 1.0 + SLACK {
        return Err(format!(
            "pixels range from {lo} to {hi}; they must be in [0, 1] (divide 0–255 values \
             by 255, map [−1, 1] values by (v + 1) / 2)"
        ));
    }
    Ok(())
}

/// Refuses, from its size alone, a clean image that `spec.fit` cannot bring to the
/// model's size.
fn check_size([ih, iw]: [usize; 2], spec: &DecodeSpec) -> Result<(), String> {
    let [_, h, w] = spec.shape;
    let refuse = |why: &str| {
        Err(format!(
            "image is {ih}×{iw} pixels, the model expects {h}×{w}{why}"
        ))
    };
    match spec.fit {
        _ if [ih, iw] == [h, w] => Ok(()),
        _ if ih * iw > MAX_FIT_PIXELS => refuse(" (too large to fit)"),
        Fit::Error => refuse(" (set input.fit, --fit: pad, center-crop or resize)"),
        Fit::Pad if ih > h || iw > w => {
            refuse(" (input.fit = \"pad\", --fit pad, cannot shrink it)")
        }
        Fit::CenterCrop if ih < h || iw < w => {
            refuse(" (input.fit = \"center-crop\", --fit center-crop, cannot enlarge it)")
        }
        _ => Ok(()),
    }
}

/// Brings an image to `c` channels: equal RGB channels are grey as they are; other
/// conversions only when `convert` asks for them.
fn fit_channels(px: Pixels, c: usize, convert: Convert) -> Result<Pixels, String> {
    match (px.shape[0], c, convert) {
        (have, want, _) if have == want => Ok(px),
        (3, 1, _) if px.is_grey_rgb() => Ok(px.first_channel()),
        (3, 1, Convert::Grey) => Ok(px.to_grey()),
        (1, 3, Convert::Rgb) => Ok(px.to_rgb()),
        (3, 1, _) => Err(
            "is a colour image and the model is grey: set input.convert = \"grey\" \
             (--convert grey) to convert it (ITU-R 601 luma)"
                .into(),
        ),
        (1, 3, _) => Err(
            "is a grey image and the model is RGB: set input.convert = \"rgb\" \
             (--convert rgb) to repeat it in every channel"
                .into(),
        ),
        (have, want, _) => Err(format!("has {have} channels, the model {want}")),
    }
}

/// A clean image in the model's shape (channels, then size, by `spec`), and where the
/// image lies in it when padded.
fn fit_clean(px: Pixels, spec: &DecodeSpec) -> Result<(Vec<f32>, Option<Frame>), String> {
    let [c, h, w] = spec.shape;
    let px = fit_channels(px, c, spec.convert)?;
    let [_, ih, iw] = px.shape;
    if [ih, iw] == [h, w] {
        return Ok((px.data, None));
    }
    let fitted = match spec.fit {
        Fit::Error => {
            return Err(format!(
                "image is {ih}×{iw} pixels, the model expects {h}×{w}"
            ))
        }
        Fit::Pad => {
            let (padded, [top, left]) =
                px.pad_to([h, w], PAD_VALUE).map_err(|e| format!("{e:#}"))?;
            let frame = Frame {
                top,
                left,
                height: ih,
                width: iw,
            };
            return Ok((padded.data, Some(frame)));
        }
        Fit::CenterCrop => px.center_crop([h, w]),
        Fit::Resize => px.resize([h, w]),
    };
    Ok((fitted.map_err(|e| format!("{e:#}"))?.data, None))
}

/// A clean record's image as the restore stage decodes it with the default input
/// settings (no fitting, no conversion), CHW in the model's range: the ground truth
/// the reports show beside its restorations, whatever form the record gave it in
/// (encoded image, or `pixels` + `shape`).
pub fn clean_image(raw: RawRecord, shape: [usize; 3]) -> Result<Vec<f32>, String> {
    let id = raw.id.clone();
    match decode_one(raw, &DecodeSpec::new(shape, 0, None, None)) {
        Ok(Record { truth: Some(t), .. }) => Ok(t),
        Ok(_) => Err(format!(
            "record {id} holds a measurement, not a clean image"
        )),
        Err(reason) => Err(format!("record {id}: {reason}")),
    }
}

/// A measured record's mask (an image of the model's H×W) as the restore stage reads it,
/// one 0/1 flag per pixel or k-space position, for views of the record outside the
/// pipeline (the run report).
pub fn measured_record_mask(
    bytes: &[u8],
    kind: RecordMask,
    shape: [usize; 3],
) -> Result<Vec<f32>, String> {
    let spec = DecodeSpec::new(shape, 0, None, Some(kind));
    match kind {
        RecordMask::Pixels => decode_mask(bytes, [shape[1], shape[2]], None, &spec),
        RecordMask::KSpace => decode_kspace_mask(bytes, &spec),
    }
}

/// A record's k-space mask for `fourier` as one 0/1 flag per position: an image of the
/// model's H×W (k-space has no frame to pad or crop), non-zero pixels kept, as in a
/// `fourier:` PNG; it must keep at least one position.
fn decode_kspace_mask(bytes: &[u8], spec: &DecodeSpec) -> Result<Vec<f32>, String> {
    let [_, h, w] = spec.shape;
    let [mh, mw] = image::dimensions(bytes).map_err(|e| format!("mask: {e:#}"))?;
    if [mh, mw] != [h, w] {
        return Err(format!(
            "mask is {mh}×{mw} pixels, a k-space mask of the model's images is {h}×{w}"
        ));
    }
    let px = image::decode(bytes, 1).map_err(|e| format!("mask: {e:#}"))?;
    // Black (0) decodes to exactly −1; any other grey level is kept.
    let mask: Vec<f32> = px
        .data
        .iter()
        .map(|&v| if v > -1.0 { 1.0 } else { 0.0 })
        .collect();
    if !mask.contains(&1.0) {
        return Err("mask keeps no k-space position".into());
    }
    Ok(mask)
}

/// A per-record mask as one 0/1 flag per model pixel. A mask of the clean image's own
/// size follows the image: padded (the canvas counts as kept: it is known to be black)
/// or centre-cropped.
fn decode_mask(
    bytes: &[u8],
    native: [usize; 2],
    frame: Option<Frame>,
    spec: &DecodeSpec,
) -> Result<Vec<f32>, String> {
    let [_, h, w] = spec.shape;
    let [mh, mw] = image::dimensions(bytes).map_err(|e| format!("mask: {e:#}"))?;
    let fits = [mh, mw] == [h, w]
        || ([mh, mw] == native && matches!(spec.fit, Fit::Pad | Fit::CenterCrop));
    if !fits {
        return Err(format!(
            "mask is {mh}×{mw} pixels, the model expects {h}×{w}"
        ));
    }
    // A mask is per pixel (all channels at once): read as grey, H·W values, whatever
    // the image's own channel count.
    let px = image::decode(bytes, 1).map_err(|e| format!("mask: {e:#}"))?;
    // A mask that keeps none of its own pixels measures nothing; most often it is a
    // 0/1 image, whose 1 is near black.
    if !px.data.iter().any(|&v| v > 0.0) {
        return Err(
            "mask keeps no pixel (pixels brighter than mid-grey are kept: save a 0/1 mask \
             as 0/255, or as 0/65535 in a 16-bit image)"
                .into(),
        );
    }
    let px = if [mh, mw] == [h, w] {
        px
    } else if let (Some(_), Fit::Pad) = (frame, spec.fit) {
        px.pad_to([h, w], 1.0)
            .map_err(|e| format!("mask: {e:#}"))?
            .0
    } else {
        px.center_crop([h, w]).map_err(|e| format!("mask: {e:#}"))?
    };
    Ok(px
        .data
        .iter()
        .map(|&v| if v > 0.0 { 1.0 } else { 0.0 })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rgb_mask_is_one_flag_per_pixel() {
        let spec = DecodeSpec::new([3, 2, 2], 12, None, Some(RecordMask::Pixels));
        // An RGB mask image: pixel 1 erased (black), the others kept (white).
        let mut rgb = vec![1.0f32; 12];
        for ch in 0..3 {
            rgb[ch * 4 + 1] = -1.0;
        }
        let mask = image::encode_png([3, 2, 2], &rgb).unwrap();
        let raw = RawRecord {
            id: "m".into(),
            row: 0,
            payload: Ok(Payload::Y(vec![0.0; 12])),
            mask: Some(mask),
            keep: vec![],
        };
        let record = decode_record(raw, &spec).unwrap();
        assert_eq!(record.mask, Some(vec![1.0, 0.0, 1.0, 1.0]));
    }

    fn clean(png: Vec<u8>) -> RawRecord {
        RawRecord {
            id: "c".into(),
            row: 2,
            payload: Ok(Payload::Image(png)),
            mask: None,
            keep: vec![],
        }
    }

    #[test]
    fn a_smaller_image_is_padded_with_black_and_framed() {
        let mut spec = DecodeSpec::new([1, 4, 6], 24, None, Some(RecordMask::Pixels));
        let png = image::encode_png([1, 2, 3], &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]).unwrap();
        let (_, reason) = decode_record(clean(png.clone()), &spec).unwrap_err();
        assert!(
            reason.contains("2×3 pixels, the model expects 4×6"),
            "{reason}"
        );
        assert!(reason.contains("input.fit"), "{reason}");
        spec.fit = Fit::Pad;
        let r = decode_record(clean(png.clone()), &spec).unwrap();
        let frame = r.frame.unwrap();
        assert_eq!(
            frame,
            Frame {
                top: 1,
                left: 1,
                height: 2,
                width: 3
            }
        );
        let truth = r.truth.unwrap();
        assert_eq!(truth.len(), 24);
        assert_eq!(truth[0], PAD_VALUE);
        assert!((truth[6 + 1] - 0.0).abs() < 1e-2, "{truth:?}");
        // A mask of the image's own size is padded with it (the canvas counts as kept).
        let mut with_mask = clean(png.clone());
        with_mask.mask =
            Some(image::encode_png([1, 2, 3], &[1.0, -1.0, 1.0, 1.0, 1.0, 1.0]).unwrap());
        let mask = decode_record(with_mask, &spec).unwrap().mask.unwrap();
        assert_eq!(mask.len(), 24);
        assert_eq!(mask[6 + 2], 0.0);
        assert_eq!(mask.iter().filter(|&&m| m == 0.0).count(), 1);
        // Too large to pad.
        let big = image::encode_png([1, 5, 3], &[0.0; 15]).unwrap();
        let (_, reason) = decode_record(clean(big.clone()), &spec).unwrap_err();
        assert!(reason.contains("cannot shrink"), "{reason}");
        spec.fit = Fit::CenterCrop;
        assert!(decode_record(clean(big), &spec).is_err(), "3 < 6 columns");
        spec.fit = Fit::Resize;
        let r = decode_record(clean(png), &spec).unwrap();
        assert_eq!((r.truth.unwrap().len(), r.frame), (24, None));
    }

    #[test]
    fn colour_to_a_grey_model_is_converted_only_when_asked() {
        let mut spec = DecodeSpec::new([1, 2, 2], 4, None, None);
        let mut rgb = vec![0.0f32; 12];
        rgb[..4].fill(1.0); // red
        let png = image::encode_png([3, 2, 2], &rgb).unwrap();
        let (id, reason) = decode_record(clean(png.clone()), &spec).unwrap_err();
        assert_eq!(id, "c");
        assert!(reason.starts_with("row 2:"), "{reason}");
        assert!(reason.contains("input.convert = \"grey\""), "{reason}");
        spec.convert = Convert::Grey;
        let truth = decode_record(clean(png), &spec).unwrap().truth.unwrap();
        assert!((truth[0] - 0.299).abs() < 1e-2, "{truth:?}");
        // Grey stored as RGB needs no conversion.
        spec.convert = Convert::None;
        let grey_rgb = image::encode_png([3, 2, 2], &[0.5; 12]).unwrap();
        assert!(decode_record(clean(grey_rgb), &spec).is_ok());
        // Grey to an RGB model likewise.
        let mut spec = DecodeSpec::new([3, 2, 2], 12, None, None);
        let grey = image::encode_png([1, 2, 2], &[0.5; 4]).unwrap();
        assert!(decode_record(clean(grey.clone()), &spec).is_err());
        spec.convert = Convert::Rgb;
        assert_eq!(
            decode_record(clean(grey), &spec)
                .unwrap()
                .truth
                .unwrap()
                .len(),
            12
        );
    }

    #[test]
    fn a_y_image_is_read_in_its_range() {
        let mut spec = DecodeSpec::new([3, 2, 2], 12, Some([3, 2, 2]), None);
        let mut y = vec![-1.0f32; 12];
        y[0] = 1.0;
        let png = image::encode_png([3, 2, 2], &y).unwrap();
        let raw = || RawRecord {
            id: "y".into(),
            row: 0,
            payload: Ok(Payload::YImage(png.clone())),
            mask: None,
            keep: vec![],
        };
        let unit = decode_record(raw(), &spec).unwrap().y.unwrap();
        assert_eq!((unit[0], unit[1]), (1.0, 0.0));
        spec.y_range = YRange::Model;
        let model = decode_record(raw(), &spec).unwrap().y.unwrap();
        assert_eq!((model[0], model[1]), (1.0, -1.0));
    }

    #[test]
    fn a_kspace_mask_sets_the_length_of_its_records_y() {
        // fourier on 1×2×2: the file's mask keeps all 4 positions (y_len 8); a record's
        // own mask keeps 3 (pixel 2 black), so its y has 2·3 values.
        let spec = DecodeSpec::new([1, 2, 2], 8, None, Some(RecordMask::KSpace));
        let mask = image::encode_png([1, 2, 2], &[1.0, -0.9, -1.0, 0.5]).unwrap();
        let raw = |y: Vec<f32>, mask: Option<Vec<u8>>| RawRecord {
            id: "k".into(),
            row: 4,
            payload: Ok(Payload::Y(y)),
            mask,
            keep: vec![],
        };
        let r = decode_record(raw(vec![0.0; 6], Some(mask.clone())), &spec).unwrap();
        assert_eq!(r.mask, Some(vec![1.0, 1.0, 0.0, 1.0]));
        let (id, reason) = decode_record(raw(vec![0.0; 8], Some(mask)), &spec).unwrap_err();
        assert_eq!(id, "k");
        assert!(
            reason.starts_with("row 4: y has 8 values, but its mask keeps 3 k-space positions")
                && reason.contains("2·C·3 = 6"),
            "{reason}"
        );
        // Without a mask, the file's length applies.
        assert!(decode_record(raw(vec![0.0; 8], None), &spec).is_ok());
        assert!(decode_record(raw(vec![0.0; 6], None), &spec).is_err());
        // A mask that keeps nothing, or of another size.
        let black = image::encode_png([1, 2, 2], &[-1.0; 4]).unwrap();
        let (_, reason) = decode_record(raw(vec![], Some(black)), &spec).unwrap_err();
        assert!(reason.contains("keeps no k-space position"), "{reason}");
        let big = image::encode_png([1, 2, 3], &[1.0; 6]).unwrap();
        let (_, reason) = decode_record(raw(vec![0.0; 8], Some(big)), &spec).unwrap_err();
        assert!(reason.contains("mask is 2×3 pixels"), "{reason}");
        // An operator without record masks refuses one.
        let none = DecodeSpec::new([1, 2, 2], 8, None, None);
        let m = image::encode_png([1, 2, 2], &[1.0; 4]).unwrap();
        let (_, reason) = decode_record(raw(vec![0.0; 8], Some(m)), &none).unwrap_err();
        assert!(reason.contains("takes none"), "{reason}");
    }

    #[test]
    fn nan_measurements_are_refused_with_the_id() {
        let spec = DecodeSpec::new([1, 2, 2], 2, None, None);
        let raw = RawRecord {
            id: "rec-7".into(),
            row: 3,
            payload: Ok(Payload::Y(vec![0.0, f32::NAN])),
            mask: None,
            keep: vec![],
        };
        let (id, reason) = decode_record(raw, &spec).unwrap_err();
        assert_eq!(id, "rec-7");
        assert!(
            reason.starts_with("row 3:") && reason.contains("non-finite"),
            "{reason}"
        );
    }

    #[test]
    fn a_pixel_shape_past_usize_is_an_error_row_not_a_panic() {
        let spec = DecodeSpec::new([1, 2, 2], 4, None, None);
        let raw = RawRecord {
            id: "huge".into(),
            row: 0,
            payload: Ok(Payload::Pixels {
                data: vec![0.0; 4],
                shape: vec![1 << 21, 1 << 30, 1 << 30],
            }),
            mask: None,
            keep: vec![],
        };
        let (_, reason) = decode_record(raw, &spec).unwrap_err();
        assert!(reason.contains("pixels have shape"), "{reason}");
    }
    #[test]
    fn measured_inpainting_needs_a_mask_that_keeps_pixels() {
        let spec = DecodeSpec::new([1, 2, 2], 4, None, Some(RecordMask::Pixels));
        let raw = |payload: Payload, mask: Option<Vec<u8>>| RawRecord {
            id: "i".into(),
            row: 5,
            payload: Ok(payload),
            mask,
            keep: vec![],
        };
        // Measured y (a vector or an image) with a null mask: no drawn mask stands in.
        let y_png = image::encode_png([1, 2, 2], &[0.0; 4]).unwrap();
        for payload in [Payload::Y(vec![0.0; 4]), Payload::YImage(y_png)] {
            let (_, reason) = decode_record(raw(payload, None), &spec).unwrap_err();
            assert!(
                reason.starts_with("row 5: a measured record") && reason.contains("mask is null"),
                "{reason}"
            );
        }
        // A clean image may go without one (the mask is drawn from its id).
        let clean_png = image::encode_png([1, 2, 2], &[0.0; 4]).unwrap();
        assert!(decode_record(raw(Payload::Image(clean_png), None), &spec).is_ok());
        // A 0/1 mask image (1 is near black) keeps nothing: refused with the convention.
        let zero_one =
            image::encode_png([1, 2, 2], &[-1.0, 1.0 / 127.5 - 1.0, -1.0, -1.0]).unwrap();
        let (_, reason) =
            decode_record(raw(Payload::Y(vec![0.0; 4]), Some(zero_one)), &spec).unwrap_err();
        assert!(
            reason.contains("mask keeps no pixel") && reason.contains("0/255"),
            "{reason}"
        );
    }

    #[test]
    fn nan_at_pixels_the_mask_erased_is_unmeasured_and_elsewhere_an_error_naming_it() {
        let spec = DecodeSpec::new([1, 2, 2], 4, None, Some(RecordMask::Pixels));
        // Keeps pixels 0 and 3 (white), erases 1 and 2 (black).
        let mask = image::encode_png([1, 2, 2], &[1.0, -1.0, -1.0, 1.0]).unwrap();
        let raw = |y: Vec<f32>| RawRecord {
            id: "i".into(),
            row: 2,
            payload: Ok(Payload::Y(y)),
            mask: Some(mask.clone()),
            keep: vec![],
        };
        let r = decode_record(raw(vec![0.2, f32::NAN, f32::NAN, 0.7]), &spec).unwrap();
        assert_eq!(r.y.unwrap(), [0.2, 0.0, 0.0, 0.7]);
        let (_, reason) = decode_record(raw(vec![0.2, 0.0, 0.0, f32::NAN]), &spec).unwrap_err();
        assert!(
            reason.contains("y holds a non-finite value (NaN) at channel 0, row 1, column 1")
                && reason.contains("a pixel its mask keeps"),
            "{reason}"
        );
        // Only the kept pixels: said what inpainting y is.
        let (_, reason) = decode_record(raw(vec![0.2, 0.7]), &spec).unwrap_err();
        assert!(reason.contains("the whole image"), "{reason}");
    }

    #[test]
    fn float_pixels_outside_the_unit_range_are_refused() {
        let spec = DecodeSpec::new([1, 2, 2], 4, None, None);
        let raw = |data: Vec<f32>| RawRecord {
            id: "p".into(),
            row: 1,
            payload: Ok(Payload::Pixels {
                data,
                shape: vec![1, 2, 2],
            }),
            mask: None,
            keep: vec![],
        };
        for bad in [vec![0.0, 12.0, 255.0, 3.0], vec![-1.0, 0.0, 0.5, 1.0]] {
            let (_, reason) = decode_record(raw(bad), &spec).unwrap_err();
            assert!(reason.contains("must be in [0, 1]"), "{reason}");
        }
        let ok = decode_record(raw(vec![0.0, 0.25, 1.0, 1.0 + 1e-4]), &spec).unwrap();
        assert_eq!(ok.truth.unwrap()[..3], [-1.0, -0.5, 1.0]);
    }
}
