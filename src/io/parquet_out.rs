//! Output tables (spec §3) encoded as Parquet bytes: reconstructions with their metrics
//! and settings, and the per-record errors table.
//!
//! Every file carries Hugging Face `datasets` feature metadata, so `reconstruction`
//! loads as an image there and as a plain {bytes, path} struct in pyarrow, pandas and
//! DuckDB.

use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{
    ArrayRef, BinaryBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, RecordBatch, StringBuilder, StructArray,
};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// The settings that produced a row (identical for every row of a run).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowSettings {
    pub model: String,
    pub train_p: f64,
    pub operator: String,
    pub operator_kind: String,
    pub level: f64,
    pub sigma_y: f64,
    pub steps: i32,
    pub nfe: i32,
    pub zeta: f64,
    pub seed: i64,
    pub sampler: String,
    /// `input.y_range`, written for the rows whose y was measured (null where adps
    /// simulated it).
    pub y_range: String,
    /// `output.write_f32`: every part has the `reconstruction_f32` column, also a part
    /// without restored rows, so that all parts share one schema.
    #[serde(skip)]
    pub write_f32: bool,
    /// The kept input columns (`input.keep_columns`) with their types, in order.
    #[serde(skip)]
    pub keep: Vec<Field>,
    /// Their Hugging Face features from the input's metadata, where it has them (a
    /// `ClassLabel` stays one).
    #[serde(skip)]
    pub keep_features: serde_json::Map<String, serde_json::Value>,
}

/// The columns of an output part (besides the kept input columns, which must not reuse
/// these names).
pub const OUTPUT_COLUMNS: &[&str] = &[
    "id",
    "reconstruction",
    "reconstruction_f32",
    "mse",
    "psnr",
    "ssim",
    "lpips",
    "residual",
    "model",
    "operator",
    "operator_kind",
    "sampler",
    "train_p",
    "level",
    "sigma_y",
    "zeta",
    "steps",
    "nfe",
    "seed",
    "seconds",
    "y_range",
];

/// One restored image.
#[derive(Debug, Clone)]
pub struct OutputRow {
    pub id: String,
    /// PNG of the reconstruction.
    pub png: Vec<u8>,
    /// The reconstruction as floats in [-1, 1] (written only when asked for).
    pub f32: Option<Vec<f32>>,
    /// Metrics against ground truth on the [0, 1] scale; None without ground truth.
    pub mse: Option<f64>,
    pub psnr: Option<f64>,
    pub ssim: Option<f64>,
    pub lpips: Option<f64>,
    /// ‖y − A x̂‖ of the final reconstruction.
    pub residual: f64,
    /// Wall seconds spent on this image's batch, divided by the batch size.
    pub seconds: f64,
    /// Whether y was measured (given in the input) rather than simulated.
    pub measured: bool,
    /// The record's values of the kept input columns, one-row arrays in
    /// [`RowSettings::keep`] order.
    pub keep: Vec<ArrayRef>,
}

/// A record that could not be restored.
#[derive(Debug, Clone)]
pub struct ErrorRow {
    pub id: String,
    /// Row in its shard.
    pub row: usize,
    pub shard: String,
    pub stage: String,
    pub reason: String,
    /// The record's values of the kept input columns, as in [`OutputRow::keep`].
    pub keep: Vec<ArrayRef>,
}

fn image_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ])
}

/// The Hugging Face `datasets` feature of an Arrow type (`Value` dtypes as `datasets`
/// names them, lists as `Sequence`, structs as dicts); `None` for types it has no plain
/// name for (decimals, maps, unions, durations…).
fn hf_feature(t: &DataType) -> Option<serde_json::Value> {
    use arrow::datatypes::TimeUnit;
    let value = |dtype: &str| Some(serde_json::json!({"dtype": dtype, "_type": "Value"}));
    match t {
        DataType::Null => value("null"),
        DataType::Boolean => value("bool"),
        DataType::Int8 => value("int8"),
        DataType::Int16 => value("int16"),
        DataType::Int32 => value("int32"),
        DataType::Int64 => value("int64"),
        DataType::UInt8 => value("uint8"),
        DataType::UInt16 => value("uint16"),
        DataType::UInt32 => value("uint32"),
        DataType::UInt64 => value("uint64"),
        DataType::Float16 => value("float16"),
        DataType::Float32 => value("float32"),
        DataType::Float64 => value("float64"),
        DataType::Utf8 | DataType::Utf8View => value("string"),
        DataType::LargeUtf8 => value("large_string"),
        DataType::Binary | DataType::BinaryView => value("binary"),
        DataType::LargeBinary => value("large_binary"),
        DataType::Date32 => value("date32"),
        DataType::Date64 => value("date64"),
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            value(&match tz {
                Some(tz) => format!("timestamp[{unit}, tz={tz}]"),
                None => format!("timestamp[{unit}]"),
            })
        }
        DataType::List(inner) | DataType::LargeList(inner) => Some(
            serde_json::json!({"feature": hf_feature(inner.data_type())?, "_type": "Sequence"}),
        ),
        DataType::FixedSizeList(inner, n) => Some(serde_json::json!({
            "feature": hf_feature(inner.data_type())?,
            "length": n,
            "_type": "Sequence"
        })),
        DataType::Struct(fields) => {
            let mut dict = serde_json::Map::new();
            for f in fields {
                dict.insert(f.name().clone(), hf_feature(f.data_type())?);
            }
            Some(serde_json::Value::Object(dict))
        }
        _ => None,
    }
}

