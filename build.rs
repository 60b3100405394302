//! Make the wormflow binary (and the tests) find libtorch at run time without
//! LD_LIBRARY_PATH, and really load libtorch (CUDA included). See stages/link_libtorch.rs.

include!("stages/link_libtorch.rs");

fn main() {
    println!("cargo:rerun-if-changed=stages/link_libtorch.rs");
    link_libtorch();
}
