//! A reader for MATLAB v5 MAT-files (what `scipy.io.loadmat` reads): numeric arrays, char
//! arrays, cell arrays and structs, compressed or not, little-endian. Just what the
//! published worm datasets use; sparse and object arrays are refused by name.

use std::io::Read;

use anyhow::{bail, Context, Result};

/// A MATLAB value. Numeric data are converted to f64, in MATLAB's column-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Numeric { dims: Vec<usize>, data: Vec<f64> },
    Char(String),
    Cell { dims: Vec<usize>, items: Vec<Value> },
    Struct { fields: Vec<(String, Vec<Value>)> },
}

impl Value {
    pub fn numbers(&self) -> Option<&[f64]> {
        match self {
            Value::Numeric { data, .. } => Some(data),
            _ => None,
        }
    }

    pub fn cell(&self) -> Option<&[Value]> {
        match self {
            Value::Cell { items, .. } => Some(items),
            _ => None,
        }
    }

    /// A string: a char array, or a 1-element cell holding one.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Char(s) => Some(s.clone()),
            Value::Cell { items, .. } if items.len() == 1 => items[0].text(),
            _ => None,
        }
    }
}

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;

const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_CHAR: u8 = 4;

/// The top-level variables of a MAT-file, in file order.
pub fn parse(bytes: &[u8]) -> Result<Vec<(String, Value)>> {
    if bytes.len() < 128 || &bytes[126..128] != b"IM" {
        bail!("not a little-endian MATLAB v5 MAT-file (for v7.3 files use format \"zimmer-mat\")");
    }
    let mut vars = Vec::new();
    let mut pos = 128;
    while pos + 8 <= bytes.len() {
        let (ty, data, next) = element(bytes, pos)?;
        pos = next;
        let owned;
        let (ty, data) = if ty == MI_COMPRESSED {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(data)
                .read_to_end(&mut out)
                .context("damaged compressed variable")?;
            owned = out;
            let (t, d, _) = element(&owned, 0)?;
            (t, d)
        } else {
            (ty, data)
        };
        if ty == MI_MATRIX {
            vars.push(matrix(data)?);
        }
    }
    Ok(vars)
}

/// One data element at `pos`: (type, payload, position of the next element).
fn element(bytes: &[u8], pos: usize) -> Result<(u32, &[u8], usize)> {
    let word = u32::from_le_bytes(
        bytes.get(pos..pos + 4).context("truncated MAT-file")?.try_into().expect("4 bytes"),
    );
    if word >> 16 != 0 {
        // Small element: type and size in one word, data in the next four bytes.
        let size = (word >> 16) as usize;
        let data = bytes.get(pos + 4..pos + 4 + size).context("truncated MAT-file")?;
        return Ok((word & 0xffff, data, pos + 8));
    }
    let size = u32::from_le_bytes(
        bytes.get(pos + 4..pos + 8).context("truncated MAT-file")?.try_into().expect("4 bytes"),
    ) as usize;
    let data = bytes.get(pos + 8..pos + 8 + size).context("truncated MAT-file")?;
    let padded = if word == MI_COMPRESSED { size } else { size.div_ceil(8) * 8 };
    Ok((word, data, pos + 8 + padded))
}

fn numbers(ty: u32, d: &[u8]) -> Result<Vec<f64>> {
    macro_rules! conv {
        ($t:ty) => {
            d.chunks_exact(std::mem::size_of::<$t>())
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("sized")) as f64)
                .collect()
        };
    }
    Ok(match ty {
        MI_INT8 => d.iter().map(|&b| b as i8 as f64).collect(),
        MI_UINT8 | MI_UTF8 => d.iter().map(|&b| b as f64).collect(),
        MI_INT16 => conv!(i16),
        MI_UINT16 | MI_UTF16 => conv!(u16),
        MI_INT32 => conv!(i32),
        MI_UINT32 => conv!(u32),
        MI_SINGLE => conv!(f32),
        MI_DOUBLE => conv!(f64),
        MI_INT64 => conv!(i64),
        MI_UINT64 => conv!(u64),
        other => bail!("unsupported MAT data type {other}"),
    })
}

/// (name, value) of a miMATRIX payload.
fn matrix(d: &[u8]) -> Result<(String, Value)> {
    if d.is_empty() {
        return Ok((String::new(), Value::Numeric { dims: vec![0, 0], data: Vec::new() }));
    }
    let (_, flags, p) = element(d, 0)?;
    let class = *flags.first().context("array flags")?;
    let (_, dims_raw, p) = element(d, p)?;
    let dims: Vec<usize> = dims_raw
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().expect("4")) as usize)
        .collect();
    let (_, name, mut p) = element(d, p)?;
    let name = String::from_utf8_lossy(name).to_string();
    let count: usize = dims.iter().product();
    let value = match class {
        MX_CELL => {
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let (_, sub, next) = element(d, p)?;
                items.push(matrix(sub)?.1);
                p = next;
            }
            Value::Cell { dims, items }
        }
        MX_STRUCT => {
            let (_, len, p2) = element(d, p)?;
            let field_len = i32::from_le_bytes(
                len.get(..4).context("field name length")?.try_into().expect("4"),
            ) as usize;
            let (_, names, mut p3) = element(d, p2)?;
            let names: Vec<String> = names
                .chunks(field_len.max(1))
                .map(|c| String::from_utf8_lossy(c).trim_end_matches('\0').to_string())
                .collect();
            let mut fields: Vec<(String, Vec<Value>)> =
                names.into_iter().map(|n| (n, Vec::new())).collect();
            for _ in 0..count {
                for f in fields.iter_mut() {
                    let (_, sub, next) = element(d, p3)?;
                    f.1.push(matrix(sub)?.1);
                    p3 = next;
                }
            }
            Value::Struct { fields }
        }
        MX_CHAR => {
            let (ty, data, _) = element(d, p)?;
            let units: Vec<u16> = numbers(ty, data)?.into_iter().map(|v| v as u16).collect();
            Value::Char(String::from_utf16_lossy(&units))
        }
        6..=15 => {
            let (ty, data, _) = element(d, p)?;
            Value::Numeric { dims, data: numbers(ty, data)? }
        }
        other => bail!("variable {name:?}: MATLAB class {other} (sparse/object) is not supported"),
    };
    Ok((name, value))
}
