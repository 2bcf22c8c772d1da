//! File operations every stage shares: removing a tree that holds read-only folders (layers,
//! sessions' scratch, volumes seeded from layers), which `remove_dir_all` alone cannot empty.

use std::path::Path;

/// Removes a tree, first making read-only directories writable.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return Ok(());
    }
    // Breadth first, opening each directory before listing it.
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            pending.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    std::fs::remove_dir_all(path)
}

/// Removes a file or a tree (read-only folders included); nothing there is no error.
pub fn remove_path(path: &Path) -> std::io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => remove_tree(path),
        Ok(_) => std::fs::remove_file(path),
        Err(error) => Err(error),
    };
    match result {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_directories_are_removed_too() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t/sub");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("f"), b"x").unwrap();
        std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&dir.path().join("t")).unwrap();
        assert!(!dir.path().join("t").exists());
    }

    #[test]
    fn removing_what_is_not_there_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        remove_path(&dir.path().join("missing")).unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        remove_path(&dir.path().join("file")).unwrap();
        assert!(!dir.path().join("file").exists());
    }
}
