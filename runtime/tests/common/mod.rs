//! What the runtime's integration tests share.

use std::path::PathBuf;

/// The repository's root, from the package directory cargo gives the running test. The path baked
/// in at compile time (`env!`) is only the fallback: a build cache shared by two checkouts can
/// reuse a test binary compiled in the other one, whose directory may be gone.
pub fn repo_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package.join("..")
}

/// The bytes of a file PyTorch's exporter wrote (`scripts/torch-fixtures.py`).
#[allow(dead_code)] // not every test binary reads them
pub fn torch_fixture(file: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("runtime/tests/fixtures/torch").join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}
