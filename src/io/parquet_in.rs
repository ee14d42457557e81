//! Input shards (spec §3): Parquet bytes → raw records, one per row.
//!
//! Column layouts accepted:
//! - clean images: `image` (Hugging Face image struct {bytes, path}) or `pixels`
//!   (list<float32>, C·H·W in [0, 1]) with `shape` (list<int32>);
//! - measured data: `y` (list<float32>) or `y_image` (image struct), and optionally a
//!   per-record `mask` image (inpainting pixels, or `fourier` k-space positions).
//!
//! `id` (string) is optional; rows without one are named `<shard file>:<row>`. Every
//! column may be given another name (`input.*_column`, [`ColumnNames`]), and
//! `input.keep_columns` are carried along verbatim. The plan resolves the names against
//! the first shard before any compute ([`resolve_columns`] lists every problem); a later
//! shard whose schema does not fit fails as a whole; a row with a null or malformed
//! value becomes a per-record error and the rest of the shard goes on.

use anyhow::{bail, Context, Result};
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, LargeBinaryArray, ListArray, RecordBatch, StructArray,
};
use arrow::datatypes::{
    DataType, Field, Float32Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A Parquet file's row count from its footer alone (two ranged reads, not the file).
pub fn row_count(
    rt: &tokio::runtime::Handle,
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    key: &object_store::path::Path,
) -> Result<usize> {
    use object_store::ObjectStoreExt;
    rt.block_on(async {
        let size = store.head(key).await?.size;
        if size < 12 {
            bail!("not a Parquet file ({size} bytes)");
        }
        let tail = store
            .get_range(key, size - 8..size)
            .await
            .context("cannot read the footer")?;
        if &tail[4..] != b"PAR1" {
            bail!("not a Parquet file (no PAR1 footer)");
        }
        let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        if len + 8 > size {
            bail!("corrupt Parquet footer (metadata length {len} > file size {size})");
        }
        let meta = store
            .get_range(key, size - 8 - len..size - 8)
            .await
            .context("cannot read the footer")?;
        let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&meta)
            .context("corrupt Parquet footer")?;
        usize::try_from(meta.file_metadata().num_rows()).context("negative row count")
    })
}

/// A Parquet file's Arrow schema (with its metadata) from its footer alone.
pub fn read_schema(
    rt: &tokio::runtime::Handle,
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    key: &object_store::path::Path,
) -> Result<arrow::datatypes::SchemaRef> {
    rt.block_on(async {
        let reader = ObjectReader::open(store.clone(), key.clone()).await?;
        let builder = parquet::arrow::ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .context("not a readable Parquet file")?;
        Ok(builder.schema().clone())
    })
}

/// The Hugging Face features of some columns, from a schema's `huggingface` metadata
/// (as `datasets` writes it); columns without one are left out.
pub fn hf_features(
    schema: &arrow::datatypes::Schema,
    columns: &[String],
) -> serde_json::Map<String, serde_json::Value> {
    let features = schema
        .metadata()
        .get("huggingface")
        .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .and_then(|v| v.pointer("/info/features").cloned());
    let mut out = serde_json::Map::new();
    if let Some(serde_json::Value::Object(f)) = features {
        for c in columns {
            if let Some(v) = f.get(c) {
                out.insert(c.clone(), v.clone());
            }
        }
    }
    out
}

