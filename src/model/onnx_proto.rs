//! Just enough of the ONNX protobuf format to check a graph against its card: IR
//! version, opsets, graph inputs/outputs (element type and shape), metadata, whether
//! any initializer lives in external data, and which ops outside the default domain the
//! graph calls and the file defines as functions. Everything else is skipped.
//!
//! Reading the file ourselves keeps [`super::ModelFolder::open`] and [`super::inspect`]
//! free of ONNX Runtime: they check exactly the bytes whose sha256 the card records.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

/// `TensorProto.DataType.FLOAT`.
pub const ELEM_FLOAT: i32 = 1;

/// A dimension as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoDim {
    Fixed(i64),
    /// `dim_param` (empty when the dimension is unnamed and unknown).
    Symbol(String),
}

/// A graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueInfo {
    pub name: String,
    /// `TensorProto.DataType`; 0 when the value is not a tensor.
    pub elem_type: i32,
    /// None when the shape is not recorded at all.
    pub shape: Option<Vec<ProtoDim>>,
}

/// What adps reads from a `ModelProto`.
#[derive(Debug, Clone, Default)]
pub struct OnnxInfo {
    pub ir_version: i64,
    /// domain → opset version ("" is the default domain).
    pub opsets: BTreeMap<String, i64>,
    pub producer: String,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub metadata: BTreeMap<String, String>,
    /// Names of initializers stored outside the file.
    pub external_initializers: Vec<String>,
    /// (domain, op) of the graph's nodes outside the default domain.
    pub custom_ops: std::collections::BTreeSet<(String, String)>,
    /// (domain, name) of the model-local functions the file defines.
    pub functions: std::collections::BTreeSet<(String, String)>,
}

pub fn parse_model(bytes: &[u8]) -> Result<OnnxInfo> {
    let mut info = OnnxInfo::default();
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(v)) => info.ir_version = v as i64,
            (2, Value::Bytes(b)) => info.producer = string(b)?,
            (7, Value::Bytes(b)) => parse_graph(b, &mut info).context("graph")?,
            (8, Value::Bytes(b)) => {
                let (mut domain, mut version) = (String::new(), 0);
                for f in Fields(b) {
                    match f? {
                        (1, Value::Bytes(d)) => domain = string(d)?,
                        (2, Value::Varint(v)) => version = v as i64,
                        _ => {}
                    }
                }
                info.opsets.insert(domain, version);
            }
            // FunctionProto: name = 1, domain = 10.
            (25, Value::Bytes(b)) => {
                let (mut name, mut domain) = (String::new(), String::new());
                for f in Fields(b) {
                    match f? {
                        (1, Value::Bytes(n)) => name = string(n)?,
                        (10, Value::Bytes(d)) => domain = string(d)?,
                        _ => {}
                    }
                }
                info.functions.insert((domain, name));
            }
            (14, Value::Bytes(b)) => {
                let (mut key, mut value) = (String::new(), String::new());
                for f in Fields(b) {
                    match f? {
                        (1, Value::Bytes(k)) => key = string(k)?,
                        (2, Value::Bytes(v)) => value = string(v)?,
                        _ => {}
                    }
                }
                info.metadata.insert(key, value);
            }
            _ => {}
        }
    }
    if info.ir_version == 0 {
        bail!("not an ONNX model (no ir_version)");
    }
    Ok(info)
}

fn parse_graph(bytes: &[u8], info: &mut OnnxInfo) -> Result<()> {
    for field in Fields(bytes) {
        match field? {
            // NodeProto: op_type = 4, domain = 7.
            (1, Value::Bytes(b)) => {
                let (mut op, mut domain) = (String::new(), String::new());
                for f in Fields(b) {
                    match f? {
                        (4, Value::Bytes(o)) => op = string(o)?,
                        (7, Value::Bytes(d)) => domain = string(d)?,
                        _ => {}
                    }
                }
                if !matches!(domain.as_str(), "" | "ai.onnx") {
                    info.custom_ops.insert((domain, op));
                }
            }
            (5, Value::Bytes(b)) => {
                // TensorProto: name = 8, data_location = 14 (EXTERNAL = 1).
                let (mut name, mut external) = (String::new(), false);
                for f in Fields(b) {
                    match f? {
                        (8, Value::Bytes(n)) => name = string(n)?,
                        (14, Value::Varint(1)) => external = true,
                        _ => {}
                    }
                }
                if external {
                    info.external_initializers.push(name);
                }
            }
            (11, Value::Bytes(b)) => info.inputs.push(parse_value_info(b)?),
            (12, Value::Bytes(b)) => info.outputs.push(parse_value_info(b)?),
            _ => {}
        }
    }
    Ok(())
}

