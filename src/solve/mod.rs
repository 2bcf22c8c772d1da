//! Stage 2: `Spec` -> `Lock`: signed Debian indexes, dependency resolution, `env.lock`.
//!
//! - `openpgp`, `repository`: verified indexes into the cache (through `crate::fetch`), their
//!   formats read by `crate::debian`.
//! - `index`: the package index the resolver reads.
//! - `resolve`: apt's choices; `locker`: layers, batches, pins; `lockfile`: `env.lock`.
//! - `stage`: the entry the CLI calls.

#[doc(hidden)]
pub mod fixture;
pub mod index;
mod lazy;
pub mod locker;
pub mod lockfile;
pub mod openpgp;
pub mod repository;
pub mod resolve;
pub mod stage;