/// One string (or integer id) column of a Parquet file, read alone (projection);
/// nulls are skipped.
pub fn read_string_column(bytes: Bytes, column: &str) -> Result<Vec<String>> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).context("not a readable Parquet file")?;
    let index = builder
        .schema()
        .index_of(column)
        .with_context(|| format!("no column `{column}`"))?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [index]);
    let mut out = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch.context("cannot decode a Parquet row group")?;
        let col = batch.column(0);
        for r in 0..batch.num_rows() {
            if let Some(v) =
                string_at(col.as_ref(), r).with_context(|| format!("column `{column}`"))?
            {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// Reads a Parquet object through ranged requests (the footer, then the row groups a
/// reader asks for), so a shard is never fetched whole. A thin adapter written here
/// because parquet's own object_store reader is deprecated in favour of implementing
/// `AsyncFileReader`; the size is known from a HEAD, so the footer needs no suffix
/// request (which not every S3-compatible server supports).
pub struct ObjectReader {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    key: object_store::path::Path,
    size: u64,
}

impl ObjectReader {
    /// Opens `key`: one HEAD for its size.
    pub async fn open(
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        key: object_store::path::Path,
    ) -> object_store::Result<Self> {
        use object_store::ObjectStoreExt;
        let size = store.head(&key).await?.size;
        Ok(Self { store, key, size })
    }
}

fn store_error(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl parquet::arrow::async_reader::AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Bytes>> {
        use futures::FutureExt;
        use object_store::ObjectStoreExt;
        async move {
            self.store
                .get_range(&self.key, range)
                .await
                .map_err(store_error)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        use futures::FutureExt;
        async move {
            self.store
                .get_ranges(&self.key, &ranges)
                .await
                .map_err(store_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<
        'a,
        parquet::errors::Result<std::sync::Arc<parquet::file::metadata::ParquetMetaData>>,
    > {
        use futures::FutureExt;
        async move {
            let size = self.size;
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(std::sync::Arc::new(metadata))
        }
        .boxed()
    }
}

/// What a row carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Clean image, encoded (PNG/JPEG/TIFF).
    Image(Vec<u8>),
    /// Clean image as floats in [0, 1] with its [C, H, W] shape.
    Pixels { data: Vec<f32>, shape: Vec<i32> },
    /// Measurement vector y.
    Y(Vec<f32>),
    /// Measurement given as an encoded image (e.g. the low-resolution image for `sr:f`).
    YImage(Vec<u8>),
}

/// One row of an input shard, not yet decoded.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The record id (from the id column or `<shard>:<row>`).
    pub id: String,
    /// Row number inside the shard.
    pub row: usize,
    /// The row's content, or why it cannot be used.
    pub payload: std::result::Result<Payload, String>,
    /// Per-record mask image (inpainting or k-space), where the shard has one.
    pub mask: Option<Vec<u8>>,
    /// The row's values of the kept columns (`input.keep_columns`), one-row arrays.
    pub keep: Vec<ArrayRef>,
}

/// The input columns a run asks for, by name; `None` follows the default rules (spec §3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnNames {
    /// Clean images: default `image`, else `pixels` (+ `shape`).
    pub image: Option<String>,
    /// Ids: default `id` where present.
    pub id: Option<String>,
    /// Measurements: default `y`, else `y_image`.
    pub y: Option<String>,
    /// Per-record masks (inpainting, k-space): default `mask` where present.
    pub mask: Option<String>,
    /// The run's operator takes no per-record mask: no mask column is read (a default
    /// `mask` column, e.g. a segmentation dataset's, is left alone) and naming one is
    /// refused.
    pub no_mask: bool,
    /// Columns copied verbatim into the outputs.
    pub keep: Vec<String>,
}

/// Where a row's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadColumn {
    /// Clean images, encoded.
    Image(String),
    /// Clean images as float pixels with their shape column.
    Pixels { pixels: String, shape: String },
    /// Measurement vectors.
    Y(String),
    /// Measurements as encoded images.
    YImage(String),
}

impl PayloadColumn {
    /// Whether the column holds measurements (y) rather than clean images.
    pub fn is_measured(&self) -> bool {
        matches!(self, PayloadColumn::Y(_) | PayloadColumn::YImage(_))
    }

    /// The column as messages name it, e.g. "measurements `y` (list<float32>)".
    pub fn describe(&self) -> String {
        match self {
            PayloadColumn::Image(c) => format!("clean images `{c}` (encoded)"),
            PayloadColumn::Pixels { pixels, shape } => {
                format!("clean images `{pixels}` (float pixels beside `{shape}`)")
            }
            PayloadColumn::Y(c) => format!("measurements `{c}` (a y vector)"),
            PayloadColumn::YImage(c) => format!("measurements `{c}` (a y image)"),
        }
    }

    /// The column's name.
    pub fn name(&self) -> &str {
        match self {
            PayloadColumn::Image(c) | PayloadColumn::YImage(c) | PayloadColumn::Y(c) => c,
            PayloadColumn::Pixels { pixels, .. } => pixels,
        }
    }
}

/// A shard's columns, resolved from [`ColumnNames`] and checked against its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    pub payload: PayloadColumn,
    pub id: Option<String>,
    pub mask: Option<String>,
    /// The kept columns with their types.
    pub keep: Vec<Field>,
}

/// The name of the image-struct column's bytes field, as Hugging Face writes it.
const IMAGE_BYTES_FIELD: &str = "bytes";

/// How the expected type of an image column is written in messages.
const IMAGE_TYPE: &str = "an image (struct<bytes: binary, path: string> or binary)";

/// The column holding the [C, H, W] of a `pixels` column.
const PIXELS_SHAPE: &str = "shape";

/// Whether a column holds encoded images: an image struct with a binary `bytes` field,
/// or plain binary.
fn is_image_type(t: &DataType) -> bool {
    let binary = |t: &DataType| {
        matches!(
            t,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        )
    };
    match t {
        DataType::Struct(fields) => fields
            .iter()
            .any(|f| f.name() == IMAGE_BYTES_FIELD && binary(f.data_type())),
        t => binary(t),
    }
}

/// Whether a column holds lists of floats (`float`) or of integers.
fn is_list_of(t: &DataType, float: bool) -> bool {
    let inner = match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => f.data_type(),
        _ => return false,
    };
    if float {
        matches!(inner, DataType::Float32 | DataType::Float64)
    } else {
        matches!(inner, DataType::Int32 | DataType::Int64)
    }
}

/// What to do with a list column of another layout than a flat list of floats.
fn list_hint(t: &DataType) -> &'static str {
    let item = match t {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f) => f.data_type(),
        _ => return "",
    };
    match item {
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::ListView(_)
        | DataType::LargeListView(_) => {
            " (nested lists, e.g. a 2-D array or Hugging Face Array2D: flatten each \
             record row-major, numpy's `a.ravel()`, C·H·W for pixels)"
        }
        t if t.is_numeric() => {
            " (cast the values to float32, e.g. `np.asarray(v, np.float32)` or pyarrow's \
             `cast(pa.list_(pa.float32()))`)"
        }
        _ => "",
    }
}

