//! Stage 4: `Image` + `Spec` -> a running session: namespaces, mounts, volumes, the shell.
//!
//! - [`session`]: one session's overlay root, identity files, binds, environment, and the
//!   sandbox that runs it (shared with build, in `crate::kernel::sandbox`).
//! - [`layers`]: the image's merged view read without mounting it.
//! - [`volumes`]: named folders that outlive sessions.
//! - [`terminal`]: the pty `env shell` relays.
//! - [`ownership`]: taking back files root created in a mount.

pub mod layers;
pub mod ownership;
pub mod peers;
pub mod session;
pub mod terminal;
pub mod volumes;

pub use session::{Background, RunError, SessionOutcome, SessionRequest};
