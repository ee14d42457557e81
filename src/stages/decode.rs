//! Decode: Parquet bytes → records with CHW float tensors (images decoded in parallel
//! with rayon). A record that cannot be decoded, has the wrong shape or holds NaN/∞
//! becomes an error row; a shard that is not readable Parquet fails as a whole.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;

use super::fetch::Fetched;
use super::{Counters, Flow, IdDigest, Record, Shard};
use crate::io::image;
use crate::io::parquet_in::{Payload, RawRecord};
use crate::io::parquet_out::ErrorRow;

/// What the records must look like.
#[derive(Debug, Clone)]
pub struct DecodeSpec {
    /// The model's image shape [C, H, W].
    pub shape: [usize; 3],
    /// Length of a measurement vector y.
    pub y_len: usize,
    /// Shape of y when given as an image (`y_image`), e.g. [C, H/f, W/f] for `sr:f`.
    pub y_image_shape: Option<[usize; 3]>,
    /// Whether the operator takes a per-record `mask` (inpainting).
    pub takes_mask: bool,
}

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
                    state.first_row.reserve(rows);
                }
                let duplicates = duplicate_rows(&chunk.records, &mut state.first_row);
                let decoded: Vec<Result<Record, (String, usize, String)>> = chunk
                    .records
                    .into_par_iter()
                    .map(|r| match duplicates.get(&r.row) {
                        Some(first) => Err((
                            r.id.clone(),
                            r.row,
                            format!(
                                "row {}: duplicate id `{}`, already at row {first} of this shard \
                                 (that row is restored, this one is not)",
                                r.row, r.id
                            ),
                        )),
                        None => {
                            let row = r.row;
                            decode_record(r, spec).map_err(|(id, reason)| (id, row, reason))
                        }
                    })
                    .collect();
                let (mut records, mut errors) = (Vec::new(), Vec::new());
                for d in decoded {
                    match d {
                        Ok(r) => records.push(r),
                        Err((id, row, reason)) => errors.push(ErrorRow {
                            id,
                            row,
                            shard: shard.path.clone(),
                            stage: "decode".into(),
                            reason,
                        }),
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

/// Decodes one row; a failure is (record id, reason).
fn decode_record(raw: RawRecord, spec: &DecodeSpec) -> Result<Record, (String, String)> {
    let id = raw.id.clone();
    let fail = |reason: String| (id.clone(), format!("row {}: {reason}", raw.row));
    let payload = raw.payload.clone().map_err(&fail)?;
    let [c, h, w] = spec.shape;
    let mut record = Record {
        id: raw.id.clone(),
        row: raw.row,
        truth: None,
        y: None,
        mask: None,
    };
    match payload {
        Payload::Image(bytes) => {
            let [ih, iw] = image::dimensions(&bytes).map_err(|e| fail(format!("{e:#}")))?;
            if [ih, iw] != [h, w] {
                return Err(fail(format!(
                    "image is {ih}×{iw} pixels, the model expects {h}×{w}"
                )));
            }
            let px = image::decode(&bytes, c).map_err(|e| fail(format!("{e:#}")))?;
            record.truth = Some(px.data);
        }
        Payload::Pixels { data, shape } => {
            let want = [c as i32, h as i32, w as i32];
            if shape != want || data.len() != c * h * w {
                return Err(fail(format!(
                    "pixels have shape {shape:?} ({} values), the model expects {want:?}",
                    data.len()
                )));
            }
            record.truth = Some(data.iter().map(|v| v * 2.0 - 1.0).collect());
        }
        Payload::Y(y) => {
            if y.len() != spec.y_len {
                return Err(fail(format!(
                    "y has {} values, the operator measures {}",
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
            let px = image::decode(&bytes, want[0]).map_err(|e| fail(format!("y_image: {e:#}")))?;
            record.y = Some(px.data);
        }
    }
    if let Some(m) = &raw.mask {
        if !spec.takes_mask {
            return Err(fail(
                "has a `mask`, but the run's operator takes none (use inpaint-random or inpaint-box)".into(),
            ));
        }
        let [mh, mw] = image::dimensions(m).map_err(|e| fail(format!("mask: {e:#}")))?;
        if [mh, mw] != [h, w] {
            return Err(fail(format!(
                "mask is {mh}×{mw} pixels, the model expects {h}×{w}"
            )));
        }
        // A mask is per pixel (all channels at once): read as grey, H·W values, whatever
        // the image's own channel count.
        let px = image::decode(m, 1).map_err(|e| fail(format!("mask: {e:#}")))?;
        record.mask = Some(
            px.data
                .iter()
                .map(|&v| if v > 0.0 { 1.0 } else { 0.0 })
                .collect(),
        );
    }
    let values = record.truth.iter().chain(record.y.iter()).flatten();
    if let Some(bad) = values.into_iter().find(|v| !v.is_finite()) {
        return Err(fail(format!("holds a non-finite value ({bad})")));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rgb_mask_is_one_flag_per_pixel() {
        let spec = DecodeSpec {
            shape: [3, 2, 2],
            y_len: 12,
            y_image_shape: None,
            takes_mask: true,
        };
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
        };
        let record = decode_record(raw, &spec).unwrap();
        assert_eq!(record.mask, Some(vec![1.0, 0.0, 1.0, 1.0]));
    }

    #[test]
    fn nan_measurements_are_refused_with_the_id() {
        let spec = DecodeSpec {
            shape: [1, 2, 2],
            y_len: 2,
            y_image_shape: None,
            takes_mask: false,
        };
        let raw = RawRecord {
            id: "rec-7".into(),
            row: 3,
            payload: Ok(Payload::Y(vec![0.0, f32::NAN])),
            mask: None,
        };
        let (id, reason) = decode_record(raw, &spec).unwrap_err();
        assert_eq!(id, "rec-7");
        assert!(
            reason.starts_with("row 3:") && reason.contains("non-finite"),
            "{reason}"
        );
    }
}