fn is_id_type(t: &DataType) -> bool {
    match t {
        // pandas writes a categorical column as dictionary-encoded values.
        DataType::Dictionary(_, values) => {
            matches!(**values, DataType::Utf8 | DataType::LargeUtf8) || values.is_integer()
        }
        t => {
            matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) || t.is_integer()
        }
    }
}

/// Resolves the columns a run asks for against a shard's schema; every problem is listed
/// (naming the column, the setting, the expected and the found type), not just the first.
pub fn resolve_columns(
    schema: &arrow::datatypes::Schema,
    names: &ColumnNames,
) -> std::result::Result<Columns, Vec<String>> {
    let mut problems = Vec::new();
    let found = || {
        let cols: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect();
        format!("the shard has [{}]", cols.join(", "))
    };
    let type_of = |name: &str| schema.field_with_name(name).ok().map(|f| f.data_type());
    let missing = |name: &str, setting: &str| {
        format!(
            "column `{name}` ({setting}) is not in the shard; {}",
            found()
        )
    };
    // The payload column `name` (present), as clean images or as measurements.
    let payload_of = |name: &str, setting: &str, clean: bool| -> std::result::Result<_, String> {
        let t = type_of(name).ok_or_else(|| missing(name, setting))?;
        if is_image_type(t) {
            return Ok(if clean {
                PayloadColumn::Image(name.into())
            } else {
                PayloadColumn::YImage(name.into())
            });
        }
        if is_list_of(t, true) {
            if !clean {
                return Ok(PayloadColumn::Y(name.into()));
            }
            return match type_of(PIXELS_SHAPE) {
                Some(st) if is_list_of(st, false) => Ok(PayloadColumn::Pixels {
                    pixels: name.into(),
                    shape: PIXELS_SHAPE.into(),
                }),
                Some(st) => Err(format!(
                    "column `{PIXELS_SHAPE}` (the [C, H, W] of `{name}`): expected \
                     list<int32>, found {st}"
                )),
                None => Err(format!(
                    "column `{name}` ({setting}) holds pixels and needs a `{PIXELS_SHAPE}` \
                     column (list<int32> [C, H, W]); {}",
                    found()
                )),
            };
        }
        let want = if clean {
            format!("{IMAGE_TYPE} or list<float32> pixels in [0, 1]")
        } else {
            format!("list<float32> or list<float64> (y as a vector) or {IMAGE_TYPE}")
        };
        Err(format!(
            "column `{name}` ({setting}): expected {want}, found {t}{}",
            list_hint(t)
        ))
    };
    let payload = match (&names.image, &names.y) {
        (Some(image), Some(y)) => Err(format!(
            "input.image_column `{image}` and input.y_column `{y}` are both set: a run \
             restores clean images (y simulated from them) or measurements, not both"
        )),
        (Some(image), None) => payload_of(image, "input.image_column", true),
        (None, Some(y)) => payload_of(y, "input.y_column", false),
        (None, None) => {
            let present =
                |names: [&'static str; 2]| names.into_iter().find(|n| type_of(n).is_some());
            match (present(["image", "pixels"]), present(["y", "y_image"])) {
                // Restoring the one and ignoring the other would be a guess either way.
                (Some(c), Some(m)) => Err(format!(
                    "the shard has both clean images (`{c}`) and measurements (`{m}`): set \
                     input.y_column = \"{m}\" (--y-column {m}) to restore the measurements, \
                     or input.image_column = \"{c}\" (--image-column {c}) to restore from \
                     the clean images (y simulated from them); {}",
                    found()
                )),
                (Some(c), None) => payload_of(c, "input.image_column", true),
                (None, Some(m)) => payload_of(m, "input.y_column", false),
                (None, None) => Err(format!(
                    "no image column: expected `image`, `pixels`+`shape`, `y` or `y_image` \
                     (or set input.image_column / input.y_column); {}",
                    found()
                )),
            }
        }
    };
    let payload = payload.map_err(|p| problems.push(p)).ok();
    // An optional column: the named one (which must exist) or the default where present.
    let mut optional = |set: &Option<String>,
                        default: &str,
                        setting: &str,
                        ok: fn(&DataType) -> bool,
                        want: &str| {
        let name = set.as_deref().unwrap_or(default);
        match type_of(name) {
            None => {
                if set.is_some() {
                    problems.push(missing(name, setting));
                }
                None
            }
            Some(t) if ok(t) => Some(name.to_string()),
            Some(t) => {
                problems.push(format!(
                    "column `{name}` ({setting}): expected {want}, found {t}"
                ));
                None
            }
        }
    };
    let id = optional(
        &names.id,
        "id",
        "input.id_column",
        is_id_type,
        "a string or integer id",
    );
    let mask = match (&names.mask, names.no_mask) {
        (Some(name), true) => {
            problems.push(format!(
                "input.mask_column `{name}`: the run's operator takes no per-record mask \
                 (inpaint-random, inpaint-box and fourier do)"
            ));
            None
        }
        (None, true) => None,
        (set, false) => optional(set, "mask", "input.mask_column", is_image_type, IMAGE_TYPE),
    };
    let mut keep = Vec::new();
    for (k, name) in names.keep.iter().enumerate() {
        if names.keep[..k].contains(name) {
            problems.push(format!("input.keep_columns names `{name}` twice"));
            continue;
        }
        match schema.field_with_name(name) {
            Ok(f) => keep.push(Field::new(name, f.data_type().clone(), true)),
            Err(_) => problems.push(missing(name, "input.keep_columns")),
        }
    }
    match payload {
        Some(payload) if problems.is_empty() => Ok(Columns {
            payload,
            id,
            mask,
            keep,
        }),
        _ => Err(problems),
    }
}

/// Checks a later shard against the first shard's columns (those the plan resolved
/// before any compute): the same payload column of the same kind, the same id and mask
/// columns, and kept columns of the same types, so that a shard cannot silently change
/// what the run restores (clean images for measurements, default ids for its own, a
/// drawn mask for its own) and every output part has one schema.
pub fn check_same_columns(first: &Columns, this: &Columns) -> std::result::Result<(), String> {
    let mut problems = Vec::new();
    if first.payload != this.payload {
        problems.push(format!(
            "the first shard gives {}, this one {}",
            first.payload.describe(),
            this.payload.describe()
        ));
    }
    let optional = |what: &str, first: &Option<String>, this: &Option<String>| match (first, this) {
        (a, b) if a == b => None,
        (Some(a), None) => Some(format!(
            "the first shard has {what} column `{a}`, this one none"
        )),
        (None, Some(b)) => Some(format!(
            "this shard has {what} column `{b}`, the first shard none (name the column in \
             input, or make the shards alike)"
        )),
        (Some(a), Some(b)) => Some(format!(
            "{what} column `{b}` here, `{a}` in the first shard"
        )),
        (None, None) => None,
    };
    problems.extend(optional("an id", &first.id, &this.id));
    problems.extend(optional("a mask", &first.mask, &this.mask));
    problems.extend(
        first
            .keep
            .iter()
            .zip(&this.keep)
            .filter(|(a, b)| a.data_type() != b.data_type())
            .map(|(a, b)| {
                format!(
                    "kept column `{}` is {} here, {} in the first shard",
                    a.name(),
                    b.data_type(),
                    a.data_type()
                )
            }),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The rows of one record batch of a shard; `first_row` is the batch's first row
/// number in the shard. `shard_name` names default ids.
pub fn records_of(
    batch: &RecordBatch,
    columns: &Columns,
    shard_name: &str,
    first_row: usize,
) -> Result<Vec<RawRecord>> {
    let mut out = Vec::with_capacity(batch.num_rows());
    read_batch(batch, columns, shard_name, first_row, &mut out)?;
    Ok(out)
}

/// Reads a whole shard from its bytes with the default columns. `shard_name` names
/// default ids and errors.
pub fn read_shard(bytes: Bytes, shard_name: &str) -> Result<Vec<RawRecord>> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).context("not a readable Parquet file")?;
    let columns = resolve_columns(builder.schema(), &ColumnNames::default())
        .map_err(|p| anyhow::anyhow!("{}", p.join("; ")))?;
    let reader = builder.with_batch_size(1024).build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.context("cannot decode a Parquet row group")?;
        let first_row = out.len();
        read_batch(&batch, &columns, shard_name, first_row, &mut out)?;
    }
    Ok(out)
}

