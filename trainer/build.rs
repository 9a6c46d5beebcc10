//! With feature `tch`: the rpath to libtorch (as for the other crates), and the small C++ files for what tch does
//! not bind (`csrc/`: operators, the profiler), compiled against torch-sys's libtorch.
#[path = "../build/libtorch_rpath.rs"]
mod libtorch_rpath;

fn main() {
    libtorch_rpath::main();
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    // The headers beside the library, unless LIBTORCH_INCLUDE names their root, as torch-sys reads it.
    let include = match std::env::var("LIBTORCH_INCLUDE") {
        Ok(root) => std::path::Path::new(&root).join("include"),
        Err(_) => std::path::Path::new(&lib).with_file_name("include"),
    };
    // Every LibTorch since 2.7 (pip wheels and downloads) uses the C++11 ABI; torch-sys defaults to it too.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .warnings(false)
        .file("csrc/operators.cpp")
        .file("csrc/profiler.cpp")
        .compile("revgen_libtorch");
}
