//! Build script shared by every crate whose binaries or tests load libtorch.
//!
//! tch links libtorch dynamically but leaves finding it at run time to the user. This
//! script bakes the library folder into the binaries' run path so that `prescale-*`
//! binaries and test executables start without anyone exporting `LD_LIBRARY_PATH`.
//! The path is canonicalised: libtorch's own `$ORIGIN`-relative run paths (to the CUDA
//! runtime shipped beside it in site-packages) only resolve from the real location.

use std::path::PathBuf;

pub fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    let lib = std::env::var_os("LIBTORCH_LIB")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LIBTORCH").map(PathBuf::from))
        .map(|p| p.join("lib"));
    match lib.and_then(|p| p.canonicalize().ok()) {
        Some(dir) => println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display()),
        None => println!("cargo:warning=libtorch not found (run `make setup`); binaries will need LD_LIBRARY_PATH"),
    }
}
