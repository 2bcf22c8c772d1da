//! Deleting from the store, with the store's errors (see `crate::files`).

use std::path::Path;

use super::{StoreError, io};

/// Removes a tree, read-only folders included.
pub fn remove_tree(path: &Path) -> Result<(), StoreError> {
    crate::files::remove_tree(path).map_err(io(path))
}

/// Removes a file or a tree; nothing there is no error.
pub fn remove_path(path: &Path) -> Result<(), StoreError> {
    crate::files::remove_path(path).map_err(io(path))
}
