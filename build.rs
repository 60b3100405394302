//! Make the wormflow binary (and the tests) find libtorch at run time without
//! LD_LIBRARY_PATH: embed an rpath to the libtorch that torch-sys built against, and keep
//! libtorch.so itself linked (rustc's --as-needed would drop it, and with it
//! libtorch_cuda.so, so CUDA would never be seen).

fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