/// The id of row `r` of a batch (`row` of the shard): its id column's value, or
/// `<shard>:<row>` where there is none or it is null.
fn id_at(
    ids: Option<&dyn Array>,
    r: usize,
    columns: &Columns,
    shard_name: &str,
    row: usize,
) -> Result<String> {
    Ok(match ids {
        Some(col) => string_at(col, r)
            .with_context(|| format!("column `{}`", columns.id.as_deref().unwrap_or("id")))?
            .unwrap_or_else(|| format!("{shard_name}:{row}")),
        None => format!("{shard_name}:{row}"),
    })
}

/// Appends the ids of a batch whose first row is row `base` of the shard (the batch
/// needs only the id column), as [`records_of`] would give them.
pub fn ids_of(
    batch: &RecordBatch,
    columns: &Columns,
    shard_name: &str,
    base: usize,
    out: &mut Vec<String>,
) -> Result<()> {
    let ids = id_column(batch, columns)?;
    for r in 0..batch.num_rows() {
        out.push(id_at(ids.as_deref(), r, columns, shard_name, base + r)?);
    }
    Ok(())
}

/// A batch's id column, where the run has one; dictionary-encoded strings (a pandas
/// categorical) decoded to plain strings once per batch.
fn id_column(batch: &RecordBatch, columns: &Columns) -> Result<Option<ArrayRef>> {
    let Some(name) = columns.id.as_deref() else {
        return Ok(None);
    };
    let col = batch
        .column_by_name(name)
        .with_context(|| format!("column `{name}` missing"))?;
    Ok(Some(match col.data_type() {
        DataType::Dictionary(_, _) => arrow::compute::cast(col, &DataType::Utf8)
            .with_context(|| format!("column `{name}`: cannot decode its dictionary"))?,
        _ => col.clone(),
    }))
}

