//! Any bytes given as an env file must produce a spec or diagnostics, never a panic; and a
//! spec that parses must hash, and render its diagnostics, without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match envkit::spec::parse_str("env.kdl", text) {
        Ok(spec) => {
            let _ = envkit::spec::spec_hash(&spec);
        }
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                let mut out = String::new();
                let handler = miette::GraphicalReportHandler::new_themed(
                    miette::GraphicalTheme::unicode_nocolor(),
                );
                let _ = handler.render_report(&mut out, diagnostic);
                let _ = diagnostic.line_column();
            }
        }
    }
});
