//! Reading an image's merged view without mounting it: which layer's copy of a path wins, and
//! copying a folder out of the layers (a volume's first content).
//!
//! The layers follow overlayfs's rules, as the build made them: a character device 0:0 is a
//! whiteout (the path was deleted), a folder with `user.overlay.opaque` (or `trusted.`) = `y`
//! hides everything below it.

use super::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a folder could not be copied out of the layers.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Io(#[from] crate::run::FileError),
}

fn is_whiteout(metadata: &std::fs::Metadata) -> bool {
    metadata.file_type().is_char_device() && metadata.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut value = [0u8; 2];
            matches!(rustix::fs::lgetxattr(path, *name, &mut value[..]), Ok(1) if value[0] == b'y')
        })
}

/// The topmost layer's copy of `relative` (no leading `/`), unless a layer deleted it.
/// `layers` is bottom first.
pub fn find(layers: &[PathBuf], relative: &str) -> Option<PathBuf> {
    let relative = relative.trim_start_matches('/');
    for layer in layers.iter().rev() {
        let candidate = layer.join(relative);
        if let Ok(metadata) = candidate.symlink_metadata() {
            return (!is_whiteout(&metadata)).then_some(candidate);
        }
        // An opaque folder on the way hides the layers below.
        let mut ancestor = Path::new(relative).parent();
        while let Some(dir) = ancestor.filter(|d| !d.as_os_str().is_empty()) {
            if is_opaque(&layer.join(dir)) {
                return None;
            }
            ancestor = dir.parent();
        }
    }
    None
}

/// Copies the merged content of the folder `relative` from `layers` (bottom first) into
/// `target` (which must not exist). Returns false when the image has nothing there.
pub fn copy_merged(layers: &[PathBuf], relative: &str, target: &Path) -> Result<bool, CopyError> {
    let relative = relative.trim_start_matches('/');
    let mut found = false;
    for layer in layers {
        let source = layer.join(relative);
        let Ok(metadata) = source.symlink_metadata() else {
            continue;
        };
        if is_whiteout(&metadata) || !metadata.is_dir() {
            if target.exists() {
                crate::files::remove_tree(target).map_err(io("remove", target))?;
            }
            found = false;
            continue;
        }
        if found && is_opaque(&source) {
            crate::files::remove_tree(target).map_err(io("remove", target))?;
        }
        copy_layer(&source, target)?;
        found = true;
    }
    Ok(found)
}

/// Lays one layer's folder over `to`: its entries replace what is there, its whiteouts delete.
fn copy_layer(from: &Path, to: &Path) -> Result<(), CopyError> {
    for entry in walkdir::WalkDir::new(from).sort_by_file_name() {
        let entry = entry.map_err(|e| crate::run::FileError {
            what: "read",
            path: e.path().unwrap_or(from).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("a symlink loop")),
        })?;
        let relative = entry.path().strip_prefix(from).unwrap_or(Path::new(""));
        let target = to.join(relative);
        let metadata = entry
            .path()
            .symlink_metadata()
            .map_err(io("read", entry.path()))?;
        let existing = target.symlink_metadata().ok();
        if is_whiteout(&metadata) {
            if existing.is_some() {
                remove(&target)?;
            }
            continue;
        }
        let kind = metadata.file_type();
        if kind.is_dir() {
            match existing {
                Some(m) if m.is_dir() => {
                    if is_opaque(entry.path()) && !relative.as_os_str().is_empty() {
                        remove(&target)?;
                        std::fs::create_dir(&target).map_err(io("create", &target))?;
                    }
                }
                Some(_) => {
                    remove(&target)?;
                    std::fs::create_dir(&target).map_err(io("create", &target))?;
                }
                None => std::fs::create_dir(&target).map_err(io("create", &target))?,
            }
        } else {
            if existing.is_some() {
                remove(&target)?;
            }
            if kind.is_symlink() {
                let link = std::fs::read_link(entry.path()).map_err(io("read", entry.path()))?;
                std::os::unix::fs::symlink(link, &target).map_err(io("create", &target))?;
            } else if kind.is_file() {
                std::fs::copy(entry.path(), &target).map_err(io("copy", &target))?;
            } else {
                // Sockets, fifos and devices have no place in a volume.
                continue;
            }
        }
        std::os::unix::fs::lchown(&target, Some(metadata.uid()), Some(metadata.gid()))
            .map_err(io("give", &target))?;
        if !kind.is_symlink() {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(metadata.mode()))
                .map_err(io("set the mode of", &target))?;
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), CopyError> {
    let metadata = path.symlink_metadata().map_err(io("read", path))?;
    if metadata.is_dir() {
        crate::files::remove_tree(path).map_err(io("remove", path))?;
    } else {
        std::fs::remove_file(path).map_err(io("remove", path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_layer_wins_and_whiteouts_delete() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "lower").unwrap();
        std::fs::write(upper.join("etc/passwd"), "upper").unwrap();
        std::fs::write(lower.join("etc/motd"), "hello").unwrap();
        let layers = vec![lower.clone(), upper.clone()];
        assert_eq!(find(&layers, "/etc/passwd"), Some(upper.join("etc/passwd")));
        assert_eq!(find(&layers, "etc/motd"), Some(lower.join("etc/motd")));
        assert_eq!(find(&layers, "etc/nothing"), None);
        if nix::unistd::geteuid().is_root() {
            nix::sys::stat::mknod(
                &upper.join("etc/motd"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
            assert_eq!(find(&layers, "etc/motd"), None);
        }
    }

    #[test]
    fn a_folder_is_copied_merged_from_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
        std::fs::create_dir_all(lower.join("var/lib/db/old")).unwrap();
        std::fs::create_dir_all(upper.join("var/lib/db")).unwrap();
        std::fs::write(lower.join("var/lib/db/a"), "from lower").unwrap();
        std::fs::write(lower.join("var/lib/db/old/x"), "x").unwrap();
        std::fs::write(upper.join("var/lib/db/b"), "from upper").unwrap();
        std::fs::write(lower.join("var/lib/db/c"), "old").unwrap();
        std::fs::write(upper.join("var/lib/db/c"), "new").unwrap();
        let target = dir.path().join("volume");
        let layers = vec![lower, upper];
        assert!(copy_merged(&layers, "/var/lib/db", &target).unwrap());
        assert_eq!(
            std::fs::read_to_string(target.join("a")).unwrap(),
            "from lower"
        );
        assert_eq!(
            std::fs::read_to_string(target.join("b")).unwrap(),
            "from upper"
        );
        assert_eq!(std::fs::read_to_string(target.join("c")).unwrap(), "new");
        assert!(target.join("old/x").exists());
        assert!(!copy_merged(&layers, "/srv/none", &dir.path().join("v2")).unwrap());
    }
}
