//! Derive each stage kind's code version from its source files, so any change to what a
//! stage runs reruns its nodes (conservatively: comment edits count too). The list below
//! names, per kind, every file whose contents can change its outputs; a test checks that
//! every source file of the crate is listed for some kind or declared neutral.

use std::path::Path;

include!("versions.rs");

fn hash_path(h: &mut blake3::Hasher, path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path).expect("readable source dir").map(|e| e.expect("entry").path()).collect();
        entries.sort();
        for e in entries {
            hash_path(h, &e);
        }
    } else {
        h.update(path.to_string_lossy().as_bytes());
        h.update(&std::fs::read(path).unwrap_or_else(|e| panic!("build.rs: cannot read {}: {e}", path.display())));
    }
}

/// Make every binary of this package (unit tests included) find libtorch at run time
/// without LD_LIBRARY_PATH, and really load libtorch (CUDA included): rustc links with
/// --as-needed, which would otherwise drop libtorch.so and with it libtorch_cuda.so.
fn link_libtorch() {
    // The torch version, for provenance: torch/version.py beside torch/lib.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    let version = std::fs::read_to_string(std::path::Path::new(&lib).join("../version.py"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("__version__")).map(|l| l.split('\'').nth(1).unwrap_or("unknown").to_string()))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WORMFLOW_TORCH_VERSION={version}");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

fn main() {
    link_libtorch();
    println!("cargo:rerun-if-changed=versions.rs");
    for (kind, files) in KINDS {
        let mut h = blake3::Hasher::new();
        for f in *files {
            hash_path(&mut h, Path::new(f));
        }
        let version = &h.finalize().to_hex()[..16];
        println!("cargo:rustc-env=WORMFLOW_VERSION_{}={kind}-{version}", kind.to_uppercase());
    }
}
