//! The hardening suite: envkit under load, faults and hostile input, judged by what a user
//! would find afterwards (every run's output right, nothing left behind). Tests that need
//! root or the mirror skip when the machine cannot give them, unless `ENVKIT_MUST_WORK=1`.
//!
//! Its tests take turns ([`exclusive`]): they count what the whole machine holds (mounts,
//! namespaces, processes), which a neighbour running at the same time would change.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test on any setup error"
)]

#[path = "../it/common.rs"]
#[allow(dead_code)]
mod common;

mod escapes;
mod faults;
mod fixture;
mod hostile;
mod load;
mod project;
mod snapshot;

use std::sync::{Mutex, MutexGuard};

use common::{must_work, network_tier};

/// Held by each test for its whole run.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Root and the mirror (the images are built from it), or a printed reason to skip (unless
/// ENVKIT_MUST_WORK=1).
pub fn can_test(what: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        assert!(!must_work(), "ENVKIT_MUST_WORK=1 but {what} needs root");
        eprintln!("skipped: {what} needs root");
        return false;
    }
    network_tier(what)
}

/// The download cache every test of both suites shares (nothing here is about downloads,
/// except where a test says so).
pub fn shared_cache() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-cache")
}
