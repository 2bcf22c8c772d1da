//! Any text read as an index (a Packages file, a Release file, a relationship field) gives
//! stanzas, fields and alternatives or an error, never a panic; and a field the reader found is
//! found again by name.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for stanza in envkit::debian::deb822::stanzas(text).take(1000) {
        for (name, value) in stanza.fields() {
            assert!(stanza.get(name).is_some(), "{name} is listed but not found");
            for group in envkit::debian::relationship::groups(value) {
                for alternative in group {
                    let _ = alternative;
                }
            }
        }
    }
    let _ = envkit::debian::release::Release::parse(text);
});
