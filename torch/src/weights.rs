//! `weights.safetensors` with the node's origin in its `__metadata__`.
//!
//! Written by hand (about thirty lines) because the safetensors crate (and tch through it)
//! serializes `__metadata__` from a `HashMap`, whose order changes from process to process:
//! the same weights would not give the same bytes. The format is the documented one —
//! an 8-byte little-endian header length, a JSON header (here with sorted keys, padded
//! with spaces to 8 bytes), then the tensors' little-endian data in header order — and
//! tests read the files back with the safetensors crate and Python's `safetensors`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use tch::{Kind, Tensor};

/// Write float32 tensors (sorted by name) and string metadata.
pub fn write(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &[(String, String)],
) -> Result<()> {
    let mut sorted: Vec<&(String, Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = Map::new();
    header.insert(
        "__metadata__".into(),
        Value::Object(metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect()),
    );
    let mut data = Vec::new();
    for (name, t) in sorted {
        if t.kind() != Kind::Float {
            bail!("weights.safetensors: tensor {name} is {:?}, not float32", t.kind());
        }
        let values =
            Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).contiguous().flatten(0, -1))
                .with_context(|| format!("cannot read tensor {name}"))?;
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": t.size(), "data_offsets": [start, data.len()]}),
        );
    }
    let mut head = serde_json::to_vec(&Value::Object(header))?;
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let mut bytes = (head.len() as u64).to_le_bytes().to_vec();
    bytes.extend(head);
    bytes.extend(data);
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safetensors_crate_reads_weights_and_metadata_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6.]).view([2, 3]);
        let b = Tensor::from_slice(&[-0.5f32]);
        let meta = vec![
            ("wormflow.node".to_string(), "train[model=lstm]".to_string()),
            ("wormflow.key".to_string(), "ab12".to_string()),
        ];
        write(&path, &[("z.weight".into(), a), ("a.bias".into(), b)], &meta).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (_, read) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(read.metadata().as_ref().unwrap()["wormflow.node"], "train[model=lstm]");
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let z = st.tensor("z.weight").unwrap();
        assert_eq!(z.shape(), &[2, 3]);
        assert_eq!(&z.data()[4..8], &2f32.to_le_bytes());
        assert_eq!(st.tensor("a.bias").unwrap().data(), &(-0.5f32).to_le_bytes());
        // Same input, same bytes.
        let again = dir.path().join("again.safetensors");
        let a = Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6.]).view([2, 3]);
        write(
            &again,
            &[("a.bias".into(), Tensor::from_slice(&[-0.5f32])), ("z.weight".into(), a)],
            &meta,
        )
        .unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), bytes);
    }
}
