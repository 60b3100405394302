//! Derive each stage kind's code version from everything its code can reach (see
//! code_closure.rs): a change to any of those files, or to the locked version of a crate they
//! use, reruns its nodes (conservatively: comment edits count too). Each version comes with
//! its manifest (file → hash, crate → version), which the engine records so `explain` can
//! name what changed.

include!("code_closure.rs");
include!("versions.rs");

fn main() {
    // Read at run time: a build script compiled in another checkout of the same target
    // directory must still look at this one.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let base = Path::new(&manifest_dir);
    for watched in ["versions.rs", "code_closure.rs", "../Cargo.lock", "templates", "../data"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    for (_, _, src) in PACKAGES {
        println!("cargo:rerun-if-changed={src}"); // cargo watches every file under it
    }
    let lock = Lock::read(&base.join("../Cargo.lock")).unwrap_or_else(|e| panic!("build.rs: {e}"));
    for (kind, roots, leaves) in KINDS {
        let reach = reach(base, &lock, roots, leaves).unwrap_or_else(|e| panic!("build.rs: {e}"));
        let manifest = manifest(base, &lock, &reach).unwrap_or_else(|e| panic!("build.rs: {e}"));
        let upper = kind.to_uppercase();
        println!("cargo:rustc-env=WORMFLOW_VERSION_{upper}={}", version_of(kind, &manifest));
        let listed: Vec<String> = manifest.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("cargo:rustc-env=WORMFLOW_CODE_{upper}={}", listed.join(";"));
    }
}
