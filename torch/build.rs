//! Link libtorch into the helper (and this crate's tests and benches).

/// Make every binary of the package (tests included) find libtorch at run time
/// without LD_LIBRARY_PATH, and really load libtorch (CUDA included): rustc links with
/// --as-needed, which would otherwise drop libtorch.so and with it libtorch_cuda.so.
fn link_libtorch() {
    // The torch version, for provenance: torch/version.py beside torch/lib.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    let version = std::fs::read_to_string(std::path::Path::new(&lib).join("../version.py"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("__version__"))
                .map(|l| l.split('\'').nth(1).unwrap_or("unknown").to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WORMFLOW_TORCH_VERSION={version}");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// The precision shim (shim/precision.cpp): libtorch's TF32 switch, which tch does not
/// wrap. Compiled against the same libtorch headers and C++ ABI as torch-sys.
fn build_shim() {
    println!("cargo:rerun-if-changed=shim/precision.cpp");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    let include = std::path::Path::new(&lib).join("../include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("shim/precision.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag_if_supported("-w")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .compile("wormflow_precision");
}

fn main() {
    link_libtorch();
    build_shim();
}
