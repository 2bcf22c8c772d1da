//! Stage 1: `env.kdl` text -> a validated [`Spec`] (with its peers) and its canonical hash.
//!
//! `parse` reads one file's KDL into a spec whose peers are still declarations, with a
//! diagnostic for every mistake; `load` finds files and follows peers (the only part that
//! touches the disk); `hash` gives the canonical form later stages key their caches on.

mod diagnostic;
mod hash;
mod kdl_reader;
mod load;
mod model;
mod parse;
pub mod rules;
mod suggest;

pub use diagnostic::{SourceFile, SpecDiagnostic, SpecError, line_column};
pub use hash::{canonical_json, spec_hash};
pub use load::{ENV_FILE_NAME, Loaded, discover, display_name, load, load_text};
pub use model::{
    Base, CopyFiles, DEFAULT_READY_TIMEOUT_SECS, Mirror, Mount, Network, Origin, Peer, Ready,
    ReadyCheck, SetupStep, Spec, TeamCache, User, Volume,
};
pub use parse::NODE_NAMES;
pub use suggest::did_you_mean;

use std::path::Path;

/// Parses and validates one env file's text without reading any other file: `peer file=`
/// declarations are checked for syntax only. For the fuzzer and for editors.
pub fn parse_str(name: &str, text: &str) -> Result<Spec, Vec<SpecDiagnostic>> {
    let file = SourceFile::new(name, text);
    let path = Path::new(name);
    let dir = path.parent().unwrap_or(Path::new(""));
    parse::parse(&file, path, dir).map(|parsed| parsed.spec)
}
