//! Build script shared by the crates that link LibTorch (feature `tch`).
//!
//! torch-sys tells its direct dependents where libtorch lives (`DEP_TCH_LIBTORCH_LIB`). Baking that directory into
//! the binary's rpath lets `revgen --backend tch` start without LD_LIBRARY_PATH; without it the loader fails with
//! "libtorch_cuda.so: cannot open shared object file". Without the feature this script does nothing.
pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