/// Hugging Face `datasets` features for a schema (its `huggingface` metadata key);
/// `given` features are taken as they are. `None` when a column has a type `datasets`
/// names no feature for: better no features (it then infers them from the Arrow
/// schema) than a wrong one.
fn hf_metadata(
    schema: &Schema,
    image_columns: &[&str],
    given: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    let mut features = serde_json::Map::new();
    for f in schema.fields() {
        let feature = if let Some(g) = given.get(f.name()) {
            g.clone()
        } else if image_columns.contains(&f.name().as_str()) {
            serde_json::json!({"_type": "Image"})
        } else {
            hf_feature(f.data_type())?
        };
        features.insert(f.name().clone(), feature);
    }
    Some(serde_json::json!({"info": {"features": features}}).to_string())
}

/// Rows per row group in the Parquet files adps writes.
pub const ROW_GROUP_ROWS: usize = 1024;

/// Encodes one batch as a Snappy-compressed Parquet file carrying Hugging Face feature
/// metadata (`image_columns` load as images there).
pub fn write_parquet(batch: RecordBatch, image_columns: &[&str]) -> Result<Vec<u8>> {
    write_parquet_with(batch, image_columns, &serde_json::Map::new())
}

/// [`write_parquet`], with the Hugging Face features of some columns given.
pub fn write_parquet_with(
    batch: RecordBatch,
    image_columns: &[&str],
    features: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<u8>> {
    let schema = batch.schema();
    let meta = hf_metadata(&schema, image_columns, features);
    let schema = Arc::new(
        schema.as_ref().clone().with_metadata(
            meta.map(|m| ("huggingface".to_string(), m))
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        ),
    );
    let batch = batch.with_schema(schema.clone())?;
    // Row groups of at most ROW_GROUP_ROWS rows: a row group is what a reader fetches at
    // once, so readers of our files (adps included) stream them in bounded memory.
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(buf)
}

/// Encodes a shard's reconstructions as one Parquet file.
pub fn encode_outputs(rows: &[OutputRow], settings: &RowSettings) -> Result<Vec<u8>> {
    let n = rows.len();
    let mut id = StringBuilder::new();
    let mut bytes = BinaryBuilder::new();
    let mut path = StringBuilder::new();
    let with_f32 = settings.write_f32;
    let mut f32s = ListBuilder::new(Float32Builder::new());
    let [mut mse, mut psnr, mut ssim, mut lpips, mut residual, mut seconds] =
        std::array::from_fn(|_| Float64Builder::with_capacity(n));
    for r in rows {
        id.append_value(&r.id);
        bytes.append_value(&r.png);
        path.append_value(format!("{}.png", r.id));
        if with_f32 {
            match &r.f32 {
                Some(v) => f32s.append_value(v.iter().map(|&x| Some(x))),
                None => f32s.append_null(),
            }
        }
        mse.append_option(r.mse);
        psnr.append_option(r.psnr);
        ssim.append_option(r.ssim);
        lpips.append_option(r.lpips);
        residual.append_value(r.residual);
        seconds.append_value(r.seconds);
    }
    let image = StructArray::new(
        image_struct_fields(),
        vec![
            Arc::new(bytes.finish()) as ArrayRef,
            Arc::new(path.finish()) as ArrayRef,
        ],
        None,
    );
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "reconstruction",
            DataType::Struct(image_struct_fields()),
            true,
        ),
    ];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(id.finish()), Arc::new(image)];
    if with_f32 {
        let list = f32s.finish();
        fields.push(Field::new(
            "reconstruction_f32",
            arrow::array::Array::data_type(&list).clone(),
            true,
        ));
        columns.push(Arc::new(list));
    }
    for (name, mut col) in [
        ("mse", mse),
        ("psnr", psnr),
        ("ssim", ssim),
        ("lpips", lpips),
        ("residual", residual),
    ] {
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(Arc::new(col.finish()));
    }
    let s = settings;
    let strings = [
        ("model", &s.model),
        ("operator", &s.operator),
        ("operator_kind", &s.operator_kind),
        ("sampler", &s.sampler),
    ];
    for (name, value) in strings {
        let mut b = StringBuilder::new();
        (0..n).for_each(|_| b.append_value(value));
        fields.push(Field::new(name, DataType::Utf8, false));
        columns.push(Arc::new(b.finish()));
    }
    for (name, value) in [
        ("train_p", s.train_p),
        ("level", s.level),
        ("sigma_y", s.sigma_y),
        ("zeta", s.zeta),
    ] {
        let mut b = Float64Builder::with_capacity(n);
        (0..n).for_each(|_| b.append_value(value));
        fields.push(Field::new(name, DataType::Float64, false));
        columns.push(Arc::new(b.finish()));
    }
    for (name, value) in [("steps", s.steps), ("nfe", s.nfe)] {
        let mut b = Int32Builder::with_capacity(n);
        (0..n).for_each(|_| b.append_value(value));
        fields.push(Field::new(name, DataType::Int32, false));
        columns.push(Arc::new(b.finish()));
    }
    let mut seed = Int64Builder::with_capacity(n);
    (0..n).for_each(|_| seed.append_value(s.seed));
    fields.push(Field::new("seed", DataType::Int64, false));
    columns.push(Arc::new(seed.finish()));
    fields.push(Field::new("seconds", DataType::Float64, true));
    columns.push(Arc::new(seconds.finish()));
    let mut y_range = StringBuilder::new();
    for r in rows {
        y_range.append_option(r.measured.then_some(&s.y_range));
    }
    fields.push(Field::new("y_range", DataType::Utf8, true));
    columns.push(Arc::new(y_range.finish()));
    push_kept(&mut fields, &mut columns, &s.keep, n, |r, k| {
        rows[r].keep.get(k).cloned()
    })?;
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .context("building the output table")?;
    write_parquet_with(batch, &["reconstruction"], &s.keep_features)
}

