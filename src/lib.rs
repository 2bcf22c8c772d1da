//! envkit: declarative, reproducible development environments for Linux.
//!
//! # The pipeline
//! ```text
//! env.kdl --spec--> Spec --solve--> Lock (env.lock) --build--> Image --run--> a session
//! ```
//! Each stage is one module that takes only the previous stage's output type:
//! - [`spec`]: parse and validate `env.kdl`, follow peers, canonical hash.
//! - [`solve`]: Debian indexes and dependency resolution into `env.lock`.
//! - [`build`]: verified `.deb`s installed into content-addressed layers.
//! - [`run`]: namespaces, mounts, volumes, sessions and peers.
//!
//! [`ops`] chains them for each command (env file, lock, image, session or peers); [`cli`]
//! parses the `env` command line, calls one `ops` function and renders what it returns;
//! [`passthrough`] keeps the system `env` working when the binary is installed under that name.
//!
//! Shared below the stages, each with one job: [`kernel`] makes every namespace, mount,
//! `setns` and terminal call; [`debian`] reads Debian's formats (deb822, versions,
//! relationships, `Release`, apt sources, `.deb`); [`cache`] owns the download cache's layout;
//! [`fetch`] downloads and writes atomically; [`files`] removes trees; [`mirror`] picks the
//! mirror; [`snapshot`] finds the `.deb`s a mirror dropped; [`paths`] says where envkit's
//! folders are. `kernel` and `debian` import nothing else of the crate.
//!
//! # Files envkit reads and writes
//! - `env.kdl` (read): the project's environment, found in the current folder or a parent.
//! - `env.lock` (written by `env lock`, read by everything after): pinned packages.

pub mod build;
pub mod cache;
pub mod civil_time;
pub mod cli;
pub mod debian;
pub mod deploy;
pub mod fetch;
pub mod files;
pub mod kernel;
pub mod mirror;
pub mod ops;
pub mod passthrough;
pub mod paths;
pub mod registry;
pub mod run;
pub mod snapshot;
pub mod solve;
pub mod spec;
