//! Where a project's peers keep their files (`<runtime>/peers/<project>/<peer>/`), and the lock
//! files that make commands on one project's peers take turns.

use std::path::{Path, PathBuf};

use super::PeerError;
use crate::run::io;

/// The folder of one project's peers.
pub fn project_dir(runtime_dir: &Path, project: &Path) -> PathBuf {
    let key = crate::run::volumes::project_folder(Path::new("/"), project);
    runtime_dir
        .join("peers")
        .join(key.file_name().unwrap_or_default())
}

/// The folder of one peer.
pub fn peer_dir(runtime_dir: &Path, project: &Path, peer: &str) -> PathBuf {
    project_dir(runtime_dir, project).join(peer)
}

/// An exclusive lock on the file at `path` (made, with its folder, when missing), held until
/// the file is dropped; waits for another holder.
pub fn hold_lock(path: &Path) -> Result<std::fs::File, PeerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io("open", path))?;
    file.lock().map_err(io("lock", path))?;
    Ok(file)
}