/// Appends the kept input columns (`keep` fields, in order) of `n` rows.
fn push_kept(
    fields: &mut Vec<Field>,
    columns: &mut Vec<ArrayRef>,
    keep: &[Field],
    n: usize,
    value: impl Fn(usize, usize) -> Option<ArrayRef>,
) -> Result<()> {
    for (k, field) in keep.iter().enumerate() {
        let values: Vec<ArrayRef> = (0..n).filter_map(|r| value(r, k)).collect();
        anyhow::ensure!(
            values.len() == n,
            "kept column `{}`: {} of {n} rows have a value",
            field.name(),
            values.len()
        );
        let refs: Vec<&dyn arrow::array::Array> = values.iter().map(|a| a.as_ref()).collect();
        let column = if refs.is_empty() {
            arrow::array::new_empty_array(field.data_type())
        } else {
            arrow::compute::concat(&refs)
                .with_context(|| format!("kept column `{}`", field.name()))?
        };
        anyhow::ensure!(
            column.data_type() == field.data_type(),
            "kept column `{}` is {}, {} in the first shard",
            field.name(),
            column.data_type(),
            field.data_type()
        );
        fields.push(field.clone());
        columns.push(column);
    }
    Ok(())
}

/// Encodes the per-record errors of a shard, with the kept input columns of `settings`.
pub fn encode_errors(rows: &[ErrorRow], settings: &RowSettings) -> Result<Vec<u8>> {
    let mut cols: [StringBuilder; 4] = std::array::from_fn(|_| StringBuilder::new());
    let mut row = Int64Builder::new();
    for r in rows {
        for (b, v) in cols.iter_mut().zip([&r.id, &r.shard, &r.stage, &r.reason]) {
            b.append_value(v);
        }
        row.append_value(r.row as i64);
    }
    let mut fields: Vec<Field> = ["id", "shard", "stage", "reason"]
        .iter()
        .map(|n| Field::new(*n, DataType::Utf8, false))
        .collect();
    fields.insert(1, Field::new("row", DataType::Int64, false));
    let mut columns: Vec<ArrayRef> = cols
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    columns.insert(1, Arc::new(row.finish()) as ArrayRef);
    push_kept(
        &mut fields,
        &mut columns,
        &settings.keep,
        rows.len(),
        |r, k| rows[r].keep.get(k).cloned(),
    )?;
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    write_parquet_with(batch, &[], &settings.keep_features)
}

