//! Named volumes: one folder per (project, name) in the data dir, made on first use and kept
//! until `env volume rm` or `env down --volumes`. Rebuilds and `env gc` never touch them.
//!
//! A project is its env file's folder (canonical path); its volumes live in
//! `<data>/volumes/<folder-name>-<blake3(path)[..12]>/<name>`, with `project.json` naming the
//! folder so `env volume ls` can say whose they are.
//!
//! On first use a volume is filled from what the image has at its path, as container engines
//! do: a database package creates its cluster at install time, and that is what its volume
//! must start with.

use super::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Io(#[from] crate::run::FileError),
    #[error("this project has no volume `{name}`")]
    Unknown { name: String, known: Vec<String> },
    #[error(transparent)]
    Copy(#[from] super::layers::CopyError),
}

/// Which project a volume belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRecord {
    /// The project's folder.
    pub path: PathBuf,
}

/// The folder holding one project's volumes.
pub fn project_folder(volumes_dir: &Path, project_dir: &Path) -> PathBuf {
    let canonical = project_dir
        .canonicalize()
        .unwrap_or_else(|_| project_dir.to_path_buf());
    let name = canonical
        .file_name()
        .map(|n| crate::spec::rules::sanitize_host_name(&n.to_string_lossy()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "project".into());
    let hash = blake3::hash(canonical.as_os_str().as_encoded_bytes());
    volumes_dir.join(format!("{name}-{}", &hash.to_hex()[..12]))
}

/// Makes sure the volume exists: on first use filled with what the image (`layers`, bottom
/// first) has at `at`, else an empty folder owned by `owner`.
pub fn prepare(
    volumes_dir: &Path,
    project_dir: &Path,
    name: &str,
    layers: &[PathBuf],
    at: &str,
    owner: (u32, u32),
) -> Result<PathBuf, VolumeError> {
    let folder = project_folder(volumes_dir, project_dir);
    let path = folder.join(name);
    if path.is_dir() {
        return Ok(path);
    }
    std::fs::create_dir_all(&folder).map_err(io("create", &folder))?;
    let record = folder.join("project.json");
    if !record.exists() {
        let canonical = project_dir
            .canonicalize()
            .unwrap_or_else(|_| project_dir.to_path_buf());
        let bytes = serde_json::to_vec_pretty(&ProjectRecord { path: canonical })
            .map_err(|e| std::io::Error::other(e.to_string()))
            .map_err(io("write", &record))?;
        crate::fetch::write_bytes_atomically(&record, &bytes)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .map_err(io("write", &record))?;
    }
    // Filled under a temporary name, so an interrupted first use starts over.
    let partial = folder.join(format!(".{name}.partial"));
    if partial.symlink_metadata().is_ok() {
        crate::files::remove_tree(&partial).map_err(io("remove", &partial))?;
    }
    if !super::layers::copy_merged(layers, at, &partial)? {
        std::fs::create_dir(&partial).map_err(io("create", &partial))?;
        std::os::unix::fs::lchown(&partial, Some(owner.0), Some(owner.1))
            .map_err(io("give", &partial))?;
    }
    std::fs::rename(&partial, &path).map_err(io("create", &path))?;
    Ok(path)
}

/// One volume, as `env volume ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    pub name: String,
    /// The project's folder, when known.
    pub project: Option<PathBuf>,
    pub path: PathBuf,
    pub size: u64,
}

/// Every volume of every project, sorted by project and name.
pub fn list(volumes_dir: &Path) -> Result<Vec<VolumeInfo>, VolumeError> {
    let mut volumes = Vec::new();
    let Ok(projects) = std::fs::read_dir(volumes_dir) else {
        return Ok(volumes);
    };
    for project in projects.flatten() {
        let folder = project.path();
        if !folder.is_dir() {
            continue;
        }
        let record: Option<ProjectRecord> = std::fs::read(folder.join("project.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        for volume in std::fs::read_dir(&folder)
            .map_err(io("read", &folder))?
            .flatten()
        {
            let name = volume.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !volume.path().is_dir() {
                continue;
            }
            volumes.push(VolumeInfo {
                size: tree_size(&volume.path()),
                name,
                project: record.as_ref().map(|r| r.path.clone()),
                path: volume.path(),
            });
        }
    }
    volumes.sort_by(|a, b| (&a.project, &a.name).cmp(&(&b.project, &b.name)));
    Ok(volumes)
}

/// Bytes used by regular files under `path`, each inode counted once.
pub fn tree_size(path: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    walkdir::WalkDir::new(path)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && seen.insert((m.dev(), m.ino())))
        .map(|m| m.len())
        .sum()
}

/// Deletes one of a project's volumes.
pub fn remove(volumes_dir: &Path, project_dir: &Path, name: &str) -> Result<(), VolumeError> {
    let folder = project_folder(volumes_dir, project_dir);
    let path = folder.join(name);
    if name.starts_with('.') || name.contains('/') || !path.is_dir() {
        let known = std::fs::read_dir(&folder)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        return Err(VolumeError::Unknown {
            name: name.to_string(),
            known,
        });
    }
    // Renamed away first, so a crash halfway leaves no half volume under its name.
    let doomed = folder.join(format!(".{name}.removing"));
    std::fs::rename(&path, &doomed).map_err(io("remove", &path))?;
    crate::files::remove_tree(&doomed).map_err(io("remove", &doomed))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_made_once_listed_and_removed() {
        let data = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let path = prepare(data.path(), project.path(), "cache", &[], "/c", me).unwrap();
        std::fs::write(path.join("kept"), "data").unwrap();
        // A second use finds the same folder with its content.
        let again = prepare(data.path(), project.path(), "cache", &[], "/c", me).unwrap();
        assert_eq!(path, again);
        assert_eq!(std::fs::read_to_string(again.join("kept")).unwrap(), "data");
        let listed = list(data.path()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "cache");
        assert_eq!(listed[0].size, 4);
        assert_eq!(
            listed[0].project.as_deref(),
            Some(project.path().canonicalize().unwrap().as_path())
        );
        let error = remove(data.path(), project.path(), "nope").unwrap_err();
        assert!(
            matches!(&error, VolumeError::Unknown { known, .. } if known == &["cache"]),
            "{error:?}"
        );
        remove(data.path(), project.path(), "cache").unwrap();
        assert!(list(data.path()).unwrap().is_empty());
    }

    #[test]
    fn a_new_volume_starts_with_the_images_content() {
        let data = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        let layer = tempfile::tempdir().unwrap();
        let seed = layer.path().join("var/lib/pg");
        std::fs::create_dir_all(seed.join("15")).unwrap();
        std::fs::write(seed.join("15/PG_VERSION"), "15\n").unwrap();
        std::os::unix::fs::symlink("15", seed.join("current")).unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let layers = vec![layer.path().to_path_buf()];
        let path = prepare(
            data.path(),
            project.path(),
            "pg",
            &layers,
            "/var/lib/pg",
            me,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(path.join("15/PG_VERSION")).unwrap(),
            "15\n"
        );
        assert_eq!(
            std::fs::read_link(path.join("current")).unwrap(),
            Path::new("15")
        );
    }

    #[test]
    fn two_projects_with_the_same_folder_name_do_not_share_volumes() {
        let data = tempfile::tempdir().unwrap();
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir(a.path().join("app")).unwrap();
        std::fs::create_dir(b.path().join("app")).unwrap();
        assert_ne!(
            project_folder(data.path(), &a.path().join("app")),
            project_folder(data.path(), &b.path().join("app"))
        );
    }
}
