//! Derive each stage kind's code version from its source files, so any change to what a
//! stage runs reruns its nodes (conservatively: comment edits count too). The list below
//! names, per kind, every file whose contents can change its outputs; a test checks that
//! every source file of the crate is listed for some kind or declared neutral.

use std::path::Path;

include!("versions.rs");

fn hash_path(h: &mut blake3::Hasher, path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .expect("readable source dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for e in entries {
            hash_path(h, &e);
        }
    } else {
        h.update(path.to_string_lossy().as_bytes());
        h.update(
            &std::fs::read(path)
                .unwrap_or_else(|e| panic!("build.rs: cannot read {}: {e}", path.display())),
        );
    }
}

fn main() {
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
