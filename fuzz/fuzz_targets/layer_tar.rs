//! Any bytes given as a layer tar (with OCI whiteouts) are extracted into a fresh root or
//! refused, never a panic; and nothing is ever written outside that root, whatever `..`,
//! absolute paths, symlinks or hard links the archive holds.
#![no_main]

use envkit::build::extract::{ExtractOptions, Extractor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let root = dir.path().join("root");
    if std::fs::create_dir(&root).is_err() {
        return;
    }
    let options = ExtractOptions {
        preserve_owners: false,
        oci_whiteouts: true,
    };
    if let Ok(extractor) = Extractor::open(&root, "fuzzed", &options) {
        let _ = extractor.extract(data);
    }
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(beside, [std::ffi::OsString::from("root")], "written outside the root");
});