/// Encodes clean images as an input shard (`id`, `image`) — used by tests and tools that
/// prepare data in the spec's input format.
pub fn encode_image_shard(rows: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    let pngs: Vec<Vec<u8>> = rows.iter().map(|(_, png)| png.clone()).collect();
    encode_image_columns(&ids, &[("image", &pngs)])
}

/// Encodes an `id` column and image-struct columns (e.g. `y_image` and `mask` for
/// measured inpainting data), one encoded image per id in each column.
pub fn encode_image_columns(ids: &[String], columns: &[(&str, &[Vec<u8>])]) -> Result<Vec<u8>> {
    let image_struct = |pngs: &[Vec<u8>]| {
        let mut bytes = BinaryBuilder::new();
        let mut path = StringBuilder::new();
        for png in pngs {
            bytes.append_value(png);
            path.append_null();
        }
        StructArray::new(
            image_struct_fields(),
            vec![
                Arc::new(bytes.finish()) as ArrayRef,
                Arc::new(path.finish()) as ArrayRef,
            ],
            None,
        )
    };
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (name, pngs) in columns {
        anyhow::ensure!(
            pngs.len() == ids.len(),
            "column `{name}` has {} images for {} ids",
            pngs.len(),
            ids.len()
        );
        fields.push(Field::new(
            *name,
            DataType::Struct(image_struct_fields()),
            true,
        ));
        arrays.push(Arc::new(image_struct(pngs)));
    }
    let mut id = StringBuilder::new();
    ids.iter().for_each(|i| id.append_value(i));
    fields.push(Field::new("id", DataType::Utf8, false));
    arrays.push(Arc::new(id.finish()));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    write_parquet(batch, &names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::parquet_in::{read_shard, Payload};

    /// Row settings of a 10-step Heun run of operator `op`, nothing kept, unit-range y.
    fn test_settings(op: &str, kind: &str, level: f64) -> RowSettings {
        RowSettings {
            model: "m".into(),
            train_p: 0.2,
            operator: op.into(),
            operator_kind: kind.into(),
            level,
            sigma_y: 0.0,
            steps: 10,
            nfe: 19,
            zeta: 1.0,
            seed: 0,
            sampler: "heun".into(),
            y_range: "unit".into(),
            write_f32: false,
            keep: Vec::new(),
            keep_features: serde_json::Map::new(),
        }
    }

    /// An output row with a one-byte PNG and no metrics.
    fn output_row(id: &str) -> OutputRow {
        OutputRow {
            id: id.into(),
            png: vec![1],
            f32: None,
            mse: None,
            psnr: None,
            ssim: None,
            lpips: None,
            residual: 0.0,
            seconds: 0.0,
            measured: false,
            keep: Vec::new(),
        }
    }

    #[test]
    fn image_shards_round_trip_through_the_reader() {
        let png = crate::io::image::encode_png([1, 2, 2], &[0.0, 1.0, -1.0, 0.5]).unwrap();
        let bytes = encode_image_shard(&[("a".into(), png.clone()), ("b".into(), png)]).unwrap();
        let recs = read_shard(bytes.into(), "s.parquet").unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].id, "b");
        assert!(matches!(recs[0].payload, Ok(Payload::Image(_))));
    }

    #[test]
    fn kept_columns_and_y_range_are_written_with_their_types() {
        let label = Field::new("label", DataType::Int64, true);
        let settings = RowSettings {
            y_range: "model".into(),
            keep: vec![label.clone()],
            keep_features: serde_json::from_str(
                r#"{"label": {"names": ["a", "b"], "_type": "ClassLabel"}}"#,
            )
            .unwrap(),
            ..test_settings("sr:2", "sr", 2.0)
        };
        let row = |id: &str, v: i64, measured: bool| OutputRow {
            measured,
            keep: vec![Arc::new(arrow::array::Int64Array::from(vec![v])) as ArrayRef],
            ..output_row(id)
        };
        let read = |bytes: Vec<u8>| {
            let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::from(bytes),
            )
            .unwrap();
            let meta = b.schema().metadata().get("huggingface").unwrap().clone();
            (b.build().unwrap().next().unwrap().unwrap(), meta)
        };
        let bytes = encode_outputs(&[row("a", 1, true), row("b", 0, false)], &settings).unwrap();
        let (batch, meta) = read(bytes);
        use arrow::array::{Array, AsArray};
        let labels = batch.column_by_name("label").unwrap();
        assert_eq!(labels.data_type(), &DataType::Int64);
        assert_eq!(
            labels
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec(),
            vec![1, 0]
        );
        let y_range = batch.column_by_name("y_range").unwrap().as_string::<i32>();
        assert_eq!(
            (y_range.value(0), y_range.is_null(1)),
            ("model", true),
            "null where y was simulated"
        );
        assert!(meta.contains(r#""_type":"ClassLabel""#), "{meta}");
        // Empty parts and errors tables carry the kept columns too.
        let empty = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(encode_outputs(&[], &settings).unwrap()),
        )
        .unwrap();
        assert_eq!(
            empty.schema().field_with_name("label").unwrap().data_type(),
            &DataType::Int64
        );
        let error = ErrorRow {
            id: "c".into(),
            row: 2,
            shard: "s".into(),
            stage: "decode".into(),
            reason: "bad".into(),
            keep: vec![Arc::new(arrow::array::Int64Array::from(vec![5])) as ArrayRef],
        };
        let (errors, _) = read(encode_errors(&[error], &settings).unwrap());
        assert_eq!(
            errors
                .column_by_name("label")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            5
        );
    }

    #[test]
    fn hugging_face_features_name_each_arrow_type_or_none_at_all() {
        use arrow::datatypes::TimeUnit;
        let feature = |t: DataType| hf_feature(&t).map(|v| v.to_string());
        let value = |d: &str| Some(format!(r#"{{"_type":"Value","dtype":"{d}"}}"#));
        assert_eq!(feature(DataType::Int8), value("int8"));
        assert_eq!(feature(DataType::UInt16), value("uint16"));
        assert_eq!(feature(DataType::LargeUtf8), value("large_string"));
        assert_eq!(
            feature(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            )),
            value("timestamp[us, tz=UTC]")
        );
        let st = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int16, true),
            Field::new("b", DataType::new_large_list(DataType::Float32, true), true),
        ]));
        assert_eq!(
            hf_feature(&st).unwrap(),
            serde_json::json!({
                "a": {"dtype": "int16", "_type": "Value"},
                "b": {"feature": {"dtype": "float32", "_type": "Value"}, "_type": "Sequence"}
            })
        );
        // A type `datasets` has no plain name for: no features rather than wrong ones.
        let schema = Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("d", DataType::Decimal128(10, 2), true),
        ]);
        assert_eq!(hf_metadata(&schema, &[], &Default::default()), None);
    }

    #[test]
    fn outputs_carry_hf_image_feature() {
        let settings = RowSettings {
            keep: vec![Field::new("label", DataType::Int64, true)],
            ..test_settings("cs:8", "cs", 8.0)
        };
        let row = OutputRow {
            id: "x".into(),
            png: vec![1, 2, 3],
            f32: None,
            mse: Some(0.1),
            psnr: None,
            ssim: None,
            lpips: None,
            residual: 0.5,
            seconds: 1.0,
            measured: true,
            keep: vec![Arc::new(arrow::array::Int64Array::from(vec![7])) as ArrayRef],
        };
        let bytes = encode_outputs(&[row], &settings).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .unwrap();
        let meta = reader
            .schema()
            .metadata()
            .get("huggingface")
            .unwrap()
            .clone();
        assert!(
            meta.contains(r#""reconstruction":{"_type":"Image"}"#),
            "{meta}"
        );
        assert!(reader
            .schema()
            .field_with_name("lpips")
            .unwrap()
            .is_nullable());
    }

    #[test]
    fn every_part_has_the_f32_column_when_asked_also_without_restored_rows() {
        let schema = |rows: &[OutputRow], write_f32: bool| {
            let settings = RowSettings {
                write_f32,
                ..test_settings("cs:4", "cs", 4.0)
            };
            let bytes = bytes::Bytes::from(encode_outputs(rows, &settings).unwrap());
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .schema()
                .clone()
        };
        let row = OutputRow {
            f32: Some(vec![0.5; 4]),
            ..output_row("a")
        };
        let full = schema(std::slice::from_ref(&row), true);
        assert_eq!(schema(&[], true), full, "an empty part has the same schema");
        assert!(full.field_with_name("reconstruction_f32").is_ok());
        assert!(schema(&[], false)
            .field_with_name("reconstruction_f32")
            .is_err());
    }
}
