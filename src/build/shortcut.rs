//! The way from a project straight to its image, for `env run`, `env shell` and a no-op
//! `env build`: when env.kdl, env.lock and the setup steps' input files are as they were when
//! the image was last found, the image is the same, and finding it again (parsing the lock,
//! hashing the plan) is skipped.
//!
//! Kept in the store by blake3 of the env file's path ([`Store::shortcut_record`]): the layer
//! recipe's version, blake3 of the env file and of the lock, the size and modification time of
//! each setup input and of everything a `copy` reads (and the ignore file), and the image's
//! name. Anything different (or the image or one of its layers gone) means the slow
//! path, which writes a new shortcut.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::Spec;

use super::image::{Image, find_image};
use super::store::Store;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Shortcut {
    /// The layer recipe the image's keys were planned with: a new envkit that keys layers
    /// otherwise must plan again, not return the old image.
    #[serde(default)]
    recipe: String,
    env_file: String,
    lock: String,
    inputs: Vec<InputStamp>,
    image: String,
}

/// A setup input as `stat` sees it: a changed file changes size or time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InputStamp {
    path: PathBuf,
    size: u64,
    modified_ns: i128,
}

fn location(store: &Store, env_file: &Path) -> PathBuf {
    let canonical = env_file
        .canonicalize()
        .unwrap_or_else(|_| env_file.to_path_buf());
    let key = blake3::hash(canonical.as_os_str().as_encoded_bytes());
    store.shortcut_record(&key.to_hex()[..32])
}

fn digest(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|bytes| blake3::hash(&bytes).to_hex().to_string())
}

/// Every file the spec's setup inputs match now, stamped.
fn stamps(spec: &Spec) -> Option<Vec<InputStamp>> {
    let mut stamps = Vec::new();
    for step in &spec.setup {
        for pattern in &step.inputs {
            let full = spec.origin.dir.join(pattern);
            for path in glob::glob(&full.to_string_lossy()).ok()?.flatten() {
                let metadata = path.metadata().ok()?;
                if metadata.is_file() {
                    stamps.push(stamp(path, &metadata));
                }
            }
        }
    }
    // Whatever a `copy` reads, and the ignore file that filters it: any change means the
    // copy layer's key must be computed again.
    if !spec.copies.is_empty() {
        for name in super::copy::IGNORE_FILES {
            let path = spec.origin.dir.join(name);
            if let Ok(metadata) = std::fs::symlink_metadata(&path) {
                stamps.push(stamp(path, &metadata));
            }
        }
    }
    for copy in &spec.copies {
        for entry in walkdir::WalkDir::new(&copy.source_path).follow_links(false) {
            let entry = entry.ok()?;
            let metadata = entry.metadata().ok()?;
            stamps.push(stamp(entry.path().to_path_buf(), &metadata));
        }
    }
    stamps.sort_by(|a, b| a.path.cmp(&b.path));
    Some(stamps)
}

fn stamp(path: PathBuf, metadata: &std::fs::Metadata) -> InputStamp {
    InputStamp {
        path,
        size: metadata.len(),
        modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
            + i128::from(metadata.mtime_nsec()),
    }
}

fn current(spec: &Spec, lock_path: &Path, image: &str) -> Option<Shortcut> {
    Some(Shortcut {
        recipe: super::plan::RECIPE_VERSION.to_string(),
        env_file: digest(&spec.origin.file)?,
        lock: digest(lock_path)?,
        inputs: stamps(spec)?,
        image: image.to_string(),
    })
}

/// The image, when nothing it was made from has changed and it is whole in the store.
pub fn lookup(store: &Store, spec: &Spec, lock_path: &Path) -> Option<Image> {
    let bytes = std::fs::read(location(store, &spec.origin.file)).ok()?;
    let saved: Shortcut = serde_json::from_slice(&bytes).ok()?;
    if current(spec, lock_path, &saved.image)? != saved {
        return None;
    }
    let image = find_image(store, &saved.image).ok()??;
    image
        .layers
        .iter()
        .all(|layer| store.tree(&layer.key).is_dir())
        .then_some(image)
}

/// Remembers that the project, as it is now, has this image. Best effort: without a shortcut
/// the next run only takes the longer way.
pub fn remember(store: &Store, spec: &Spec, lock_path: &Path, image: &Image) {
    let Some(shortcut) = current(spec, lock_path, &image.name) else {
        return;
    };
    let path = location(store, &spec.origin.file);
    if let Ok(bytes) = serde_json::to_vec(&shortcut) {
        let _ = crate::fetch::write_bytes_atomically(&path, &bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(setup_input: bool) -> (tempfile::TempDir, Spec) {
        let dir = tempfile::tempdir().unwrap();
        let text = if setup_input {
            "base \"debian:bookworm\"\nsetup \"true\" inputs=\"req.txt\"\n"
        } else {
            "base \"debian:bookworm\"\n"
        };
        std::fs::write(dir.path().join("env.kdl"), text).unwrap();
        std::fs::write(dir.path().join("env.lock"), "lock v1").unwrap();
        std::fs::write(dir.path().join("req.txt"), "a").unwrap();
        let spec = crate::spec::load(&dir.path().join("env.kdl")).unwrap().spec;
        (dir, spec)
    }

    fn image_in(store: &Store) -> Image {
        let image = Image {
            name: "demo:0123456789ab".into(),
            id: "sha256:00".into(),
            architecture: "amd64".into(),
            layers: vec![super::super::image::ImageLayer {
                name: "base".into(),
                key: "k1".into(),
                diff_id: "sha256:11".into(),
                size: 1,
            }],
            base_config: None,
        };
        let record = super::super::image::image_path(store, &image.name);
        std::fs::create_dir_all(record.parent().unwrap()).unwrap();
        std::fs::write(&record, serde_json::to_vec(&image).unwrap()).unwrap();
        std::fs::create_dir_all(store.tree("k1")).unwrap();
        image
    }

    #[test]
    fn an_unchanged_project_finds_its_image_and_any_change_loses_it() {
        let (dir, spec) = project(true);
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::new(store_dir.path());
        let lock = dir.path().join("env.lock");
        assert_eq!(lookup(&store, &spec, &lock), None);
        let image = image_in(&store);
        remember(&store, &spec, &lock, &image);
        assert_eq!(lookup(&store, &spec, &lock), Some(image.clone()));

        std::fs::write(&lock, "lock v2").unwrap();
        assert_eq!(lookup(&store, &spec, &lock), None, "the lock changed");
        remember(&store, &spec, &lock, &image);
        std::fs::write(dir.path().join("req.txt"), "ab").unwrap();
        assert_eq!(lookup(&store, &spec, &lock), None, "a setup input changed");
        remember(&store, &spec, &lock, &image);
        assert!(lookup(&store, &spec, &lock).is_some());
        crate::build::store::remove_tree(&store.tree("k1")).unwrap();
        assert_eq!(lookup(&store, &spec, &lock), None, "a layer is gone");
    }

    #[test]
    fn an_edited_env_file_loses_the_image() {
        let (dir, spec) = project(false);
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::new(store_dir.path());
        let lock = dir.path().join("env.lock");
        let image = image_in(&store);
        remember(&store, &spec, &lock, &image);
        assert!(lookup(&store, &spec, &lock).is_some());
        std::fs::write(
            dir.path().join("env.kdl"),
            "base \"debian:bookworm\"\npackages \"jq\"\n",
        )
        .unwrap();
        assert_eq!(lookup(&store, &spec, &lock), None);
    }
}