fn read_batch(
    batch: &RecordBatch,
    columns: &Columns,
    shard_name: &str,
    base: usize,
    out: &mut Vec<RawRecord>,
) -> Result<()> {
    let ids = id_column(batch, columns)?;
    let mask = columns
        .mask
        .as_deref()
        .map(|n| column(batch, n))
        .transpose()?;
    let keep: Vec<&ArrayRef> = columns
        .keep
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .with_context(|| format!("column `{}` missing", f.name()))
        })
        .collect::<Result<_>>()?;
    let payload_col = column(batch, columns.payload.name())?;
    let shape_col = match &columns.payload {
        PayloadColumn::Pixels { shape, .. } => Some(column(batch, shape)?),
        _ => None,
    };
    for r in 0..batch.num_rows() {
        let row = base + r;
        let id = id_at(ids.as_deref(), r, columns, shard_name, row)?;
        let named = |name: &str, e: String| format!("column `{name}`: {e}");
        let in_payload = |e: String| named(columns.payload.name(), e);
        let payload = match (&columns.payload, shape_col) {
            (PayloadColumn::Image(_), _) => image_bytes_at(payload_col, r)
                .map(Payload::Image)
                .map_err(in_payload),
            (PayloadColumn::YImage(_), _) => image_bytes_at(payload_col, r)
                .map(Payload::YImage)
                .map_err(in_payload),
            (PayloadColumn::Y(_), _) => f32_list_at(payload_col, r)
                .map(Payload::Y)
                .map_err(in_payload),
            (PayloadColumn::Pixels { shape: name, .. }, Some(shape)) => {
                f32_list_at(payload_col, r)
                    .map_err(in_payload)
                    .and_then(|data| {
                        Ok(Payload::Pixels {
                            data,
                            // The shape column's own problem names it, not the pixels.
                            shape: i32_list_at(shape, r).map_err(|e| named(name, e))?,
                        })
                    })
            }
            (PayloadColumn::Pixels { .. }, None) => Err(in_payload("no shape column".into())),
        };
        // A null mask is no mask (decode decides whether the record may lack one); a
        // mask that is there but unreadable makes the row an error, naming its column.
        let (mask, payload) = match (mask, &columns.mask) {
            (Some(col), Some(name)) if !col.is_null(r) => match image_bytes_at(col, r) {
                Ok(bytes) => (Some(bytes), payload),
                Err(e) => (None, payload.and(Err(named(name, e)))),
            },
            _ => (None, payload),
        };
        out.push(RawRecord {
            id,
            row,
            payload,
            mask,
            keep: keep.iter().map(|c| c.slice(r, 1)).collect(),
        });
    }
    Ok(())
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .with_context(|| format!("column `{name}` missing"))
}

