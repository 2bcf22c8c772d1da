//! Stage 2: `Spec` -> `Lock`: signed Debian indexes, dependency resolution, `env.lock`.
//!
//! - `openpgp`, `release`, `repository`: verified indexes into the cache (through `crate::fetch`).
//! - `deb822`, `version`, `index`: the package index the resolver reads.
//! - `resolve`: apt's choices; `locker`: layers, batches, pins; `lockfile`: `env.lock`.
//! - `stage`: the entry the CLI calls.

pub mod deb822;
#[doc(hidden)]
pub mod fixture;
pub mod index;
mod lazy;
pub mod locker;
pub mod lockfile;
pub mod openpgp;
pub mod release;
pub mod repository;
pub mod resolve;
pub mod stage;
pub mod version;
