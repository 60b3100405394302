//! Reading HDF5 files (pure Rust, no libhdf5), with errors that name the file and dataset.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use hdf5_pure::{AttrValue, File};

pub struct H5 {
    file: File,
    pub path: PathBuf,
}

impl H5 {
    pub fn open(path: &Path) -> Result<H5> {
        H5::wrap(path, File::open(path))
    }

    fn wrap(path: &Path, opened: Result<File, hdf5_pure::Error>) -> Result<H5> {
        let file = opened.map_err(|e| {
            anyhow!(
                "{}: cannot read as HDF5 ({e}): the file is truncated or not valid HDF5; is it the right file and format, and was it copied whole?",
                path.display()
            )
        })?;
        // The superblock says where the file ends; a file cut short (an interrupted
        // download or copy) still opens, and only shows as groups that cannot be read.
        let sb = file.superblock();
        let ends_at = sb.base_address.get().saturating_add(sb.eof_address);
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
        if size < ends_at {
            bail!(
                "{}: the file is truncated: it has {size} bytes, but its HDF5 superblock says it ends at byte {ends_at} (an interrupted download or copy?); fetch or copy it again",
                path.display()
            );
        }
        Ok(H5 { file, path: path.to_path_buf() })
    }

    /// Open for reads of only what is asked for (metadata and the datasets read), never
    /// the whole file: NWB files hold image volumes of many gigabytes beside the traces.
    pub fn open_streaming(path: &Path) -> Result<H5> {
        H5::wrap(path, File::open_streaming(path))
    }

    /// Names of the subgroups and datasets of the group at `path` ("" = root). `None`
    /// when the group is missing or cannot be listed: hdf5-pure 0.47 cannot list an
    /// old-style (symbol-table) group that holds a soft link, though its other members
    /// still open by path.
    pub fn members(&self, path: &str) -> Option<(Vec<String>, Vec<String>)> {
        let group = if path.is_empty() { self.file.root() } else { self.file.group(path).ok()? };
        let mut groups = group.groups().ok()?;
        let mut datasets = group.datasets().ok()?;
        groups.sort();
        datasets.sort();
        Some((groups, datasets))
    }

    /// A text attribute of the group or dataset at `path` (e.g. NWB's `neurodata_type`).
    pub fn text_attr(&self, path: &str, name: &str) -> Option<String> {
        let attrs = match self.file.group(path) {
            Ok(g) => g.attrs().ok()?,
            Err(_) => self.file.dataset(path).ok()?.attrs().ok()?,
        };
        attr_text(attrs.get(name)?)
    }

    /// A numeric attribute of the dataset at `path` (e.g. a TimeSeries' `rate`).
    pub fn number_attr(&self, path: &str, name: &str) -> Option<f64> {
        let attrs = self.file.dataset(path).ok()?.attrs().ok()?;
        Some(match attrs.get(name)? {
            AttrValue::F64(v) => *v,
            AttrValue::F32(v) => *v as f64,
            AttrValue::I32(v) => *v as f64,
            AttrValue::I64(v) => *v as f64,
            AttrValue::U32(v) => *v as f64,
            AttrValue::U64(v) => *v as f64,
            _ => return None,
        })
    }

    /// Non-negative integers (indices, offsets) of any integer type.
    pub fn indices(&self, name: &str) -> Result<Vec<u64>> {
        let ds = self.file.dataset(name).map_err(|e| self.missing(name, e))?;
        ds.read_u64()
            .map_err(|e| anyhow!("{}: cannot read {name:?} as indices: {e}", self.path.display()))
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.dataset(name).is_ok()
    }

    fn missing(&self, name: &str, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow!(
            "{}: no readable dataset {name:?} ({e}); check `format` and the file's layout",
            self.path.display()
        )
    }

    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let ds = self.file.dataset(name).map_err(|e| self.missing(name, e))?;
        Ok(ds.shape().map_err(|e| self.missing(name, e))?.into_iter().map(|d| d as usize).collect())
    }

    /// A numeric dataset as f64 in row-major order, with its shape.
    pub fn f64s(&self, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
        let ds = self.file.dataset(name).map_err(|e| self.missing(name, e))?;
        let shape: Vec<usize> = ds
            .shape()
            .map_err(|e| self.missing(name, e))?
            .into_iter()
            .map(|d| d as usize)
            .collect();
        let values = ds.read_f64().map_err(|e| {
            anyhow!("{}: cannot read {name:?} as numbers: {e}", self.path.display())
        })?;
        Ok((shape, values))
    }

    /// A 2-D numeric dataset: (rows, cols, values row-major).
    pub fn matrix(&self, name: &str) -> Result<(usize, usize, Vec<f64>)> {
        let (shape, v) = self.f64s(name)?;
        match shape[..] {
            [r, c] => Ok((r, c, v)),
            _ => bail!(
                "{}: {name:?} has shape {shape:?}; expected (time, neurons)",
                self.path.display()
            ),
        }
    }

    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        let ds = self.file.dataset(name).map_err(|e| self.missing(name, e))?;
        ds.read_string()
            .map_err(|e| anyhow!("{}: cannot read {name:?} as strings: {e}", self.path.display()))
    }

    /// A root attribute as text (strings as they are, numbers formatted).
    pub fn attr(&self, name: &str) -> Option<String> {
        let attrs = self.file.root().attrs().ok()?;
        let value = attrs.get(name)?;
        Some(attr_text(value).unwrap_or_else(|| match value {
            AttrValue::I8(v) => v.to_string(),
            AttrValue::U8(v) => v.to_string(),
            AttrValue::I32(v) => v.to_string(),
            AttrValue::I64(v) => v.to_string(),
            AttrValue::F64(v) => v.to_string(),
            other => format!("{other:?}"),
        }))
    }

    pub fn attr_bool(&self, name: &str) -> Option<bool> {
        self.attr(name).map(|s| matches!(s.as_str(), "1" | "true" | "True" | "TRUE"))
    }
}

/// A string attribute's text; None for other types.
fn attr_text(value: &AttrValue) -> Option<String> {
    match value {
        AttrValue::String(s)
        | AttrValue::VarLenString(s)
        | AttrValue::AsciiString(s)
        | AttrValue::VarLenAsciiString(s) => Some(s.clone()),
        AttrValue::StringSized { value, .. } | AttrValue::AsciiStringSized { value, .. } => {
            Some(value.clone())
        }
        _ => None,
    }
}
