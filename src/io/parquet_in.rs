//! Input shards (spec §3): Parquet bytes → raw records, one per row.
//!
//! Column layouts accepted:
//! - clean images: `image` (Hugging Face image struct {bytes, path}) or `pixels`
//!   (list<float32>, C·H·W in [0, 1]) with `shape` (list<int32>);
//! - measured data: `y` (list<float32>) or `y_image` (image struct), and optionally a
//!   per-record `mask` image for inpainting.
//!
//! `id` (string) is optional; rows without one are named `<shard file>:<row>`.
//! A shard whose schema fits none of these fails as a whole; a row with a null or
//! malformed value becomes a per-record error and the rest of the shard goes on.

use anyhow::{bail, Context, Result};
use arrow::array::{
    Array, AsArray, BinaryArray, LargeBinaryArray, ListArray, RecordBatch, StructArray,
};
use arrow::datatypes::{DataType, Float32Type, Int32Type, Int64Type};
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
    /// Clean image, encoded (PNG/JPEG).
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
    /// The record id (from the `id` column or `<shard>:<row>`).
    pub id: String,
    /// Row number inside the shard.
    pub row: usize,
    /// The row's content, or why it cannot be used.
    pub payload: std::result::Result<Payload, String>,
    /// Per-record inpainting mask image, where the shard has one.
    pub mask: Option<Vec<u8>>,
}

/// Which layout a shard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Image,
    Pixels,
    Y,
    YImage,
}

/// The layout a shard's schema has, or why it has none.
pub fn layout_of(schema: &arrow::datatypes::Schema) -> Result<Layout> {
    let has = |name: &str| schema.column_with_name(name).is_some();
    Ok(if has("image") {
        Layout::Image
    } else if has("pixels") {
        if !has("shape") {
            bail!("column `pixels` needs a `shape` column (list<int32> [C, H, W])");
        }
        Layout::Pixels
    } else if has("y") {
        Layout::Y
    } else if has("y_image") {
        Layout::YImage
    } else {
        let cols: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        bail!(
            "no image column: expected `image`, `pixels`+`shape`, `y` or `y_image`, found [{}]",
            cols.join(", ")
        );
    })
}

/// The rows of one record batch of a shard; `first_row` is the batch's first row
/// number in the shard. `shard_name` names default ids.
pub fn records_of(
    batch: &RecordBatch,
    layout: Layout,
    shard_name: &str,
    first_row: usize,
) -> Result<Vec<RawRecord>> {
    let mut out = Vec::with_capacity(batch.num_rows());
    read_batch(batch, layout, shard_name, first_row, &mut out)?;
    Ok(out)
}

/// Reads a whole shard from its bytes. `shard_name` names default ids and errors.
pub fn read_shard(bytes: Bytes, shard_name: &str) -> Result<Vec<RawRecord>> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).context("not a readable Parquet file")?;
    let layout = layout_of(builder.schema())?;
    let reader = builder.with_batch_size(1024).build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.context("cannot decode a Parquet row group")?;
        let first_row = out.len();
        read_batch(&batch, layout, shard_name, first_row, &mut out)?;
    }
    Ok(out)
}

fn read_batch(
    batch: &RecordBatch,
    layout: Layout,
    shard_name: &str,
    base: usize,
    out: &mut Vec<RawRecord>,
) -> Result<()> {
    let ids = batch.column_by_name("id");
    let mask = batch.column_by_name("mask");
    for r in 0..batch.num_rows() {
        let row = base + r;
        let id = match ids {
            Some(col) => string_at(col.as_ref(), r)
                .context("column `id`")?
                .unwrap_or_else(|| format!("{shard_name}:{row}")),
            None => format!("{shard_name}:{row}"),
        };
        let payload = match layout {
            Layout::Image => image_bytes_at(column(batch, "image")?, r).map(Payload::Image),
            Layout::YImage => image_bytes_at(column(batch, "y_image")?, r).map(Payload::YImage),
            Layout::Y => f32_list_at(column(batch, "y")?, r).map(Payload::Y),
            Layout::Pixels => f32_list_at(column(batch, "pixels")?, r).and_then(|data| {
                Ok(Payload::Pixels {
                    data,
                    shape: i32_list_at(column(batch, "shape").map_err(|e| e.to_string())?, r)?,
                })
            }),
        };
        let mask = match mask {
            Some(col) => image_bytes_at(col.as_ref(), r).ok(),
            None => None,
        };
        out.push(RawRecord {
            id,
            row,
            payload,
            mask,
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
            binary_at(bytes.as_ref())
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
        DataType::Int64 => Ok(values
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|&v| v as i32)
            .collect()),
        other => Err(format!("expected int32 shape, found {other}")),
    }
}
