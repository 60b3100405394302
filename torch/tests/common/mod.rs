//! What the PyTorch re-implementation checks share: the torch venv's python, and a model's
//! weights written with its input and output for the Python side to load.

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{nn, Tensor};

/// The torch venv's python (`$VIRTUAL_ENV/bin/python`, as `make test` sets it up).
pub fn python() -> PathBuf {
    std::env::var_os("VIRTUAL_ENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "python3".into())
}

/// `vs`'s variables under their wormflow names plus `__x`, `__mask` and `__out`.
pub fn write_case(path: &Path, vs: &nn::VarStore, x: &Tensor, mask: &Tensor, out: Tensor) {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.extend([
        ("__x".into(), x.shallow_clone()),
        ("__mask".into(), mask.shallow_clone()),
        ("__out".into(), out),
    ]);
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(k, v)| (k.as_str(), v)).collect();
    Tensor::write_safetensors(&refs, path).unwrap();
}

/// Run `script DIR` with the torch venv's python; its stdout, or a failure with both streams.
pub fn run_check(script: &str, dir: &Path) -> String {
    let out = Command::new(python())
        .arg(script)
        .arg(dir)
        .output()
        .expect("run the PyTorch re-implementation");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(out.status.success(), "wormflow and PyTorch disagree:\n{stdout}\n{stderr}");
    stdout.into_owned()
}
