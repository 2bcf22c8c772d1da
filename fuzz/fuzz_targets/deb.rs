//! Any bytes given as a `.deb` are read (members, control file, data.tar) or refused with an
//! error naming the package, never a panic, and reading stops within bounds of memory.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("fuzzed.deb");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(deb) = envkit::debian::deb::Deb::open(&path, "fuzzed") else {
        return;
    };
    let _ = deb.control_fields();
    if let Ok(reader) = deb.data() {
        let mut archive = tar::Archive::new(reader.take(64 << 20));
        if let Ok(entries) = archive.entries() {
            for entry in entries.take(10_000) {
                let Ok(mut entry) = entry else { break };
                let _ = std::io::copy(&mut entry, &mut std::io::sink());
            }
        }
    }
});