fn string_at(col: &dyn Array, r: usize) -> Result<Option<String>> {
    if col.is_null(r) {
        return Ok(None);
    }
    Ok(Some(match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(r).to_string(),
        DataType::LargeUtf8 => col.as_string::<i64>().value(r).to_string(),
        DataType::Utf8View => col.as_string_view().value(r).to_string(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(r).to_string(),
        DataType::Int32 => col.as_primitive::<Int32Type>().value(r).to_string(),
        DataType::Int16 => col.as_primitive::<Int16Type>().value(r).to_string(),
        DataType::Int8 => col.as_primitive::<Int8Type>().value(r).to_string(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(r).to_string(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(r).to_string(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().value(r).to_string(),
        DataType::UInt8 => col.as_primitive::<UInt8Type>().value(r).to_string(),
        other => bail!("unsupported id type {other}"),
    }))
}

/// Encoded bytes from an image struct {bytes, path} or a plain binary column.
fn image_bytes_at(col: &dyn Array, r: usize) -> std::result::Result<Vec<u8>, String> {
    if col.is_null(r) {
        return Err("image is null".into());
    }
    let binary_at = |a: &dyn Array| -> std::result::Result<Vec<u8>, String> {
        if a.is_null(r) {
            return Err("image bytes are null".into());
        }
        if let Some(b) = a.as_any().downcast_ref::<BinaryArray>() {
            Ok(b.value(r).to_vec())
        } else if let Some(b) = a.as_any().downcast_ref::<LargeBinaryArray>() {
            Ok(b.value(r).to_vec())
        } else if let DataType::BinaryView = a.data_type() {
            Ok(a.as_binary_view().value(r).to_vec())
        } else {
            Err(format!("image bytes have type {}", a.data_type()))
        }
    };
    match col.as_any().downcast_ref::<StructArray>() {
        Some(s) => {
            let bytes = s
                .column_by_name("bytes")
                .ok_or("image struct has no `bytes` field")?;
            binary_at(bytes.as_ref()).map_err(|e| {
                // Hugging Face `datasets` keeps an image by its file path alone until its
                // bytes are embedded; the file is not where adps runs.
                let path = s
                    .column_by_name("path")
                    .filter(|p| p.is_valid(r))
                    .and_then(|p| string_at(p.as_ref(), r).ok().flatten());
                match path {
                    Some(path) if bytes.is_null(r) => format!(
                        "{e}: the image is stored by its path (`{path}`) only; embed the \
                         bytes in the Parquet file (Hugging Face `datasets` does so in \
                         `push_to_hub`, or with `datasets.table.embed_table_storage` before \
                         `to_parquet`)"
                    ),
                    _ => e,
                }
            })
        }
        None => binary_at(col),
    }
}

fn list_values(
    col: &dyn Array,
    r: usize,
) -> std::result::Result<std::sync::Arc<dyn Array>, String> {
    if col.is_null(r) {
        return Err("value is null".into());
    }
    match col.data_type() {
        DataType::List(_) => Ok(col
            .as_any()
            .downcast_ref::<ListArray>()
            .ok_or("list")?
            .value(r)),
        DataType::LargeList(_) => Ok(col.as_list::<i64>().value(r)),
        DataType::FixedSizeList(_, _) => Ok(col.as_fixed_size_list().value(r)),
        other => Err(format!("expected a list, found {other}")),
    }
}

fn f32_list_at(col: &dyn Array, r: usize) -> std::result::Result<Vec<f32>, String> {
    let values = list_values(col, r)?;
    let floats: Vec<f32> = match values.data_type() {
        DataType::Float32 => values.as_primitive::<Float32Type>().values().to_vec(),
        DataType::Float64 => values
            .as_primitive::<arrow::datatypes::Float64Type>()
            .values()
            .iter()
            .map(|&v| v as f32)
            .collect(),
        other => return Err(format!("expected float32 values, found {other}")),
    };
    if values.null_count() > 0 {
        return Err("list holds nulls".into());
    }
    Ok(floats)
}

fn i32_list_at(col: &dyn Array, r: usize) -> std::result::Result<Vec<i32>, String> {
    let values = list_values(col, r)?;
    match values.data_type() {
        DataType::Int32 => Ok(values.as_primitive::<Int32Type>().values().to_vec()),
        DataType::Int64 => values
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|&v| i32::try_from(v).map_err(|_| format!("shape value {v} is out of range")))
            .collect(),
        other => Err(format!("expected int32 shape, found {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Fields, Schema};

    #[test]
    fn an_int64_shape_out_of_i32_range_is_refused_not_wrapped() {
        use arrow::datatypes::Int64Type;
        let shapes = ListArray::from_iter_primitive::<Int64Type, _, _>([
            Some(vec![Some(1), Some(32), Some(32)]),
            Some(vec![Some(1), Some((1i64 << 32) + 32), Some(32)]),
        ]);
        assert_eq!(i32_list_at(&shapes, 0).unwrap(), vec![1, 32, 32]);
        let e = i32_list_at(&shapes, 1).unwrap_err();
        assert!(e.contains("4294967328"), "{e}");
    }

    fn image_type() -> DataType {
        DataType::Struct(Fields::from(vec![
            Field::new("bytes", DataType::Binary, true),
            Field::new("path", DataType::Utf8, true),
        ]))
    }

    fn hf_schema() -> Schema {
        Schema::new(vec![
            Field::new("image", image_type(), true),
            Field::new("label", DataType::Int64, true),
        ])
    }

    #[test]
    fn defaults_read_what_hugging_face_writes() {
        let names = ColumnNames {
            keep: vec!["label".into()],
            ..Default::default()
        };
        let cols = resolve_columns(&hf_schema(), &names).unwrap();
        assert_eq!(cols.payload, PayloadColumn::Image("image".into()));
        assert_eq!(cols.id, None);
        assert_eq!(cols.mask, None);
        assert_eq!(cols.keep[0].data_type(), &DataType::Int64);
    }

    #[test]
    fn every_mapping_problem_is_listed_with_types() {
        let schema = Schema::new(vec![
            Field::new("image", image_type(), true),
            Field::new("name", DataType::Float32, true),
            Field::new("y", DataType::Utf8, true),
        ]);
        let names = ColumnNames {
            y: Some("y".into()),
            id: Some("name".into()),
            mask: Some("m".into()),
            keep: vec!["label".into(), "label".into()],
            ..Default::default()
        };
        let problems = resolve_columns(&schema, &names).unwrap_err();
        let all = problems.join("\n");
        assert_eq!(problems.len(), 5, "{all}");
        assert!(
            all.contains("column `y` (input.y_column): expected list<float32>"),
            "{all}"
        );
        assert!(all.contains("found Utf8"), "{all}");
        assert!(
            all.contains(
                "column `name` (input.id_column): expected a string or integer id, found Float32"
            ),
            "{all}"
        );
        assert!(
            all.contains("column `m` (input.mask_column) is not in the shard"),
            "{all}"
        );
        assert!(
            all.contains("column `label` (input.keep_columns) is not in the shard"),
            "{all}"
        );
        assert!(all.contains("names `label` twice"), "{all}");
    }

    #[test]
    fn a_mapped_column_is_read_under_its_name() {
        use arrow::array::{Int64Array, StringArray};
        let png = crate::io::image::encode_png([1, 2, 2], &[0.0; 4]).unwrap();
        let bytes = crate::io::parquet_out::encode_image_columns(
            &["a".into(), "b".into()],
            &[("picture", &[png.clone(), png])],
        )
        .unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
        let batch = builder.build().unwrap().next().unwrap().unwrap();
        // Add a label column to the batch.
        let mut cols = batch.columns().to_vec();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        cols.push(std::sync::Arc::new(Int64Array::from(vec![3, 4])));
        fields.push(Field::new("label", DataType::Int64, true));
        cols.push(std::sync::Arc::new(StringArray::from(vec!["n0", "n1"])));
        fields.push(Field::new("name", DataType::Utf8, true));
        let batch = RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), cols).unwrap();
        let names = ColumnNames {
            image: Some("picture".into()),
            id: Some("name".into()),
            keep: vec!["label".into()],
            ..Default::default()
        };
        let columns = resolve_columns(&batch.schema(), &names).unwrap();
        let recs = records_of(&batch, &columns, "s.parquet", 10).unwrap();
        assert_eq!(recs[1].id, "n1");
        assert_eq!(recs[1].row, 11);
        assert!(matches!(recs[1].payload, Ok(Payload::Image(_))));
        assert_eq!(recs[1].keep[0].as_primitive::<Int64Type>().value(0), 4);
        // Without an id column, ids are <shard>:<row>.
        let names = ColumnNames {
            image: Some("picture".into()),
            ..Default::default()
        };
        let mut columns = resolve_columns(&batch.schema(), &names).unwrap();
        assert_eq!(
            columns.id.as_deref(),
            Some("id"),
            "the default id column is used"
        );
        columns.id = None;
        let recs = records_of(&batch, &columns, "s.parquet", 0).unwrap();
        assert_eq!(recs[0].id, "s.parquet:0");
    }

    #[test]
    fn a_later_shard_must_have_the_first_shards_columns() {
        let names = ColumnNames {
            keep: vec!["label".into()],
            ..Default::default()
        };
        let resolve = |fields: Vec<Field>| resolve_columns(&Schema::new(fields), &names).unwrap();
        let y = || Field::new("y", DataType::new_list(DataType::Float32, true), true);
        let label = |t| Field::new("label", t, true);
        let first = resolve(vec![
            y(),
            Field::new("id", DataType::Utf8, true),
            Field::new("mask", image_type(), true),
            label(DataType::Int64),
        ]);
        // The same columns (in another order) fit.
        let same = resolve(vec![
            label(DataType::Int64),
            Field::new("mask", image_type(), true),
            y(),
            Field::new("id", DataType::Utf8, true),
        ]);
        assert_eq!(check_same_columns(&first, &same), Ok(()));
        // Clean images instead of measurements, no ids, no masks, a kept column retyped:
        // each is named.
        let other = resolve(vec![
            Field::new("image", image_type(), true),
            label(DataType::Utf8),
        ]);
        let err = check_same_columns(&first, &other).unwrap_err();
        for want in [
            "the first shard gives measurements `y` (a y vector), this one clean images `image`",
            "the first shard has an id column `id`, this one none",
            "the first shard has a mask column `mask`, this one none",
            "`label` is Utf8 here, Int64 in the first shard",
        ] {
            assert!(err.contains(want), "{want} not in {err}");
        }
    }

    #[test]
    fn default_columns_that_leave_a_choice_are_refused_or_left_alone() {
        // Clean images and measurements side by side: the run must say which it restores.
        let schema = Schema::new(vec![
            Field::new("image", image_type(), true),
            Field::new("y", DataType::new_list(DataType::Float32, true), true),
        ]);
        let err = resolve_columns(&schema, &ColumnNames::default()).unwrap_err();
        assert!(
            err[0].contains("both clean images (`image`) and measurements (`y`)"),
            "{err:?}"
        );
        let names = ColumnNames {
            y: Some("y".into()),
            ..Default::default()
        };
        let columns = resolve_columns(&schema, &names).unwrap();
        assert_eq!(columns.payload, PayloadColumn::Y("y".into()));
        // A default `mask` column is not read when the operator takes no mask; naming one
        // then is refused.
        let schema = Schema::new(vec![
            Field::new("image", image_type(), true),
            Field::new("mask", image_type(), true),
        ]);
        let mut names = ColumnNames::default();
        assert_eq!(
            resolve_columns(&schema, &names).unwrap().mask.as_deref(),
            Some("mask")
        );
        names.no_mask = true;
        assert_eq!(resolve_columns(&schema, &names).unwrap().mask, None);
        names.mask = Some("mask".into());
        let err = resolve_columns(&schema, &names).unwrap_err();
        assert!(err[0].contains("takes no per-record mask"), "{err:?}");
    }

    #[test]
    fn y_in_another_list_layout_is_refused_saying_how_to_convert_it() {
        let nested = DataType::List(std::sync::Arc::new(Field::new(
            "item",
            DataType::List(std::sync::Arc::new(Field::new(
                "item",
                DataType::Float32,
                true,
            ))),
            true,
        )));
        let ints = DataType::List(std::sync::Arc::new(Field::new(
            "item",
            DataType::Int16,
            true,
        )));
        for (t, hint) in [
            (nested, "flatten each record row-major"),
            (ints, "cast the values"),
        ] {
            let schema = Schema::new(vec![Field::new("y", t, true)]);
            let err = resolve_columns(&schema, &ColumnNames::default()).unwrap_err();
            assert!(
                err[0].contains("column `y`") && err[0].contains(hint),
                "{err:?}"
            );
        }
    }

    #[test]
    fn any_integer_ids_are_read_in_decimal_dictionary_encoded_too() {
        use arrow::array::{DictionaryArray, Int64Array, UInt64Array, UInt8Array};
        let y = arrow::array::ListArray::from_iter_primitive::<Float32Type, _, _>(
            (0..2).map(|k| Some(vec![Some(k as f32)])),
        );
        let dict = DictionaryArray::<Int32Type>::try_new(
            arrow::array::Int32Array::from(vec![1, 0]),
            std::sync::Arc::new(Int64Array::from(vec![7, -3])),
        )
        .unwrap();
        let cases: Vec<(ArrayRef, [&str; 2])> = vec![
            (
                std::sync::Arc::new(UInt64Array::from(vec![u64::MAX, 0])),
                ["18446744073709551615", "0"],
            ),
            (
                std::sync::Arc::new(UInt8Array::from(vec![5, 6])),
                ["5", "6"],
            ),
            (std::sync::Arc::new(dict), ["-3", "7"]),
        ];
        for (ids, want) in cases {
            let schema = Schema::new(vec![
                Field::new("id", ids.data_type().clone(), true),
                Field::new("y", y.data_type().clone(), true),
            ]);
            let batch = RecordBatch::try_new(
                std::sync::Arc::new(schema),
                vec![ids.clone(), std::sync::Arc::new(y.clone())],
            )
            .unwrap();
            let columns = resolve_columns(&batch.schema(), &ColumnNames::default())
                .unwrap_or_else(|e| panic!("{}: {e:?}", ids.data_type()));
            let recs = records_of(&batch, &columns, "s.parquet", 0).unwrap();
            let got: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(got, want, "{}", ids.data_type());
        }
    }

    #[test]
    fn dictionary_encoded_ids_are_read_as_strings() {
        use arrow::array::DictionaryArray;
        use arrow::datatypes::Int32Type as Key;
        let ids: DictionaryArray<Key> = vec!["cat", "dog", "cat-2"].into_iter().collect();
        let y = arrow::array::ListArray::from_iter_primitive::<Float32Type, _, _>(
            (0..3).map(|k| Some(vec![Some(k as f32)])),
        );
        let schema = Schema::new(vec![
            Field::new("id", ids.data_type().clone(), true),
            Field::new("y", y.data_type().clone(), true),
        ]);
        let batch = RecordBatch::try_new(
            std::sync::Arc::new(schema),
            vec![std::sync::Arc::new(ids), std::sync::Arc::new(y)],
        )
        .unwrap();
        let columns = resolve_columns(&batch.schema(), &ColumnNames::default()).unwrap();
        let recs = records_of(&batch, &columns, "s.parquet", 0).unwrap();
        let got: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(got, ["cat", "dog", "cat-2"]);
        let mut ids = Vec::new();
        ids_of(&batch, &columns, "s.parquet", 0, &mut ids).unwrap();
        assert_eq!(ids, ["cat", "dog", "cat-2"]);
    }
    #[test]
    fn an_unreadable_mask_or_shape_is_the_rows_error_naming_its_column() {
        use arrow::array::{BinaryArray, StringArray, StructArray};
        let y = ListArray::from_iter_primitive::<Float32Type, _, _>(
            (0..3).map(|_| Some(vec![Some(0.0f32)])),
        );
        // Row 0 has a mask, row 1 none (null struct), row 2 a struct whose bytes are null.
        let bytes = BinaryArray::from(vec![Some(&b"png"[..]), None, None]);
        let paths = StringArray::from(vec![None::<&str>, None, None]);
        let fields = match image_type() {
            DataType::Struct(f) => f,
            _ => unreachable!(),
        };
        let holes = StructArray::try_new(
            fields,
            vec![std::sync::Arc::new(bytes), std::sync::Arc::new(paths)],
            Some(vec![true, false, true].into()),
        )
        .unwrap();
        let schema = Schema::new(vec![
            Field::new("y", y.data_type().clone(), true),
            Field::new("holes", image_type(), true),
        ]);
        let batch = RecordBatch::try_new(
            std::sync::Arc::new(schema),
            vec![std::sync::Arc::new(y), std::sync::Arc::new(holes)],
        )
        .unwrap();
        let names = ColumnNames {
            mask: Some("holes".into()),
            ..Default::default()
        };
        let columns = resolve_columns(&batch.schema(), &names).unwrap();
        let recs = records_of(&batch, &columns, "s.parquet", 0).unwrap();
        assert_eq!(recs[0].mask.as_deref(), Some(&b"png"[..]));
        assert!(recs[0].payload.is_ok());
        assert_eq!(recs[1].mask, None);
        assert!(recs[1].payload.is_ok(), "a null mask is no mask");
        assert_eq!(
            recs[2].payload.as_ref().unwrap_err(),
            "column `holes`: image bytes are null"
        );

        // Pixels whose shape cell is null: the shape column is named.
        let pixels =
            ListArray::from_iter_primitive::<Float32Type, _, _>([Some(vec![Some(0.0f32)])]);
        let shape = ListArray::from_iter_primitive::<Int32Type, _, _>([None::<Vec<Option<i32>>>]);
        let schema = Schema::new(vec![
            Field::new("pixels", pixels.data_type().clone(), true),
            Field::new("shape", shape.data_type().clone(), true),
        ]);
        let batch = RecordBatch::try_new(
            std::sync::Arc::new(schema),
            vec![std::sync::Arc::new(pixels), std::sync::Arc::new(shape)],
        )
        .unwrap();
        let columns = resolve_columns(&batch.schema(), &ColumnNames::default()).unwrap();
        let recs = records_of(&batch, &columns, "s.parquet", 0).unwrap();
        assert_eq!(
            recs[0].payload.as_ref().unwrap_err(),
            "column `shape`: value is null"
        );
    }
}