fn parse_value_info(bytes: &[u8]) -> Result<ValueInfo> {
    let mut v = ValueInfo {
        name: String::new(),
        elem_type: 0,
        shape: None,
    };
    for field in Fields(bytes) {
        match field? {
            (1, Value::Bytes(b)) => v.name = string(b)?,
            // TypeProto.tensor_type = 1: elem_type = 1, shape = 2.
            (2, Value::Bytes(ty)) => {
                for f in Fields(ty) {
                    if let (1, Value::Bytes(tensor)) = f? {
                        for t in Fields(tensor) {
                            match t? {
                                (1, Value::Varint(e)) => v.elem_type = e as i32,
                                (2, Value::Bytes(shape)) => v.shape = Some(parse_shape(shape)?),
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(v)
}

fn parse_shape(bytes: &[u8]) -> Result<Vec<ProtoDim>> {
    let mut dims = Vec::new();
    for field in Fields(bytes) {
        if let (1, Value::Bytes(dim)) = field? {
            let mut d = ProtoDim::Symbol(String::new());
            for f in Fields(dim) {
                match f? {
                    (1, Value::Varint(n)) => d = ProtoDim::Fixed(n as i64),
                    (2, Value::Bytes(p)) => d = ProtoDim::Symbol(string(p)?),
                    _ => {}
                }
            }
            dims.push(d);
        }
    }
    Ok(dims)
}

fn string(b: &[u8]) -> Result<String> {
    Ok(std::str::from_utf8(b)
        .context("invalid UTF-8 string")?
        .to_owned())
}

/// A protobuf field value (fixed-width values are skipped but reported).
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterator over the (field number, value) pairs of one message.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = self.field();
        if item.is_err() {
            self.0 = &[]; // stop after the first error
        }
        Some(item)
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<(u64, Value<'a>)> {
        let key = self.varint()?;
        let (number, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).context("length overflows")?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => bail!("truncated or corrupt protobuf (wire type {wire} for field {number})"),
        };
        Ok((number, value))
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some((&b, rest)) = self.0.split_first() else {
                bail!("truncated or corrupt protobuf (varint)");
            };
            self.0 = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("truncated or corrupt protobuf (varint too long)")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.0.len() {
            bail!(
                "truncated or corrupt protobuf (field of {n} bytes, {} left)",
                self.0.len()
            );
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_model(b"").is_err());
        assert!(parse_model(b"not an onnx file at all \xff\xff\xff").is_err());
        // A length prefix running past the end.
        assert!(parse_model(&[0x3a, 0x7f, 0x01]).is_err());
    }

    #[test]
    fn reads_fields_of_a_hand_made_model() {
        // ir_version = 10, opset_import { domain "" version 18 }, metadata { "k": "v" }.
        let bytes = [
            0x08, 10, 0x42, 0x02, 0x10, 18, 0x72, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v',
        ];
        let info = parse_model(&bytes).unwrap();
        assert_eq!(info.ir_version, 10);
        assert_eq!(info.opsets.get(""), Some(&18));
        assert_eq!(info.metadata.get("k").map(String::as_str), Some("v"));
    }

    /// A length-delimited protobuf field.
    fn field(number: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn reads_the_ops_outside_the_default_domain_and_the_functions() {
        // graph { node { op_type "Relu" } node { op_type "G", domain "adps" } },
        // functions { name "G", domain "adps" }, ir_version 10.
        let node = |op: &[u8], domain: &[u8]| {
            let mut n = field(4, op);
            if !domain.is_empty() {
                n.extend(field(7, domain));
            }
            field(1, &n)
        };
        let graph = [node(b"Relu", b""), node(b"G", b"adps")].concat();
        let mut function = field(1, b"G");
        function.extend(field(10, b"adps"));
        let mut bytes = vec![0x08, 10];
        bytes.extend(field(7, &graph));
        bytes.extend([(25 << 3) | 2, 1, function.len() as u8]);
        bytes.extend(function);
        let info = parse_model(&bytes).unwrap();
        let pair = ("adps".to_string(), "G".to_string());
        assert_eq!(
            info.custom_ops.into_iter().collect::<Vec<_>>(),
            vec![pair.clone()]
        );
        assert_eq!(info.functions.into_iter().collect::<Vec<_>>(), vec![pair]);
    }
}
