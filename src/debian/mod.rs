//! Debian's formats, read the way dpkg and apt read them: deb822 stanzas, versions and
//! relationships, `Release` files, apt's sources, and `.deb` archives.
//!
//! Only formats live here: what to fetch, what to trust and where to write is decided by the
//! stages that use them (`solve` and `build`). So this module imports nothing else of the
//! crate, and every other module may import it.
//!
//! - [`deb822`]: stanzas of `Field: value` lines, borrowed from the text.
//! - [`version`]: versions compared exactly as dpkg compares them, and version relations.
//! - [`relationship`]: `Depends`-style fields, groups of alternatives.
//! - [`release`]: a suite's `Release` file: its date and the checksums of its indexes.
//! - [`sources`]: apt's one-line and deb822 sources, and where apt keeps them.
//! - [`deb`]: `.deb` files: `ar` members, their compression, the control file, `data.tar`.

pub mod deb;
pub mod deb822;
pub mod relationship;
pub mod release;
pub mod sources;
#[doc(hidden)]
pub mod testing;
pub mod version;
