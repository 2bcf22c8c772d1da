//! `env run -- CMD...`, `env shell` and `env fix-owner`.

use std::path::Path;

use super::{Failure, Locking, project};
use crate::ops::{self, session::Entry};

/// Enters the environment: `command` empty means the env's shell.
pub fn enter(
    file: Option<&Path>,
    root: bool,
    command: Vec<String>,
    locking: &Locking,
) -> Result<(), Failure> {
    let project = project(file)?;
    let ended = ops::session::enter(
        &project,
        Entry {
            root,
            command,
            lock_mode: locking.mode(),
        },
    )?;
    for (mount, count) in &ended.foreign_files {
        eprintln!(
            "warning: root created {count} file(s) in {mount}; on the host they belong to your \
             subordinate root id, not to you\n  hint: `env fix-owner` gives them back"
        );
    }
    match ended.status {
        0 => Ok(()),
        code => Err(Failure::Exited(u8::try_from(code).unwrap_or(1))),
    }
}

/// `env fix-owner`.
pub fn fix_owner(file: Option<&Path>) -> Result<(), Failure> {
    let mut total = 0;
    let user = ops::session::fix_owner(&project(file)?, &mut |user, folder, changed| {
        if changed > 0 {
            eprintln!(
                "gave {changed} file(s) in {} back to {user}",
                folder.display()
            );
        }
        total += changed;
    })?;
    if total == 0 {
        eprintln!("every file in the env's mounts already belongs to {user}");
    }
    Ok(())
}
