//! `env fix-owner`: for an unprivileged user, what root created inside a session in a project
//! mount belongs on the host to their subordinate root id, which their own tools cannot change.
//! This gives every such file in the env's writable mounts back to the user, from inside
//! envkit's user namespace where both ids are mapped.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Gives everything under `root` not owned by `uid:gid` to them; returns how many entries.
///
/// Files whose owner is outside envkit's id map (another host user's, or made with sudo) are
/// left alone: no session created them, and the namespace's root may not change them.
pub fn give_back(root: &Path, uid: u32, gid: u32) -> std::io::Result<usize> {
    let denied = |e: &std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
    let mut changed = 0;
    for entry in walkdir::WalkDir::new(root) {
        let entry = match entry {
            Ok(entry) => entry,
            // A folder of such an owner that only they may read.
            Err(e) if e.io_error().is_some_and(denied) => continue,
            Err(e) => {
                return Err(e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("a symlink loop")));
            }
        };
        let metadata = entry.path().symlink_metadata()?;
        if metadata.uid() != uid || metadata.gid() != gid {
            match std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid)) {
                Ok(()) => changed += 1,
                Err(e) if denied(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_files_are_given_back() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to make foreign files");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/file"), "x").unwrap();
        std::os::unix::fs::lchown(dir.path().join("sub/file"), Some(1234), Some(1234)).unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        assert_eq!(give_back(dir.path(), me.0, me.1).unwrap(), 1);
        assert_eq!(
            std::fs::metadata(dir.path().join("sub/file"))
                .unwrap()
                .uid(),
            me.0
        );
        assert_eq!(give_back(dir.path(), me.0, me.1).unwrap(), 0);
    }
}
