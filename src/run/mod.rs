//! Stage 4: `Image` + `Spec` -> a running session: namespaces, mounts, volumes, the shell.
//!
//! - [`session`]: one session's overlay root, identity files, binds, environment, and the
//!   sandbox that runs it (shared with build, in `crate::kernel::sandbox`).
//! - [`layers`]: the image's merged view read without mounting it.
//! - [`volumes`]: named folders that outlive sessions.
//! - [`terminal`]: the pty `env shell` relays.
//! - [`ownership`]: taking back files root created in a mount.

pub mod image_user;
pub mod layers;
pub mod ownership;
pub mod peers;
pub mod session;
pub mod terminal;
pub mod volumes;

pub use session::{Background, RunError, SessionOutcome, SessionRequest};

use std::path::{Path, PathBuf};

/// A file operation that failed, naming the file: what every part of the run stage reports.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} `{}`", path.display())]
pub struct FileError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Names the file an I/O error happened on: `.map_err(io("read", path))`.
fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError + use<> {
    let path = path.to_path_buf();
    move |source| FileError { what, path, source }
}
